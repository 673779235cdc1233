//! The commands: each one asks the management API and prints its answer as a table or as the
//! API's own JSON.

use std::io::IsTerminal;
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{Endpoint, HttpError, encode};
use crate::table::Table;
use crate::{
    AggregateCommand, Cli, EventHandlerCommand, EventsArguments, ListCommand, Output,
    ProjectionCommand, ReplayCommand, RuntimeCommand, TopCommand,
};

/// Why a command failed: the Runtime could not be reached, or it refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the Runtime refused the request ({status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error(
        "the Runtime refused the management token (401): give the right one with --token or \
         DOLITTLE_MANAGEMENT_TOKEN"
    )]
    Unauthorized,
    #[error("the Runtime's answer is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Unfinished(String),
}

type CommandResult = Result<(), CommandError>;

struct Context {
    endpoint: Endpoint,
    tenant: String,
    scope: Option<String>,
    output: Output,
    wide: bool,
    width: usize,
}

impl Context {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CommandError> {
        let body = body.map(Value::to_string);
        let response = self.endpoint.request(method, path, body.as_deref())?;
        if response.status == 401 {
            return Err(CommandError::Unauthorized);
        }
        let value: Value = serde_json::from_str(&response.body)
            .map_err(|_| CommandError::NotJson(response.body.chars().take(200).collect()))?;
        if !(200..300).contains(&response.status) {
            let reason = value["failure"]["reason"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned();
            return Err(CommandError::Refused {
                status: response.status,
                reason,
            });
        }
        Ok(value)
    }

    fn get(&self, path: &str) -> Result<Value, CommandError> {
        self.call("GET", path, None)
    }

    /// `?tenant=..&scope=..` for the processor endpoints.
    fn processor_query(&self) -> String {
        let mut query = format!("?tenant={}", encode(&self.tenant));
        if let Some(scope) = &self.scope {
            query.push_str(&format!("&scope={}", encode(scope)));
        }
        query
    }

    fn tenant_path(&self) -> String {
        format!("/api/tenants/{}", encode(&self.tenant))
    }

    fn scope_query(&self, first: bool) -> String {
        match &self.scope {
            Some(scope) => format!("{}scope={}", if first { '?' } else { '&' }, encode(scope)),
            None => String::new(),
        }
    }

    fn print_json(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        );
    }

    fn print_table(&self, table: &Table, empty: &str) {
        if table.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", table.render(self.width));
        }
    }

    /// A GUID as it fits a table: whole with `--wide`, its first block otherwise.
    fn id(&self, value: &Value) -> String {
        let text = text(value);
        if self.wide || text.len() != 36 {
            text
        } else {
            text[..8].to_owned()
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

pub fn run(cli: Cli) -> CommandResult {
    let options = cli.options;
    let width = console::Term::stdout()
        .size_checked()
        .map(|(_, columns)| usize::from(columns))
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(120);
    let context = Context {
        endpoint: Endpoint::new(&options.runtime, options.token),
        tenant: options.tenant,
        scope: options.scope,
        output: options.output,
        wide: options.wide,
        width,
    };
    let TopCommand::Runtime(command) = cli.command;
    match command {
        RuntimeCommand::Info => info(&context),
        RuntimeCommand::EventHandlers(EventHandlerCommand::List) => {
            list_processors(&context, "event-handlers")
        }
        RuntimeCommand::EventHandlers(EventHandlerCommand::Get { id }) => {
            get_processor(&context, "event-handlers", &id)
        }
        RuntimeCommand::EventHandlers(EventHandlerCommand::Replay(replay)) => {
            replay_event_handler(&context, replay)
        }
        RuntimeCommand::Projections(ProjectionCommand::List) => {
            list_processors(&context, "projections")
        }
        RuntimeCommand::Projections(ProjectionCommand::Get { id }) => {
            get_processor(&context, "projections", &id)?;
            read_models(&context, &id)
        }
        RuntimeCommand::Projections(ProjectionCommand::Replay { id, wait }) => {
            replay_projection(&context, &id, wait.wait)
        }
        RuntimeCommand::Aggregates(command) => aggregates(&context, command),
        RuntimeCommand::EventTypes(ListCommand::List) => event_types(&context),
        RuntimeCommand::Tenants(ListCommand::List) => tenants(&context),
        RuntimeCommand::Events(arguments) => events(&context, &arguments),
    }
}

fn info(context: &Context) -> CommandResult {
    let runtime = context.get("/api/runtime")?;
    if context.output == Output::Json {
        context.print_json(&runtime);
        return Ok(());
    }
    let mut table = Table::new(&["", ""]);
    for (label, key) in [
        ("version", "version"),
        ("microservice", "microservice"),
        ("uptime (s)", "uptime_seconds"),
        ("tenants", "tenants"),
        ("open reverse calls", "open_reverse_calls"),
        ("registered processors", "registered_processors"),
    ] {
        let value = match &runtime[key] {
            Value::Number(number) if key == "uptime_seconds" => {
                format!("{:.0}", number.as_f64().unwrap_or_default())
            }
            other => text(other),
        };
        table.row(vec![label.to_owned(), value]);
    }
    print!("{}", table.render(context.width));
    Ok(())
}

/// The entry of a processor for the context's tenant.
fn tenant_entry<'a>(processor: &'a Value, tenant: &str) -> Option<&'a Value> {
    processor["tenants"]
        .as_array()?
        .iter()
        .find(|entry| entry["tenant"].as_str() == Some(tenant))
}

/// A processor's state in a tenant, with a projection's rebuild.
fn state_text(entry: &Value) -> String {
    if entry["rebuilding"] == json!(true) {
        format!("{} (rebuilding)", text(&entry["state"]))
    } else {
        text(&entry["state"])
    }
}

fn list_processors(context: &Context, collection: &str) -> CommandResult {
    let processors = context.get(&format!("/api/{collection}{}", context.processor_query()))?;
    if context.output == Output::Json {
        context.print_json(&processors);
        return Ok(());
    }
    let mut headers = vec!["ID", "SCOPE", "STATE", "POSITION", "TAIL", "LAG", "FAILING"];
    if context.wide {
        headers.extend(["PARTITIONED", "EVENT TYPES", "LAST PROCESSED"]);
    }
    let mut table = Table::new(&headers);
    for processor in processors.as_array().into_iter().flatten() {
        let Some(entry) = tenant_entry(processor, &context.tenant) else {
            continue;
        };
        let failing = entry["failing_partitions"].as_array().map_or(0, Vec::len)
            + usize::from(!entry["failure"].is_null());
        let mut row = vec![
            context.id(&processor["id"]),
            context.id(&processor["scope"]),
            state_text(entry),
            text(&entry["position"]),
            text(&entry["log_tail"]),
            text(&entry["lag"]),
            failing.to_string(),
        ];
        if context.wide {
            row.push(text(&processor["partitioned"]));
            row.push(
                processor["event_types"]
                    .as_array()
                    .map(|types| types.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            );
            row.push(text(&entry["last_successfully_processed"]));
        }
        table.row(row);
    }
    context.print_table(&table, "none");
    Ok(())
}

fn get_processor(context: &Context, collection: &str, id: &str) -> CommandResult {
    let processor = context.get(&format!(
        "/api/{collection}/{}{}",
        encode(id),
        context.processor_query()
    ))?;
    if context.output == Output::Json {
        context.print_json(&processor);
        return Ok(());
    }
    print_processor(context, &processor);
    Ok(())
}

fn print_processor(context: &Context, processor: &Value) {
    let entry = tenant_entry(processor, &context.tenant).unwrap_or(&Value::Null);
    let mut table = Table::new(&["", ""]);
    let rows = [
        ("kind", text(&processor["kind"])),
        ("id", text(&processor["id"])),
        ("scope", text(&processor["scope"])),
        ("partitioned", text(&processor["partitioned"])),
        (
            "event types",
            processor["event_types"]
                .as_array()
                .map(|types| types.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        ),
        ("registered", text(&processor["registered"])),
        ("tenant", context.tenant.clone()),
        ("state", state_text(entry)),
        ("position", text(&entry["position"])),
        ("log tail", text(&entry["log_tail"])),
        ("lag", text(&entry["lag"])),
        (
            "last processed",
            text(&entry["last_successfully_processed"]),
        ),
    ];
    for (label, value) in rows {
        table.row(vec![label.to_owned(), value]);
    }
    if !entry["failure"].is_null() {
        table.row(vec![
            "halted".to_owned(),
            format!(
                "{} ({} attempts, next retry {})",
                text(&entry["failure"]["reason"]),
                text(&entry["failure"]["attempts"]),
                text(&entry["failure"]["retry_time"])
            ),
        ]);
    }
    print!("{}", table.render(context.width));
    let partitions = entry["failing_partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !partitions.is_empty() {
        println!();
        let mut failing =
            Table::new(&["PARTITION", "POSITION", "ATTEMPTS", "NEXT RETRY", "REASON"]);
        for partition in &partitions {
            failing.row(vec![
                text(&partition["partition"]),
                text(&partition["position"]),
                text(&partition["attempts"]),
                text(&partition["retry_time"]),
                text(&partition["reason"]),
            ]);
        }
        print!("{}", failing.render(context.width));
    }
}

fn replay_event_handler(context: &Context, command: ReplayCommand) -> CommandResult {
    let (id, body, wait, tenant) = match command {
        ReplayCommand::All { id, wait } => {
            let mut body = json!({});
            if let Some(scope) = &context.scope {
                body["scope"] = json!(scope);
            }
            (id, body, wait.wait, None)
        }
        ReplayCommand::From {
            id,
            position,
            partition,
            wait,
        } => {
            let mut body = json!({"tenant": context.tenant, "from": position});
            if let Some(partition) = partition {
                body["partition"] = json!(partition);
            }
            if let Some(scope) = &context.scope {
                body["scope"] = json!(scope);
            }
            (id, body, wait.wait, Some(context.tenant.clone()))
        }
    };
    let answer = context.call(
        "POST",
        &format!("/api/event-handlers/{}/replay", encode(&id)),
        Some(&body),
    )?;
    let replayed = &answer["replayed"];
    if !wait {
        if context.output == Output::Json {
            context.print_json(&answer);
        } else {
            println!(
                "replaying event handler {} from {} in {}",
                text(&replayed["id"]),
                body["from"].as_u64().unwrap_or(0),
                tenant.as_deref().unwrap_or("every tenant")
            );
        }
        return Ok(());
    }
    wait_for_catch_up(
        context,
        Kind::EventHandler,
        &id,
        replayed,
        tenant.as_deref(),
    )
}

/// The kinds of processor that replay.
#[derive(Debug, Clone, Copy)]
enum Kind {
    EventHandler,
    Projection,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::EventHandler => "event handler",
            Kind::Projection => "projection",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::EventHandler => "event-handlers",
            Kind::Projection => "projections",
        }
    }

    /// The CLI command of the kind.
    fn command(self) -> &'static str {
        match self {
            Kind::EventHandler => "eventhandlers",
            Kind::Projection => "projections",
        }
    }
}

/// Follows an event handler or a projection until every wanted tenant has caught up with its
/// log (a projection: and its rebuild is promoted), with a progress bar on a terminal and one
/// line per change otherwise.
fn wait_for_catch_up(
    context: &Context,
    kind: Kind,
    id: &str,
    replayed: &Value,
    tenant: Option<&str>,
) -> CommandResult {
    if replayed["registered"] == json!(false) {
        let message = format!(
            "{} {id} is not registered by any head: it replays when one registers it",
            kind.noun()
        );
        if context.output == Output::Json {
            context.print_json(replayed);
        }
        eprintln!("{message}");
        return Ok(());
    }
    let path = format!(
        "/api/{}/{}{}",
        kind.path(),
        encode(id),
        context
            .scope
            .as_ref()
            .map_or_else(String::new, |scope| format!("?scope={}", encode(scope)))
    );
    let on_terminal = std::io::stdout().is_terminal() && context.output == Output::Table;
    let bar = on_terminal.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} replaying [{bar:40}] {pos}/{len} events {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let mut last_line = String::new();
    loop {
        let processor = context.get(&path)?;
        let entries: Vec<&Value> = processor["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| tenant.is_none_or(|tenant| entry["tenant"].as_str() == Some(tenant)))
            .collect();
        let position: u64 = entries
            .iter()
            .map(|entry| entry["position"].as_u64().unwrap_or(0))
            .sum();
        let tail: u64 = entries
            .iter()
            .map(|entry| entry["log_tail"].as_u64().unwrap_or(0))
            .sum();
        let failing: usize = entries
            .iter()
            .map(|entry| {
                entry["failing_partitions"].as_array().map_or(0, Vec::len)
                    + usize::from(!entry["failure"].is_null())
            })
            .sum();
        let caught_up = entries
            .iter()
            .all(|entry| entry["lag"].as_u64() == Some(0) && entry["rebuilding"] != json!(true));
        match &bar {
            Some(bar) => {
                bar.set_length(tail);
                bar.set_position(position);
                bar.set_message(if failing > 0 {
                    format!("({failing} failing)")
                } else {
                    String::new()
                });
            }
            None if context.output == Output::Table => {
                let line = format!("position {position} of {tail}");
                if line != last_line {
                    println!("{line}");
                    last_line = line;
                }
            }
            None => {}
        }
        if caught_up {
            if let Some(bar) = &bar {
                bar.finish();
            }
            if context.output == Output::Json {
                context.print_json(&processor);
            } else {
                println!("caught up at {position} of {tail}");
            }
            if failing > 0 {
                return Err(CommandError::Unfinished(format!(
                    "caught up, but {failing} partitions are failing: see dolittle runtime \
                     {} get {id}",
                    kind.command()
                )));
            }
            return Ok(());
        }
        if processor["registered"] == json!(false) {
            return Err(CommandError::Unfinished(format!(
                "the head of {} {id} disconnected before it caught up",
                kind.noun()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn replay_projection(context: &Context, id: &str, wait: bool) -> CommandResult {
    let mut body = json!({"tenant": context.tenant});
    if let Some(scope) = &context.scope {
        body["scope"] = json!(scope);
    }
    let answer = context.call(
        "POST",
        &format!("/api/projections/{}/replay", encode(id)),
        Some(&body),
    )?;
    let replayed = &answer["replayed"];
    if wait {
        return wait_for_catch_up(
            context,
            Kind::Projection,
            id,
            replayed,
            Some(&context.tenant),
        );
    }
    if context.output == Output::Json {
        context.print_json(&answer);
    } else if replayed["registered"] == json!(true) {
        println!(
            "projection {id} is rebuilding in tenant {} beside its live read models: readers \
             get the live ones until the rebuild has caught up",
            context.tenant
        );
    } else {
        println!(
            "projection {id} dropped in tenant {}: it is rebuilt from the start when its head \
             registers it",
            context.tenant
        );
    }
    Ok(())
}

fn read_models(context: &Context, id: &str) -> CommandResult {
    if context.output == Output::Json {
        return Ok(());
    }
    let models = context.get(&format!(
        "{}/projections/{}/read-models{}",
        context.tenant_path(),
        encode(id),
        context.scope_query(true)
    ))?;
    println!();
    let mut table = Table::new(&["KEY", "READ MODEL"]);
    for model in models.as_array().into_iter().flatten() {
        table.row(vec![text(&model["key"]), model["state"].to_string()]);
    }
    context.print_table(&table, "no read models");
    Ok(())
}

fn aggregates(context: &Context, command: AggregateCommand) -> CommandResult {
    match command {
        AggregateCommand::List => {
            let roots = context.get(&format!("{}/aggregates", context.tenant_path()))?;
            if context.output == Output::Json {
                context.print_json(&roots);
                return Ok(());
            }
            let mut table = Table::new(&["AGGREGATE ROOT", "INSTANCES", "EVENTS"]);
            for root in roots.as_array().into_iter().flatten() {
                let instances = root["instances"].as_array().cloned().unwrap_or_default();
                let events: u64 = instances
                    .iter()
                    .map(|instance| instance["version"].as_u64().unwrap_or(0))
                    .sum();
                table.row(vec![
                    text(&root["aggregate_root"]),
                    instances.len().to_string(),
                    events.to_string(),
                ]);
            }
            context.print_table(&table, "no aggregates");
        }
        AggregateCommand::Get { id } => {
            let roots = context.get(&format!(
                "{}/aggregates?aggregate_root={}",
                context.tenant_path(),
                encode(&id)
            ))?;
            if context.output == Output::Json {
                context.print_json(&roots);
                return Ok(());
            }
            let mut table = Table::new(&["EVENT SOURCE", "VERSION"]);
            for root in roots.as_array().into_iter().flatten() {
                for instance in root["instances"].as_array().into_iter().flatten() {
                    table.row(vec![
                        text(&instance["event_source"]),
                        text(&instance["version"]),
                    ]);
                }
            }
            context.print_table(&table, "no instances");
        }
        AggregateCommand::Events { id, event_source } => {
            let instance = context.get(&format!(
                "{}/aggregates/{}/{}",
                context.tenant_path(),
                encode(&id),
                encode(&event_source)
            ))?;
            if context.output == Output::Json {
                context.print_json(&instance);
                return Ok(());
            }
            print_events(context, instance["events"].as_array(), true);
        }
    }
    Ok(())
}

fn print_events(context: &Context, events: Option<&Vec<Value>>, aggregate: bool) {
    let mut headers = vec![
        if aggregate { "VERSION" } else { "#" },
        "OCCURRED",
        "EVENT SOURCE",
        "EVENT TYPE",
        "CONTENT",
    ];
    if context.wide {
        headers.push("CORRELATION");
    }
    let mut table = Table::new(&headers);
    for event in events.into_iter().flatten() {
        let mut row = vec![
            text(if aggregate {
                &event["aggregate_root_version"]
            } else {
                &event["sequence_number"]
            }),
            text(&event["occurred"]),
            text(&event["event_source"]),
            format!(
                "{}.{}",
                context.id(&event["event_type"]),
                text(&event["event_type_generation"])
            ),
            event["content"].to_string(),
        ];
        if context.wide {
            row.push(text(&event["correlation"]));
        }
        table.row(row);
    }
    context.print_table(&table, "no events");
}

fn event_types(context: &Context) -> CommandResult {
    let seen = context.get(&format!(
        "{}/event-types{}",
        context.tenant_path(),
        context.scope_query(true)
    ))?;
    if context.output == Output::Json {
        context.print_json(&seen);
        return Ok(());
    }
    let mut table = Table::new(&["EVENT TYPE", "GENERATIONS", "EVENTS", "LAST OCCURRED"]);
    for event_type in seen["event_types"].as_array().into_iter().flatten() {
        table.row(vec![
            text(&event_type["id"]),
            event_type["generations"]
                .as_array()
                .map(|generations| generations.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
            text(&event_type["events"]),
            text(&event_type["last_occurred"]),
        ]);
    }
    context.print_table(&table, "no events yet");
    if seen["complete"] == json!(false) {
        eprintln!("counted the first {} events only", text(&seen["scanned"]));
    }
    Ok(())
}

fn tenants(context: &Context) -> CommandResult {
    let tenants = context.get("/api/tenants")?;
    if context.output == Output::Json {
        context.print_json(&tenants);
        return Ok(());
    }
    let mut table = Table::new(&["TENANT", "BACKEND", "LOCATION"]);
    for tenant in tenants.as_array().into_iter().flatten() {
        table.row(vec![
            text(&tenant["id"]),
            text(&tenant["store"]["backend"]),
            text(&tenant["store"]["location"]),
        ]);
    }
    context.print_table(&table, "no tenants");
    Ok(())
}

fn events(context: &Context, arguments: &EventsArguments) -> CommandResult {
    let mut query = format!("?from={}&limit={}", arguments.from, arguments.limit);
    if let Some(event_type) = &arguments.event_type {
        query.push_str(&format!("&event_type={}", encode(event_type)));
    }
    if let Some(event_source) = &arguments.event_source {
        query.push_str(&format!("&event_source={}", encode(event_source)));
    }
    query.push_str(&context.scope_query(false));
    let page = context.get(&format!("{}/events{query}", context.tenant_path()))?;
    if context.output == Output::Json {
        context.print_json(&page);
        return Ok(());
    }
    print_events(context, page["events"].as_array(), false);
    let next = page["next"].as_u64().unwrap_or(0);
    let tail = page["tail"].as_u64().unwrap_or(0);
    if next < tail {
        eprintln!("more events: --from {next} (the log has {tail})");
    }
    Ok(())
}
