'use strict';
// The server HTTP API of the real daemon (server-api.md §1): both endpoint
// forms and batch, the three ways to pass the key, both error modes,
// validation errors, the result shapes of publish, broadcast, channels and
// info, the legacy command stream, routes that follow handler_prefix and
// disabled, and a publication reaching a WebSocket subscriber byte for
// byte.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Rotord, request, rawExchange } = require('./lib/rotord.js');

const KEY = 'test-api-key';

let rd;

before(async () => {
  rd = await new Rotord({
    client: { insecure: true },
    channel: {
      namespaces: [
        { name: 'chat', presence: true, history_size: 10, history_ttl: '60s' },
      ],
    },
  }, { workers: 2 }).start();
});

after(async () => {
  if (rd) await rd.stop();
});

// POST `path` with `body` (object: JSON-encoded; string: as is) and the key
// in X-API-Key unless `headers` says otherwise.
function post(path, body, headers = { 'X-API-Key': KEY }, port = rd.port) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return request(port, {
    method: 'POST', path, body: text,
    headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers },
  });
}

function json(r) {
  assert.strictEqual(r.status, 200, `status 200, got ${r.status}: ${r.body}`);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  return JSON.parse(r.body);
}

test('info lists this node', async () => {
  const res = json(await post('/api/info', {}));
  assert.ok(Array.isArray(res.result.nodes) && res.result.nodes.length === 1, JSON.stringify(res));
  const n = res.result.nodes[0];
  assert.match(n.uid, /^[0-9a-f-]{36}$/);
  for (const k of ['name', 'version']) assert.strictEqual(typeof n[k], 'string', k);
  for (const k of ['num_clients', 'num_users', 'num_channels', 'num_subs']) {
    assert.strictEqual(typeof n[k], 'number', `${k} is always present`);
  }
});

test('publish: {} without history, errors in the body', async () => {
  assert.deepStrictEqual(json(await post('/api/publish', { channel: 'news', data: { x: 1 } })), { result: {} });
  assert.deepStrictEqual(json(await post('/api/publish', { channel: 'nope:x', data: 1 })),
    { error: { code: 102, message: 'unknown channel' } });
  assert.deepStrictEqual(json(await post('/api/publish', { channel: 'news' })),
    { error: { code: 107, message: 'bad request' } });
  assert.deepStrictEqual(json(await post('/api/publish', { data: 1 })),
    { error: { code: 107, message: 'bad request' } });
  assert.deepStrictEqual(json(await post('/api/publish', { channel: 'news', b64data: 'aGk=' })), { result: {} });
  assert.deepStrictEqual(json(await post('/api/publish', { channel: 'news', b64data: '%%' })),
    { error: { code: 107, message: 'bad request' } });
  assert.deepStrictEqual(json(await post('/api/publish', { Channel: 'news', DATA: [1] })), { result: {} },
    'field names in any case');
});

test('broadcast answers per channel, in order', async () => {
  const res = json(await post('/api/broadcast', { channels: ['a', 'nope:x', '', 'b'], data: { v: 1 } }));
  assert.deepStrictEqual(res, {
    result: {
      responses: [
        { result: {} },
        { error: { code: 102, message: 'unknown channel' } },
        { error: { code: 107, message: 'bad request' } },
        { result: {} },
      ],
    },
  });
  assert.deepStrictEqual(json(await post('/api/broadcast', { channels: [], data: 1 })),
    { error: { code: 107, message: 'bad request' } });
});

test('channels: a map even when empty; a bad pattern is an internal error', async () => {
  const res = json(await post('/api/channels', { pattern: 'nothing-like-this-*' }));
  assert.deepStrictEqual(res, { result: { channels: {} } });
  assert.deepStrictEqual(json(await post('/api/channels', { pattern: '[x' })),
    { error: { code: 100, message: 'internal server error' } });
});

test('presence, history and history_remove work; rpc 104', async () => {
  assert.deepStrictEqual(json(await post('/api/presence', { channel: 'chat:x' })), { result: { presence: {} } });
  assert.deepStrictEqual(json(await post('/api/presence_stats', { channel: 'chat:x' })),
    { result: { num_clients: 0, num_users: 0 } });
  for (const m of ['presence', 'presence_stats', 'history', 'history_remove']) {
    assert.deepStrictEqual(json(await post(`/api/${m}`, { channel: 'nope:x' })),
      { error: { code: 102, message: 'unknown channel' } }, m);
  }
  const p = json(await post('/api/publish', '{"channel":"chat:h","data":{"n":1.10}}')).result;
  assert.strictEqual(p.offset, 1);
  assert.match(p.epoch, /^[A-Za-z]{8}$/);
  const h = await post('/api/history', { channel: 'chat:h', limit: -1 });
  assert.strictEqual(h.body, `{"result":{"publications":[{"data":{"n":1.10},"offset":1}],"epoch":"${p.epoch}","offset":1}}`);
  assert.deepStrictEqual(json(await post('/api/history_remove', { channel: 'chat:h' })), { result: {} });
  assert.deepStrictEqual(json(await post('/api/history', { channel: 'chat:h', limit: -1 })),
    { result: { publications: [], epoch: p.epoch, offset: 1 } }, 'history_remove keeps the position');
  assert.deepStrictEqual(json(await post('/api/rpc', { method: 'x' })),
    { error: { code: 104, message: 'not found' } });
});

test('server-side subscribe, unsubscribe, disconnect and refresh answer {}', async () => {
  assert.deepStrictEqual(json(await post('/api/subscribe', { user: '42', channel: 'chat:x' })), { result: {} });
  assert.deepStrictEqual(json(await post('/api/unsubscribe', { user: '42', channel: 'chat:x' })), { result: {} });
  assert.deepStrictEqual(json(await post('/api/disconnect', { user: '42' })), { result: {} });
  assert.deepStrictEqual(json(await post('/api/refresh', { user: '42', expire_at: 1 })), { result: {} });
  assert.deepStrictEqual(json(await post('/api/subscribe', { user: '42', channel: 'nope:x' })),
    { error: { code: 102, message: 'unknown channel' } });
});

test('the key: X-API-Key, Authorization: apikey, ?api_key=; else 401 with no body', async () => {
  let r = await post('/api/info', {}, {});
  assert.strictEqual(r.status, 401);
  assert.strictEqual(r.body, '');
  r = await post('/api/info', {}, { 'X-API-Key': 'wrong' });
  assert.strictEqual(r.status, 401);
  r = await post('/api/info', {}, { Authorization: `apikey ${KEY}` });
  assert.strictEqual(r.status, 200);
  r = await post('/api/info', {}, { Authorization: `ApiKey ${KEY}` });
  assert.strictEqual(r.status, 200, 'scheme in any case');
  r = await post('/api/info', {}, { Authorization: `Bearer ${KEY}` });
  assert.strictEqual(r.status, 401);
  r = await post(`/api/info?api_key=${KEY}`, {}, {});
  assert.strictEqual(r.status, 200);
  r = await post('/api/info?api_key=nope', {}, {});
  assert.strictEqual(r.status, 401);
  r = await post('/api', { method: 'info' }, {});
  assert.strictEqual(r.status, 401, 'the legacy endpoint needs the key too');
});

test('POST only: other methods get 405 with no body', async () => {
  for (const method of ['GET', 'PUT', 'DELETE']) {
    const r = await request(rd.port, { method, path: '/api/info', headers: { 'X-API-Key': KEY } });
    assert.strictEqual(r.status, 405, method);
    assert.strictEqual(r.body, '', method);
  }
});

test('bad JSON is 400 Bad Request in plain text; an unknown method path is 404', async () => {
  let r = await post('/api/publish', '{"channel":');
  assert.strictEqual(r.status, 400);
  assert.strictEqual(r.body, 'Bad Request\n');
  assert.match(r.headers['content-type'], /^text\/plain/);
  r = await post('/api/publish', '{"channel":"news","data":1,"skip_history":"no"}');
  assert.strictEqual(r.status, 400, 'a field of the wrong type');
  r = await post('/api/publish', '');
  assert.strictEqual(r.status, 400, 'an empty body');
  r = await post('/api/nosuchmethod', {});
  assert.strictEqual(r.status, 404);
});

test('transport error mode by header: HTTP status and the bare error', async () => {
  const hdr = { 'X-API-Key': KEY, 'X-Centrifugo-Error-Mode': 'transport' };
  let r = await post('/api/publish', { channel: 'nope:x', data: 1 }, hdr);
  assert.strictEqual(r.status, 404);
  assert.deepStrictEqual(JSON.parse(r.body), { code: 102, message: 'unknown channel' });
  r = await post('/api/publish', { channel: 'news' }, hdr);
  assert.strictEqual(r.status, 400);
  assert.deepStrictEqual(JSON.parse(r.body), { code: 107, message: 'bad request' });
  r = await post('/api/presence', { channel: 'news' }, hdr);
  assert.strictEqual(r.status, 400, '108 is 400');
  r = await post('/api/rpc', { method: 'm' }, hdr);
  assert.strictEqual(r.status, 404, '104 is 404');
  r = await post('/api/publish', { channel: 'news', data: 1 }, hdr);
  assert.deepStrictEqual(json(r), { result: {} }, 'success is unchanged');
  r = await post('/api/batch', { commands: [{ publish: { channel: 'nope:x', data: 1 } }] }, hdr);
  assert.deepStrictEqual(json(r), { replies: [{ error: { code: 102, message: 'unknown channel' } }] },
    'not applied to batch');
});

test('batch: replies in order, named after the method, no result wrapper', async () => {
  const res = json(await post('/api/batch', {
    commands: [
      { publish: { channel: 'news', data: { a: 1 } } },
      { broadcast: { channels: ['x', 'y'], data: 2 } },
      { publish: { channel: 'nope:x', data: 1 } },
      {},
      { rpc: { method: 'x' } },
    ],
    parallel: true,
  }));
  assert.deepStrictEqual(res, {
    replies: [
      { publish: {} },
      { broadcast: { responses: [{ result: {} }, { result: {} }] } },
      { error: { code: 102, message: 'unknown channel' } },
      { error: { code: 104, message: 'not found' } },
      { error: { code: 104, message: 'not found' } },
    ],
  });
  const r = await post('/api/batch', '{"commands":[{"publish":{"channel":5}}]}');
  assert.strictEqual(r.status, 400);
});

test('legacy endpoint: several commands in one body, replies joined by newlines', async () => {
  const body = [
    '{"method":"publish","params":{"channel":"news","data":{"z":1}},"id":1}',
    '{"method":"INFO","id":2}',
    '{"method":1,"params":{"channels":["a"],"data":1}}',
    '{"method":99,"id":4}',
    '{"method":"publish","params":{"channel":"nope:x","data":1},"id":5}',
    '{"method":"publish","params":"x","id":6}',
  ].join('\n');
  const r = await post('/api', body);
  assert.strictEqual(r.status, 200, r.body);
  const lines = r.body.split('\n').map((l) => JSON.parse(l));
  assert.strictEqual(lines.length, 6);
  assert.deepStrictEqual(lines[0], { id: 1, result: {} });
  assert.strictEqual(lines[1].id, 2);
  assert.strictEqual(lines[1].result.nodes.length, 1);
  assert.deepStrictEqual(lines[2], { result: { responses: [{ result: {} }] } }, 'id 0 is not echoed');
  assert.deepStrictEqual(lines[3], { id: 4, error: { code: 104, message: 'not found' } });
  assert.deepStrictEqual(lines[4], { id: 5, error: { code: 102, message: 'unknown channel' } });
  assert.deepStrictEqual(lines[5], { id: 6, error: { code: 107, message: 'bad request' } });
  let bad = await post('/api', '{"method":"info"}\n{"method":');
  assert.strictEqual(bad.status, 400, 'an undecodable stream');
  bad = await post('/api', '');
  assert.strictEqual(bad.status, 400, 'an empty body');
});

test('a publication reaches a WebSocket subscriber byte for byte', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${rd.port}/connection/websocket`);
  const frames = [];
  const waiters = [];
  ws.on('message', (d) => {
    frames.push(d.toString());
    while (waiters.length) waiters.shift()();
  });
  const until = (pred, ms = 5000) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out; frames: ${frames.join(' | ')}`)), ms);
    const check = () => {
      const hit = frames.find(pred);
      if (hit) { clearTimeout(t); resolve(hit); } else waiters.push(check);
    };
    check();
  });
  try {
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"bytes"}}');
    await until((f) => f.includes('"id":2'));
    const payload = '{"x":1.10,"s":"\\u00e9","n":[1e2, 0.50]}';
    const r = await post('/api/publish', `{"channel":"bytes","data":${payload}}`);
    assert.deepStrictEqual(json(r), { result: {} });
    const push = await until((f) => f.includes('"pub"'));
    assert.ok(push.includes(`"data":${payload}`), push);
  } finally {
    ws.terminate();
  }
});

test('handler_prefix moves the routes; error_mode transport in the config; disabled removes them', async () => {
  const other = await new Rotord({
    http_api: { handler_prefix: '/v1/api/', error_mode: 'transport' },
  }, { workers: 1 }).start();
  try {
    let r = await post('/v1/api/publish', { channel: 'nope:x', data: 1 }, { 'X-API-Key': KEY }, other.port);
    assert.strictEqual(r.status, 404);
    assert.deepStrictEqual(JSON.parse(r.body), { code: 102, message: 'unknown channel' });
    r = await post('/v1/api', { method: 'info' }, { 'X-API-Key': KEY }, other.port);
    assert.strictEqual(r.status, 200, 'legacy at the prefix');
    r = await post('/api/info', {}, { 'X-API-Key': KEY }, other.port);
    assert.strictEqual(r.status, 404, 'nothing at the default prefix');
  } finally {
    await other.stop();
  }
  const off = await new Rotord({ http_api: { disabled: true } }, { workers: 1 }).start();
  try {
    const r = await post('/api/info', {}, { 'X-API-Key': KEY }, off.port);
    assert.strictEqual(r.status, 404);
  } finally {
    await off.stop();
  }
});

test('keep-alive: many API calls on one connection', async () => {
  const one = '{"channel":"news","data":1}';
  const req = `POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
    `Content-Length: ${one.length}\r\n\r\n${one}`;
  const text = await rawExchange(rd.port, req.repeat(20) +
    `POST /api/info HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}`);
  assert.strictEqual((text.match(/HTTP\/1\.1 200 /g) || []).length, 21, text.slice(0, 500));
  assert.strictEqual((text.match(/\{"result":\{\}\}/g) || []).length, 20);
});
