// Test harness for running the official @dolittle/sdk 17.0.1 against a real dolittle-runtime.
//
// It owns: finding the release binary, picking free ports, giving every scenario a fresh working
// directory with its own `.dolittle/tenants.json`, starting / stopping / restarting the Runtime,
// building SDK clients that point at it (with a capturing logger and a cancellation source), and
// waiting for conditions with a deadline. When a scenario fails, the error carries the Runtime's
// captured output and the SDK's log lines, so a failure can be diagnosed from the report alone.
'use strict';

const childProcess = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');

const { Client } = require('@dolittle/sdk');
const { CancellationSource } = require('@dolittle/sdk.resilience');

const REPOSITORY_ROOT = path.resolve(__dirname, '..', '..', '..');
const DEFAULT_RUNTIME_BINARY = path.join(REPOSITORY_ROOT, 'target', 'release', 'dolittle-runtime');

const DEVELOPMENT_TENANT = '445f8ea8-1a6f-40d7-b2fc-796dba92dc44';
const DEFAULT_MICROSERVICE = '7a1c1f5e-3d2b-4c8e-9f10-2b6d8e4a9c01';

const READINESS_POLL_INTERVAL_MS = 50;
const READINESS_DEADLINE_MS = 30_000;
const GRACEFUL_STOP_DEADLINE_MS = 5_000;
const OUTPUT_KEPT_CHARACTERS = 256 * 1024;
const LINES_SHOWN_ON_FAILURE = 150;

/** Every Runtime child that is alive, so that none outlives the test process. */
const livingRuntimeChildren = new Set();
process.on('exit', () => {
    for (const child of livingRuntimeChildren) {
        try { child.kill('SIGKILL'); } catch { /* already gone */ }
    }
});

function runtimeBinaryPath() {
    return process.env.DOLITTLE_RUNTIME_BIN
        ? path.resolve(process.env.DOLITTLE_RUNTIME_BIN)
        : DEFAULT_RUNTIME_BINARY;
}

const BINARY_MISSING = 'DOLITTLE_RUNTIME_BINARY_MISSING';

function binaryMissing(message) {
    const error = new Error(message);
    error.code = BINARY_MISSING;
    return error;
}

/** Throws a clear error (never a skip) when the Runtime binary cannot be run. */
function requireRuntimeBinary() {
    const binary = runtimeBinaryPath();
    let stat;
    try {
        stat = fs.statSync(binary);
    } catch {
        throw binaryMissing(
            `the dolittle-runtime binary was not found at ${binary}: ` +
            'run `cargo build --release -p dolittle-runtime` in the repository root ' +
            '(or point DOLITTLE_RUNTIME_BIN at a built binary)');
    }
    if (!stat.isFile()) {
        throw binaryMissing(`${binary} is not a file: build it with \`cargo build --release -p dolittle-runtime\``);
    }
    try {
        fs.accessSync(binary, fs.constants.X_OK);
    } catch {
        throw binaryMissing(`${binary} is not executable: rebuild it with \`cargo build --release -p dolittle-runtime\``);
    }
    return binary;
}

/** A port that was free a moment ago: bind port 0 on loopback, read it, close. */
function freePort() {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.unref();
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
    });
}

async function distinctFreePorts(count) {
    const ports = new Set();
    while (ports.size < count) {
        ports.add(await freePort());
    }
    return [...ports];
}

function delay(milliseconds) {
    return new Promise(resolve => setTimeout(resolve, milliseconds));
}

function canConnect(port) {
    return new Promise(resolve => {
        const socket = net.connect({ port, host: '127.0.0.1' });
        const finish = (connected) => {
            socket.removeAllListeners();
            socket.destroy();
            resolve(connected);
        };
        socket.once('connect', () => finish(true));
        socket.once('error', () => finish(false));
        socket.setTimeout(1000, () => finish(false));
    });
}

function lastLines(text, count) {
    const lines = text.split('\n');
    if (lines.length <= count) return text;
    return `[... ${lines.length - count} earlier lines left out ...]\n` + lines.slice(-count).join('\n');
}

/** Keeps the tail of a growing text, so a chatty Runtime cannot exhaust memory. */
class OutputTail {
    constructor(limit) {
        this._limit = limit;
        this._text = '';
        this._droppedCharacters = 0;
    }

    append(chunk) {
        this._text += chunk;
        if (this._text.length > this._limit) {
            const excess = this._text.length - this._limit;
            this._droppedCharacters += excess;
            this._text = this._text.slice(excess);
        }
    }

    toString() {
        return this._droppedCharacters > 0
            ? `[... ${this._droppedCharacters} earlier characters left out ...]\n${this._text}`
            : this._text;
    }
}

/**
 * One dolittle-runtime process in a working directory of its own. `start()` may be called again
 * after `stop()`: the restart keeps the working directory (and so the embedded store) and ports.
 */
class RuntimeProcess {
    constructor({ workingDirectory, ports }) {
        this.workingDirectory = workingDirectory;
        this.ports = ports;
        this._child = undefined;
        this._exit = undefined;
        this._runs = 0;
        this._output = new OutputTail(OUTPUT_KEPT_CHARACTERS);
    }

    get privatePort() { return this.ports.private; }

    get isRunning() { return this._child !== undefined && this._exit === undefined; }

    /** Everything the Runtime wrote on stdout and stderr, over all its runs. */
    output() { return this._output.toString(); }

    async start() {
        if (this.isRunning) throw new Error('the runtime is already running');
        const binary = requireRuntimeBinary();
        this._runs += 1;
        const args = [
            '--private-port', String(this.ports.private),
            '--public-port', String(this.ports.public),
            '--metrics-port', String(this.ports.metrics),
            '--management-port', String(this.ports.management),
        ];
        this._output.append(`==== run ${this._runs}: ${binary} ${args.join(' ')} (cwd ${this.workingDirectory})\n`);
        const child = childProcess.spawn(binary, args, {
            cwd: this.workingDirectory,
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, NO_COLOR: '1' },
        });
        this._child = child;
        this._exit = undefined;
        livingRuntimeChildren.add(child);
        const exited = new Promise(resolve => {
            child.once('exit', (code, signal) => {
                livingRuntimeChildren.delete(child);
                this._exit = { code, signal };
                this._output.append(`==== run ${this._runs} exited: code ${code}, signal ${signal}\n`);
                resolve(this._exit);
            });
            child.once('error', error => {
                livingRuntimeChildren.delete(child);
                this._exit = { code: null, signal: null, error };
                this._output.append(`==== run ${this._runs} could not be started: ${error.message}\n`);
                resolve(this._exit);
            });
        });
        this._exited = exited;
        child.stdout.setEncoding('utf8');
        child.stderr.setEncoding('utf8');
        child.stdout.on('data', chunk => this._output.append(chunk));
        child.stderr.on('data', chunk => this._output.append(chunk));

        const deadline = Date.now() + READINESS_DEADLINE_MS;
        for (;;) {
            if (this._exit !== undefined) {
                throw new Error(
                    `dolittle-runtime exited before it accepted connections on port ${this.ports.private} ` +
                    `(code ${this._exit.code}, signal ${this._exit.signal})\n` +
                    `--- runtime output ---\n${lastLines(this.output(), LINES_SHOWN_ON_FAILURE)}`);
            }
            if (await canConnect(this.ports.private)) return;
            if (Date.now() > deadline) {
                await this.stop();
                throw new Error(
                    `dolittle-runtime did not accept connections on port ${this.ports.private} ` +
                    `within ${READINESS_DEADLINE_MS / 1000} s\n` +
                    `--- runtime output ---\n${lastLines(this.output(), LINES_SHOWN_ON_FAILURE)}`);
            }
            await delay(READINESS_POLL_INTERVAL_MS);
        }
    }

    /** SIGTERM, then SIGKILL after 5 s. Resolves with how the process ended. */
    async stop() {
        if (!this._child) return undefined;
        const child = this._child;
        if (this._exit === undefined) {
            child.kill('SIGTERM');
            let graceTimer;
            const grace = new Promise(resolve => { graceTimer = setTimeout(() => resolve(undefined), GRACEFUL_STOP_DEADLINE_MS); });
            const ended = await Promise.race([this._exited, grace]);
            clearTimeout(graceTimer);
            if (ended === undefined) {
                this._output.append(`==== run ${this._runs} did not stop within ${GRACEFUL_STOP_DEADLINE_MS / 1000} s of SIGTERM: SIGKILL\n`);
                child.kill('SIGKILL');
                await this._exited;
            }
        }
        this._child = undefined;
        return this._exit;
    }

    async restart() {
        await this.stop();
        await this.start();
    }
}

/**
 * A winston-shaped logger (the SDK only calls debug, warn, error and silly) that keeps every line,
 * so that scenarios can observe what the SDK reports: registrations, retries, failures.
 */
class CapturingLogger {
    constructor(label, sink) {
        this.label = label;
        this.lines = [];
        this._sink = sink;
        this._echo = process.env.DOLITTLE_CONFORMANCE_SDK_LOG === '1';
        for (const level of ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly']) {
            this[level] = (message, ...rest) => this._record(level, message, rest);
        }
        this.log = (levelOrEntry, message, ...rest) => {
            if (typeof levelOrEntry === 'object' && levelOrEntry !== null) {
                this._record(levelOrEntry.level || 'info', levelOrEntry.message, []);
            } else {
                this._record(levelOrEntry, message, rest);
            }
        };
    }

    _record(level, message, rest) {
        const text = typeof message === 'string' ? message : String(message);
        const entry = { time: new Date(), level, message: text, extra: rest };
        this.lines.push(entry);
        const formatted = `${entry.time.toISOString()} [${this.label}] ${level}: ${text}`;
        if (this._sink) this._sink.push(formatted);
        if (this._echo) process.stderr.write(formatted + '\n');
    }

    /** Lines whose message contains `fragment`. */
    matching(fragment, level) {
        return this.lines.filter(line => line.message.includes(fragment) && (level === undefined || line.level === level));
    }
}

/** Polls `condition` until it returns a truthy value or the deadline passes. */
async function waitFor(description, condition, { timeoutMs = 20_000, intervalMs = 50, details } = {}) {
    const started = Date.now();
    let lastError;
    for (;;) {
        try {
            const value = await condition();
            if (value) return value;
            lastError = undefined;
        } catch (error) {
            lastError = error;
        }
        if (Date.now() - started > timeoutMs) {
            let message = `timed out after ${(timeoutMs / 1000).toFixed(1)} s waiting for ${description}`;
            if (details) {
                try { message += `\n  state: ${details()}`; } catch (error) { message += `\n  (could not describe state: ${error})`; }
            }
            if (lastError) message += `\n  last error from the condition: ${lastError.stack || lastError}`;
            throw new Error(message);
        }
        await delay(intervalMs);
    }
}

/**
 * The things one scenario owns: a Runtime in a fresh directory, and the SDK clients built against
 * it. `dispose()` cancels every client, stops the Runtime and removes the directory.
 */
class World {
    constructor({ tenants = [DEVELOPMENT_TENANT], configurationFiles = {} } = {}) {
        this.tenants = tenants;
        this._configurationFiles = configurationFiles;
        this._heads = [];
        this.sdkLog = [];
        this.runtime = undefined;
        this.workingDirectory = undefined;
    }

    async startRuntime() {
        if (!this.runtime) {
            requireRuntimeBinary();
            this.workingDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'dolittle-js-sdk-17-'));
            const configurationDirectory = path.join(this.workingDirectory, '.dolittle');
            fs.mkdirSync(configurationDirectory, { recursive: true });
            const tenantsFile = Object.fromEntries(this.tenants.map(tenant => [tenant, {}]));
            fs.writeFileSync(path.join(configurationDirectory, 'tenants.json'), JSON.stringify(tenantsFile, null, 2));
            for (const [name, content] of Object.entries(this._configurationFiles)) {
                const text = typeof content === 'string' ? content : JSON.stringify(content, null, 2);
                fs.writeFileSync(path.join(configurationDirectory, name), text);
            }
            const [privatePort, publicPort, metricsPort, managementPort] = await distinctFreePorts(4);
            this.runtime = new RuntimeProcess({
                workingDirectory: this.workingDirectory,
                ports: { private: privatePort, public: publicPort, metrics: metricsPort, management: managementPort },
            });
        }
        await this.runtime.start();
    }

    async stopRuntime() {
        if (this.runtime) return this.runtime.stop();
        return undefined;
    }

    async restartRuntime() {
        await this.stopRuntime();
        await this.startRuntime();
    }

    /**
     * Builds an SDK client against this world's Runtime. `configure` receives the ClientBuilder
     * (after withRuntimeOn, withLogging and withCancellation were applied) and may return it.
     * Returns { client, logger, cancel, cancelled, waitForRegistration(kind, id) }.
     */
    head({ microserviceId = DEFAULT_MICROSERVICE, label, configure } = {}) {
        if (!this.runtime) throw new Error('start the runtime before building a client');
        const headLabel = label || `head ${this._heads.length + 1}`;
        const logger = new CapturingLogger(headLabel, this.sdkLog);
        const cancellationSource = new CancellationSource();
        let builder = Client.forMicroservice(microserviceId)
            .withRuntimeOn('127.0.0.1', this.runtime.privatePort)
            .withLogging(logger)
            .withCancellation(cancellationSource.cancellation);
        if (configure) builder = configure(builder) || builder;
        const client = builder.build();
        const head = {
            label: headLabel,
            client,
            logger,
            get cancelled() { return cancellationSource.cancelled; },
            cancel() {
                if (!cancellationSource.cancelled) cancellationSource.cancel();
            },
            /** Waits for the SDK's own "registered with the Runtime" log line for this processor. */
            waitForRegistration: (kind, id, options = {}) => waitFor(
                `${headLabel}: ${kind} ${id} to be registered with the Runtime`,
                () => logger.matching(`${kind} ${id} registered with the Runtime`).length > 0,
                {
                    timeoutMs: 20_000,
                    ...options,
                    details: () => `sdk log of ${headLabel}:\n${logger.lines.slice(-20).map(l => `    ${l.level}: ${l.message}`).join('\n')}`,
                }),
        };
        this._heads.push(head);
        return head;
    }

    waitFor(description, condition, options) {
        return waitFor(description, condition, options);
    }

    /** Adds the Runtime output and the SDK log to an error, keeping the original as the cause. */
    explain(error) {
        const runtimeOutput = this.runtime ? lastLines(this.runtime.output(), LINES_SHOWN_ON_FAILURE) : '(the runtime was never started)';
        const sdkOutput = this.sdkLog.length ? lastLines(this.sdkLog.join('\n'), LINES_SHOWN_ON_FAILURE) : '(nothing logged)';
        const summary = error && error.message ? error.message : String(error);
        const explained = new Error(
            `${summary}\n` +
            `--- runtime output (working directory ${this.workingDirectory}) ---\n${runtimeOutput}\n` +
            `--- sdk log ---\n${sdkOutput}`,
            { cause: error });
        return explained;
    }

    async dispose() {
        for (const head of this._heads) head.cancel();
        const exit = await this.stopRuntime();
        if (this.workingDirectory && process.env.DOLITTLE_CONFORMANCE_KEEP_DIRECTORIES !== '1') {
            fs.rmSync(this.workingDirectory, { recursive: true, force: true });
        }
        return exit;
    }
}

/**
 * Declares a node:test test that gets a World with a freshly started Runtime.
 * options: { tenants, configurationFiles, timeoutMs }.
 */
function scenario(name, options, body) {
    if (typeof options === 'function') {
        body = options;
        options = {};
    }
    const { timeoutMs = 60_000, ...worldOptions } = options;
    // The scenario enforces its own deadline so that it can still cancel its clients and stop its
    // Runtime; node's own test timeout is only a backstop (a timed-out body is abandoned by node,
    // and its open streams would keep the test process alive).
    test(name, { timeout: timeoutMs + 30_000 }, async (t) => {
        const world = new World(worldOptions);
        let failure;
        let deadlineTimer;
        try {
            const deadline = new Promise((_, reject) => {
                deadlineTimer = setTimeout(
                    () => reject(new Error(`scenario did not finish within ${timeoutMs / 1000} s`)),
                    timeoutMs);
            });
            await Promise.race([
                (async () => {
                    await world.startRuntime();
                    await body(world, t);
                })(),
                deadline,
            ]);
        } catch (error) {
            failure = error;
        } finally {
            clearTimeout(deadlineTimer);
        }
        try {
            await world.dispose();
        } catch (error) {
            failure = failure || error;
        }
        if (failure && failure.code === BINARY_MISSING) throw failure;
        if (failure) throw world.explain(failure);
    });
}

module.exports = {
    DEVELOPMENT_TENANT,
    DEFAULT_MICROSERVICE,
    CapturingLogger,
    RuntimeProcess,
    World,
    delay,
    distinctFreePorts,
    freePort,
    requireRuntimeBinary,
    runtimeBinaryPath,
    scenario,
    waitFor,
};
