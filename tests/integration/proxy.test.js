'use strict';
// The HTTP backend proxies (server-api.md §7): connect, refresh, subscribe,
// publish, RPC, with named proxies and per-namespace selection, headers,
// status_to_code_transforms, and every fault of a backend (non-200, bad
// JSON, a huge body, a hang past the timeout, a close mid-response, down),
// on the real daemon with centrifuge-js and a backend written here with
// Node's http that records every request it receives.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const net = require('node:net');
const { Rotord, waitFor, sleep, request, run, ROTORD, deepMerge, mkTmp, apiPost } = require('./lib/rotord.js');
const { sdk, once, RawClient } = require('./lib/transports.js');
const fs = require('node:fs');
const path = require('node:path');

// ---- the backend ------------------------------------------------------------------

// A backend: every request is recorded in b.reqs ({method, path, headers,
// body}); b.handler(req, parsedBody, res) answers (default: 200 {} ).
// b.sockets counts the TCP connections it accepted.
class Backend {
  async start() {
    this.reqs = [];
    this.sockets = 0;
    this.handler = (r, body, res) => res.end('{}');
    this.server = http.createServer((req, res) => {
      let data = '';
      req.on('data', (d) => { data += d; });
      req.on('end', () => {
        let body = null;
        try { body = JSON.parse(data); } catch (_) { body = data; }
        const rec = { method: req.method, path: req.url, headers: req.headers, body };
        this.reqs.push(rec);
        this.handler(rec, body, res, req);
      });
    });
    this.server.keepAliveTimeout = 60000;
    this.server.on('connection', () => { this.sockets++; });
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  // Answers JSON OBJ to every request (FN(rec) -> object when a function).
  reply(fn) {
    this.handler = (rec, body, res) => {
      const o = typeof fn === 'function' ? fn(rec, body) : fn;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(o));
    };
  }

  on(p) { return this.reqs.filter((r) => r.path === p); }

  async stop() {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

// The proxy settings used throughout: every kind at its own path.
function proxyConfig(url, extra = {}) {
  return deepMerge({
    client: {
      proxy: {
        connect: { enabled: true, endpoint: `${url}/connect`, timeout: '1s', http_headers: ['cookie', 'authorization', 'x-static'] },
        refresh: { enabled: false, endpoint: `${url}/refresh`, timeout: '1s' },
      },
    },
    channel: {
      proxy: {
        subscribe: { endpoint: `${url}/subscribe` },
        publish: { endpoint: `${url}/publish` },
      },
      without_namespace: { allow_subscribe_for_client: true, allow_publish_for_client: true },
      namespaces: [
        { name: 'px', subscribe_proxy_enabled: true, publish_proxy_enabled: true, history_size: 10, history_ttl: '60s' },
        { name: 'named', subscribe_proxy_enabled: true, subscribe_proxy_name: 'other' },
      ],
    },
    rpc: {
      proxy: { endpoint: `${url}/rpc` },
      without_namespace: { proxy_enabled: true },
      namespaces: [{ name: 'ext', proxy_enabled: true, proxy_name: 'other' }, { name: 'off', proxy_enabled: false }],
    },
    proxies: [{ name: 'other', endpoint: `${url}/other`, timeout: '1s' }],
    http_stream: { enabled: true },
    sse: { enabled: true },
    uni_http_stream: { enabled: true },
  }, extra);
}

async function withRotor(backend, extra, fn, workers = 1) {
  const rd = new Rotord(proxyConfig(backend.url, extra), { workers });
  await rd.start();
  const clients = [];
  const x = {
    rd,
    sdk(t, opts) { const c = sdk(rd.port, t, opts); clients.push(c); return c; },
  };
  try {
    await fn(x);
  } finally {
    for (const c of clients) { try { c.disconnect(); } catch (_) { /* gone */ } }
    await rd.stop();
  }
}

const WS = { name: 'websocket', fmt: 'json' };
const HTTP_STREAM = { name: 'http_stream', fmt: 'json' };
const SSE = { name: 'sse', fmt: 'json' };

// ---- tests ----------------------------------------------------------------------------

describe('proxies', () => {
  let b;
  before(async () => { b = await new Backend().start(); });
  after(async () => { await b.stop(); });

  for (const t of [WS, HTTP_STREAM, SSE]) {
    test(`connect proxy on ${t.name}: request body, headers and result`, async () => {
      b.reqs = [];
      b.reply((rec) => (rec.path === '/connect'
        ? { result: { user: 'alice', info: { n: 1 }, data: { welcome: t.name }, channels: ['news'] } }
        : { result: {} }));
      await withRotor(b, { client: { proxy: { connect: { http: { static_headers: { 'X-Static': 'static', 'X-Only-Static': 'yes' } } } } } }, async (x) => {
        const c = x.sdk(t, { data: { hello: 'world' }, name: 'js-test', headers: {} });
        const pubs = [];
        c.on('publication', (ctx) => pubs.push(ctx));
        const connected = once(c, 'connected');
        c.connect();
        const ctx = await connected;
        assert.deepStrictEqual(ctx.data, { welcome: t.name });
        assert.strictEqual(ctx.transport, t.name);
        const reqs = b.on('/connect');
        assert.strictEqual(reqs.length, 1);
        const r = reqs[0];
        assert.strictEqual(r.method, 'POST');
        assert.strictEqual(r.headers['content-type'], 'application/json');
        assert.strictEqual(r.headers['x-only-static'], 'yes');
        assert.strictEqual(r.body.client, ctx.client);
        assert.strictEqual(r.body.transport, t.name);
        assert.strictEqual(r.body.protocol, 'json');
        assert.strictEqual(r.body.encoding, 'json');
        assert.deepStrictEqual(r.body.data, { hello: 'world' });
        assert.strictEqual(r.body.name, 'js-test');
        assert.ok(!('user' in r.body));
        assert.ok(!('channels' in r.body), 'no subs, no channels');
        // The server-side subscription the result asked for.
        await waitFor(async () => {
          const res = await apiPost(x.rd.port, '/api/publish', { channel: 'news', data: { v: 1 } });
          return res.status === 200 && pubs.length > 0;
        }, 5000, 100);
        assert.deepStrictEqual(pubs[0].data, { v: 1 });
        assert.strictEqual(pubs[0].channel, 'news');
      });
    });
  }

  // centrifuge's subscribeCmd puts SubscribeOptions.Data in the server-side
  // subscription's SubscribeResult within the connect reply.
  for (const fmt of ['json', 'protobuf']) {
    test(`connect proxy subs: each one's data reaches the client in its subscribed event (${fmt})`, async () => {
      b.reqs = [];
      b.reply((rec) => (rec.path === '/connect'
        ? { result: { user: 'sd', channels: ['plain'], subs: { news: { data: { hi: 'news' }, info: { i: 1 } }, 'px:b': { b64data: Buffer.from('{"b":2}').toString('base64') } } } }
        : { result: {} }));
      await withRotor(b, {}, async (x) => {
        const c = x.sdk({ name: 'websocket', fmt });
        const subscribed = {};
        c.on('subscribed', (ctx) => { subscribed[ctx.channel] = ctx; });
        const connected = once(c, 'connected');
        c.connect();
        await connected;
        await waitFor(() => Object.keys(subscribed).length === 3, 3000, 20);
        const dec = (d) => (fmt === 'protobuf' ? JSON.parse(Buffer.from(d).toString()) : d);
        assert.deepStrictEqual(dec(subscribed.news.data), { hi: 'news' });
        assert.deepStrictEqual(dec(subscribed['px:b'].data), { b: 2 });
        assert.ok(subscribed.plain.data === undefined || subscribed.plain.data.length === 0, 'no data for a channel without it');
      });
    });
  }

  test('connect proxy on SockJS (xhr-streaming), across 2 workers', async () => {
    b.reqs = [];
    b.reply({ result: { user: 'sj', data: { via: 'sockjs' } } });
    await withRotor(b, { sockjs: { enabled: true } }, async (x) => {
      const SockJS = require('sockjs-client');
      const { Centrifuge } = require('centrifuge');
      const c = new Centrifuge([{ transport: 'sockjs', endpoint: `http://127.0.0.1:${x.rd.port}/connection/sockjs` }], {
        sockjs: SockJS, sockjsOptions: { transports: ['xhr-streaming'] }, minReconnectDelay: 100, maxReconnectDelay: 400, timeout: 5000,
      });
      c.on('error', () => {});
      try {
        const connected = once(c, 'connected');
        c.connect();
        const ctx = await connected;
        assert.deepStrictEqual(ctx.data, { via: 'sockjs' });
        assert.strictEqual(b.on('/connect')[0].body.transport, 'sockjs');
        assert.strictEqual(b.on('/connect')[0].body.client, ctx.client);
      } finally {
        c.disconnect();
      }
    }, 2);
  });

  test('connect proxy: http_headers pass Cookie and Authorization, over a static header of the same name', async () => {
    b.reqs = [];
    b.reply({ result: { user: 'u1' } });
    await withRotor(b, { client: { proxy: { connect: { http: { static_headers: { 'X-Static': 'static', 'X-Only-Static': 'yes' } } } } } }, async (x) => {
      const hdrs = { Cookie: 'session=abc', Authorization: 'Bearer t0k', 'X-Static': 'from-client', 'X-Not-Listed': 'no' };
      for (const transport of ['websocket', 'http_stream']) {
        b.reqs = [];
        const c = await RawClient.open(x.rd.port, transport, { data: { n: 1 } }, { headers: hdrs });
        assert.ok(c.result, JSON.stringify(c.reply));
        const r = b.on('/connect')[0];
        assert.strictEqual(r.headers.cookie, 'session=abc', transport);
        assert.strictEqual(r.headers.authorization, 'Bearer t0k');
        assert.strictEqual(r.headers['x-static'], 'from-client');
        assert.strictEqual(r.headers['x-only-static'], 'yes');
        assert.strictEqual(r.headers['x-not-listed'], undefined);
        assert.strictEqual(r.body.transport, transport);
        c.close();
      }
    });
  });

  // Headers emulation (ConnectRequest.headers, centrifuge-js's `headers`):
  // passed as HTTP headers to every proxy that lists them in
  // emulated_headers (Centrifugo 6.9: never through http_headers), under a
  // real header of the same name, over a static one; values that cannot
  // be written into a request are dropped.
  for (const fmt of ['json', 'protobuf']) {
    test(`headers emulation: centrifuge-js's headers reach the connect and RPC proxies by emulated_headers (${fmt})`, async () => {
      b.reqs = [];
      b.reply((rec) => (rec.path === '/connect' ? { result: { user: 'em' } } : { result: { data: { ok: true } } }));
      const extra = {
        client: { proxy: { connect: { emulated_headers: ['X-Emu', 'authorization', 'x-static', 'x-bad', 'cookie'], http_headers: ['cookie'], http: { static_headers: { 'X-Static': 'static' } } } } },
        rpc: { proxy: { emulated_headers: ['x-emu'] } },
      };
      await withRotor(b, extra, async (x) => {
        const c = x.sdk({ name: 'websocket', fmt }, {
          headers: { 'x-emu': 'e1', Authorization: 'Bearer emu', 'X-Static': 'from-emulation', 'X-Not-Listed': 'no', 'x-bad': 'a\r\nInjected: yes', cookie: 'emulated=1' },
        });
        const connected = once(c, 'connected');
        c.connect();
        await connected;
        const h = b.on('/connect')[0].headers;
        assert.strictEqual(h['x-emu'], 'e1');
        assert.strictEqual(h.authorization, 'Bearer emu');
        assert.strictEqual(h['x-static'], 'from-emulation');
        assert.strictEqual(h['x-not-listed'], undefined);
        assert.strictEqual(h['x-bad'], undefined);
        assert.strictEqual(h.injected, undefined);
        assert.strictEqual(h.cookie, 'emulated=1', 'no real Cookie: the emulated one');
        const rd = (await c.rpc('m', fmt === 'protobuf' ? new TextEncoder().encode('{}') : {})).data;
        assert.deepStrictEqual(fmt === 'protobuf' ? JSON.parse(Buffer.from(rd).toString()) : rd, { ok: true });
        const r = b.on('/rpc')[0].headers;
        assert.strictEqual(r['x-emu'], 'e1');
        assert.strictEqual(r.authorization, undefined, 'not in the RPC proxy\'s emulated_headers');
      });
    });
  }

  test('headers emulation: a real header of the same name wins; http_headers alone never takes an emulated value', async () => {
    b.reqs = [];
    b.reply({ result: { user: 'em2' } });
    await withRotor(b, { client: { proxy: { connect: { emulated_headers: ['cookie'], http_headers: ['cookie', 'authorization'] } } } }, async (x) => {
      const c = await RawClient.open(x.rd.port, 'websocket', { headers: { cookie: 'emulated=1', authorization: 'Bearer emu' } }, { headers: { Cookie: 'real=1' } });
      assert.ok(c.result, JSON.stringify(c.reply));
      const h = b.on('/connect')[0].headers;
      assert.strictEqual(h.cookie, 'real=1');
      assert.strictEqual(h.authorization, undefined);
      c.close();
    });
  });

  test('static_headers as Centrifugo\'s list of {key, value}, with ${CENTRIFUGO_VAR_*} from the environment', async () => {
    b.reqs = [];
    b.reply({ result: { user: 'u2' } });
    const cfg = proxyConfig(b.url, { client: { proxy: { connect: { http: { static_headers: [
      { key: 'X-Listed', value: 'plain' }, { key: 'X-Secret', value: 'Bearer ${CENTRIFUGO_VAR_PROXY_TOKEN}!' }] } } } } });
    const rd = new Rotord(cfg, { workers: 1, env: { CENTRIFUGO_VAR_PROXY_TOKEN: 's3cr3t' } });
    await rd.start();
    try {
      const c = await RawClient.open(rd.port, 'websocket', {});
      assert.ok(c.result, JSON.stringify(c.reply));
      const r = b.on('/connect')[0];
      assert.strictEqual(r.headers['x-listed'], 'plain');
      assert.strictEqual(r.headers['x-secret'], 'Bearer s3cr3t!');
      c.close();
    } finally {
      await rd.stop();
    }
  });

  test('connect proxy on uni_http_stream: the connect request comes in the body', async () => {
    b.reqs = [];
    b.reply({ result: { user: 'uni', data: { hi: 'uni' } } });
    await withRotor(b, {}, async (x) => {
      const first = await new Promise((resolve, reject) => {
        const req = http.request({ port: x.rd.port, host: '127.0.0.1', method: 'POST', path: '/connection/uni_http_stream',
          headers: { 'Content-Type': 'application/json', Cookie: 'k=v' } }, (res) => {
          let buf = '';
          res.on('data', (d) => {
            buf += d;
            const i = buf.indexOf('\n');
            if (i >= 0) { resolve(JSON.parse(buf.slice(0, i))); req.destroy(); }
          });
        });
        req.on('error', () => {});
        req.end(JSON.stringify({ data: { from: 'uni' }, name: 'uni-client', subs: { 'px:one': {} } }));
        setTimeout(() => reject(new Error('no push')), 5000);
      });
      assert.deepStrictEqual(first.connect.data, { hi: 'uni' });
      const r = b.on('/connect')[0];
      assert.strictEqual(r.body.transport, 'uni_http_stream');
      assert.deepStrictEqual(r.body.data, { from: 'uni' });
      assert.strictEqual(r.body.name, 'uni-client');
      assert.deepStrictEqual(r.body.channels, ['px:one'], 'the channels of subs');
      assert.strictEqual(r.headers.cookie, 'k=v');
    });
  });

  test('connect proxy answers: error, disconnect, no result, unknown namespace, binary_encoding', async () => {
    await withRotor(b, {}, async (x) => {
      b.reply({ error: { code: 1000, message: 'custom', temporary: true } });
      let c = await RawClient.open(x.rd.port, 'websocket', {});
      assert.deepStrictEqual(c.reply.error, { code: 1000, message: 'custom', temporary: true });
      c.close();

      b.reply({ disconnect: { code: 4501, reason: 'go away' } });
      c = await RawClient.open(x.rd.port, 'websocket', {}, { waitConnect: false });
      let end = await c.end();
      assert.strictEqual(end.code, 4501);
      assert.strictEqual(end.reason, 'go away');

      // No result: as no credentials (3501 without client.insecure).
      b.reply({});
      c = await RawClient.open(x.rd.port, 'websocket', {}, { waitConnect: false });
      end = await c.end();
      assert.strictEqual(end.code, 3501);

      b.reply({ result: { user: 'u', channels: ['nope:x'] } });
      c = await RawClient.open(x.rd.port, 'websocket', {});
      assert.strictEqual(c.reply.error.code, 102);
      c.close();
    });
    b.reqs = [];
    b.reply({ result: { user: 'b64', b64data: Buffer.from('{"x":2}').toString('base64') } });
    await withRotor(b, { client: { proxy: { connect: { binary_encoding: true } } } }, async (x) => {
      const c = await RawClient.open(x.rd.port, 'websocket', { data: { y: 1 } });
      assert.deepStrictEqual(c.result.data, { x: 2 });
      const r = b.on('/connect')[0];
      assert.strictEqual(r.body.encoding, 'binary');
      assert.strictEqual(r.body.b64data, Buffer.from('{"y":1}').toString('base64'));
      assert.ok(!('data' in r.body));
      c.close();
    });
  });

  test('connect proxy faults: each is error 100 to the client, and the worker keeps serving', async () => {
    const transforms = [
      { status_code: 403, to_disconnect: { code: 4403, reason: 'forbidden' } },
      { status_code: 404, to_error: { code: 1404, message: 'nope', temporary: false } },
    ];
    let mode = 'ok';
    b.handler = (rec, body, res, req) => {
      if (mode === 'ok') return res.end(JSON.stringify({ result: { user: 'fine' } }));
      if (mode === '500') { res.statusCode = 500; return res.end('{"result":{"user":"x"}}'); }
      if (mode === '403') { res.statusCode = 403; return res.end(); }
      if (mode === '404') { res.statusCode = 404; return res.end(); }
      if (mode === 'badjson') return res.end('{"result": {"user": ');
      if (mode === 'huge') return res.end(JSON.stringify({ result: { user: 'x', info: 'a'.repeat(2 << 20) } }));
      if (mode === 'hang') return undefined; // never answers
      if (mode === 'cut') {
        res.writeHead(200, { 'Content-Length': '1000' });
        res.write('{"result":{"user":"x"');
        setTimeout(() => req.socket.destroy(), 50);
        return undefined;
      }
      return res.end('{}');
    };
    await withRotor(b, { client: { proxy: { connect: { timeout: '400ms', http: { status_to_code_transforms: transforms } } } } }, async (x) => {
      const expect100 = async (m) => {
        mode = m;
        const t0 = Date.now();
        const c = await RawClient.open(x.rd.port, 'websocket', {});
        assert.deepStrictEqual(c.reply.error, { code: 100, message: 'internal server error', temporary: true }, m);
        c.close();
        mode = 'ok';
        const ok = await RawClient.open(x.rd.port, 'websocket', {});
        assert.ok(ok.result, `${m}: then a good connect works`);
        ok.close();
        return Date.now() - t0;
      };
      for (const m of ['500', 'badjson', 'huge', 'cut']) await expect100(m);
      const took = await expect100('hang');
      assert.ok(took >= 350 && took < 3000, `the timeout answered after ${took} ms`);

      mode = '404';
      let c = await RawClient.open(x.rd.port, 'websocket', {});
      assert.deepStrictEqual(c.reply.error, { code: 1404, message: 'nope' });
      c.close();
      mode = '403';
      c = await RawClient.open(x.rd.port, 'websocket', {}, { waitConnect: false });
      const end = await c.end();
      assert.strictEqual(end.code, 4403);
      assert.strictEqual(end.reason, 'forbidden');
      // On a unidirectional transport a failure is disconnect 3004.
      mode = '500';
      const u = await new Promise((resolve) => {
        const req = http.request({ port: x.rd.port, host: '127.0.0.1', method: 'POST', path: '/connection/uni_http_stream',
          headers: { 'Content-Type': 'application/json' } }, (res) => {
          let buf = '';
          res.on('data', (d) => { buf += d; });
          res.on('end', () => resolve(buf));
        });
        req.end('{}');
      });
      assert.deepStrictEqual(JSON.parse(u.trim().split('\n')[0]), { disconnect: { code: 3004, reason: 'internal server error' } });
    });
    // The backend is down.
    const port = await new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); }); });
    await withRotor({ url: `http://127.0.0.1:${port}` }, {}, async (x) => {
      const c = await RawClient.open(x.rd.port, 'websocket', {});
      assert.deepStrictEqual(c.reply.error, { code: 100, message: 'internal server error', temporary: true });
      c.close();
    });
  });

  test('a client that disconnects while its connect proxy call is in flight', async () => {
    b.reqs = [];
    const held = [];
    b.handler = (rec, body, res) => {
      if (body && body.data && body.data.hold) { held.push(res); return; }
      res.end(JSON.stringify({ result: { user: 'after' } }));
    };
    await withRotor(b, {}, async (x) => {
      const cs = [];
      for (let i = 0; i < 5; i++) cs.push(await RawClient.open(x.rd.port, 'websocket', { data: { hold: true } }, { waitConnect: false }));
      await waitFor(() => held.length === 5, 5000, 20, 'the backend to see the calls');
      for (const c of cs) c.close();
      await sleep(100);
      for (const res of held) res.end(JSON.stringify({ result: { user: 'late' } }));
      const ok = await RawClient.open(x.rd.port, 'websocket', {});
      assert.strictEqual(ok.result.client.length, 36, 'the worker keeps serving');
      ok.close();
      assert.ok(!/proxy.*(error|crash)|AddressSanitizer/i.test(x.rd.log()), x.rd.log());
    });
  });

  test('subscribe proxy: request, result data/info/override, errors, named proxy', async () => {
    b.reqs = [];
    b.reply((rec, body) => {
      if (rec.path === '/connect') return { result: { user: 'sam', meta: { tenant: 7 } } };
      if (rec.path === '/subscribe') {
        if (body.channel === 'px:denied') return { error: { code: 1403, message: 'not yours' } };
        return { result: { info: { role: 'r' }, data: { greeting: body.channel } } };
      }
      if (rec.path === '/other') return { result: { data: { via: 'other' } } };
      return {};
    });
    await withRotor(b, { channel: { proxy: { subscribe: { include_connection_meta: true } } } }, async (x) => {
      const c = x.sdk(WS, { data: { a: 1 } });
      c.connect();
      await once(c, 'connected');
      const s = c.newSubscription('px:room', { data: { ask: 1 } });
      const subd = once(s, 'subscribed');
      s.subscribe();
      const ctx = await subd;
      assert.deepStrictEqual(ctx.data, { greeting: 'px:room' });
      const r = b.on('/subscribe')[0];
      assert.deepStrictEqual({ ...r.body, client: 'c' }, {
        client: 'c', transport: 'websocket', protocol: 'json', encoding: 'json', user: 'sam', channel: 'px:room',
        data: { ask: 1 }, meta: { tenant: 7 },
      });
      const bad = c.newSubscription('px:denied');
      const err = once(bad, 'unsubscribed');
      bad.subscribe();
      const e = await err;
      assert.strictEqual(e.code, 1403);
      assert.strictEqual(e.reason, 'not yours');
      const n = c.newSubscription('named:z');
      const nd = once(n, 'subscribed');
      n.subscribe();
      assert.deepStrictEqual((await nd).data, { via: 'other' });
      assert.strictEqual(b.on('/other')[0].body.channel, 'named:z');
    });
  });

  test('publish proxy: the result replaces data, adds tags, skip_history, errors', async () => {
    b.reqs = [];
    b.reply((rec, body) => {
      if (rec.path === '/connect') return { result: { user: 'pat' } };
      if (rec.path === '/subscribe') return { result: {} };
      if (rec.path === '/publish') {
        if (body.data.bad) return { error: { code: 1500, message: 'rejected' } };
        if (body.data.skip) return { result: { skip_history: true } };
        return { result: { data: { replaced: body.data.n }, b64data: Buffer.from('{"b64":1}').toString('base64'), tags: { k: 'v' } } };
      }
      return {};
    });
    await withRotor(b, {}, async (x) => {
      const c = x.sdk(WS);
      c.connect();
      await once(c, 'connected');
      const s = c.newSubscription('px:pub');
      const pubs = [];
      const tags = [];
      s.on('publication', (ctx) => { pubs.push(ctx.data); tags.push(ctx.tags); });
      s.subscribe();
      await once(s, 'subscribed');
      await s.publish({ n: 1 });
      await s.publish({ skip: true });
      await assert.rejects(s.publish({ bad: true }), (e) => e.code === 1500 && e.message === 'rejected');
      await waitFor(() => pubs.length === 2, 5000);
      assert.deepStrictEqual(pubs, [{ replaced: 1 }, { skip: true }], 'data wins over b64data in a publish result');
      assert.deepStrictEqual(tags[0], { k: 'v' }, 'the result\'s tags');
      const r = b.on('/publish')[0];
      assert.deepStrictEqual({ ...r.body, client: 'c' },
        { client: 'c', transport: 'websocket', protocol: 'json', encoding: 'json', user: 'pat', channel: 'px:pub', data: { n: 1 } });
      const h = JSON.parse((await apiPost(x.rd.port, '/api/history', { channel: 'px:pub', limit: 10 })).body);
      assert.deepStrictEqual(h.result.publications.map((p) => p.data), [{ replaced: 1 }], 'skip_history kept it out');
    });
  });

  test('RPC proxy: by namespace, 104 for a method no proxy takes, errors', async () => {
    b.reqs = [];
    b.reply((rec, body) => {
      if (rec.path === '/connect') return { result: { user: 'rita' } };
      if (rec.path === '/rpc') {
        if (body.method === 'fail') return { error: { code: 1777, message: 'rpc says no', temporary: false } };
        return { result: { data: { echo: body.data, method: body.method } } };
      }
      if (rec.path === '/other') return { result: { data: { other: body.method } } };
      return {};
    });
    await withRotor(b, {}, async (x) => {
      const c = x.sdk(WS);
      c.connect();
      await once(c, 'connected');
      assert.deepStrictEqual((await c.rpc('sum', { a: 1 })).data, { echo: { a: 1 }, method: 'sum' });
      assert.deepStrictEqual((await c.rpc('ext:thing', {})).data, { other: 'ext:thing' });
      await assert.rejects(c.rpc('off:thing', {}), (e) => e.code === 104);
      await assert.rejects(c.rpc('unknownns:thing', {}), (e) => e.code === 104);
      await assert.rejects(c.rpc('fail', {}), (e) => e.code === 1777 && e.message === 'rpc says no');
      const r = b.on('/rpc')[0];
      assert.deepStrictEqual({ ...r.body, client: 'c' },
        { client: 'c', transport: 'websocket', protocol: 'json', encoding: 'json', user: 'rita', method: 'sum', data: { a: 1 } });
      // keep-alive: many calls, few connections to the backend
      const before = b.sockets;
      for (let i = 0; i < 50; i++) await c.rpc('sum', { i });
      const ps = [];
      for (let i = 0; i < 50; i++) ps.push(c.rpc('sum', { i }));
      await Promise.all(ps);
      assert.ok(b.sockets - before <= 8, `${b.sockets - before} new backend connections for 100 calls`);
    });
  });

  test('refresh proxy: a connection that expires is refreshed by the backend, then expired', async () => {
    b.reqs = [];
    let refreshes = 0;
    b.reply((rec) => {
      const now = Math.floor(Date.now() / 1000);
      if (rec.path === '/connect') return { result: { user: 'ref', expire_at: now + 1 } };
      if (rec.path === '/refresh') {
        refreshes++;
        if (refreshes === 1) return { result: { expire_at: now + 1, info: { v: 2 } } };
        return { result: { expired: true } };
      }
      return {};
    });
    await withRotor(b, { client: { proxy: { refresh: { enabled: true } } } }, async (x) => {
      const c = await RawClient.open(x.rd.port, 'websocket', {});
      assert.ok(!c.result.expires, 'no client-side refresh with the refresh proxy');
      const end = await c.end(10000);
      assert.strictEqual(end.code, 3005);
      assert.strictEqual(refreshes, 2);
      const r = b.on('/refresh')[0];
      assert.deepStrictEqual({ ...r.body, client: 'c' },
        { client: 'c', transport: 'websocket', protocol: 'json', encoding: 'json', user: 'ref' });
    });
  });

  test('protobuf clients: protocol "protobuf", payloads as JSON bytes both ways', async () => {
    b.reqs = [];
    b.reply((rec, body) => {
      if (rec.path === '/connect') return { result: { user: 'pb', data: { hello: 'pb' } } };
      if (rec.path === '/rpc') return { result: { data: { got: body.data } } };
      return {};
    });
    await withRotor(b, {}, async (x) => {
      const c = x.sdk({ name: 'websocket', fmt: 'protobuf' }, { data: new TextEncoder().encode('{"p":1}') });
      const connected = once(c, 'connected');
      c.connect();
      const ctx = await connected;
      assert.deepStrictEqual(JSON.parse(new TextDecoder().decode(ctx.data)), { hello: 'pb' });
      const r = b.on('/connect')[0];
      assert.strictEqual(r.body.protocol, 'protobuf');
      assert.deepStrictEqual(r.body.data, { p: 1 });
      const res = await c.rpc('m', new TextEncoder().encode('{"q":2}'));
      assert.deepStrictEqual(JSON.parse(new TextDecoder().decode(res.data)), { got: { q: 2 } });
    });
  });

  test('HUP: a changed endpoint is used by the next calls, connected clients stay', async () => {
    b.reqs = [];
    b.reply((rec) => (rec.path === '/connect' ? { result: { user: 'h' } } : { result: { data: { path: rec.path } } }));
    await withRotor(b, {}, async (x) => {
      const c = x.sdk(WS);
      c.connect();
      await once(c, 'connected');
      assert.deepStrictEqual((await c.rpc('m', {})).data, { path: '/rpc' });
      const cfg = deepMerge(x.rd.fullConfig, { rpc: { proxy: { endpoint: `${b.url}/rpc2` } } });
      x.rd.writeConfig(cfg);
      x.rd.signal('SIGHUP');
      await waitFor(async () => (await c.rpc('m', {})).data.path === '/rpc2', 5000, 100, 'the new endpoint');
      assert.strictEqual(c.state, 'connected');
    });
  });

  test('sub_refresh proxy: the server refreshes an expiring subscription through the backend, then ends it', async () => {
    b.reqs = [];
    let n = 0;
    b.reply((rec) => {
      const now = Math.floor(Date.now() / 1000);
      if (rec.path === '/connect') return { result: { user: 'sr' } };
      if (rec.path === '/subscribe') return { result: { expire_at: now + 1 } };
      if (rec.path === '/sub_refresh') {
        n++;
        return n === 1 ? { result: { expire_at: now + 1, info: { again: true } } } : { result: { expired: true } };
      }
      return {};
    });
    const extra = {
      channel: {
        proxy: { sub_refresh: { endpoint: `${b.url}/sub_refresh` } },
        namespaces: [{ name: 'sr', subscribe_proxy_enabled: true, sub_refresh_proxy_enabled: true }],
      },
    };
    await withRotor(b, extra, async (x) => {
      const c = await RawClient.open(x.rd.port, 'websocket', {});
      const sub = await c.call(2, { subscribe: { channel: 'sr:a' } });
      assert.deepStrictEqual(sub.subscribe, {}, 'no expires/ttl: no client-side refresh');
      const push = await c.next((m) => m.push && m.push.unsubscribe, 10000);
      assert.deepStrictEqual(push.push, { channel: 'sr:a', unsubscribe: { code: 2501, reason: 'subscription expired' } });
      assert.strictEqual(n, 2);
      const r = b.on('/sub_refresh')[0];
      assert.deepStrictEqual({ ...r.body, client: 'c' },
        { client: 'c', transport: 'websocket', protocol: 'json', encoding: 'json', user: 'sr', channel: 'sr:a' });
      c.close();
    });
  });
});

describe('rotord -t refuses what rotor does not implement', () => {
  const cases = [
    [{ client: { proxy: { connect: { enabled: true, endpoint: 'grpc://127.0.0.1:9000' } } } }, /client\.proxy\.connect\.endpoint: gRPC proxies are not supported/],
    [{ channel: { proxy: { subscribe_stream: { endpoint: 'http://127.0.0.1:9000' } } } }, /channel\.proxy\.subscribe_stream\.endpoint: subscribe stream proxies are not supported/],
    [{ channel: { without_namespace: { subscribe_stream_proxy_enabled: true } } }, /subscribe_stream_proxy_enabled: not supported by rotor/],
    [{ rpc: { proxy: { endpoint: 'http://x', grpc_metadata: ['a'] } } }, /rpc\.proxy\.grpc_metadata: gRPC proxies are not supported/],
    [{ proxies: [{ name: 'gp', endpoint: 'grpc://h:1' }] }, /proxies\[gp\]\.endpoint: gRPC proxies are not supported/],
    [{ client: { proxy: { connect: { enabled: true } } } }, /client\.proxy\.connect\.enabled: needs client\.proxy\.connect\.endpoint/],
    [{ channel: { namespaces: [{ name: 'n1', publish_proxy_enabled: true }] } }, /channel\.namespaces\[n1\]\.publish_proxy_enabled: needs channel\.proxy\.publish\.endpoint/],
    [{ client: { proxy: { connect: { endpoint: 'ftp://h' } } } }, /client\.proxy\.connect\.endpoint: must be an http:\/\/ or https:\/\/ URL/],
    [{ rpc: { proxy: { endpoint: 'http://h', http: { status_to_code_transforms: [{ status_code: 500 }] } } } }, /status_to_code_transforms\[0\]: needs exactly one of/],
    [{ rpc: { proxy: { endpoint: 'http://h', http: { static_headers: { A: '${CENTRIFUGO_VAR_ROTOR_TEST_UNSET}' } } } } }, /rpc\.proxy\.http\.static_headers: environment variable CENTRIFUGO_VAR_ROTOR_TEST_UNSET is not set/],
    [{ rpc: { proxy: { endpoint: 'http://h', http: { static_headers: [{ key: 'A', value: '1' }, { key: 'A', value: '2' }] } } } }, /rpc\.proxy\.http\.static_headers\[1\]: key "A" given twice/],
    [{ rpc: { proxy: { endpoint: 'http://h', http: { static_headers: [{ key: 'A' }] } } } }, /rpc\.proxy\.http\.static_headers\[0\]: must be \{"key": string, "value": string\}/],
    [{ rpc: { proxy: { endpoint: 'http://h', http: { static_headers: { 'Bad Name': 'v' } } } } }, /rpc\.proxy\.http\.static_headers\.Bad Name: must be a header name/],
  ];
  for (const [cfg, re] of cases) {
    test(`refused: ${re.source.slice(0, 60)}`, () => {
      const dir = mkTmp();
      const f = path.join(dir, 'c.json');
      fs.writeFileSync(f, JSON.stringify(cfg));
      const r = run(ROTORD, ['-t', '-c', f]);
      fs.rmSync(dir, { recursive: true, force: true });
      assert.notStrictEqual(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout + r.stderr, re);
    });
  }
  test('accepted: an HTTP proxy set', () => {
    const dir = mkTmp();
    const f = path.join(dir, 'c.json');
    fs.writeFileSync(f, JSON.stringify(proxyConfig('http://127.0.0.1:1')));
    const r = run(ROTORD, ['-t', '-c', f]);
    fs.rmSync(dir, { recursive: true, force: true });
    assert.strictEqual(r.status, 0, r.stdout + r.stderr);
  });
});
