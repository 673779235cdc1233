// Checks of the harness itself and of the installed SDK, which need no Runtime: the missing-binary
// message, starting / restarting / stopping a process (a stand-in that only accepts TCP
// connections), and that @dolittle/sdk 17.0.1 loads and builds a client.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const { Client } = require('@dolittle/sdk');
const { CancellationSource } = require('@dolittle/sdk.resilience');
const sdkPackage = require('@dolittle/sdk/package.json');

const { CapturingLogger, World, freePort, requireRuntimeBinary, runtimeBinaryPath, waitFor } = require('./lib/harness');
const { OrderPlaced, newId, withEventTypes } = require('./lib/events');

const STAND_IN = path.join(__dirname, 'lib', 'stand-in-runtime.js');

async function withEnvironment(variables, action) {
    const saved = {};
    for (const [name, value] of Object.entries(variables)) {
        saved[name] = process.env[name];
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
    }
    try {
        return await action();
    } finally {
        for (const [name, value] of Object.entries(saved)) {
            if (value === undefined) delete process.env[name];
            else process.env[name] = value;
        }
    }
}

test('the installed SDK is exactly 17.0.1', () => {
    assert.equal(sdkPackage.version, '17.0.1');
    for (const name of ['sdk.events', 'sdk.events.handling', 'sdk.events.filtering', 'sdk.projections', 'sdk.aggregates', 'sdk.services']) {
        assert.equal(require(`@dolittle/${name}/package.json`).version, '17.0.1', `@dolittle/${name}`);
    }
});

test('a missing runtime binary fails with the command that builds it', async () => {
    await withEnvironment({ DOLITTLE_RUNTIME_BIN: path.join(__dirname, 'no-such-directory', 'dolittle-runtime') }, async () => {
        assert.throws(() => requireRuntimeBinary(), /not found at .*no-such-directory.*cargo build --release -p dolittle-runtime/s);
        const world = new World();
        await assert.rejects(() => world.startRuntime(), /cargo build --release -p dolittle-runtime/);
    });
});

test('without DOLITTLE_RUNTIME_BIN the binary is looked for in the repository target directory', async () => {
    await withEnvironment({ DOLITTLE_RUNTIME_BIN: undefined }, async () => {
        assert.equal(runtimeBinaryPath(), path.resolve(__dirname, '..', '..', 'target', 'release', 'dolittle-runtime'));
    });
});

test('the harness starts, restarts in the same directory, and stops a runtime process', async () => {
    await withEnvironment({ DOLITTLE_RUNTIME_BIN: STAND_IN, STAND_IN_BEHAVIOUR: 'serve' }, async () => {
        const world = new World({ tenants: [newId(), newId()], configurationFiles: { 'resources.json': {} } });
        try {
            await world.startRuntime();
            const directory = world.workingDirectory;
            const tenants = JSON.parse(fs.readFileSync(path.join(directory, '.dolittle', 'tenants.json'), 'utf8'));
            assert.deepEqual(Object.keys(tenants).sort(), [...world.tenants].sort());
            assert.ok(fs.existsSync(path.join(directory, '.dolittle', 'resources.json')));
            const ports = Object.values(world.runtime.ports);
            assert.equal(new Set(ports).size, 4, 'four distinct ports');

            await world.restartRuntime();
            assert.equal(world.workingDirectory, directory, 'the restart keeps the working directory');
            assert.equal(fs.readFileSync(path.join(directory, 'stand-in-runs'), 'utf8'), '2');
            const output = world.runtime.output();
            assert.match(output, /run 1 listening/);
            assert.match(output, /SIGTERM, stopping/);
            assert.match(output, /run 2 listening/);
            assert.match(output, new RegExp(`--private-port ${world.runtime.privatePort} --public-port \\d+ --metrics-port \\d+ --management-port \\d+`));
        } finally {
            const exit = await world.dispose();
            assert.equal(exit.code, 0, 'SIGTERM stopped the process');
            assert.equal(fs.existsSync(world.workingDirectory), false, 'the working directory was removed');
        }
    });
});

test('a runtime that ignores SIGTERM is killed after 5 s', async () => {
    await withEnvironment({ DOLITTLE_RUNTIME_BIN: STAND_IN, STAND_IN_BEHAVIOUR: 'ignore-sigterm' }, async () => {
        const world = new World();
        await world.startRuntime();
        const exit = await world.dispose();
        assert.equal(exit.signal, 'SIGKILL');
        assert.match(world.runtime.output(), /did not stop within 5 s of SIGTERM: SIGKILL/);
    });
});

test('a runtime that exits before it is ready fails the start with its output', async () => {
    await withEnvironment({ DOLITTLE_RUNTIME_BIN: STAND_IN, STAND_IN_BEHAVIOUR: 'exit-at-once' }, async () => {
        const world = new World();
        try {
            await assert.rejects(() => world.startRuntime(),
                /exited before it accepted connections.*code 7.*exiting at once as asked/s);
        } finally {
            await world.dispose();
        }
    });
});

test('a failing scenario reports the runtime output and the sdk log', async () => {
    await withEnvironment({ DOLITTLE_RUNTIME_BIN: STAND_IN, STAND_IN_BEHAVIOUR: 'serve' }, async () => {
        const world = new World();
        try {
            await world.startRuntime();
            world.head({ label: 'reporting head', configure: withEventTypes }).logger.warn('something the sdk said');
            const explained = world.explain(new Error('the assertion that failed'));
            assert.match(explained.message, /the assertion that failed/);
            assert.match(explained.message, /--- runtime output .*stand-in: run 1 listening/s);
            assert.match(explained.message, /--- sdk log ---.*\[reporting head\] warn: something the sdk said/s);
        } finally {
            await world.dispose();
        }
    });
});

test('waitFor fails with the description and the state when the deadline passes', async () => {
    await assert.rejects(
        () => waitFor('a condition that never holds', () => false, { timeoutMs: 200, details: () => 'state of the world' }),
        /timed out after 0\.2 s waiting for a condition that never holds\n {2}state: state of the world/);
});

test('the SDK builds a client in plain JavaScript, and a commit without a runtime is rejected as UNAVAILABLE', async () => {
    const port = await freePort();
    const logger = new CapturingLogger('no runtime');
    const cancellation = new CancellationSource();
    const client = withEventTypes(Client.forMicroservice(newId()))
        .withRuntimeOn('127.0.0.1', port)
        .withLogging(logger)
        .withCancellation(cancellation.cancellation)
        .withEventHandlers(handlers => handlers.createEventHandler(newId(), handler => {
            handler.partitioned().handle(OrderPlaced, () => {});
        }))
        .withFilters(filters => filters.createPrivateFilter(newId(), filter => filter.unpartitioned().handle(() => true)))
        .build();
    try {
        await assert.rejects(
            () => client.eventStore.forTenant('445f8ea8-1a6f-40d7-b2fc-796dba92dc44').commit(new OrderPlaced('X', 1), newId()),
            error => error.code === 14);
        await waitFor('the SDK to try to register its event handler', () => logger.matching('Registering EventHandler').length > 0);
    } finally {
        cancellation.cancel();
    }
});
