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
});
