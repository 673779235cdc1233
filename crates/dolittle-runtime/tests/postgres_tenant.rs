//! A tenant on PostgreSQL beside a tenant on the embedded store, in one Runtime.
//!
//! The PostgreSQL server is `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `DOLITTLE_TEST_POSTGRES_URL` names another; the test works in a schema of its own and drops
//! it at the end. An unreachable server fails the test (`scripts/ensure-postgres.sh` starts it).

mod common;

use std::time::Duration;

use common::heads::{TestEventHandler, event_of, tenant_of};
use common::{SECOND_TENANT, TestRuntime, commit, event_type, uncommitted};
use dolittle_types::{EventProcessorId, ScopeId, TenantId, Uuid};

fn server_url() -> String {
    ["DOLITTLE_TEST_POSTGRES_URL", "DATABASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        let driver = tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
        drop(client);
        let _ = driver.await;
    }
}

#[tokio::test]
async fn a_postgres_tenant_and_an_embedded_tenant_work_side_by_side() {
    let url = server_url();
    if let Err(error) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        panic!(
            "PostgreSQL is not reachable at {url}: {error}. Start it (scripts/ensure-postgres.sh) or set DOLITTLE_TEST_POSTGRES_URL"
        );
    }
    let schema = format!(
        "runtime_test_{}_{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    let resources = serde_json::json!({
        SECOND_TENANT.to_string(): {"eventStore": {"postgres": {"connectionString": url, "schema": schema}}}
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = TestRuntime::start_with_resources(
        dir.path(),
        &[TenantId::DEVELOPMENT, SECOND_TENANT],
        Some(resources.clone()),
    )
    .await;
    let backend = |tenant| {
        runtime
            .context
            .tenants
            .store(tenant)
            .expect("configured")
            .describe()
            .backend
    };
    assert_eq!(backend(TenantId::DEVELOPMENT), "sqlite");
    assert_eq!(backend(SECOND_TENANT), "postgres");
    let mut store = runtime.event_store().await;
    commit(
        &mut store,
        TenantId::DEVELOPMENT,
        vec![uncommitted("a", event_type(1), "{\"on\":\"sqlite\"}")],
    )
    .await;
    let on_postgres = commit(
        &mut store,
        SECOND_TENANT,
        vec![uncommitted("b", event_type(1), "{\"on\": \"postgres\"}")],
    )
    .await;
    assert_eq!(
        on_postgres[0].sequence_number, 0,
        "each tenant has its own log"
    );

    let handler_id = EventProcessorId(Uuid::new_v4());
    let mut handler = TestEventHandler::register(
        &runtime,
        handler_id,
        ScopeId::DEFAULT,
        &[event_type(1)],
        true,
    )
    .await;
    assert!(handler.refused.is_none(), "{:?}", handler.refused);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let request = handler.next_request().await;
        seen.push((tenant_of(&request), event_of(&request).content));
        handler.respond(&request, None).await;
    }
    seen.sort();
    let mut expected = vec![
        (TenantId::DEVELOPMENT, "{\"on\":\"sqlite\"}".to_owned()),
        (SECOND_TENANT, "{\"on\": \"postgres\"}".to_owned()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;
    handler.disconnect();
    runtime.stop().await;

    // Both tenants keep their events and positions across a restart.
    let runtime = TestRuntime::start_with_resources(
        dir.path(),
        &[TenantId::DEVELOPMENT, SECOND_TENANT],
        Some(resources),
    )
    .await;
    let mut store = runtime.event_store().await;
    let next = commit(
        &mut store,
        SECOND_TENANT,
        vec![uncommitted("b", event_type(1), "{}")],
    )
    .await;
    assert_eq!(next[0].sequence_number, 1);
    let mut handler = loop {
        let handler = TestEventHandler::register(
            &runtime,
            handler_id,
            ScopeId::DEFAULT,
            &[event_type(1)],
            true,
        )
        .await;
        if handler.refused.is_none() {
            break handler;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let request = handler.next_request().await;
    assert_eq!(
        (tenant_of(&request), event_of(&request).sequence_number),
        (SECOND_TENANT, 1)
    );
    handler.respond(&request, None).await;
    handler
        .expect_no_request_for(Duration::from_millis(300))
        .await;
    runtime.stop().await;
    drop_schema(&server_url(), &schema).await;
}
