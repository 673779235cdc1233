//! The management API and the per-processor metrics against a whole Runtime in-process: real
//! stores, a real head over gRPC, real HTTP on loopback.

mod common;
#[path = "common/managed.rs"]
mod managed;
#[path = "common/projection_head.rs"]
mod projection_head;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::heads::{PATIENCE, TestEventHandler, event_of};
use common::{SECOND_TENANT, commit, event_type, execution_context, uncommitted};
use dolittle_contracts::runtime::events::event_store_client::EventStoreClient;
use dolittle_runtime::config::{Overrides, RuntimeConfig};
use dolittle_types::{
    AggregateRootId, EventProcessorId, ScopeId, TenantId, UncommittedAggregateEvent,
    UncommittedAggregateEvents, Uuid,
};
use managed::{ManagedRuntime, http};
use serde_json::{Value, json};

const HANDLER: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x5e1d2c3b_4a59_4687_9a0b_1c2d3e4f5a6b));

fn processor_of_tenant(view: &Value, tenant: TenantId) -> Value {
    view["tenants"]
        .as_array()
        .and_then(|tenants| {
            tenants
                .iter()
                .find(|entry| entry["tenant"] == json!(tenant.to_string()))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_runtime_its_tenants_and_the_openapi_document_are_described() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = ManagedRuntime::start(
        dir.path(),
        &[TenantId::DEVELOPMENT, SECOND_TENANT],
        Overrides::default(),
    )
    .await;
    let (status, described) = runtime.get("/api/runtime").await;
    assert_eq!(status, 200);
    assert_eq!(described["version"], json!(env!("CARGO_PKG_VERSION")));
    assert_eq!(described["tenants"], json!(2));
    assert!(described["uptime_seconds"].as_f64().is_some());

    let (status, tenants) = runtime.get("/api/tenants").await;
    assert_eq!(status, 200);
    let tenants = tenants.as_array().expect("a list of tenants");
    assert_eq!(tenants.len(), 2);
    assert_eq!(tenants[0]["id"], json!(TenantId::DEVELOPMENT.to_string()));
    assert_eq!(tenants[0]["store"]["backend"], json!("sqlite"));
    assert!(
        tenants[0]["store"]["location"]
            .as_str()
            .is_some_and(|location| location.contains(".db")),
        "{tenants:?}"
    );

    let (status, document) = runtime.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], json!("3.0.3"));
    let paths = document["paths"].as_object().expect("paths");
    // Every route of the management router, as written in `management::router`.
    let routes = include_str!("../src/management/mod.rs");
    let mut described = 0;
    for route in routes
        .split(".route(")
        .skip(1)
        .filter_map(|call| call.trim_start().strip_prefix('"'))
        .filter_map(|call| call.split('"').next())
        .filter(|path| path.starts_with("/api/") && *path != "/api/openapi.json")
    {
        assert!(paths.contains_key(route), "the document describes {route}");
        described += 1;
    }
    assert!(described >= 19, "every route was found: {described}");
    for path in ["/api/runtime", "/api/event-handlers/{id}/replay"] {
        assert!(paths.contains_key(path), "the document describes {path}");
    }

    let (status, unknown) = runtime
        .get(&format!("/api/tenants/{}/events", Uuid::from_u128(7)))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        unknown["failure"]["id"],
        json!(dolittle_runtime::failures::UNKNOWN_TENANT.to_string())
    );
    let (status, invalid) = runtime.get("/api/tenants/not-a-guid/events").await;
    assert_eq!(status, 400);
    assert_eq!(
        invalid["failure"]["id"],
        json!(dolittle_runtime::failures::INVALID_REQUEST.to_string())
    );
    let (status, page) = runtime.get("/").await;
    assert_eq!(status, 200, "the dashboard is served: {page}");
    runtime.stop().await;
}

#[tokio::test]
async fn event_handlers_show_failing_partitions_and_replay_from_a_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    let mut store = EventStoreClient::new(common::connect(runtime.private).await);
    let events = ["a", "b", "a"]
        .iter()
        .map(|source| uncommitted(source, event_type(1), r#"{"n": 1}"#))
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], true)
            .await;
    for _ in 0..3 {
        let request = handler.next_request().await;
        let failure = (event_of(&request).event_source.as_str() == "b")
            .then_some(("the printer is out of paper", Duration::from_secs(3600)));
        handler.respond(&request, failure).await;
    }
    let path = format!("/api/event-handlers/{HANDLER}");
    let view = runtime
        .wait_for(&path, |view| {
            let tenant = processor_of_tenant(view, TenantId::DEVELOPMENT);
            tenant["position"] == json!(3) && tenant["state"] == json!("failing")
        })
        .await;
    assert_eq!(view["kind"], json!("event-handler"));
    assert_eq!(view["partitioned"], json!(true));
    assert_eq!(view["registered"], json!(true));
    assert_eq!(view["event_types"], json!([event_type(1).id.to_string()]));
    let tenant = processor_of_tenant(&view, TenantId::DEVELOPMENT);
    assert_eq!(tenant["log_tail"], json!(3));
    assert_eq!(tenant["lag"], json!(0));
    let failing = &tenant["failing_partitions"][0];
    assert_eq!(failing["partition"], json!("b"));
    assert_eq!(failing["position"], json!(1));
    assert_eq!(failing["reason"], json!("the printer is out of paper"));
    assert_eq!(failing["attempts"], json!(1));
    assert!(failing["retry_time"].as_str().is_some(), "{failing}");

    let (status, listed) = runtime.get("/api/event-handlers").await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let (status, refused) = runtime
        .post(
            &format!("{path}/replay"),
            json!({"tenant": TenantId::DEVELOPMENT, "from": 10}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    let reason = refused["failure"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("past the processor's current position 3"),
        "{reason}"
    );

    let (status, replayed) = runtime
        .post(
            &format!("{path}/replay"),
            json!({"tenant": TenantId::DEVELOPMENT, "from": 0}),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    let mut sequence_numbers = Vec::new();
    for _ in 0..3 {
        let request = handler.next_request().await;
        sequence_numbers.push(event_of(&request).sequence_number);
        handler.respond(&request, None).await;
    }
    sequence_numbers.sort_unstable();
    assert_eq!(sequence_numbers, vec![0, 1, 2], "every event again");
    let view = runtime
        .wait_for(&path, |view| {
            processor_of_tenant(view, TenantId::DEVELOPMENT)["state"] == json!("running")
        })
        .await;
    assert_eq!(
        processor_of_tenant(&view, TenantId::DEVELOPMENT)["failing_partitions"],
        json!([])
    );

    let (status, missing) = runtime
        .get(&format!("/api/event-handlers/{}", Uuid::from_u128(1)))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        missing["failure"]["id"],
        json!(dolittle_runtime::management::NOT_FOUND.to_string())
    );
    handler.disconnect();
    let view = runtime
        .wait_for(&path, |view| view["registered"] == json!(false))
        .await;
    assert_eq!(
        processor_of_tenant(&view, TenantId::DEVELOPMENT)["state"],
        json!("idle")
    );
    runtime.stop().await;
}

#[tokio::test]
async fn the_event_log_streams_aggregates_and_event_types_are_read_page_by_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    let mut store = EventStoreClient::new(common::connect(runtime.private).await);
    let events = (0..5)
        .map(|index| {
            uncommitted(
                if index % 2 == 0 { "even" } else { "odd" },
                event_type(1 + index % 2),
                &format!(r#"{{"index": {index}}}"#),
            )
        })
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    let kitchen = AggregateRootId(Uuid::from_u128(0xabc));
    runtime
        .context
        .tenants
        .store(TenantId::DEVELOPMENT)
        .expect("store")
        .commit_aggregate(
            UncommittedAggregateEvents {
                aggregate_root: kitchen,
                event_source: "kitchen 1".into(),
                expected_version: 0,
                events: vec![UncommittedAggregateEvent {
                    event_type: event_type(3),
                    public: false,
                    content: r#"{"dish": "soup"}"#.into(),
                }],
            },
            &execution_context(TenantId::DEVELOPMENT),
        )
        .await
        .expect("aggregate commit");
    let base = format!("/api/tenants/{}", TenantId::DEVELOPMENT);

    let (status, first) = runtime.get(&format!("{base}/events?limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(first["tail"], json!(6));
    assert_eq!(first["next"], json!(2));
    assert_eq!(first["events"][1]["content"], json!({"index": 1}));
    let (_, second) = runtime
        .get(&format!("{base}/events?limit=2&from={}", first["next"]))
        .await;
    assert_eq!(second["events"][0]["sequence_number"], json!(2));

    let (_, odd) = runtime
        .get(&format!("{base}/events?event_source=odd"))
        .await;
    let odd_numbers: Vec<_> = odd["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["sequence_number"].clone())
        .collect();
    assert_eq!(odd_numbers, vec![json!(1), json!(3)]);
    let (_, of_type) = runtime
        .get(&format!("{base}/events?event_type={}", event_type(3).id))
        .await;
    assert_eq!(of_type["events"][0]["event_source"], json!("kitchen 1"));
    assert_eq!(
        of_type["events"][0]["aggregate_root"],
        json!(kitchen.to_string())
    );

    let (status, types) = runtime.get(&format!("{base}/event-types")).await;
    assert_eq!(status, 200);
    assert_eq!(types["complete"], json!(true));
    let counts: Vec<_> = types["event_types"]
        .as_array()
        .expect("event types")
        .iter()
        .map(|seen| seen["events"].clone())
        .collect();
    assert_eq!(counts, vec![json!(3), json!(2), json!(1)]);

    let (status, aggregates) = runtime.get(&format!("{base}/aggregates")).await;
    assert_eq!(status, 200);
    assert_eq!(aggregates[0]["aggregate_root"], json!(kitchen.to_string()));
    assert_eq!(
        aggregates[0]["instances"],
        json!([{"event_source": "kitchen 1", "version": 1}])
    );
    let (status, instance) = runtime
        .get(&format!("{base}/aggregates/{kitchen}/kitchen%201"))
        .await;
    assert_eq!(status, 200, "{instance}");
    assert_eq!(instance["version"], json!(1));
    assert_eq!(instance["events"][0]["content"], json!({"dish": "soup"}));

    let (status, stream) = runtime
        .get(&format!("{base}/streams/{}", Uuid::nil()))
        .await;
    assert_eq!(status, 200, "{stream}");

    let (status, subscriptions) = runtime.get(&format!("{base}/subscriptions")).await;
    assert_eq!((status, subscriptions), (200, json!([])));
    let (status, consents) = runtime.get("/api/event-horizon/consents").await;
    assert_eq!((status, consents), (200, json!([])));
    let (status, read_models) = runtime
        .get(&format!(
            "{base}/projections/{}/read-models",
            Uuid::from_u128(5)
        ))
        .await;
    assert_eq!((status, read_models), (200, json!([])));
    runtime.stop().await;
}

#[tokio::test]
async fn with_a_token_every_api_request_needs_it_and_a_wrong_one_gets_401_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = ManagedRuntime::start(
        dir.path(),
        &[TenantId::DEVELOPMENT],
        Overrides {
            management_token: Some("s3cret".into()),
            ..Overrides::default()
        },
    )
    .await;
    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("s3cret"),
    ] {
        for path in ["/api/tenants", "/api/nothing-here", "/api/event-handlers"] {
            let (status, body) = http(runtime.management, "GET", path, None, authorization).await;
            assert_eq!(status, 401, "{path} with {authorization:?}");
            assert_eq!(body, "", "nothing else");
        }
    }
    let (status, body) = http(
        runtime.management,
        "GET",
        "/api/tenants",
        None,
        Some("Bearer s3cret"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&TenantId::DEVELOPMENT.to_string()));
    runtime.stop().await;
}

#[test]
fn a_management_endpoint_on_another_address_than_loopback_needs_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = RuntimeConfig::load(Overrides {
        working_dir: Some(dir.path().to_owned()),
        management_host: Some("0.0.0.0".into()),
        ..Overrides::default()
    })
    .expect_err("no token, not loopback");
    assert!(refused.to_string().contains("token"), "{refused}");

    std::fs::write(dir.path().join("token"), "from-a-file\n").expect("write token");
    let config = RuntimeConfig::load(Overrides {
        working_dir: Some(dir.path().to_owned()),
        management_host: Some("0.0.0.0".into()),
        management_token: Some("from-the-environment".into()),
        management_token_file: Some("token".into()),
        ..Overrides::default()
    })
    .expect("a token from a file");
    let token = config.management_token.expect("token");
    assert_eq!(token.0, "from-a-file");
    assert!(
        !format!("{token:?}").contains("from-a-file"),
        "never logged"
    );
}

/// The samples of one metric family in Prometheus text, by their labels.
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let value: f64 = value.parse().ok()?;
            (metric == name).then(|| (labels.to_owned(), value))
        })
        .collect()
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_lag_goes_to_zero_when_a_handler_catches_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    let (status, ready) = http(runtime.metrics, "GET", "/readyz", None, None).await;
    assert_eq!((status, ready.as_str()), (200, "ready"));
    let mut store = EventStoreClient::new(common::connect(runtime.private).await);
    let mut handler =
        TestEventHandler::register(&runtime, HANDLER, ScopeId::DEFAULT, &[event_type(1)], false)
            .await;
    let events = (0..4)
        .map(|_| uncommitted("source", event_type(1), "{}"))
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    // The handler holds the first event unanswered: the lag is the whole log.
    let first = handler.next_request().await;
    let lag_of_handler = |text: &str| {
        samples(text, "dolittle_processor_lag_events")
            .into_iter()
            .find(|(labels, _)| labels.contains(&HANDLER.to_string()))
            .map(|(_, value)| value)
    };
    let (_, text) = http(runtime.metrics, "GET", "/metrics", None, None).await;
    assert_eq!(lag_of_handler(&text), Some(4.0), "{text}");
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let value = line.rsplit_once(' ').map(|(_, value)| value).unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "a sample line: {line}");
    }
    for family in text.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let (name, kind) = family.split_once(' ').expect("name and type");
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind),
            "{family}"
        );
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "counters and only counters end in _total: {name}"
        );
    }
    handler.respond(&first, None).await;
    for _ in 0..3 {
        let request = handler.next_request().await;
        handler.respond(&request, None).await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, text) = http(runtime.metrics, "GET", "/metrics", None, None).await;
        if lag_of_handler(&text) == Some(0.0) {
            let position = samples(&text, "dolittle_processor_position")
                .into_iter()
                .find(|(labels, _)| labels.contains(&HANDLER.to_string()))
                .map(|(_, value)| value);
            assert_eq!(position, Some(4.0));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lag never went to 0: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.stop().await;
}

#[test]
fn the_binary_refuses_to_start_with_a_management_endpoint_off_loopback_and_no_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dolittle-runtime"))
        .current_dir(dir.path())
        .args(["--management-host", "0.0.0.0", "--management-port", "0"])
        .env_remove("DOLITTLE_MANAGEMENT_TOKEN")
        .env_remove("DOLITTLE_MANAGEMENT_TOKEN_FILE")
        .output()
        .expect("run dolittle-runtime");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("--management-token-file"), "{message}");
    assert!(message.contains("not loopback"), "{message}");
}

#[tokio::test]
async fn a_projection_no_head_has_registered_is_dropped_and_rebuilt_at_the_next_registration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    let projection_id = EventProcessorId(Uuid::from_u128(0x9f0e_1d2c));
    let mut store = EventStoreClient::new(common::connect(runtime.private).await);
    let events = ["x", "y"]
        .iter()
        .map(|source| uncommitted(source, event_type(1), "{}"))
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    let head = serve_projection(runtime.private, projection_id).await;
    let read_models = format!(
        "/api/tenants/{}/projections/{projection_id}/read-models",
        TenantId::DEVELOPMENT
    );
    let models = runtime
        .wait_for(&read_models, |models| {
            models.as_array().is_some_and(|models| models.len() == 2)
        })
        .await;
    assert_eq!(models[0], json!({"key": "x", "state": {"seen": true}}));
    let path = format!("/api/projections/{projection_id}");
    let view = runtime
        .wait_for(&path, |view| {
            processor_of_tenant(view, TenantId::DEVELOPMENT)["lag"] == json!(0)
        })
        .await;
    assert_eq!(view["kind"], json!("projection"));
    assert_eq!(view["event_types"], json!([event_type(1).id.to_string()]));

    let (status, refused) = runtime
        .post(&format!("{path}/replay"), json!({"from": 1}))
        .await;
    assert_eq!(status, 400, "{refused}");

    head.abort();
    runtime
        .wait_for(&path, |view| view["registered"] == json!(false))
        .await;
    let (status, rebuilt) = runtime.post(&format!("{path}/replay"), json!({})).await;
    assert_eq!(status, 200, "{rebuilt}");
    let (_, models) = runtime.get(&read_models).await;
    assert_eq!(models, json!([]), "the read models are dropped");

    let _head = serve_projection(runtime.private, projection_id).await;
    let models = runtime
        .wait_for(&read_models, |models| {
            models.as_array().is_some_and(|models| models.len() == 2)
        })
        .await;
    assert_eq!(models[1], json!({"key": "y", "state": {"seen": true}}));
    runtime.stop().await;
}

#[tokio::test]
async fn a_registered_projection_rebuilds_beside_its_live_read_models() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    let projection_id = EventProcessorId(Uuid::from_u128(0x4e5f_6a7b));
    let mut store = EventStoreClient::new(common::connect(runtime.private).await);
    let sources: Vec<String> = (0..200).map(|n| format!("source-{n:03}")).collect();
    let events = sources
        .iter()
        .map(|source| uncommitted(source, event_type(1), "{}"))
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    let round = Arc::new(AtomicU64::new(1));
    let answered_round = round.clone();
    let _head = projection_head::TestProjection::register(
        common::connect(runtime.private).await,
        projection_id,
        ScopeId::DEFAULT,
        &[(event_type(1), projection_head::Key::EventSource)],
        "{}",
    )
    .await
    .serve(move |_| {
        let round = answered_round.load(Ordering::SeqCst);
        projection_head::Answer::Replace(format!(r#"{{"round":{round}}}"#))
    });
    let read_models = format!(
        "/api/tenants/{}/projections/{projection_id}/read-models",
        TenantId::DEVELOPMENT
    );
    let all_in_round = |models: &Value, round: u64| {
        models.as_array().is_some_and(|models| {
            models.len() == 200 && models.iter().all(|model| model["state"]["round"] == round)
        })
    };
    runtime
        .wait_for(&read_models, |models| all_in_round(models, 1))
        .await;

    round.store(2, Ordering::SeqCst);
    let path = format!("/api/projections/{projection_id}");
    let (status, rebuilt) = runtime.post(&format!("{path}/replay"), json!({})).await;
    assert_eq!(status, 200, "{rebuilt}");
    assert_eq!(rebuilt["replayed"]["registered"], json!(true), "{rebuilt}");
    // Readers see the whole live projection until the rebuild replaces it in one step.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, models) = runtime.get(&read_models).await;
        assert_eq!(status, 200, "{models}");
        if all_in_round(&models, 2) {
            break;
        }
        assert!(
            all_in_round(&models, 1),
            "a reader saw a half-rebuilt projection: {models}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuild never replaced the read models"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let view = runtime
        .wait_for(&path, |view| {
            let tenant = processor_of_tenant(view, TenantId::DEVELOPMENT);
            tenant["lag"] == json!(0) && tenant["rebuilding"] == json!(false)
        })
        .await;
    assert_eq!(view["registered"], json!(true));
    let (_, projections) = runtime.get("/api/projections").await;
    assert_eq!(
        projections.as_array().map(Vec::len),
        Some(1),
        "the rebuild is not listed as a projection of its own: {projections}"
    );
    let (status, refused) = runtime
        .post(&format!("{path}/replay"), json!({"partition": "x"}))
        .await;
    assert_eq!(status, 400, "{refused}");
    runtime.stop().await;
}

/// A projection head that answers every event with the same read model.
async fn serve_projection(
    private: SocketAddr,
    projection: EventProcessorId,
) -> tokio::task::JoinHandle<u64> {
    projection_head::TestProjection::register(
        common::connect(private).await,
        projection,
        ScopeId::DEFAULT,
        &[(event_type(1), projection_head::Key::EventSource)],
        "{}",
    )
    .await
    .serve(|_| projection_head::Answer::Replace(r#"{"seen":true}"#.into()))
}

#[tokio::test]
async fn the_consents_shown_are_those_in_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join(".dolittle")).expect("folder");
    let consumer = Uuid::from_u128(0x2b3c4d5e_6f7a_4b8c_9d0e_1f2a3b4c5d6e);
    std::fs::write(
        dir.path().join(".dolittle/event-horizon-consents.json"),
        json!({
            TenantId::DEVELOPMENT.to_string(): [{
                "microservice": consumer.to_string(),
                "tenant": TenantId::DEVELOPMENT.to_string(),
                "stream": "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f",
                "partition": "00000000-0000-0000-0000-000000000000",
                "consent": "11111111-2222-3333-4444-555555555555"
            }]
        })
        .to_string(),
    )
    .expect("write consents");
    let runtime =
        ManagedRuntime::start(dir.path(), &[TenantId::DEVELOPMENT], Overrides::default()).await;
    let (status, consents) = runtime.get("/api/event-horizon/consents").await;
    assert_eq!(status, 200);
    assert_eq!(
        consents[0]["consumer_microservice"],
        json!(consumer.to_string())
    );
    assert_eq!(
        consents[0]["consent"],
        json!("11111111-2222-3333-4444-555555555555")
    );
    runtime
        .context
        .event_horizon
        .replace_consents(Default::default());
    let (_, consents) = runtime.get("/api/event-horizon/consents").await;
    assert_eq!(
        consents,
        json!([]),
        "a withdrawn consent is no longer shown"
    );
    runtime.stop().await;
}
