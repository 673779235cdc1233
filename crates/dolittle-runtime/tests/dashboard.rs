//! The dashboard in a real headless Chromium: a Runtime with a partitioned event handler whose
//! partition fails, the page opened by `tests/dashboard/dashboard.mjs` (playwright-core and
//! Debian's chromium), which finds the failing partition and its reason, presses replay and
//! sees the position go back; the head then receives the events again from the start.
//!
//! Ignored in a plain `cargo test` because it needs Chromium and Node: `tests/dashboard/run.sh`
//! installs them and runs it with `--ignored`, failing when it cannot.

mod common;
#[path = "common/managed.rs"]
mod managed;

use std::path::PathBuf;
use std::time::Duration;

use common::heads::{TestEventHandler, event_of};
use common::{commit, event_type, uncommitted};
use dolittle_contracts::runtime::events::event_store_client::EventStoreClient;
use dolittle_runtime::config::Overrides;
use dolittle_types::{EventProcessorId, ScopeId, TenantId, Uuid};
use managed::ManagedRuntime;
use serde_json::json;

const HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x3c4d5e6f_7a8b_4c9d_8e0f_1a2b3c4d5e6f));
const REASON: &str = "the printer is out of paper";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and Node: run tests/dashboard/run.sh"]
async fn the_dashboard_shows_a_failing_partition_and_replays_from_a_button() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    let mut store = EventStoreClient::new(common::connect(runtime.private).await);
    let events = ["a", "b", "a"]
        .iter()
        .map(|source| {
            uncommitted(
                source,
                event_type(1),
                &format!(r#"{{"source":"{source}"}}"#),
            )
        })
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    for _ in 0..3 {
        let request = handler.next_request().await;
        let failure = (event_of(&request).event_source.as_str() == "b")
            .then_some((REASON, Duration::from_secs(3600)));
        handler.respond(&request, failure).await;
    }
    runtime
        .wait_for(&format!("/api/event-handlers/{HANDLER}"), |view| {
            view["tenants"][0]["failing_partitions"][0]["reason"] == json!(REASON)
                && view["tenants"][0]["position"] == json!(3)
        })
        .await;

    // The head answers pings but holds every request while the browser looks, so that the
    // position the replay goes back to stays on the page until the browser has seen it.
    let (stop_holding, mut stop) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop => return (handler, held),
                request = handler.next_request() => held.push(request),
            }
        }
    });
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = repository.join("tests/dashboard/dashboard.mjs");
    let screenshots = repository.join("target/dashboard");
    let url = format!("http://{}/", runtime.management);
    let browser = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .env("DASHBOARD_URL", url)
            .env("HANDLER_ID", HANDLER.to_string())
            .env("FAILURE_REASON", REASON)
            .env("SCREENSHOT_DIR", &screenshots)
            .output()
    })
    .await
    .expect("the browser task ran")
    .expect("node runs (is it installed? see tests/dashboard/run.sh)");
    println!("{}", String::from_utf8_lossy(&browser.stdout));
    assert!(
        browser.status.success(),
        "the dashboard check failed:\n{}\n{}",
        String::from_utf8_lossy(&browser.stdout),
        String::from_utf8_lossy(&browser.stderr)
    );

    let _ = stop_holding.send(());
    let (mut handler, held) = holder.await.expect("the holding head");
    assert!(
        !held.is_empty(),
        "the replay sent the head an event while the browser looked"
    );
    let mut replayed = Vec::new();
    for request in &held {
        replayed.push(event_of(request).sequence_number);
        handler.respond(request, None).await;
    }
    while replayed.len() < 3 {
        let request = handler.next_request().await;
        replayed.push(event_of(&request).sequence_number);
        handler.respond(&request, None).await;
    }
    replayed.sort_unstable();
    assert_eq!(replayed, vec![0, 1, 2], "the head got every event again");
    runtime
        .wait_for(&format!("/api/event-handlers/{HANDLER}"), |view| {
            view["tenants"][0]["state"] == json!("running")
                && view["tenants"][0]["position"] == json!(3)
        })
        .await;
    runtime.stop().await;
}
