// A Sparkplug B host application built on Eclipse Tahu's sparkplug-payload and mqtt.js, independent of the
// gateway's own code: tests/test_sparkplug_interop.py drives it.
//
//   node sparkplug_host.mjs BROKER_URL GROUP_ID HOST_ID
//
// It publishes its STATE (online, retained), subscribes to spBv1.0/GROUP_ID/#, decodes every message and
// checks it: NBIRTH's seq 0, seq continuity (mod 256) over everything but NDEATH, DDATA metrics by aliases
// its device's DBIRTH declared, NDEATH's bdSeq against NBIRTH's. It writes one JSON line per event on
// stdout ("error" for any failed check), and takes one JSON command per line on stdin:
//   {"op": "rebirth"}                                    NCMD Node Control/Rebirth = true
//   {"op": "dcmd", "device": D, "name": N, "value": V}   DCMD writing V (a Double) to N, by its alias
//   {"op": "state", "online": bool}                      its STATE, retained
import { createInterface } from "node:readline";
import mqtt from "mqtt";
import sparkplug from "sparkplug-payload";

const [url, group, hostId] = process.argv.slice(2);
const codec = sparkplug.get("spBv1.0");
const stateTopic = `spBv1.0/STATE/${hostId}`;
const nodes = new Map(); // edge node -> { bdSeq, seq, devices: Map(device -> Map(alias -> {name, unit})) }

const number = (x) => (x !== null && typeof x === "object" && "low" in x ? x.toNumber() : x);
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const fail = (message) => emit({ event: "error", message });
const state = (online) => JSON.stringify({ online, timestamp: Date.now() });

const client = mqtt.connect(url, {
  clientId: `sparkplug-host-${hostId}`,
  clean: true,
  will: { topic: stateTopic, payload: state(false), qos: 1, retain: true },
});

client.on("error", (error) => fail(`mqtt: ${error.message}`));
client.on("connect", () => {
  client.subscribe(`spBv1.0/${group}/#`, { qos: 0 }, (error) => {
    if (error) return fail(`subscribe: ${error.message}`);
    client.publish(stateTopic, state(true), { qos: 1, retain: true }, () => emit({ event: "ready" }));
  });
});

function checkSeq(node, kind, seq) {
  if (kind === "NBIRTH") {
    if (seq !== 0) fail(`NBIRTH of ${node.id} has seq ${seq}, not 0`);
  } else if (seq !== (node.seq + 1) % 256) {
    fail(`${kind} of ${node.id}: seq ${seq} after ${node.seq}`);
  }
  node.seq = seq;
}

client.on("message", (topic, message) => {
  const [, , kind, nodeId, device] = topic.split("/");
  let payload;
  try {
    payload = codec.decodePayload(message);
  } catch (error) {
    return fail(`${topic}: not a Sparkplug B payload: ${error.message}`);
  }
  const seq = number(payload.seq);
  const metrics = payload.metrics ?? [];
  if (kind === "NBIRTH") {
    const bdSeq = number(metrics.find((m) => m.name === "bdSeq")?.value);
    const rebirth = metrics.find((m) => m.name === "Node Control/Rebirth");
    if (bdSeq === undefined || rebirth === undefined) fail(`NBIRTH of ${nodeId} lacks bdSeq or the rebirth control`);
    const node = { id: nodeId, bdSeq, seq: 0, devices: new Map() };
    nodes.set(nodeId, node);
    checkSeq(node, kind, seq);
    return emit({ event: "nbirth", node: nodeId, bdSeq, seq });
  }
  const node = nodes.get(nodeId);
  if (kind === "NDEATH") {
    const bdSeq = number(metrics.find((m) => m.name === "bdSeq")?.value);
    if (node && bdSeq !== node.bdSeq) fail(`NDEATH of ${nodeId}: bdSeq ${bdSeq}, its NBIRTH said ${node.bdSeq}`);
    nodes.delete(nodeId);
    return emit({ event: "ndeath", node: nodeId, bdSeq });
  }
  if (!node) return fail(`${kind} from ${nodeId} before its NBIRTH`);
  if (kind === "NCMD" || kind === "DCMD") return; // our own commands
  checkSeq(node, kind, seq);
  if (kind === "DBIRTH") {
    const aliases = new Map();
    for (const m of metrics) {
      if (m.alias === undefined || m.alias === null) continue; // descriptive metrics (Device Info/...)
      const alias = number(m.alias);
      if (aliases.has(alias)) fail(`DBIRTH of ${device}: alias ${alias} twice`);
      aliases.set(alias, { name: m.name, type: m.type, unit: m.properties?.engUnit?.value });
    }
    node.devices.set(device, aliases);
    const values = new Map(metrics.map((m) => [m.name, m.isNull ? null : number(m.value)]));
    const listed = [...aliases].map(([alias, m]) => ({ alias, ...m, value: values.get(m.name) }));
    return emit({ event: "dbirth", device, seq, metrics: listed });
  }
  if (kind === "DDATA") {
    const aliases = node.devices.get(device);
    if (!aliases) return fail(`DDATA for ${device} before its DBIRTH`);
    for (const m of metrics) {
      const known = aliases.get(number(m.alias));
      if (!known) {
        fail(`DDATA for ${device}: alias ${number(m.alias)} not in its DBIRTH`);
        continue;
      }
      emit({
        event: "data", device, seq, name: known.name, unit: known.unit, type: m.type,
        value: m.isNull ? null : number(m.value), timestamp: number(m.timestamp),
        historical: m.isHistorical === true, quality: number(m.properties?.Quality?.value) ?? null,
      });
    }
    return;
  }
  emit({ event: kind.toLowerCase(), device, seq, metrics: metrics.length });
});

function command(line) {
  const order = JSON.parse(line);
  if (order.op === "state") {
    client.publish(stateTopic, state(order.online), { qos: 1, retain: true }, () => emit({ event: "state-sent" }));
  } else if (order.op === "rebirth") {
    const [nodeId] = nodes.keys();
    const body = codec.encodePayload({
      timestamp: Date.now(),
      metrics: [{ name: "Node Control/Rebirth", type: "Boolean", value: true }],
    });
    client.publish(`spBv1.0/${group}/NCMD/${nodeId}`, body, { qos: 0 }, () => emit({ event: "ncmd-sent" }));
  } else if (order.op === "dcmd") {
    const [node] = nodes.values();
    const aliases = node.devices.get(order.device);
    const alias = [...aliases].find(([, m]) => m.name === order.name)[0];
    const body = codec.encodePayload({
      timestamp: Date.now(),
      metrics: [{ alias, type: "Double", value: order.value }],
    });
    client.publish(`spBv1.0/${group}/DCMD/${node.id}/${order.device}`, body, { qos: 0 }, () =>
      emit({ event: "dcmd-sent", alias }),
    );
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  try {
    command(line);
  } catch (error) {
    fail(`command ${line}: ${error.message}`);
  }
});
