'use strict';
// Fossil delta compression (client-protocol.md 6.6), through the real daemon
// with 2 workers and the official SDK (JSON and protobuf builds), which
// applies the deltas with its own fossil decoder: subscribers that asked for
// delta: 'fossil' receive exactly the data of subscribers that did not, for
// similar documents that grow and shrink, strings with escapes and non-ASCII
// characters, binary payloads (protobuf), publications with and without the
// API's delta flag, and delta_publish; after a reconnect they recover through
// a chain of deltas (the first recovered publication whole); on every
// bidirectional transport; with the Redis engine across two nodes. Raw WebSocket
// clients check the wire: the subscribe result's delta, data as a JSON string,
// the first publication whole and the next ones deltas, and the bytes
// received against a subscriber without delta. A channel without
// allowed_delta_types subscribes without delta, as Centrifugo does; an
// unknown delta type is 3501.
//
// Every test starts its own daemon and stops it in `finally`; every wait is
// bounded.

const { test } = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Centrifuge: CentrifugeJson } = require('centrifuge');
const { Centrifuge: CentrifugePb } = require('centrifuge/build/protobuf');
const { Rotord, waitFor, sleep, hs256, connOwners, apiPost, rawJsonSession } = require('./lib/rotord.js');
const { Redis, available: redisAvailable } = require('./lib/redis.js');
const { TRANSPORTS, sdk: tpSdk, label: tpLabel } = require('./lib/transports.js');

const PATH = '/connection/websocket';
const common = {
  history_size: 100, history_ttl: '300s', force_recovery: true,
  allow_subscribe_for_client: true, allow_history_for_client: true,
};
const CONFIG = {
  channel: {
    namespaces: [
      { name: 'dd', ...common, allowed_delta_types: ['fossil'] },
      { name: 'dpub', ...common, allowed_delta_types: ['fossil'], delta_publish: true },
      { name: 'nodelta', ...common },
    ],
  },
};

const token = (sub) => hs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 });

async function api(rd, method, body) {
  const r = await apiPost(rd.port, `/api/${method}`, body, { timeout: 5000 });
  const parsed = JSON.parse(r.body);
  assert.ok(r.status === 200 && parsed.result, `${method}: ${r.status} ${r.body}`);
  return parsed.result;
}

// ---- documents ------------------------------------------------------------

// A sequence of similar JSON documents: a list of items edited a little at
// each step, growing then shrinking, with strings that need escapes and
// characters of 2, 3 and 4 UTF-8 bytes.
function documents(n) {
  const docs = [];
  const items = [];
  for (let i = 0; i < 20; i++) items.push({ id: i, name: `item ${i} \u00e9t\u00e9 \u20ac`, price: i * 1.5, tags: ['a', 'b'] });
  for (let k = 0; k < n; k++) {
    if (k < n / 2) items.push({ id: 100 + k, name: `new "quoted" \\ ${k} \ud83d\ude00`, price: k, tags: [] });
    else items.splice(k % items.length, 1);
    items[k % items.length].price += 1;
    docs.push({ seq: k, title: `document\nwith a newline, tab\t and \u0001 control ${k % 3}`, items: items.map((x) => ({ ...x })) });
  }
  return docs;
}

// ---- SDK subscribers ----------------------------------------------------------

function sdk(rd, { pb, channel, delta, user = 'u' }) {
  const st = { pb, delta, data: [], offsets: [], subscribed: [], errors: [], ws: null };
  class TrackedWs extends WebSocket {
    constructor(url, protocols) { super(url, protocols); st.ws = this; }
  }
  const Ctor = pb ? CentrifugePb : CentrifugeJson;
  st.c = new Ctor(`ws://127.0.0.1:${rd.port}${PATH}`, {
    token: token(user), websocket: TrackedWs, minReconnectDelay: 50, maxReconnectDelay: 300, timeout: 5000,
  });
  st.sub = st.c.newSubscription(channel, delta ? { delta: 'fossil' } : {});
  st.sub.on('subscribed', (ctx) => st.subscribed.push({ recovered: ctx.recovered, wasRecovering: ctx.wasRecovering }));
  st.sub.on('error', (ctx) => st.errors.push(String(ctx.error && (ctx.error.code || ctx.error.message))));
  st.sub.on('publication', (ctx) => {
    st.data.push(pb ? Buffer.from(ctx.data) : ctx.data);
    st.offsets.push(ctx.offset);
  });
  st.sub.subscribe();
  st.c.connect();
  return st;
}

const decoded = (st) => st.data.map((d) => (st.pb ? JSON.parse(d.toString('utf8')) : d));
const label = (st) => `${st.pb ? 'protobuf' : 'JSON'} client ${st.delta ? 'with' : 'without'} delta`;
const isSubscribed = (st) => st.sub.state === 'subscribed';

function closeAll(v) {
  for (const st of v) {
    try { st.c.disconnect(); } catch (_) { /* already */ }
  }
}

// ---- raw JSON sessions: every byte received counted ----------------------------

const raw = (rd) => rawJsonSession(rd.port, token('raw'));
const pubs = (ws) => ws.msgs.filter((m) => m.push && m.push.pub).map((m) => m.push.pub);

// ==== the SDK applies what it receives ============================================

test('delta subscribers (JSON, protobuf) on 2 workers receive exactly what the others receive', async () => {
  const rd = new Rotord(CONFIG, { workers: 2 });
  const clients = [];
  try {
    await rd.start();
    for (let i = 0; i < 12; i++) {
      clients.push(sdk(rd, { pb: i % 4 >= 2, delta: i % 2 === 0, channel: 'dd:doc', user: `u${i}` }));
    }
    await waitFor(() => clients.every(isSubscribed), 5000, 10, 'subscribed');
    const owners = connOwners(rd.workers(), rd.port);
    const held = new Set(clients.map((st) => owners.get(st.ws._socket.localPort)));
    assert.strictEqual(held.size, 2, 'the clients are spread over both workers');

    const docs = documents(30);
    for (let k = 0; k < docs.length; k++) {
      // Every fifth without the delta flag: whole to everybody.
      await api(rd, 'publish', { channel: 'dd:doc', data: docs[k], delta: k % 5 !== 4 });
    }
    await waitFor(() => clients.every((st) => st.data.length >= docs.length), 5000, 10, 'publications');
    await sleep(100);
    for (const st of clients) {
      assert.deepStrictEqual(decoded(st), docs, `${label(st)}: the same documents`);
      assert.deepStrictEqual(st.offsets, docs.map((_, k) => k + 1), `${label(st)}: offsets`);
      assert.deepStrictEqual(st.errors, [], `${label(st)}: no error`);
      const ds = st.sub.deltaStats();
      if (st.delta) {
        assert.strictEqual(ds.numPublications, docs.length, `${label(st)}: every publication through delta`);
        // The first, and the 6 published without delta, whole; the rest deltas.
        assert.strictEqual(ds.numFullPayloads, 7, `${label(st)}: whole payloads`);
        assert.strictEqual(ds.numDeltaPayloads, docs.length - 7, `${label(st)}: deltas`);
        assert.ok(ds.bytesReceived * 3 < ds.bytesDecoded,
          `${label(st)}: deltas save bytes (${ds.bytesReceived} for ${ds.bytesDecoded})`);
      } else {
        assert.strictEqual(ds.numPublications, 0, `${label(st)}: no delta`);
      }
    }
  } finally {
    closeAll(clients);
    await rd.stop();
  }
});

test('binary payloads to protobuf subscribers, and delta_publish without the API flag', async () => {
  const rd = new Rotord(CONFIG, { workers: 2 });
  const clients = [];
  try {
    await rd.start();
    for (let i = 0; i < 4; i++) clients.push(sdk(rd, { pb: true, delta: i % 2 === 0, channel: 'dpub:bin', user: `b${i}` }));
    await waitFor(() => clients.every(isSubscribed), 5000, 10, 'subscribed');
    const base = Buffer.alloc(3000);
    for (let i = 0; i < base.length; i++) base[i] = (i * 7919 + (i >> 5)) & 0xff;
    const sent = [];
    for (let k = 0; k < 12; k++) {
      const b = Buffer.concat([base.subarray(0, 500 + k * 40), Buffer.from([k, 0, 0xff, k]), base.subarray(1000 - k * 30)]);
      b[k * 100] ^= 0x55;
      sent.push(b);
      await api(rd, 'publish', { channel: 'dpub:bin', b64data: b.toString('base64') });
    }
    await waitFor(() => clients.every((st) => st.data.length >= sent.length), 5000, 10, 'publications');
    for (const st of clients) {
      assert.deepStrictEqual(st.data, sent, `${label(st)}: the same bytes`);
      if (st.delta) {
        assert.strictEqual(st.sub.deltaStats().numDeltaPayloads, sent.length - 1, 'delta_publish: deltas after the first');
      }
    }
  } finally {
    closeAll(clients);
    await rd.stop();
  }
});

test('recovery after a reconnect: a chain of deltas, the first recovered whole, then live deltas', async () => {
  const rd = new Rotord(CONFIG, { workers: 2 });
  const clients = [];
  try {
    await rd.start();
    for (let i = 0; i < 4; i++) clients.push(sdk(rd, { pb: i >= 2, delta: i % 2 === 0, channel: 'dd:rec', user: `r${i}` }));
    await waitFor(() => clients.every(isSubscribed), 5000, 10, 'subscribed');
    const docs = documents(24);
    for (let k = 0; k < 8; k++) await api(rd, 'publish', { channel: 'dd:rec', data: docs[k], delta: true });
    await waitFor(() => clients.every((st) => st.data.length >= 8), 5000, 10, 'first publications');
    for (const st of clients) st.c.disconnect();
    await waitFor(() => clients.every((st) => st.c.state === 'disconnected'), 5000, 10, 'disconnected');
    for (let k = 8; k < 16; k++) await api(rd, 'publish', { channel: 'dd:rec', data: docs[k], delta: true });
    for (const st of clients) st.c.connect();
    await waitFor(() => clients.every((st) => st.subscribed.length === 2 && isSubscribed(st)), 5000, 10, 'resubscribed');
    for (let k = 16; k < 24; k++) await api(rd, 'publish', { channel: 'dd:rec', data: docs[k], delta: true });
    await waitFor(() => clients.every((st) => st.data.length >= 24), 5000, 10, 'all publications');
    await sleep(100);
    for (const st of clients) {
      assert.deepStrictEqual(st.subscribed[1], { recovered: true, wasRecovering: true }, `${label(st)}: recovered`);
      assert.deepStrictEqual(decoded(st), docs, `${label(st)}: every document once, in order`);
      if (st.delta) {
        const ds = st.sub.deltaStats();
        // Whole: the first live one and the first recovered one.
        assert.strictEqual(ds.numFullPayloads, 2, `${label(st)}: whole payloads`);
        assert.strictEqual(ds.numDeltaPayloads, 22, `${label(st)}: deltas, recovered and live`);
      }
    }

    // The wire of a recovery: data as strings, the first whole, then deltas.
    const hist = await api(rd, 'history', { channel: 'dd:rec', limit: 0 });
    const ws = await raw(rd);
    try {
      const r = await ws.call({ subscribe: { channel: 'dd:rec', delta: 'fossil', recover: true, offset: 20, epoch: hist.epoch } });
      const res = r.subscribe;
      assert.strictEqual(res.delta, true);
      assert.strictEqual(res.recovered, true);
      assert.deepStrictEqual(res.publications.map((p) => p.offset), [21, 22, 23, 24]);
      assert.deepStrictEqual(res.publications.map((p) => typeof p.data), ['string', 'string', 'string', 'string']);
      assert.deepStrictEqual(res.publications.map((p) => p.delta === true), [false, true, true, true]);
      assert.deepStrictEqual(JSON.parse(res.publications[0].data), docs[20]);
      // The next live one is a delta of the last recovered one.
      await api(rd, 'publish', { channel: 'dd:rec', data: { ...docs[23], seq: 24 }, delta: true });
      await waitFor(() => pubs(ws).length === 1, 3000, 10, 'live publication');
      assert.strictEqual(pubs(ws)[0].delta, true, 'the first live one after a recovery with publications is a delta');
    } finally {
      ws.close();
    }
  } finally {
    closeAll(clients);
    await rd.stop();
  }
});

test('every bidirectional transport: http_stream and SSE sessions get the same deltas', async () => {
  const rd = new Rotord({ ...CONFIG, http_stream: { enabled: true }, sse: { enabled: true } }, { workers: 2 });
  const clients = [];
  try {
    await rd.start();
    for (const t of TRANSPORTS) {
      const c = tpSdk(rd.port, t, { token: token(`t-${t.name}`) });
      const st = { t, c, data: [] };
      st.sub = c.newSubscription('dd:tp', { delta: 'fossil' });
      st.sub.on('publication', (ctx) => st.data.push(t.fmt === 'protobuf' ? JSON.parse(Buffer.from(ctx.data).toString()) : ctx.data));
      st.sub.subscribe();
      c.connect();
      clients.push(st);
    }
    await waitFor(() => clients.every((st) => st.sub.state === 'subscribed'), 5000, 10, 'subscribed');
    const docs = documents(10);
    for (const d of docs) await api(rd, 'publish', { channel: 'dd:tp', data: d, delta: true });
    await waitFor(() => clients.every((st) => st.data.length >= docs.length), 5000, 10, 'publications');
    for (const st of clients) {
      assert.deepStrictEqual(st.data, docs, `${tpLabel(st.t)}: the same documents`);
      assert.strictEqual(st.sub.deltaStats().numDeltaPayloads, docs.length - 1, `${tpLabel(st.t)}: deltas`);
    }
  } finally {
    for (const st of clients) st.c.disconnect();
    await rd.stop();
  }
});

// ==== the wire ===================================================================

test('the wire: delta negotiated, data as strings, the first whole, fewer bytes', async () => {
  const rd = new Rotord(CONFIG, { workers: 2 });
  const conns = [];
  try {
    await rd.start();
    const withDelta = await raw(rd);
    const without = await raw(rd);
    const refused = await raw(rd);
    conns.push(withDelta, without, refused);
    const a = await withDelta.call({ subscribe: { channel: 'dd:wire', delta: 'fossil' } });
    assert.strictEqual(a.subscribe.delta, true, 'delta in the result');
    const b = await without.call({ subscribe: { channel: 'dd:wire' } });
    assert.strictEqual(b.subscribe.delta, undefined, 'no delta asked, none given');
    // As Centrifugo: a channel that does not allow delta subscribes without it.
    const c = await refused.call({ subscribe: { channel: 'nodelta:wire', delta: 'fossil' } });
    assert.ok(c.subscribe && !c.error, JSON.stringify(c));
    assert.strictEqual(c.subscribe.delta, undefined, 'not allowed: no delta in the result');

    const docs = documents(20);
    const b0 = withDelta.bytes;
    const b1 = without.bytes;
    const late = [];
    for (let k = 0; k < docs.length; k++) {
      if (k === 10) {
        // Late subscribers, two on each worker (one where the channel
        // already keeps a base): their first publication is whole. The
        // kernel picks the worker, so connections are opened until both
        // have two; the extra ones are closed unsubscribed.
        const w = (ws) => connOwners(rd.workers(), rd.port).get(ws._socket.localPort);
        const home = w(withDelta);
        let same = 0;
        let other = 0;
        for (let i = 0; same < 2 || other < 2; i++) {
          assert.ok(i < 64, `late subscribers on both workers: ${same} beside the first, ${other} on the other`);
          const ws = await raw(rd);
          const isHome = w(ws) === home;
          if (isHome ? same >= 2 : other >= 2) {
            ws.close();
            continue;
          }
          if (isHome) same++;
          else other++;
          late.push(ws);
          await ws.call({ subscribe: { channel: 'dd:wire', delta: 'fossil' } });
        }
      }
      await api(rd, 'publish', { channel: 'dd:wire', data: docs[k], delta: true });
      await api(rd, 'publish', { channel: 'nodelta:wire', data: docs[k], delta: true });
    }
    await waitFor(() => conns.every((ws) => pubs(ws).length === docs.length), 5000, 10, 'publications');
    await waitFor(() => late.every((ws) => pubs(ws).length === docs.length - 10), 5000, 10, 'late publications');
    for (const ws of late) {
      const p = pubs(ws);
      assert.strictEqual(p[0].delta, undefined, 'a late subscriber: the first whole');
      assert.deepStrictEqual(JSON.parse(p[0].data), docs[10]);
      assert.ok(p.slice(1).every((x) => x.delta === true), 'then deltas');
      ws.close();
    }
    const pd = pubs(withDelta);
    assert.strictEqual(typeof pd[0].data, 'string', 'JSON: data as a string');
    assert.deepStrictEqual(JSON.parse(pd[0].data), docs[0], 'the first whole');
    assert.strictEqual(pd[0].delta, undefined);
    assert.ok(pd.slice(1).every((p) => p.delta === true && typeof p.data === 'string'), 'the next ones deltas');
    assert.ok(pd.slice(1).every((p) => /^[0-9A-Za-z_~]+\n/.test(p.data) && p.data.endsWith(';')), 'fossil deltas');
    assert.deepStrictEqual(pubs(without).map((p) => p.data), docs, 'without delta: the documents as JSON');
    assert.deepStrictEqual(pubs(refused).map((p) => p.data), docs, 'not allowed: the documents as JSON');
    assert.ok(pubs(without).every((p) => p.delta === undefined));
    const got = withDelta.bytes - b0;
    const plain = without.bytes - b1;
    assert.ok(got * 3 < plain, `bytes on the wire: ${got} with delta, ${plain} without`);
  } finally {
    for (const ws of conns) ws.close();
    await rd.stop();
  }
});

test('an unknown delta type is a bad request (3501)', async () => {
  const rd = new Rotord(CONFIG, { workers: 2 });
  try {
    await rd.start();
    const ws = await raw(rd);
    ws.send(JSON.stringify({ id: 2, subscribe: { channel: 'dd:x', delta: 'xdelta' } }));
    const code = await Promise.race([ws.closed, sleep(3000).then(() => 'open')]);
    assert.strictEqual(code, 3501);
  } finally {
    await rd.stop();
  }
});

// ==== the Redis engine ================================================================

test('the Redis engine: two nodes, deltas from d1 frames, recovery from the Redis stream',
  { skip: redisAvailable() ? false : 'redis-server is not installed', timeout: 60000 }, async () => {
    const redis = await new Redis().start();
    const nodes = [];
    const clients = [];
    try {
      for (const name of ['node-a', 'node-b']) {
        const cfg = { ...CONFIG, engine: { type: 'redis', redis: { address: [`redis://127.0.0.1:${redis.port}`] } }, node: { name } };
        nodes.push(await new Rotord(cfg, { workers: 2, expectWorkers: 3 }).start());
      }
      for (let i = 0; i < 8; i++) {
        clients.push(sdk(nodes[i % 2], { pb: i % 4 >= 2, delta: (i >> 1) % 2 === 0, channel: 'dd:redis', user: `x${i}` }));
      }
      await waitFor(() => clients.every(isSubscribed), 5000, 10, 'subscribed');
      const docs = documents(20);
      for (let k = 0; k < 10; k++) await api(nodes[k % 2], 'publish', { channel: 'dd:redis', data: docs[k], delta: true });
      await waitFor(() => clients.every((st) => st.data.length >= 10), 5000, 10, 'publications');
      for (const st of clients) st.c.disconnect();
      await waitFor(() => clients.every((st) => st.c.state === 'disconnected'), 5000, 10, 'disconnected');
      for (let k = 10; k < 15; k++) await api(nodes[0], 'publish', { channel: 'dd:redis', data: docs[k], delta: true });
      for (const st of clients) st.c.connect();
      await waitFor(() => clients.every((st) => st.subscribed.length === 2 && isSubscribed(st)), 5000, 10, 'resubscribed');
      for (let k = 15; k < 20; k++) await api(nodes[1], 'publish', { channel: 'dd:redis', data: docs[k], delta: true });
      await waitFor(() => clients.every((st) => st.data.length >= 20), 5000, 10, 'all publications');
      await sleep(100);
      for (const st of clients) {
        assert.deepStrictEqual(decoded(st), docs, `${label(st)}: every document once, in order`);
        assert.deepStrictEqual(st.subscribed[1], { recovered: true, wasRecovering: true }, `${label(st)}: recovered`);
        if (st.delta) {
          const ds = st.sub.deltaStats();
          assert.strictEqual(ds.numFullPayloads, 2, `${label(st)}: whole: the first live, the first recovered`);
          assert.strictEqual(ds.numDeltaPayloads, 18, `${label(st)}: deltas`);
        }
      }
    } finally {
      closeAll(clients);
      for (const n of nodes) await n.stop();
      await redis.stop();
    }
  });
