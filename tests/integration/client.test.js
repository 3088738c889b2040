'use strict';
// Client sessions through the real daemon (4 workers): connection tokens
// (HMAC, RSA, ECDSA, claims, expiry and refresh), server-side subscriptions,
// subscription tokens and sub_refresh, every channel permission rule,
// protocol violations and their close codes, and server API actions reaching
// clients on whichever worker holds them (client-protocol.md §3.3, §5, §7;
// server-api.md §1.4, §2, §3).
//
// The official SDK (centrifuge) is used where it can express a flow; raw
// `ws` frames where it would hide the wire: there the exact reply text or
// close code and reason is asserted.

const { test } = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const { Rotord, sleep, waitFor, apiPost } = require('./lib/rotord.js');
const { once } = require('./lib/transports.js');

const SECRET = 'test-secret';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const now = () => Math.floor(Date.now() / 1000);

// ---- tokens ----------------------------------------------------------------

const b64u = (b) => Buffer.from(b).toString('base64url');

// A JWT over CLAIMS (an object, or a string used as the payload text byte
// for byte). alg HS*: KEY is the secret; RS*/ES*: a private key; "none" and
// other names: an empty signature. HEADER replaces the default header (its
// alg chooses the signature unless ALG is given).
function jwt(claims, { alg, key = SECRET, header } = {}) {
  alg = alg || (header && header.alg) || 'HS256';
  const h = b64u(JSON.stringify(header || { alg, typ: 'JWT' }));
  const p = b64u(typeof claims === 'string' ? claims : JSON.stringify(claims));
  const data = Buffer.from(`${h}.${p}`);
  let sig = Buffer.alloc(0);
  const md = `sha${alg.slice(2)}`;
  if (alg.startsWith('HS')) sig = crypto.createHmac(md, key).update(data).digest();
  else if (alg.startsWith('RS')) sig = crypto.sign(md, data, key);
  else if (alg.startsWith('ES')) sig = crypto.sign(md, data, { key, dsaEncoding: 'ieee-p1363' });
  return `${data}.${b64u(sig)}`;
}

function keyPair(type, opts) {
  return crypto.generateKeyPairSync(type, {
    ...opts,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

// ---- a daemon per test, and what to clean up ------------------------------------

// Starts rotord with CONFIG and 4 workers, runs fn(x), and always stops
// the SDK clients, raw sockets and the daemon.
async function withDaemon(config, fn) {
  const rd = await new Rotord(config, { workers: 4 }).start();
  const raws = [];
  const sdks = [];
  const url = `ws://127.0.0.1:${rd.port}/connection/websocket`;
  const x = {
    rd,
    url,
    async raw(opts = {}) {
      const r = await Raw.open(`${url}${opts.query || ''}`, opts.protocols);
      raws.push(r);
      return r;
    },
    // A raw client that connected with TOKEN (undefined: no token).
    async connected(token, extra = {}) {
      const r = await x.raw();
      r.result = await r.connect(token, extra);
      assert.match(r.result.client, UUID, `connected: ${JSON.stringify(r.result)}`);
      r.client = r.result.client;
      return r;
    },
    sdk(opts = {}) {
      const c = new Centrifuge(url, {
        websocket: WebSocket, minReconnectDelay: 50, maxReconnectDelay: 300, timeout: 3000, ...opts,
      });
      c.on('error', () => {});
      sdks.push(c);
      return c;
    },
    api: (method, body) => api(rd, method, body),
  };
  try {
    await fn(x);
  } finally {
    for (const c of sdks) { try { c.disconnect(); } catch (_) { /* gone */ } }
    for (const r of raws) r.ws.terminate();
    await rd.stop();
  }
}

async function api(rd, method, body) {
  const r = await apiPost(rd.port, `/api/${method}`, body);
  assert.strictEqual(r.status, 200, `${method}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

async function apiOk(rd, method, body) {
  assert.deepStrictEqual(await api(rd, method, body), { result: {} }, method);
}

// ---- raw client ------------------------------------------------------------------

class Raw {
  static open(url, protocols) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      ws.once('open', () => resolve(new Raw(ws)));
      ws.once('error', reject);
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.msgs = [];
    this.wake = null;
    this.nextId = 1;
    this.closeInfo = null;
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.closedAt = Date.now();
      resolve(this.closeInfo);
      this._notify();
    }));
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        this.msgs.push({ binary: data });
      } else {
        for (const line of data.toString().split('\n')) {
          if (line === '') continue;
          if (line === '{}') { // a server ping: answer it
            if (ws.readyState === WebSocket.OPEN) ws.send('{}');
            continue;
          }
          this.msgs.push({ text: line, json: JSON.parse(line) });
        }
      }
      this._notify();
    });
  }

  _notify() {
    if (this.wake) { const w = this.wake; this.wake = null; w(); }
  }

  send(x) {
    this.ws.send(typeof x === 'string' || Buffer.isBuffer(x) ? x : JSON.stringify(x));
  }

  // The first queued message PRED accepts (removed from the queue).
  async take(pred, ms = 3000, what = 'message') {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.msgs.findIndex(pred);
      if (i >= 0) return this.msgs.splice(i, 1)[0];
      const left = end - Date.now();
      if (left <= 0 || this.closeInfo) {
        throw new Error(`no ${what}; queued ${JSON.stringify(this.msgs.map((m) => m.text))}` +
          (this.closeInfo ? `; closed ${JSON.stringify(this.closeInfo)}` : ''));
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
    }
  }

  reply(id, ms) { return this.take((m) => m.json && m.json.id === id, ms, `reply ${id}`); }

  push(pred = () => true, ms) {
    return this.take((m) => m.json && m.json.push && pred(m.json.push), ms, 'push');
  }

  // Sends {"id":N,"<method>":params}; resolves with the reply message.
  async call(method, params) {
    const id = this.nextId++;
    this.send(JSON.stringify({ id, [method]: params }));
    return this.reply(id);
  }

  // A call whose reply must be exactly {"id":N,<field>:<value>} (EXPECT is
  // {field: value}), byte for byte.
  async expect(method, params, expect, what = `${method} ${JSON.stringify(params)}`) {
    const id = this.nextId;
    const m = await this.call(method, params);
    assert.strictEqual(m.text, JSON.stringify({ id, ...expect }), what);
    return m;
  }

  expectError(method, params, code, what) {
    return this.expect(method, params, { error: { code, message: MESSAGES[code] } }, what);
  }

  async connect(token, extra = {}) {
    const m = await this.call('connect', token === undefined ? { ...extra } : { token, ...extra });
    assert.ok(m.json.connect, `connect failed: ${m.text}`);
    return m.json.connect;
  }

  // The close the server sends: {code, reason}.
  async closedWith(ms = 3000) {
    let t;
    const timeout = new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`not closed after ${ms} ms`)), ms);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  async expectClose(code, reason, ms) {
    assert.deepStrictEqual(await this.closedWith(ms), { code, reason });
  }
}

const MESSAGES = {
  100: 'internal server error', 102: 'unknown channel', 103: 'permission denied',
  105: 'already subscribed', 106: 'limit exceeded', 107: 'bad request', 108: 'not available',
  109: 'token expired', 110: 'expired',
};

// Opens a raw client, connects with TOKEN and expects the connection to be
// closed with CODE and REASON (no reply).
async function connectClosed(x, token, code, reason, what) {
  const r = await x.raw();
  r.send({ id: 1, connect: token === undefined ? {} : { token } });
  const got = await r.closedWith().catch((e) => {
    throw new Error(`${what}: ${e.message}; got ${JSON.stringify(r.msgs.map((m) => m.text))}`);
  });
  assert.deepStrictEqual(got, { code, reason }, what);
  assert.deepStrictEqual(r.msgs, [], `${what}: no reply before the close`);
}

// ---- 1. connection tokens ------------------------------------------------------

test('HS256/384/512 tokens: the user, and info byte for byte in a client publication', { timeout: 20000 },
  () => withDaemon({
    channel: { without_namespace: { allow_subscribe_for_client: true, allow_publish_for_client: true } },
  }, async (x) => {
    const sub = await x.connected(jwt({ sub: 'bob' }, { alg: 'HS512' }));
    assert.deepStrictEqual(Object.keys(sub.result).sort(), ['client', 'pong', 'ping', 'version'].sort(),
      `a non-expiring token: no expires/ttl: ${JSON.stringify(sub.result)}`);
    assert.strictEqual(sub.result.ping, 25);
    assert.strictEqual(sub.result.pong, true);
    assert.strictEqual(typeof sub.result.version, 'string');
    await sub.expect('subscribe', { channel: 'news' }, { subscribe: {} });

    await x.connected(jwt({ sub: 'carol' }, { alg: 'HS384' }));

    // The payload text itself carries the info, with its odd spacing.
    const info = '{"name": "Alice",  "tags":["a", "b"],"n":1.50,"u":"\\u00e9"}';
    const c = x.sdk({ token: jwt(`{"sub":"alice","info":${info}}`) });
    c.connect();
    const ctx = await once(c, 'connected');
    assert.match(ctx.client, UUID);
    await c.publish('news', { text: 'hi' });
    const m = await sub.push((p) => p.pub);
    assert.strictEqual(m.text, `{"push":{"channel":"news","pub":{"data":{"text":"hi"},` +
      `"info":{"user":"alice","client":"${ctx.client}","conn_info":${info}}}}}`);

    // b64info wins over info (binary info to a JSON subscriber is not
    // valid JSON, so use base64 of JSON text).
    const c2 = x.sdk({ token: jwt({ sub: 'dan', info: { no: 1 }, b64info: Buffer.from('{"yes":2}').toString('base64') }) });
    c2.connect();
    const ctx2 = await once(c2, 'connected');
    await c2.publish('news', 1);
    const m2 = await sub.push((p) => p.pub);
    assert.strictEqual(m2.text,
      `{"push":{"channel":"news","pub":{"data":1,"info":{"user":"dan","client":"${ctx2.client}","conn_info":{"yes":2}}}}}`);
  }));

test('RS256 and ES256 with the configured public keys; HS256 keyed with the RSA PEM, alg none: 3500',
  { timeout: 20000 }, async () => {
    const rsa = keyPair('rsa', { modulusLength: 2048 });
    const ec = keyPair('ec', { namedCurve: 'P-256' });
    const otherRsa = keyPair('rsa', { modulusLength: 2048 });
    await withDaemon({
      client: { token: { hmac_secret_key: '', rsa_public_key: rsa.publicKey, ecdsa_public_key: ec.publicKey } },
    }, async (x) => {
      await x.connected(jwt({ sub: 'r' }, { alg: 'RS256', key: rsa.privateKey }));
      await x.connected(jwt({ sub: 'r' }, { alg: 'RS384', key: rsa.privateKey }));
      await x.connected(jwt({ sub: 'e' }, { alg: 'ES256', key: ec.privateKey }));
      const c = x.sdk({ token: jwt({ sub: 'e2' }, { alg: 'ES256', key: ec.privateKey }) });
      c.connect();
      await once(c, 'connected');

      const bad = [
        ['HS256 keyed with the RSA public PEM', jwt({ sub: 'x' }, { alg: 'HS256', key: rsa.publicKey })],
        ['HS256 keyed with the EC public PEM', jwt({ sub: 'x' }, { alg: 'HS256', key: ec.publicKey })],
        ['HS256 with no HMAC secret configured', jwt({ sub: 'x' }, { alg: 'HS256', key: SECRET })],
        ['alg none', jwt({ sub: 'x' }, { header: { alg: 'none', typ: 'JWT' } })],
        ['alg NONE', jwt({ sub: 'x' }, { header: { alg: 'NONE' } })],
        ['alg nOnE', jwt({ sub: 'x' }, { header: { alg: 'nOnE' } })],
        ['empty alg', jwt({ sub: 'x' }, { header: { alg: '' } })],
        ['RS256 by another key', jwt({ sub: 'x' }, { alg: 'RS256', key: otherRsa.privateKey })],
        ['ES256 signature under an RS256 header',
          (() => { const t = jwt({ sub: 'x' }, { alg: 'ES256', key: ec.privateKey }).split('.');
            return [b64u(JSON.stringify({ alg: 'RS256', typ: 'JWT' })), t[1], t[2]].join('.'); })()],
      ];
      await Promise.all(bad.map(([what, tok]) => connectClosed(x, tok, 3500, 'invalid token', what)));
      // Still serving.
      await x.connected(jwt({ sub: 'r' }, { alg: 'RS512', key: rsa.privateKey }));
    });
  });

test('HMAC tokens: bad signatures and claims are 3500, expiry is 109, typ at+jwt is accepted', { timeout: 20000 },
  () => withDaemon({}, async (x) => {
    const rsa = keyPair('rsa', { modulusLength: 2048 });
    const good = jwt({ sub: 'u' });
    const flipped = (() => {
      const sig = Buffer.from(good.split('.')[2], 'base64url');
      sig[5] ^= 1;
      return good.split('.').slice(0, 2).concat(b64u(sig)).join('.');
    })();
    const bad = [
      ['another secret', jwt({ sub: 'u' }, { key: 'other-secret' })],
      ['one flipped bit', flipped],
      ['truncated signature', good.slice(0, -4)],
      ['two parts', good.split('.').slice(0, 2).join('.')],
      ['four parts', `${good}.x`],
      ['RS256 with only HMAC configured', jwt({ sub: 'u' }, { alg: 'RS256', key: rsa.privateKey })],
      ['a channel claim', jwt({ sub: 'u', channel: 'news' })],
      ['exp as a string that is no number', jwt({ sub: 'u', exp: 'soon' })],
      ['exp as an object', jwt({ sub: 'u', exp: { t: 1 } })],
      ['sub as a number', jwt({ sub: 42 })],
      ['over 8 KiB', jwt({ sub: 'u', pad: 'x'.repeat(9000) })],
      ['duplicate alg in the header',
        `${b64u('{"alg":"HS256","alg":"none"}')}.${good.split('.')[1]}.${good.split('.')[2]}`],
    ];
    await Promise.all(bad.map(([what, tok]) => connectClosed(x, tok, 3500, 'invalid token', what)));

    const expired = [
      ['exp in the past', jwt({ sub: 'u', exp: now() - 10 })],
      ['exp as a float in the past', jwt({ sub: 'u', exp: 1.5e9 })],
      ['nbf in the future', jwt({ sub: 'u', nbf: now() + 100 })],
    ];
    for (const [what, tok] of expired) {
      const r = await x.raw();
      await r.expectError('connect', { token: tok }, 109, what);
      // The session is unusable now: any further command is a violation.
      r.send({ id: 2, subscribe: { channel: 'news' } });
      await r.expectClose(3501, 'bad request');
    }

    await x.connected(jwt({ sub: 'u' }, { header: { alg: 'HS256', typ: 'at+jwt' } }));
    await x.connected(jwt({ sub: 'u' }, { header: { alg: 'HS256' } }));
    await x.connected(jwt({ sub: 'u', exp: now() + 60, nbf: now() - 1, iat: now(), jti: 'j' }));
    await x.connected(jwt({ sub: 'u', channel: '' }), {}); // an empty channel claim is no channel claim
    // Go's json.Number takes a numeric string: so does rotor.
    const s = await x.connected(jwt({ sub: 'u', exp: String(now() + 100) }));
    assert.strictEqual(s.result.expires, true);
  }));

test('an expired connection token: the SDK gets a new one with getToken and connects', { timeout: 20000 },
  () => withDaemon({}, async (x) => {
    let calls = 0;
    const c = x.sdk({
      token: jwt({ sub: 'late', exp: now() - 5 }),
      getToken: async () => { calls++; return jwt({ sub: 'late', exp: now() + 600 }); },
    });
    c.connect();
    const ctx = await once(c, 'connected', 5000);
    assert.match(ctx.client, UUID);
    assert.strictEqual(calls, 1, 'one getToken after the 109');
  }));

test('audience and issuer: checked when configured', { timeout: 20000 },
  () => withDaemon({ client: { token: { audience: 'rotor-aud', issuer: 'rotor-iss' } } }, async (x) => {
    await x.connected(jwt({ sub: 'u', aud: 'rotor-aud', iss: 'rotor-iss' }));
    await x.connected(jwt({ sub: 'u', aud: ['other', 'rotor-aud'], iss: 'rotor-iss' }));
    const bad = [
      ['wrong aud', jwt({ sub: 'u', aud: 'other', iss: 'rotor-iss' })],
      ['aud array without it', jwt({ sub: 'u', aud: ['a', 'b'], iss: 'rotor-iss' })],
      ['no aud', jwt({ sub: 'u', iss: 'rotor-iss' })],
      ['wrong iss', jwt({ sub: 'u', aud: 'rotor-aud', iss: 'other' })],
      ['no iss', jwt({ sub: 'u', aud: 'rotor-aud' })],
    ];
    await Promise.all(bad.map(([what, tok]) => connectClosed(x, tok, 3500, 'invalid token', what)));
  }));

test('anonymous: no token is 3501 unless allowed; an empty sub is 3507 when anonymous tokens are disallowed',
  { timeout: 20000 }, async () => {
    await withDaemon({}, async (x) => {
      await connectClosed(x, undefined, 3501, 'bad request', 'no token, anonymous not allowed');
      await x.connected(jwt({}), {}); // an anonymous token is fine by default
      await x.connected(jwt({ sub: '' }));
    });
    await withDaemon({
      client: { allow_anonymous_connect_without_token: true, disallow_anonymous_connection_tokens: true },
    }, async (x) => {
      await x.connected(undefined);
      await connectClosed(x, jwt({}), 3507, 'permission denied', 'token without sub');
      await connectClosed(x, jwt({ sub: '' }), 3507, 'permission denied', 'token with an empty sub');
      await x.connected(jwt({ sub: 'u' }));
    });
  });

// ---- 2. expiring connections --------------------------------------------------------

test('an expiring connection: the SDK refreshes and survives; a raw client is closed with 3005', { timeout: 20000 },
  () => withDaemon({
    client: { expired_close_delay: '1s' },
    channel: { without_namespace: { allow_publish_for_client: true } },
  }, async (x) => {
    const exp = now() + 3;
    const started = Date.now();
    const lazy = await x.connected(jwt({ sub: 'lazy', exp }));
    assert.strictEqual(lazy.result.expires, true);
    assert.ok(lazy.result.ttl >= 2 && lazy.result.ttl <= 3, `ttl ${lazy.result.ttl}`);

    // Refresh on the wire.
    const r = await x.connected(jwt({ sub: 'r', exp }));
    const m = await r.call('refresh', { token: jwt({ sub: 'r', exp: now() + 60 }) });
    assert.match(m.text, /^\{"id":2,"refresh":\{"expires":true,"ttl":(59|60)\}\}$/);
    const never = await x.connected(jwt({ sub: 'n', exp }));
    await never.expect('refresh', { token: jwt({ sub: 'n' }) }, { refresh: {} }, 'a token without exp: no expiry');
    const stale = await x.connected(jwt({ sub: 's', exp }));
    stale.send({ id: 2, refresh: { token: jwt({ sub: 's', exp: now() - 1 }) } });
    await stale.expectClose(3005, 'connection expired');
    const other = await x.connected(jwt({ sub: 'o', exp }));
    other.send({ id: 2, refresh: { token: jwt({ sub: 'someone-else', exp: now() + 60 }) } });
    await other.expectClose(3500, 'invalid token');
    const forged = await x.connected(jwt({ sub: 'f', exp }));
    forged.send({ id: 2, refresh: { token: jwt({ sub: 'f', exp: now() + 60 }, { key: 'nope' }) } });
    await forged.expectClose(3500, 'invalid token');
    const empty = await x.connected(jwt({ sub: 'e', exp }));
    empty.send({ id: 2, refresh: { token: '' } });
    await empty.expectClose(3501, 'bad request');

    // The SDK refreshes when ttl runs out.
    let calls = 0;
    const c = x.sdk({
      token: jwt({ sub: 'sdk', exp }),
      getToken: async () => { calls++; return jwt({ sub: 'sdk', exp: now() + 60 }); },
    });
    let disconnected = null;
    c.on('disconnected', (ctx) => { disconnected = ctx; });
    c.connect();
    await once(c, 'connected');

    // The lazy one goes at exp + expired_close_delay.
    await lazy.expectClose(3005, 'connection expired', 8000);
    const after = lazy.closedAt - started;
    assert.ok(after >= 2900 && after < 5500, `closed ${after} ms after connect (exp in 3 s, delay 1 s)`);
    assert.ok((await r.call('publish', { channel: 'x', data: 1 })).json.publish, 'the refreshed raw client lives');
    await sleep(Math.max(0, (exp + 2) * 1000 - Date.now()));
    assert.ok(calls >= 1, 'getToken was called');
    assert.strictEqual(disconnected, null, `the SDK stayed connected: ${JSON.stringify(disconnected)}`);
    assert.strictEqual(c.state, 'connected');
    await c.publish('x', { still: 'here' });
  }));

// ---- 3. server-side subscriptions ------------------------------------------------------

test('server-side subscriptions from token channels and subs; unknown namespace 102; over the limit 3505',
  { timeout: 20000 }, () => withDaemon({
    client: { channel_limit: 3 },
    channel: {
      without_namespace: { allow_subscribe_for_client: true },
      namespaces: [{ name: 'chat', allow_publish_for_subscriber: true, allow_subscribe_for_client: true }],
    },
  }, async (x) => {
    const c = x.sdk({ token: jwt({ sub: 'ss', channels: ['news', 'chat:room'] }) });
    const subscribed = [];
    c.on('subscribed', (ctx) => subscribed.push(ctx.channel));
    const pubs = [];
    c.on('publication', (ctx) => pubs.push([ctx.channel, ctx.data]));
    c.connect();
    await once(c, 'connected');
    assert.deepStrictEqual(subscribed.sort(), ['chat:room', 'news']);
    await apiOk(x.rd, 'publish', { channel: 'news', data: { n: 1 } });
    await apiOk(x.rd, 'publish', { channel: 'chat:room', data: { n: 2 } });
    await waitFor(() => pubs.length === 2, 3000, 25, 'two publications');
    assert.deepStrictEqual(pubs.sort(), [['chat:room', { n: 2 }], ['news', { n: 1 }]]);

    // subs wins over channels; its info becomes chan_info, byte for byte.
    const vipInfo = '{"role": "vip",  "level":3}';
    const vip = await x.connected(jwt(`{"sub":"v","channels":["ignored"],` +
      `"subs":{"chat:vip":{"info":${vipInfo},"override":{"join_leave":{"value":false}}},"news":{}}}`));
    assert.deepStrictEqual(vip.result.subs, { 'chat:vip': {}, news: {} });
    const watcher = await x.connected(jwt({ sub: 'w', channels: ['chat:vip'] }));
    assert.deepStrictEqual(watcher.result.subs, { 'chat:vip': {} });
    await vip.expect('publish', { channel: 'chat:vip', data: { hi: 1 } }, { publish: {} },
      'a server-side subscriber may publish where allow_publish_for_subscriber');
    const m = await watcher.push((p) => p.pub);
    assert.strictEqual(m.text, `{"push":{"channel":"chat:vip","pub":{"data":{"hi":1},` +
      `"info":{"user":"v","client":"${vip.client}","chan_info":${vipInfo}}}}}`);
    await apiOk(x.rd, 'publish', { channel: 'chat:vip', data: 'api' });
    assert.strictEqual((await watcher.push((p) => p.pub)).text, '{"push":{"channel":"chat:vip","pub":{"data":"api"}}}',
      'no info on a server API publication');
    // Server-side channels count toward the limit of client subscribes.
    const full = await x.connected(jwt({ sub: 'f', channels: ['a', 'b', 'c'] }));
    assert.deepStrictEqual(full.result.subs, { a: {}, b: {}, c: {} });
    await full.expectError('subscribe', { channel: 'd' }, 106);
    await full.expectError('subscribe', { channel: 'a' }, 105, 'already subscribed server-side');

    const unknown = await x.raw();
    await unknown.expectError('connect', { token: jwt({ sub: 'u', channels: ['news', 'nope:x'] }) }, 102);
    const unknown2 = await x.raw();
    await unknown2.expectError('connect', { token: jwt({ sub: 'u', subs: { 'nope:x': {} } }) }, 102);
    await connectClosed(x, jwt({ sub: 'u', channels: ['a', 'b', 'c', 'd'] }), 3505, 'channel limit',
      'four server-side channels, limit 3');
  }));

// The error lines of a daemon's log ("... error [worker 1] ...").
function errorLines(rd) {
  return rd.log().split('\n').filter((l) => / error \[/.test(l));
}

test('a channel "" in a token\'s subs or channels is left out, as Centrifugo does; the connect goes on without it',
  { timeout: 20000 }, () => withDaemon({
    client: { channel_limit: 2 },
    // Positioned channels: a subscription to "" would ask its stream's top.
    channel: { without_namespace: { history_size: 10, history_ttl: '60s', force_positioning: true } },
  }, async (x) => {
    const s = await x.connected(jwt({ sub: 'e', subs: { '': {}, a: {}, b: {} } }));
    assert.deepStrictEqual(Object.keys(s.result.subs).sort(), ['a', 'b'],
      'subs: "" is not subscribed and does not count toward the limit of 2');
    const c = await x.connected(jwt({ sub: 'e', channels: ['', 'a'] }));
    assert.deepStrictEqual(Object.keys(c.result.subs), ['a'], 'channels: "" is not subscribed');
    assert.strictEqual((await api(x.rd, 'publish', { channel: 'a', data: { n: 1 } })).result.offset, 1);
    for (const r of [s, c]) {
      assert.strictEqual((await r.push((p) => p.pub)).json.push.channel, 'a');
    }
    assert.deepStrictEqual(errorLines(x.rd), [], 'nothing logged as an error');
  }));

// centrifuge's SubscribeOptions.Data: a token's subs[ch].data (or b64data)
// goes into that channel's result within the connect reply.
test('a token\'s subs[ch].data and b64data reach the client in the connect result', { timeout: 20000 },
  () => withDaemon({}, async (x) => {
    const s = await x.connected(jwt({ sub: 'd', subs: {
      a: { data: { x: 1 }, info: { i: 1 } }, b: { b64data: Buffer.from('{"b":2}').toString('base64') }, c: {},
    } }));
    assert.deepStrictEqual(s.result.subs, { a: { data: { x: 1 } }, b: { data: { b: 2 } }, c: {} });
  }));

// ---- 4. subscription tokens -------------------------------------------------------------

test('subscription tokens: $ needs one; valid, expired 109, invalid 103, mismatches 3500; sub_refresh',
  { timeout: 20000 }, () => withDaemon({
    channel: {
      without_namespace: { allow_subscribe_for_client: true },
      namespaces: [{ name: 'priv' }],
    },
  }, async (x) => {
    const r = await x.connected(jwt({ sub: 'u1' }));
    await r.expectError('subscribe', { channel: '$secret' }, 103, '$ without a token, even where clients may subscribe');
    await r.expectError('subscribe', { channel: 'priv:a' }, 103, 'no permission, no token');
    await r.expect('subscribe', { channel: '$secret', token: jwt({ sub: 'u1', channel: '$secret' }) }, { subscribe: {} });
    await r.expect('subscribe', { channel: 'priv:a', token: jwt({ sub: 'u1', channel: 'priv:a', data: { x: 1 } }) },
      { subscribe: { data: { x: 1 } } }, 'a token grants the subscription; its data comes back');
    const exp = now() + 100;
    const m = await r.call('subscribe', { channel: 'priv:e', token: jwt({ sub: 'u1', channel: 'priv:e', exp }) });
    assert.match(m.text, /^\{"id":\d+,"subscribe":\{"expires":true,"ttl":(99|100)\}\}$/);
    await r.expectError('subscribe', { channel: 'priv:x', token: jwt({ sub: 'u1', channel: 'priv:x', exp: now() - 1 }) }, 109);
    await r.expectError('subscribe', { channel: 'priv:x', token: jwt({ sub: 'u1', channel: 'priv:x' }, { key: 'bad' }) }, 103);
    await r.expectError('subscribe', { channel: 'nope:x', token: jwt({ sub: 'u1', channel: 'nope:x' }) }, 102);
    await r.expectError('subscribe', { channel: 'priv:y', token: jwt({ sub: 'u1' }) }, 103, 'a token without channel');

    // sub_refresh
    const m2 = await r.call('sub_refresh', { channel: 'priv:e', token: jwt({ sub: 'u1', channel: 'priv:e', exp: now() + 50 }) });
    assert.match(m2.text, /^\{"id":\d+,"sub_refresh":\{"expires":true,"ttl":(49|50)\}\}$/);
    await r.expectError('sub_refresh', { channel: 'priv:e', token: '' }, 107);
    await r.expectError('sub_refresh', { channel: 'priv:zz', token: jwt({ sub: 'u1', channel: 'priv:zz' }) }, 103,
      'not subscribed');
    await r.expectError('sub_refresh', { channel: 'priv:e', token: jwt({ sub: 'u1', channel: 'priv:e', exp: now() - 1 }) },
      110);
    // Still subscribed after all that.
    await apiOk(x.rd, 'publish', { channel: 'priv:e', data: 5 });
    assert.strictEqual((await r.push((p) => p.pub)).text, '{"push":{"channel":"priv:e","pub":{"data":5}}}');

    const wrongChannel = await x.connected(jwt({ sub: 'u1' }));
    wrongChannel.send({ id: 2, subscribe: { channel: 'priv:a', token: jwt({ sub: 'u1', channel: 'priv:b' }) } });
    await wrongChannel.expectClose(3500, 'invalid token');
    const wrongUser = await x.connected(jwt({ sub: 'u1' }));
    wrongUser.send({ id: 2, subscribe: { channel: 'priv:a', token: jwt({ sub: 'u2', channel: 'priv:a' }) } });
    await wrongUser.expectClose(3500, 'invalid token');
    const wrongClient = await x.connected(jwt({ sub: 'u1' }));
    wrongClient.send({ id: 2, subscribe: { channel: 'priv:a',
      token: jwt({ sub: 'u1', channel: 'priv:a', client: crypto.randomUUID() }) } });
    await wrongClient.expectClose(3500, 'invalid token');
    const rightClient = await x.connected(jwt({ sub: 'u1' }));
    await rightClient.expect('subscribe', { channel: 'priv:a',
      token: jwt({ sub: 'u1', channel: 'priv:a', client: rightClient.client }) }, { subscribe: {} });
    const badRefresh = await x.connected(jwt({ sub: 'u1' }));
    await badRefresh.call('subscribe', { channel: 'priv:e', token: jwt({ sub: 'u1', channel: 'priv:e', exp }) });
    badRefresh.send({ id: 9, sub_refresh: { channel: 'priv:e', token: jwt({ sub: 'u1', channel: 'priv:e' }, { key: 'bad' }) } });
    await badRefresh.expectClose(3500, 'invalid token');
    const anon = await x.connected(jwt({}));
    await anon.expect('subscribe', { channel: '$a', token: jwt({ sub: '', channel: '$a' }) }, { subscribe: {} },
      'an anonymous connection with a token for the anonymous user');
  }));

test('subscription expiry: the SDK refreshes with getToken and stays; without sub_refresh, unsubscribe 2501',
  { timeout: 20000 }, () => withDaemon({
    client: { expired_sub_close_delay: '1s' },
    channel: { namespaces: [{ name: 'priv' }] },
  }, async (x) => {
    const exp = now() + 3;
    const started = Date.now();
    const lazy = await x.connected(jwt({ sub: 'u' }));
    await lazy.call('subscribe', { channel: 'priv:a', token: jwt({ sub: 'u', channel: 'priv:a', exp }) });

    let calls = 0;
    const c = x.sdk({ token: jwt({ sub: 'u' }) });
    const s = c.newSubscription('priv:a', {
      token: jwt({ sub: 'u', channel: 'priv:a', exp }),
      getToken: async (ctx) => { calls++; assert.strictEqual(ctx.channel, 'priv:a'); return jwt({ sub: 'u', channel: 'priv:a', exp: now() + 60 }); },
    });
    let unsubscribed = null;
    s.on('unsubscribed', (ctx) => { unsubscribed = ctx; });
    const pubs = [];
    s.on('publication', (ctx) => pubs.push(ctx.data));
    s.subscribe();
    c.connect();
    await once(s, 'subscribed');

    const m = await lazy.push((p) => p.unsubscribe, 8000);
    assert.strictEqual(m.text, '{"push":{"channel":"priv:a","unsubscribe":{"code":2501,"reason":"subscription expired"}}}');
    const after = Date.now() - started;
    assert.ok(after >= 2900 && after < 6000, `unsubscribed ${after} ms after subscribe (exp in 3 s, delay 1 s)`);
    await sleep(Math.max(0, (exp + 2) * 1000 - Date.now()));
    assert.ok(calls >= 1, 'getToken was called for the subscription');
    assert.strictEqual(unsubscribed, null, `the SDK subscription stayed: ${JSON.stringify(unsubscribed)}`);
    assert.strictEqual(s.state, 'subscribed');
    await apiOk(x.rd, 'publish', { channel: 'priv:a', data: 'alive' });
    await waitFor(() => pubs.includes('alive'), 3000, 25, 'a publication to the refreshed subscription');
    assert.strictEqual(lazy.msgs.filter((mm) => mm.json.push && mm.json.push.pub).length, 0,
      'the expired subscription gets nothing');
  }));

test('client.subscription_token.enabled: subscription tokens use their own secret', { timeout: 20000 },
  () => withDaemon({
    client: { subscription_token: { enabled: true, hmac_secret_key: 'sub-secret' } },
  }, async (x) => {
    const r = await x.connected(jwt({ sub: 'u' }));
    await r.expect('subscribe', { channel: '$a', token: jwt({ sub: 'u', channel: '$a' }, { key: 'sub-secret' }) },
      { subscribe: {} });
    await r.expectError('subscribe', { channel: '$b', token: jwt({ sub: 'u', channel: '$b' }) }, 103,
      'signed with the connection secret');
    await connectClosed(x, jwt({ sub: 'u' }, { key: 'sub-secret' }), 3500, 'invalid token',
      'a connection token signed with the subscription secret');
  }));

// ---- 5. channel permissions ---------------------------------------------------------------

test('every channel permission rule, end to end', { timeout: 20000 }, () => withDaemon({
  client: { allow_anonymous_connect_without_token: true, channel_limit: 6 },
  channel: {
    max_length: 32,
    namespaces: [
      { name: 'sub', allow_subscribe_for_client: true },
      { name: 'suba', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true },
      { name: 'pub', allow_publish_for_client: true },
      { name: 'puba', allow_publish_for_client: true, allow_publish_for_anonymous: true },
      { name: 'pubs', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
        allow_publish_for_subscriber: true },
      { name: 'pubsa', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
        allow_publish_for_subscriber: true, allow_publish_for_anonymous: true },
      { name: 're', allow_subscribe_for_client: true, allow_publish_for_client: true, channel_regex: '^[a-z]+$' },
      { name: 'chat', allow_user_limited_channels: true },
      { name: 'dm', allow_user_limited_channels: true, allow_subscribe_for_client: true },
      { name: 'pres', allow_subscribe_for_client: true, presence: true, allow_presence_for_client: true,
        history_size: 10, history_ttl: '60s', allow_history_for_client: true },
    ],
  },
}, async (x) => {
  const u42 = await x.connected(jwt({ sub: '42' }));
  const u7 = await x.connected(jwt({ sub: '7' }));
  const anon = await x.connected(undefined);
  const ok = { subscribe: {} };
  const pubOk = { publish: {} };

  // without_namespace allows nothing here.
  await u42.expectError('subscribe', { channel: 'news' }, 103);
  await u42.expectError('publish', { channel: 'news', data: 1 }, 103);
  // allow_subscribe_for_client / _anonymous
  await u42.expect('subscribe', { channel: 'sub:a' }, ok);
  await anon.expectError('subscribe', { channel: 'sub:a' }, 103);
  await anon.expect('subscribe', { channel: 'suba:a' }, ok);
  await u42.expect('subscribe', { channel: 'suba:a' }, ok);
  await u42.expectError('subscribe', { channel: 'pub:a' }, 103, 'publish rights do not grant subscribe');
  // allow_publish_for_client / _anonymous
  await u42.expect('publish', { channel: 'pub:a', data: 1 }, pubOk);
  await anon.expectError('publish', { channel: 'pub:a', data: 1 }, 103);
  await anon.expect('publish', { channel: 'puba:a', data: 1 }, pubOk);
  await u42.expectError('publish', { channel: 'sub:a', data: 1 }, 103, 'subscribed is not enough without _subscriber');
  // allow_publish_for_subscriber (+ _anonymous)
  await u7.expectError('publish', { channel: 'pubs:a', data: 1 }, 103, 'not subscribed');
  await u7.expect('subscribe', { channel: 'pubs:a' }, ok);
  await u7.expect('publish', { channel: 'pubs:a', data: { from: 7 } }, pubOk);
  assert.match((await u7.push((p) => p.pub)).text, /^\{"push":\{"channel":"pubs:a","pub":\{"data":\{"from":7\},"info":\{"user":"7","client":"[0-9a-f-]{36}"\}\}\}\}$/,
    'the publisher gets its own publication, with its info');
  await anon.expect('subscribe', { channel: 'pubs:a' }, ok);
  await anon.expectError('publish', { channel: 'pubs:a', data: 1 }, 103, 'anonymous subscriber without _anonymous');
  await anon.expect('subscribe', { channel: 'pubsa:a' }, ok);
  await anon.expect('publish', { channel: 'pubsa:a', data: 1 }, pubOk);
  await anon.expect('unsubscribe', { channel: 'pubsa:a' }, { unsubscribe: {} });
  await anon.expectError('publish', { channel: 'pubsa:a', data: 1 }, 103, 'no longer a subscriber');
  // presence and history: off → 108; on → who is there / the stream's position.
  for (const method of ['presence', 'presence_stats', 'history']) {
    await u42.expectError(method, { channel: 'sub:a' }, 108, `${method} disabled`);
    await u42.expectError(method, { channel: 'nope:a' }, 102, `${method} unknown namespace`);
  }
  await u42.expect('presence', { channel: 'pres:a' }, { presence: { presence: {} } }, 'presence: nobody there');
  await u42.expect('presence_stats', { channel: 'pres:a' }, { presence_stats: { num_clients: 0, num_users: 0 } });
  const hist = await u42.call('history', { channel: 'pres:a', limit: 10 });
  assert.deepStrictEqual(Object.keys(hist.json.history), ['publications', 'epoch', 'offset'], hist.text);
  assert.deepStrictEqual(hist.json.history.publications, []);
  assert.match(hist.json.history.epoch, /^[A-Za-z]{8}$/);
  assert.strictEqual(hist.json.history.offset, 0);
  // unknown namespace
  await u42.expectError('subscribe', { channel: 'nope:a' }, 102);
  await u42.expectError('publish', { channel: 'nope:a', data: 1 }, 102);
  // channel_regex and ASCII
  await u42.expect('subscribe', { channel: 're:abc' }, ok);
  await u42.expectError('subscribe', { channel: 're:ABC' }, 107);
  await u42.expectError('publish', { channel: 're:a1', data: 1 }, 107);
  await u42.expect('publish', { channel: 're:ab', data: 1 }, pubOk);
  await u42.expectError('subscribe', { channel: 'sub:héllo' }, 107);
  await u42.expectError('publish', { channel: 'pub:é', data: 1 }, 107);
  // channel.max_length
  await u42.expectError('subscribe', { channel: `sub:${'x'.repeat(29)}` }, 107, '33 bytes');
  await u7.expect('subscribe', { channel: `sub:${'x'.repeat(28)}` }, ok, '32 bytes');
  // already subscribed
  await u42.expectError('subscribe', { channel: 'sub:a' }, 105);
  // user-limited channels
  await u42.expect('subscribe', { channel: 'chat:dialog#42,43' }, ok);
  await u7.expectError('subscribe', { channel: 'chat:dialog#42,43' }, 103);
  await anon.expectError('subscribe', { channel: 'chat:dialog#42,43' }, 103);
  await u7.expect('subscribe', { channel: 'chat:room#7' }, ok, 'no allow_subscribe_for_client needed');
  await u7.expectError('subscribe', { channel: 'dm:x#42' }, 103, 'allow_subscribe_for_client does not open it');
  await u42.expect('subscribe', { channel: 'dm:x#42' }, ok);
  // rpc, tags filter, subscription types
  await u42.expectError('rpc', { method: 'm', data: {} }, 108);
  await u42.expectError('subscribe', { channel: 'sub:tf', tf: { key: 'a', cmp: 'eq', val: '1' } }, 107);
  await u42.expectError('subscribe', { channel: 'sub:map', type: 1 }, 108);
  // client.channel_limit (6): u42 holds sub:a, suba:a, re:abc, chat:dialog#42,43, dm:x#42
  await u42.expect('subscribe', { channel: 'sub:6' }, ok);
  await u42.expectError('subscribe', { channel: 'sub:7' }, 106);
  await u42.expectError('subscribe', { channel: 'sub:6' }, 105, 'already subscribed comes before the limit');
  await u42.expect('unsubscribe', { channel: 'sub:6' }, { unsubscribe: {} });
  await u42.expect('subscribe', { channel: 'sub:7' }, ok, 'room again after an unsubscribe');
  // send: no handler
  u42.send('{"send":{"data":{"x":1}}}');
  await u42.expectClose(3508, 'not available');
  // The others are unaffected.
  await u7.expect('subscribe', { channel: 'sub:after' }, ok);
}));

test('client.insecure: anyone connects, subscribes and publishes; names and features still checked',
  { timeout: 20000 }, () => withDaemon({
    client: { insecure: true },
    channel: { namespaces: [{ name: 'ns' }] },
  }, async (x) => {
    const anon = await x.connected(undefined);
    await anon.expect('subscribe', { channel: 'news' }, { subscribe: {} });
    await anon.expect('subscribe', { channel: 'ns:a' }, { subscribe: {} });
    await anon.expect('publish', { channel: 'ns:a', data: 1 }, { publish: {} });
    await anon.expectError('subscribe', { channel: 'nope:a' }, 102);
    await anon.expectError('subscribe', { channel: 'ns:é' }, 107);
    await anon.expectError('presence', { channel: 'ns:a' }, 108);
    await anon.expectError('history', { channel: 'ns:a' }, 108);
    // The connection expiry of a token is ignored.
    const t = await x.connected(jwt({ sub: 'u', exp: now() + 100 }));
    assert.strictEqual(t.result.expires, undefined, JSON.stringify(t.result));
  }));

// ---- 6. protocol violations -----------------------------------------------------------------

test('protocol violations close with their codes, and the daemon serves on', { timeout: 20000 },
  () => withDaemon({
    client: { allow_anonymous_connect_without_token: true },
    channel: { without_namespace: { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true } },
    websocket: { message_size_limit: 1024 },
  }, async (x) => {
    const cases = [
      ['a command before connect', false, ['{"id":1,"subscribe":{"channel":"a"}}'], 3501, 'bad request'],
      ['a second connect', true, ['{"id":2,"connect":{}}'], 3501, 'bad request'],
      ['id > 0 and no method', true, ['{"id":2}'], 3501, 'bad request'],
      ['an unknown method only', true, ['{"id":2,"nonsense":{}}'], 3501, 'bad request'],
      ['the ping command', true, ['{"id":2,"ping":{}}'], 3501, 'bad request'],
      ['garbage JSON before connect', false, ['{not json'], 3501, 'bad request'],
      ['garbage JSON after connect', true, ['{"id":2,"subscribe":'], 3501, 'bad request'],
      ['a pong without a ping', true, ['{}'], 3501, 'bad request'],
      ['an empty subscribe channel', true, ['{"id":2,"subscribe":{"channel":""}}'], 3501, 'bad request'],
      ['a subscribe without channel', true, ['{"id":2,"subscribe":{}}'], 3501, 'bad request'],
      ['an unknown delta type', true, ['{"id":2,"subscribe":{"channel":"a","delta":"xdelta"}}'], 3501, 'bad request'],
      ['an empty unsubscribe channel', true, ['{"id":2,"unsubscribe":{"channel":""}}'], 3501, 'bad request'],
      ['an empty publish channel', true, ['{"id":2,"publish":{"channel":"","data":1}}'], 3501, 'bad request'],
      ['a subscribe with id 0', true, ['{"subscribe":{"channel":"a"}}'], 3501, 'bad request'],
      ['invalid UTF-8 in a text frame', true, [Buffer.from('{"id":2,"subscribe":{"channel":"\xff"}}', 'latin1')],
        1007],
      ['a message over message_size_limit', true,
        [`{"id":2,"publish":{"channel":"a","data":"${'x'.repeat(2000)}"}}`], 1009],
    ];
    await Promise.all(cases.map(async ([what, connect, frames, code, reason]) => {
      const r = await x.raw();
      if (connect) await r.connect();
      for (const f of frames) r.ws.send(f, { binary: false });
      const got = await r.closedWith();
      // Transport-level closes carry whatever reason the WebSocket layer gives.
      assert.deepStrictEqual(code < 3000 ? got.code : got, code < 3000 ? code : { code, reason }, what);
    }));

    // A whole batch in one frame: the reply to the first command is sent
    // before the violation closes the connection.
    const b = await x.raw();
    b.send('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}\n{"id":3}');
    await b.expectClose(3501, 'bad request');
    assert.deepStrictEqual(b.msgs.map((m) => m.json.id), [1, 2]);

    // protobuf: garbage, and a bad length prefix.
    for (const bytes of [[0x05, 0xff, 0xff, 0xff, 0xff, 0xff], [0x7f, 0x08], [0x02, 0x0a, 0x05]]) {
      const p = await x.raw({ protocols: 'centrifuge-protobuf' });
      assert.strictEqual(p.ws.protocol, 'centrifuge-protobuf');
      p.ws.send(Buffer.from([0x04, 0x08, 0x01, 0x22, 0x00]));
      const m = await p.take(() => true);
      assert.ok(m.binary, 'a binary connect reply');
      p.ws.send(Buffer.from(bytes));
      await p.expectClose(3501, 'bad request');
    }

    // The daemon still serves, with all its workers.
    assert.strictEqual(x.rd.workers().length, 4);
    const ok = await Promise.all(Array.from({ length: 8 }, () => x.connected(undefined)));
    for (const r of ok) await r.expect('subscribe', { channel: 'fine' }, { subscribe: {} });
  }));

// ---- 7. server API actions ----------------------------------------------------------------------

// The number of sockets each worker of RD holds.
function socketsPerWorker(rd) {
  return rd.workers().map((pid) => {
    try {
      return fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
        try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:'); } catch (_) { return false; }
      }).length;
    } catch (_) {
      return 0;
    }
  });
}

// N raw clients of USER (token), spread over the workers by the kernel.
function many(x, user, n, claims = {}) {
  return Promise.all(Array.from({ length: n }, () => x.connected(jwt({ sub: user, ...claims }))));
}

test('/api/disconnect reaches every connection of a user on any worker: custom code, default 3503, whitelist',
  { timeout: 20000 }, () => withDaemon({}, async (x) => {
    const before = socketsPerWorker(x.rd);
    const victims = await many(x, 'v', 8);
    const bystanders = await many(x, 'b', 4);
    const gained = socketsPerWorker(x.rd).filter((n, i) => n > before[i]).length;
    assert.ok(gained >= 2, `the clients are on ${gained} workers: ${before} -> ${socketsPerWorker(x.rd)}`);
    await apiOk(x.rd, 'disconnect', { user: 'v', disconnect: { code: 4501, reason: 'go away' } });
    for (const r of victims) await r.expectClose(4501, 'go away');
    for (const r of bystanders) assert.strictEqual(r.closeInfo, null);
    // An empty reason travels the bus as an absent one (its pointer NULL:
    // copied with memcpy it was undefined behaviour in every worker).
    const quiet = await many(x, 'q', 4);
    await apiOk(x.rd, 'disconnect', { user: 'q', disconnect: { code: 4503, reason: '' } });
    for (const r of quiet) await r.expectClose(4503, '');

    // The SDK sees the code and reason (4501 is terminal: no reconnect).
    const c = x.sdk({ token: jwt({ sub: 's' }) });
    c.connect();
    await once(c, 'connected');
    const d = once(c, 'disconnected');
    await apiOk(x.rd, 'disconnect', { user: 's', disconnect: { code: 4502, reason: 'custom' } });
    const ctx = await d;
    assert.deepStrictEqual([ctx.code, ctx.reason], [4502, 'custom']);
    assert.strictEqual(c.state, 'disconnected');

    // Default code, and the whitelist.
    const keep = bystanders[2];
    await apiOk(x.rd, 'disconnect', { user: 'b', whitelist: [keep.client] });
    for (const r of bystanders) {
      if (r === keep) continue;
      await r.expectClose(3503, 'force disconnect');
    }
    await sleep(200);
    assert.strictEqual(keep.closeInfo, null, 'the whitelisted client stays');
    assert.ok((await keep.call('rpc', { method: 'x' })).json.error, 'and answers');

    // By client id alone.
    const one = await many(x, 'c', 4);
    await apiOk(x.rd, 'disconnect', { client: one[1].client });
    await one[1].expectClose(3503, 'force disconnect');
    await sleep(200);
    assert.deepStrictEqual(one.map((r) => r.closeInfo === null), [true, false, true, true]);
  }));

test('/api/unsubscribe and /api/subscribe act on subscriptions wherever they are', { timeout: 20000 },
  () => withDaemon({
    channel: { namespaces: [{ name: 'chat', allow_subscribe_for_client: true }] },
  }, async (x) => {
    // unsubscribe: raw clients see the push with code 2000.
    const rs = await many(x, 'u', 6);
    for (const r of rs) {
      await r.expect('subscribe', { channel: 'chat:x' }, { subscribe: {} });
      await r.expect('subscribe', { channel: 'chat:y' }, { subscribe: {} });
    }
    await apiOk(x.rd, 'unsubscribe', { user: 'u', channel: 'chat:x' });
    for (const r of rs) {
      const m = await r.push((p) => p.unsubscribe);
      assert.strictEqual(m.text, '{"push":{"channel":"chat:x","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}');
    }
    await apiOk(x.rd, 'publish', { channel: 'chat:x', data: 'x' });
    await apiOk(x.rd, 'publish', { channel: 'chat:y', data: 'y' });
    for (const r of rs) {
      assert.strictEqual((await r.push((p) => p.pub)).text, '{"push":{"channel":"chat:y","pub":{"data":"y"}}}',
        'chat:x is gone, chat:y stays');
    }

    // unsubscribe: the SDK subscription ends with 2000.
    const c = x.sdk({ token: jwt({ sub: 'sdk' }) });
    const s = c.newSubscription('chat:z');
    s.subscribe();
    c.connect();
    await once(s, 'subscribed');
    const un = once(s, 'unsubscribed');
    await apiOk(x.rd, 'unsubscribe', { user: 'sdk', channel: 'chat:z' });
    const uctx = await un;
    assert.deepStrictEqual([uctx.code, uctx.reason], [2000, 'server unsubscribe']);
    assert.strictEqual(s.state, 'unsubscribed');

    // subscribe: a push on the wire, then publications.
    const targets = await many(x, 't', 6);
    await apiOk(x.rd, 'subscribe', { user: 't', channel: 'chat:s', data: { welcome: 1 } });
    for (const r of targets) {
      const m = await r.push((p) => p.subscribe);
      assert.strictEqual(m.text, '{"push":{"channel":"chat:s","subscribe":{"data":{"welcome":1}}}}');
    }
    await apiOk(x.rd, 'publish', { channel: 'chat:s', data: { n: 1 } });
    for (const r of targets) {
      assert.strictEqual((await r.push((p) => p.pub)).text, '{"push":{"channel":"chat:s","pub":{"data":{"n":1}}}}');
    }
    // Already subscribed: nothing new.
    await apiOk(x.rd, 'subscribe', { user: 't', channel: 'chat:s' });
    await sleep(200);
    assert.deepStrictEqual(targets.map((r) => r.msgs.length), targets.map(() => 0));

    // subscribe: the SDK emits a client-level subscribed, then publications.
    const pubs = [];
    c.on('publication', (ctx) => pubs.push([ctx.channel, ctx.data]));
    const sub = once(c, 'subscribed', 3000, (ctx) => ctx.channel === 'chat:srv');
    await apiOk(x.rd, 'subscribe', { user: 'sdk', channel: 'chat:srv' });
    await sub;
    await apiOk(x.rd, 'publish', { channel: 'chat:srv', data: { srv: true } });
    await waitFor(() => pubs.length === 1, 3000, 25, 'a server-side publication');
    assert.deepStrictEqual(pubs, [['chat:srv', { srv: true }]]);
    // and /api/unsubscribe of a server-side channel: client-level unsubscribed.
    const csub = once(c, 'unsubscribed', 3000, (ctx) => ctx.channel === 'chat:srv');
    await apiOk(x.rd, 'unsubscribe', { user: 'sdk', channel: 'chat:srv' });
    await csub;
  }));

test('/api/refresh: expired closes with 3005; expire_at moves the expiry', { timeout: 20000 },
  () => withDaemon({ client: { expired_close_delay: '1s' } }, async (x) => {
    const rs = await many(x, 'e', 6);
    const others = await many(x, 'o', 2);
    await apiOk(x.rd, 'refresh', { user: 'e', expired: true });
    for (const r of rs) await r.expectClose(3005, 'connection expired');
    for (const r of others) assert.strictEqual(r.closeInfo, null);

    // expire_at already past: closed at once, not after the delay.
    const p = await many(x, 'p', 2);
    const t0 = Date.now();
    await apiOk(x.rd, 'refresh', { user: 'p', expire_at: now() - 10 });
    for (const r of p) await r.expectClose(3005, 'connection expired');
    assert.ok(Date.now() - t0 < 800, `closed at once: ${Date.now() - t0} ms`);

    // expire_at 0 on an expiring connection: it no longer expires.
    const zExp = now() + 2;
    const z = await many(x, 'z', 2, { exp: zExp });
    await apiOk(x.rd, 'refresh', { user: 'z' });
    for (const r of z) assert.strictEqual((await r.push((pp) => pp.refresh)).text, '{"push":{"refresh":{}}}');

    // expire_at in the future: a refresh push, then 3005 once it has
    // passed (plus expired_close_delay) without a refresh.
    const f = await many(x, 'f', 4);
    const started = Date.now();
    await apiOk(x.rd, 'refresh', { user: 'f', expire_at: now() + 2 });
    for (const r of f) {
      const m = await r.push((pp) => pp.refresh);
      assert.match(m.text, /^\{"push":\{"refresh":\{"expires":true,"ttl":[12]\}\}\}$/);
    }
    for (const r of f) await r.expectClose(3005, 'connection expired', 6000);
    const took = Date.now() - started;
    assert.ok(took >= 1900 && took < 4500, `closed after ${took} ms (expire_at in 2 s, delay 1 s)`);

    await sleep(Math.max(0, (zExp + 1) * 1000 + 300 - Date.now()));
    for (const r of z) assert.strictEqual(r.closeInfo, null, 'no longer expires');
    assert.ok((await z[0].call('rpc', { method: 'm' })).json.error, 'and answers');
  }));

test('/api/info counts clients and users; /api/channels lists channels, with and without a pattern',
  { timeout: 20000 }, () => withDaemon({
    channel: {
      without_namespace: { allow_subscribe_for_client: true },
      namespaces: [{ name: 'chat', allow_subscribe_for_client: true }],
    },
  }, async (x) => {
    const node = async () => (await x.api('info', {})).result.nodes[0];
    let n = await node();
    assert.deepStrictEqual([n.num_clients, n.num_users, n.num_channels, n.num_subs], [0, 0, 0, 0]);

    const a = await many(x, 'a', 3);
    const b = await many(x, 'b', 2);
    const c = await many(x, 'c', 1);
    await waitFor(async () => { n = await node(); return n.num_clients === 6 && n.num_users === 3; },
      2000, 50, 'info to count 6 clients of 3 users');
    // Anonymous connections count as one user, "" (centrifuge's hub).
    const anon = await Promise.all([x.connected(jwt({})), x.connected(jwt({ sub: '' }))]);
    await waitFor(async () => { n = await node(); return n.num_clients === 8 && n.num_users === 4; },
      2000, 50, 'info to count 8 clients of 4 users');
    for (const r of anon) r.ws.close();

    for (const r of [a[0], a[1], b[0]]) await r.expect('subscribe', { channel: 'chat:a' }, { subscribe: {} });
    await c[0].expect('subscribe', { channel: 'chat:b' }, { subscribe: {} });
    await b[1].expect('subscribe', { channel: 'news' }, { subscribe: {} });
    await a[2].expect('subscribe', { channel: 'news' }, { subscribe: {} });
    const want = { 'chat:a': { num_clients: 3 }, 'chat:b': { num_clients: 1 }, news: { num_clients: 2 } };
    await waitFor(async () => {
      const r = await x.api('channels', {});
      return JSON.stringify(r) === JSON.stringify({ result: { channels: want } });
    }, 2000, 50, `channels ${JSON.stringify(want)}`);
    assert.deepStrictEqual(await x.api('channels', { pattern: 'chat:*' }),
      { result: { channels: { 'chat:a': { num_clients: 3 }, 'chat:b': { num_clients: 1 } } } });
    assert.deepStrictEqual(await x.api('channels', { pattern: 'n?ws' }),
      { result: { channels: { news: { num_clients: 2 } } } });
    n = await node();
    assert.deepStrictEqual([n.num_channels, n.num_subs], [3, 6]);

    // Going away is counted too.
    for (const r of [...a, b[0]]) r.ws.close();
    await waitFor(async () => { n = await node(); return n.num_clients === 2 && n.num_users === 2; },
      2000, 50, 'info to count 2 clients of 2 users');
    await waitFor(async () => JSON.stringify(await x.api('channels', {})) ===
      JSON.stringify({ result: { channels: { 'chat:b': { num_clients: 1 }, news: { num_clients: 1 } } } }),
    2000, 50, 'channels after the closes');
  }));
