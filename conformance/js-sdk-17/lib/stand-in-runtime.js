#!/usr/bin/env node
// A stand-in for dolittle-runtime, used only by harness.test.js to check the harness itself
// (start, readiness, restart in the same directory, SIGTERM, SIGKILL, early exit) without the
// real binary. It speaks no gRPC: it only accepts TCP connections on --private-port.
'use strict';

const fs = require('node:fs');
const net = require('node:net');

const args = process.argv.slice(2);
const option = name => {
    const index = args.indexOf(name);
    return index >= 0 ? args[index + 1] : undefined;
};
const behaviour = process.env.STAND_IN_BEHAVIOUR || 'serve';

if (!fs.existsSync('.dolittle/tenants.json')) {
    console.error('stand-in: no .dolittle/tenants.json in the working directory');
    process.exit(3);
}
if (behaviour === 'exit-at-once') {
    console.error('stand-in: exiting at once as asked');
    process.exit(7);
}

const runs = fs.existsSync('stand-in-runs') ? Number(fs.readFileSync('stand-in-runs', 'utf8')) + 1 : 1;
fs.writeFileSync('stand-in-runs', String(runs));
const server = net.createServer(socket => socket.end());
server.listen(Number(option('--private-port')), '127.0.0.1', () => {
    console.log(`stand-in: run ${runs} listening on ${option('--private-port')} with ${args.join(' ')}`);
});
process.on('SIGTERM', () => {
    if (behaviour === 'ignore-sigterm') {
        console.log('stand-in: ignoring SIGTERM');
        return;
    }
    console.log('stand-in: SIGTERM, stopping');
    server.close(() => process.exit(0));
});
