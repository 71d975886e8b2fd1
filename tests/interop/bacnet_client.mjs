#!/usr/bin/env node
// An independent BACnet/IP client (@bacnet-js/client) for interoperability tests against the simulator.
//
//   node bacnet_client.mjs read HOST:PORT OBJECT_TYPE,INSTANCE
//       prints the present value as one JSON line: {"type":"REAL","value":24.5}
//   node bacnet_client.mjs write HOST:PORT OBJECT_TYPE,INSTANCE VALUE PRIORITY
//       writes VALUE as a REAL into the present value at PRIORITY (1..16)
//   node bacnet_client.mjs relinquish HOST:PORT OBJECT_TYPE,INSTANCE PRIORITY
//       writes NULL into the present value at PRIORITY
//
// OBJECT_TYPE is a BACnet name as bacpypes3 spells it (analog-value) or the enum's (ANALOG_VALUE) or a number.
// The device is addressed directly (unicast) by HOST:PORT: no Who-Is, no broadcast.
// The client binds its own UDP socket to BACNET_LOCAL_ADDRESS (default 127.0.0.1) on BACNET_LOCAL_PORT, or
// on a free port when that is unset; a port already in use is an error, never shared.
// Every request times out after BACNET_TIMEOUT_MS (default 5000). Exit codes: 0 done, 1 a BACnet or
// network failure, 2 a usage mistake.

import dgram from 'node:dgram';
import process from 'node:process';

import bacnet from '@bacnet-js/client';

const Client = bacnet.default;
const { ApplicationTag, ErrorClass, ErrorCode, ObjectType, PropertyIdentifier } = bacnet;

const USAGE = `usage:
  node bacnet_client.mjs read HOST:PORT OBJECT_TYPE,INSTANCE
  node bacnet_client.mjs write HOST:PORT OBJECT_TYPE,INSTANCE VALUE PRIORITY
  node bacnet_client.mjs relinquish HOST:PORT OBJECT_TYPE,INSTANCE PRIORITY`;

class UsageError extends Error {}

const LOCAL_ADDRESS = process.env.BACNET_LOCAL_ADDRESS || '127.0.0.1';
const TIMEOUT_MS = Number(process.env.BACNET_TIMEOUT_MS || 5000);
if (!Number.isInteger(TIMEOUT_MS) || TIMEOUT_MS < 1) {
    process.stderr.write(`bacnet_client: BACNET_TIMEOUT_MS must be a positive integer (ms)\n`);
    process.exit(2);
}

function parseAddress(text) {
    const match = /^([^:\s]+):(\d+)$/.exec(text ?? '');
    const port = match ? Number(match[2]) : 0;
    if (!match || port < 1 || port > 65535) {
        throw new UsageError(`device address must be HOST:PORT, got ${JSON.stringify(text)}`);
    }
    return `${match[1]}:${port}`;
}

function parseObject(text) {
    const match = /^([A-Za-z0-9_-]+),(\d+)$/.exec(text ?? '');
    if (!match) {
        throw new UsageError(`object must be OBJECT_TYPE,INSTANCE (e.g. analog-value,1), got ${JSON.stringify(text)}`);
    }
    const name = match[1];
    const type = /^\d+$/.test(name) ? Number(name) : ObjectType[name.toUpperCase().replaceAll('-', '_')];
    if (typeof type !== 'number') {
        throw new UsageError(`unknown BACnet object type ${JSON.stringify(name)}`);
    }
    return { type, instance: Number(match[2]) };
}

function parsePriority(text) {
    const priority = Number(text);
    // The library sends no priority at all for 0 (its "no priority"): refuse rather than write unprioritised.
    if (!/^\d+$/.test(text ?? '') || priority < 1 || priority > 16) {
        throw new UsageError(`priority must be an integer 1..16, got ${JSON.stringify(text)}`);
    }
    return priority;
}

function parseReal(text) {
    const value = Number(text);
    if (text === undefined || text.trim() === '' || !Number.isFinite(value)) {
        throw new UsageError(`value must be a finite number, got ${JSON.stringify(text)}`);
    }
    return value;
}

function parseCommand(argv) {
    const [command, address, object, ...rest] = argv;
    const arity = { read: 0, write: 2, relinquish: 1 }[command];
    if (arity === undefined || rest.length !== arity) {
        throw new UsageError(USAGE);
    }
    const parsed = { command, address: parseAddress(address), object: parseObject(object), objectText: object };
    if (command === 'write') {
        parsed.value = parseReal(rest[0]);
        parsed.priority = parsePriority(rest[1]);
    } else if (command === 'relinquish') {
        parsed.priority = parsePriority(rest[0]);
    }
    return parsed;
}

function withTimeout(promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function localPort() {
    if (process.env.BACNET_LOCAL_PORT) {
        const port = Number(process.env.BACNET_LOCAL_PORT);
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
            throw new UsageError(`BACNET_LOCAL_PORT must be a port 1..65535, got ${process.env.BACNET_LOCAL_PORT}`);
        }
        return port;
    }
    // The library treats port 0 as "unset" and binds 47808: ask the kernel for a free port first.
    const probe = dgram.createSocket('udp4');
    try {
        await withTimeout(
            new Promise((resolve, reject) => {
                probe.once('error', reject);
                probe.bind(0, LOCAL_ADDRESS, resolve);
            }),
            `finding a free UDP port on ${LOCAL_ADDRESS}`,
        );
        return probe.address().port;
    } finally {
        probe.close();
    }
}

async function openClient() {
    const port = await localPort();
    // reuseAddr defaults to true in the library: off, so a port in use fails instead of being shared.
    const client = new Client({ interface: LOCAL_ADDRESS, port, apduTimeout: TIMEOUT_MS, reuseAddr: false });
    let failed;
    const bound = new Promise((resolve, reject) => {
        failed = reject;
        client.once('listening', resolve);
    });
    // A socket error must not crash the process as an unhandled 'error' event: before binding it fails the
    // bind; after, it is shown, and the request it spoiled fails on its own timeout.
    client.on('error', (err) => {
        failed(err);
        process.stderr.write(`bacnet_client: socket error: ${err.message}\n`);
    });
    try {
        await withTimeout(bound, `binding UDP ${LOCAL_ADDRESS}:${port}`);
    } catch (err) {
        client.close();
        throw new Error(`cannot bind UDP ${LOCAL_ADDRESS}:${port}: ${err.message}`);
    }
    return client;
}

function explain(err) {
    // The library reports "BacnetError - Class:2 - Code:40" and "BacnetAbort - Reason:N" (for rejects too).
    const match = /Class:(\d+) - Code:(\d+)/.exec(err.message);
    if (match) {
        const cls = ErrorClass[Number(match[1])] ?? match[1];
        const code = ErrorCode[Number(match[2])] ?? match[2];
        return `${err.message} (${cls}: ${code})`;
    }
    if (err.message === 'ERR_TIMEOUT') {
        return `no answer within ${TIMEOUT_MS} ms (ERR_TIMEOUT)`;
    }
    return err.message;
}

function jsonValue(value) {
    return { type: ApplicationTag[value.type] ?? value.type, value: value.value ?? null };
}

async function run(args) {
    const client = await openClient();
    const receiver = { address: args.address };
    const target = `${args.address} ${args.objectText}`;
    const presentValue = PropertyIdentifier.PRESENT_VALUE;
    try {
        if (args.command === 'read') {
            const result = await withTimeout(
                client.readProperty(receiver, args.object, presentValue),
                `read ${target} present-value`,
            );
            const values = result.values.map(jsonValue);
            process.stdout.write(`${JSON.stringify(values.length === 1 ? values[0] : values)}\n`);
        } else {
            const value =
                args.command === 'write'
                    ? { type: ApplicationTag.REAL, value: args.value }
                    : { type: ApplicationTag.NULL, value: null };
            await withTimeout(
                client.writeProperty(receiver, args.object, presentValue, [value], { priority: args.priority }),
                `${args.command} ${target} present-value at priority ${args.priority}`,
            );
        }
    } catch (err) {
        throw new Error(`${args.command} ${target}: ${explain(err)}`);
    } finally {
        client.close();
    }
}

async function main() {
    let args;
    try {
        args = parseCommand(process.argv.slice(2));
    } catch (err) {
        process.stderr.write(`bacnet_client: ${err.message}\n`);
        return 2;
    }
    try {
        await run(args);
        return 0;
    } catch (err) {
        process.stderr.write(`bacnet_client: ${err.message}\n`);
        return err instanceof UsageError ? 2 : 1;
    }
}

// A last guard: whatever is left hanging, the process ends (the timer does not keep it alive by itself).
setTimeout(() => {
    process.stderr.write('bacnet_client: still running after every timeout: giving up\n');
    process.exit(1);
}, 3 * TIMEOUT_MS + 1000).unref();

process.exitCode = await main();
