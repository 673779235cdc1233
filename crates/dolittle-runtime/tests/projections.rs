//! Projections over real reverse calls on loopback with real SQLite files: key selectors,
//! initial states, deletes, the projection store, rebuilds on a changed definition, restarts,
//! tenants, retries and refused registrations.

mod common;
#[path = "common/projection_head.rs"]
mod projection_head;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    SECOND_TENANT, TestRuntime, call_context, commit, event_type, failure_id, uncommitted,
};
use dolittle_contracts::failure_ids;
use dolittle_contracts::runtime::events::processing::ProjectionRequest;
use dolittle_contracts::runtime::projections::projections_client::ProjectionsClient;
use dolittle_contracts::runtime::projections::{
    GetAllRequest, GetAllResponse, GetOneRequest, GetOneResponse, ProjectionCurrentStateType,
};
use dolittle_runtime::failures;
use dolittle_types::{EventProcessorId, ScopeId, TenantId, Uuid};
use projection_head::{Answer, Key, PATIENCE, TestProjection, current_of, event_of, tenant_of};

const PROJECTION: EventProcessorId =
    EventProcessorId(Uuid::from_u128(0x5b6c7d8e_9f0a_4b1c_8d2e_3f4a5b6c7d8e));
const UNPARTITIONED: &str = "00000000-0000-0000-0000-000000000000";

/// A head that counts the events of each key and remembers their sequence numbers.
fn counting(request: &ProjectionRequest) -> Answer {
    let (_, state, _) = current_of(request);
    let mut state: serde_json::Value = serde_json::from_str(&state).expect("state is JSON");
    let event = event_of(request);
    let count = state["count"].as_u64().unwrap_or(0) + 1;
    state["count"] = count.into();
    let mut seen = state["seen"].as_array().cloned().unwrap_or_default();
    seen.push(event.sequence_number.into());
    state["seen"] = seen.into();
    Answer::Replace(state.to_string())
}

async fn get_one(
    runtime: &TestRuntime,
    tenant: TenantId,
    projection: EventProcessorId,
    key: &str,
) -> GetOneResponse {
    ProjectionsClient::new(runtime.channel().await)
        .get_one(GetOneRequest {
            call_context: call_context(tenant),
            scope_id: Some(ScopeId::DEFAULT.into()),
            projection_id: Some(projection.into()),
            key: key.to_owned(),
        })
        .await
        .expect("get one")
        .into_inner()
}

async fn get_all(
    runtime: &TestRuntime,
    tenant: TenantId,
    projection: EventProcessorId,
) -> GetAllResponse {
    ProjectionsClient::new(runtime.channel().await)
        .get_all(GetAllRequest {
            call_context: call_context(tenant),
            scope_id: Some(ScopeId::DEFAULT.into()),
            projection_id: Some(projection.into()),
        })
        .await
        .expect("get all")
        .into_inner()
}

/// Every read model of a projection as key → JSON state.
async fn read_models(
    runtime: &TestRuntime,
    tenant: TenantId,
    projection: EventProcessorId,
) -> BTreeMap<String, serde_json::Value> {
    let response = get_all(runtime, tenant, projection).await;
    assert!(response.failure.is_none(), "{:?}", response.failure);
    response
        .states
        .into_iter()
        .map(|state| {
            assert_eq!(state.r#type, ProjectionCurrentStateType::Persisted as i32);
            (
                state.key,
                serde_json::from_str(&state.state).expect("state is JSON"),
            )
        })
        .collect()
}

/// Waits until the read models satisfy a condition, and returns them.
async fn wait_for_read_models(
    runtime: &TestRuntime,
    tenant: TenantId,
    projection: EventProcessorId,
    condition: impl Fn(&BTreeMap<String, serde_json::Value>) -> bool,
) -> BTreeMap<String, serde_json::Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let models = read_models(runtime, tenant, projection).await;
        if condition(&models) {
            return models;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read models never got there: {models:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seen(model: &serde_json::Value) -> Vec<u64> {
    model["seen"]
        .as_array()
        .expect("seen")
        .iter()
        .map(|n| n.as_u64().expect("number"))
        .collect()
}

#[tokio::test]
async fn each_key_selector_finds_its_key_and_events_of_other_types_are_not_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("source-a", event_type(1), "{}"),
            uncommitted("source-b", event_type(2), r#"{"order":"order-1"}"#),
            uncommitted("source-c", event_type(3), "{}"),
            uncommitted("source-a", event_type(4), "{}"),
            uncommitted("source-d", event_type(2), r#"{"order":42}"#),
            uncommitted("source-a", event_type(1), "{}"),
            uncommitted("source-e", event_type(2), r#"{"order":"order-1"}"#),
            uncommitted("source-f", event_type(2), r#"{"order":true}"#),
        ],
    )
    .await;
    let requests = Arc::new(Mutex::new(Vec::new()));
    let projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[
            (event_type(1), Key::EventSource),
            (event_type(2), Key::Property("order")),
            (event_type(3), Key::Partition),
        ],
        r#"{"count":0}"#,
    )
    .await;
    assert!(projection.refused.is_none(), "{:?}", projection.refused);
    let recorded = requests.clone();
    let head = projection.serve(move |request| {
        let (key, _, initial) = current_of(request);
        let event = event_of(request);
        recorded.lock().expect("lock").push((
            event.sequence_number,
            key,
            initial,
            tenant_of(request),
        ));
        counting(request)
    });

    let models = wait_for_read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION, |models| {
        models
            .values()
            .map(|model| model["count"].as_u64().unwrap_or(0))
            .sum::<u64>()
            == 7
    })
    .await;
    let summary: BTreeMap<&str, Vec<u64>> = models
        .iter()
        .map(|(key, model)| (key.as_str(), seen(model)))
        .collect();
    assert_eq!(
        summary,
        BTreeMap::from([
            ("source-a", vec![0, 5]),
            ("order-1", vec![1, 6]),
            (UNPARTITIONED, vec![2]),
            ("42", vec![4]),
            ("True", vec![7]),
        ])
    );
    let mut requests = requests.lock().expect("lock").clone();
    requests.sort();
    assert!(
        requests
            .iter()
            .all(|(sequence_number, ..)| *sequence_number != 3),
        "the event of an unselected type was sent: {requests:?}"
    );
    let firsts: Vec<(u64, bool)> = requests
        .iter()
        .map(|(sequence_number, _, initial, _)| (*sequence_number, *initial))
        .collect();
    assert_eq!(
        firsts,
        vec![
            (0, true),
            (1, true),
            (2, true),
            (4, true),
            (5, false),
            (6, false),
            (7, true)
        ],
        "a key's first event starts from the initial state, later ones from the stored state"
    );
    assert!(
        requests
            .iter()
            .all(|(.., tenant)| *tenant == TenantId::DEVELOPMENT)
    );
    runtime.stop().await;
    let _ = head.await;
}

#[tokio::test]
async fn the_events_of_one_key_are_projected_in_order_while_many_keys_are_in_flight() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    let events: Vec<_> = (0..600)
        .map(|n| uncommitted(&format!("source-{}", n % 37), event_type(1), "{}"))
        .collect();
    commit(&mut store, TenantId::DEVELOPMENT, events).await;
    let projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        "{}",
    )
    .await;
    let head = projection.serve(counting);
    let models = wait_for_read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION, |models| {
        models
            .values()
            .map(|model| model["count"].as_u64().unwrap_or(0))
            .sum::<u64>()
            == 600
    })
    .await;
    assert_eq!(models.len(), 37);
    for (key, model) in &models {
        let source: u64 = key.trim_start_matches("source-").parse().expect("number");
        let expected: Vec<u64> = (0..600).filter(|n| n % 37 == source).collect();
        assert_eq!(seen(model), expected, "events of {key} in log order");
    }
    runtime.stop().await;
    let _ = head.await;
}

#[tokio::test]
async fn a_delete_removes_the_read_model_and_get_one_falls_back_to_the_initial_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    let mut projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[
            (event_type(1), Key::EventSource),
            (event_type(2), Key::EventSource),
        ],
        r#"{"initial":true}"#,
    )
    .await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("kept", event_type(1), "{}"),
            uncommitted("deleted", event_type(1), "{}"),
        ],
    )
    .await;
    for _ in 0..2 {
        let request = projection.next_request().await;
        let (key, state, initial) = current_of(&request);
        assert_eq!((state.as_str(), initial), (r#"{"initial":true}"#, true));
        projection
            .respond(&request, Answer::Replace(format!(r#"{{"key":"{key}"}}"#)))
            .await;
    }
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![uncommitted("deleted", event_type(2), "{}")],
    )
    .await;
    let request = projection.next_request().await;
    let (key, state, initial) = current_of(&request);
    assert_eq!(
        (key.as_str(), state.as_str(), initial),
        ("deleted", r#"{"key":"deleted"}"#, false)
    );
    projection.respond(&request, Answer::Delete).await;

    let models = wait_for_read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION, |models| {
        models.len() == 1
    })
    .await;
    assert_eq!(
        models.keys().collect::<Vec<_>>(),
        vec!["kept"],
        "GetAll returns only stored read models"
    );

    let kept = get_one(&runtime, TenantId::DEVELOPMENT, PROJECTION, "kept").await;
    let kept = kept.state.expect("state");
    assert_eq!(kept.r#type, ProjectionCurrentStateType::Persisted as i32);
    assert_eq!(kept.state, r#"{"key":"kept"}"#);
    for unknown in ["deleted", "never-seen"] {
        let response = get_one(&runtime, TenantId::DEVELOPMENT, PROJECTION, unknown).await;
        assert!(response.failure.is_none(), "{:?}", response.failure);
        let state = response.state.expect("a state is always returned");
        assert_eq!(
            state.r#type,
            ProjectionCurrentStateType::CreatedFromInitialState as i32
        );
        assert_eq!(
            (state.key.as_str(), state.state.as_str()),
            (unknown, r#"{"initial":true}"#)
        );
    }

    // A deleted key starts again from the initial state.
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![uncommitted("deleted", event_type(1), "{}")],
    )
    .await;
    let request = projection.next_request().await;
    let (_, state, initial) = current_of(&request);
    assert_eq!((state.as_str(), initial), (r#"{"initial":true}"#, true));
    runtime.stop().await;
}

#[tokio::test]
async fn the_projection_store_refuses_unknown_projections_tenants_and_bad_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let missing = get_one(&runtime, TenantId::DEVELOPMENT, PROJECTION, "key").await;
    assert!(missing.state.is_none());
    let failure = missing.failure.expect("failure");
    assert_eq!(
        failure_id(&failure),
        failure_ids::FAILED_TO_GET_PROJECTION_DEFINITION
    );
    assert_eq!(
        failure.reason,
        format!(
            "Projection definition for projection {PROJECTION} in scope {} does not exist",
            ScopeId::DEFAULT
        )
    );
    let all = get_all(&runtime, TenantId::DEVELOPMENT, PROJECTION).await;
    assert_eq!(
        all.failure.as_ref().map(failure_id),
        Some(failure_ids::FAILED_TO_GET_PROJECTION_DEFINITION)
    );

    let unknown_tenant = get_one(&runtime, SECOND_TENANT, PROJECTION, "key").await;
    assert_eq!(
        unknown_tenant.failure.as_ref().map(failure_id),
        Some(failures::UNKNOWN_TENANT)
    );
    let bad_id = ProjectionsClient::new(runtime.channel().await)
        .get_all(GetAllRequest {
            call_context: call_context(TenantId::DEVELOPMENT),
            scope_id: None,
            projection_id: Some(dolittle_contracts::protobuf::Uuid {
                value: vec![1, 2, 3],
            }),
        })
        .await
        .expect("get all")
        .into_inner();
    assert_eq!(
        bad_id.failure.as_ref().map(failure_id),
        Some(failures::INVALID_REQUEST)
    );
    runtime.stop().await;
}

#[tokio::test]
async fn a_changed_definition_is_rebuilt_beside_the_old_read_models_and_swapped_when_caught_up() {
    rebuild_scenario(TenantId::DEVELOPMENT, None).await;
}

#[tokio::test]
async fn a_rebuild_on_postgresql_swaps_without_mixing_too() {
    let url = postgres_url();
    let schema = format!("runtime_projections_{}", Uuid::new_v4().simple());
    let resources = serde_json::json!({
        SECOND_TENANT.to_string(): {"eventStore": {"postgres": {"connectionString": url, "schema": schema}}}
    });
    rebuild_scenario(SECOND_TENANT, Some(resources)).await;
    if let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        let driver = tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
        drop(client);
        let _ = driver.await;
    }
}

fn postgres_url() -> String {
    ["DOLITTLE_TEST_POSTGRES_URL", "DATABASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A projection is built, the Runtime restarts, the head registers a changed definition, and
/// readers of `tenant` see the old read models until the rebuild is promoted. With resources,
/// the development tenant (with no events) is served too.
async fn rebuild_scenario(tenant: TenantId, resources: Option<serde_json::Value>) {
    let tenants = if resources.is_some() {
        vec![TenantId::DEVELOPMENT, tenant]
    } else {
        vec![tenant]
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_with_resources(dir.path(), &tenants, resources.clone()).await;
    let mut store = runtime.event_store().await;
    let mut events: Vec<_> = ["a", "b", "c", "a", "b", "c"]
        .iter()
        .map(|source| uncommitted(source, event_type(1), "{}"))
        .collect();
    // The log ends with an event the projection does not select.
    events.push(uncommitted("a", event_type(9), "{}"));
    commit(&mut store, tenant, events).await;
    let old = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        r#"{"version":1}"#,
    )
    .await;
    let old_head = old.serve(counting);
    let old_models = wait_for_read_models(&runtime, tenant, PROJECTION, |models| {
        models.len() == 3 && models.values().all(|model| model["count"] == 2)
    })
    .await;
    assert!(old_models.values().all(|model| model["version"] == 1));
    runtime.stop().await;
    let _ = old_head.await;

    // The Runtime restarts and the head comes back with a new initial state.
    let runtime = TestRuntime::start_with_resources(dir.path(), &tenants, resources.clone()).await;
    let mut new = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        r#"{"version":2}"#,
    )
    .await;
    assert!(new.refused.is_none(), "{:?}", new.refused);
    let mut answered = 0;
    while answered < 6 {
        let request = new.next_request().await;
        let (_, state, initial) = current_of(&request);
        assert!(
            state.contains("\"version\":2"),
            "the rebuild starts from the new initial state: {state}"
        );
        if event_of(&request).sequence_number < 3 {
            assert!(initial, "the rebuild starts from scratch");
        }
        // Until the rebuild has caught up, readers see exactly the old read models.
        assert_eq!(read_models(&runtime, tenant, PROJECTION).await, old_models);
        let unknown = get_one(&runtime, tenant, PROJECTION, "z").await;
        assert_eq!(unknown.state.expect("state").state, r#"{"version":1}"#);
        new.respond(&request, counting(&request)).await;
        answered += 1;
    }
    let new_models = wait_for_read_models(&runtime, tenant, PROJECTION, |models| {
        models.values().all(|model| model["version"] == 2)
    })
    .await;
    assert_eq!(new_models.len(), 3);
    assert!(new_models.values().all(|model| model["count"] == 2));
    let unknown = get_one(&runtime, tenant, PROJECTION, "z").await;
    assert_eq!(unknown.state.expect("state").state, r#"{"version":2}"#);

    // The same definition again continues where it was: nothing is sent again.
    new.disconnect();
    let mut again = loop {
        let again = TestProjection::register(
            runtime.channel().await,
            PROJECTION,
            ScopeId::DEFAULT,
            &[(event_type(1), Key::EventSource)],
            r#"{"version":2}"#,
        )
        .await;
        if again.refused.is_none() {
            break again;
        }
        // The old registration is still being torn down.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    again
        .expect_no_request_for(Duration::from_millis(500))
        .await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        tenant,
        vec![uncommitted("a", event_type(1), "{}")],
    )
    .await;
    let request = again.next_request().await;
    let (key, state, initial) = current_of(&request);
    assert_eq!((key.as_str(), initial), ("a", false));
    assert!(state.contains("\"count\":2"), "{state}");
    runtime.stop().await;
}

#[tokio::test]
async fn read_models_survive_a_restart_and_processing_continues_where_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("a", event_type(1), "{}"),
            uncommitted("b", event_type(1), "{}"),
        ],
    )
    .await;
    let projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        "{}",
    )
    .await;
    let head = projection.serve(counting);
    let before = wait_for_read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION, |models| {
        models.len() == 2
    })
    .await;
    runtime.stop().await;
    let _ = head.await;

    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    assert_eq!(
        read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION).await,
        before,
        "read models are served before any head connects"
    );
    let mut projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        "{}",
    )
    .await;
    projection
        .expect_no_request_for(Duration::from_millis(500))
        .await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![uncommitted("b", event_type(1), "{}")],
    )
    .await;
    let request = projection.next_request().await;
    assert_eq!(event_of(&request).sequence_number, 2);
    let (key, state, initial) = current_of(&request);
    assert_eq!((key.as_str(), initial), ("b", false));
    assert_eq!(state, before["b"].to_string());
    runtime.stop().await;
}

#[tokio::test]
async fn each_tenant_has_its_own_read_models() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT, SECOND_TENANT]).await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![uncommitted("only-in-development", event_type(1), "{}")],
    )
    .await;
    commit(
        &mut store,
        SECOND_TENANT,
        vec![
            uncommitted("only-in-second", event_type(1), "{}"),
            uncommitted("only-in-second", event_type(1), "{}"),
        ],
    )
    .await;
    let tenants = Arc::new(Mutex::new(Vec::new()));
    let recorded = tenants.clone();
    let projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        "{}",
    )
    .await;
    let head = projection.serve(move |request| {
        let (key, _, _) = current_of(request);
        recorded
            .lock()
            .expect("lock")
            .push((tenant_of(request), key));
        counting(request)
    });
    let development = wait_for_read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION, |m| {
        m.len() == 1
    })
    .await;
    let second = wait_for_read_models(&runtime, SECOND_TENANT, PROJECTION, |m| {
        m.len() == 1 && m.values().all(|v| v["count"] == 2)
    })
    .await;
    assert_eq!(
        development.keys().collect::<Vec<_>>(),
        vec!["only-in-development"]
    );
    assert_eq!(second.keys().collect::<Vec<_>>(), vec!["only-in-second"]);
    assert_eq!(seen(&second["only-in-second"]), vec![0, 1]);
    let missing = get_one(
        &runtime,
        TenantId::DEVELOPMENT,
        PROJECTION,
        "only-in-second",
    )
    .await;
    assert_eq!(
        missing.state.expect("state").r#type,
        ProjectionCurrentStateType::CreatedFromInitialState as i32
    );
    for (tenant, key) in tenants.lock().expect("lock").iter() {
        let expected = if *tenant == SECOND_TENANT {
            "only-in-second"
        } else {
            "only-in-development"
        };
        assert_eq!(key, expected, "requests carry the tenant being processed");
    }
    runtime.stop().await;
    let _ = head.await;
}

#[tokio::test]
async fn a_failure_is_retried_after_the_heads_retry_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    let mut projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        "{}",
    )
    .await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("a", event_type(1), "{}"),
            uncommitted("b", event_type(1), "{}"),
        ],
    )
    .await;
    // "b" may or may not be in flight when "a" fails: its answer, if it came first, is thrown
    // away and it is sent again after "a" succeeds. Fail "a" once, answer everything else.
    let mut a_attempts = Vec::new();
    let mut b_after_retry = false;
    while !(a_attempts.len() == 2 && b_after_retry) {
        let request = projection.next_request().await;
        let (key, _, _) = current_of(&request);
        if key == "a" {
            a_attempts.push(request.retry_processing_state.clone());
            if a_attempts.len() == 1 {
                assert!(
                    request.retry_processing_state.is_none(),
                    "the first attempt is no retry"
                );
                projection
                    .respond(
                        &request,
                        Answer::Fail("Error: boom".into(), Duration::from_millis(200)),
                    )
                    .await;
                continue;
            }
            let retry = request
                .retry_processing_state
                .clone()
                .expect("a retry says so");
            assert_eq!(
                (retry.retry_count, retry.failure_reason.as_str()),
                (0, "Error: boom")
            );
        } else {
            assert_eq!(key, "b");
            b_after_retry = a_attempts.len() == 2;
        }
        projection.respond(&request, counting(&request)).await;
    }
    assert_eq!(
        a_attempts.len(),
        2,
        "the failing event is retried once, then succeeds"
    );
    let models = wait_for_read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION, |models| {
        models.len() == 2
    })
    .await;
    assert_eq!(seen(&models["a"]), vec![0]);
    assert_eq!(seen(&models["b"]), vec![1], "b is applied once");
    runtime.stop().await;
}

#[tokio::test]
async fn a_missing_key_property_halts_the_projection_at_that_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![
            uncommitted("a", event_type(1), r#"{"id":"first"}"#),
            uncommitted("a", event_type(1), r#"{"other":"no id"}"#),
            uncommitted("a", event_type(1), r#"{"id":"third"}"#),
        ],
    )
    .await;
    let mut projection = TestProjection::register(
        runtime.channel().await,
        PROJECTION,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::Property("id"))],
        "{}",
    )
    .await;
    let request = projection.next_request().await;
    assert_eq!(current_of(&request).0, "first");
    projection.respond(&request, counting(&request)).await;
    projection
        .expect_no_request_for(Duration::from_millis(500))
        .await;
    let models = read_models(&runtime, TenantId::DEVELOPMENT, PROJECTION).await;
    assert_eq!(models.keys().collect::<Vec<_>>(), vec!["first"]);
    runtime.stop().await;
}

#[tokio::test]
async fn registrations_that_cannot_be_served_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_in(dir.path(), &[TenantId::DEVELOPMENT]).await;
    let register = |selectors: Vec<(dolittle_types::EventType, Key)>, initial: &'static str| {
        let runtime = &runtime;
        async move {
            TestProjection::register(
                runtime.channel().await,
                PROJECTION,
                ScopeId::DEFAULT,
                &selectors,
                initial,
            )
            .await
        }
    };
    let twice = register(
        vec![
            (event_type(1), Key::EventSource),
            (event_type(1), Key::Property("id")),
        ],
        "{}",
    )
    .await;
    let failure = twice.refused.expect("refused");
    assert_eq!(
        failure_id(&failure),
        failure_ids::FAILED_TO_REGISTER_PROJECTION
    );
    assert!(
        failure.reason.contains("more than once"),
        "{}",
        failure.reason
    );

    let not_json = register(vec![(event_type(1), Key::EventSource)], "{oops").await;
    let failure = not_json.refused.expect("refused");
    assert_eq!(
        failure_id(&failure),
        failure_ids::FAILED_TO_REGISTER_PROJECTION
    );
    assert!(
        failure.reason.contains("not valid JSON"),
        "{}",
        failure.reason
    );

    let first = register(vec![(event_type(1), Key::EventSource)], "{}").await;
    assert!(first.refused.is_none(), "{:?}", first.refused);
    let second = register(vec![(event_type(1), Key::EventSource)], "{}").await;
    let failure = second.refused.expect("refused");
    assert_eq!(
        failure_id(&failure),
        failure_ids::FAILED_TO_REGISTER_PROJECTION
    );
    assert_eq!(
        failure.reason,
        format!(
            "Failed to register Projection: {PROJECTION}. Event Processor already registered \
             with the same id."
        )
    );

    let empty_id = TestProjection::register(
        runtime.channel().await,
        EventProcessorId::NIL,
        ScopeId::DEFAULT,
        &[(event_type(1), Key::EventSource)],
        "{}",
    )
    .await;
    let failure = empty_id.refused.expect("refused");
    assert_eq!(
        failure_id(&failure),
        failure_ids::FAILED_TO_REGISTER_PROJECTION
    );
    runtime.stop().await;
}
