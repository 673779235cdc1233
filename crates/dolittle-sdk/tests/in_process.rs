//! The `in-process` feature: a client that starts its own Runtime in this process, on the
//! embedded store in a folder, and stops it on shutdown. Run with
//! `cargo test -p dolittle-sdk --features in-process --test in_process`.

use dolittle_sdk::types::{MicroserviceId, TenantId, Uuid};
use dolittle_sdk::{Client, EventType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventType)]
#[event_type(id = "b1e55ed0-0000-4000-8000-000000000001")]
struct Noted {
    text: String,
}

const MICROSERVICE: MicroserviceId =
    MicroserviceId(Uuid::from_u128(0x6d1c2b3a_4f5e_4d7c_8b9a_0f1e2d3c4b5a));

#[tokio::test]
async fn an_in_process_runtime_keeps_events_across_restarts_of_the_application() {
    let folder = tempfile::tempdir().expect("temporary folder");

    let client = Client::builder()
        .microservice(MICROSERVICE)
        .start_in_process(folder.path(), &[])
        .await
        .expect("starts");
    let first = client
        .event_store(TenantId::DEVELOPMENT)
        .commit(&Noted { text: "one".into() }, "notebook")
        .await
        .expect("commit");
    assert!(client.runtime_address().starts_with("http://127.0.0.1:"));
    client.shutdown().await;

    let again = Client::builder()
        .microservice(MICROSERVICE)
        .start_in_process(folder.path(), &[])
        .await
        .expect("starts again");
    let second = again
        .event_store(TenantId::DEVELOPMENT)
        .commit(&Noted { text: "two".into() }, "notebook")
        .await
        .expect("commit");
    again.shutdown().await;

    assert_eq!(first.sequence_number, 0);
    assert_eq!(
        second.sequence_number, 1,
        "the first event was kept on disk"
    );
    assert_eq!(second.execution_context.microservice, MICROSERVICE);
    assert!(
        folder
            .path()
            .join(".dolittle")
            .join("tenants.json")
            .exists(),
        "the configuration was written"
    );
}
