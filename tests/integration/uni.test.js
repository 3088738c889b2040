'use strict';
// The unidirectional transports of the real daemon (client-protocol.md
// §8.7) on 4 workers, driven by what SDK-less clients use: curl -N and the
// npm `eventsource` for uni_sse, Node's fetch streaming for
// uni_http_stream, `ws` for uni_websocket (and raw sockets where a library
// would hide the bytes). A client sends one bare ConnectRequest and reads
// bare pushes: the connect push, publications, join/leave, subscribe,
// {} pings, and at the end a disconnect push (plus a close frame on
// uni_websocket). Also: recovery through the request's subs, presence, the
// server API's subscribe and disconnect, connect errors mapped to
// disconnect codes or to HTTP statuses, refusals (400/405/413/503), the
// connection limits, a slow client (3008), HUP reload and graceful
// shutdown (3001).

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const { spawn } = require('node:child_process');
const WebSocket = require('ws');
const EventSource = require('eventsource');
const { Rotord, waitFor, sleep, request, rawExchange, apiPost, hs256, run, ROTORD, mkTmp } = require('./lib/rotord.js');
const { clientFrame, parseFrames } = require('./lib/wsframes.js');

const WS_PATH = '/connection/uni_websocket';
const SSE_PATH = '/connection/uni_sse';
const STREAM_PATH = '/connection/uni_http_stream';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const now = () => Math.floor(Date.now() / 1000);
const token = (sub, claims = {}) => hs256({ sub, ...claims });
const TRANSPORTS = ['curl', 'eventsource', 'http_stream', 'websocket'];

// A namespace with everything a uni client can see: presence, join/leave
// pushed to subscribers, history and recovery. `open` channels may also be
// subscribed by any authenticated client (through the request's subs).
const NAMESPACES = [
  { name: 'room', presence: true, join_leave: true, force_push_join_leave: true,
    history_size: 100, history_ttl: '300s', force_recovery: true },
  { name: 'open', allow_subscribe_for_client: true, history_size: 100, history_ttl: '300s',
    force_recovery: true },
  { name: 'personal' },
];

const UNI_ON = {
  uni_websocket: { enabled: true, message_size_limit: 4096 }, // websocket.* keeps 65536
  uni_sse: { enabled: true },
  uni_http_stream: { enabled: true },
};

function config(extra = {}) {
  const base = {
    client: { ping_interval: '2s', pong_timeout: '1s',
      subscribe_to_user_personal_channel: { enabled: true, personal_channel_namespace: 'personal' } },
    channel: { namespaces: NAMESPACES },
    ...UNI_ON,
  };
  return deepMerge(base, extra);
}

function deepMerge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object' ?
      deepMerge(a[k], v) : v;
  }
  return out;
}

// ---- clients ------------------------------------------------------------------------
//
// Every client collects the raw text of each push (`raw`) and the parsed
// pushes (`pushes`), and sets `ended` (with what it knows of the end) when
// the response or the connection is over.

class Uni {
  constructor(kind) {
    this.kind = kind;
    this.raw = [];
    this.pushes = [];
    this.ended = null;
  }

  add(text) {
    this.raw.push(text);
    this.pushes.push(JSON.parse(text));
  }

  finish(info) {
    if (!this.ended) this.ended = info;
  }

  find(pred, ms = 5000, what = 'a push') {
    return waitFor(() => this.pushes.find(pred), ms, 10, `${this.kind}: ${what}`);
  }

  connected(ms = 5000) {
    return this.find((p) => p.connect, ms, 'the connect push');
  }

  pubs(channel) {
    return this.pushes.filter((p) => p.pub && p.channel === channel).map((p) => p.pub);
  }

  async gone(ms = 8000) {
    await waitFor(() => this.ended, ms, 10, `${this.kind}: the end of the connection`);
    return this.ended;
  }
}

// uni_sse through curl -N: the head (-i) and the event stream on stdout.
function curlSse(port, req, { query } = {}) {
  const u = new Uni('curl');
  const q = query !== undefined ? query :
    req === undefined ? '' : `?cf_connect=${encodeURIComponent(JSON.stringify(req))}`;
  const proc = spawn('curl', ['-sN', '-i', `http://127.0.0.1:${port}${SSE_PATH}${q}`],
    { stdio: ['ignore', 'pipe', 'ignore'] });
  let buf = '';
  let head = null;
  u.body = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d) => {
    if (head === null) {
      buf += d;
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      head = buf.slice(0, i);
      d = buf.slice(i + 4);
      buf = '';
      u.status = Number(head.split(' ')[1]);
      u.head = head;
    }
    u.body += d;
    buf += d;
    let j;
    while ((j = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, j);
      buf = buf.slice(j + 2);
      for (const line of event.split(/\r\n|\n/)) {
        if (line.startsWith('data: ')) u.add(line.slice(6));
      }
    }
  });
  proc.on('exit', (code) => u.finish({ exit: code }));
  u.close = () => { if (proc.exitCode === null) proc.kill(); };
  u.pid = proc.pid;
  return u;
}

// uni_sse through the npm EventSource (v2): it reconnects after the end of
// the stream, so the end closes it.
function esSse(port, req) {
  const u = new Uni('eventsource');
  const es = new EventSource(`http://127.0.0.1:${port}${SSE_PATH}?cf_connect=${encodeURIComponent(JSON.stringify(req))}`);
  es.onmessage = (e) => u.add(e.data);
  es.onerror = (e) => { u.finish({ status: e.status }); es.close(); };
  u.close = () => es.close();
  return u;
}

// uni_http_stream through fetch: POST the request, read the body as it comes.
function fetchStream(port, body) {
  const u = new Uni('http_stream');
  const ac = new AbortController();
  u.close = () => ac.abort();
  u.response = (async () => {
    const res = await fetch(`http://127.0.0.1:${port}${STREAM_PATH}`, {
      method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), signal: ac.signal,
      headers: { 'Content-Type': 'application/json' },
    });
    u.status = res.status;
    u.headers = res.headers;
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (res.status === 200) u.add(line);
          else u.text = (u.text || '') + line + '\n';
        }
      }
      if (res.status !== 200) u.text = (u.text || '') + buf;
      u.finish({ status: res.status });
    } catch (e) {
      u.finish({ error: e.message });
    }
    return res.status;
  })().catch((e) => { u.finish({ error: e.message }); return 0; });
  return u;
}

// uni_websocket through `ws`: the request in ?cf_connect= or, with
// {first: true}, as the first message. `frames` holds each text frame.
function wsUni(port, req, { first = false, query } = {}) {
  const u = new Uni('websocket');
  const q = query !== undefined ? query : first ? '' : `?cf_connect=${encodeURIComponent(JSON.stringify(req))}`;
  const ws = new WebSocket(`ws://127.0.0.1:${port}${WS_PATH}${q}`);
  u.frames = [];
  u.pings = 0;
  u.ws = ws;
  u.opened = new Promise((resolve) => {
    ws.on('open', () => {
      if (first) ws.send(typeof req === 'string' ? req : JSON.stringify(req));
      resolve(101);
    });
    ws.on('unexpected-response', (r, res) => { u.status = res.statusCode; u.finish({ status: res.statusCode }); resolve(res.statusCode); });
  });
  ws.on('message', (d) => {
    const t = d.toString();
    u.frames.push(t);
    for (const line of t.split('\n')) u.add(line);
  });
  ws.on('ping', () => { u.pings++; });
  ws.on('close', (code, reason) => u.finish({ code, reason: reason.toString() }));
  ws.on('error', () => {});
  u.close = () => ws.terminate();
  return u;
}

// One client of KIND with the ConnectRequest REQ.
function uniClient(kind, port, req) {
  switch (kind) {
    case 'curl': return curlSse(port, req);
    case 'eventsource': return esSse(port, req);
    case 'http_stream': return fetchStream(port, req);
    case 'websocket': return wsUni(port, req, { first: true });
    default: throw new Error(kind);
  }
}

function closeAll(list) {
  for (const u of list) if (u) u.close();
}

async function api(rd, method, body) {
  const r = await apiPost(rd.port, `/api/${method}`, body);
  assert.strictEqual(r.status, 200, `${method}: ${r.body}`);
  const j = JSON.parse(r.body);
  assert.ok(!j.error, `${method}: ${r.body}`);
  return j.result;
}

// The last push is the bare disconnect CODE/REASON and the connection
// ended after it; on uni_websocket with a close frame of the same code
// (none with closeFrame: false: uni_websocket.disable_closing_handshake;
// only the close frame with push: false: disable_disconnect_push).
async function assertDisconnected(u, code, reason, { closeFrame = true, push = true } = {}) {
  const end = await u.gone();
  if (u.kind === 'websocket') {
    assert.deepStrictEqual(end, closeFrame ? { code, reason } : { code: 1006, reason: '' },
      closeFrame ? 'uni_websocket: the close frame has the code and reason' : 'uni_websocket: no close frame');
  }
  if (!push) {
    assert.ok(!u.pushes.some((p) => p.disconnect), `${u.kind}: no disconnect push`);
    return;
  }
  const last = u.pushes[u.pushes.length - 1];
  // (an empty reason is left out, as protobuf's JSON does)
  assert.deepStrictEqual(last, { disconnect: reason ? { code, reason } : { code } },
    `${u.kind}: the last push is the disconnect`);
  assert.ok(u.raw[u.raw.length - 1].startsWith('{"disconnect":'), `${u.kind}: bare, not in {"push":...}`);
}

// ---- the shared daemon ------------------------------------------------------------

let rd;

before(async () => {
  rd = await new Rotord(config(), { workers: 4 }).start();
});

after(async () => {
  if (rd) await rd.stop();
});

test('every transport: the bare connect push, then publications in order, join and leave, {} pings, presence', { timeout: 30000 }, async () => {
  const ch = 'room:lobby';
  const watcher = curlSse(rd.port, { token: token('watcher', { channels: [ch] }) });
  const clients = [];
  try {
    await watcher.connected();
    for (const kind of TRANSPORTS) {
      const u = uniClient(kind, rd.port, { token: token(`u-${kind}`, { channels: [ch], info: { kind } }) });
      clients.push(u);
      const { connect } = await u.connected();
      assert.match(connect.client, UUID, `${kind}: client id`);
      assert.strictEqual(typeof connect.version, 'string');
      assert.strictEqual(connect.ping, 2, `${kind}: ping interval in seconds`);
      assert.strictEqual(connect.pong, undefined, `${kind}: no pong on a unidirectional transport`);
      assert.strictEqual(connect.session, undefined, `${kind}: no emulation session`);
      assert.ok(connect.subs && connect.subs[ch], `${kind}: the token's channel in subs: ${JSON.stringify(connect)}`);
      assert.strictEqual(connect.subs[ch].recoverable, true);
      assert.ok(connect.subs[`personal:#u-${kind}`], `${kind}: the personal channel in subs`);
      assert.ok(u.raw[0].startsWith('{"connect":{'), `${kind}: bare push, got ${u.raw[0]}`);
      // The watcher sees it join, with its conn info.
      await watcher.find((p) => p.channel === ch && p.join && p.join.info.client === connect.client, 5000, `join of ${kind}`);
      const j = watcher.pushes.find((p) => p.join && p.join.info.client === connect.client);
      assert.deepStrictEqual(j.join.info, { user: `u-${kind}`, client: connect.client, conn_info: { kind } });
      u.id = connect.client;
    }
    assert.strictEqual(watcher.status, 200);
    assert.match(watcher.head, /content-type: text\/event-stream; charset=utf-8/i);
    assert.match(watcher.head, /cache-control: private, no-cache, no-store, must-revalidate, max-age=0/i);
    assert.match(watcher.head, /x-accel-buffering: no/i);
    assert.ok(watcher.body.startsWith('\r\ndata: {"connect":'), 'uni_sse: "\\r\\n", then data: <push>');
    const stream = clients[2];
    assert.strictEqual(stream.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.strictEqual(stream.headers.get('cache-control'), 'private, no-cache, no-store, must-revalidate, max-age=0');

    // Presence through the API lists every one of them.
    const pres = await api(rd, 'presence', { channel: ch });
    for (const u of clients) {
      assert.deepStrictEqual(pres.presence[u.id], { user: `u-${u.kind}`, client: u.id, conn_info: { kind: u.kind } },
        `${u.kind} in presence`);
    }

    // Publications arrive as bare pub pushes, in order, with offsets.
    const N = 30;
    for (let i = 0; i < N; i++) await api(rd, 'publish', { channel: ch, data: { seq: i } });
    for (const u of [watcher, ...clients]) {
      await waitFor(() => u.pubs(ch).length >= N, 8000, 10, `${u.kind}: ${N} publications`);
      const pubs = u.pubs(ch);
      assert.deepStrictEqual(pubs.map((p) => p.data.seq), [...Array(N).keys()], `${u.kind}: in order, once`);
      for (let i = 1; i < N; i++) assert.strictEqual(pubs[i].offset, pubs[0].offset + i);
      const text = u.raw.find((t) => t.includes('"pub":'));
      assert.ok(text.startsWith(`{"channel":"${ch}","pub":`), `${u.kind}: bare pub push, got ${text}`);
    }
    // uni_websocket without join_push_messages: one push per frame.
    assert.ok(clients[3].frames.every((f) => !f.includes('\n')), 'one push per text frame');

    // Pings: {} at the ping interval (2 s), and ping frames on uni_websocket.
    for (const u of [watcher, ...clients]) {
      await waitFor(() => u.raw.includes('{}'), 6000, 20, `${u.kind}: a {} ping`);
    }
    await waitFor(() => clients[3].pings > 0, 6000, 20, 'a ping frame on uni_websocket');

    // Each one leaving is seen by the watcher, and leaves presence.
    for (const u of clients) {
      u.close();
      await watcher.find((p) => p.channel === ch && p.leave && p.leave.info.client === u.id, 5000, `leave of ${u.kind}`);
    }
    await waitFor(async () => Object.keys((await api(rd, 'presence', { channel: ch })).presence).length === 1,
      5000, 50, 'presence without them');
  } finally {
    closeAll([watcher, ...clients]);
  }
});

test('uni_websocket: the request as the first message; later messages are ignored; ping frames are answered', { timeout: 20000 }, async () => {
  const ch = 'room:first';
  const u = wsUni(rd.port, { token: token('first', { channels: [ch] }) }, { first: true });
  try {
    assert.strictEqual(await u.opened, 101);
    await u.connected();
    // Whatever comes next is not a command: nothing answers, nothing ends.
    u.ws.send('{"id":2,"subscribe":{"channel":"open:x"}}');
    u.ws.send('not even JSON');
    await api(rd, 'publish', { channel: ch, data: { after: true } });
    await u.find((p) => p.pub && p.pub.data.after, 5000, 'a publication after the ignored messages');
    // ws answers the ping frames, so the connection lives past a pong timeout.
    await waitFor(() => u.pings >= 2, 8000, 20, 'two ping frames');
    assert.strictEqual(u.ended, null);
    assert.ok(!u.pushes.some((p) => p.subscribe || p.disconnect), 'no reply to what the client sent');
  } finally {
    u.close();
  }
});

test('recovery through the request\'s subs: recover, offset and epoch (token channels and allowed ones)', { timeout: 20000 }, async () => {
  const chans = ['room:rec', 'open:rec'];
  for (const ch of chans) for (let i = 1; i <= 5; i++) await api(rd, 'publish', { channel: ch, data: { n: i } });
  const top = {};
  for (const ch of chans) top[ch] = await api(rd, 'history', { channel: ch, limit: 0 });
  const clients = [];
  try {
    for (const kind of TRANSPORTS) {
      const subs = {};
      for (const ch of chans) subs[ch] = { recover: true, offset: top[ch].offset - 3, epoch: top[ch].epoch };
      // room:rec comes from the token, open:rec only from the request.
      const u = uniClient(kind, rd.port, { token: token(`rec-${kind}`, { channels: ['room:rec'] }), subs });
      clients.push(u);
      const { connect } = await u.connected();
      for (const ch of chans) {
        const s = connect.subs[ch];
        assert.ok(s, `${kind}: ${ch} subscribed: ${JSON.stringify(connect.subs)}`);
        assert.strictEqual(s.recovered, true, `${kind}: ${ch} recovered`);
        assert.strictEqual(s.epoch, top[ch].epoch);
        assert.deepStrictEqual(s.publications.map((p) => p.data.n), [3, 4, 5], `${kind}: ${ch} missed publications`);
        assert.deepStrictEqual(s.publications.map((p) => p.offset), [top[ch].offset - 2, top[ch].offset - 1, top[ch].offset]);
      }
    }
    // Another epoch: not recovered, and nothing made up.
    const u = uniClient('http_stream', rd.port, {
      token: token('rec-bad', { channels: ['room:rec'] }),
      subs: { 'room:rec': { recover: true, offset: 1, epoch: 'nope' } },
    });
    clients.push(u);
    const { connect } = await u.connected();
    assert.strictEqual(connect.subs['room:rec'].recovered, undefined);
    assert.strictEqual(connect.subs['room:rec'].publications, undefined);
    // Live publications continue after the recovered ones.
    await api(rd, 'publish', { channel: 'open:rec', data: { n: 6 } });
    for (const c of clients.slice(0, 4)) {
      const p = await c.find((x) => x.channel === 'open:rec' && x.pub, 5000, 'the live publication');
      assert.deepStrictEqual(p.pub.data, { n: 6 });
      assert.strictEqual(p.pub.offset, top['open:rec'].offset + 1);
    }
  } finally {
    closeAll(clients);
  }
});

test('the server API: subscribe gives a subscribe push; the personal channel; disconnect gives the disconnect push and the end', { timeout: 20000 }, async () => {
  const clients = [];
  try {
    for (const kind of TRANSPORTS) {
      const u = uniClient(kind, rd.port, { token: token(`api-${kind}`) });
      clients.push(u);
      await u.connected();
    }
    for (const u of clients) await api(rd, 'subscribe', { user: `api-${u.kind}`, channel: 'room:later' });
    for (const u of clients) {
      const p = await u.find((x) => x.subscribe && x.channel === 'room:later', 5000, 'the subscribe push');
      assert.strictEqual(p.subscribe.recoverable, true);
      assert.ok(u.raw.some((t) => t.startsWith('{"channel":"room:later","subscribe":')), 'bare subscribe push');
    }
    await api(rd, 'publish', { channel: 'room:later', data: { later: 1 } });
    for (const kind of TRANSPORTS) await api(rd, 'publish', { channel: `personal:#api-${kind}`, data: { mine: kind } });
    for (const u of clients) {
      await u.find((x) => x.channel === 'room:later' && x.pub, 5000, 'a publication on the API subscription');
      const p = await u.find((x) => x.channel === `personal:#api-${u.kind}` && x.pub, 5000, 'the personal publication');
      assert.deepStrictEqual(p.pub.data, { mine: u.kind });
    }
    // Unsubscribe: an unsubscribe push.
    await api(rd, 'unsubscribe', { user: 'api-curl', channel: 'room:later' });
    await clients[0].find((x) => x.unsubscribe && x.channel === 'room:later', 5000, 'the unsubscribe push');
    // Disconnect: one with a code of ours, one with the default.
    for (const u of clients.slice(0, 3)) {
      await api(rd, 'disconnect', { user: `api-${u.kind}`, disconnect: { code: 4001, reason: 'go away' } });
    }
    await api(rd, 'disconnect', { user: 'api-websocket' });
    for (const u of clients.slice(0, 3)) await assertDisconnected(u, 4001, 'go away');
    await assertDisconnected(clients[3], 3503, 'force disconnect');
  } finally {
    closeAll(clients);
  }
});

test('connect errors become disconnects: expired 3005, bad token 3500, unknown channel 3004, no token 3501', { timeout: 20000 }, async () => {
  const cases = [
    { req: { token: token('late', { exp: now() - 10 }) }, code: 3005, reason: 'connection expired' },
    { req: { token: token('bad') + 'x' }, code: 3500, reason: 'invalid token' },
    { req: { token: token('nons', { channels: ['nowhere:x'] }) }, code: 3004, reason: 'internal server error' },
    { req: {}, code: 3501, reason: 'bad request' },
  ];
  for (const c of cases) {
    const clients = TRANSPORTS.map((kind) => uniClient(kind, rd.port, c.req));
    try {
      for (const u of clients) {
        await assertDisconnected(u, c.code, c.reason);
        assert.strictEqual(u.pushes.length, 1, `${u.kind}: only the disconnect push`);
      }
    } finally {
      closeAll(clients);
    }
  }
});

test('refusals: 400, 405, 413, the preflight; a malformed or oversized request on uni_websocket', { timeout: 20000 }, async () => {
  const port = rd.port;
  const post = (path, body, headers = {}) => request(port, { method: 'POST', path, body, headers });
  // uni_sse
  assert.strictEqual((await request(port, { path: `${SSE_PATH}?cf_connect=%7Bnot` })).status, 400);
  assert.strictEqual((await request(port, { path: `${SSE_PATH}?cf_connect=%20` })).status, 400);
  assert.strictEqual((await request(port, { path: `${SSE_PATH}?cf_connect=%5B%5D` })).status, 400);
  assert.strictEqual((await post(SSE_PATH, '')).status, 400);
  assert.strictEqual((await post(SSE_PATH, '{"token": 5}')).status, 400);
  assert.strictEqual((await post(SSE_PATH, `{"data":"${'x'.repeat(70000)}"}`)).status, 413);
  let r = await request(port, { method: 'PUT', path: SSE_PATH, body: '{}' });
  assert.strictEqual(r.status, 405);
  assert.match(r.headers.allow, /GET/);
  // uni_http_stream
  assert.strictEqual((await request(port, { path: STREAM_PATH })).status, 405);
  assert.strictEqual((await post(STREAM_PATH, '')).status, 400);
  assert.strictEqual((await post(STREAM_PATH, 'x')).status, 400);
  assert.strictEqual((await post(STREAM_PATH, `{"data":"${'x'.repeat(70000)}"}`)).status, 413);
  r = await request(port, { method: 'OPTIONS', path: STREAM_PATH });
  assert.strictEqual(r.status, 204);
  assert.strictEqual(r.headers['access-control-max-age'], '300');
  assert.strictEqual(r.headers['access-control-allow-methods'], 'POST, OPTIONS');
  // uni_websocket: a bad cf_connect is refused before the upgrade.
  const bad = wsUni(port, null, { query: '?cf_connect=%7B' });
  assert.strictEqual(await bad.opened, 400);
  const raw = await rawExchange(port, `GET ${WS_PATH}?cf_connect=%7B HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  assert.match(raw, /^HTTP\/1\.1 400 /);
  assert.match(raw, /\r\n\r\ninvalid connect request\n$/);
  // ... a bad first message gets a close frame 3501, without a push.
  const u = wsUni(port, '{"token":', { first: true });
  assert.deepStrictEqual(await u.gone(), { code: 3501, reason: 'bad request' });
  assert.strictEqual(u.pushes.length, 0);
  // ... a first message over uni_websocket.message_size_limit: 1009.
  const big = wsUni(port, `{"data":"${'x'.repeat(5000)}"}`, { first: true });
  assert.strictEqual((await big.gone()).code, 1009);
  // null is an empty request (no token: 3501 as a disconnect, with the push).
  const n = fetchStream(port, 'null');
  await assertDisconnected(n, 3501, 'bad request');
  // The daemon is none the worse.
  const ok = curlSse(port, { token: token('after-refusals') });
  try {
    await ok.connected();
  } finally {
    ok.close();
  }
});

test('a disconnect code no close frame may carry (5000): the push has it, the close frame has no status', { timeout: 15000 }, async () => {
  const u = wsUni(rd.port, { token: token('big-code') });
  try {
    await u.connected();
    await api(rd, 'disconnect', { user: 'big-code', disconnect: { code: 5000, reason: 'custom' } });
    const end = await u.gone();
    assert.deepStrictEqual(u.pushes[u.pushes.length - 1], { disconnect: { code: 5000, reason: 'custom' } });
    assert.strictEqual(end.code, 1005, 'a close frame without a status');
    // Every worker still serves.
    const again = [];
    for (let i = 0; i < 8; i++) again.push(wsUni(rd.port, { token: token(`after-${i}`) }));
    for (const a of again) await a.connected();
    closeAll(again);
  } finally {
    u.close();
  }
});

// ---- configurations of their own ---------------------------------------------------

test('client.connect_code_to_unidirectional_disconnect and connect_code_to_http_response', { timeout: 30000 }, async () => {
  const d = await new Rotord(config({
    client: {
      connect_code_to_unidirectional_disconnect: {
        enabled: true,
        transforms: [{ code: 109, to: { code: 4109, reason: 'refresh your token' } }, { code: 102, to: { code: 4102 } }],
      },
    },
    uni_sse: { connect_code_to_http_response: { enabled: true, transforms: [
      { code: 109, to: { status_code: 401 } },
      { code: 3500, to: { status_code: 403, body: 'go get a token' } },
    ] } },
    uni_http_stream: { connect_code_to_http_response: { enabled: true, transforms: [
      { code: 3500, to: { status_code: 401, body: '{"error":"token"}' } },
    ] } },
  }), { workers: 4 }).start();
  const clients = [];
  try {
    const expired = { token: token('late', { exp: now() - 10 }) };
    const invalid = { token: 'x.y.z' };
    // uni_websocket has no HTTP answer: the configured disconnects.
    let u = wsUni(d.port, expired);
    await assertDisconnected(u, 4109, 'refresh your token');
    u = wsUni(d.port, { token: token('x', { channels: ['nowhere:x'] }) });
    await assertDisconnected(u, 4102, '');
    // uni_sse: statuses; the body is the transform's, else the error's text.
    let r = await request(d.port, { path: `${SSE_PATH}?cf_connect=${encodeURIComponent(JSON.stringify(expired))}` });
    assert.strictEqual(r.status, 401);
    assert.strictEqual(r.body, 'token expired');
    r = await request(d.port, { path: `${SSE_PATH}?cf_connect=${encodeURIComponent(JSON.stringify(invalid))}` });
    assert.strictEqual(r.status, 403);
    assert.strictEqual(r.body, 'go get a token');
    const es = esSse(d.port, invalid);
    clients.push(es);
    assert.deepStrictEqual(await es.gone(), { status: 403 }, 'EventSource sees the status');
    // A code without a transform: 500.
    r = await request(d.port, { path: `${SSE_PATH}?cf_connect=${encodeURIComponent(JSON.stringify({}))}` });
    assert.strictEqual(r.status, 500);
    assert.strictEqual(r.body, 'Internal Server Error');
    // uni_http_stream
    const s1 = fetchStream(d.port, invalid);
    await s1.gone();
    assert.strictEqual(s1.status, 401);
    assert.strictEqual(s1.text, '{"error":"token"}');
    const s2 = fetchStream(d.port, expired);
    await s2.gone();
    assert.strictEqual(s2.status, 500);
    // A connect that succeeds streams as usual.
    for (const kind of TRANSPORTS) {
      const c = uniClient(kind, d.port, { token: token(`fine-${kind}`) });
      clients.push(c);
      await c.connected();
    }
  } finally {
    closeAll(clients);
    await d.stop();
  }
});

test('client.connection_limit: 503 on every uni transport; client.user_connection_limit: disconnect 3504', { timeout: 30000 }, async () => {
  const d = await new Rotord(config({
    client: { connection_limit: 4, user_connection_limit: 1 },
    uni_websocket: { disable_closing_handshake: true },
  }), { workers: 4 }).start();
  const clients = [];
  try {
    // One user twice: the second is refused with 3504, whatever the transport.
    const one = curlSse(d.port, { token: token('solo') });
    clients.push(one);
    await one.connected();
    await sleep(400); // the workers' user snapshots catch up
    for (const kind of ['eventsource', 'http_stream', 'websocket']) {
      const u = uniClient(kind, d.port, { token: token('solo') });
      clients.push(u);
      // (uni_websocket.disable_closing_handshake: the push, then TCP closes)
      await assertDisconnected(u, 3504, 'connection limit', { closeFrame: false });
    }
    // Fill the node up to 4 clients, then every transport gets 503.
    for (let i = 1; i < 4; i++) {
      const u = wsUni(d.port, { token: token(`fill-${i}`) });
      clients.push(u);
      await u.connected();
    }
    await sleep(300); // workers publish their counts once per loop iteration
    assert.strictEqual((await request(d.port, { path: `${SSE_PATH}?cf_connect=%7B%7D` })).status, 503);
    assert.strictEqual((await request(d.port, { method: 'POST', path: STREAM_PATH, body: '{}' })).status, 503);
    const w = wsUni(d.port, { token: token('too-many') });
    assert.strictEqual(await w.opened, 503);
    const es = esSse(d.port, { token: token('too-many') });
    clients.push(es);
    assert.deepStrictEqual(await es.gone(), { status: 503 });
    assert.match(d.log(), /client\.connection_limit \(4\) reached/);
  } finally {
    closeAll(clients);
    await d.stop();
  }
});

// Reads what a file gains, from where the last read stopped.
function tail(path) {
  let pos = 0;
  return () => {
    let fd;
    try { fd = fs.openSync(path, 'r'); } catch (_) { return ''; }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= pos) return '';
      const b = Buffer.alloc(size - pos);
      fs.readSync(fd, b, 0, b.length, pos);
      pos = size;
      return b.toString();
    } finally {
      fs.closeSync(fd);
    }
  };
}

// The body of a chunked HTTP/1.1 response (head included in RAW).
function dechunk(raw) {
  let i = raw.indexOf('\r\n\r\n') + 4;
  let out = '';
  let last = false;
  while (i < raw.length) {
    const e = raw.indexOf('\r\n', i);
    if (e < 0) break;
    const n = parseInt(raw.slice(i, e), 16);
    if (n === 0) { last = true; break; }
    out += raw.slice(e + 2, e + 2 + n);
    i = e + 2 + n + 2;
  }
  return { body: out, last };
}

test('a client that stops reading is disconnected as slow: 3008', { timeout: 60000 }, async () => {
  const d = await new Rotord(config({
    // The queue limit, not the write timeout, ends it; nor the missing
    // pongs of a client that does not read (config's pings come every 2 s,
    // and on a busy machine filling the queue can take longer).
    client: { queue_max_size: 65536, ping_interval: '60s', pong_timeout: '30s' },
    uni_websocket: { write_timeout: '30s' },
    log: { level: 'debug' },
  }), { workers: 4 }).start();
  const socks = [];
  const agent = new (require('node:http').Agent)({ keepAlive: true, maxSockets: 4 });
  try {
    const ch = 'room:slow';
    const log = tail(d.logPath);
    const open = (bytes) => {
      const s = net.connect(d.port, '127.0.0.1');
      s.buf = Buffer.alloc(0);
      s.ended = false;
      s.on('data', (b) => { s.buf = Buffer.concat([s.buf, b]); });
      s.on('end', () => { s.ended = true; });
      s.on('close', () => { s.ended = true; });
      s.on('error', () => { s.ended = true; });
      s.write(bytes);
      socks.push(s);
      return s;
    };
    const req = JSON.stringify({ token: token('slowpoke', { channels: [ch] }) });
    const ws = open(`GET ${WS_PATH}?cf_connect=${encodeURIComponent(req)} HTTP/1.1\r\nHost: x\r\n` +
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
      'Sec-WebSocket-Version: 13\r\n\r\n');
    const st = open(`POST ${STREAM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(req)}\r\n\r\n${req}`);
    await waitFor(() => ws.buf.includes('{"connect":') && st.buf.includes('{"connect":'), 5000, 10, 'both connected');
    ws.pause();
    st.pause();
    ws.buf = Buffer.alloc(0);

    // 8 KiB publications, one at a time, until both are slow; the stream
    // (whose blocked writes may take 1 s only: 8 publications over the
    // limit take far less) is read again at once.
    const pad = 'x'.repeat(8192);
    let sent = 0;
    let logText = '';
    let stSlow = false;
    let wsSlow = false;
    while (sent < 5000 && !(stSlow && wsSlow)) {
      await api(d, 'publish', { channel: ch, data: { seq: sent, pad } }).catch(async () =>
        assert.fail('publish failed'));
      sent++;
      logText += log();
      if (!stSlow && /stream fd \d+: \d+ bytes queued, over the limit 65536; slow/.test(logText)) {
        stSlow = true;
        st.resume();
      }
      if (!wsSlow && /over client\.queue_max_size 65536; closing as slow/.test(logText)) wsSlow = true;
    }
    assert.ok(stSlow && wsSlow, `both slow within ${sent} publications (stream ${stSlow}, websocket ${wsSlow})`);
    // Read the WebSocket again now: rotord waits for the close handshake a
    // few seconds only, then drops a client that still does not read.
    ws.resume();

    // uni_http_stream: what was queued, in order, then the disconnect push and the end.
    await waitFor(() => st.ended || st.buf.includes('0\r\n\r\n'), 10000, 10, 'the end of the stream');
    const { body, last } = dechunk(st.buf.toString('latin1'));
    assert.ok(last, 'the last chunk came');
    const lines = body.split('\n').filter((l) => l).map((l) => JSON.parse(l));
    assert.deepStrictEqual(lines[lines.length - 1], { disconnect: { code: 3008, reason: 'slow' } });
    const seqs = lines.filter((p) => p.pub).map((p) => p.pub.data.seq);
    assert.ok(seqs.length < sent, `the stream got ${seqs.length} of ${sent}: ${seqs.slice(0, 3)} ... ${seqs.slice(-3)}`);
    assert.deepStrictEqual(seqs, [...Array(seqs.length).keys()], 'in order, without gaps');

    // uni_websocket: what was queued, then the close frame 3008.
    const close = await waitFor(() => parseFrames(ws.buf).frames.find((f) => f.op === 8), 10000, 10, 'the close frame');
    assert.strictEqual(close.payload.readUInt16BE(0), 3008);
    assert.strictEqual(close.payload.subarray(2).toString(), 'slow');
    ws.write(clientFrame(8, close.payload.subarray(0, 2)));
    await waitFor(() => ws.ended, 5000, 10, 'the server closes the connection');
    const wseqs = parseFrames(ws.buf).frames.filter((f) => f.op === 1).map((f) => JSON.parse(f.payload.toString()))
      .filter((p) => p.pub).map((p) => p.pub.data.seq);
    assert.deepStrictEqual(wseqs, [...Array(wseqs.length).keys()], 'in order, without gaps');
  } finally {
    for (const s of socks) s.destroy();
    agent.destroy();
    await d.stop();
  }
});

test('HUP reload keeps every uni connection open and applies uni_websocket.* in place; QUIT ends them with 3001', { timeout: 40000 }, async () => {
  const d = await new Rotord(config(), { workers: 4 }).start();
  const ch = 'room:reload';
  const clients = [];
  try {
    for (const kind of TRANSPORTS) {
      const u = uniClient(kind, d.port, { token: token(`r-${kind}`, { channels: [ch] }) });
      clients.push(u);
      await u.connected();
    }
    const batch = (from, n) => api(d, 'batch', {
      commands: [...Array(n).keys()].map((i) => ({ publish: { channel: ch, data: { seq: from + i } } })),
    });
    await batch(0, 50);
    for (const u of clients) await waitFor(() => u.pubs(ch).length >= 50, 8000, 10, `${u.kind}: 50 before the reload`);
    const ws = clients[3];
    assert.ok(ws.frames.every((f) => !f.includes('\n')), 'before: one push per frame');

    const cfg = JSON.parse(fs.readFileSync(d.configPath, 'utf8'));
    cfg.uni_websocket.join_push_messages = true;
    cfg.uni_websocket.disable_disconnect_push = true;
    d.writeConfig(cfg);
    const framesBefore = ws.frames.length;
    d.signal('SIGHUP');
    await waitFor(() => (d.log().match(/configuration reloaded in place/g) || []).length === 4, 8000, 20,
      'every worker reloaded');
    assert.match(d.log(), /reload: uni_websocket\.join_push_messages changed/);
    await batch(50, 50);
    for (const u of clients) {
      await waitFor(() => u.pubs(ch).length >= 100, 8000, 10, `${u.kind}: 50 after the reload`);
      assert.deepStrictEqual(u.pubs(ch).map((p) => p.data.seq), [...Array(100).keys()], `${u.kind}: all, in order`);
      assert.strictEqual(u.ended, null, `${u.kind}: still open`);
    }
    assert.ok(ws.frames.slice(framesBefore).some((f) => f.includes('\n')), 'after: pushes joined in frames');

    d.signal('SIGQUIT');
    for (const u of clients.slice(0, 3)) await assertDisconnected(u, 3001, 'shutdown');
    // uni_websocket.disable_disconnect_push (reloaded too): the close frame only.
    await assertDisconnected(ws, 3001, 'shutdown', { push: false });
    const exit = await d.waitExit(20000);
    assert.strictEqual(exit.code, 0);
  } finally {
    closeAll(clients);
    await d.stop();
  }
});

// ---- configuration checks -------------------------------------------------------------

test('the transforms are checked like Centrifugo\'s validate.go', () => {
  const dir = mkTmp();
  try {
    const check = (cfg) => {
      const p = `${dir}/c.json`;
      fs.writeFileSync(p, JSON.stringify(cfg));
      return run(ROTORD, ['-t', '-c', p]);
    };
    const good = check({
      client: { connect_code_to_unidirectional_disconnect: { enabled: true, transforms: [{ code: 109, to: { code: 4000, reason: 'x' } }] } },
      uni_sse: { enabled: true, connect_code_to_http_response: { enabled: true, transforms: [{ code: 109, to: { status_code: 401 } }] } },
    });
    assert.strictEqual(good.status, 0, good.stderr);
    assert.doesNotMatch(good.stderr, /uni_sse\.enabled: not supported|connect_code.*not supported/);
    const bad = check({
      client: { connect_code_to_unidirectional_disconnect: { transforms: [
        { to: { code: 4000 } }, { code: 109, to: {} }, { code: 110, to: { code: 4000, reason: 'é' } }, 'x',
      ] } },
      uni_http_stream: { connect_code_to_http_response: { transforms: [{ code: 109, to: { body: 'b' } }, { to: { status_code: 400 } }] } },
      uni_sse: { connect_code_to_http_response: { transforms: [{ code: -1, to: { status_code: 42 } }] } },
    });
    assert.notStrictEqual(bad.status, 0);
    const want = [
      /client\.connect_code_to_unidirectional_disconnect\.transforms\[0\]\.code: must be set/,
      /client\.connect_code_to_unidirectional_disconnect\.transforms\[1\]\.to\.code: no disconnect code set/,
      /client\.connect_code_to_unidirectional_disconnect\.transforms\[2\]\.to\.reason: must be ASCII/,
      /client\.connect_code_to_unidirectional_disconnect\.transforms\[3\]: must be an object/,
      /uni_http_stream\.connect_code_to_http_response\.transforms\[0\]\.to\.status_code: must be set/,
      /uni_http_stream\.connect_code_to_http_response\.transforms\[1\]\.code: must be set/,
      /uni_sse\.connect_code_to_http_response\.transforms\[0\]\.code: must be an integer/,
      /uni_sse\.connect_code_to_http_response\.transforms\[0\]\.to\.status_code: must be an HTTP status/,
    ];
    for (const re of want) assert.match(bad.stderr, re);
    // What rotor does not implement is accepted with a warning.
    const ign = check({ uni_websocket: { read_buffer_size: 1024 } });
    assert.strictEqual(ign.status, 0);
    assert.match(ign.stderr, /uni_websocket\.read_buffer_size: not supported by rotor yet; ignored/);
    // compression is implemented (deflate.test.js): no warning.
    const impl = check({ uni_websocket: { compression: true } });
    assert.strictEqual(impl.status, 0);
    assert.doesNotMatch(impl.stderr, /compression/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
