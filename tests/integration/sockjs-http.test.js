'use strict';
// SockJS on the wire: raw HTTP against the real daemon with 4 workers,
// every request on a fresh TCP connection (so one session's requests land
// on different workers and are handed to the owner), responses read byte
// for byte and streams chunk by chunk (sockjs.md §1-§7, §9-§10). The
// endpoint's pages and headers (greeting, /info and its entropy, the
// iframe page with ETag and 304, CORS with and without Origin, caching, no
// cookie), every bad input (404 paths, 405 with Allow and nothing else,
// 413, the 500s of payloads and callbacks, 404 for sends to unknown
// sessions), sessions across workers, one receiver at a time (2010), the
// 128 KiB response limit, the disconnect delay, aborted receivers (1002),
// close frames from the server API for every later receiver, HTTP/1.0
// framing, one publication in every transport's framing, a slow session
// (3008) and the connection limit (503).

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Rotord, waitFor, sleep, hs256, apiPost } = require('./lib/rotord.js');
const { open, fetch1, writeRequest, sessionUrl, frameMessages } = require('./lib/sockjs.js');

const P = '/connection/sockjs';
const ORIGIN = 'http://ok.example';
const SCRIPT = '/static/sockjs-1.6.1.min.js';
const NS = { name: 'sj', presence: true, allow_subscribe_for_client: true, allow_presence_for_subscriber: true };
const CONFIG = {
  sockjs: { enabled: true, url: SCRIPT },
  client: { allowed_origins: [ORIGIN] },
  websocket: { message_size_limit: 8192 },
  channel: { namespaces: [NS] },
  log: { level: 'debug' },
};
const NO_CACHE = 'no-store, no-cache, no-transform, must-revalidate, max-age=0';
const TEXT = 'text/plain; charset=UTF-8';
const JS = 'application/javascript; charset=UTF-8';

const token = (sub, claims = {}) => hs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600, ...claims });

let rd;
before(async () => { rd = await new Rotord(CONFIG, { workers: 4 }).start(); });
after(async () => { await rd.stop(); });

async function apiOk(d, method, body) {
  const r = await apiPost(d.port, `/api/${method}`, body);
  assert.strictEqual(r.status, 200, `${method}: ${r.status} ${r.body}`);
  return JSON.parse(r.body).result;
}

// Sends client-protocol COMMANDS (objects) to session URL as one SockJS
// message (newline-joined, as centrifuge-js batches them).
async function send(d, url, commands, headers = {}) {
  const text = commands.map((c) => JSON.stringify(c)).join('\n');
  return fetch1(d.port, 'POST', `${url}/xhr_send`, { body: JSON.stringify([text]), headers });
}

// The replies in one SockJS frame line: Centrifugo sends one message per
// flush, the replies joined by '\n'.
const replies = (line) => frameMessages(line).flatMap((m) => m.split('\n')).map((s) => JSON.parse(s));

// Opens a session by polling, connects USER and subscribes to CHANNELS;
// resolves the session URL once the replies came.
async function connected(d, user, channels = [], url = sessionUrl(P)) {
  assert.strictEqual((await fetch1(d.port, 'POST', `${url}/xhr`)).body, 'o\n');
  const cmds = [{ id: 1, connect: { token: token(user) } }, ...channels.map((ch, i) => ({ id: 2 + i, subscribe: { channel: ch } }))];
  assert.strictEqual((await send(d, url, cmds)).status, 204);
  const r = await fetch1(d.port, 'POST', `${url}/xhr`);
  const got = replies(r.body.trimEnd());
  assert.ok(got[0].connect && got[0].connect.client, `connected: ${r.body}`);
  assert.deepStrictEqual(got.slice(1).map((x) => x.id), channels.map((_, i) => 2 + i), r.body);
  return url;
}

// ---- pages ----------------------------------------------------------------------------------------

test('greeting, /info with fresh entropy and CORS, the iframe page with its ETag and 304, no cookie', async () => {
  for (const path of [P, `${P}/`]) {
    const r = await fetch1(rd.port, 'GET', path);
    assert.strictEqual(r.status, 200);
    assert.strictEqual(r.headers['content-type'], TEXT);
    assert.strictEqual(r.body, 'Welcome to SockJS!\n');
    assert.ok(!('set-cookie' in r.headers));
  }
  const i1 = await fetch1(rd.port, 'GET', `${P}/info`, { headers: { Origin: ORIGIN } });
  assert.strictEqual(i1.status, 200);
  assert.strictEqual(i1.headers['content-type'], 'application/json; charset=UTF-8');
  assert.strictEqual(i1.headers['cache-control'], NO_CACHE);
  assert.ok(!('expires' in i1.headers) && !('last-modified' in i1.headers) && !('set-cookie' in i1.headers));
  assert.strictEqual(i1.headers['access-control-allow-origin'], ORIGIN);
  assert.strictEqual(i1.headers['access-control-allow-credentials'], 'true');
  const j1 = JSON.parse(i1.body);
  assert.deepStrictEqual(Object.keys(j1), ['websocket', 'origins', 'cookie_needed', 'entropy']);
  assert.deepStrictEqual([j1.websocket, j1.origins, j1.cookie_needed], [true, ['*:*'], false]);
  const i2 = await fetch1(rd.port, 'GET', `${P}/info`);
  assert.strictEqual(i2.headers['access-control-allow-origin'], '*');
  assert.ok(!('access-control-allow-credentials' in i2.headers));
  const e = [j1.entropy, JSON.parse(i2.body).entropy];
  for (const x of e) assert.ok(Number.isInteger(x) && x >= 0 && x < 2 ** 32, `entropy ${x}`);
  assert.notStrictEqual(e[0], e[1], 'entropy differs per request');
  // An Origin that client.allowed_origins refuses gets no CORS headers.
  const i3 = await fetch1(rd.port, 'GET', `${P}/info`, { headers: { Origin: 'http://evil.example' } });
  assert.strictEqual(i3.status, 200);
  assert.ok(!('access-control-allow-origin' in i3.headers));
  const o = await fetch1(rd.port, 'OPTIONS', `${P}/info`, { headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'GET' } });
  assert.strictEqual(o.status, 204);
  assert.strictEqual(o.body, '');
  assert.match(o.headers['cache-control'], /public/);
  assert.match(o.headers['cache-control'], /max-age=31536000/);
  assert.ok(Date.parse(o.headers.expires) > Date.now() + 364 * 86400e3, o.headers.expires);
  assert.strictEqual(o.headers['access-control-max-age'], '31536000');
  assert.match(o.headers['access-control-allow-methods'], /GET/);
  assert.match(o.headers['access-control-allow-methods'], /OPTIONS/);
  assert.strictEqual(o.headers['access-control-allow-origin'], ORIGIN);

  const f1 = await fetch1(rd.port, 'GET', `${P}/iframe.html`);
  assert.strictEqual(f1.status, 200);
  assert.strictEqual(f1.headers['content-type'], 'text/html; charset=UTF-8');
  assert.match(f1.headers['cache-control'], /public, max-age=31536000/);
  assert.ok(f1.headers.expires);
  assert.match(f1.headers.etag, /^"[0-9a-f]{32}"$/);
  assert.ok(!('last-modified' in f1.headers) && !('set-cookie' in f1.headers));
  assert.ok(f1.body.includes(`<script src="${SCRIPT}"></script>`), 'sockjs.url in the page');
  assert.ok(f1.body.includes('SockJS.bootstrap_iframe();'));
  const f2 = await fetch1(rd.port, 'GET', `${P}/iframe-1.6.1.html?t=123`);
  assert.strictEqual(f2.headers.etag, f1.headers.etag);
  assert.strictEqual(f2.body, f1.body);
  const nm = await fetch1(rd.port, 'GET', `${P}/iframe.html`, { headers: { 'If-None-Match': f1.headers.etag } });
  assert.strictEqual(nm.status, 304);
  assert.ok(!('content-type' in nm.headers));
  assert.strictEqual(nm.body, '');
  const other = await fetch1(rd.port, 'GET', `${P}/iframe.html`, { headers: { 'If-None-Match': '"x"' } });
  assert.strictEqual(other.status, 200);
});

// ---- bad input -----------------------------------------------------------------------------------------

test('unknown paths are 404; a known path with a wrong method is 405 with Allow, no Content-Type, empty body', async () => {
  const notFound = ['x', '/a', '/a.html', '//', '///', '/a/a', '/a/a/', '/a/', '///xhr', '/a./a/xhr', '/a/a./xhr',
    '/././xhr', '//xhr', '////xhr', '/iframe.htm', '/iframe', '/IFRAME.HTML', '/iframe.HTML', '/iframe-/.html',
    '/websocket', `/0/${'s'.repeat(200)}/xhr`, '/0/0/nope'];
  for (const s of notFound) {
    for (const m of ['GET', 'POST']) {
      const r = await fetch1(rd.port, m, `${P}${s}`);
      assert.strictEqual(r.status, 404, `${m} ${s}`);
    }
  }
  const wrong = [
    ['POST', '/0/0/websocket', 'GET'], ['PUT', '/info', 'GET, OPTIONS'], ['POST', '/iframe.html', 'GET'],
    ['DELETE', '', 'GET'], ['GET', '/0/0/xhr', 'POST, OPTIONS'], ['GET', '/0/0/xhr_send', 'POST, OPTIONS'],
    ['GET', '/0/0/xhr_streaming', 'POST, OPTIONS'], ['POST', '/0/0/eventsource', 'GET'],
    ['POST', '/0/0/htmlfile', 'GET'], ['POST', '/0/0/jsonp', 'GET, OPTIONS'], ['GET', '/0/0/jsonp_send', 'POST'],
  ];
  for (const [m, s, allow] of wrong) {
    const r = await fetch1(rd.port, m, `${P}${s}`, { headers: { Upgrade: 'WebSocket', Connection: 'Upgrade' } });
    assert.strictEqual(r.status, 405, `${m} ${s}`);
    assert.strictEqual(r.headers.allow, allow, `${m} ${s}`);
    assert.ok(!('content-type' in r.headers), `${m} ${s}: no Content-Type`);
    assert.strictEqual(r.headers['content-length'], '0');
    assert.strictEqual(r.body, '');
  }
  // GET websocket without an upgrade: 400.
  assert.strictEqual((await fetch1(rd.port, 'GET', `${P}/0/0/websocket`)).status, 400);
});

test('sends: 404 for unknown sessions, 500 Payload expected / Broken JSON encoding, 413 over the limit; callbacks', async () => {
  for (const s of ['/xhr_send', '/jsonp_send']) {
    const r = await fetch1(rd.port, 'POST', `${sessionUrl(P)}${s}`, { body: '["x"]' });
    assert.strictEqual(r.status, 404, s);
  }
  const url = sessionUrl(P);
  assert.strictEqual((await fetch1(rd.port, 'POST', `${url}/xhr`)).body, 'o\n');
  const cases = [
    ['xhr_send', '', 'Payload expected.'], ['xhr_send', '["x', 'Broken JSON encoding.'],
    ['xhr_send', '{"a":1}', 'Payload expected.'], ['xhr_send', '[1]', 'Payload expected.'],
    ['jsonp_send', 'p=p', 'Payload expected.', 'application/x-www-form-urlencoded'],
    ['jsonp_send', 'd=', 'Payload expected.', 'application/x-www-form-urlencoded'],
    ['jsonp_send', 'd=%5B%22x', 'Broken JSON encoding.', 'application/x-www-form-urlencoded'],
    ['jsonp_send', '', 'Payload expected.', 'text/plain'],
  ];
  for (const [t, body, phrase, ct] of cases) {
    const r = await fetch1(rd.port, 'POST', `${url}/${t}`, { body, headers: ct ? { 'Content-Type': ct } : {} });
    assert.strictEqual(r.status, 500, `${t} ${JSON.stringify(body)}`);
    assert.ok(r.body.includes(phrase), `${t} ${JSON.stringify(body)}: ${r.body}`);
    assert.strictEqual(r.headers['content-type'], TEXT);
  }
  // Over websocket.message_size_limit (8192 here): 413.
  const big = await fetch1(rd.port, 'POST', `${url}/xhr_send`, { body: JSON.stringify(['x'.repeat(9000)]) });
  assert.strictEqual(big.status, 413);
  for (const t of ['htmlfile', 'jsonp']) {
    const r = await fetch1(rd.port, 'GET', `${url}/${t}`);
    assert.strictEqual(r.status, 500, t);
    assert.ok(r.body.includes('"callback" parameter required'), r.body);
    for (const cb of ['%20', '*', 'abc(', 'abc%28', 'x'.repeat(33)]) {
      const b = await fetch1(rd.port, 'GET', `${url}/${t}?c=${cb}`);
      assert.strictEqual(b.status, 500, `${t} ${cb}`);
      assert.ok(b.body.includes('invalid "callback" parameter'), b.body);
    }
  }
  // The session took no harm: an empty array is fine, then a real connect.
  assert.strictEqual((await fetch1(rd.port, 'POST', `${url}/xhr_send`, { body: '[]' })).status, 204);
  const ok = await send(rd, url, [{ id: 1, connect: { token: token('sends') } }]);
  assert.strictEqual(ok.status, 204);
  assert.strictEqual(ok.headers['content-type'], TEXT);
  assert.strictEqual(ok.headers['cache-control'], NO_CACHE);
  assert.strictEqual(ok.body, '');
  const r = await fetch1(rd.port, 'POST', `${url}/xhr`);
  assert.ok(replies(r.body.trimEnd())[0].connect.client);
  // jsonp_send: a form with d, or the array as text/plain; "ok".
  const j = await fetch1(rd.port, 'POST', `${url}/jsonp_send`, {
    body: `d=${encodeURIComponent(JSON.stringify([JSON.stringify({ id: 2, presence_stats: { channel: 'sj:x' } })]))}`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  assert.deepStrictEqual([j.status, j.body, j.headers['content-type']], [200, 'ok', TEXT]);
});

// ---- sessions ------------------------------------------------------------------------------------------

test('sessions across 4 workers: every request on a fresh connection reaches the owner (handed over)', { timeout: 20000 }, async () => {
  const handed = () => (rd.log().match(/handed to bus slot/g) || []).length;
  const before = handed();
  const urls = await Promise.all(Array.from({ length: 16 }, (_, i) => connected(rd, `x${i}`, ['sj:cross'])));
  // A poll held on one connection gets what the sends on others cause.
  const polls = await Promise.all(urls.map((u) => open(rd.port, 'POST', `${u}/xhr`)));
  await apiOk(rd, 'publish', { channel: 'sj:cross', data: { hello: 'all' } });
  for (const p of polls) {
    const got = replies((await p.body(3000)).trimEnd());
    assert.deepStrictEqual(got, [{ push: { channel: 'sj:cross', pub: { data: { hello: 'all' } } } }]);
    p.close();
  }
  // A jsonp poll the same way: it waits until a send (on another
  // connection) makes a reply.
  const jp = await open(rd.port, 'GET', `${urls[1]}/jsonp?c=cb`);
  assert.strictEqual(jp.headers['content-type'], JS);
  assert.strictEqual(jp.headers['x-content-type-options'], 'nosniff');
  assert.strictEqual(jp.headers['cache-control'], NO_CACHE);
  await sleep(50);
  assert.strictEqual(jp.buf, '', 'the poll waits');
  assert.strictEqual((await send(rd, urls[1], [{ id: 9, presence_stats: { channel: 'sj:cross' } }])).status, 204);
  const jb = await jp.body();
  jp.close();
  const m = /^\/\*\*\/cb\((".*")\);\r\n$/s.exec(jb);
  assert.ok(m, jb);
  assert.deepStrictEqual(replies(JSON.parse(m[1])), [{ id: 9, presence_stats: { num_clients: 16, num_users: 16 } }]);
  // 16 sessions x 4 requests on fresh connections over 4 workers.
  assert.ok(handed() - before >= 16, `handoffs: ${handed() - before}`);
  assert.strictEqual((rd.log().match(/handed to bus slot/g) || []).length,
    (rd.log().match(/taken over with/g) || []).length, 'every handed connection taken over');
});

test('one receiver at a time (2010); a stream ends at 128 KiB and the session goes on', { timeout: 20000 }, async () => {
  const url = sessionUrl(P);
  const s1 = await open(rd.port, 'POST', `${url}/xhr_streaming`, { headers: { Origin: ORIGIN } });
  assert.strictEqual(s1.status, 200);
  assert.strictEqual(s1.headers['content-type'], JS);
  assert.strictEqual(s1.headers['cache-control'], NO_CACHE);
  assert.strictEqual(s1.headers['access-control-allow-origin'], ORIGIN);
  assert.strictEqual(s1.headers['transfer-encoding'], 'chunked');
  assert.strictEqual(await s1.chunk(), `${'h'.repeat(2048)}\n`);
  assert.strictEqual(await s1.chunk(), 'o\n');
  // A second streaming receiver: prelude, 2010, end; a poll: 2010.
  const s2 = await open(rd.port, 'POST', `${url}/xhr_streaming`);
  assert.strictEqual(s2.status, 200);
  assert.strictEqual((await s2.chunk()).length, 2049);
  assert.strictEqual(await s2.chunk(), 'c[2010,"Another connection still open"]\n');
  assert.strictEqual(await s2.chunk(), '');
  s2.close();
  const p = await fetch1(rd.port, 'POST', `${url}/xhr`);
  assert.deepStrictEqual([p.status, p.body], [200, 'c[2010,"Another connection still open"]\n']);
  // The first one is unaffected.
  assert.strictEqual((await send(rd, url, [{ id: 1, connect: { token: token('big') } }, { id: 2, subscribe: { channel: 'sj:big' } }])).status, 204);
  const rc = await s1.chunk();
  const r1 = replies(rc.trimEnd());
  assert.deepStrictEqual(r1.map((x) => x.id), [1, 2]);
  // 40 KB publications until the stream ends: past 128 KiB of frames
  // (the 2-byte 'o' counts), never before.
  const seen = [];
  for (let n = 1; n <= 6; n++) await apiOk(rd, 'publish', { channel: 'sj:big', data: { n, pad: 'p'.repeat(40000) } });
  // What the stream carried before it ended.
  let c;
  const sizes = [];
  while ((c = await s1.chunk()) !== '') {
    assert.ok(c !== null, 'the stream ends with the last chunk, not a reset');
    sizes.push(Buffer.byteLength(c));
    for (const x of replies(c.trimEnd())) seen.push(x.push.pub.data.n);
  }
  s1.close();
  const total = 2 + Buffer.byteLength(rc) + sizes.reduce((a, b) => a + b, 0);
  assert.ok(total >= 128 * 1024, `ended after ${total} bytes`);
  assert.ok(total - sizes[sizes.length - 1] < 128 * 1024, `not ended before the limit (${total})`);
  // The next stream carries on with the rest.
  const s3 = await open(rd.port, 'POST', `${url}/xhr_streaming`);
  await s3.chunk(); // prelude
  while (seen.length < 6) {
    const x = await s3.chunk();
    for (const y of replies(x.trimEnd())) seen.push(y.push.pub.data.n);
  }
  s3.close();
  assert.deepStrictEqual(seen, [1, 2, 3, 4, 5, 6]);
});

test('no receiver for 5 s ends the session and its client; an aborted receiver closes it with 1002', { timeout: 20000 }, async () => {
  const url = await connected(rd, 'timeout', ['sj:pres']);
  const abort = await connected(rd, 'abort', ['sj:pres']);
  const users = async () => Object.values((await apiOk(rd, 'presence', { channel: 'sj:pres' })).presence).map((c) => c.user).sort();
  assert.deepStrictEqual(await users(), ['abort', 'timeout']);
  // abort: a stream attached, then the client goes away.
  const s = await open(rd.port, 'POST', `${abort}/xhr_streaming`);
  await s.chunk();
  await sleep(50);
  s.close();
  await waitFor(async () => (await users()).length === 1, 3000, 25, 'abort out of presence at once');
  const again = await fetch1(rd.port, 'POST', `${abort}/xhr`);
  assert.strictEqual(again.body, 'c[1002,"Connection interrupted"]\n');
  assert.strictEqual((await send(rd, abort, [{ id: 5, presence: { channel: 'sj:pres' } }])).status, 404);
  // timeout: still there before 5 s...
  await sleep(3000);
  assert.deepStrictEqual(await users(), ['timeout']);
  // ...gone after.
  await waitFor(async () => (await users()).length === 0, 4000, 100, 'the session to time out');
  assert.strictEqual((await send(rd, url, [{ id: 5, presence: { channel: 'sj:pres' } }])).status, 404);
  assert.strictEqual((await fetch1(rd.port, 'POST', `${url}/xhr`)).body, 'o\n', 'a new session under the old id');
});

test('a disconnect reaches a polling session as c[code,"reason"], and every later receiver gets it again', async () => {
  const url = await connected(rd, 'closer');
  const poll = await open(rd.port, 'POST', `${url}/xhr`);
  await apiOk(rd, 'disconnect', { user: 'closer', disconnect: { code: 4509, reason: 'custom' } });
  assert.strictEqual(await poll.body(), 'c[4509,"custom"]\n');
  poll.close();
  for (const t of ['xhr', 'xhr_streaming']) {
    const r = await open(rd.port, 'POST', `${url}/${t}`);
    if (t === 'xhr_streaming') await r.chunk();
    assert.strictEqual(t === 'xhr' ? await r.body() : await r.chunk(), 'c[4509,"custom"]\n', t);
    r.close();
  }
  assert.strictEqual((await send(rd, url, [{ id: 3, presence: { channel: 'sj:x' } }])).status, 404);
});

test('HTTP/1.0: fixed answers keep the connection on request; streams are not chunked and end with the connection', async () => {
  const g = await open(rd.port, 'GET', P, { version: '1.0', headers: { Connection: 'Keep-Alive' } });
  assert.strictEqual(g.headers['content-length'], '19');
  assert.strictEqual(g.headers.connection, 'keep-alive');
  assert.strictEqual(await g.body(), 'Welcome to SockJS!\n');
  writeRequest(g.sock, 'GET', `${P}/info`, { version: '1.0' });
  const again = await g.head();
  assert.strictEqual(again.status, 200);
  g.close();

  const url = sessionUrl(P);
  const s = await open(rd.port, 'POST', `${url}/xhr_streaming`, { version: '1.0' });
  assert.strictEqual(s.status, 200);
  assert.ok(!('transfer-encoding' in s.headers) && !('content-length' in s.headers));
  assert.strictEqual(await s.bytes(2049), `${'h'.repeat(2048)}\n`);
  assert.strictEqual(await s.bytes(2), 'o\n');
  assert.strictEqual((await send(rd, url, [{ id: 1, connect: { token: token('h10') } }])).status, 204);
  await s.until(() => (s.buf.endsWith('\n') ? true : undefined), 3000, 'the connect reply');
  s.buf = '';
  await apiOk(rd, 'disconnect', { user: 'h10', disconnect: { code: 4000, reason: 'bye' } });
  await s.closedWithin();
  assert.strictEqual(s.buf, 'c[4000,"bye"]\n');
  // A poll: the frame, then the close.
  const p = await fetch1(rd.port, 'POST', `${sessionUrl(P)}/xhr`, { version: '1.0' });
  assert.strictEqual(p.body, 'o\n');
});

test('CORS on session URLs: the allowed Origin with credentials, "*" without one, nothing for a refused one; preflights', async () => {
  const url = sessionUrl(P);
  const a = await fetch1(rd.port, 'POST', `${url}/xhr`, { headers: { Origin: ORIGIN } });
  assert.strictEqual(a.headers['access-control-allow-origin'], ORIGIN);
  assert.strictEqual(a.headers['access-control-allow-credentials'], 'true');
  assert.match(a.headers.vary, /Origin/);
  assert.ok(!('set-cookie' in a.headers));
  const b = await fetch1(rd.port, 'POST', `${url}/xhr_send`, { body: '[]', headers: { Origin: ORIGIN } });
  assert.deepStrictEqual([b.status, b.headers['access-control-allow-origin']], [204, ORIGIN]);
  const c = await fetch1(rd.port, 'POST', `${sessionUrl(P)}/xhr`);
  assert.strictEqual(c.headers['access-control-allow-origin'], '*');
  assert.ok(!('access-control-allow-credentials' in c.headers));
  const d = await fetch1(rd.port, 'POST', `${sessionUrl(P)}/xhr`, { headers: { Origin: 'null' } });
  assert.ok(!('access-control-allow-origin' in d.headers), 'Origin null is not in the allowed list');
  for (const t of ['xhr', 'xhr_send', 'xhr_streaming']) {
    const o = await fetch1(rd.port, 'OPTIONS', `${url}/${t}`, {
      headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'a, b' },
    });
    assert.strictEqual(o.status, 204, t);
    assert.strictEqual(o.headers['access-control-allow-origin'], ORIGIN);
    assert.strictEqual(o.headers['access-control-allow-headers'], 'a, b');
    assert.match(o.headers['access-control-allow-methods'], /POST/);
    assert.match(o.headers['access-control-allow-methods'], /OPTIONS/);
    assert.strictEqual(o.headers['access-control-max-age'], '31536000');
    assert.match(o.headers['cache-control'], /public, max-age=31536000/);
  }
  const e = await open(rd.port, 'GET', `${sessionUrl(P)}/eventsource`, { headers: { Origin: ORIGIN } });
  assert.strictEqual(e.headers['content-type'], 'text/event-stream');
  assert.strictEqual(e.headers['access-control-allow-origin'], ORIGIN);
  assert.strictEqual(await e.chunk(), '\r\n');
  assert.strictEqual(await e.chunk(), 'data: o\r\n\r\n');
  e.close();
});

// ---- one publication, every framing ----------------------------------------------------------------

// The frame in one chunk of transport T, unwrapped.
function unwrap(t, chunk) {
  let m;
  switch (t) {
  case 'xhr': case 'xhr_streaming':
    assert.ok(chunk.endsWith('\n'), chunk);
    return chunk.slice(0, -1);
  case 'eventsource':
    m = /^data: (.*)\r\n\r\n$/s.exec(chunk);
    assert.ok(m, chunk);
    return decodeURIComponent(m[1]);
  case 'htmlfile':
    m = /^<script>\np\((".*")\);\n<\/script>\r\n$/s.exec(chunk);
    assert.ok(m, chunk);
    assert.doesNotMatch(m[1], /[<>&]/, 'htmlfile escapes < > &');
    return JSON.parse(m[1]);
  case 'jsonp':
    m = /^\/\*\*\/cb\((".*")\);\r\n$/s.exec(chunk);
    assert.ok(m, chunk);
    return JSON.parse(m[1]);
  default:
    throw new Error(t);
  }
}

test('one publication to sessions of every HTTP transport: each gets it in its own framing, byte-exact', { timeout: 20000 }, async () => {
  const data = { text: 'quote " backslash \\ </script> & 100% \u2028 \u200c é 😀 \n\r\t' };
  const kinds = ['xhr_streaming', 'eventsource', 'htmlfile', 'xhr', 'jsonp', 'xhr', 'xhr_streaming', 'eventsource'];
  const sessions = [];
  for (const [i, t] of kinds.entries()) {
    const url = await connected(rd, `all${i}`, ['sj:all']);
    const path = { xhr: 'xhr', xhr_streaming: 'xhr_streaming', eventsource: 'eventsource', htmlfile: 'htmlfile?c=cb', jsonp: 'jsonp?c=cb' }[t];
    const method = t.startsWith('xhr') ? 'POST' : 'GET';
    const r = await open(rd.port, method, `${url}/${path}`);
    if (t === 'xhr_streaming' || t === 'eventsource' || t === 'htmlfile') await r.chunk(); // prelude
    sessions.push({ t, r });
  }
  const body = JSON.stringify({ channel: 'sj:all', data });
  const raw = body.slice(body.indexOf('"data":') + 7, -1);
  await apiOk(rd, 'publish', JSON.parse(body));
  for (const { t, r } of sessions) {
    const chunk = t === 'xhr' || t === 'jsonp' ? await r.body() : await r.chunk();
    const frame = unwrap(t, chunk);
    const msgs = frameMessages(frame);
    assert.strictEqual(msgs.length, 1, t);
    assert.strictEqual(msgs[0], `{"push":{"channel":"sj:all","pub":{"data":${raw}}}}`, `${t}: the push byte for byte`);
    assert.deepStrictEqual(JSON.parse(msgs[0]).push.pub.data, data, t);
    r.close();
  }
});

// ---- WebSocket ------------------------------------------------------------------------------------------

test('the SockJS WebSocket: o, replies joined in one a[...] message, c[code,"reason"] then the close; broken JSON closes', async () => {
  const open1 = (url) => new Promise((res, rej) => {
    const ws = new WebSocket(url);
    const msgs = [];
    ws.on('message', (m) => msgs.push(m.toString()));
    ws.on('open', () => res({ ws, msgs }));
    ws.on('error', rej);
  });
  const closed = (ws) => new Promise((res) => ws.on('close', (code, reason) => res([code, reason.toString()])));
  const url = `ws://127.0.0.1:${rd.port}${sessionUrl(P)}/websocket`;
  const a = await open1(url);
  const aClosed = closed(a.ws);
  await waitFor(() => a.msgs.length === 1, 3000, 10, 'o');
  assert.strictEqual(a.msgs[0], 'o');
  a.ws.send(JSON.stringify([[{ id: 1, connect: { token: token('wsraw') } }, { id: 2, subscribe: { channel: 'sj:ws' } }]
    .map((c) => JSON.stringify(c)).join('\n')]));
  await waitFor(() => a.msgs.length === 2, 3000, 10, 'the replies');
  assert.deepStrictEqual(replies(a.msgs[1]).map((x) => x.id), [1, 2], 'one SockJS message with both replies');
  a.ws.send('');
  a.ws.send('[]');
  await apiOk(rd, 'disconnect', { user: 'wsraw', disconnect: { code: 4509, reason: 'custom' } });
  assert.deepStrictEqual(await aClosed, [4509, '']);
  assert.strictEqual(a.msgs[a.msgs.length - 1], 'c[4509,"custom"]');
  // The same id again is another session; broken JSON ends it.
  const b = await open1(url);
  const bClosed = closed(b.ws);
  await waitFor(() => b.msgs.length === 1, 3000, 10, 'o');
  b.ws.send('["a');
  assert.strictEqual((await bClosed)[0], 3000);
  // Raw /websocket is not served on /connection/sockjs.
  assert.strictEqual((await fetch1(rd.port, 'GET', `${P}/websocket`, {
    headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'x3JJHMbDL1EzLkh9GBhXDw==' },
  })).status, 404);
});

test('sockjs.heartbeat_delay: off by default; when set, h frames keep receivers alive', { timeout: 20000 }, async () => {
  // Off: nothing comes on a stream for a while (the main daemon).
  const quiet = await open(rd.port, 'POST', `${sessionUrl(P)}/xhr_streaming`);
  await quiet.chunk();
  assert.strictEqual(await quiet.chunk(), 'o\n');
  await sleep(1300);
  assert.strictEqual(quiet.buf, '', 'no heartbeat by default');
  quiet.close();
  const d = await new Rotord({ ...CONFIG, sockjs: { ...CONFIG.sockjs, heartbeat_delay: '500ms' } }, { workers: 2 }).start();
  try {
    const url = sessionUrl(P);
    const s = await open(d.port, 'POST', `${url}/xhr_streaming`);
    await s.chunk();
    assert.strictEqual(await s.chunk(), 'o\n');
    assert.strictEqual(await s.chunk(2000), 'h\n');
    assert.strictEqual(await s.chunk(2000), 'h\n');
    s.close();
    const p = sessionUrl(P);
    assert.strictEqual((await fetch1(d.port, 'POST', `${p}/xhr`)).body, 'o\n');
    assert.strictEqual((await fetch1(d.port, 'POST', `${p}/xhr`, { timeout: 2000 })).body, 'h\n', 'a poll ends with h');
  } finally {
    await d.stop();
  }
});

// ---- limits --------------------------------------------------------------------------------------------

test('client.queue_max_size: a session that buffers more is closed with 3008 "slow"', { timeout: 20000 }, async () => {
  const d = await new Rotord({ ...CONFIG, client: { ...CONFIG.client, queue_max_size: 65536 } }, { workers: 4 }).start();
  try {
    const url = await connected(d, 'slow', ['sj:slow']);
    // One publication over the limit: however the poll races the delivery,
    // the session cannot hold it (several smaller ones could be drained by
    // a poll that comes between them).
    await apiOk(d, 'publish', { channel: 'sj:slow', data: { pad: 'x'.repeat(70000) } });
    const r = await fetch1(d.port, 'POST', `${url}/xhr`);
    assert.strictEqual(r.body, 'c[3008,"slow"]\n');
    assert.strictEqual((await send(d, url, [{ id: 9, presence: { channel: 'sj:slow' } }])).status, 404);
  } finally {
    await d.stop();
  }
});

test('client.connection_limit: a new session is refused with 503 once the node has that many clients', { timeout: 20000 }, async () => {
  const d = await new Rotord({ ...CONFIG, client: { ...CONFIG.client, connection_limit: 1 } }, { workers: 4 }).start();
  try {
    await connected(d, 'first');
    await waitFor(async () => (await fetch1(d.port, 'POST', `${sessionUrl(P)}/xhr`)).status === 503, 3000, 50,
      'the limit to apply on every worker');
    const r = await fetch1(d.port, 'POST', `${sessionUrl(P)}/xhr_streaming`);
    assert.strictEqual(r.status, 503);
  } finally {
    await d.stop();
  }
});
