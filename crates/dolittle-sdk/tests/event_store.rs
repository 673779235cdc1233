//! Committing through the SDK to a real Runtime over loopback.

mod common;

use common::{SECOND_TENANT, TestRuntime};
use dolittle_sdk::types::{EventSourceId, TenantId};
use dolittle_sdk::{Error, EventType, Events, uncommitted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "0b0a8c39-2f0a-4f5b-9f64-0d1c1d0f4b11", generation = 2)]
struct DishPrepared {
    dish: String,
    chef: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "3a1e5f0e-8d6c-4b0e-a0de-6c1d0a8e2f22")]
struct DishAddedToMenu {
    dish: String,
}

#[derive(Debug, Clone, PartialEq, Events)]
enum KitchenEvent {
    DishPrepared(DishPrepared),
    DishAddedToMenu(DishAddedToMenu),
}

fn taco() -> DishPrepared {
    DishPrepared {
        dish: "Bean Blaster Taco".into(),
        chef: "Mr. Taco".into(),
    }
}

#[tokio::test]
async fn one_event_is_committed_with_its_type_content_and_string_event_source() {
    let runtime = TestRuntime::start().await;
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);

    let committed = store
        .commit(&taco(), "kitchen: Ludvig's")
        .await
        .expect("commit");

    assert_eq!(committed.sequence_number, 0);
    assert_eq!(
        committed.event_source,
        EventSourceId::from("kitchen: Ludvig's")
    );
    assert_eq!(committed.event_type, DishPrepared::EVENT_TYPE);
    assert_eq!(committed.event_type.generation, 2);
    assert!(!committed.public);
    let content: DishPrepared = serde_json::from_str(&committed.content).expect("json");
    assert_eq!(content, taco());
    assert_eq!(committed.execution_context.tenant, TenantId::DEVELOPMENT);
    assert_eq!(
        committed.execution_context.microservice,
        common::MICROSERVICE
    );
    assert_eq!(committed.execution_context.environment, "Test");
    assert_eq!(committed.execution_context.version.minor, 2);
    runtime.stop().await;
}

#[tokio::test]
async fn a_batch_is_committed_in_order_and_public_events_stay_public() {
    let runtime = TestRuntime::start().await;
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);

    let batch = store
        .commit_batch([
            (
                EventSourceId::from("kitchen-1"),
                KitchenEvent::from(DishAddedToMenu {
                    dish: "Taco".into(),
                }),
            ),
            (EventSourceId::from("kitchen-1"), KitchenEvent::from(taco())),
        ])
        .await
        .expect("batch");
    let public = store
        .commit_public(&taco(), "kitchen-2")
        .await
        .expect("public");
    let mixed = store
        .commit_events(vec![
            uncommitted(&taco(), "a", true).expect("event"),
            uncommitted(&taco(), "b", false).expect("event"),
        ])
        .await
        .expect("mixed");

    let numbers: Vec<u64> = batch.iter().map(|event| event.sequence_number).collect();
    assert_eq!(numbers, [0, 1]);
    assert_eq!(batch[0].event_type, DishAddedToMenu::EVENT_TYPE);
    assert_eq!(batch[1].event_type, DishPrepared::EVENT_TYPE);
    assert!(public.public);
    assert_eq!(public.sequence_number, 2);
    assert_eq!(
        mixed.iter().map(|event| event.public).collect::<Vec<_>>(),
        [true, false]
    );
    runtime.stop().await;
}

#[tokio::test]
async fn tenants_have_separate_event_logs() {
    let runtime = TestRuntime::start().await;
    runtime
        .client
        .event_store(TenantId::DEVELOPMENT)
        .commit(&taco(), "k")
        .await
        .expect("commit");
    runtime
        .client
        .event_store(TenantId::DEVELOPMENT)
        .commit(&taco(), "k")
        .await
        .expect("commit");

    let other = runtime
        .client
        .event_store(SECOND_TENANT)
        .commit(&taco(), "k")
        .await
        .expect("commit");

    assert_eq!(other.sequence_number, 0);
    assert_eq!(other.execution_context.tenant, SECOND_TENANT);
    runtime.stop().await;
}

#[tokio::test]
async fn failures_of_the_runtime_are_values_with_their_failure_id() {
    let runtime = TestRuntime::start().await;
    let store = runtime.client.event_store(TenantId::DEVELOPMENT);

    let empty = store.commit_events(Vec::new()).await;
    let unknown_tenant = runtime
        .client
        .event_store(TenantId::new_random())
        .commit(&taco(), "k")
        .await;

    match empty {
        Err(Error::Runtime { id, .. }) => {
            assert_eq!(id, dolittle_contracts::failure_ids::NO_EVENTS_TO_COMMIT)
        }
        other => panic!("expected a runtime failure, got {other:?}"),
    }
    assert!(unknown_tenant.is_err(), "an unknown tenant is refused");
    runtime.stop().await;
}

#[tokio::test]
async fn a_client_that_cannot_reach_the_runtime_reports_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);

    let result = dolittle_sdk::Client::builder()
        .runtime(address)
        .connect_attempts(2)
        .backoff(dolittle_sdk::Backoff::new(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(10),
        ))
        .connect()
        .await;
    let invalid = dolittle_sdk::Client::builder()
        .runtime("not a uri")
        .connect()
        .await;

    assert!(matches!(result, Err(Error::Connect { attempts: 2, .. })));
    assert!(matches!(invalid, Err(Error::InvalidAddress { .. })));
}
