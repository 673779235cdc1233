// Event handler scenarios (EventHandlers/Connect) as the official SDK 17.0.1 drives them:
// partitioned and unpartitioned handlers, scopes, retries of a failing handler, a head that
// disconnects and a new one that resumes, and a Runtime restarted between commit and handling.
'use strict';

const assert = require('node:assert/strict');

const { DEVELOPMENT_TENANT, scenario } = require('./lib/harness');
const {
    EVENT_TYPE_IDS,
    OrderPlaced,
    OrderShipped,
    SomethingElse,
    assertSucceeded,
    awkwardContent,
    idText,
    newId,
    withEventTypes,
} = require('./lib/events');

/** Returns an SDK handler callback that records what the SDK hands it. */
function recordInto(list, kind) {
    return (event, context) => {
        list.push({
            kind,
            event,
            orderNumber: event.orderNumber,
            sequenceNumber: context.sequenceNumber,
            eventSource: context.eventSourceId.value.toString(),
            occurred: context.occurred.toMillis(),
            tenant: idText(context.executionContext.tenantId),
        });
    };
}

/** The SDK hands handlers `Object.assign(new Type(), content)`: compare only the JSON data. */
function plain(event) {
    return JSON.parse(JSON.stringify(event));
}

function describe(entries) {
    return JSON.stringify(entries.map(entry => [entry.sequenceNumber, entry.eventSource.slice(0, 8), entry.orderNumber]));
}

/** Commits one event and returns the committed event as the SDK saw it. */
async function commitOne(store, event, eventSource, eventType) {
    const result = await store.commit(event, eventSource, eventType);
    assertSucceeded(result, `commit of ${JSON.stringify(event).slice(0, 60)}`);
    return result.events.toArray()[0];
}

scenario('partitioned and unpartitioned handlers see every event of their types exactly once, in order', async (world) => {
    const partitionedId = newId();
    const unpartitionedId = newId();
    const partitionedSeen = [];
    const unpartitionedSeen = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withEventHandlers(handlers => handlers
            .createEventHandler(partitionedId, handler => {
                const methods = handler.partitioned();
                methods.handle(OrderPlaced, recordInto(partitionedSeen, 'placed'));
                methods.handle(OrderShipped, recordInto(partitionedSeen, 'shipped'));
            })
            .createEventHandler(unpartitionedId, handler => {
                handler.unpartitioned().handle(OrderPlaced, recordInto(unpartitionedSeen, 'placed'));
            })),
    });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const sources = [newId(), newId(), newId()];

    const committed = [];
    for (let index = 0; index < 30; index += 1) {
        const source = sources[index % sources.length];
        const choice = index % 3;
        let event;
        if (choice === 0) event = new OrderPlaced(`G-${index}`, index);
        else if (choice === 1) event = new OrderShipped(`G-${index}`, 'post');
        else event = new SomethingElse(`G-${index}`);
        committed.push({ ...await commitOne(store, event, source), kind: ['placed', 'shipped', 'other'][choice] });
    }
    const awkward = { ...awkwardContent('handled content'), orderNumber: 'G-awkward' };
    committed.push({ ...await commitOne(store, awkward, sources[0], EVENT_TYPE_IDS.orderPlaced), kind: 'placed' });
    // One last OrderPlaced per event source: when a handler has seen these, it has seen everything
    // committed before them (order within a partition), so counting afterwards is meaningful.
    for (const source of sources) {
        committed.push({ ...await commitOne(store, new OrderPlaced(`last-${source}`, 0), source), kind: 'placed' });
    }

    const expectedPartitioned = committed.filter(event => event.kind !== 'other');
    const expectedUnpartitioned = committed.filter(event => event.kind === 'placed');
    await world.waitFor('the partitioned handler to see the last event of every partition',
        () => sources.every(source => partitionedSeen.some(entry => entry.orderNumber === `last-${source}`)),
        { details: () => describe(partitionedSeen) });
    await world.waitFor('the unpartitioned handler to see the last event',
        () => unpartitionedSeen.some(entry => entry.orderNumber === `last-${sources[sources.length - 1]}`),
        { details: () => describe(unpartitionedSeen) });

    const sequenceNumbersOf = entries => entries.map(entry => entry.sequenceNumber ?? entry.eventLogSequenceNumber.value);
    assert.deepEqual(sequenceNumbersOf(unpartitionedSeen), sequenceNumbersOf(expectedUnpartitioned),
        'the unpartitioned handler saw each OrderPlaced once, in event log order, and nothing else');
    for (const source of sources) {
        const seen = partitionedSeen.filter(entry => entry.eventSource === source);
        const expected = expectedPartitioned.filter(event => event.eventSourceId.value.toString() === source);
        assert.deepEqual(sequenceNumbersOf(seen), sequenceNumbersOf(expected),
            `the partitioned handler saw partition ${source} once each, in order`);
    }
    assert.equal(partitionedSeen.length, expectedPartitioned.length, 'the partitioned handler saw nothing else');

    const committedBySequenceNumber = new Map(committed.map(event => [event.eventLogSequenceNumber.value, event]));
    for (const entry of [...partitionedSeen, ...unpartitionedSeen]) {
        const original = committedBySequenceNumber.get(entry.sequenceNumber);
        assert.ok(original, `the handled sequence number ${entry.sequenceNumber} was committed`);
        assert.equal(entry.kind, original.kind, `event ${entry.sequenceNumber} went to the method for its type`);
        assert.deepEqual(plain(entry.event), original.content, `event ${entry.sequenceNumber} has the committed content`);
        assert.equal(entry.eventSource, original.eventSourceId.value.toString(), `event ${entry.sequenceNumber} has its event source`);
        assert.equal(entry.occurred, original.occurred.toMillis(), `event ${entry.sequenceNumber} has the occurred time of its commit`);
        assert.equal(entry.tenant, DEVELOPMENT_TENANT, `event ${entry.sequenceNumber} is handled for the committing tenant`);
    }
    assert.ok(partitionedSeen.filter(entry => entry.kind === 'shipped').every(entry => entry.event instanceof OrderShipped),
        'the SDK built OrderShipped instances for the OrderShipped method');
});

scenario('a handler in a non-default scope registers and sees nothing from the default scope', async (world) => {
    const scope = newId();
    const scopedId = newId();
    const defaultScopeId = newId();
    const scopedSeen = [];
    const defaultSeen = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withEventHandlers(handlers => handlers
            .createEventHandler(scopedId, handler => {
                handler.inScope(scope).partitioned().handle(OrderPlaced, recordInto(scopedSeen, 'placed'));
            })
            .createEventHandler(defaultScopeId, handler => {
                handler.unpartitioned().handle(OrderPlaced, recordInto(defaultSeen, 'placed'));
            })),
    });
    await head.waitForRegistration('EventHandler', scopedId);
    await head.waitForRegistration('EventHandler', defaultScopeId);

    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    for (let index = 0; index < 5; index += 1) {
        await commitOne(store, new OrderPlaced(`H-${index}`, index), newId());
    }
    await world.waitFor('the default-scope handler to see the five events', () => defaultSeen.length >= 5,
        { details: () => describe(defaultSeen) });
    assert.deepEqual(defaultSeen.map(entry => entry.orderNumber), ['H-0', 'H-1', 'H-2', 'H-3', 'H-4']);
    assert.deepEqual(scopedSeen, [], 'the scoped handler saw no event from the default scope');
    assert.equal(head.logger.matching('Failed to register').length, 0, 'no registration failed');
});

scenario('a failing handler is retried with a growing retry count while other partitions go on', { timeoutMs: 120_000 }, async (world) => {
    const handlerId = newId();
    const failuresWanted = 3;
    const calls = [];
    let failedSoFar = 0;
    const head = world.head({
        configure: builder => withEventTypes(builder).withEventHandlers(handlers => handlers
            .createEventHandler(handlerId, handler => {
                handler.partitioned().handle(OrderPlaced, (event, context) => {
                    const failing = event.orderNumber === 'A-1' && failedSoFar < failuresWanted;
                    calls.push({ orderNumber: event.orderNumber, sequenceNumber: context.sequenceNumber, failed: failing, at: Date.now() });
                    if (failing) {
                        failedSoFar += 1;
                        throw new Error(`deliberate failure ${failedSoFar} of ${failuresWanted}`);
                    }
                });
            })),
    });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const partitionA = newId();
    const partitionB = newId();
    await commitOne(store, new OrderPlaced('A-1', 1), partitionA);
    await commitOne(store, new OrderPlaced('B-1', 1), partitionB);
    await commitOne(store, new OrderPlaced('B-2', 2), partitionB);
    await commitOne(store, new OrderPlaced('A-2', 2), partitionA);
    await commitOne(store, new OrderPlaced('B-3', 3), partitionB);

    const succeeded = orderNumber => calls.filter(call => call.orderNumber === orderNumber && !call.failed);
    await world.waitFor('partition B to be handled', () => succeeded('B-3').length > 0,
        { details: () => JSON.stringify(calls) });
    assert.equal(succeeded('A-1').length, 0,
        'partition B was handled while partition A was still failing');

    // The SDK asks for 5 s, 5 s, 10 s between attempts, so three failures take about 20 s.
    await world.waitFor('partition A to be handled after the retries', () => succeeded('A-2').length > 0,
        { timeoutMs: 90_000, details: () => JSON.stringify(calls) });

    const partitionACalls = calls.filter(call => call.orderNumber.startsWith('A-'));
    assert.deepEqual(partitionACalls.map(call => [call.orderNumber, call.failed]), [
        ['A-1', true], ['A-1', true], ['A-1', true], ['A-1', false], ['A-2', false],
    ], 'A-1 was retried until it succeeded, and A-2 came only after it');
    assert.deepEqual(calls.filter(call => call.orderNumber.startsWith('B-')).map(call => call.orderNumber), ['B-1', 'B-2', 'B-3'],
        'partition B was handled once each, in order');
    for (const call of partitionACalls.slice(1, 4)) {
        assert.equal(call.sequenceNumber, partitionACalls[0].sequenceNumber, 'every retry carried the same event');
    }

    // The SDK derives its back-off from the retry count the Runtime sends: none on the first
    // attempt and 0 on the first retry both give 5 s; retry count 1 gives 10 s.
    const backOffs = head.logger.matching(`Processing in EventHandler ${handlerId} failed`, 'warn')
        .map(line => Number(/Will retry in (\d+)/.exec(line.message)?.[1]));
    assert.deepEqual(backOffs, [5, 5, 10], 'the retry count the SDK received grew from attempt to attempt');
});

scenario('a head that disconnects is replaced by a new head that resumes without loss or repeats', { timeoutMs: 90_000 }, async (world) => {
    const handlerId = newId();
    const configureHandler = seen => builder => withEventTypes(builder).withEventHandlers(handlers => handlers
        .createEventHandler(handlerId, handler => {
            handler.unpartitioned().handle(OrderPlaced, recordInto(seen, 'placed'));
        }));
    const firstSeen = [];
    const first = world.head({ label: 'first head', configure: configureHandler(firstSeen) });
    const store = first.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    for (let index = 0; index < 5; index += 1) {
        await commitOne(store, new OrderPlaced(`before-${index}`, index), newId());
    }
    await world.waitFor('the first head to handle five events', () => firstSeen.length >= 5,
        { details: () => describe(firstSeen) });
    // A commit on the same connection after the last handler response: the Runtime has read that
    // response off the connection before it answers this call.
    await commitOne(store, new SomethingElse('barrier'), newId());
    first.cancel();

    const writer = world.head({ label: 'writer', configure: withEventTypes });
    const writerStore = writer.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    for (let index = 0; index < 5; index += 1) {
        await commitOne(writerStore, new OrderPlaced(`while-away-${index}`, index), newId());
    }

    const secondSeen = [];
    const second = world.head({ label: 'second head', configure: configureHandler(secondSeen) });
    await world.waitFor('the second head to handle the five events committed while no head was connected',
        () => secondSeen.filter(entry => entry.orderNumber.startsWith('while-away-')).length >= 5,
        { timeoutMs: 30_000, details: () => describe(secondSeen) });
    await commitOne(writerStore, new OrderPlaced('after', 0), newId());
    await world.waitFor('the second head to handle the event committed after it connected',
        () => secondSeen.some(entry => entry.orderNumber === 'after'),
        { details: () => describe(secondSeen) });

    assert.deepEqual(firstSeen.map(entry => entry.orderNumber), ['before-0', 'before-1', 'before-2', 'before-3', 'before-4'],
        'the first head handled exactly the events committed while it was connected');
    assert.deepEqual(secondSeen.map(entry => entry.orderNumber),
        ['while-away-0', 'while-away-1', 'while-away-2', 'while-away-3', 'while-away-4', 'after'],
        'the second head resumed after the last handled event: nothing lost, nothing handled again');
    assert.deepEqual(secondSeen.map(entry => entry.sequenceNumber), [6, 7, 8, 9, 10, 11]);
    await second.waitForRegistration('EventHandler', handlerId);
});

scenario('a second head with the same event handler id is refused, retries calmly, and takes over when the first leaves', { timeoutMs: 90_000 }, async (world) => {
    const handlerId = newId();
    const configureHandler = seen => builder => withEventTypes(builder).withEventHandlers(handlers => handlers
        .createEventHandler(handlerId, handler => {
            handler.unpartitioned().handle(OrderPlaced, recordInto(seen, 'placed'));
        }));
    const firstSeen = [];
    const first = world.head({ label: 'first head', configure: configureHandler(firstSeen) });
    await first.waitForRegistration('EventHandler', handlerId);

    const secondSeen = [];
    const secondBuiltAt = Date.now();
    const second = world.head({ label: 'second head', configure: configureHandler(secondSeen) });
    const attempts = () => second.logger.matching(`Registering EventHandler ${handlerId} with the Runtime`).length;
    // With Dolittle's reject-and-end, SDK 17 would retry in a hot loop; a refusal that keeps the
    // call open makes it retry about once a second.
    await world.waitFor('the second head to be refused and to try again', () => attempts() >= 2,
        { timeoutMs: 20_000, details: () => second.logger.lines.slice(-10).map(line => `${line.level}: ${line.message}`).join(' | ') });

    const store = first.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    for (let index = 0; index < 3; index += 1) {
        await commitOne(store, new OrderPlaced(`first-${index}`, index), newId());
    }
    await world.waitFor('the first head to handle its events', () => firstSeen.length >= 3, { details: () => describe(firstSeen) });
    await commitOne(store, new SomethingElse('barrier'), newId());
    assert.deepEqual(secondSeen, [], 'the refused head handled nothing while the first head was registered');
    first.cancel();

    const writer = world.head({ label: 'writer', configure: withEventTypes }).client.eventStore.forTenant(DEVELOPMENT_TENANT);
    for (let index = 0; index < 3; index += 1) {
        await commitOne(writer, new OrderPlaced(`second-${index}`, index), newId());
    }
    await world.waitFor('the second head to take over and handle the new events',
        () => secondSeen.some(entry => entry.orderNumber === 'second-2'), { timeoutMs: 30_000, details: () => describe(secondSeen) });
    assert.deepEqual(firstSeen.map(entry => entry.orderNumber), ['first-0', 'first-1', 'first-2']);
    assert.deepEqual(secondSeen.map(entry => entry.orderNumber), ['second-0', 'second-1', 'second-2'],
        'the second head took over where the first left off');
    const elapsedSeconds = (Date.now() - secondBuiltAt) / 1000;
    assert.ok(attempts() <= 3 * elapsedSeconds + 3,
        `the refused head retried ${attempts()} times in ${elapsedSeconds.toFixed(1)} s: a hot loop, not a retry a second`);
});

scenario('a head that stays up through a Runtime restart registers again and goes on without repeats', { timeoutMs: 90_000 }, async (world) => {
    const handlerId = newId();
    const seen = [];
    const head = world.head({
        configure: builder => withEventTypes(builder).withEventHandlers(handlers => handlers
            .createEventHandler(handlerId, handler => {
                handler.unpartitioned().handle(OrderPlaced, recordInto(seen, 'placed'));
            })),
    });
    const store = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    for (let index = 0; index < 3; index += 1) {
        await commitOne(store, new OrderPlaced(`before-${index}`, index), newId());
    }
    await world.waitFor('the handler to see the events committed before the restart', () => seen.length >= 3,
        { details: () => describe(seen) });
    await commitOne(store, new SomethingElse('barrier'), newId());

    // A graceful stop (SIGTERM): what was handled stays handled.
    await world.restartRuntime();
    const registered = `EventHandler ${handlerId} registered with the Runtime`;
    await world.waitFor('the SDK to register the handler again with the restarted Runtime',
        () => head.logger.matching(registered).length >= 2,
        { timeoutMs: 30_000, details: () => head.logger.lines.slice(-10).map(line => `${line.level}: ${line.message}`).join(' | ') });

    for (let index = 0; index < 3; index += 1) {
        await commitOne(store, new OrderPlaced(`after-${index}`, index), newId());
    }
    await world.waitFor('the handler to see the events committed after the restart',
        () => seen.some(entry => entry.orderNumber === 'after-2'), { details: () => describe(seen) });
    assert.deepEqual(seen.map(entry => entry.orderNumber), ['before-0', 'before-1', 'before-2', 'after-0', 'after-1', 'after-2'],
        'every event was handled once, in order, across the restart');
    assert.deepEqual(seen.map(entry => entry.sequenceNumber), [0, 1, 2, 4, 5, 6]);
});

scenario('events committed before a Runtime restart are handled after it', { timeoutMs: 90_000 }, async (world) => {
    const writer = world.head({ label: 'writer before restart', configure: withEventTypes });
    const store = writer.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const sources = [newId(), newId()];
    const committed = [];
    for (let index = 0; index < 6; index += 1) {
        committed.push(await commitOne(store, new OrderPlaced(`R-${index}`, index), sources[index % 2]));
    }
    writer.cancel();

    await world.restartRuntime();

    const handlerId = newId();
    const seen = [];
    const head = world.head({
        label: 'head after restart',
        configure: builder => withEventTypes(builder).withEventHandlers(handlers => handlers
            .createEventHandler(handlerId, handler => {
                handler.partitioned().handle(OrderPlaced, recordInto(seen, 'placed'));
            })),
    });
    const storeAfter = head.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    const next = await commitOne(storeAfter, new OrderPlaced('R-after', 6), sources[0]);
    assert.equal(next.eventLogSequenceNumber.value, 6, 'the event log continues after the restart');
    await commitOne(storeAfter, new OrderPlaced('R-after-b', 7), sources[1]);

    await world.waitFor('the handler to see every event committed before and after the restart',
        () => seen.some(entry => entry.orderNumber === 'R-after') && seen.some(entry => entry.orderNumber === 'R-after-b'),
        { timeoutMs: 30_000, details: () => describe(seen) });
    for (const [partitionIndex, source] of sources.entries()) {
        const expected = committed.filter(event => event.eventSourceId.value.toString() === source).map(event => event.content.orderNumber);
        expected.push(partitionIndex === 0 ? 'R-after' : 'R-after-b');
        assert.deepEqual(seen.filter(entry => entry.eventSource === source).map(entry => entry.orderNumber), expected,
            `partition ${partitionIndex} was handled once each, in order`);
    }
    for (const original of committed) {
        const entry = seen.find(candidate => candidate.sequenceNumber === original.eventLogSequenceNumber.value);
        assert.equal(entry.occurred, original.occurred.toMillis(), `event ${entry.sequenceNumber} kept its occurred time across the restart`);
        assert.deepEqual(plain(entry.event), original.content);
    }
});
