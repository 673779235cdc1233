//! A head outlives a Runtime restart: the client's channel and every event handler reconnect
//! with backoff, and processing goes on from where the Runtime left it.

mod common;

use std::time::Duration;

use common::{PATIENCE, TestRuntime, next};
use dolittle_sdk::types::{EventProcessorId, TenantId, Uuid};
use dolittle_sdk::{
    EventContext, EventHandler, EventHandlerOptions, EventType, HandledEvent, HandlerError,
    ProcessorState,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "4e5f6a7b-0000-4000-8000-000000000001")]
struct Counted {
    number: u32,
}

struct Counter {
    seen: mpsc::UnboundedSender<u32>,
}

impl EventHandler for Counter {
    type Events = Counted;

    async fn handle(
        &self,
        event: HandledEvent<Counted>,
        _: EventContext,
    ) -> Result<(), HandlerError> {
        if let HandledEvent::Known(counted) = event {
            let _ = self.seen.send(counted.number);
        }
        Ok(())
    }
}

/// Commits, retrying while the channel reconnects to the restarted Runtime.
async fn commit_until_it_succeeds(runtime: &TestRuntime, number: u32) {
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match store.commit(&Counted { number }, "counter").await {
            Ok(_) => return,
            Err(error) if tokio::time::Instant::now() < deadline => {
                assert!(matches!(error, dolittle_sdk::Error::Rpc(_)), "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the runtime did not come back: {error}"),
        }
    }
}

#[tokio::test]
async fn handlers_and_calls_reconnect_after_the_runtime_restarts() {
    let mut runtime = TestRuntime::start().await;
    let (seen, mut received) = mpsc::unbounded_channel();
    let handle = runtime.client.register_event_handler(
        EventHandlerOptions::new(EventProcessorId(Uuid::from_u128(0xcafe))),
        Counter { seen },
    );
    tokio::time::timeout(PATIENCE, handle.registered())
        .await
        .expect("registered in time")
        .expect("registered");
    commit_until_it_succeeds(&runtime, 1).await;
    assert_eq!(next(&mut received).await, 1);

    assert_eq!(handle.registrations(), 1);

    runtime.restart().await;
    tokio::time::timeout(PATIENCE, async {
        while handle.registrations() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the handler registered again in time");
    commit_until_it_succeeds(&runtime, 2).await;

    // Delivery is at least once: the answer for event 1 may not have reached the Runtime
    // before it stopped, and then it comes again, before event 2.
    let mut after_restart = vec![next(&mut received).await];
    while after_restart.last() != Some(&2) {
        after_restart.push(next(&mut received).await);
    }
    assert!(
        after_restart.iter().all(|number| [1, 2].contains(number)),
        "{after_restart:?}"
    );
    assert_eq!(handle.state(), ProcessorState::Registered);
    runtime.stop().await;
}
