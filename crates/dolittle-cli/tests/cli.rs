//! Every `dolittle` command, in table and JSON form, against a whole Runtime in-process: the
//! real binary, real HTTP on loopback, real SQLite stores and a real head over gRPC.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::ManagedRuntime;
use common::heads::TestEventHandler;
use dolittle_runtime::config::Overrides;
use dolittle_store::{
    FailingPartition, FilterDefinition, KeySelector, ProcessorKey, ProcessorKind,
    ProjectionDefinition, ProjectionEventSelector, ReadModelChange, StreamDefinition,
    StreamProcessorState,
};
use dolittle_types::{
    AggregateRootId, EventProcessorId, EventType, EventTypeId, PartitionId, ScopeId, StreamId,
    TenantId, Timestamp, UncommittedAggregateEvent, UncommittedAggregateEvents, UncommittedEvent,
    Uuid,
};
use serde_json::{Value, json};

const IDLE_HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888));
const LIVE_HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000));
const PROJECTION: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100));
const KITCHEN: AggregateRootId =
    AggregateRootId(Uuid::from_u128(0xa1b2_c3d4_e5f6_4789_8abc_def0_1234_5678));

fn event_type(n: u128) -> EventType {
    EventType::new(EventTypeId(Uuid::from_u128(n)), 1)
}

/// What the command printed and how it exited.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }
}

/// Runs `dolittle` against the Runtime's management endpoint.
async fn dolittle(runtime: &ManagedRuntime, arguments: &[&str]) -> Ran {
    let mut all = vec!["--runtime".to_owned(), runtime.management.to_string()];
    all.extend(arguments.iter().map(|argument| (*argument).to_owned()));
    run(all).await
}

async fn run(arguments: Vec<String>) -> Ran {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dolittle"))
            .args(&arguments)
            .env("COLUMNS", "200")
            .env_remove("DOLITTLE_MANAGEMENT_TOKEN")
            .env_remove("DOLITTLE_RUNTIME")
            .env_remove("DOLITTLE_TENANT")
            .output()
            .expect("run dolittle");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the command ran")
}

/// Events, an aggregate, an idle partitioned handler with a failing partition and an idle
/// projection with read models, written through the tenant's store.
async fn seed(runtime: &ManagedRuntime) {
    let store = runtime
        .context
        .tenants
        .store(TenantId::DEVELOPMENT)
        .expect("store")
        .clone();
    let context = common::execution_context(TenantId::DEVELOPMENT);
    let events = ["anna", "bob", "anna"]
        .iter()
        .map(|source| UncommittedEvent {
            event_source: (*source).into(),
            event_type: event_type(1),
            public: false,
            content: format!(r#"{{"name": "{source}"}}"#),
        })
        .collect();
    store.commit(events, &context).await.expect("commit");
    store
        .commit_aggregate(
            UncommittedAggregateEvents {
                aggregate_root: KITCHEN,
                event_source: "kitchen 1".into(),
                expected_version: 0,
                events: vec![UncommittedAggregateEvent {
                    event_type: event_type(2),
                    public: false,
                    content: r#"{"dish": "taco"}"#.into(),
                }],
            },
            &context,
        )
        .await
        .expect("aggregate commit");
    store
        .put_stream_definition(
            ScopeId::DEFAULT,
            &StreamDefinition {
                stream: StreamId(IDLE_HANDLER.0),
                partitioned: true,
                public: false,
                filter: FilterDefinition::EventTypes(vec![event_type(1).id]),
            },
        )
        .await
        .expect("stream definition");
    let mut failing_partitions = BTreeMap::new();
    failing_partitions.insert(
        PartitionId("bob".into()),
        FailingPartition {
            position: 1,
            reason: "bob is not welcome".into(),
            attempts: 4,
            retry_time: Some(Timestamp::now()),
            last_failed: Timestamp::now(),
        },
    );
    store
        .save_processor_state(
            &ProcessorKey {
                kind: ProcessorKind::EventHandler,
                scope: ScopeId::DEFAULT,
                processor: IDLE_HANDLER,
            },
            &StreamProcessorState {
                position: 3,
                partitioned: true,
                last_successfully_processed: Some(Timestamp::now()),
                failure: None,
                failing_partitions,
            },
        )
        .await
        .expect("processor state");
    let projection_key = ProcessorKey {
        kind: ProcessorKind::Projection,
        scope: ScopeId::DEFAULT,
        processor: PROJECTION,
    };
    store
        .put_projection_definition(&ProjectionDefinition {
            projection: PROJECTION,
            scope: ScopeId::DEFAULT,
            selectors: vec![ProjectionEventSelector {
                event_type: event_type(1).id,
                key_selector: KeySelector::EventSource,
            }],
            initial_state: "{}".into(),
        })
        .await
        .expect("projection definition");
    store
        .apply_read_model_changes(
            ScopeId::DEFAULT,
            PROJECTION,
            vec![ReadModelChange {
                key: "anna".into(),
                state: Some(r#"{"visits": 2}"#.into()),
            }],
            &projection_key,
            &StreamProcessorState {
                position: 3,
                ..StreamProcessorState::default()
            },
        )
        .await
        .expect("read models");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_answers_in_table_and_json_form() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    seed(&runtime).await;
    let idle = IDLE_HANDLER.to_string();
    let projection = PROJECTION.to_string();
    let kitchen = KITCHEN.to_string();
    let tenant = TenantId::DEVELOPMENT.to_string();

    let ran = dolittle(&runtime, &["runtime", "info"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        ran.stdout
    );
    let ran = dolittle(&runtime, &["runtime", "info", "--output", "json"]).await;
    assert_eq!(ran.json()["tenants"], json!(1));

    let ran = dolittle(&runtime, &["runtime", "tenants", "list"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains(&tenant) && ran.stdout.contains("sqlite"),
        "{}",
        ran.stdout
    );
    let ran = dolittle(
        &runtime,
        &["runtime", "tenants", "list", "--output", "json"],
    )
    .await;
    assert_eq!(ran.json()[0]["id"], json!(tenant));

    let ran = dolittle(&runtime, &["runtime", "eventhandlers", "list"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let row = ran
        .stdout
        .lines()
        .find(|line| line.starts_with(&idle[..8]))
        .unwrap_or_else(|| panic!("a row for the handler: {}", ran.stdout));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2..7], ["failing", "3", "4", "1", "1"], "{row}");
    let ran = dolittle(&runtime, &["runtime", "eventhandlers", "list", "--wide"]).await;
    assert!(
        ran.stdout.contains(&idle),
        "whole ids with --wide: {}",
        ran.stdout
    );
    assert!(ran.stdout.contains("EVENT TYPES"), "{}", ran.stdout);
    let ran = dolittle(
        &runtime,
        &["runtime", "eventhandlers", "list", "--output", "json"],
    )
    .await;
    assert_eq!(
        ran.json()[0]["tenants"][0]["failing_partitions"][0]["partition"],
        json!("bob")
    );

    let ran = dolittle(&runtime, &["runtime", "eventhandlers", "get", &idle]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("bob is not welcome"), "{}", ran.stdout);
    assert!(ran.stdout.contains("PARTITION"), "{}", ran.stdout);
    let ran = dolittle(
        &runtime,
        &["runtime", "eventhandlers", "get", &idle, "--output", "json"],
    )
    .await;
    assert_eq!(ran.json()["partitioned"], json!(true));

    let ran = dolittle(
        &runtime,
        &["runtime", "eventhandlers", "replay", "from", &idle, "99"],
    )
    .await;
    assert_eq!(ran.code, 1, "refused: {}", ran.stdout);
    assert!(
        ran.stderr
            .contains("past the processor's current position 3"),
        "{}",
        ran.stderr
    );
    let ran = dolittle(
        &runtime,
        &[
            "runtime",
            "eventhandlers",
            "replay",
            "from",
            &idle,
            "2",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json()["replayed"]["tenants"][0]["position"], json!(2));
    let ran = dolittle(
        &runtime,
        &["runtime", "eventhandlers", "replay", "all", &idle],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("every tenant"), "{}", ran.stdout);

    let ran = dolittle(&runtime, &["runtime", "projections", "list"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains(&projection[..8]), "{}", ran.stdout);
    let ran = dolittle(
        &runtime,
        &["runtime", "projections", "list", "--output", "json"],
    )
    .await;
    assert_eq!(ran.json()[0]["kind"], json!("projection"));
    let ran = dolittle(&runtime, &["runtime", "projections", "get", &projection]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains(r#"{"visits":2}"#), "{}", ran.stdout);
    let ran = dolittle(
        &runtime,
        &[
            "runtime",
            "projections",
            "get",
            &projection,
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(ran.json()["id"], json!(projection));

    let ran = dolittle(&runtime, &["runtime", "aggregates", "list"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains(&kitchen), "{}", ran.stdout);
    let ran = dolittle(
        &runtime,
        &["runtime", "aggregates", "list", "--output", "json"],
    )
    .await;
    assert_eq!(ran.json()[0]["instances"][0]["version"], json!(1));
    let ran = dolittle(&runtime, &["runtime", "aggregates", "get", &kitchen]).await;
    assert!(ran.stdout.contains("kitchen 1"), "{}", ran.stdout);
    let ran = dolittle(
        &runtime,
        &["runtime", "aggregates", "get", &kitchen, "--output", "json"],
    )
    .await;
    assert_eq!(ran.json()[0]["aggregate_root"], json!(kitchen));
    let ran = dolittle(
        &runtime,
        &["runtime", "aggregates", "events", &kitchen, "kitchen 1"],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("taco"), "{}", ran.stdout);
    let ran = dolittle(
        &runtime,
        &[
            "runtime",
            "aggregates",
            "events",
            &kitchen,
            "kitchen 1",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(ran.json()["version"], json!(1));

    let ran = dolittle(&runtime, &["runtime", "eventtypes", "list"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains(&event_type(1).id.to_string()),
        "{}",
        ran.stdout
    );
    let ran = dolittle(
        &runtime,
        &["runtime", "eventtypes", "list", "--output", "json"],
    )
    .await;
    assert_eq!(ran.json()["event_types"][0]["events"], json!(3));

    let ran = dolittle(&runtime, &["runtime", "events", "--limit", "2"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("anna") && ran.stdout.contains("bob"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("--from 2"),
        "where the next page starts: {}",
        ran.stderr
    );
    let ran = dolittle(
        &runtime,
        &[
            "runtime",
            "events",
            "--event-source",
            "kitchen 1",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(ran.json()["events"][0]["sequence_number"], json!(3));
    assert_eq!(ran.json()["events"].as_array().map(Vec::len), Some(1));

    let ran = dolittle(&runtime, &["runtime", "projections", "replay", &projection]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = dolittle(
        &runtime,
        &[
            "runtime",
            "projections",
            "get",
            &projection,
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(ran.code, 1, "the projection is dropped: {}", ran.stdout);
    runtime.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_wait_follows_a_connected_handler_until_it_has_caught_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    seed(&runtime).await;
    let mut handler = TestEventHandler::register(
        &runtime,
        LIVE_HANDLER,
        ScopeId::DEFAULT,
        &[event_type(1)],
        false,
    )
    .await;
    assert!(handler.refused.is_none(), "{:?}", handler.refused);
    let handled = Arc::new(AtomicUsize::new(0));
    let head = tokio::spawn({
        let handled = handled.clone();
        async move {
            loop {
                let request = handler.next_request().await;
                handled.fetch_add(1, Ordering::SeqCst);
                handler.respond(&request, None).await;
            }
        }
    });
    let live = LIVE_HANDLER.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while handled.load(Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the head got its events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ran = dolittle(
        &runtime,
        &["runtime", "eventhandlers", "replay", "all", &live, "--wait"],
    )
    .await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.lines().any(|line| line.starts_with("position ")),
        "plain progress lines when stdout is not a terminal: {}",
        ran.stdout
    );
    assert!(ran.stdout.contains("caught up at 4 of 4"), "{}", ran.stdout);
    assert!(
        handled.load(Ordering::SeqCst) >= 6,
        "the head saw every event again"
    );

    let ran = dolittle(
        &runtime,
        &[
            "runtime",
            "eventhandlers",
            "replay",
            "from",
            &live,
            "1",
            "--wait",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json()["tenants"][0]["lag"], json!(0));
    head.abort();
    runtime.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_replay_with_wait_rebuilds_a_connected_projection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    seed(&runtime).await;
    let live = EventProcessorId(Uuid::from_u128(0x3c4d_5e6f_7a8b));
    let answered = Arc::new(AtomicUsize::new(0));
    let counted = answered.clone();
    let _head = common::projection_head::TestProjection::register(
        common::connect(runtime.private).await,
        live,
        ScopeId::DEFAULT,
        &[(event_type(1), common::projection_head::Key::EventSource)],
        "{}",
    )
    .await
    .serve(move |_| {
        let round = counted.fetch_add(1, Ordering::SeqCst) / 3 + 1;
        common::projection_head::Answer::Replace(format!(r#"{{"round":{round}}}"#))
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the head got its events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = live.to_string();
    let ran = dolittle(
        &runtime,
        &["runtime", "projections", "replay", &id, "--wait"],
    )
    .await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("caught up at 4 of 4"), "{}", ran.stdout);
    assert_eq!(
        answered.load(Ordering::SeqCst),
        6,
        "the head was asked again for each of the 3 events"
    );
    let ran = dolittle(
        &runtime,
        &["runtime", "projections", "get", &id, "--output", "json"],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json()["tenants"][0]["rebuilding"], json!(false));
    let ran = dolittle(&runtime, &["runtime", "projections", "get", &id]).await;
    assert!(
        ran.stdout.contains(r#"{"round":2}"#),
        "the rebuilt read models replaced the live ones: {}",
        ran.stdout
    );
    runtime.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_and_refusals_have_their_exit_codes_and_messages() {
    let unreachable = run(vec![
        "--runtime".into(),
        "127.0.0.1:1".into(),
        "runtime".into(),
        "tenants".into(),
        "list".into(),
    ])
    .await;
    assert_eq!(unreachable.code, 1);
    assert!(
        unreachable
            .stderr
            .contains("cannot reach the Runtime at 127.0.0.1:1"),
        "{}",
        unreachable.stderr
    );
    assert_eq!(
        unreachable.stderr.lines().count(),
        1,
        "one line, no stack of errors"
    );

    let usage = run(vec!["runtime".into(), "eventhandlers".into(), "fly".into()]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    let usage = run(vec![
        "runtime".into(),
        "events".into(),
        "--output".into(),
        "xml".into(),
    ])
    .await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);

    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = ManagedRuntime::start(
        dir.path(),
        &[TenantId::DEVELOPMENT],
        Overrides {
            management_token: Some("open sesame".into()),
            ..Overrides::default()
        },
    )
    .await;
    let refused = dolittle(
        &runtime,
        &["runtime", "tenants", "list", "--token", "wrong"],
    )
    .await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let accepted = dolittle(
        &runtime,
        &["runtime", "tenants", "list", "--token", "open sesame"],
    )
    .await;
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);

    let unknown = dolittle(
        &runtime,
        &[
            "--token",
            "open sesame",
            "--tenant",
            "11111111-2222-3333-4444-555555555555",
            "runtime",
            "events",
        ],
    )
    .await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("is not configured"),
        "{}",
        unknown.stderr
    );
    runtime.stop().await;
}
