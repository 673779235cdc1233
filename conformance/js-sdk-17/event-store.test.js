// Event store scenarios: EventStore/Commit, CommitForAggregate and FetchForAggregate as the
// official SDK 17.0.1 calls them. Every assertion compares what the SDK returns with what was
// sent, because the SDK fills in missing fields silently (see rust-grpc-notes.md).
'use strict';

const assert = require('node:assert/strict');

const { AggregateRootId, AggregateRootVersion, EventSourceId } = require('@dolittle/sdk.events');

const { DEVELOPMENT_TENANT, DEFAULT_MICROSERVICE, scenario } = require('./lib/harness');
const {
    EVENT_TYPE_IDS,
    OrderPlaced,
    SHOPPING_CART_AGGREGATE_ROOT_ID,
    ShoppingCart,
    assertOccurredWithin,
    assertSucceeded,
    awkwardContent,
    idText,
    newId,
    withEventTypes,
} = require('./lib/events');

const CONCURRENCY_CONFLICT_FAILURE_ID = 'f25cccfb-3ae1-4969-bee6-906370ffbc2d';
const SECOND_TENANT = '7a9d3e1c-5b2f-4c8e-9d1a-2f3b4c5d6e7f';

/**
 * `aggregateOf` fetches the aggregate synchronously with deasync. deasync cannot finish a promise
 * while it is itself called from a promise continuation (the microtask queue is not drained
 * there), so the SDK's own fetch would time out after 10 s. Calling it from a macrotask avoids
 * that; this is a property of the SDK, not of the Runtime.
 */
function aggregateOfOutsidePromiseJob(client, ...args) {
    return new Promise((resolve, reject) => setTimeout(() => {
        try {
            resolve(client.aggregateOf(...args));
        } catch (error) {
            reject(error);
        }
    }, 0));
}

function sequenceNumbers(events) {
    return events.toArray().map(event => event.eventLogSequenceNumber.value);
}

function aggregateVersions(events) {
    return events.toArray().map(event => event.aggregateRootVersion.value);
}

scenario('commit and commitPublic return consecutive sequence numbers and echo the committed events', async (world) => {
    const head = world.head({ configure: withEventTypes });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const firstSource = newId();
    const secondSource = newId();

    const before = Date.now();
    const first = await store.commit(new OrderPlaced('A-1', 10), firstSource);
    const second = await store.commitPublic(new OrderPlaced('A-2', 20), firstSource);
    const third = await store.commit({ orderNumber: 'A-3', amount: 30 }, secondSource, EVENT_TYPE_IDS.orderPlaced);
    const after = Date.now();

    const results = [first, second, third];
    results.forEach((result, index) => assertSucceeded(result, `commit ${index}`));
    results.forEach((result, index) => assert.equal(result.events.toArray().length, 1, `commit ${index} returns one event`));
    const events = results.map(result => result.events.toArray()[0]);

    assert.deepEqual(events.map(event => event.eventLogSequenceNumber.value), [0, 1, 2],
        'the event log sequence numbers start at 0 and have no gaps');
    assert.deepEqual(events.map(event => event.isPublic), [false, true, false], 'commitPublic marks only its event public');
    assert.deepEqual(events.map(event => event.isExternal), [false, false, false], 'no committed event is external');
    assert.deepEqual(events.map(event => event.eventSourceId.value.toString()), [firstSource, firstSource, secondSource],
        'each event keeps the event source it was committed with');
    assert.deepEqual(events.map(event => event.content), [
        { orderNumber: 'A-1', amount: 10 },
        { orderNumber: 'A-2', amount: 20 },
        { orderNumber: 'A-3', amount: 30 },
    ], 'the content round-trips');
    for (const [index, event] of events.entries()) {
        assert.equal(idText(event.type.id), EVENT_TYPE_IDS.orderPlaced, `event ${index} keeps its event type id`);
        assert.equal(event.type.generation.value, 1, `event ${index} keeps its event type generation`);
        assertOccurredWithin(event.occurred, before, after, `event ${index}`);
        assert.equal(idText(event.executionContext.tenantId), DEVELOPMENT_TENANT, `event ${index} carries the tenant`);
        assert.equal(idText(event.executionContext.microserviceId), DEFAULT_MICROSERVICE, `event ${index} carries the microservice`);
    }
    assert.ok(events[0].occurred.toMillis() <= events[1].occurred.toMillis() && events[1].occurred.toMillis() <= events[2].occurred.toMillis(),
        'occurred does not go backwards for events committed one after the other');
});

scenario('commit keeps awkward JSON content byte for byte', async (world) => {
    const head = world.head({ configure: withEventTypes });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const content = awkwardContent('round trip');

    const result = await store.commit(content, newId(), EVENT_TYPE_IDS.orderPlaced);

    assertSucceeded(result, 'commit');
    const [event] = result.events.toArray();
    assert.deepEqual(event.content, content, 'the content round-trips');
    assert.equal(JSON.stringify(event.content), JSON.stringify(content),
        'the content keeps its key order and number forms');
});

scenario('commit of several events in one call commits them in order with consecutive sequence numbers', async (world) => {
    const head = world.head({ configure: withEventTypes });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const warmUp = await store.commit(new OrderPlaced('warm-up', 1), newId());
    assertSucceeded(warmUp, 'first commit');

    const sources = [newId(), newId(), newId()];
    const before = Date.now();
    const result = await store.commit([
        { content: new OrderPlaced('B-1', 1), eventSourceId: EventSourceId.from(sources[0]), eventType: EVENT_TYPE_IDS.orderPlaced, public: false },
        { content: { orderNumber: 'B-2', carrier: 'post' }, eventSourceId: EventSourceId.from(sources[1]), eventType: EVENT_TYPE_IDS.orderShipped, public: true },
        { content: new OrderPlaced('B-3', 3), eventSourceId: EventSourceId.from(sources[2]), eventType: EVENT_TYPE_IDS.orderPlaced, public: false },
    ]);
    const after = Date.now();

    assertSucceeded(result, 'commit of three events');
    const events = result.events.toArray();
    assert.deepEqual(events.map(event => event.eventLogSequenceNumber.value), [1, 2, 3],
        'the batch follows the earlier commit without gaps');
    assert.deepEqual(events.map(event => event.eventSourceId.value.toString()), sources);
    assert.deepEqual(events.map(event => event.content.orderNumber), ['B-1', 'B-2', 'B-3'], 'the events keep their order');
    assert.deepEqual(events.map(event => event.isPublic), [false, true, false]);
    assert.deepEqual(events.map(event => idText(event.type.id)),
        [EVENT_TYPE_IDS.orderPlaced, EVENT_TYPE_IDS.orderShipped, EVENT_TYPE_IDS.orderPlaced]);
    // A string event type id means generation 1 in the SDK.
    assert.deepEqual(events.map(event => event.type.generation.value), [1, 1, 1]);
    events.forEach((event, index) => assertOccurredWithin(event.occurred, before, after, `batch event ${index}`));
});

scenario('commitForAggregate assigns aggregate versions from the expected version, and fetchForAggregate returns them', async (world) => {
    const head = world.head({ configure: withEventTypes });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const aggregateRootId = AggregateRootId.from(newId());
    const eventSource = newId();

    const empty = await store.fetchForAggregate(aggregateRootId, EventSourceId.from(eventSource));
    assert.equal(empty.length, 0, 'a new aggregate has no events');
    assert.equal(empty.aggregateRootVersion.value, 0, 'a new aggregate is at version 0');

    const before = Date.now();
    const first = await store.commitForAggregate(
        new OrderPlaced('C-1', 1), eventSource, aggregateRootId, AggregateRootVersion.from(0), EVENT_TYPE_IDS.orderPlaced);
    assertSucceeded(first, 'first commitForAggregate');
    assert.deepEqual(aggregateVersions(first.events), [0], 'the first event of an aggregate has version 0');
    assert.equal(first.events.aggregateRootVersion.value, 0);
    assert.equal(idText(first.events.eventSourceId), eventSource);
    assert.equal(idText(first.events.aggregateRootId), idText(aggregateRootId));

    const builderEvents = await store
        .forAggregate(aggregateRootId)
        .withEventSource(EventSourceId.from(eventSource))
        .expectVersion(AggregateRootVersion.from(1))
        .commit([
            { content: new OrderPlaced('C-2', 2), eventType: EVENT_TYPE_IDS.orderPlaced, public: false },
            { content: { orderNumber: 'C-3', carrier: 'post' }, eventType: EVENT_TYPE_IDS.orderShipped, public: true },
        ]);
    const after = Date.now();
    assert.deepEqual(aggregateVersions(builderEvents), [1, 2], 'the next events continue from the expected version');
    assert.equal(builderEvents.aggregateRootVersion.value, 2);

    const committed = [...first.events.toArray(), ...builderEvents.toArray()];
    assert.deepEqual(committed.map(event => event.eventLogSequenceNumber.value), [0, 1, 2]);
    assert.deepEqual(committed.map(event => event.isPublic), [false, false, true]);

    const fetched = await store.fetchForAggregate(aggregateRootId, EventSourceId.from(eventSource));
    assert.equal(fetched.length, 3, 'fetchForAggregate returns every event of the aggregate');
    assert.equal(fetched.aggregateRootVersion.value, 2, 'the aggregate is at the version of its last event');
    const fetchedEvents = fetched.toArray();
    assert.deepEqual(aggregateVersions(fetched), [0, 1, 2]);
    assert.deepEqual(fetchedEvents.map(event => event.eventLogSequenceNumber.value), [0, 1, 2]);
    assert.deepEqual(fetchedEvents.map(event => event.content), committed.map(event => event.content));
    assert.deepEqual(fetchedEvents.map(event => event.isPublic), [false, false, true]);
    assert.deepEqual(fetchedEvents.map(event => idText(event.type.id)),
        [EVENT_TYPE_IDS.orderPlaced, EVENT_TYPE_IDS.orderPlaced, EVENT_TYPE_IDS.orderShipped]);
    for (const [index, event] of fetchedEvents.entries()) {
        // A fetch done later must return the stored time, not the time of the fetch.
        assert.equal(event.occurred.toMillis(), committed[index].occurred.toMillis(),
            `fetched event ${index} has the occurred time its commit returned`);
        assertOccurredWithin(event.occurred, before, after, `fetched event ${index}`);
        assert.equal(idText(event.executionContext.tenantId), DEVELOPMENT_TENANT);
    }

    const otherSource = await store.fetchForAggregate(aggregateRootId, EventSourceId.from(newId()));
    assert.equal(otherSource.length, 0, 'another event source of the same aggregate root has no events');
    const otherRoot = await store.fetchForAggregate(AggregateRootId.from(newId()), EventSourceId.from(eventSource));
    assert.equal(otherRoot.length, 0, 'another aggregate root on the same event source has no events');
});

scenario('a concurrency conflict through the low-level API returns failure f25cccfb and writes nothing', async (world) => {
    const head = world.head({ configure: withEventTypes });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const aggregateRootId = AggregateRootId.from(newId());
    const eventSource = newId();

    const first = await store.commitForAggregate(
        new OrderPlaced('D-1', 1), eventSource, aggregateRootId, AggregateRootVersion.from(0), EVENT_TYPE_IDS.orderPlaced);
    assertSucceeded(first, 'first commitForAggregate');

    for (const staleVersion of [0, 5]) {
        const conflict = await store.commitForAggregate(
            new OrderPlaced(`D-stale-${staleVersion}`, 2), eventSource, aggregateRootId,
            AggregateRootVersion.from(staleVersion), EVENT_TYPE_IDS.orderPlaced);
        assert.equal(conflict.failed, true, `expecting version ${staleVersion} when the aggregate is at 1 fails`);
        assert.equal(idText(conflict.failure.id), CONCURRENCY_CONFLICT_FAILURE_ID,
            `the failure is AggregateRootConcurrencyConflict (reason: ${conflict.failure.reason.value})`);
        assert.ok(conflict.failure.reason.value.length > 0, 'the failure has a reason');
        assert.equal(conflict.events.length, 0, 'a failed commit returns no events');
    }

    const fetched = await store.fetchForAggregate(aggregateRootId, EventSourceId.from(eventSource));
    assert.deepEqual(fetched.toArray().map(event => event.content.orderNumber), ['D-1'],
        'the conflicting commits wrote nothing');

    const next = await store.commit(new OrderPlaced('D-after', 3), newId());
    assertSucceeded(next, 'a plain commit after the conflicts');
    assert.deepEqual(sequenceNumbers(next.events), [1], 'the conflicts used no event log sequence numbers');
});

scenario('aggregateOf().perform commits with the right versions for a new and for an existing aggregate', async (world) => {
    const head = world.head({ configure: withEventTypes });
    const eventSource = newId();
    const tenantStore = builder => builder.forTenant(DEVELOPMENT_TENANT);
    const aggregateRootId = AggregateRootId.from(SHOPPING_CART_AGGREGATE_ROOT_ID);

    let versionBeforeFirstAction;
    await (await aggregateOfOutsidePromiseJob(head.client, ShoppingCart, eventSource, tenantStore)).perform(cart => {
        versionBeforeFirstAction = cart.version.value;
        cart.place('E-1', 1);
    });
    assert.equal(versionBeforeFirstAction, 0, 'a new aggregate starts at version 0');

    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const afterFirst = await store.fetchForAggregate(aggregateRootId, EventSourceId.from(eventSource));
    assert.deepEqual(aggregateVersions(afterFirst), [0], 'perform on a new aggregate committed version 0');

    let replayedOrders;
    let versionBeforeSecondAction;
    await (await aggregateOfOutsidePromiseJob(head.client, ShoppingCart, eventSource, tenantStore)).perform(cart => {
        replayedOrders = [...cart.orderNumbers];
        versionBeforeSecondAction = cart.version.value;
        cart.place('E-2', 2);
        cart.place('E-3', 3);
    });
    assert.deepEqual(replayedOrders, ['E-1'], 'the existing events were replayed through the on method');
    assert.equal(versionBeforeSecondAction, 1, 'the replayed aggregate is at version 1');

    const afterSecond = await store.fetchForAggregate(aggregateRootId, EventSourceId.from(eventSource));
    assert.deepEqual(aggregateVersions(afterSecond), [0, 1, 2]);
    assert.deepEqual(afterSecond.toArray().map(event => event.content.orderNumber), ['E-1', 'E-2', 'E-3']);
    assert.deepEqual(afterSecond.toArray().map(event => idText(event.type.id)),
        [EVENT_TYPE_IDS.orderPlaced, EVENT_TYPE_IDS.orderPlaced, EVENT_TYPE_IDS.orderPlaced]);

    // The SDK only logs a failed aggregate commit, so check the log as well as the store.
    assert.deepEqual(head.logger.matching('Problems with committed events', 'error').map(line => line.message), [],
        'the SDK logged no commit problem');
});

scenario('two tenants are isolated: separate event logs, handlers and aggregates', { tenants: [DEVELOPMENT_TENANT, SECOND_TENANT] }, async (world) => {
    const handlerId = newId();
    const handled = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withEventHandlers(handlers => handlers
            .createEventHandler(handlerId, handler => {
                handler.unpartitioned().handle(OrderPlaced, (event, context) => {
                    handled.push({ orderNumber: event.orderNumber, tenant: idText(context.executionContext.tenantId), sequenceNumber: context.sequenceNumber });
                });
            })),
    });
    const developmentStore = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const secondStore = head.client.eventStore.forTenant(SECOND_TENANT);

    const developmentResults = [];
    for (const orderNumber of ['dev-1', 'dev-2', 'dev-3']) {
        developmentResults.push(await developmentStore.commit(new OrderPlaced(orderNumber, 1), newId()));
    }
    const secondResult = await secondStore.commit(new OrderPlaced('second-1', 1), newId());
    developmentResults.forEach((result, index) => assertSucceeded(result, `development commit ${index}`));
    assertSucceeded(secondResult, 'second tenant commit');
    assert.deepEqual(developmentResults.map(result => sequenceNumbers(result.events)[0]), [0, 1, 2]);
    assert.deepEqual(sequenceNumbers(secondResult.events), [0], 'the second tenant has an event log of its own');
    assert.equal(idText(secondResult.events.toArray()[0].executionContext.tenantId), SECOND_TENANT);

    await world.waitFor('the handler to see all four events', () => handled.length >= 4,
        { details: () => JSON.stringify(handled) });
    const byTenant = tenant => handled.filter(entry => entry.tenant === tenant).map(entry => [entry.orderNumber, entry.sequenceNumber]);
    assert.deepEqual(byTenant(DEVELOPMENT_TENANT), [['dev-1', 0], ['dev-2', 1], ['dev-3', 2]],
        'the handler saw the development tenant\'s events, for that tenant, in order');
    assert.deepEqual(byTenant(SECOND_TENANT), [['second-1', 0]],
        'the handler saw only the second tenant\'s own event for that tenant');
    assert.equal(handled.length, 4, 'no event was handled twice or for the wrong tenant');

    const aggregateRootId = AggregateRootId.from(newId());
    const eventSource = newId();
    const aggregateCommit = await developmentStore.commitForAggregate(
        new OrderPlaced('dev-aggregate', 1), eventSource, aggregateRootId, AggregateRootVersion.from(0), EVENT_TYPE_IDS.orderPlaced);
    assertSucceeded(aggregateCommit, 'aggregate commit for the development tenant');
    const fromSecond = await secondStore.fetchForAggregate(aggregateRootId, EventSourceId.from(eventSource));
    assert.equal(fromSecond.length, 0, 'the second tenant does not see the development tenant\'s aggregate');
    const secondAggregateCommit = await secondStore.commitForAggregate(
        new OrderPlaced('second-aggregate', 1), eventSource, aggregateRootId, AggregateRootVersion.from(0), EVENT_TYPE_IDS.orderPlaced);
    assertSucceeded(secondAggregateCommit, 'the same aggregate at version 0 in the second tenant');
});

scenario('a few thousand sequential commits on one client all succeed', { timeoutMs: 180_000 }, async (world) => {
    const head = world.head({ configure: withEventTypes });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const count = 3000;
    const eventSource = newId();
    for (let index = 0; index < count; index += 1) {
        let result;
        try {
            result = await store.commit(new OrderPlaced(`F-${index}`, index), eventSource);
        } catch (error) {
            assert.fail(`commit ${index} of ${count} was rejected by gRPC: ${error.message}`);
        }
        assertSucceeded(result, `commit ${index} of ${count}`);
        const [event] = result.events.toArray();
        assert.equal(event.eventLogSequenceNumber.value, index, `commit ${index} got the next sequence number`);
        assert.equal(event.content.orderNumber, `F-${index}`);
    }
});
