//! Projections: definitions, read models applied with the projection's state, promotion of a
//! rebuilt projection, and dropping.

use dolittle_types::{EventProcessorId, ScopeId};

use super::*;
use crate::{
    KeySelector, ProcessorKey, ProcessorKind, ProjectionDefinition, ProjectionEventSelector,
    ReadModelChange, StreamProcessorState,
};

pub fn projection(number: u128) -> EventProcessorId {
    EventProcessorId(test_uuid(0x9e_0000 | number))
}

pub fn projection_key(scope_id: ScopeId, projection_id: EventProcessorId) -> ProcessorKey {
    ProcessorKey {
        kind: ProcessorKind::Projection,
        scope: scope_id,
        processor: projection_id,
    }
}

pub fn projection_definition(scope_id: ScopeId, number: u128) -> ProjectionDefinition {
    ProjectionDefinition {
        projection: projection(number),
        scope: scope_id,
        selectors: vec![
            ProjectionEventSelector {
                event_type: event_type(1, 1).id,
                key_selector: KeySelector::EventSource,
            },
            ProjectionEventSelector {
                event_type: event_type(2, 1).id,
                key_selector: KeySelector::Partition,
            },
            ProjectionEventSelector {
                event_type: event_type(3, 1).id,
                key_selector: KeySelector::Property("customer.id".to_owned()),
            },
        ],
        initial_state: "{ \"count\": 0 }".to_owned(),
    }
}

pub fn set(key: &str, state: &str) -> ReadModelChange {
    ReadModelChange {
        key: key.to_owned(),
        state: Some(state.to_owned()),
    }
}

pub fn delete(key: &str) -> ReadModelChange {
    ReadModelChange {
        key: key.to_owned(),
        state: None,
    }
}

fn models(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, state)| ((*key).to_owned(), (*state).to_owned()))
        .collect()
}

pub async fn projection_definitions_are_stored_replaced_and_listed<H: StoreHarness>(harness: &H) {
    let store = harness.open("projection-definitions").await;
    let first = projection_definition(ScopeId::DEFAULT, 1);
    let second = projection_definition(ScopeId::DEFAULT, 2);
    let scoped = ProjectionDefinition {
        selectors: Vec::new(),
        ..projection_definition(scope(1), 1)
    };
    assert_eq!(
        store
            .get_projection_definition(ScopeId::DEFAULT, first.projection)
            .await
            .expect("getting"),
        None
    );
    for definition in [&first, &second, &scoped] {
        store
            .put_projection_definition(definition)
            .await
            .expect("putting");
    }
    for definition in [&first, &second, &scoped] {
        assert_eq!(
            store
                .get_projection_definition(definition.scope, definition.projection)
                .await
                .expect("getting")
                .as_ref(),
            Some(definition)
        );
    }
    let replaced = ProjectionDefinition {
        initial_state: "{}".to_owned(),
        ..first.clone()
    };
    store
        .put_projection_definition(&replaced)
        .await
        .expect("replacing");
    assert_eq!(
        store
            .get_projection_definition(ScopeId::DEFAULT, first.projection)
            .await
            .expect("getting"),
        Some(replaced.clone())
    );
    let mut listed = store.list_projection_definitions().await.expect("listing");
    listed.sort_by_key(|definition| (definition.scope, definition.projection));
    let mut expected = vec![replaced, second, scoped];
    expected.sort_by_key(|definition| (definition.scope, definition.projection));
    assert_eq!(listed, expected);
}

pub async fn read_model_changes_and_the_projection_state_are_applied_together<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("read-models").await;
    let live = projection(1);
    let other = projection(2);
    let key = projection_key(ScopeId::DEFAULT, live);
    store
        .apply_read_model_changes(
            ScopeId::DEFAULT,
            live,
            vec![
                set("kitchen-2", "{ \"b\" : 2 }"),
                set("kitchen-1", "{\"a\":1}"),
            ],
            &key,
            &filter_state(2),
        )
        .await
        .expect("applying");
    store
        .apply_read_model_changes(
            ScopeId::DEFAULT,
            other,
            vec![set("kitchen-1", "{\"other\":true}")],
            &projection_key(ScopeId::DEFAULT, other),
            &filter_state(1),
        )
        .await
        .expect("applying");
    store
        .apply_read_model_changes(
            scope(1),
            live,
            vec![set("kitchen-1", "{\"scoped\":true}")],
            &projection_key(scope(1), live),
            &filter_state(1),
        )
        .await
        .expect("applying");
    assert_eq!(
        store
            .get_read_model(ScopeId::DEFAULT, live, "kitchen-1")
            .await
            .expect("getting"),
        Some("{\"a\":1}".to_owned())
    );
    assert_eq!(
        store
            .get_read_models(ScopeId::DEFAULT, live)
            .await
            .expect("getting"),
        models(&[("kitchen-1", "{\"a\":1}"), ("kitchen-2", "{ \"b\" : 2 }")]),
        "read models come ordered by key, byte for byte"
    );
    assert_eq!(
        store.get_processor_state(&key).await.expect("getting"),
        Some(filter_state(2))
    );
    store
        .apply_read_model_changes(
            ScopeId::DEFAULT,
            live,
            vec![
                delete("kitchen-1"),
                set("kitchen-3", "{\"c\":\"æ\"}"),
                set("kitchen-2", "{\"b\":22}"),
                delete("never-existed"),
            ],
            &key,
            &filter_state(5),
        )
        .await
        .expect("applying");
    assert_eq!(
        store
            .get_read_models(ScopeId::DEFAULT, live)
            .await
            .expect("getting"),
        models(&[("kitchen-2", "{\"b\":22}"), ("kitchen-3", "{\"c\":\"æ\"}")])
    );
    assert_eq!(
        store
            .get_read_model(ScopeId::DEFAULT, live, "kitchen-1")
            .await
            .expect("getting"),
        None
    );
    assert_eq!(
        store.get_processor_state(&key).await.expect("getting"),
        Some(filter_state(5))
    );
    store
        .apply_read_model_changes(ScopeId::DEFAULT, live, Vec::new(), &key, &filter_state(6))
        .await
        .expect("applying no change, saving the position");
    assert_eq!(
        store.get_processor_state(&key).await.expect("getting"),
        Some(filter_state(6))
    );
    assert_eq!(
        store
            .get_read_models(ScopeId::DEFAULT, other)
            .await
            .expect("getting"),
        models(&[("kitchen-1", "{\"other\":true}")]),
        "projections do not share read models"
    );
    assert_eq!(
        store
            .get_read_models(scope(1), live)
            .await
            .expect("getting"),
        models(&[("kitchen-1", "{\"scoped\":true}")]),
        "scopes do not share read models"
    );
}

pub async fn promoting_a_rebuilt_projection_replaces_the_live_read_models<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("projection-promotion").await;
    let scope_id = scope(1);
    let live_definition = projection_definition(scope_id, 1);
    let live = live_definition.projection;
    let rebuilt = projection(7);
    let rebuilt_definition = ProjectionDefinition {
        projection: rebuilt,
        initial_state: "{\"version\":2}".to_owned(),
        ..live_definition.clone()
    };
    let untouched = projection(8);
    store
        .put_projection_definition(&live_definition)
        .await
        .expect("putting");
    store
        .put_projection_definition(&rebuilt_definition)
        .await
        .expect("putting");
    for (projection_id, changes, position) in [
        (live, vec![set("old-1", "1"), set("shared", "\"old\"")], 9),
        (
            rebuilt,
            vec![set("new-1", "2"), set("shared", "\"new\"")],
            4,
        ),
        (untouched, vec![set("old-1", "3")], 1),
    ] {
        store
            .apply_read_model_changes(
                scope_id,
                projection_id,
                changes,
                &projection_key(scope_id, projection_id),
                &filter_state(position),
            )
            .await
            .expect("applying");
    }
    let promoted_definition = ProjectionDefinition {
        projection: live,
        ..rebuilt_definition.clone()
    };
    let promoted_state = StreamProcessorState {
        position: 11,
        ..filter_state(11)
    };
    store
        .promote_projection_rebuild(rebuilt, &promoted_definition, &promoted_state)
        .await
        .expect("promoting");
    assert_eq!(
        store
            .get_read_models(scope_id, live)
            .await
            .expect("getting"),
        models(&[("new-1", "2"), ("shared", "\"new\"")])
    );
    assert!(
        store
            .get_read_models(scope_id, rebuilt)
            .await
            .expect("getting")
            .is_empty()
    );
    assert_eq!(
        store
            .get_projection_definition(scope_id, live)
            .await
            .expect("getting"),
        Some(promoted_definition)
    );
    assert_eq!(
        store
            .get_projection_definition(scope_id, rebuilt)
            .await
            .expect("getting"),
        None
    );
    assert_eq!(
        store
            .get_processor_state(&projection_key(scope_id, live))
            .await
            .expect("getting"),
        Some(promoted_state)
    );
    assert_eq!(
        store
            .get_processor_state(&projection_key(scope_id, rebuilt))
            .await
            .expect("getting"),
        None
    );
    assert_eq!(
        store
            .get_read_models(scope_id, untouched)
            .await
            .expect("getting"),
        models(&[("old-1", "3")])
    );
}

pub async fn dropping_a_projection_deletes_its_read_models_definition_and_state<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.open("projection-drop").await;
    let dropped = projection_definition(ScopeId::DEFAULT, 1);
    let kept = projection_definition(ScopeId::DEFAULT, 2);
    let same_id_in_scope = projection_definition(scope(1), 1);
    for definition in [&dropped, &kept, &same_id_in_scope] {
        store
            .put_projection_definition(definition)
            .await
            .expect("putting");
        store
            .apply_read_model_changes(
                definition.scope,
                definition.projection,
                vec![set("a", "1"), set("b", "2")],
                &projection_key(definition.scope, definition.projection),
                &filter_state(2),
            )
            .await
            .expect("applying");
    }
    store
        .drop_projection(ScopeId::DEFAULT, dropped.projection)
        .await
        .expect("dropping");
    assert!(
        store
            .get_read_models(ScopeId::DEFAULT, dropped.projection)
            .await
            .expect("getting")
            .is_empty()
    );
    assert_eq!(
        store
            .get_projection_definition(ScopeId::DEFAULT, dropped.projection)
            .await
            .expect("getting"),
        None
    );
    assert_eq!(
        store
            .get_processor_state(&projection_key(ScopeId::DEFAULT, dropped.projection))
            .await
            .expect("getting"),
        None
    );
    for definition in [&kept, &same_id_in_scope] {
        assert_eq!(
            store
                .get_read_models(definition.scope, definition.projection)
                .await
                .expect("getting")
                .len(),
            2
        );
        assert_eq!(
            store
                .get_projection_definition(definition.scope, definition.projection)
                .await
                .expect("getting")
                .as_ref(),
            Some(definition)
        );
    }
    store
        .drop_projection(ScopeId::DEFAULT, projection(99))
        .await
        .expect("dropping a projection that does not exist");
}
