// Projection scenarios (events.processing.Projections/Connect, projections.Projections/GetOne and
// GetAll). PENDING: this file is named `.pending` so that `node --test` does not pick it up until
// the Runtime serves projections; rename it to `projections.test.js` to enable it.
'use strict';

const assert = require('node:assert/strict');

const { CurrentStateType, DeleteReadModelInstance } = require('@dolittle/sdk.projections');

const { DEVELOPMENT_TENANT, scenario } = require('./lib/harness');
const { OrderPlaced, OrderShipped, assertSucceeded, newId, withEventTypes } = require('./lib/events');

const EMPTY_GUID = '00000000-0000-0000-0000-000000000000';
const FAILED_TO_GET_PROJECTION_DEFINITION = '0cbd47f6-50b4-4488-afc3-6ba6b02b0dbd';

class OrderTotal {
    constructor() {
        this.total = 0;
        this.orderNumbers = [];
        this.label = 'initial';
    }
}

/** Configures a projection over OrderPlaced (adding) and OrderShipped (deleting) with the given key. */
function totalsProjection(projectionId, keySelector, calls, { scope } = {}) {
    return builder => withEventTypes(builder).withProjections(projections => {
        let projection = projections.createProjection(projectionId);
        if (scope) projection = projection.inScope(scope);
        projection.forReadModel(OrderTotal)
            .on(OrderPlaced, keySelector, (state, event, context) => {
                calls.push({
                    kind: 'placed',
                    key: context.key.value,
                    createdFromInitialState: context.wasCreatedFromInitialState,
                    stateBefore: JSON.parse(JSON.stringify(state)),
                    sequenceNumber: context.eventContext.sequenceNumber,
                });
                state.total += event.amount;
                state.orderNumbers.push(event.orderNumber);
                state.label = 'updated';
                return state;
            })
            .on(OrderShipped, keySelector, (state, event, context) => {
                calls.push({ kind: 'shipped', key: context.key.value, createdFromInitialState: context.wasCreatedFromInitialState });
                return new DeleteReadModelInstance();
            });
    });
}

async function commit(store, event, eventSource) {
    const result = await store.commit(event, eventSource);
    assertSucceeded(result, 'commit');
    return result.events.toArray()[0];
}

function stateOf(currentState) {
    return JSON.parse(JSON.stringify(currentState.state));
}

scenario('a projection keyed by event source builds one read model per event source; get and getAll return them', async (world) => {
    const projectionId = newId();
    const calls = [];
    const head = world.head({ configure: totalsProjection(projectionId, keys => keys.keyFromEventSource(), calls) });
    await head.waitForRegistration('Projection', projectionId);
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const reads = head.client.projections.forTenant(DEVELOPMENT_TENANT);
    const [first, second] = [newId(), newId()];

    await commit(store, new OrderPlaced('P-1', 10), first);
    await commit(store, new OrderPlaced('P-2', 5), second);
    await commit(store, new OrderPlaced('P-3', 7), first);

    await world.waitFor('the read model of the first event source to hold both of its orders', async () => {
        const current = await reads.get(OrderTotal, first);
        return current.type === CurrentStateType.Persisted && current.state.total === 17;
    }, { details: () => JSON.stringify(calls) });

    const one = await reads.get(OrderTotal, first);
    assert.equal(one.key.value, first, 'the key is the event source id as a lowercase dashed GUID');
    assert.ok(one.state instanceof OrderTotal, 'the SDK builds the read model type');
    assert.deepEqual(stateOf(one), { total: 17, orderNumbers: ['P-1', 'P-3'], label: 'updated' });

    const untyped = await reads.get(second, projectionId);
    assert.deepEqual(stateOf(untyped), { total: 5, orderNumbers: ['P-2'], label: 'updated' });

    const all = await reads.getAll(OrderTotal);
    const keys = [...all.keys()].map(key => key.value).sort();
    assert.deepEqual(keys, [first, second].sort(), 'getAll returns one state per key');
    for (const current of all.values()) assert.equal(current.type, CurrentStateType.Persisted);

    assert.deepEqual(calls.map(call => [call.key, call.createdFromInitialState]), [
        [first, true], [second, true], [first, false],
    ], 'the first event of a key starts from the initial state, later ones from the stored state');
    assert.deepEqual(calls[0].stateBefore, { total: 0, orderNumbers: [], label: 'initial' },
        'the initial state is the read model\'s constructor state');
});

scenario('a projection keyed by an event property uses the property value as the key', async (world) => {
    const projectionId = newId();
    const calls = [];
    const head = world.head({ configure: totalsProjection(projectionId, keys => keys.keyFromProperty('orderNumber'), calls) });
    await head.waitForRegistration('Projection', projectionId);
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const reads = head.client.projections.forTenant(DEVELOPMENT_TENANT);
    const source = newId();

    await commit(store, new OrderPlaced('Mr. Taco', 3), source);
    await commit(store, new OrderPlaced('Mr. Taco', 4), newId());
    await commit(store, new OrderPlaced('Ms. Burrito', 5), source);

    await world.waitFor('both keys to be stored', async () => (await reads.getAll(OrderTotal)).size === 2
        && (await reads.get(OrderTotal, 'Mr. Taco')).state.total === 7, { details: () => JSON.stringify(calls) });
    assert.deepEqual(stateOf(await reads.get(OrderTotal, 'Mr. Taco')).orderNumbers, ['Mr. Taco', 'Mr. Taco']);
    assert.deepEqual(stateOf(await reads.get(OrderTotal, 'Ms. Burrito')).total, 5);
    assert.deepEqual(calls.map(call => call.key), ['Mr. Taco', 'Mr. Taco', 'Ms. Burrito']);
});

scenario('a projection keyed by partition id puts every event of the (unpartitioned) event log under one key', async (world) => {
    const projectionId = newId();
    const calls = [];
    const head = world.head({ configure: totalsProjection(projectionId, keys => keys.keyFromPartitionId(), calls) });
    await head.waitForRegistration('Projection', projectionId);
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const reads = head.client.projections.forTenant(DEVELOPMENT_TENANT);

    await commit(store, new OrderPlaced('Q-1', 1), newId());
    await commit(store, new OrderPlaced('Q-2', 2), newId());

    await world.waitFor('the state to hold both events', async () => (await reads.get(OrderTotal, EMPTY_GUID)).state.total === 3,
        { details: () => JSON.stringify(calls) });
    assert.deepEqual(calls.map(call => call.key), [EMPTY_GUID, EMPTY_GUID]);
    assert.deepEqual([...(await reads.getAll(OrderTotal)).keys()].map(key => key.value), [EMPTY_GUID]);
});

scenario('get of a key with no state returns the initial state, and a deleted read model is gone', async (world) => {
    const projectionId = newId();
    const calls = [];
    const head = world.head({ configure: totalsProjection(projectionId, keys => keys.keyFromEventSource(), calls) });
    await head.waitForRegistration('Projection', projectionId);
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const reads = head.client.projections.forTenant(DEVELOPMENT_TENANT);

    const unknown = await reads.get(OrderTotal, newId());
    assert.equal(unknown.type, CurrentStateType.CreatedFromInitialState);
    assert.deepEqual(stateOf(unknown), { total: 0, orderNumbers: [], label: 'initial' });

    const [kept, deleted] = [newId(), newId()];
    await commit(store, new OrderPlaced('S-1', 1), kept);
    await commit(store, new OrderPlaced('S-2', 2), deleted);
    await commit(store, new OrderShipped('S-2', 'post'), deleted);
    await commit(store, new OrderPlaced('S-3', 3), kept);

    await world.waitFor('the last event to be projected', async () => (await reads.get(OrderTotal, kept)).state.total === 4,
        { details: () => JSON.stringify(calls) });
    const afterDelete = await reads.get(OrderTotal, deleted);
    assert.equal(afterDelete.type, CurrentStateType.CreatedFromInitialState, 'a deleted read model reads as the initial state');
    assert.deepEqual([...(await reads.getAll(OrderTotal)).keys()].map(key => key.value), [kept], 'getAll leaves out the deleted key');

    await commit(store, new OrderPlaced('S-4', 4), deleted);
    await world.waitFor('the deleted key to start again from the initial state', async () => (await reads.get(OrderTotal, deleted)).state.total === 4,
        { details: () => JSON.stringify(calls) });
    assert.equal(calls[calls.length - 1].createdFromInitialState, true);
});

scenario('get of a projection that was never registered fails with FailedToGetProjectionDefinition', async (world) => {
    const head = world.head({ configure: withEventTypes });
    const reads = head.client.projections.forTenant(DEVELOPMENT_TENANT);
    await assert.rejects(() => reads.get('some key', newId()), error => {
        assert.match(String(error.message), new RegExp(FAILED_TO_GET_PROJECTION_DEFINITION));
        return true;
    });
});
