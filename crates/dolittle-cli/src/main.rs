//! `dolittle`: operate a Dolittle Runtime over its management API, with the command tree of the
//! Dolittle CLI (`dolittle runtime eventhandlers list|get|replay`, `projections`, `aggregates`,
//! `eventtypes`, `tenants`, `events`).
//!
//! Exit codes: 0 success, 1 the Runtime refused, failed or could not be reached (with its
//! message), 2 a usage mistake.

mod commands;
mod http;
mod table;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate a Dolittle Runtime: event handlers, projections, aggregates, event types, tenants
/// and the event log, over the Runtime's management API (port 51052).
#[derive(Debug, Parser)]
#[command(name = "dolittle", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub options: GlobalOptions,
    #[command(subcommand)]
    pub command: TopCommand,
}

#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// The Runtime's management endpoint, host[:port]
    #[arg(
        long,
        global = true,
        default_value = "localhost:51052",
        env = "DOLITTLE_RUNTIME"
    )]
    pub runtime: String,
    /// The tenant (default: the development tenant)
    #[arg(
        long,
        global = true,
        default_value = "445f8ea8-1a6f-40d7-b2fc-796dba92dc44",
        env = "DOLITTLE_TENANT"
    )]
    pub tenant: String,
    /// The scope (default: the default scope)
    #[arg(long, global = true)]
    pub scope: Option<String>,
    /// table for people, json for scripts (the management API's documents, unchanged)
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Show every column, with whole ids
    #[arg(long, global = true)]
    pub wide: bool,
    /// The management token, when the Runtime requires one
    #[arg(
        long,
        global = true,
        env = "DOLITTLE_MANAGEMENT_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Commands for a running Runtime
    #[command(subcommand)]
    Runtime(RuntimeCommand),
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// The Runtime's version, uptime and connected heads
    Info,
    /// Event handlers: their state per tenant, and replays
    #[command(subcommand, name = "eventhandlers")]
    EventHandlers(EventHandlerCommand),
    /// Projections: their state per tenant, and rebuilds
    #[command(subcommand)]
    Projections(ProjectionCommand),
    /// Aggregate roots, their instances and events
    #[command(subcommand)]
    Aggregates(AggregateCommand),
    /// Event types that occur in the event log
    #[command(subcommand, name = "eventtypes")]
    EventTypes(ListCommand),
    /// Tenants and their event stores
    #[command(subcommand)]
    Tenants(ListCommand),
    /// Page through the event log
    Events(EventsArguments),
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// List them
    List,
}

#[derive(Debug, Subcommand)]
pub enum EventHandlerCommand {
    /// Every event handler with its state in the tenant
    List,
    /// One event handler: position, lag, failing partitions
    Get { id: String },
    /// Make an event handler process events again
    #[command(subcommand)]
    Replay(ReplayCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Replay from the start, in every tenant
    All {
        id: String,
        #[command(flatten)]
        wait: WaitArguments,
    },
    /// Replay from a position, in the tenant (refused past the current position)
    From {
        id: String,
        position: u64,
        /// Replay only this partition
        #[arg(long)]
        partition: Option<String>,
        #[command(flatten)]
        wait: WaitArguments,
    },
}

#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArguments {
    /// Wait until it has caught up with the event log, showing its progress
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionCommand {
    /// Every projection with its state in the tenant
    List,
    /// One projection and its read models
    Get { id: String },
    /// Rebuild a projection from the start. A registered one rebuilds beside its live read
    /// models, which readers keep getting until the rebuild has caught up; one no head has
    /// registered is dropped and rebuilt when a head registers it
    Replay {
        id: String,
        #[command(flatten)]
        wait: WaitArguments,
    },
}

#[derive(Debug, Subcommand)]
pub enum AggregateCommand {
    /// Aggregate roots and how many instances each has
    List,
    /// The instances of an aggregate root, with their versions
    Get { id: String },
    /// The events of one aggregate root instance
    Events { id: String, event_source: String },
}

#[derive(Debug, Args)]
pub struct EventsArguments {
    /// The first sequence number
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// The most events to show
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
    /// Only events of this event type id
    #[arg(long)]
    pub event_type: Option<String>,
    /// Only events of this event source
    #[arg(long)]
    pub event_source: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
