'use strict';
// JWKS (server-api.md §2.1): connection and subscription tokens verified with
// keys that the daemon fetches from a JSON Web Key Set served by a Node
// `http` server of the test (keys made with crypto.generateKeyPairSync, RSA,
// EC P-256 and Ed25519, tokens signed here with node:crypto). Key rotation, a flood
// of forged kids against the rate limit (one fetch per URL per 2 s per
// worker), an outage of the JWKS server, endpoint templates filled from
// issuer_regex, and `rotord -t` on bad endpoints.
//
// One worker, so that the JWKS server's request count is the daemon's.

const { test } = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const { Rotord, ROTORD, run, sleep, mkTmp, waitFor } = require('./lib/rotord.js');

const REFETCH_MS = 2000; /* JWKS_REFETCH_MIN_MS */
const now = () => Math.floor(Date.now() / 1000);
const b64u = (b) => Buffer.from(b).toString('base64url');

// ---- keys and tokens --------------------------------------------------------------

// A key pair and its public JWK (with KID, use sig, and ALG unless null).
function makeKey(type, kid, alg) {
  const { publicKey, privateKey } = type === 'rsa'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : type === 'ed25519' ? crypto.generateKeyPairSync('ed25519')
      : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' };
  if (alg) jwk.alg = alg;
  return { kid, alg: alg || { rsa: 'RS256', ec: 'ES256', ed25519: 'EdDSA' }[type], privateKey, jwk };
}

// A JWT over CLAIMS signed with KEY (from makeKey); HEADER fields override.
function jwt(claims, key, header = {}) {
  const h = { alg: key.alg, typ: 'JWT', kid: key.kid, ...header };
  const data = Buffer.from(`${b64u(JSON.stringify(h))}.${b64u(JSON.stringify(claims))}`);
  const md = `sha${h.alg.slice(2)}`;
  let sig;
  if (h.alg === 'EdDSA') sig = crypto.sign(null, data, key.privateKey);
  else if (h.alg.startsWith('HS')) sig = crypto.createHmac(md, key).update(data).digest();
  else if (h.alg.startsWith('RS')) sig = crypto.sign(md, data, key.privateKey);
  else sig = crypto.sign(md, data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${data}.${b64u(sig)}`;
}

function hs256(claims, secret) {
  const data = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64u(JSON.stringify(claims))}`;
  return `${data}.${crypto.createHmac('sha256', secret).update(data).digest('base64url')}`;
}

// ---- the JWKS server ------------------------------------------------------------------

// Serves sets[path] (an array of JWKs) as {"keys": [...]} and counts the
// requests per path. stop() closes it and every connection (then it is
// "down": connections are refused).
class JwksServer {
  constructor(sets) {
    this.sets = sets;
    this.hits = {};
    this.sockets = new Set();
    this.server = http.createServer((req, res) => {
      this.hits[req.url] = (this.hits[req.url] || 0) + 1;
      const keys = this.sets[req.url];
      if (keys === 'hang') return; // never answers
      if (!keys) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    this.server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
  }

  start() {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => {
      this.port = this.server.address().port;
      resolve(this);
    }));
  }

  url(p) { return `http://127.0.0.1:${this.port}${p}`; }

  count(p) { return this.hits[p] || 0; }

  stop() {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---- clients --------------------------------------------------------------------------

// A raw WebSocket connect with TOKEN: {reply} (the connect reply) or
// {close: {code, reason}}.
function rawConnect(rd, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${rd.port}/connection/websocket`);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('no answer to connect')); }, 8000);
    ws.on('open', () => ws.send(JSON.stringify({ id: 1, connect: { token } })));
    ws.on('message', (d) => {
      clearTimeout(timer);
      const reply = JSON.parse(d.toString().split('\n')[0]);
      resolve({ reply, ws });
    });
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ close: { code, reason: reason.toString() } });
    });
    ws.on('error', () => {});
  });
}

async function expectConnected(rd, token, user, what) {
  const r = await rawConnect(rd, token);
  assert.ok(r.reply && r.reply.connect, `${what}: connected (${JSON.stringify(r.reply || r.close)})`);
  r.ws.close();
  return r.reply.connect;
}

async function expectRefused(rd, token, what) {
  const r = await rawConnect(rd, token);
  if (r.ws) r.ws.close();
  assert.deepStrictEqual(r.close, { code: 3500, reason: 'invalid token' }, what);
}

// centrifuge-js with TOKEN: resolves with the connected context.
function sdkConnect(rd, token) {
  const c = new Centrifuge(`ws://127.0.0.1:${rd.port}/connection/websocket`, { websocket: WebSocket, token, timeout: 5000 });
  c.on('error', () => {});
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { c.disconnect(); reject(new Error('centrifuge-js did not connect')); }, 8000);
    c.on('connected', (ctx) => { clearTimeout(t); resolve({ c, ctx }); });
    c.on('disconnected', (ctx) => { clearTimeout(t); reject(new Error(`disconnected ${JSON.stringify(ctx)}`)); });
    c.connect();
  });
}

async function withDaemon(config, fn) {
  const rd = await new Rotord(config, { workers: 1 }).start();
  try {
    await fn(rd);
  } finally {
    await rd.stop();
  }
}

// ---- tests ------------------------------------------------------------------------------

test('RSA, EC P-256 and Ed25519 keys verify connection tokens; only JWKS keys verify; one fetch for all', async () => {
  const rsa = makeKey('rsa', 'rsa-1', 'RS256');
  const ec = makeKey('ec', 'ec-1', null); // no alg: any ES* of its curve
  const ed = makeKey('ed25519', 'ed-1', null);
  const js = await new JwksServer({ '/jwks': [rsa.jwk, ec.jwk, ed.jwk] }).start();
  try {
    await withDaemon({ client: { token: { hmac_secret_key: 'test-secret', jwks_public_endpoint: js.url('/jwks') } } },
      async (rd) => {
        const exp = now() + 3600;
        const a = await sdkConnect(rd, jwt({ sub: 'alice', exp }, rsa));
        assert.strictEqual(a.ctx.client.length, 36);
        a.c.disconnect();
        assert.strictEqual(js.count('/jwks'), 1, 'the first token fetched the set');
        const b = await sdkConnect(rd, jwt({ sub: 'bob', exp }, ec));
        b.c.disconnect();
        assert.strictEqual(js.count('/jwks'), 1, 'the EC key came with the same fetch');
        await expectConnected(rd, jwt({ sub: 'dave', exp }, ed), 'dave', 'Ed25519 (EdDSA), as Centrifugo');
        await expectRefused(rd, jwt({ sub: 'eve' }, rsa, { kid: 'ed-1' }), 'RS256 naming the Ed25519 key');
        await expectRefused(rd, jwt({ sub: 'eve' }, ed, { kid: 'rsa-1' }), 'EdDSA naming the RSA key');
        const info = await expectConnected(rd, jwt({ sub: 'carol', info: { x: 1 } }, rsa), 'carol', 'RSA, raw');
        assert.strictEqual(info.client.length, 36);

        // HMAC with the configured secret: ignored when JWKS is on
        await expectRefused(rd, hs256({ sub: 'eve' }, 'test-secret'), 'an HS256 token');
        // the RSA key's alg is RS256 only
        await expectRefused(rd, jwt({ sub: 'eve' }, rsa, { alg: 'RS512' }), 'RS512 with an RS256 key');
        // the EC key verifies no RS*, the RSA key no ES*
        await expectRefused(rd, jwt({ sub: 'eve' }, rsa, { kid: 'ec-1' }), 'RS256 by the RSA key, naming the EC key');
        await expectRefused(rd, jwt({ sub: 'eve' }, ec, { kid: 'rsa-1' }), 'ES256 by the EC key, naming the RSA key');
        // a token signed by another key that names a cached kid
        const other = makeKey('rsa', 'rsa-1', 'RS256');
        await expectRefused(rd, jwt({ sub: 'eve' }, other), 'forged signature, cached kid');
        // no kid at all: refused without a fetch
        const before = js.count('/jwks');
        await expectRefused(rd, jwt({ sub: 'eve' }, rsa, { kid: undefined }), 'no kid');
        // expired: 109, as with any key
        const r = await rawConnect(rd, jwt({ sub: 'alice', exp: now() - 10 }, rsa));
        assert.deepStrictEqual(r.reply, { id: 1, error: { code: 109, message: 'token expired' } });
        r.ws.close();
        assert.strictEqual(js.count('/jwks'), before, 'nothing fetched for these');
      });
  } finally {
    await js.stop();
  }
});

test('key rotation: a new kid verifies after one refetch; the old kid stays cached', async () => {
  const k1 = makeKey('rsa', 'k1', 'RS256');
  const k2 = makeKey('ec', 'k2', 'ES256');
  const js = await new JwksServer({ '/jwks': [k1.jwk] }).start();
  try {
    await withDaemon({ client: { token: { jwks_public_endpoint: js.url('/jwks') } } }, async (rd) => {
      const u1 = await rawConnect(rd, jwt({ sub: 'u1', exp: now() + 60 }, k1));
      assert.ok(u1.reply.connect, 'k1');
      assert.strictEqual(js.count('/jwks'), 1);
      js.sets['/jwks'] = [k2.jwk]; // the provider rotates: k1 is gone
      await sleep(REFETCH_MS + 200);
      // a refresh with a token of the new key waits for the refetch
      const refreshed = new Promise((resolve) => u1.ws.once('message', (d) => resolve(JSON.parse(d.toString()))));
      u1.ws.send(JSON.stringify({ id: 2, refresh: { token: jwt({ sub: 'u1', exp: now() + 120 }, k2) } }));
      const rr = await refreshed;
      u1.ws.close();
      assert.strictEqual(rr.id, 2);
      assert.ok(rr.refresh && rr.refresh.expires === true && rr.refresh.ttl > 100, `refreshed: ${JSON.stringify(rr)}`);
      assert.strictEqual(js.count('/jwks'), 2, 'one refetch');
      await expectConnected(rd, jwt({ sub: 'u2' }, k2), 'u2', 'k2 after the rotation');
      await expectConnected(rd, jwt({ sub: 'u3' }, k2), 'u3', 'k2 again');
      await expectConnected(rd, jwt({ sub: 'u4' }, k1), 'u4', 'k1, cached, no longer published');
      assert.strictEqual(js.count('/jwks'), 2, 'no more fetches');
    });
  } finally {
    await js.stop();
  }
});

test('a flood of forged kids: the JWKS server sees one request per 2 s; the endpoint survives', async () => {
  const k1 = makeKey('rsa', 'k1', 'RS256');
  const js = await new JwksServer({ '/jwks': [k1.jwk] }).start();
  try {
    await withDaemon({ client: { token: { jwks_public_endpoint: js.url('/jwks') } } }, async (rd) => {
      await expectConnected(rd, jwt({ sub: 'u' }, k1), 'u', 'k1');
      assert.strictEqual(js.count('/jwks'), 1);
      await sleep(REFETCH_MS + 200);
      const t0 = Date.now();
      const forged = Array.from({ length: 200 }, () =>
        rawConnect(rd, jwt({ sub: 'mallory' }, k1, { kid: crypto.randomBytes(8).toString('hex') })));
      const results = await Promise.all(forged);
      const elapsed = Date.now() - t0;
      for (const r of results) {
        if (r.ws) r.ws.close();
        assert.deepStrictEqual(r.close, { code: 3500, reason: 'invalid token' }, 'a forged kid is an invalid token');
      }
      const fetched = js.count('/jwks') - 1;
      const allowed = 1 + Math.floor(elapsed / REFETCH_MS);
      assert.ok(fetched >= 1 && fetched <= allowed,
        `200 forged kids in ${elapsed} ms caused ${fetched} fetches (at most ${allowed})`);
      await expectConnected(rd, jwt({ sub: 'u' }, k1), 'u', 'the real key still verifies');
    });
  } finally {
    await js.stop();
  }
});

// The first line of a uni_http_stream response to a connect with TOKEN
// (the connect push, or a disconnect), then the stream is dropped.
async function uniFirstLine(rd, token) {
  const ac = new AbortController();
  const res = await fetch(`http://127.0.0.1:${rd.port}/connection/uni_http_stream`, {
    method: 'POST', body: JSON.stringify({ token }), signal: ac.signal,
    headers: { 'Content-Type': 'application/json' },
  });
  let buf = '';
  try {
    for await (const chunk of res.body) {
      buf += Buffer.from(chunk).toString();
      if (buf.includes('\n')) break;
    }
  } finally {
    ac.abort();
  }
  return JSON.parse(buf.split('\n')[0]);
}

test('unidirectional transports wait for the JWKS fetch too (uni_http_stream)', async () => {
  const k1 = makeKey('ec', 'k1', 'ES256');
  const js = await new JwksServer({ '/jwks': [k1.jwk] }).start();
  try {
    await withDaemon({ uni_http_stream: { enabled: true }, client: { token: { jwks_public_endpoint: js.url('/jwks') } } },
      async (rd) => {
        const first = await uniFirstLine(rd, jwt({ sub: 'uni' }, k1));
        assert.ok(first.connect && first.connect.client, `connected: ${JSON.stringify(first)}`);
        assert.strictEqual(js.count('/jwks'), 1);
        const refused = await uniFirstLine(rd, jwt({ sub: 'uni' }, k1, { kid: 'nope' }));
        assert.deepStrictEqual(refused, { disconnect: { code: 3500, reason: 'invalid token' } });
      });
  } finally {
    await js.stop();
  }
});

test('JWKS server down: cached keys keep verifying, unknown kids are refused', async () => {
  const k1 = makeKey('rsa', 'k1', 'RS256');
  const k2 = makeKey('rsa', 'k2', 'RS256');
  const js = await new JwksServer({ '/jwks': [k1.jwk] }).start();
  let stopped = false;
  try {
    await withDaemon({ client: { token: { jwks_public_endpoint: js.url('/jwks') } } }, async (rd) => {
      await expectConnected(rd, jwt({ sub: 'u' }, k1), 'u', 'k1 before the outage');
      await js.stop();
      stopped = true;
      await sleep(REFETCH_MS + 200);
      await expectConnected(rd, jwt({ sub: 'u' }, k1), 'u', 'k1 during the outage');
      const t0 = Date.now();
      await expectRefused(rd, jwt({ sub: 'u' }, k2), 'an unknown kid during the outage');
      assert.ok(Date.now() - t0 < 2500, 'refused within the fetch timeouts');
      await expectConnected(rd, jwt({ sub: 'u' }, k1), 'u', 'k1 after the failed fetch');
    });
  } finally {
    if (!stopped) await js.stop();
  }
});

test('a JWKS server that hangs: two attempts of 1 s, then invalid; no fetch loop', async () => {
  const k1 = makeKey('rsa', 'k1', 'RS256');
  const js = await new JwksServer({ '/jwks': 'hang' }).start();
  try {
    await withDaemon({ client: { token: { jwks_public_endpoint: js.url('/jwks') } } }, async (rd) => {
      const t0 = Date.now();
      await expectRefused(rd, jwt({ sub: 'u' }, k1), 'the key never came');
      const took = Date.now() - t0;
      assert.ok(took >= 1900 && took < 3500, `refused after the two attempts (${took} ms)`);
      assert.strictEqual(js.count('/jwks'), 2, 'two attempts');
      await expectRefused(rd, jwt({ sub: 'u' }, k1), 'right after: refused without a fetch');
      assert.strictEqual(js.count('/jwks'), 2, 'no third request within the interval');
      const r = await rawConnect(rd, '');
      assert.deepStrictEqual(r.close, { code: 3501, reason: 'bad request' }, 'the worker serves on');
    });
  } finally {
    await js.stop();
  }
});

test('JWKS endpoint down from the start: every token is invalid, the worker serves on', async () => {
  const k1 = makeKey('ec', 'k1', 'ES256');
  const js = await new JwksServer({}).start();
  const url = js.url('/jwks');
  await js.stop(); // a refused port
  await withDaemon({ client: { token: { jwks_public_endpoint: url } } }, async (rd) => {
    await expectRefused(rd, jwt({ sub: 'u' }, k1), 'nothing cached, endpoint refused');
    const r = await rawConnect(rd, '');
    assert.deepStrictEqual(r.close, { code: 3501, reason: 'bad request' }, 'the worker still answers');
  });
});

// The machine's own name, which /etc/hosts maps to 127.0.0.1, or null.
async function ownNameIsLoopback() {
  const name = require('node:os').hostname();
  try {
    const all = await require('node:dns').promises.lookup(name, { all: true });
    return all.length > 0 && all.every((a) => a.address === '127.0.0.1') ? name : null;
  } catch {
    return null;
  }
}

test('a JWKS endpoint by host name: looked up without blocking the worker, keys fetched', async (t) => {
  const name = await ownNameIsLoopback();
  if (!name) return t.skip('the machine\'s host name does not resolve to 127.0.0.1 only');
  const k1 = makeKey('ec', 'k1', 'ES256');
  const js = await new JwksServer({ '/jwks': [k1.jwk] }).start();
  try {
    await withDaemon({ client: { token: { jwks_public_endpoint: `http://${name}:${js.port}/jwks` } } }, async (rd) => {
      await expectConnected(rd, jwt({ sub: 'u' }, k1), 'u', `a key from http://${name}:${js.port}/jwks`);
      assert.strictEqual(js.count('/jwks'), 1);
    });
  } finally {
    await js.stop();
  }
});

test('a JWKS host name that does not resolve: tokens are invalid, the name is tried again after 2 s, not 30', async () => {
  const k1 = makeKey('ec', 'k1', 'ES256');
  await withDaemon({ client: { token: { jwks_public_endpoint: 'http://jwks.nonexistent.invalid/jwks' } } }, async (rd) => {
    await expectRefused(rd, jwt({ sub: 'u' }, k1), 'nothing cached, the name does not resolve');
    const failed = () => (rd.log().match(/jwks http:\/\/jwks\.nonexistent\.invalid\/jwks: cannot connect/g) || []).length;
    await waitFor(() => failed() === 2, 3000, 25, 'one fetch: two attempts, each failed');
    assert.match(rd.log(), /cannot resolve jwks\.nonexistent\.invalid: \S/, 'the log names the host and the error');
    const r = await rawConnect(rd, '');
    assert.deepStrictEqual(r.close, { code: 3501, reason: 'bad request' }, 'the worker still answers');
    await expectRefused(rd, jwt({ sub: 'u' }, k1), 'within 2 s: invalid without a fetch');
    await sleep(REFETCH_MS + 300);
    await expectRefused(rd, jwt({ sub: 'u' }, k1), 'still invalid');
    await waitFor(() => failed() === 4, 3000, 25, 'one more fetch after the 2 s rate limit');
    await sleep(300);
    assert.strictEqual(failed(), 4, 'and no more');
  });
});

test('subscription tokens through JWKS (client.subscription_token)', async () => {
  const sk = makeKey('ec', 'sub-1', 'ES256');
  const js = await new JwksServer({ '/sub-jwks': [sk.jwk] }).start();
  try {
    await withDaemon({
      client: { subscription_token: { enabled: true, jwks_public_endpoint: js.url('/sub-jwks') } },
    }, async (rd) => {
      // connection token: HMAC (client.token); subscription tokens: JWKS.
      // Raw first: the first subscribe waits for the fetch, the command
      // after it waits its turn, then finds its kid unknown (103).
      const r = await rawConnect(rd, hs256({ sub: 'bob' }, 'test-secret'));
      assert.ok(r.reply.connect);
      const other = makeKey('ec', 'sub-2', 'ES256');
      const replies = [];
      r.ws.on('message', (d) => {
        for (const line of d.toString().split('\n')) if (line !== '' && line !== '{}') replies.push(JSON.parse(line));
      });
      r.ws.send(JSON.stringify({ id: 2, subscribe: { channel: 'sport', token: jwt({ sub: 'bob', channel: 'sport' }, sk) } }));
      r.ws.send(JSON.stringify({ id: 3, subscribe: { channel: 'news', token: jwt({ sub: 'bob', channel: 'news' }, other) } }));
      const deadline = Date.now() + 5000;
      while (replies.length < 2 && Date.now() < deadline) await sleep(20);
      r.ws.close();
      assert.strictEqual(replies[0].id, 2, `the first reply answers the first command: ${JSON.stringify(replies)}`);
      assert.ok(replies[0].subscribe, `subscribed with the JWKS key: ${JSON.stringify(replies[0])}`);
      assert.deepStrictEqual(replies[1], { id: 3, error: { code: 103, message: 'permission denied' } }, 'unknown kid');
      assert.strictEqual(js.count('/sub-jwks'), 1, 'one fetch');

      const { c } = await sdkConnect(rd, hs256({ sub: 'alice' }, 'test-secret'));
      try {
        const sub = c.newSubscription('news', { token: jwt({ sub: 'alice', channel: 'news' }, sk) });
        await new Promise((resolve, reject) => {
          sub.on('subscribed', resolve);
          sub.on('error', (e) => reject(new Error(JSON.stringify(e))));
          sub.subscribe();
        });
        assert.strictEqual(js.count('/sub-jwks'), 1, 'the key was cached');
      } finally {
        c.disconnect();
      }
    });
  } finally {
    await js.stop();
  }
});

test('endpoint template: {{tenant}} from issuer_regex picks the tenant\'s key set', async () => {
  const acme = makeKey('rsa', 'main', 'RS256');
  const globex = makeKey('ec', 'main', 'ES256'); // the same kid in another tenant
  const js = await new JwksServer({ '/t/acme/jwks': [acme.jwk], '/t/globex/jwks': [globex.jwk] }).start();
  try {
    await withDaemon({
      client: {
        token: {
          jwks_public_endpoint: `http://127.0.0.1:${js.port}/t/{{tenant}}/jwks`,
          issuer_regex: '^https://(?P<tenant>acme|globex)\\.example$',
        },
      },
    }, async (rd) => {
      await expectConnected(rd, jwt({ sub: 'a', iss: 'https://acme.example' }, acme), 'a', 'acme');
      await expectConnected(rd, jwt({ sub: 'g', iss: 'https://globex.example' }, globex), 'g', 'globex');
      assert.strictEqual(js.count('/t/acme/jwks'), 1);
      assert.strictEqual(js.count('/t/globex/jwks'), 1);
      // acme's key under globex's issuer: globex's "main" is another key
      await expectRefused(rd, jwt({ sub: 'x', iss: 'https://globex.example' }, acme), 'cross-tenant kid');
      await expectRefused(rd, jwt({ sub: 'x', iss: 'https://evil.example' }, acme), 'issuer not matched');
      assert.deepStrictEqual(Object.keys(js.hits).sort(), ['/t/acme/jwks', '/t/globex/jwks'],
        'only the configured tenants were fetched');
    });
  } finally {
    await js.stop();
  }
});

test('rotord -t: JWKS endpoints are checked, each error naming its key', () => {
  const dir = mkTmp();
  const check = (config) => {
    const p = path.join(dir, 'config.json');
    fs.writeFileSync(p, JSON.stringify(config));
    return run(ROTORD, ['-t', '-c', p]);
  };
  try {
    let r = check({ client: { token: { jwks_public_endpoint: 'https://example.com/jwks' } } });
    assert.strictEqual(r.status, 0, r.stderr);
    r = check({
      client: {
        token: { jwks_public_endpoint: 'ftp://example.com/jwks' },
        subscription_token: { enabled: true, jwks_public_endpoint: 'http://h/{{nope}}/jwks' },
      },
    });
    assert.notStrictEqual(r.status, 0);
    assert.match(r.stderr, /error: client\.token\.jwks_public_endpoint: must be an http:\/\/ or https:\/\/ URL/);
    assert.match(r.stderr, /error: client\.subscription_token\.jwks_public_endpoint: placeholder \{\{nope\}\} is not a named group/);
    r = check({
      client: {
        token: {
          jwks_public_endpoint: 'https://{{tenant}}.example.com/jwks',
          issuer_regex: '^https://(?P<tenant>[a-z]+)\\.auth$',
        },
      },
    });
    assert.notStrictEqual(r.status, 0);
    assert.match(r.stderr, /error: client\.token\.issuer_regex: named group "tenant" is used in the JWKS endpoint URL template/);
    r = check({
      client: {
        token: {
          jwks_public_endpoint: 'https://{{tenant}}.example.com/jwks',
          issuer_regex: '^https://(?P<tenant>[a-z]+)\\.auth$',
          insecure_skip_jwks_endpoint_safety_check: true,
        },
      },
    });
    assert.strictEqual(r.status, 0, r.stderr);
    r = check({ client: { token: { jwks_public_endpoint: 'https://u:p@example.com/jwks' } } });
    assert.match(r.stderr, /error: client\.token\.jwks_public_endpoint: not a URL rotor can fetch/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
