// Filter scenarios (Filters/Connect, ConnectPartitioned, ConnectPublic). The SDK cannot read the
// streams a filter writes, so these scenarios observe the filter callbacks: registration
// succeeds, and the callback is called once for every event it should see, in event log order.
'use strict';

const assert = require('node:assert/strict');

const { PartitionedFilterResult } = require('@dolittle/sdk.events.filtering');

const { DEVELOPMENT_TENANT, scenario } = require('./lib/harness');
const {
    EVENT_TYPE_IDS,
    OrderPlaced,
    OrderShipped,
    SomethingElse,
    assertSucceeded,
    idText,
    newId,
    withEventTypes,
} = require('./lib/events');

const UNPARTITIONED = '00000000-0000-0000-0000-000000000000';

function recordInto(list) {
    return (event, context) => {
        let kind = 'unknown';
        if (event instanceof OrderPlaced) kind = 'placed';
        else if (event instanceof OrderShipped) kind = 'shipped';
        else if (event instanceof SomethingElse) kind = 'other';
        list.push({
            kind,
            label: event.orderNumber || event.note,
            sequenceNumber: context.sequenceNumber,
            eventSource: context.eventSourceId.value.toString(),
            tenant: idText(context.executionContext.tenantId),
        });
    };
}

function describe(entries) {
    return JSON.stringify(entries.map(entry => [entry.sequenceNumber, entry.kind, entry.label]));
}

/** Commits a mix of event types over a few event sources, some public; returns the committed events. */
async function commitMixedEvents(store, count) {
    const sources = [newId(), newId(), newId()];
    const committed = [];
    for (let index = 0; index < count; index += 1) {
        const source = sources[index % sources.length];
        let result;
        if (index % 3 === 0) result = await store.commit(new OrderPlaced(`F-${index}`, index), source);
        else if (index % 3 === 1) result = await store.commitPublic(new OrderShipped(`F-${index}`, 'post'), source);
        else result = await store.commit(new SomethingElse(`F-${index}`), source);
        assertSucceeded(result, `commit ${index}`);
        committed.push(result.events.toArray()[0]);
    }
    return committed;
}

function assertCalledOnceForEach(seen, expected, what) {
    assert.deepEqual(seen.map(entry => entry.sequenceNumber), expected.map(event => event.eventLogSequenceNumber.value),
        `${what} was called once for each event, in event log order`);
    for (const [index, entry] of seen.entries()) {
        const original = expected[index];
        assert.equal(entry.label, original.content.orderNumber || original.content.note, `${what}: call ${index} got the event's content`);
        assert.equal(entry.eventSource, original.eventSourceId.value.toString(), `${what}: call ${index} got the event's source`);
        assert.equal(entry.tenant, DEVELOPMENT_TENANT, `${what}: call ${index} ran for the committing tenant`);
        assert.notEqual(entry.kind, 'unknown', `${what}: call ${index} got a typed event`);
    }
}

scenario('an unpartitioned private filter is called for every event, in order', async (world) => {
    const filterId = newId();
    const seen = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withFilters(filters => filters
            .createPrivateFilter(filterId, filter => filter.unpartitioned().handle((event, context) => {
                recordInto(seen)(event, context);
                return event instanceof OrderPlaced;
            }))),
    });
    await head.waitForRegistration('Filter', filterId);

    const committed = await commitMixedEvents(head.client.eventStore.forTenant(DEVELOPMENT_TENANT), 12);
    const last = committed[committed.length - 1].eventLogSequenceNumber.value;
    await world.waitFor('the filter to be called for the last event', () => seen.some(entry => entry.sequenceNumber === last),
        { details: () => describe(seen) });
    assertCalledOnceForEach(seen, committed, 'the unpartitioned filter');
    assert.equal(head.logger.matching('Failed to register').length, 0, 'no registration failed');
});

scenario('a partitioned private filter is called for every event, in order', async (world) => {
    const filterId = newId();
    const seen = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withFilters(filters => filters
            .createPrivateFilter(filterId, filter => filter.partitioned().handle((event, context) => {
                recordInto(seen)(event, context);
                return new PartitionedFilterResult(!(event instanceof SomethingElse), context.eventSourceId.value);
            }))),
    });
    await head.waitForRegistration('Partitioned Filter', filterId);

    const committed = await commitMixedEvents(head.client.eventStore.forTenant(DEVELOPMENT_TENANT), 12);
    const last = committed[committed.length - 1].eventLogSequenceNumber.value;
    await world.waitFor('the filter to be called for the last event', () => seen.some(entry => entry.sequenceNumber === last),
        { details: () => describe(seen) });
    assertCalledOnceForEach(seen, committed, 'the partitioned filter');
});

scenario('a partitioned filter answering with a zero-length partition id (an SDK quirk) disturbs neither the Runtime nor other processors', async (world) => {
    // In plain JS, `new PartitionedFilterResult(true, context.eventSourceId)` (the concept, not its
    // Guid) makes the SDK send a zero-length partition id. Whether the Runtime reads that as the
    // empty partition or refuses the answer (and retries the event) is its choice; either way it
    // must stay up, keep the head's connection working, and call the filter in order.
    const quirkyFilterId = newId();
    const wellBehavedFilterId = newId();
    const quirkySeen = [];
    const wellBehavedSeen = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withFilters(filters => filters
            .createPrivateFilter(quirkyFilterId, filter => filter.partitioned().handle((event, context) => {
                recordInto(quirkySeen)(event, context);
                return new PartitionedFilterResult(true, context.eventSourceId);
            }))
            .createPrivateFilter(wellBehavedFilterId, filter => filter.partitioned().handle((event, context) => {
                recordInto(wellBehavedSeen)(event, context);
                return new PartitionedFilterResult(true, context.eventSourceId.value);
            }))),
    });
    await head.waitForRegistration('Partitioned Filter', quirkyFilterId);
    await head.waitForRegistration('Partitioned Filter', wellBehavedFilterId);

    const committed = await commitMixedEvents(head.client.eventStore.forTenant(DEVELOPMENT_TENANT), 6);
    const last = committed[committed.length - 1].eventLogSequenceNumber.value;
    await world.waitFor('the well-behaved filter to be called for the last event',
        () => wellBehavedSeen.some(entry => entry.sequenceNumber === last), { details: () => describe(wellBehavedSeen) });
    assertCalledOnceForEach(wellBehavedSeen, committed, 'the well-behaved filter on the same head');
    await world.waitFor('the quirky filter to be called', () => quirkySeen.length > 0);

    assert.ok(world.runtime.isRunning, 'the Runtime is still running');
    const quirkySequenceNumbers = quirkySeen.map(entry => entry.sequenceNumber);
    assert.equal(quirkySequenceNumbers[0], 0, 'the quirky filter was called with the first event');
    for (let index = 1; index < quirkySequenceNumbers.length; index += 1) {
        const [previous, current] = [quirkySequenceNumbers[index - 1], quirkySequenceNumbers[index]];
        assert.ok(current === previous || current === previous + 1,
            `the quirky filter was called in order, repeating an event or moving to the next: ${JSON.stringify(quirkySequenceNumbers)}`);
    }
    const after = await head.client.eventStore.forTenant(DEVELOPMENT_TENANT).commit(new OrderPlaced('after', 1), newId());
    assertSucceeded(after, 'a commit on the same head afterwards');
});

scenario('a public filter is called only for public events', async (world) => {
    const filterId = newId();
    const seen = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withFilters(filters => filters
            .createPublicFilter(filterId, filter => filter.handle((event, context) => {
                recordInto(seen)(event, context);
                return new PartitionedFilterResult(true, UNPARTITIONED);
            }))),
    });
    await head.waitForRegistration('Public Filter', filterId);

    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const committed = await commitMixedEvents(store, 12);
    const lastPublic = await store.commitPublic({ orderNumber: 'last-public', amount: 0 }, newId(), EVENT_TYPE_IDS.orderPlaced);
    assertSucceeded(lastPublic, 'last public commit');
    committed.push(lastPublic.events.toArray()[0]);
    const marker = lastPublic.events.toArray()[0].eventLogSequenceNumber.value;
    await world.waitFor('the public filter to be called for the last public event',
        () => seen.some(entry => entry.sequenceNumber === marker), { details: () => describe(seen) });

    const publicEvents = committed.filter(event => event.isPublic);
    assert.ok(publicEvents.length > 1 && publicEvents.length < committed.length, 'the scenario committed both kinds');
    assertCalledOnceForEach(seen, publicEvents, 'the public filter');
});
