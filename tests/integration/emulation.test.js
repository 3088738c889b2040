'use strict';
// The emulation transports' own edges on the real daemon (4 workers):
// /connection/http_stream, /connection/sse and POST /emulation
// (client-protocol.md §8.2-8.4, §8.8).
//
//   - bad input, each as a raw HTTP exchange: wrong methods (405 + Allow),
//     bodies over each max_request_body_size (413), malformed JSON and
//     protobuf EmulationRequests (400), SSE without cf_connect (400),
//     preflights (204, Access-Control-Max-Age, CORS only for an allowed
//     Origin), a foreign node (404), a made-up session (204, no effect);
//   - a flood of /emulation POSTs for sessions that do not exist (random and
//     near-miss ids) reaches no session and adds nothing to the bus;
//   - a half-open stream (the client neither reads nor answers pings) is
//     ended by the ping (3012) and the server frees its end;
//   - an accepted POST is never lost: 204 means the session took the
//     commands (their replies precede any disconnect on the stream, their
//     effects happened); a POST for a session that ended is refused;
//   - HTTP/1.0 streams (no chunking, the connection closes at the end) and
//     /emulation POSTs in sequence on one kept-alive connection;
//   - centrifuge-js's fallback [websocket, http_stream, sse] when WebSocket
//     is refused;
//   - sessions spread over the workers, one session's POSTs taken by
//     several workers on fresh connections (shown by rotord's log), all
//     of them reaching the session.

const { test, describe } = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const http = require('node:http');
const { waitFor, sleep, apiPost, request, hs256, rawExchange, run, ROTORCTL, deepMerge } = require('./lib/rotord.js');
const {
  sdk, once, openNamespace, emulationPost, RawClient, endpoint, serverInode, inodeHolder, startDaemon, stopDaemon,
} = require('./lib/transports.js');

const GOOD_ORIGIN = 'http://good.example';
const LIMIT = 1000; // every max_request_body_size below

const NS = openNamespace('em');

const CONFIG = {
  // Pings are the subject of one test only (which shortens them): here
  // they are short enough to happen, long enough for a loaded machine.
  client: { ping_interval: '4s', pong_timeout: '3s', allowed_origins: [GOOD_ORIGIN] },
  http_stream: { enabled: true, max_request_body_size: LIMIT },
  sse: { enabled: true, max_request_body_size: LIMIT },
  emulation: { max_request_body_size: LIMIT },
  channel: { namespaces: [NS] },
  shutdown: { timeout: '5s' },
};

// A server API call on RD's kept-alive connections.
async function api(rd, method, body) {
  const r = await apiPost(rd.port, `/api/${method}`, body, { agent: rd.agent });
  assert.strictEqual(r.status, 200, `${method}: ${r.status} ${r.body}`);
  return JSON.parse(r.body).result || {};
}

// Runs FN(rd, raws) on a daemon of its own; raw clients pushed on RAWS are
// closed and the daemon stopped whatever happens.
async function withDaemon(config, fn, workers = 4) {
  const rd = await startDaemon(deepMerge(CONFIG, config), workers);
  const raws = [];
  try {
    await fn(rd, raws);
  } finally {
    for (const r of raws) r.close();
    await stopDaemon(rd, rd.exitedOk);
  }
}

async function openRaw(rd, raws, transport, user, opts = {}, connect = {}) {
  const r = await RawClient.open(rd.port, transport, { token: hs256({ sub: user }), ...connect }, opts);
  raws.push(r);
  assert.ok(r.result, `${transport}: connected (${JSON.stringify(r.reply)})`);
  return r;
}

// ---- protobuf by hand -------------------------------------------------------------

function varint(n) {
  const out = [];
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128); }
  out.push(n);
  return Buffer.from(out);
}
const pbField = (num, bytes) => Buffer.concat([varint(num << 3 | 2), varint(bytes.length), Buffer.from(bytes)]);
// EmulationRequest{node = 1, session = 2, data = 3}.
const pbEmulation = ({ node = '', session = '', data = Buffer.alloc(0) }) =>
  Buffer.concat([node ? pbField(1, Buffer.from(node)) : Buffer.alloc(0),
    session ? pbField(2, Buffer.from(session)) : Buffer.alloc(0), data.length ? pbField(3, data) : Buffer.alloc(0)]);

const stats = (rd) => {
  const r = run(ROTORCTL, ['stats', '-c', rd.configPath, '--json']);
  assert.strictEqual(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
};

describe('emulation', { concurrency: true }, () => {
  test('bad input: 405, 413, 400, preflights and CORS, foreign node, made-up session', { timeout: 30000 }, () => withDaemon({}, async (rd, raws) => {
    const p = rd.port;
    const req = (o) => request(p, { timeout: 5000, ...o });

    // Wrong methods: 405 with the methods the endpoint takes.
    for (const [path, methods, allow] of [
      ['/connection/http_stream', ['GET', 'PUT', 'DELETE', 'PATCH'], 'POST, OPTIONS'],
      ['/connection/sse', ['PUT', 'DELETE', 'OPTIONS'], 'GET, POST'],
      ['/emulation', ['GET', 'PUT', 'DELETE', 'HEAD'], 'POST, OPTIONS'],
    ]) {
      for (const method of methods) {
        const r = await req({ method, path });
        assert.strictEqual(r.status, 405, `${method} ${path}`);
        assert.deepStrictEqual(r.headers.allow.split(/,\s*/).sort(), allow.split(', ').sort(), `${method} ${path}: Allow`);
      }
    }

    // Bodies over each limit: 413, and nothing starts; at the limit: served.
    const pad = (n) => JSON.stringify({ id: 1, connect: { data: 'x'.repeat(n) } });
    const atLimit = pad(LIMIT - pad(0).length);
    assert.strictEqual(Buffer.byteLength(atLimit), LIMIT);
    const over = pad(LIMIT - pad(0).length + 1);
    const post = (path, body, ctype = 'application/json', extra = {}) => req({ method: 'POST', path, body,
      headers: { 'Content-Type': ctype, ...extra } });
    assert.strictEqual((await post('/connection/http_stream', over)).status, 413);
    assert.strictEqual((await post('/connection/sse', over)).status, 413);
    const emuOver = JSON.stringify({ session: 'x'.repeat(LIMIT), node: 'n', data: '' });
    assert.strictEqual((await post('/emulation', emuOver)).status, 413);
    assert.strictEqual((await post('/emulation', pbEmulation({ session: 'x'.repeat(LIMIT) }), 'application/octet-stream')).status, 413);
    // A chunked body is held to the same limit.
    const chunked = await rawExchange(p, `POST /emulation HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n` +
      `Content-Type: application/json\r\nConnection: close\r\n\r\n${(LIMIT + 1).toString(16)}\r\n${'y'.repeat(LIMIT + 1)}\r\n0\r\n\r\n`);
    assert.match(chunked, /^HTTP\/1\.1 413 /);
    for (const tr of ['http_stream', 'sse']) {
      const r = await RawClient.open(p, tr, { data: 'x'.repeat(LIMIT - pad(0).length) }, { method: 'POST', waitConnect: false });
      raws.push(r);
      // The stream opened and the connect was answered (anonymous
      // connects are refused, so the answer is a disconnect): the body
      // at the limit was read.
      const e = await r.end(5000);
      assert.strictEqual(r.head.status, 200, tr);
      assert.strictEqual(e.code, 3501, `${tr}: the connect at the limit was handled`);
    }

    // Malformed EmulationRequests: 400.
    const badJson = ['', 'not json', '[1,2]', '{"session":1}', '{"data":{}}', '{"node":"x"', '{"node":"a"} {"node":"b"}', '"str"'];
    for (const body of badJson) {
      assert.strictEqual((await post('/emulation', body)).status, 400, `JSON ${JSON.stringify(body)}`);
    }
    const badPb = [Buffer.from([0x0a, 0x05, 0x61]), Buffer.from([0x08, 0x01]), Buffer.from([0xff]), Buffer.from([0x0a, 0x80]),
      Buffer.from([0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00])];
    for (const body of badPb) {
      assert.strictEqual((await post('/emulation', body, 'application/octet-stream')).status, 400, `protobuf ${body.toString('hex')}`);
    }

    // SSE needs its connect command.
    assert.strictEqual((await req({ path: '/connection/sse' })).status, 400);
    assert.strictEqual((await req({ path: '/connection/sse?cf_connect=' })).status, 400);
    assert.strictEqual((await req({ path: '/connection/sse?other=1' })).status, 400);

    // Preflights: 204, Max-Age 300, the methods; CORS for an allowed Origin only.
    for (const path of ['/connection/http_stream', '/emulation']) {
      const good = await req({ method: 'OPTIONS', path, headers: { Origin: GOOD_ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' } });
      assert.strictEqual(good.status, 204, path);
      assert.strictEqual(good.body, '');
      assert.strictEqual(good.headers['access-control-max-age'], '300');
      assert.strictEqual(good.headers['access-control-allow-methods'], 'POST, OPTIONS');
      assert.strictEqual(good.headers['access-control-allow-origin'], GOOD_ORIGIN);
      assert.strictEqual(good.headers['access-control-allow-credentials'], 'true');
      assert.strictEqual(good.headers['access-control-allow-headers'], 'content-type');
      const bad = await req({ method: 'OPTIONS', path, headers: { Origin: 'http://evil.example', 'Access-Control-Request-Headers': 'content-type' } });
      assert.strictEqual(bad.status, 204, path);
      for (const h of ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-allow-headers']) {
        assert.strictEqual(bad.headers[h], undefined, `${path}: no ${h} for a foreign origin`);
      }
    }

    // A real session for what follows; its stream carries CORS headers for
    // an allowed Origin only.
    const s = await openRaw(rd, raws, 'http_stream', 'bad-input', { headers: { Origin: GOOD_ORIGIN } });
    assert.strictEqual(s.head.headers['access-control-allow-origin'], GOOD_ORIGIN);
    const foreign = await openRaw(rd, raws, 'sse', 'bad-input2', { headers: { Origin: 'http://evil.example' } });
    assert.strictEqual(foreign.head.headers['access-control-allow-origin'], undefined);
    const cmd = (id) => JSON.stringify({ id, publish: { channel: 'em:bad', data: { id } } });

    const emu204 = await emulationPost(p, { session: s.session, node: s.node, data: cmd(2) }, { headers: { Origin: GOOD_ORIGIN } });
    assert.strictEqual(emu204.status, 204);
    assert.strictEqual(emu204.headers['access-control-allow-origin'], GOOD_ORIGIN);
    assert.strictEqual(emu204.headers['x-rotor-emulation'], undefined, 'a session took it: a plain 204');
    await s.next((m) => m.id === 2);
    // A node that is not this one: 404, nothing delivered.
    assert.strictEqual((await emulationPost(p, { session: s.session, node: crypto.randomUUID(), data: cmd(3) })).status, 404);
    assert.strictEqual((await emulationPost(p, { session: s.session, data: cmd(4) })).status, 404);
    assert.strictEqual((await emulationPost(p, pbEmulation({ session: s.session, node: crypto.randomUUID() }), { ctype: 'application/octet-stream' })).status, 404);
    // Sessions that were never made: 204, and nothing happens.
    for (const session of ['', 'nope', crypto.randomUUID(), s.session.slice(0, -1), `${s.session}0`, s.session.toUpperCase()]) {
      const r = await emulationPost(p, { session, node: s.node, data: cmd(5) });
      assert.strictEqual(r.status, 204, `session ${JSON.stringify(session)}`);
      assert.strictEqual(r.headers['x-rotor-emulation'], 'no-session', `session ${JSON.stringify(session)}`);
    }
    // The session goes on, and saw none of it.
    assert.strictEqual((await s.call(6, { publish: { channel: 'em:bad', data: { id: 6 } } })).id, 6);
    const h = await api(rd, 'history', { channel: 'em:bad', limit: -1 });
    assert.deepStrictEqual(h.publications.map((x) => x.data.id), [2, 6], 'only the real POSTs took effect');
    assert.deepStrictEqual(s.messages.filter((m) => m.id).map((m) => m.id), [1, 2, 6]);
  }));

  test('a half-open stream is ended by the ping and its connection freed', { timeout: 30000 }, () => withDaemon({ client: { ping_interval: '1s', pong_timeout: '500ms' } }, async (rd, raws) => {
    await Promise.all(['http_stream', 'sse'].map(async (tr) => {
      const r = await openRaw(rd, raws, tr, `half-${tr}`, { autoPong: false });
      const inode = await waitFor(() => serverInode(rd.port, r.localPort), 3000, 20, 'the server end');
      assert.ok(inodeHolder(rd.workers(), inode), 'a worker holds it');
      // The client goes silent: it neither reads nor answers, and never
      // closes its end.
      r.pause();
      await waitFor(() => inodeHolder(rd.workers(), inode) === null, 8000, 50, `${tr}: the server to close its end`);
      r.resume();
      const e = await r.end(5000);
      assert.deepStrictEqual([e.code, e.reason], [3012, 'no pong'], tr);
    }));
    assert.strictEqual(stats(rd).clients, 0, 'no session left');
  }));

  // The promise under test: an /emulation POST answered a plain 204 was
  // taken by the session: its command ran and its reply is on the stream
  // before any disconnect. Whatever else a POST meets (the session ended,
  // the daemon stops) it is answered 204 with X-Rotor-Emulation: no-session
  // (as Centrifugo answers 204 for a session it does not know) and had no
  // effect, or 504 (unknown), never a plain 204 without effect.
  describe('nothing accepted is lost', { concurrency: true }, () => {
    // Sends publish commands of session S, one POST each on a fresh
    // connection (so they reach every worker), 16 at a time, until 40
    // more were sent after S's stream ended; resolves [{k, status}]
    // (status 0: the connection failed).
    const burst = async (rd, s, ch) => {
      const results = [];
      let k = 0;
      let after = 0;
      const lane = async () => {
        while (after < 40 && k < 5000) {
          const my = k++;
          if (s.isEnded) after++;
          const data = JSON.stringify({ id: 1000 + my, publish: { channel: ch, data: { k: my } } });
          try {
            const r = await emulationPost(rd.port, { session: s.session, node: s.node, data });
            const gone = r.status === 204 && r.headers['x-rotor-emulation'] === 'no-session';
            results.push({ k: my, status: gone ? 'no-session' : r.status });
          } catch (e) {
            results.push({ k: my, status: 0 });
          }
        }
      };
      await Promise.all([...Array(16)].map(lane));
      return results;
    };

    // Checks the promise on what S received and what the history holds.
    function check(s, results, published, streamOk) {
      const replied = new Set(s.messages.filter((m) => m.id >= 1000).map((m) => m.id - 1000));
      const ok = results.filter((r) => r.status === 204).map((r) => r.k);
      for (const r of results) assert.ok([204, 'no-session', 504, 0].includes(r.status), `POST ${r.k}: status ${r.status}`);
      for (const k of ok) assert.ok(published.has(k), `POST ${k} was answered 204 but its publish did not happen ${JSON.stringify([...published])} ${JSON.stringify(s.messages.slice(0,3))}`);
      if (streamOk) {
        for (const k of ok) assert.ok(replied.has(k), `POST ${k} was answered 204 but its reply is not on the stream`);
        const disc = s.messages.findIndex((m) => m.push && m.push.disconnect);
        const lastReply = s.messages.map((m) => m.id >= 1000).lastIndexOf(true);
        assert.ok(disc < 0 || lastReply < disc, 'replies come before the disconnect');
      }
      for (const r of results.filter((x) => x.status === 'no-session')) {
        assert.ok(!published.has(r.k), `POST ${r.k} was answered no-session but its publish happened`);
      }
      return { ok: ok.length, refused: results.length - ok.length };
    }

    const published = async (rd, ch) => new Set((await api(rd, 'history', { channel: ch, limit: -1 })).publications.map((x) => x.data.k));

    test('the server disconnects the session meanwhile', { timeout: 30000 }, () => withDaemon({}, async (rd, raws) => {
      const s = await openRaw(rd, raws, 'http_stream', 'lost-api');
      const b = burst(rd, s, 'em:lost1');
      await s.next((m) => m.id >= 1000);
      await api(rd, 'disconnect', { user: 'lost-api', disconnect: { code: 4100, reason: 'now' } });
      const results = await b;
      await s.end(5000);
      const r = check(s, results, await published(rd, 'em:lost1'), true);
      assert.ok(r.ok > 0 && r.refused > 0, `some taken, some refused: ${JSON.stringify(r)}`);
    }));

    test('the client closes its stream meanwhile', { timeout: 30000 }, () => withDaemon({}, async (rd, raws) => {
      const s = await openRaw(rd, raws, 'sse', 'lost-close');
      const b = burst(rd, s, 'em:lost2');
      await s.next((m) => m.id >= 1000);
      s.close();
      const results = await b;
      const r = check(s, results, await published(rd, 'em:lost2'), false);
      assert.ok(r.ok > 0 && r.refused > 0, `some taken, some refused: ${JSON.stringify(r)}`);
    }));

    test('the daemon stops (SIGQUIT) meanwhile', { timeout: 30000 }, () => withDaemon({}, async (rd, raws) => {
      const s = await openRaw(rd, raws, 'http_stream', 'lost-quit');
      const seen = new Set();
      const b = burst(rd, s, 'em:lost3');
      await s.next((m) => m.id >= 1000);
      rd.signal('SIGQUIT');
      const results = await b;
      const e = await s.end(8000);
      assert.strictEqual(e.code, 3001);
      await rd.waitExit(15000);
      rd.exitedOk = true;
      // The history is gone with the daemon; the stream is the record.
      for (const m of s.messages) if (m.id >= 1000 && m.publish !== undefined) seen.add(m.id - 1000);
      const r = check(s, results, seen, true);
      assert.ok(r.ok > 0, `some taken: ${JSON.stringify(r)}`);
    }));
  });

  test('HTTP/1.0 streams: no chunking, and the connection closes at the end', { timeout: 30000 }, () => withDaemon({}, async (rd, raws) => {
    for (const tr of ['http_stream', 'sse']) {
      const r = await openRaw(rd, raws, tr, `h10-${tr}`, { http10: true });
      assert.strictEqual(r.head.version, '1.1', 'the status line');
      assert.strictEqual(r.head.headers['transfer-encoding'], undefined, `${tr}: no chunking for HTTP/1.0`);
      assert.strictEqual(r.head.headers.connection, 'close');
      assert.strictEqual((await r.call(2, { publish: { channel: 'em:h10', data: { tr } } })).id, 2);
      await api(rd, 'disconnect', { user: `h10-${tr}`, disconnect: { code: 4200, reason: 'end' } });
      const e = await r.end(5000);
      assert.deepStrictEqual([e.code, e.reason, e.clean], [4200, 'end', true], `${tr}: a whole body, then EOF`);
    }
    // HTTP/1.1: chunked, kept-alive header, and the last chunk at the end.
    const r = await openRaw(rd, raws, 'http_stream', 'h11');
    assert.strictEqual(r.head.headers['transfer-encoding'], 'chunked');
    assert.strictEqual(r.head.headers.connection, 'keep-alive');
    assert.strictEqual(r.head.headers['content-type'], 'text/plain; charset=utf-8');
    for (const [k, v] of Object.entries({ 'cache-control': 'private, no-cache, no-store, must-revalidate, max-age=0', pragma: 'no-cache', expire: '0', 'x-accel-buffering': 'no' })) {
      assert.strictEqual(r.head.headers[k], v, k);
    }
    const sse = await openRaw(rd, raws, 'sse', 'h11sse');
    assert.strictEqual(sse.head.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.strictEqual(sse.prelude, '\r\n');
  }));

  test('/emulation POSTs in sequence on one kept-alive connection', { timeout: 30000 }, () => withDaemon({}, async (rd, raws) => {
    const s = await openRaw(rd, raws, 'http_stream', 'keep');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set();
    try {
      for (let id = 2; id < 22; id++) {
        const body = JSON.stringify({ session: s.session, node: s.node, data: JSON.stringify({ id, publish: { channel: 'em:keep', data: { id } } }) });
        const r = await new Promise((resolve, reject) => {
          const q = http.request({ host: '127.0.0.1', port: rd.port, method: 'POST', path: '/emulation', agent,
            headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
            ports.add(res.socket.localPort);
            res.resume();
            res.on('end', () => resolve(res));
          });
          q.on('error', reject);
          q.end(body);
        });
        assert.strictEqual(r.statusCode, 204, `POST ${id}`);
        await s.next((m) => m.id === id);
      }
    } finally {
      agent.destroy();
    }
    assert.strictEqual(ports.size, 1, 'one connection carried every POST');
    // Pipelined on a raw socket: every answer, in order.
    const post = (id) => {
      const body = JSON.stringify({ session: s.session, node: s.node, data: JSON.stringify({ id, publish: { channel: 'em:keep', data: { id } } }) });
      return `POST /emulation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    };
    const text = await rawExchange(rd.port, post(30) + post(31) + post(32) + post(33).replace('Host: x', 'Host: x\r\nConnection: close'));
    assert.deepStrictEqual(text.match(/^HTTP\/1\.1 \d+/gm), ['HTTP/1.1 204', 'HTTP/1.1 204', 'HTTP/1.1 204', 'HTTP/1.1 204'], text);
    for (const id of [30, 31, 32, 33]) await s.next((m) => m.id === id);
    const h = await api(rd, 'history', { channel: 'em:keep', limit: -1 });
    assert.deepStrictEqual(h.publications.map((x) => x.data.id), [...Array(20).keys()].map((k) => k + 2).concat([30, 31, 32, 33]));
  }));

  test('the fallback [websocket, http_stream, sse] when WebSocket is refused', { timeout: 30000 }, async () => {
    const list = (p, wsPath = '/connection/websocket') => [
      { transport: 'websocket', endpoint: `ws://127.0.0.1:${p}${wsPath}` },
      { transport: 'http_stream', endpoint: endpoint(p, 'http_stream') },
      { transport: 'sse', endpoint: endpoint(p, 'sse') },
    ];
    const cases = [
      ['websocket.disabled', { websocket: { disabled: true } }, undefined, 'http_stream'],
      ['an endpoint that refuses the upgrade', {}, '/not/websocket', 'http_stream'],
      ['websocket and http_stream disabled', { websocket: { disabled: true }, http_stream: { enabled: false } }, undefined, 'sse'],
    ];
    await Promise.all(cases.map(([what, config, wsPath, want]) => withDaemon(config, async (rd) => {
      const c = sdk(rd.port, { fmt: 'json' }, { token: hs256({ sub: 'fb' }) }, list(rd.port, wsPath));
      try {
        const ctx = once(c, 'connected', 8000);
        c.connect();
        assert.strictEqual((await ctx).transport, want, what);
        // And it works.
        const sub = c.newSubscription('em:fb');
        const got = once(sub, 'publication');
        sub.subscribe();
        await sub.ready(5000);
        await sub.publish({ what });
        assert.deepStrictEqual((await got).data, { what });
        // A reconnect keeps the transport that worked.
        const again = once(c, 'connected', 8000);
        await api(rd, 'disconnect', { user: 'fb', disconnect: { code: 4000, reason: 'again' } });
        assert.strictEqual((await again).transport, want, `${what}: after a reconnect`);
      } finally {
        c.disconnect();
      }
    }, 2)));
  });
});

// The two tests that load the machine most run alone, after the others.

test('a flood of POSTs for other sessions reaches no session and not the bus', { timeout: 60000 }, () => withDaemon({}, async (rd, raws) => {
  const s = await openRaw(rd, raws, 'http_stream', 'flooded');
  const ch = 'em:flood';
  assert.strictEqual((await s.call(2, { subscribe: { channel: ch } })).id, 2);
  const before = stats(rd).bus.appends;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const hex = '0123456789abcdef';
  // Near misses: the real id with one character changed (slot, random
  // part or MAC), upper case, cut, extended; and random ids of the right
  // shape. Their commands would be seen if they reached the session.
  const ids = [];
  for (let i = 0; i < s.session.length; i++) {
    for (const d of [1, 7]) {
      const ch2 = hex[(hex.indexOf(s.session[i]) + d) % 16];
      ids.push(s.session.slice(0, i) + ch2 + s.session.slice(i + 1));
    }
  }
  ids.push(s.session.toUpperCase(), s.session.slice(1), `0${s.session}`);
  while (ids.length < 3000) ids.push(crypto.randomBytes(18).toString('hex'));
  let realPosts = 0;
  let next = 100;
  const statuses = new Map();
  const flood = async (worker) => {
    for (let k = worker; k < ids.length; k += 16) {
      const data = `{"id":${90000 + k},"publish":{"channel":"${ch}","data":{"evil":${k}}}}\n{"id":${190000 + k},"unsubscribe":{"channel":"${ch}"}}`;
      const r = await emulationPost(rd.port, { session: ids[k], node: s.node, data }, { agent });
      statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
    }
  };
  // Meanwhile the real session keeps working: it publishes and hears
  // its own publications.
  const real = (async () => {
    for (let n = 0; n < 20; n++) {
      const id = next++;
      const reply = await s.call(id, { publish: { channel: ch, data: { n } } });
      realPosts++;
      assert.ok(reply.publish !== undefined, JSON.stringify(reply));
      await s.next((m) => m.push && m.push.pub && m.push.pub.data.n === n);
      await sleep(20);
    }
  })();
  await Promise.all([...Array(16).keys()].map(flood).concat([real]));
  agent.destroy();
  assert.deepStrictEqual([...statuses], [[204, ids.length]], 'a made-up session is answered 204');
  const after = stats(rd).bus.appends;
  // The real session's traffic may use the bus (its POSTs reaching its
  // worker through another one, its publications, pongs); the flood of
  // 3000 POSTs must add nothing.
  const pongs = s.pongs.length;
  assert.ok(after - before <= 3 * (realPosts + pongs) + realPosts, `bus appends grew by ${after - before} for ${realPosts} real POSTs and ${pongs} pongs`);
  const evil = s.messages.filter((m) => (m.id && m.id >= 90000) || (m.push && m.push.pub && m.push.pub.data.evil !== undefined));
  assert.deepStrictEqual(evil, [], 'nothing of the flood reached the session');
  const h = await api(rd, 'history', { channel: ch, limit: -1 });
  assert.deepStrictEqual(h.publications.map((x) => x.data.n), [...Array(20).keys()]);
  assert.ok(!s.isEnded, 'the session lives');
}));

test('4 workers: sessions spread, one session\'s POSTs taken by several workers', { timeout: 40000 }, () => withDaemon({ log: { level: 'debug' } }, async (rd) => {
  // centrifuge-js's fetch, with each /emulation POST on a connection of
  // its own (node's fetch would keep one alive); the kernel gives each
  // connection to any of the 4 workers.
  const fetchFresh = (url, opts) => {
    if (!String(url).endsWith('/emulation')) return fetch(url, opts);
    const body = Buffer.from(opts.body);
    return new Promise((resolve, reject) => {
      const q = http.request(url, { method: 'POST', agent: false,
        headers: { ...opts.headers, 'Content-Length': body.length } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ ok: res.statusCode < 300, status: res.statusCode }));
      });
      q.on('error', reject);
      q.end(body);
    });
  };
  const clients = [];
  try {
    for (let i = 0; i < 16; i++) {
      const t = { name: i % 2 ? 'sse' : 'http_stream', fmt: 'json' };
      const c = sdk(rd.port, t, { token: hs256({ sub: `spread-${i}` }), fetch: fetchFresh });
      clients.push(c);
      const ctx = once(c, 'connected');
      c.connect();
      await ctx;
    }
    // Every client subscribes and publishes 12 times: each command is a
    // POST of its own (13 POSTs all on one worker: (1/4)^12 per session).
    await Promise.all(clients.map(async (c, i) => {
      const sub = c.newSubscription(`em:spread${i}`);
      const got = [];
      sub.on('publication', (p) => got.push(p.data.n));
      sub.subscribe();
      await sub.ready(5000);
      for (let n = 0; n < 12; n++) await sub.publish({ n });
      await waitFor(() => got.length === 12, 5000, 10, 'its publications');
      assert.deepStrictEqual(got, [...Array(12).keys()]);
    }));
    // Which worker took each POST, from rotord's log: the session id
    // starts with its owner's bus slot, the log line names the bus slot
    // of the worker that took the POST.
    const taken = new Map(); // session -> [bus slots of the takers]
    const re = /\[worker \d+\] emulation: \d+ bytes for session ([0-9a-f]{36}) taken on bus slot (\d+): (its own|routed to its owner)/g;
    for (const m of rd.log().matchAll(re)) {
      if (!taken.has(m[1])) taken.set(m[1], []);
      taken.get(m[1]).push([Number(m[2]), m[3]]);
    }
    const owner = (session) => parseInt(session.slice(0, 4), 16);
    assert.strictEqual(taken.size, clients.length, 'one session per client, no reconnect');
    const owners = new Set([...taken.keys()].map(owner));
    assert.ok(owners.size >= 3, `16 sessions on ${owners.size} of 4 workers`);
    for (const [session, posts] of taken) {
      assert.ok(posts.length >= 13, 'subscribe and 12 publishes');
      for (const [slot, how] of posts) assert.strictEqual(how, slot === owner(session) ? 'its own' : 'routed to its owner');
      const takers = new Set(posts.map(([slot]) => slot));
      assert.ok(takers.size >= 2, `one session's POSTs on several workers: ${[...takers]}`);
      assert.ok([...takers].some((slot) => slot !== owner(session)), 'some taken by a worker that is not the owner');
    }
  } finally {
    for (const c of clients) c.disconnect();
  }
}));
