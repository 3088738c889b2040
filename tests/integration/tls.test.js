'use strict';
// TLS on the client port (http_server.tls), on the real daemon with
// certificates the test makes with the openssl command (an ECDSA P-256 CA
// and server certificate, an RSA one for the reload, client certificates
// for mutual TLS: signed, self-signed, expired):
//
//   config errors that name the key (missing, unreadable, mismatched or
//   encrypted key, no key), PEM text and base64 PEM as values; every
//   transport over TLS with the real clients (centrifuge-js over wss://
//   in JSON and protobuf, HTTP-streaming and SSE over https, uni_websocket,
//   uni_sse, uni_http_stream, SockJS across four workers, where sessions
//   are relayed between workers), the API and /health with curl --cacert,
//   messages larger than a TLS record; ALPN http/1.1; bad input: plain
//   HTTP (Go's 400), a truncated ClientHello (closed by the header
//   timeout), garbage, TLS 1.1, renegotiation (openssl s_client), client
//   certificates with mutual TLS on; and HUP with a new certificate while
//   clients stay connected, then a broken one that is refused.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const https = require('node:https');
const net = require('node:net');
const tls = require('node:tls');
const { Readable } = require('node:stream');
const { spawnSync } = require('node:child_process');
const WebSocket = require('ws');
const EventSource = require('eventsource');
const SockJS = require('sockjs-client');
const { Centrifuge } = require('centrifuge');
const PB = require('centrifuge/build/protobuf');
const { Rotord, request, waitFor, sleep, hs256, mkTmp, run, freePort, ROTORD, API_KEY } = require('./lib/rotord.js');

// ---- certificates ------------------------------------------------------------

const certs = mkTmp('rotor-tls-');
const P = (f) => path.join(certs, f);
const read = (f) => fs.readFileSync(P(f), 'utf8');

function openssl(...args) {
  const r = spawnSync('openssl', args, { cwd: certs, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function makeCerts() {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const sign = (csr, out, ext) => openssl('x509', '-req', '-in', csr, '-CA', 'ca.pem', '-CAkey', 'ca.key',
    '-CAcreateserial', '-out', out, '-days', '2', ...(ext ? ['-extfile', ext] : []));
  fs.writeFileSync(P('san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=rotor test CA');
  openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  sign('server.csr', 'server.pem', 'san.cnf');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa.key', '-out', 'rsa.csr', '-subj', '/CN=localhost');
  sign('rsa.csr', 'rsa.pem', 'san.cnf');
  openssl('pkey', '-in', 'server.key', '-aes256', '-passout', 'pass:secret', '-out', 'encrypted.key');
  openssl('req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=client');
  sign('client.csr', 'client.pem');
  openssl('req', '-x509', ...ec, '-keyout', 'self.key', '-out', 'self.pem', '-days', '2', '-subj', '/CN=client');
  // Expired: openssl ca is the one that takes dates in the past.
  fs.writeFileSync(P('ca.cnf'), '[ca]\ndefault_ca = t\n[t]\ndatabase = index.txt\nnew_certs_dir = .\n'
    + 'serial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n');
  fs.writeFileSync(P('index.txt'), '');
  fs.writeFileSync(P('serial'), '1000\n');
  openssl('ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', 'client.csr',
    '-out', 'expired.pem', '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-notext');
}
makeCerts();
const CA = read('ca.pem');
// Every TLS client of this process trusts the test CA: node's global https
// agent (sockjs-client's XHR, eventsource) and tls.connect itself, which
// sockjs-client's WebSocket (faye-websocket) calls without a way to pass
// a CA.
https.globalAgent.options.ca = CA;
const tlsConnect = tls.connect;
tls.connect = function connectTrustingTestCA(...args) {
  if (args[0] && typeof args[0] === 'object' && !args[0].ca) args[0] = { ...args[0], ca: CA };
  return tlsConnect.apply(this, args);
};

const TLS_ON = (cert = P('server.pem'), key = P('server.key'), extra = {}) => ({
  http_server: { tls: { enabled: true, cert_pem: cert, key_pem: key, ...extra } },
});

// ---- clients -------------------------------------------------------------------

const token = (user, claims = {}) => hs256({ sub: user, ...claims });

// fetch over https with the test CA (Node's fetch takes no CA): what the
// SDK's HTTP-streaming transport uses of it.
function caFetch(url, init = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: init.method || 'GET', headers: init.headers || {}, ca: CA }, (res) => {
      resolve({
        ok: res.statusCode >= 200 && res.statusCode < 300,
        status: res.statusCode,
        headers: new Headers(res.headers),
        body: Readable.toWeb(res),
        text: async () => { const c = []; for await (const d of res) c.push(d); return Buffer.concat(c).toString(); },
      });
    });
    req.on('error', reject);
    if (init.signal) init.signal.addEventListener('abort', () => req.destroy(new Error('aborted')));
    if (init.body) req.write(typeof init.body === 'string' ? init.body : Buffer.from(init.body));
    req.end();
  });
}

// `ws` trusting the test CA.
class CaWebSocket extends WebSocket {
  constructor(url, protocols, opts = {}) { super(url, protocols, { ...opts, ca: CA }); }
}

function sdk(port, transport, { proto = false, ...opts } = {}) {
  const C = proto ? PB.Centrifuge : Centrifuge;
  const ep = transport === 'websocket' ? `wss://localhost:${port}/connection/websocket`
    : `https://localhost:${port}/connection/${transport}`;
  const list = [{ transport, endpoint: transport === 'sockjs' ? `https://localhost:${port}/connection/sockjs` : ep }];
  return new C(list, {
    websocket: CaWebSocket, fetch: caFetch, readableStream: ReadableStream, eventsource: EventSource,
    sockjs: SockJS, emulationEndpoint: `https://localhost:${port}/emulation`,
    minReconnectDelay: 50, maxReconnectDelay: 300, timeout: 5000, ...opts,
  });
}

// Connects C, subscribes to CH and resolves the subscription once it is
// subscribed; publications land in sub.got.
async function subscribed(c, ch) {
  const sub = c.newSubscription(ch);
  sub.got = [];
  sub.on('publication', (ctx) => sub.got.push(ctx.data));
  const ok = new Promise((resolve, reject) => {
    sub.once('subscribed', resolve);
    sub.once('unsubscribed', (ctx) => reject(new Error(`unsubscribed: ${JSON.stringify(ctx)}`)));
    c.once('disconnected', (ctx) => reject(new Error(`disconnected: ${JSON.stringify(ctx)}`)));
    setTimeout(() => reject(new Error(`${ch}: not subscribed in 10 s`)), 10000).unref();
  });
  sub.subscribe();
  c.connect();
  await ok;
  return sub;
}

function api(port, method, body) {
  return request(port, {
    method: 'POST', path: `/api/${method}`, body: JSON.stringify(body), tls: { ca: CA }, timeout: 10000,
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
  }).then((r) => {
    assert.strictEqual(r.status, 200, `${method}: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  });
}

// A TLS handshake with OPTS: resolves {socket, cert, alpn} or rejects.
function handshake(port, opts = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: CA, ...opts }, () => {
      resolve({ socket: s, cert: s.getPeerCertificate(), alpn: s.alpnProtocol });
    });
    s.on('error', reject);
  });
}

// One GET /health over a TLS connection made with OPTS: the status line,
// or the error that ended it.
function healthOver(port, opts = {}) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: CA, ...opts }, () => {
      s.write('GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    let got = '';
    s.on('data', (d) => { got += d; });
    s.on('error', (e) => resolve(`error: ${e.code || e.message}`));
    s.on('close', () => resolve(got.split('\r\n')[0] || 'closed without an answer'));
  });
}

const NS = {
  name: 'tls', allow_subscribe_for_client: true, allow_publish_for_client: true, presence: true,
  allow_presence_for_subscriber: true, history_size: 10, history_ttl: '60s', allow_history_for_subscriber: true,
};
const SERVE = {
  http_server: { ...TLS_ON().http_server, read_header_timeout: '1s' },
  client: { allowed_origins: ['*'] },
  channel: { namespaces: [NS] },
  http_stream: { enabled: true }, sse: { enabled: true },
  uni_websocket: { enabled: true }, uni_sse: { enabled: true }, uni_http_stream: { enabled: true },
  sockjs: { enabled: true },
  // `ws` offers permessage-deflate by default: wss:// clients here get
  // compressed frames inside TLS records.
  websocket: { compression: true },
  log: { level: 'debug' },
};

after(() => fs.rmSync(certs, { recursive: true, force: true }));

// ---- configuration -------------------------------------------------------------

describe('config', () => {
  // rotord -t on CONFIG: {status, stderr}.
  function check(config) {
    const dir = mkTmp();
    try {
      fs.writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ shm: { dir }, ...config }));
      const r = run(ROTORD, ['-t', '-c', path.join(dir, 'c.json')]);
      return { status: r.status, stderr: r.stderr };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  test('refused with an error naming the key', () => {
    const cases = [
      [TLS_ON(P('missing.pem')), /http_server\.tls\.cert_pem: cannot open ".*missing\.pem": No such file/],
      [TLS_ON(P('server.pem'), P('rsa.key')), /http_server\.tls\.key_pem: does not match the certificate/],
      [TLS_ON(P('server.pem'), ''), /http_server\.tls\.key_pem: must be set/],
      [TLS_ON(P('server.pem'), P('encrypted.key')), /http_server\.tls\.key_pem: no unencrypted PEM private key/],
      [TLS_ON(P('san.cnf')), /http_server\.tls\.cert_pem: no PEM certificate/],
      [TLS_ON(undefined, undefined, { client_ca_pem: P('san.cnf') }), /http_server\.tls\.client_ca_pem: no PEM certificate/],
      [{ http_server: { tls_autocert: { enabled: true } } }, /http_server\.tls_autocert\.enabled: not supported by rotor yet; refused/],
    ];
    for (const [config, want] of cases) {
      const r = check(config);
      assert.notStrictEqual(r.status, 0, `${JSON.stringify(config)} passed rotord -t`);
      assert.match(r.stderr, want);
    }
  });

  test('PEM text and base64 PEM as values; client-only keys warned about', () => {
    const inline = check(TLS_ON(read('server.pem'), read('server.key')));
    assert.strictEqual(inline.status, 0, inline.stderr);
    const b64 = (f) => Buffer.from(read(f)).toString('base64');
    const r = check(TLS_ON(b64('server.pem'), b64('server.key'), { server_ca_pem: P('ca.pem') }));
    assert.strictEqual(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: http_server\.tls\.server_ca_pem: only TLS clients use it/);
  });

  test('a daemon started on base64 PEM serves TLS; a bad certificate stops the start', async () => {
    const b64 = (f) => Buffer.from(read(f)).toString('base64');
    const rd = new Rotord(TLS_ON(b64('server.pem'), b64('server.key')), { tls: { ca: CA } });
    try {
      await rd.start();
      assert.strictEqual(await healthOver(rd.port), 'HTTP/1.1 200 OK');
    } finally {
      await rd.stop();
    }
    const dir = mkTmp();
    try {
      fs.writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ shm: { dir }, ...TLS_ON(P('server.pem'), P('rsa.key')) }));
      const r = run(ROTORD, ['-c', path.join(dir, 'c.json')]);
      assert.strictEqual(r.status, 1, 'the start fails');
      assert.match(r.stderr, /http_server\.tls\.key_pem: does not match/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- serving -------------------------------------------------------------------

describe('every endpoint over TLS (4 workers)', () => {
  let rd;
  before(async () => {
    rd = new Rotord(SERVE, { workers: 4, tls: { ca: CA } });
    await rd.start();
  });
  after(async () => { await rd.stop(); });

  test('/health and the API with curl --cacert; ALPN http/1.1', async () => {
    const h = run('curl', ['-s', '--cacert', P('ca.pem'), `https://localhost:${rd.port}/health`]);
    assert.strictEqual(h.stdout, '{}');
    const a = run('curl', ['-s', '--cacert', P('ca.pem'), '-H', `X-API-Key: ${API_KEY}`, '-d', '{}',
      `https://localhost:${rd.port}/api/info`]);
    assert.match(a.stdout, /"nodes":\[\{"uid"/);
    const h2 = await handshake(rd.port, { ALPNProtocols: ['h2', 'http/1.1'] });
    assert.strictEqual(h2.alpn, 'http/1.1');
    h2.socket.destroy();
    const only = await handshake(rd.port, { ALPNProtocols: ['h2'] });
    assert.strictEqual(only.alpn, false, 'no ALPN when http/1.1 is not offered');
    only.socket.destroy();
    const ws = new CaWebSocket(`wss://localhost:${rd.port}/connection/websocket`);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    assert.match(ws.extensions, /permessage-deflate/, 'wss:// clients negotiate permessage-deflate here');
    ws.terminate();
  });

  test('centrifuge-js over wss:// (JSON and protobuf), HTTP-streaming and SSE over https', async () => {
    const clients = [];
    try {
      const kinds = [['websocket', false], ['websocket', true], ['http_stream', false], ['http_stream', true], ['sse', false]];
      const subs = [];
      for (const [t, proto] of kinds) {
        const c = sdk(rd.port, t, { proto, token: token(`u-${t}`) });
        clients.push(c);
        subs.push(await subscribed(c, 'tls:all'));
      }
      // One small publication and one of several TLS records.
      const big = 'x'.repeat(100000);
      await api(rd.port, 'publish', { channel: 'tls:all', data: { n: 1 } });
      await api(rd.port, 'publish', { channel: 'tls:all', data: { big } });
      for (const [i, sub] of subs.entries()) {
        await waitFor(() => sub.got.length === 2, 5000, 25, `${kinds[i]} publications`);
        const got = sub.got.map((d) => (d instanceof Uint8Array ? JSON.parse(Buffer.from(d).toString()) : d));
        assert.deepStrictEqual(got[0], { n: 1 }, `${kinds[i]}`);
        assert.strictEqual(got[1].big, big, `${kinds[i]}: the large publication intact`);
      }
    } finally {
      for (const c of clients) c.disconnect();
    }
  });

  test('uni_websocket, uni_sse and uni_http_stream over TLS', async () => {
    const ch = 'tls:uni';
    const got = { ws: '', sse: '', stream: '' };
    const req = JSON.stringify({ token: token('uni', { channels: [ch] }) });
    const ws = new WebSocket(`wss://localhost:${rd.port}/connection/uni_websocket`, { ca: CA });
    ws.on('open', () => ws.send(req));
    ws.on('message', (d) => { got.ws += d; });
    const sse = https.get(`https://localhost:${rd.port}/connection/uni_sse?cf_connect=${encodeURIComponent(req)}`, (res) => {
      res.on('data', (d) => { got.sse += d; });
    });
    const stream = https.request(`https://localhost:${rd.port}/connection/uni_http_stream`, { method: 'POST' }, (res) => {
      res.on('data', (d) => { got.stream += d; });
    });
    stream.end(req);
    try {
      await waitFor(() => ['ws', 'sse', 'stream'].every((k) => got[k].includes('"connect"')), 5000, 25, 'three connects');
      await api(rd.port, 'publish', { channel: ch, data: { uni: true } });
      await waitFor(() => ['ws', 'sse', 'stream'].every((k) => got[k].includes('{"uni":true}')), 5000, 25,
        `the publication on every uni transport: ${JSON.stringify(got)}`);
    } finally {
      ws.terminate();
      sse.destroy();
      stream.destroy();
    }
  });

  test('SockJS across workers: sessions relayed between them stay whole', async () => {
    const clients = [];
    try {
      for (const t of ['xhr-streaming', 'xhr-polling', 'websocket', 'xhr-streaming', 'xhr-polling', 'eventsource']) {
        const c = sdk(rd.port, 'sockjs', { sockjsOptions: { transports: [t] }, token: token(`s-${clients.length}`) });
        clients.push(c);
        const sub = await subscribed(c, 'tls:sockjs');
        c.sub = sub;
        // A command of the session's own (a POST that lands on any worker).
        const r = await sub.publish({ from: clients.length });
        assert.ok(r, `${t}: publish answered`);
      }
      await api(rd.port, 'publish', { channel: 'tls:sockjs', data: { last: true } });
      for (const c of clients) {
        await waitFor(() => c.sub.got.some((d) => d.last), 5000, 25, 'the last publication');
      }
      assert.match(rd.log(), /relayed to bus slot \d+ over TLS/, 'some request crossed workers through a relay');
    } finally {
      for (const c of clients) c.disconnect();
    }
  });

  test('bad input: plain HTTP, truncated ClientHello, garbage, TLS 1.1, renegotiation', async () => {
    const plain = await request(rd.port, { path: '/health', timeout: 3000 });
    assert.strictEqual(plain.status, 400);
    assert.strictEqual(plain.body, 'Client sent an HTTP request to an HTTPS server.\n');

    // A ClientHello cut short, then silence: closed by the header timeout
    // (1 s here), while others are served meanwhile.
    const stalled = net.connect(rd.port, '127.0.0.1');
    const closed = new Promise((resolve) => stalled.on('close', resolve));
    stalled.on('error', () => {});
    stalled.write(Buffer.from('16030100c8010000c40303', 'hex'));
    assert.strictEqual(await healthOver(rd.port), 'HTTP/1.1 200 OK');
    const t0 = Date.now();
    await closed;
    assert.ok(Date.now() - t0 < 5000, 'the stalled handshake was closed');

    const garbage = await new Promise((resolve) => {
      const s = net.connect(rd.port, '127.0.0.1', () => s.write(Buffer.alloc(64, 0xff)));
      s.on('error', () => {});
      s.on('close', () => resolve(true));
    });
    assert.ok(garbage);

    await assert.rejects(handshake(rd.port, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));

    const reneg = spawnSync('sh', ['-c', `(printf 'R\\n'; sleep 1) | openssl s_client -tls1_2 -connect 127.0.0.1:${rd.port} -CAfile ${P('ca.pem')}`],
      { encoding: 'utf8', timeout: 10000 });
    assert.match(reneg.stdout + reneg.stderr, /RENEGOTIATING/);
    assert.match(reneg.stdout + reneg.stderr, /no renegotiation/);
    assert.strictEqual(await healthOver(rd.port), 'HTTP/1.1 200 OK', 'the worker serves on');
  });
});

// ---- mutual TLS ----------------------------------------------------------------

test('mutual TLS: only certificates signed by client_ca_pem get in', async () => {
  const cert = (n) => ({ cert: read(`${n}.pem`), key: read(`${n}.key`) });
  const rd = new Rotord(TLS_ON(P('server.pem'), P('server.key'), { client_ca_pem: P('ca.pem') }),
    { tls: { ca: CA, ...cert('client') } });
  try {
    await rd.start();
    assert.strictEqual(await healthOver(rd.port, cert('client')), 'HTTP/1.1 200 OK');
    assert.match(await healthOver(rd.port), /^error|closed without an answer/, 'no certificate');
    assert.match(await healthOver(rd.port, cert('self')), /^error|closed without an answer/, 'self-signed');
    assert.match(await healthOver(rd.port, { cert: read('expired.pem'), key: read('client.key') }),
      /^error|closed without an answer/, 'expired');
    assert.strictEqual(await healthOver(rd.port, cert('client')), 'HTTP/1.1 200 OK', 'still served');
  } finally {
    await rd.stop();
  }
});

// ---- the internal listener -------------------------------------------------

// http_server.internal_port moves the API and /health to a listener of its
// own, which serves nothing else; TLS there is http_server.tls unless
// tls_external, or internal_tls with a certificate of its own.
test('internal port: internal endpoints there only; its TLS per tls_external and internal_tls', async () => {
  const cases = [
    { name: 'tls on both', http: {}, internal: 'server' },
    { name: 'tls_external', http: { tls_external: true }, internal: null },
    { name: 'internal_tls', http: { internal_tls: { enabled: true, cert_pem: P('rsa.pem'), key_pem: P('rsa.key') } }, internal: 'rsa' },
  ];
  for (const k of cases) {
    const internalPort = await freePort();
    const tlsOpts = k.internal ? { ca: CA } : undefined;
    const rd = new Rotord({
      ...SERVE, http_server: { ...TLS_ON().http_server, internal_port: String(internalPort), ...k.http },
    }, { healthPort: internalPort, tls: tlsOpts });
    try {
      await rd.start();
      const on = (port, p, tlsx) => request(port, {
        method: 'POST', path: p, body: '{}', tls: tlsx, timeout: 5000,
        headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
      });
      assert.strictEqual((await on(internalPort, '/api/info', tlsOpts)).status, 200, `${k.name}: API on the internal port`);
      assert.strictEqual((await on(internalPort, '/health', tlsOpts)).status, 200, `${k.name}: /health there`);
      assert.strictEqual((await on(internalPort, '/connection/http_stream', tlsOpts)).status, 404,
        `${k.name}: no client endpoint there`);
      assert.strictEqual((await on(rd.port, '/api/info', { ca: CA })).status, 404, `${k.name}: no API on the main port`);
      const c = sdk(rd.port, 'websocket', { token: token('int') });
      await subscribed(c, 'tls:int');
      c.disconnect();
      if (k.internal) {
        const h = await handshake(internalPort);
        h.socket.destroy();
        const want = new (require('node:crypto').X509Certificate)(read(`${k.internal}.pem`)).fingerprint256;
        assert.strictEqual(h.cert.fingerprint256, want, `${k.name}: the internal listener's certificate`);
      } else {
        assert.match(await healthOver(internalPort), /^error|closed without an answer/, `${k.name}: no TLS there`);
      }
    } finally {
      await rd.stop();
    }
  }
  // http_api.external: the API beside the client endpoints.
  const internalPort = await freePort();
  const rd = new Rotord({ http_server: { internal_port: String(internalPort) }, http_api: { external: true } },
    { healthPort: internalPort });
  try {
    await rd.start();
    const post = (port) => request(port, { method: 'POST', path: '/api/info', body: '{}', headers: { 'X-API-Key': API_KEY } });
    assert.strictEqual((await post(rd.port)).status, 200, 'http_api.external: API on the main port');
    assert.strictEqual((await post(internalPort)).status, 404, 'and not on the internal one');
  } finally {
    await rd.stop();
  }
});

// ---- reload ----------------------------------------------------------------------

test('HUP with a new certificate: clients stay, new handshakes get it; a broken one is refused', async () => {
  const dir = mkTmp('rotor-tls-hup-');
  fs.copyFileSync(P('server.pem'), path.join(dir, 'cert.pem'));
  fs.copyFileSync(P('server.key'), path.join(dir, 'key.pem'));
  const rd = new Rotord({ ...SERVE, ...TLS_ON(path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')) },
    { workers: 2, tls: { ca: CA } });
  try {
    await rd.start();
    const ws = sdk(rd.port, 'websocket', { token: token('stay') });
    const sub = await subscribed(ws, 'tls:hup');
    const fp = async () => { const h = await handshake(rd.port); h.socket.destroy(); return h.cert.fingerprint256; };
    const before = await fp();

    fs.copyFileSync(P('rsa.pem'), path.join(dir, 'cert.pem'));
    fs.copyFileSync(P('rsa.key'), path.join(dir, 'key.pem'));
    rd.signal('SIGHUP');
    const rsa = new (require('node:crypto').X509Certificate)(read('rsa.pem')).fingerprint256;
    await waitFor(async () => (await fp()) === rsa, 5000, 50, 'the new certificate on new handshakes');
    assert.notStrictEqual(before, rsa);
    await api(rd.port, 'publish', { channel: 'tls:hup', data: { after: 'hup' } });
    await waitFor(() => sub.got.some((d) => d.after === 'hup'), 5000, 25, 'the connected client to receive');

    fs.writeFileSync(path.join(dir, 'cert.pem'), 'not a certificate\n');
    rd.signal('SIGHUP');
    await waitFor(() => /http_server\.tls\.cert_pem: no PEM certificate/.test(rd.log()), 5000, 50, 'the error logged');
    assert.match(rd.log(), /keeping the running one unchanged/);
    assert.strictEqual(await fp(), rsa, 'the previous certificate is kept');
    ws.disconnect();
  } finally {
    await rd.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
