'use strict';
// Fan-out through the real daemon with 4 workers, driven by the official
// SDK (centrifuge-js, JSON and protobuf builds) and by raw sockets where the
// SDK would hide what is on the wire: many clients on every worker getting
// every publication exactly once and in order whatever way it was published
// (server API per-method, broadcast and legacy forms, client publish from
// JSON and protobuf clients); payload bytes kept as published; binary to a
// JSON subscriber (3506); a client that never reads (3008); server pings
// (3012, 3501); stale connections (3502); a worker killed with SIGKILL;
// a reload that changes channel options under live connections; and the
// graceful stop (3001).
//
// Every test starts its own daemon and stops it in `finally`; every wait is
// bounded.

const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const WebSocket = require('ws');
const { Centrifuge: CentrifugeJson } = require('centrifuge');
const { Centrifuge: CentrifugePb } = require('centrifuge/build/protobuf');
const { Rotord, waitFor, sleep, hs256, connOwners, bounded, apiPost } = require('./lib/rotord.js');
const { clientFrame, parseFrames } = require('./lib/wsframes.js');

const SECRET = 'test-secret';
const PATH = '/connection/websocket';

// ---- tokens, API -------------------------------------------------------------


function token(sub, claims = {}) {
  return hs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, SECRET);
}

// The results of a server API call that must succeed (one per line of a
// batch).
async function apiOk(rd, path, body, agent) {
  const r = await apiPost(rd.port, path, body, { agent });
  assert.strictEqual(r.status, 200, `${path}: ${r.status} ${r.body}`);
  const res = r.body.split('\n').map((l) => JSON.parse(l));
  for (const x of res) assert.ok(!x.error, `${path}: ${r.body}`);
  return res.length === 1 ? res[0] : res;
}

// ---- SDK clients --------------------------------------------------------------

const decode = (pb, data) => (pb ? JSON.parse(Buffer.from(data).toString('utf8')) : data);
const encode = (pb, obj) => (pb ? Buffer.from(JSON.stringify(obj)) : obj);

// An SDK client of format `pb`, subscribed to `channels`. It records every
// publication (decoded, per channel), every state event after its first
// connect, and the `ws` object under it (for its local port and raw frames).
function sdkClient(rd, { pb = false, user = 'u', channels = [], opts = {} } = {}) {
  const st = {
    pb, user, ws: null, pubs: new Map(), raw: new Map(), infos: new Map(), events: [],
    connects: 0, subscribed: new Set(), frames: [],
  };
  class TrackedWs extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      st.ws = this;
      this.on('message', (data, isBinary) => st.frames.push({ data, isBinary, at: Date.now() }));
    }
  }
  const Ctor = pb ? CentrifugePb : CentrifugeJson;
  const c = new Ctor(`ws://127.0.0.1:${rd.port}${PATH}`, {
    token: token(user), websocket: TrackedWs, minReconnectDelay: 50, maxReconnectDelay: 300,
    timeout: 8000, ...opts,
  });
  st.c = c;
  c.on('connected', () => { st.connects++; });
  c.on('connecting', (ctx) => { if (st.connects > 0) st.events.push(['connecting', ctx.code, ctx.reason]); });
  c.on('disconnected', (ctx) => { st.events.push(['disconnected', ctx.code, ctx.reason]); });
  c.on('error', (ctx) => { if (st.connects > 0) st.events.push(['error', String(ctx.error && ctx.error.message)]); });
  st.subs = channels.map((ch) => {
    const s = c.newSubscription(ch);
    st.pubs.set(ch, []);
    st.raw.set(ch, []);
    st.infos.set(ch, []);
    s.on('subscribed', () => st.subscribed.add(ch));
    s.on('subscribing', () => st.subscribed.delete(ch));
    s.on('publication', (ctx) => {
      st.raw.get(ch).push(ctx.data);
      let v;
      try { v = decode(pb, ctx.data); } catch (_) { v = { undecodable: true }; }
      st.pubs.get(ch).push(v);
      st.infos.get(ch).push(ctx.info ? { user: ctx.info.user, client: ctx.info.client } : null);
    });
    s.subscribe();
    return s;
  });
  c.connect();
  return st;
}

const allSubscribed = (clients) => clients.every((s) => s.connects > 0 && s.subscribed.size === s.subs.length);

function closeAll(clients) {
  for (const s of clients) {
    try { s.c.disconnect(); } catch (_) { /* already */ }
  }
}

function localPort(st) {
  return st.ws && st.ws._socket ? st.ws._socket.localPort : undefined;
}

// ---- raw WebSocket clients ------------------------------------------------------

// A `ws` client of the session protocol: JSON text or protobuf binary.
function rawWs(rd, { pb = false } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${rd.port}${PATH}`, pb ? ['centrifuge-protobuf'] : undefined);
    ws.msgs = [];
    ws.closedP = new Promise((res) => ws.once('close', (code, reason) => res({ code, reason: reason.toString(), at: Date.now() })));
    ws.on('message', (data, isBinary) => { ws.msgs.push({ data: Buffer.from(data), isBinary, at: Date.now() }); });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// Waits for a message satisfying pred among those received (from index 0).
function waitMsg(ws, pred, ms = 5000, what = 'message') {
  return waitFor(() => ws.msgs.find(pred), ms, 10, what);
}

function wsCloseWithin(ws, ms) {
  return bounded(ms, 'close', () => ws.closedP);
}

// Client frames for raw TCP: masked, FIN set.
// ---- configs -----------------------------------------------------------------------

const FAN_NS = {
  name: 'fan', allow_subscribe_for_client: true, allow_publish_for_subscriber: true,
};

// ==== 1. fan-out ======================================================================

test('200 SDK clients (JSON and protobuf) on 4 workers get 1,000 publications exactly once, in order', { timeout: 45000 }, async () => {
  const NCLIENTS = 200;
  const NCH = 10;
  const ROUNDS = 100; // one publication per channel per round: 1,000 in all
  const rd = new Rotord({ channel: { namespaces: [FAN_NS] } }, { workers: 4 });
  const clients = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  try {
    await rd.start();
    const chName = (k) => `fan:${k}`;
    // Client i: JSON or protobuf by (i/10)%2, so every channel has both;
    // subscribed to three channels.
    const chansOf = (i) => [i % NCH, (i + 1) % NCH, (i + 4) % NCH];
    for (let i = 0; i < NCLIENTS; i++) {
      clients.push(sdkClient(rd, {
        pb: Math.floor(i / 10) % 2 === 1, user: `user${i}`, channels: chansOf(i).map(chName),
      }));
    }
    await waitFor(() => allSubscribed(clients), 15000, 25, 'every client connected and subscribed');

    // The connections are spread over the workers (SO_REUSEPORT).
    const owners = connOwners(rd.workers(), rd.port);
    const perWorker = new Map();
    for (const s of clients) {
      const pid = owners.get(localPort(s));
      assert.ok(pid, 'every client connection is held by a worker');
      s.worker = pid;
      perWorker.set(pid, (perWorker.get(pid) || 0) + 1);
    }
    assert.ok(perWorker.size >= 3, `connections on at least 3 of 4 workers: ${JSON.stringify([...perWorker])}`);
    // (info reads per-worker snapshots, rewritten at most every 200 ms)
    const want = { num_clients: NCLIENTS, num_channels: NCH, num_subs: NCLIENTS * 3 };
    let node;
    await waitFor(async () => {
      node = (await apiOk(rd, '/api/info', {})).result.nodes[0];
      return Object.keys(want).every((k) => node[k] === want[k]);
    }, 3000, 50, 'info to count every client and subscription once').catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(node)}`);
    });

    const kinds = [];
    const counts = { client_json: 0, client_pb: 0, publish: 0, broadcast: 0, legacy: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      let kind;
      if (r % 2 === 0) kind = 'client';
      else kind = ['publish', 'broadcast', 'legacy'][((r - 1) / 2) % 3];
      kinds.push(kind);
      const chans = [...Array(NCH).keys()];
      if (kind === 'client') {
        // A subscriber of channel k publishes: client k + 10*j (JSON or
        // protobuf as j alternates).
        await Promise.all(chans.map(async (k) => {
          const pub = clients[k + 10 * ((r / 2) % (NCLIENTS / 10))];
          await pub.c.publish(chName(k), encode(pub.pb, { seq: r, via: 'client', by: pub.user }));
          counts[pub.pb ? 'client_pb' : 'client_json']++;
        }));
      } else if (kind === 'publish') {
        await Promise.all(chans.map(async (k) => {
          assert.deepStrictEqual(await apiOk(rd, '/api/publish', { channel: chName(k), data: { seq: r, via: kind } }, agent),
            { result: {} });
          counts.publish++;
        }));
      } else if (kind === 'broadcast') {
        const res = await apiOk(rd, '/api/broadcast', { channels: chans.map(chName), data: { seq: r, via: kind } }, agent);
        assert.deepStrictEqual(res, { result: { responses: chans.map(() => ({ result: {} })) } });
        counts.broadcast += NCH;
      } else {
        // The legacy form: ten commands in one body.
        const body = chans.map((k, n) => JSON.stringify({
          id: n + 1, method: 'publish', params: { channel: chName(k), data: { seq: r, via: kind } },
        })).join('\n');
        const res = await apiOk(rd, '/api', body, agent);
        assert.deepStrictEqual(res, chans.map((k, n) => ({ id: n + 1, result: {} })));
        counts.legacy += NCH;
      }
    }
    assert.strictEqual(counts.client_json + counts.client_pb, 500);
    assert.ok(counts.client_json > 0 && counts.client_pb > 0);
    assert.strictEqual(counts.publish + counts.broadcast + counts.legacy, 500);

    const expectSeq = [...Array(ROUNDS).keys()];
    await waitFor(() => clients.every((s) => [...s.pubs.values()].every((v) => v.length >= ROUNDS)),
      20000, 50, 'every subscriber to get every publication').catch((e) => {
      const short = clients.filter((s) => [...s.pubs.values()].some((v) => v.length < ROUNDS));
      throw new Error(`${e.message}; ${short.length} clients short, e.g. ${short[0] && JSON.stringify(
        [...short[0].pubs].map(([ch, v]) => [ch, v.length]))}`);
    });
    await sleep(300); // duplicates would show up by now
    for (const s of clients) {
      for (const [ch, v] of s.pubs) {
        const k = Number(ch.split(':')[1]);
        assert.deepStrictEqual(v.map((p) => p.seq), expectSeq, `${s.user} (${s.pb ? 'pb' : 'json'}) on ${ch}: exactly once, in order`);
        v.forEach((p, r) => assert.strictEqual(p.via, kinds[r], `${s.user} ${ch} seq ${r}`));
        // Client publications carry the publisher's info; API ones none.
        s.infos.get(ch).forEach((ci, r) => {
          if (kinds[r] === 'client') {
            const pub = clients[k + 10 * ((r / 2) % (NCLIENTS / 10))];
            assert.ok(ci && ci.user === pub.user && ci.client, `${s.user} ${ch} seq ${r}: info of ${pub.user}`);
            assert.strictEqual(v[r].by, pub.user);
          } else {
            assert.ok(!ci || !ci.user, `${s.user} ${ch} seq ${r}: no publisher info from the API`);
          }
        });
      }
      assert.deepStrictEqual(s.events, [], `${s.user}: never disconnected`);
    }
  } finally {
    closeAll(clients);
    agent.destroy();
    await rd.stop();
  }
});

// ==== 2. payload bytes ====================================================================

test('an API publication reaches JSON and protobuf subscribers byte for byte', { timeout: 15000 }, async () => {
  const rd = new Rotord({ channel: { namespaces: [FAN_NS] } }, { workers: 4 });
  const socks = [];
  try {
    await rd.start();
    const payloads = [
      '{"n":1.10,"s":"é\\u2028"}',           // an escape, kept as written
      '{"n":1.10,"s":"é\u2028\u2029"}',       // raw U+2028/U+2029 bytes
      '[1e3, -0.0, {"a" : "\\/"}]',           // insignificant spaces and odd numbers
      '"just a string"',
      '{"multi":\n  [1,\n2]}',               // JSON frames lose the newlines, protobuf keeps them
    ];
    for (let i = 0; i < 4; i++) {
      const pb = i % 2 === 1;
      const ws = await rawWs(rd, { pb });
      socks.push(ws);
      if (pb) {
        // connect{token} and subscribe{channel} as delimited protobuf commands
        ws.send(Buffer.concat([pbCommand(1, 4, pbString(1, token('b' + i))), pbCommand(2, 5, pbString(1, 'fan:bytes'))]));
      } else {
        ws.send(`{"id":1,"connect":{"token":"${token('b' + i)}"}}\n{"id":2,"subscribe":{"channel":"fan:bytes"}}`);
      }
    }
    for (const ws of socks) await waitMsg(ws, (m) => (m.isBinary ? pbHasReplyId(m.data, 2) : /"id":2,"subscribe"/.test(m.data.toString())), 5000, 'subscribe reply');
    for (const p of payloads) {
      const r = await apiPost(rd.port, '/api/publish', `{"channel":"fan:bytes","data":${p}}`);
      assert.deepStrictEqual(JSON.parse(r.body), { result: {} });
    }
    for (const ws of socks) {
      await waitFor(() => pushes(ws).length >= payloads.length, 5000, 10, 'every payload');
      const got = pushes(ws);
      assert.strictEqual(got.length, payloads.length);
      const want = (i) => Buffer.from(ws.protocol === 'centrifuge-protobuf' ? payloads[i] : payloads[i].replace(/\n/g, ''));
      got.forEach((g, i) => assert.ok(g.equals(want(i)),
        `payload ${i} byte for byte: want ${payloads[i]}, got ${g.toString()}`));
    }
    // And the JSON frame text is exactly the push with the payload spliced in.
    const text = socks[0].msgs.map((m) => m.data.toString()).join('\n');
    assert.ok(text.includes('{"push":{"channel":"fan:bytes","pub":{"data":{"n":1.10,"s":"é\\u2028"}}}}'), text);
  } finally {
    for (const ws of socks) ws.terminate();
    await rd.stop();
  }
});

// ---- minimal protobuf helpers (for raw protobuf clients) ----------------------------------

function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
}

const pbString = (field, s) => { const b = Buffer.from(s); return Buffer.concat([varint((field << 3) | 2), varint(b.length), b]); };

// Command{id, <field>: body}, length-delimited.
function pbCommand(id, field, body) {
  const msg = Buffer.concat([varint(8), varint(id), varint((field << 3) | 2), varint(body.length), body]);
  return Buffer.concat([varint(msg.length), msg]);
}

function readVarint(b, i) {
  let v = 0; let mul = 1;
  for (;;) {
    const x = b[i++];
    v += (x & 0x7f) * mul;
    mul *= 128;
    if (!(x & 0x80)) return [v, i];
  }
}

// The fields of one protobuf message: [{f, wt, v}] (v: number or Buffer).
function pbFields(b) {
  const out = [];
  let i = 0;
  while (i < b.length) {
    let key;
    [key, i] = readVarint(b, i);
    const f = Math.floor(key / 8); const wt = key & 7;
    if (wt === 0) { let v; [v, i] = readVarint(b, i); out.push({ f, wt, v }); }
    else if (wt === 2) { let n; [n, i] = readVarint(b, i); out.push({ f, wt, v: b.subarray(i, i + n) }); i += n; }
    else if (wt === 1) { out.push({ f, wt, v: b.subarray(i, i + 8) }); i += 8; }
    else if (wt === 5) { out.push({ f, wt, v: b.subarray(i, i + 4) }); i += 4; }
    else throw new Error(`wire type ${wt}`);
  }
  return out;
}

// The delimited messages of one binary frame.
function pbMessages(b) {
  const out = [];
  let i = 0;
  while (i < b.length) {
    let n;
    [n, i] = readVarint(b, i);
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

const pbHasReplyId = (frame, id) => pbMessages(frame).some((m) => pbFields(m).some((x) => x.f === 1 && x.v === id));

// The publication data of every pub push a raw client got, in order.
function pushes(ws) {
  const out = [];
  for (const m of ws.msgs) {
    if (m.isBinary) {
      for (const msg of pbMessages(m.data)) {
        const push = pbFields(msg).find((x) => x.f === 4);
        const pub = push && pbFields(push.v).find((x) => x.f === 4);
        const data = pub && pbFields(pub.v).find((x) => x.f === 4);
        if (pub) out.push(data ? Buffer.from(data.v) : Buffer.alloc(0));
      }
    } else {
      for (const line of m.data.toString().split('\n')) {
        const i = line.indexOf('"pub":{"data":');
        if (!line.startsWith('{"push":') || i < 0) continue;
        // The data is the raw value after "data": up to the pub's closing
        // fields; with no info/offset it runs to the 3 closing braces.
        const rest = line.slice(i + '"pub":{"data":'.length);
        out.push(Buffer.from(rest.slice(0, rest.length - 3)));
      }
    }
  }
  return out;
}

// ==== 3. binary publications ================================================================

test('binary data from a protobuf client: protobuf subscribers get the bytes, JSON ones are closed with 3506', { timeout: 15000 }, async () => {
  const rd = new Rotord({ channel: { namespaces: [FAN_NS] } }, { workers: 4 });
  const clients = [];
  try {
    await rd.start();
    for (let i = 0; i < 12; i++) clients.push(sdkClient(rd, { pb: i % 3 !== 0, user: `bin${i}`, channels: ['fan:bin'] }));
    await waitFor(() => allSubscribed(clients), 8000, 25, 'subscribed');
    const pbs = clients.filter((s) => s.pb);
    const jsons = clients.filter((s) => !s.pb);
    // A JSON publication first: everybody gets it.
    await pbs[0].c.publish('fan:bin', encode(true, { before: 1 }));
    await waitFor(() => clients.every((s) => s.pubs.get('fan:bin').length === 1), 5000, 10, 'the JSON publication');
    const bytes = Buffer.from([0xff, 0x00, 0x01, 0x80, 0x7b, 0x0a]);
    await pbs[1].c.publish('fan:bin', bytes);
    await waitFor(() => pbs.every((s) => s.raw.get('fan:bin').length === 2), 5000, 10, 'protobuf subscribers to get the bytes');
    for (const s of pbs) assert.ok(Buffer.from(s.raw.get('fan:bin')[1]).equals(bytes), `${s.user}: the same bytes`);
    await waitFor(() => jsons.every((s) => s.events.some((e) => e[0] === 'disconnected')), 5000, 10, 'JSON subscribers disconnected');
    for (const s of jsons) {
      const d = s.events.find((e) => e[0] === 'disconnected');
      assert.strictEqual(d[1], 3506, `${s.user}: ${JSON.stringify(s.events)}`);
      assert.strictEqual(s.pubs.get('fan:bin').length, 1, 'nothing after the JSON publication');
    }
    // Protobuf clients stay and keep receiving.
    await apiOk(rd, '/api/publish', { channel: 'fan:bin', data: { after: 1 } });
    await waitFor(() => pbs.every((s) => s.pubs.get('fan:bin').length === 3), 5000, 10, 'a later publication');
    for (const s of pbs) {
      assert.deepStrictEqual(s.pubs.get('fan:bin')[2], { after: 1 });
      assert.deepStrictEqual(s.events, [], `${s.user} stays connected`);
    }
  } finally {
    closeAll(clients);
    await rd.stop();
  }
});

// ==== 4. a client that never reads =============================================================

test('a client that never reads is closed with 3008; a reader on the same channel gets everything', { timeout: 30000 }, async () => {
  const rd = new Rotord({
    channel: { namespaces: [FAN_NS] },
    client: { queue_max_size: 65536 },
    websocket: { write_timeout: '30s' }, // so that the queue limit, not the write timeout, ends it
    log: { level: 'debug' },
  }, { workers: 4 });
  const clients = [];
  let sock;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  try {
    await rd.start();
    const reader = sdkClient(rd, { pb: false, user: 'reader', channels: ['fan:slow'] });
    const reader2 = sdkClient(rd, { pb: true, user: 'reader2', channels: ['fan:slow'] });
    clients.push(reader, reader2);

    // The slow client, by hand: handshake, connect, subscribe, then no reads.
    sock = net.connect(rd.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let ended = false;
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    sock.on('end', () => { ended = true; });
    sock.on('close', () => { ended = true; });
    sock.on('error', () => { ended = true; });
    await new Promise((res) => sock.once('connect', res));
    sock.write(`GET ${PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    sock.write(clientFrame(1, `{"id":1,"connect":{"token":"${token('slow')}"}}\n{"id":2,"subscribe":{"channel":"fan:slow"}}`));
    await waitFor(() => buf.includes('"id":2,"subscribe"'), 5000, 10, 'the slow client subscribed');
    await waitFor(() => allSubscribed(clients), 5000, 10, 'readers subscribed');
    sock.pause();
    buf = Buffer.alloc(0);

    // Publications of 2 KiB, one at a time: a reader keeps up easily
    // (each is far below the 64 KiB limit); the slow client's socket
    // buffers fill, then its queue, within a few MiB.
    const N = 6000;
    const pad = 'x'.repeat(2048);
    let sent = 0;
    while (sent < N) {
      await apiOk(rd, '/api/publish', { channel: 'fan:slow', data: { seq: sent, pad } }, agent);
      sent++;
      if (sent % 64 === 0 && /closing as slow/.test(rd.log())) break;
    }
    assert.match(rd.log(), /over client\.queue_max_size 65536; closing as slow/, `the slow client overflowed within ${sent} publications of 2 KiB`);
    assert.strictEqual(rd.log().match(/closing as slow/g).length, 1,
      `only the slow client was slow: ${rd.log().split('\n').filter((l) => /closing as slow/.test(l)).join('\n')}`);

    // Now read: what was queued before the limit, then the close frame 3008,
    // then the end of the connection.
    sock.resume();
    const closeFrame = await waitFor(() => parseFrames(buf).frames.find((f) => f.op === 8), 5000, 10, 'the close frame');
    sock.write(clientFrame(8, closeFrame.payload.subarray(0, 2))); // the close handshake
    await waitFor(() => ended, 3000, 10, 'the server to close the connection');
    const { frames } = parseFrames(buf);
    const last = frames[frames.length - 1];
    assert.ok(last && last.op === 8, `a close frame last, got ops ${frames.slice(-3).map((f) => f.op)}`);
    assert.strictEqual(last.payload.readUInt16BE(0), 3008);
    assert.strictEqual(last.payload.subarray(2).toString(), 'slow');
    const seqs = frames.filter((f) => f.op === 1).flatMap((f) => f.payload.toString().split('\n'))
      .map((l) => JSON.parse(l)).filter((m) => m.push).map((m) => m.push.pub.data.seq);
    assert.ok(seqs.length < sent, `it got ${seqs.length} of ${sent}`);
    assert.deepStrictEqual(seqs, [...Array(seqs.length).keys()], 'what it got was in order, without gaps');

    // The readers got every publication, in order, and stayed.
    await waitFor(() => clients.every((s) => s.pubs.get('fan:slow').length >= sent), 10000, 20, 'readers to get everything').catch((e) => {
      throw new Error(`${e.message}: ${clients.map((s) => `${s.user} got ${s.pubs.get('fan:slow').length} of ${sent}, events ${JSON.stringify(s.events)}`)}`);
    });
    for (const s of clients) {
      assert.deepStrictEqual(s.pubs.get('fan:slow').map((p) => p.seq), [...Array(sent).keys()]);
      assert.deepStrictEqual(s.events, []);
    }
  } finally {
    if (sock) sock.destroy();
    closeAll(clients);
    agent.destroy();
    await rd.stop();
  }
});

test('a burst far over client.queue_max_size in one API request does not make reading clients slow', { timeout: 15000 }, async () => {
  const rd = new Rotord({
    channel: { namespaces: [FAN_NS] },
    client: { queue_max_size: 65536 },
    log: { level: 'debug' },
  }, { workers: 4 });
  const clients = [];
  try {
    await rd.start();
    for (let i = 0; i < 8; i++) clients.push(sdkClient(rd, { pb: i % 2 === 1, user: `burst${i}`, channels: ['fan:burst'] }));
    await waitFor(() => allSubscribed(clients), 8000, 25, 'subscribed');
    const pad = 'y'.repeat(1024);
    // 200 publications of 1 KiB in one legacy request, then 200 in one batch:
    // each about three times the limit, reaching a worker all at once.
    const legacy = [...Array(200).keys()].map((i) => JSON.stringify({ method: 'publish', params: { channel: 'fan:burst', data: { seq: i, pad } } })).join('\n');
    const r1 = await apiOk(rd, '/api', legacy);
    assert.strictEqual(r1.length, 200);
    const r2 = await apiOk(rd, '/api/batch', {
      commands: [...Array(200).keys()].map((i) => ({ publish: { channel: 'fan:burst', data: { seq: 200 + i, pad } } })),
    });
    assert.deepStrictEqual(r2, { replies: [...Array(200)].map(() => ({ publish: {} })) });
    await waitFor(() => clients.every((s) => s.pubs.get('fan:burst').length >= 400 || s.events.length), 8000, 10, 'the burst')
      .catch((e) => { throw new Error(`${e.message}: ${clients.map((s) => s.pubs.get('fan:burst').length)}`); });
    for (const s of clients) {
      assert.deepStrictEqual(s.events, [], `${s.user} stayed: ${rd.log().split('\n').filter((l) => /slow/.test(l)).join('\n')}`);
      assert.deepStrictEqual(s.pubs.get('fan:burst').map((p) => p.seq), [...Array(400).keys()]);
    }
  } finally {
    closeAll(clients);
    await rd.stop();
  }
});

// ==== 5. server pings ==============================================================================

test('server pings: SDK clients answer and stay; no pong is 3012; a pong without a ping is 3501', { timeout: 20000 }, async () => {
  const rd = new Rotord({ client: { ping_interval: '2s', pong_timeout: '1s' }, channel: { namespaces: [FAN_NS] } }, { workers: 4 });
  const clients = [];
  const raws = [];
  try {
    await rd.start();
    const t0 = Date.now();
    for (let i = 0; i < 8; i++) clients.push(sdkClient(rd, { pb: i % 2 === 1, user: `p${i}`, channels: ['fan:ping'] }));

    // Never answers: closed 3012 after the first ping (at most 2 s) plus
    // the pong timeout (1 s).
    const silent = await rawWs(rd);
    raws.push(silent);
    silent.send(`{"id":1,"connect":{"token":"${token('silent')}"}}`);
    await waitMsg(silent, (m) => /"id":1,"connect"/.test(m.data.toString()), 3000, 'connect reply');
    const connectedAt = Date.now();
    const silentPb = await rawWs(rd, { pb: true });
    raws.push(silentPb);
    silentPb.send(pbCommand(1, 4, pbString(1, token('silent-pb'))));
    await waitMsg(silentPb, (m) => pbHasReplyId(m.data, 1), 3000, 'connect reply');

    // Pongs with no ping outstanding: 3501, JSON and protobuf.
    for (const pb of [false, true]) {
      const eager = await rawWs(rd, { pb });
      raws.push(eager);
      if (pb) eager.send(pbCommand(1, 4, pbString(1, token('eager'))));
      else eager.send(`{"id":1,"connect":{"token":"${token('eager')}"}}`);
      await waitMsg(eager, (m) => (pb ? pbHasReplyId(m.data, 1) : /"id":1,"connect"/.test(m.data.toString())), 3000, 'connect reply');
      eager.send(pb ? Buffer.from([0]) : '{}');
      const c = await wsCloseWithin(eager, 3000);
      assert.strictEqual(c.code, 3501, `${pb ? 'protobuf' : 'JSON'} pong without a ping`);
    }

    const c = await wsCloseWithin(silent, 5000);
    assert.strictEqual(c.code, 3012, 'no pong');
    assert.strictEqual(c.reason, 'no pong');
    const pingAt = silent.msgs.find((m) => m.data.toString() === '{}');
    assert.ok(pingAt, 'a ping {} came first');
    assert.ok(c.at - connectedAt <= 3500, `closed ${c.at - connectedAt} ms after connect`);
    assert.ok(c.at - pingAt.at >= 800, `closed ${c.at - pingAt.at} ms after the ping (pong_timeout 1s)`);
    const cpb = await wsCloseWithin(silentPb, 5000);
    assert.strictEqual(cpb.code, 3012);
    assert.ok(silentPb.msgs.some((m) => m.isBinary && m.data.length === 1 && m.data[0] === 0), 'a protobuf ping is 0x00');

    // The SDK clients answer every ping: still connected after 5.5 s, with
    // at least two pings seen each.
    await sleep(Math.max(0, 5500 - (Date.now() - t0)));
    await waitFor(() => allSubscribed(clients), 1000, 10, 'subscribed');
    for (const s of clients) {
      const pings = s.frames.map((f) => Buffer.from(f.data))
        .filter((d) => (s.pb ? d.length === 1 && d[0] === 0 : d.toString() === '{}'));
      assert.ok(pings.length >= 2, `${s.user}: ${pings.length} pings`);
      assert.deepStrictEqual(s.events, [], `${s.user} stayed connected`);
      assert.strictEqual(s.connects, 1);
    }
    await apiOk(rd, '/api/publish', { channel: 'fan:ping', data: { alive: true } });
    await waitFor(() => clients.every((s) => s.pubs.get('fan:ping').length === 1), 3000, 10, 'a publication after the pings');
  } finally {
    for (const w of raws) w.terminate();
    closeAll(clients);
    await rd.stop();
  }
});

// ==== 6. stale ========================================================================================

test('a connection that never sends connect, or whose connect failed, is closed with 3502 after stale_close_delay', { timeout: 15000 }, async () => {
  const rd = new Rotord({ client: { stale_close_delay: '1s' } }, { workers: 4 });
  const raws = [];
  try {
    await rd.start();
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) raws.push(await rawWs(rd, { pb: i % 2 === 1 }));
    // An expired token: 109, and the connection is good for nothing after.
    const failed = await rawWs(rd);
    raws.push(failed);
    failed.send(`{"id":1,"connect":{"token":"${token('late', { exp: Math.floor(Date.now() / 1000) - 60 })}"}}`);
    const m = await waitMsg(failed, () => true, 2000, 'the connect reply');
    assert.strictEqual(m.data.toString(), '{"id":1,"error":{"code":109,"message":"token expired"}}');
    const closes = await Promise.all(raws.map((w) => wsCloseWithin(w, 4000)));
    assert.strictEqual(failed.msgs.length, 1, 'nothing after the error');
    for (const c of closes) {
      assert.strictEqual(c.code, 3502);
      assert.strictEqual(c.reason, 'stale');
      assert.ok(c.at - t0 >= 900 && c.at - t0 <= 2500, `closed after ${c.at - t0} ms`);
    }
  } finally {
    for (const w of raws) w.terminate();
    await rd.stop();
  }
});

// ==== 7. a worker killed ===================================================================================

test('kill -9 of a worker: its clients reconnect and get later publications; the others never notice', { timeout: 30000 }, async () => {
  const rd = new Rotord({ channel: { namespaces: [FAN_NS] } }, { workers: 4 });
  const clients = [];
  try {
    await rd.start();
    for (let i = 0; i < 40; i++) clients.push(sdkClient(rd, { pb: i % 2 === 1, user: `k${i}`, channels: ['fan:kill', `fan:k${i % 4}`] }));
    await waitFor(() => allSubscribed(clients), 8000, 25, 'subscribed');
    const owners = connOwners(rd.workers(), rd.port);
    const per = new Map();
    for (const s of clients) {
      s.worker = owners.get(localPort(s));
      assert.ok(s.worker, 'each client is on a worker');
      per.set(s.worker, (per.get(s.worker) || 0) + 1);
    }
    const [victim] = [...per].sort((a, b) => b[1] - a[1])[0];
    assert.ok(per.get(victim) < clients.length, `clients on more than one worker: ${JSON.stringify([...per])}`);
    await apiOk(rd, '/api/publish', { channel: 'fan:kill', data: { seq: 0 } });
    await waitFor(() => clients.every((s) => s.pubs.get('fan:kill').length === 1), 5000, 10, 'the first publication');

    // An API publisher runs all along, one publication at a time; some of
    // its requests land on the worker being killed and fail.
    const acked = [];
    const failed = [];
    let stop = false;
    const publisher = (async () => {
      for (let seq = 1; seq < 3000 && !stop; seq++) {
        try {
          await apiOk(rd, '/api/publish', { channel: 'fan:kill', data: { seq } });
          acked.push(seq);
        } catch (_) {
          failed.push(seq);
        }
      }
    })();
    await sleep(100);
    const hit = clients.filter((s) => s.worker === victim);
    const spared = clients.filter((s) => s.worker !== victim);
    assert.ok(hit.length > 0 && spared.length > 0);
    process.kill(victim, 'SIGKILL');
    try {
      await waitFor(() => hit.every((s) => s.connects >= 2) && allSubscribed(clients), 10000, 20,
        'the victims to reconnect and resubscribe');
      await waitFor(() => rd.workers().length === 4 && !rd.workers().includes(victim), 5000, 20,
        'the master to replace the worker');
      await sleep(200);
    } finally {
      stop = true;
      await publisher;
    }
    assert.ok(acked.length > 20, `the publisher kept going: ${acked.length} acked, ${failed.length} failed`);

    // After the storm: API and client publications reach everyone.
    const FINAL = [5001, 5002, 5003, 5004, 5005];
    for (const seq of FINAL) await apiOk(rd, '/api/publish', { channel: 'fan:kill', data: { seq } });
    const kOf = (s) => s.subs[1].channel;
    const publishers = [...new Set([hit[0], spared[0], hit[hit.length - 1], spared[spared.length - 1]])];
    for (const s of publishers) await s.c.publish(kOf(s), encode(s.pb, { by: s.user }));
    await waitFor(() => clients.every((s) => s.pubs.get('fan:kill').some((p) => p.seq === 5005) &&
      s.pubs.get(kOf(s)).length >= publishers.filter((x) => kOf(x) === kOf(s)).length), 5000, 10, 'later publications');
    await sleep(200);
    const inOrder = (v) => v.every((x, i) => i === 0 || x > v[i - 1]);
    for (const s of clients) {
      const got = s.pubs.get('fan:kill').map((p) => p.seq);
      assert.ok(inOrder(got), `${s.user}: in order, no duplicates: ${got}`);
      assert.ok(got.every((x) => x === 0 || acked.includes(x) || failed.includes(x) || FINAL.includes(x)), `${s.user}: only what was published`);
      assert.deepStrictEqual(got.slice(-5), FINAL, s.user);
      assert.deepStrictEqual(s.pubs.get(kOf(s)).map((p) => p.by), publishers.filter((x) => kOf(x) === kOf(s)).map((x) => x.user),
        `${s.user}: the client publications on ${kOf(s)}`);
    }
    for (const s of hit) {
      assert.ok(s.events.some((e) => e[0] === 'connecting'), `${s.user} saw its connection drop`);
      assert.ok(!s.events.some((e) => e[0] === 'disconnected'), `${s.user} was never terminally disconnected`);
      assert.notStrictEqual(connOwners(rd.workers(), rd.port).get(localPort(s)), victim);
    }
    for (const s of spared) {
      const got = s.pubs.get('fan:kill').map((p) => p.seq);
      // Nothing acked was lost on the surviving workers.
      const missing = acked.filter((x) => !got.includes(x));
      assert.deepStrictEqual(missing, [], `${s.user} lost acked publications`);
      assert.deepStrictEqual(s.events, [], `${s.user} on a surviving worker was never disconnected`);
      assert.strictEqual(s.connects, 1);
    }
    // The dead worker's clients are not counted twice.
    let node;
    await waitFor(async () => {
      node = (await apiOk(rd, '/api/info', {})).result.nodes[0];
      return node.num_clients === clients.length && node.num_subs === 2 * clients.length;
    }, 3000, 50, 'info to count each client once').catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(node)}`); });
  } finally {
    closeAll(clients);
    await rd.stop();
  }
});

// ==== 8. reload ===============================================================================================

test('HUP changing allow_publish_for_client applies to live connections without dropping any', { timeout: 20000 }, async () => {
  const ns = { name: 'hup', allow_subscribe_for_client: true, allow_publish_for_client: false };
  const rd = new Rotord({ channel: { namespaces: [ns] } }, { workers: 4 });
  const clients = [];
  try {
    await rd.start();
    for (let i = 0; i < 24; i++) clients.push(sdkClient(rd, { pb: i % 2 === 1, user: `h${i}`, channels: ['hup:x'] }));
    await waitFor(() => allSubscribed(clients), 8000, 25, 'subscribed');
    const owners = connOwners(rd.workers(), rd.port);
    assert.ok(new Set(clients.map((s) => owners.get(localPort(s)))).size >= 2, 'clients on several workers');

    for (const s of clients.slice(0, 4)) {
      await assert.rejects(s.c.publish('hup:x', encode(s.pb, { n: 0 })), (e) => e.code === 103, `${s.user}: 103 before`);
    }
    // An API publisher runs through both reloads.
    const acked = [];
    const failed = [];
    let stop = false;
    const publisher = (async () => {
      for (let seq = 1; seq < 3000 && !stop; seq++) {
        try {
          await apiOk(rd, '/api/publish', { channel: 'hup:x', data: { seq } });
          acked.push(seq);
        } catch (e) {
          failed.push([seq, e.message]);
        }
      }
    })();
    const reload = async (allow) => {
      const before = (rd.log().match(/configuration reloaded in place/g) || []).length;
      rd.fullConfig.channel.namespaces = [{ ...ns, allow_publish_for_client: allow }];
      rd.writeConfig(rd.fullConfig);
      rd.signal('SIGHUP');
      await waitFor(() => (rd.log().match(/configuration reloaded in place/g) || []).length >= before + 4, 5000, 20,
        'every worker to apply the reload');
    };
    try {
      await sleep(50);
      await reload(true);
      assert.deepStrictEqual(rd.workers().length, 4);
      // Every client publishes once now: all succeed, everyone gets all.
      await Promise.all(clients.map((s, i) => s.c.publish('hup:x', encode(s.pb, { n: i }))));
      await reload(false);
      for (const s of clients.slice(0, 4)) {
        await assert.rejects(s.c.publish('hup:x', encode(s.pb, { n: -1 })), (e) => e.code === 103, `${s.user}: 103 again`);
      }
      await sleep(50);
    } finally {
      stop = true;
      await publisher;
    }
    assert.deepStrictEqual(failed, []);
    const last = acked[acked.length - 1];
    await waitFor(() => clients.every((s) => s.pubs.get('hup:x').filter((p) => p.n !== undefined).length >= clients.length &&
      s.pubs.get('hup:x').some((p) => p.seq === last)), 5000, 10, 'every publication');
    await sleep(100);
    for (const s of clients) {
      const got = s.pubs.get('hup:x');
      assert.deepStrictEqual(got.filter((p) => p.n !== undefined).map((p) => p.n).sort((a, b) => a - b), [...clients.keys()], s.user);
      assert.deepStrictEqual(got.filter((p) => p.seq !== undefined).map((p) => p.seq), acked, `${s.user}: every API publication, in order`);
      assert.deepStrictEqual(s.events, [], `${s.user} was not disconnected by the reloads`);
      assert.strictEqual(s.connects, 1);
    }
  } finally {
    closeAll(clients);
    await rd.stop();
  }
});

// ==== 9. graceful stop ============================================================================================

test('QUIT: every client gets 3001 shutdown and the daemon exits 0', { timeout: 20000 }, async () => {
  const rd = new Rotord({ channel: { namespaces: [FAN_NS] } }, { workers: 4 });
  const clients = [];
  let stopped = false;
  try {
    await rd.start();
    for (let i = 0; i < 24; i++) clients.push(sdkClient(rd, { pb: i % 2 === 1, user: `q${i}`, channels: ['fan:quit'] }));
    await waitFor(() => allSubscribed(clients), 8000, 25, 'subscribed');
    const owners = connOwners(rd.workers(), rd.port);
    assert.ok(new Set(clients.map((s) => owners.get(localPort(s)))).size >= 2, 'clients on several workers');
    // Raw clients see the close frame itself.
    const raw = await rawWs(rd);
    raw.send(`{"id":1,"connect":{"token":"${token('rawq')}"}}`);
    await waitMsg(raw, (m) => /"id":1,"connect"/.test(m.data.toString()), 3000, 'connect reply');

    // Once a client saw 3001 it stops reconnecting (the listeners are going away).
    for (const s of clients) {
      s.c.on('connecting', (ctx) => { if (ctx.code === 3001) s.c.disconnect(); });
    }
    rd.signal('SIGQUIT');
    const rc = await wsCloseWithin(raw, 5000);
    assert.strictEqual(rc.code, 3001);
    assert.strictEqual(rc.reason, 'shutdown');
    await waitFor(() => clients.every((s) => s.events.some((e) => e[0] === 'connecting')), 5000, 10, 'every SDK client to see the stop');
    for (const s of clients) {
      const e = s.events.find((x) => x[0] === 'connecting');
      assert.deepStrictEqual(e, ['connecting', 3001, 'shutdown'], s.user);
    }
    const ex = await rd.waitExit(10000);
    stopped = true;
    assert.deepStrictEqual(ex, { code: 0, signal: null });
  } finally {
    closeAll(clients);
    if (!stopped) await rd.stop();
    else fs.rmSync(rd.dir, { recursive: true, force: true });
  }
});
