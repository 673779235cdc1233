//! How fast a head gets through the SDK: commits (one by one, concurrent, in batches),
//! aggregate performs, and events through an event handler, printed as a table with a summary
//! line. Numbers depend on the machine and on what else runs on it; use a release build:
//!
//!     cargo run --release -p dolittle-sdk --example throughput --features in-process -- --in-process
//!
//! or against a running Runtime (`DOLITTLE_RUNTIME`, default `http://127.0.0.1:50053`):
//!
//!     cargo run --release -p dolittle-sdk --example throughput

use std::time::{Duration, Instant};

use dolittle_sdk::types::{AggregateRootId, EventProcessorId, EventSourceId, TenantId};
use dolittle_sdk::{
    AggregateRoot, Applied, Client, EventContext, EventHandler, EventHandlerOptions, EventType,
    HandledEvent, HandlerError, uuid,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize, EventType)]
#[event_type(id = "8d1e2f3a-4b5c-4d6e-8f70-819203a4b5c6")]
struct Ticked {
    number: u64,
}

#[derive(Default)]
struct Clock {
    ticks: u64,
    applied: Applied<Ticked>,
}

impl AggregateRoot for Clock {
    const ID: AggregateRootId = AggregateRootId(uuid!("8d1e2f3a-4b5c-4d6e-8f70-819203a4b5c7"));
    type Events = Ticked;

    fn on(&mut self, _: &Ticked) {
        self.ticks += 1;
    }

    fn applied(&mut self) -> &mut Applied<Ticked> {
        &mut self.applied
    }
}

struct Sink {
    run: String,
    done: mpsc::UnboundedSender<()>,
}

impl EventHandler for Sink {
    type Events = Ticked;

    async fn handle(
        &self,
        _: HandledEvent<Ticked>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        if context.event_source.as_str().starts_with(&self.run) {
            let _ = self.done.send(());
        }
        Ok(())
    }
}

async fn connect() -> Result<(Client, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
    let builder = Client::builder().microservice(uuid!("8d1e2f3a-4b5c-4d6e-8f70-819203a4b5c8"));
    if std::env::args().any(|argument| argument == "--in-process") {
        #[cfg(feature = "in-process")]
        {
            let folder = tempfile::tempdir()?;
            let client = builder.start_in_process(folder.path(), &[]).await?;
            return Ok((client, Some(folder)));
        }
        #[cfg(not(feature = "in-process"))]
        return Err("--in-process needs the feature: add --features in-process".into());
    }
    let address = std::env::var("DOLITTLE_RUNTIME")
        .unwrap_or_else(|_| dolittle_sdk::DEFAULT_RUNTIME_ADDRESS.to_owned());
    Ok((
        builder
            .runtime(address)
            .connect_attempts(3)
            .connect()
            .await?,
        None,
    ))
}

struct Row {
    what: String,
    events: u64,
    elapsed: Duration,
}

impl Row {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _folder) = connect().await?;
    let store = client.event_store(TenantId::DEVELOPMENT);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut rows = Vec::new();

    let sequential = 1000u64;
    let started = Instant::now();
    for number in 0..sequential {
        store
            .commit(&Ticked { number }, format!("{run}-{}", number % 8))
            .await?;
    }
    rows.push(Row {
        what: "commit, 1 event, sequential".into(),
        events: sequential,
        elapsed: started.elapsed(),
    });

    let committers = 16u64;
    let per_committer = 200u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for committer in 0..committers {
        let store = store.clone();
        let source = format!("{run}-c{committer}");
        tasks.spawn(async move {
            for number in 0..per_committer {
                store.commit(&Ticked { number }, source.as_str()).await?;
            }
            Ok::<_, dolittle_sdk::Error>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    rows.push(Row {
        what: format!("commit, 1 event, {committers} concurrent"),
        events: committers * per_committer,
        elapsed: started.elapsed(),
    });

    let batches = 20u64;
    let batch = 100u64;
    let started = Instant::now();
    for round in 0..batches {
        store
            .commit_batch((0..batch).map(|number| {
                (
                    EventSourceId::from(format!("{run}-b{}", number % 8)),
                    Ticked {
                        number: round * batch + number,
                    },
                )
            }))
            .await?;
    }
    rows.push(Row {
        what: format!("commit, batches of {batch}"),
        events: batches * batch,
        elapsed: started.elapsed(),
    });

    // A new handler catches up on everything committed above.
    let total = sequential + committers * per_committer + batches * batch;
    let (done, mut handled) = mpsc::unbounded_channel();
    let started = Instant::now();
    let catching_up = client.register_event_handler(
        EventHandlerOptions::new(EventProcessorId(uuid::Uuid::new_v4())),
        Sink {
            run: run.clone(),
            done,
        },
    );
    for _ in 0..total {
        handled.recv().await.ok_or("the handler stopped")?;
    }
    rows.push(Row {
        what: "new event handler (partitioned) catching up".into(),
        events: total,
        elapsed: started.elapsed(),
    });
    drop(catching_up);

    let performs = 200u64;
    let started = Instant::now();
    for number in 0..performs {
        client
            .aggregate_of::<Clock>(TenantId::DEVELOPMENT, format!("{run}-clock-{number}"))
            .perform(|clock| {
                clock.apply(Ticked { number });
                Ok::<_, std::convert::Infallible>(())
            })
            .await?;
    }
    rows.push(Row {
        what: "aggregate perform (fetch + commit), new instances".into(),
        events: performs,
        elapsed: started.elapsed(),
    });

    let clock = client.aggregate_of::<Clock>(TenantId::DEVELOPMENT, format!("{run}-one-clock"));
    let started = Instant::now();
    for number in 0..performs {
        clock
            .perform(|clock| {
                clock.apply(Ticked { number });
                Ok::<_, std::convert::Infallible>(())
            })
            .await?;
    }
    rows.push(Row {
        what: format!("aggregate perform, one instance growing to {performs}"),
        events: performs,
        elapsed: started.elapsed(),
    });

    let fetches = 50u64;
    let started = Instant::now();
    for _ in 0..fetches {
        clock.get().await?;
    }
    rows.push(Row {
        what: format!("aggregate fetch + rehydrate of {performs} events"),
        events: fetches,
        elapsed: started.elapsed(),
    });

    println!("| what | events | seconds | events/s |");
    println!("|---|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.2} | {:.0} |",
            row.what,
            row.events,
            row.elapsed.as_secs_f64(),
            row.per_second()
        );
    }
    println!(
        "summary: sequential commits {:.0}/s, concurrent {:.0}/s, batched {:.0}/s, handler {:.0}/s, performs {:.0}/s",
        rows[0].per_second(),
        rows[1].per_second(),
        rows[2].per_second(),
        rows[3].per_second(),
        rows[4].per_second()
    );
    client.shutdown().await;
    Ok(())
}
