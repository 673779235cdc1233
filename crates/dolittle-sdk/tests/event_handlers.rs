//! Event handlers through the SDK against a real Runtime: typed dispatch, unknown types as
//! JSON, failures retried with backoff, partitions, several handlers, graceful shutdown.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{PATIENCE, SECOND_TENANT, TestRuntime, next};
use dolittle_sdk::types::{
    EventProcessorId, EventSourceId, EventType as EventTypeKey, EventTypeId, TenantId, Uuid,
};
use dolittle_sdk::{
    Backoff, EventContext, EventHandler, EventHandlerOptions, EventType, Events, HandledEvent,
    HandlerError, ProcessorState, uncommitted,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "a1b2c3d4-0000-4000-8000-000000000001")]
struct DishPrepared {
    dish: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "a1b2c3d4-0000-4000-8000-000000000002")]
struct ChefHired {
    chef: String,
}

#[derive(Debug, Clone, PartialEq, Events)]
enum KitchenEvent {
    DishPrepared(DishPrepared),
    ChefHired(ChefHired),
}

/// An event type with no Rust type in the handler.
const MENU_PRINTED: EventTypeKey = EventTypeKey {
    id: EventTypeId(Uuid::from_u128(0xa1b2c3d4_0000_4000_8000_000000000003)),
    generation: 1,
};

fn handler_id(n: u128) -> EventProcessorId {
    EventProcessorId(Uuid::from_u128(0x0e0e0000_0000_4000_8000_000000000000 + n))
}

/// Sends what it handles to the test.
struct Recorder {
    seen: mpsc::UnboundedSender<(HandledEvent<KitchenEvent>, EventContext)>,
}

impl EventHandler for Recorder {
    type Events = KitchenEvent;

    async fn handle(
        &self,
        event: HandledEvent<KitchenEvent>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        let _ = self.seen.send((event, context));
        Ok(())
    }
}

#[tokio::test]
async fn events_reach_the_handler_typed_and_unknown_types_as_json() {
    let runtime = TestRuntime::start().await;
    let (seen, mut received) = mpsc::unbounded_channel();
    let handle = runtime.client.register_event_handler(
        EventHandlerOptions::new(handler_id(1)).also_handle(MENU_PRINTED),
        Recorder { seen },
    );
    tokio::time::timeout(PATIENCE, handle.registered())
        .await
        .expect("registered in time")
        .expect("registered");
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);

    store
        .commit(
            &DishPrepared {
                dish: "Taco".into(),
            },
            "kitchen-1",
        )
        .await
        .expect("commit");
    store
        .commit_events(vec![dolittle_sdk::types::UncommittedEvent {
            event_source: "kitchen-1".into(),
            event_type: MENU_PRINTED,
            public: false,
            content: r#"{"pages":2}"#.into(),
        }])
        .await
        .expect("commit");
    store
        .commit(
            &ChefHired {
                chef: "Mr. Taco".into(),
            },
            "kitchen-2",
        )
        .await
        .expect("commit");

    // Partitions are processed concurrently, so only the order within a partition is fixed.
    let mut handled = vec![
        next(&mut received).await,
        next(&mut received).await,
        next(&mut received).await,
    ];
    handled.sort_by_key(|(_, context)| context.sequence_number);
    let mut handled = handled.into_iter();
    let (first, first_context) = handled.next().expect("three events");
    let (second, _) = handled.next().expect("three events");
    let (third, third_context) = handled.next().expect("three events");
    assert_eq!(
        first,
        HandledEvent::Known(KitchenEvent::DishPrepared(DishPrepared {
            dish: "Taco".into()
        }))
    );
    assert_eq!(first_context.event_source, EventSourceId::from("kitchen-1"));
    assert_eq!(first_context.tenant, TenantId::DEVELOPMENT);
    assert_eq!(
        first_context.partition.as_str(),
        "kitchen-1",
        "partitioned by default"
    );
    assert_eq!(first_context.retries, 0);
    assert_eq!(
        second,
        HandledEvent::Unknown {
            event_type: MENU_PRINTED,
            content: serde_json::json!({"pages": 2}),
        }
    );
    assert_eq!(
        third,
        HandledEvent::Known(KitchenEvent::ChefHired(ChefHired {
            chef: "Mr. Taco".into()
        }))
    );
    assert_eq!(third_context.sequence_number, 2);
    runtime.stop().await;
}

/// Fails every event the first time it sees it.
struct FailsOnce {
    failed: Mutex<Vec<u64>>,
    seen: mpsc::UnboundedSender<(String, EventContext)>,
}

impl EventHandler for FailsOnce {
    type Events = DishPrepared;

    async fn handle(
        &self,
        event: HandledEvent<DishPrepared>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        let dish = event.known().map(|event| event.dish).unwrap_or_default();
        let first_time = {
            let mut failed = self.failed.lock().map_err(|_| "poisoned")?;
            if failed.contains(&context.sequence_number) {
                false
            } else {
                failed.push(context.sequence_number);
                true
            }
        };
        let _ = self.seen.send((dish.clone(), context));
        if first_time {
            return Err(format!("the oven is cold for {dish}").into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_error_from_the_handler_is_retried_with_the_failure_reason() {
    let runtime = TestRuntime::start().await;
    let (seen, mut received) = mpsc::unbounded_channel();
    let handle = runtime.client.register_event_handler(
        EventHandlerOptions::new(handler_id(2))
            .partitioned(false)
            .retry_backoff(Backoff::new(
                Duration::from_millis(50),
                Duration::from_millis(50),
            )),
        FailsOnce {
            failed: Mutex::new(Vec::new()),
            seen,
        },
    );
    tokio::time::timeout(PATIENCE, handle.registered())
        .await
        .expect("registered in time")
        .expect("registered");

    runtime
        .client
        .event_store(TenantId::DEVELOPMENT)
        .commit(
            &DishPrepared {
                dish: "Taco".into(),
            },
            "kitchen-1",
        )
        .await
        .expect("commit");

    let (dish, first) = next(&mut received).await;
    let (again, retry) = next(&mut received).await;
    assert_eq!((dish.as_str(), first.retries), ("Taco", 0));
    assert_eq!((again.as_str(), retry.retries), ("Taco", 1));
    assert!(
        retry
            .previous_failure
            .as_deref()
            .is_some_and(|reason| reason.contains("the oven is cold for Taco")),
        "{:?}",
        retry.previous_failure
    );
    assert_eq!(
        retry.partition.as_str(),
        dolittle_sdk::types::PartitionId::UNPARTITIONED_TEXT
    );
    runtime.stop().await;
}

/// Fails for ever on one event source, records the rest.
struct FailsFor {
    event_source: &'static str,
    seen: mpsc::UnboundedSender<String>,
}

impl EventHandler for FailsFor {
    type Events = DishPrepared;

    async fn handle(
        &self,
        event: HandledEvent<DishPrepared>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        if context.event_source.as_str() == self.event_source {
            return Err("this kitchen is closed".into());
        }
        let _ = self
            .seen
            .send(event.known().map(|event| event.dish).unwrap_or_default());
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_partition_does_not_hold_up_the_others() {
    let runtime = TestRuntime::start().await;
    let (seen, mut received) = mpsc::unbounded_channel();
    let handle = runtime.client.register_event_handler(
        EventHandlerOptions::new(handler_id(3)).retry_backoff(Backoff::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        )),
        FailsFor {
            event_source: "closed kitchen",
            seen,
        },
    );
    tokio::time::timeout(PATIENCE, handle.registered())
        .await
        .expect("registered in time")
        .expect("registered");
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);

    store
        .commit(
            &DishPrepared {
                dish: "Burnt".into(),
            },
            "closed kitchen",
        )
        .await
        .expect("commit");
    store
        .commit(
            &DishPrepared {
                dish: "Taco".into(),
            },
            "open kitchen",
        )
        .await
        .expect("commit");

    assert_eq!(next(&mut received).await, "Taco");
    runtime.stop().await;
}

#[tokio::test]
async fn several_handlers_on_one_client_each_get_every_event_for_every_tenant() {
    let runtime = TestRuntime::start().await;
    let (first_seen, mut first) = mpsc::unbounded_channel();
    let (second_seen, mut second) = mpsc::unbounded_channel();
    let handles = [
        runtime.client.register_event_handler(
            EventHandlerOptions::new(handler_id(4)),
            Recorder { seen: first_seen },
        ),
        runtime.client.register_event_handler(
            EventHandlerOptions::new(handler_id(5)).partitioned(false),
            Recorder { seen: second_seen },
        ),
    ];
    for handle in &handles {
        tokio::time::timeout(PATIENCE, handle.registered())
            .await
            .expect("registered in time")
            .expect("registered");
    }

    runtime
        .client
        .event_store(SECOND_TENANT)
        .commit(
            &ChefHired {
                chef: "Remy".into(),
            },
            "kitchen",
        )
        .await
        .expect("commit");

    for received in [&mut first, &mut second] {
        let (event, context) = next(received).await;
        assert_eq!(context.tenant, SECOND_TENANT);
        assert!(matches!(
            event,
            HandledEvent::Known(KitchenEvent::ChefHired(_))
        ));
    }
    runtime.stop().await;
}

/// Takes its time, so that shutdown has an event in flight to wait for.
struct Slow {
    started: mpsc::UnboundedSender<u64>,
    finished: mpsc::UnboundedSender<u64>,
}

impl EventHandler for Slow {
    type Events = DishPrepared;

    async fn handle(
        &self,
        _event: HandledEvent<DishPrepared>,
        context: EventContext,
    ) -> Result<(), HandlerError> {
        let _ = self.started.send(context.sequence_number);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = self.finished.send(context.sequence_number);
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_answers_events_in_flight_and_closes_the_reverse_calls() {
    let runtime = TestRuntime::start().await;
    let (finished, mut done) = mpsc::unbounded_channel();
    let (started, mut began) = mpsc::unbounded_channel();
    let handle = runtime.client.register_event_handler(
        EventHandlerOptions::new(handler_id(6)),
        Slow { started, finished },
    );
    tokio::time::timeout(PATIENCE, handle.registered())
        .await
        .expect("registered in time")
        .expect("registered");
    runtime
        .client
        .event_store(TenantId::DEVELOPMENT)
        .commit_events(vec![
            uncommitted(
                &DishPrepared {
                    dish: "Taco".into(),
                },
                "k",
                false,
            )
            .expect("event"),
        ])
        .await
        .expect("commit");
    assert_eq!(next(&mut began).await, 0);

    runtime.client.shutdown().await;

    assert_eq!(handle.state(), ProcessorState::Stopped);
    assert_eq!(
        done.try_recv().ok(),
        Some(0),
        "the event in flight was finished"
    );
    assert!(runtime.client.is_shut_down());
    assert!(matches!(
        runtime
            .client
            .event_store(TenantId::DEVELOPMENT)
            .commit(&DishPrepared { dish: "x".into() }, "k")
            .await,
        Err(dolittle_sdk::Error::ShutDown)
    ));

    // The Runtime let go of the registration: a new client can register the same id.
    let again = TestRuntime::connect_to(&runtime.address).await;
    let (finished, _done) = mpsc::unbounded_channel();
    let (started, _began) = mpsc::unbounded_channel();
    let handle = again.register_event_handler(
        EventHandlerOptions::new(handler_id(6)),
        Slow { started, finished },
    );
    tokio::time::timeout(PATIENCE, handle.registered())
        .await
        .expect("registered again in time")
        .expect("registered again");
    again.shutdown().await;
    runtime.stop().await;
}

#[tokio::test]
async fn a_refused_registration_is_retried_and_its_reason_shown_in_the_state() {
    let runtime = TestRuntime::start().await;
    let (seen, _received) = mpsc::unbounded_channel();
    let handle = runtime.client.register_event_handler(
        EventHandlerOptions::new(EventProcessorId::NIL),
        Recorder { seen },
    );

    let reason = tokio::time::timeout(PATIENCE, async {
        loop {
            if let ProcessorState::Reconnecting { reason } = handle.state() {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the refusal arrived in time");

    assert!(reason.contains("registration refused"), "{reason}");
    assert!(
        reason.contains(
            &dolittle_contracts::failure_ids::CANNOT_REGISTER_EVENT_HANDLER_ON_NON_WRITEABLE_STREAM
                .to_string()
        ),
        "{reason}"
    );
    assert_eq!(handle.registrations(), 0);
    runtime.stop().await;
    assert_eq!(handle.state(), ProcessorState::Stopped);
}
