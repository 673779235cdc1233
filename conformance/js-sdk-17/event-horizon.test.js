// Event horizon scenarios (Subscriptions/Subscribe from the SDK, Consumer/Subscribe between two
// Runtimes): a producer head with a public filter, a consumer head with `withEventHorizons` and
// an event handler in the subscription's scope. Two Runtimes run, each in its own directory with
// its own ports: the scenario's World is the producer, a second World is the consumer.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { PartitionedFilterResult } = require('@dolittle/sdk.events.filtering');

const { DEVELOPMENT_TENANT, World, scenario } = require('./lib/harness');
const {
    OrderPlaced,
    assertSucceeded,
    idText,
    newId,
    withEventTypes,
} = require('./lib/events');

const PRODUCER = 'a1a1a1a1-0000-4000-8000-000000000001';
const CONSUMER = 'b2b2b2b2-0000-4000-8000-000000000002';
const PUBLIC_STREAM = 'c3c3c3c3-0000-4000-8000-000000000003';
const PARTITION = 'd4d4d4d4-0000-4000-8000-000000000004';
const OTHER_PARTITION = 'd4d4d4d4-0000-4000-8000-0000000000ff';
const CONSENT = 'e5e5e5e5-0000-4000-8000-000000000005';
const SCOPE = 'f6f6f6f6-0000-4000-8000-000000000006';

const MISSING_CONSENT = 'be1ba4e6-81e3-49c4-bec2-6c7e262bfb77';

const consents = {
    [DEVELOPMENT_TENANT]: [
        { microservice: CONSUMER, tenant: DEVELOPMENT_TENANT, stream: PUBLIC_STREAM, partition: PARTITION, consent: CONSENT },
    ],
};

/** A producer head whose public filter puts every public event into PARTITION or OTHER_PARTITION. */
async function startProducerHead(world) {
    const head = world.head({
        microserviceId: PRODUCER,
        label: 'producer head',
        configure: builder => withEventTypes(builder).withFilters(filters => filters
            .createPublicFilter(PUBLIC_STREAM, filter => filter.handle(event =>
                new PartitionedFilterResult(true, event.orderNumber.startsWith('other') ? OTHER_PARTITION : PARTITION)))),
    });
    await head.waitForRegistration('Public Filter', PUBLIC_STREAM);
    return head;
}

/** A consumer World whose microservices.json points at the producer's public port. */
function consumerWorld(producerWorld) {
    return new World({
        configurationFiles: {
            'microservices.json': { [PRODUCER]: { host: '127.0.0.1', port: producerWorld.runtime.ports.public } },
        },
    });
}

function consumerHead(world, partition, outcomes, handled) {
    return world.head({
        microserviceId: CONSUMER,
        label: 'consumer head',
        configure: builder => withEventTypes(builder)
            .withEventHandlers(handlers => handlers
                .createEventHandler(newId(), handler => {
                    handler.inScope(SCOPE).partitioned().handle(OrderPlaced, (event, context) => {
                        handled.push({
                            orderNumber: event.orderNumber,
                            sequenceNumber: context.sequenceNumber,
                            tenant: idText(context.executionContext.tenantId),
                        });
                    });
                }))
            .withEventHorizons(eventHorizons => eventHorizons.forTenant(DEVELOPMENT_TENANT, subscriptions => subscriptions
                .fromProducerMicroservice(PRODUCER)
                .fromProducerTenant(DEVELOPMENT_TENANT)
                .fromProducerStream(PUBLIC_STREAM)
                .fromProducerPartition(partition)
                .toScope(SCOPE)
                .onSuccess((tenant, subscription, response) => outcomes.push({ consent: idText(response.consentId) }))
                .onFailure((tenant, subscription, response) => outcomes.push({
                    failureId: idText(response.failure.id),
                    reason: response.failure.reason,
                })))),
    });
}

scenario('a consumer head receives the public events of a consented partition in its scope, in order', {
    timeoutMs: 90_000,
    configurationFiles: { 'event-horizon-consents.json': consents },
}, async (producerWorld) => {
    const producer = await startProducerHead(producerWorld);
    const store = producer.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    assertSucceeded(await store.commitPublic(new OrderPlaced('public-1', 1), newId()), 'commit public-1');
    assertSucceeded(await store.commit(new OrderPlaced('private-1', 2), newId()), 'commit private-1');
    assertSucceeded(await store.commitPublic(new OrderPlaced('other-1', 3), newId()), 'commit other-1');
    assertSucceeded(await store.commitPublic(new OrderPlaced('public-2', 4), newId()), 'commit public-2');

    const consumer = consumerWorld(producerWorld);
    try {
        await consumer.startRuntime();
        const outcomes = [];
        const handled = [];
        consumerHead(consumer, PARTITION, outcomes, handled);
        await consumer.waitFor('the subscription to succeed', () => outcomes.length > 0,
            { timeoutMs: 30_000, details: () => JSON.stringify(outcomes) });
        assert.deepEqual(outcomes[0], { consent: CONSENT }, 'the SDK reports the consent id');

        await consumer.waitFor('the scoped handler to see the two public events', () => handled.length >= 2,
            { timeoutMs: 30_000, details: () => JSON.stringify(handled) });
        assertSucceeded(await store.commitPublic(new OrderPlaced('public-3', 5), newId()), 'commit public-3');
        await consumer.waitFor('the live event to arrive', () => handled.length >= 3,
            { timeoutMs: 30_000, details: () => JSON.stringify(handled) });
        assert.deepEqual(handled.map(entry => entry.orderNumber), ['public-1', 'public-2', 'public-3'],
            'only the consented partition\'s public events, in order, each once');
        assert.deepEqual(handled.map(entry => entry.sequenceNumber), [0, 1, 2], 'the scoped log is gapless');
        assert.ok(handled.every(entry => entry.tenant === DEVELOPMENT_TENANT), 'handled for the consumer tenant');
    } catch (error) {
        throw consumer.explain(error);
    } finally {
        await consumer.dispose();
    }
});

scenario('a subscription without a consent is refused with MissingConsent, and succeeds once a consent is added', {
    timeoutMs: 60_000,
    configurationFiles: { 'event-horizon-consents.json': consents },
}, async (producerWorld) => {
    const producer = await startProducerHead(producerWorld);
    const store = producer.client.eventStore.forTenant(DEVELOPMENT_TENANT);
    assertSucceeded(await store.commitPublic(new OrderPlaced('other-1', 1), newId()), 'commit other-1');
    const consumer = consumerWorld(producerWorld);
    try {
        await consumer.startRuntime();
        const outcomes = [];
        const handled = [];
        const head = consumerHead(consumer, OTHER_PARTITION, outcomes, handled);
        // SDK 17 reports a failed Subscribe only in its log (onFailure is not called), then
        // retries every 5 s.
        await consumer.waitFor('the SDK to log the refused subscription', () => head.logger.matching('Failed to subscribe').length > 0,
            { timeoutMs: 30_000 });
        const logged = head.logger.matching('Failed to subscribe')[0].message;
        assert.match(logged, new RegExp(MISSING_CONSENT), logged);
        assert.match(logged, new RegExp(OTHER_PARTITION), logged);
        assert.deepEqual(outcomes, [], 'no success was reported');

        // A consent added to the producer's file takes effect without a restart.
        const added = {
            [DEVELOPMENT_TENANT]: [
                ...consents[DEVELOPMENT_TENANT],
                { microservice: CONSUMER, tenant: DEVELOPMENT_TENANT, stream: PUBLIC_STREAM, partition: OTHER_PARTITION, consent: CONSENT },
            ],
        };
        const file = path.join(producerWorld.workingDirectory, '.dolittle', 'event-horizon-consents.json');
        fs.writeFileSync(`${file}.tmp`, JSON.stringify(added, null, 2));
        fs.renameSync(`${file}.tmp`, file);
        await consumer.waitFor('the SDK\'s retry to succeed', () => outcomes.length > 0,
            { timeoutMs: 30_000, details: () => JSON.stringify(outcomes) });
        assert.deepEqual(outcomes[0], { consent: CONSENT });
        await consumer.waitFor('the scoped handler to see the event', () => handled.length >= 1,
            { timeoutMs: 30_000, details: () => JSON.stringify(handled) });
        assert.equal(handled[0].orderNumber, 'other-1');
    } catch (error) {
        throw consumer.explain(error);
    } finally {
        await consumer.dispose();
    }
});
