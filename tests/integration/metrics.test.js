'use strict';
// Prometheus /metrics of the real daemon (prometheus.enabled), with two
// workers and known traffic: SDK clients spread over both workers, their
// subscriptions, server API publishes (some refused), raw-WebSocket commands
// that fail with known codes. Every scrape is parsed by a real Prometheus
// text parser (npm parse-prometheus-text-format) and checked for format
// (HELP and TYPE once per family before its samples, cumulative histograms
// whose +Inf bucket is _count, the exact Content-Type), and its values
// against the traffic, exactly where they are exact, whichever worker
// answers. Then a worker is killed with SIGKILL and replaced: no counter
// goes down, nor after a reload that replaces every worker. Also:
// disabled means 404, handler_prefix moves the route, and
// with an internal port the metrics are served there only.
//
// Waits are bounded and poll for a state; nothing asserts on timing.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const parsePrometheus = require('parse-prometheus-text-format');
const { Rotord, waitFor, hs256, connOwners, apiPost, request, freePort, deepMerge } = require('./lib/rotord.js');

const PATH = '/connection/websocket';
const CTYPE = 'text/plain; version=0.0.4; charset=utf-8';

const token = (sub) => hs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 });

// ---- scraping and the format ----------------------------------------------------

// GETs the metrics at PATH of PORT; checks status and Content-Type; returns
// the text.
async function scrapeText(port, path = '/metrics') {
  const r = await request(port, { path });
  assert.strictEqual(r.status, 200, `GET ${path}: ${r.status} ${r.body}`);
  assert.strictEqual(r.headers['content-type'], CTYPE);
  return r.body;
}

// Checks TEXT against the exposition format's rules the parser does not
// enforce; returns a map family name -> type.
function checkFormat(text) {
  assert.ok(text.endsWith('\n'), 'the last line ends with a newline too');
  const help = new Map(), type = new Map(), done = new Set();
  let current = null;
  const familyOf = (name) => {
    for (const suf of ['_bucket', '_sum', '_count']) {
      const base = name.slice(0, -suf.length);
      if (name.endsWith(suf) && type.get(base) === 'histogram') return base;
    }
    return name;
  };
  const seen = new Set();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      assert.ok(!help.has(m[1]), `one HELP for ${m[1]}`);
      assert.ok(!done.has(m[1]), `${m[1]}: one uninterrupted group`);
      help.set(m[1], m[2]);
      if (current && current !== m[1]) done.add(current);
      current = m[1];
      continue;
    }
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(!type.has(m[1]), `one TYPE for ${m[1]}`);
      assert.strictEqual(current, m[1], `TYPE ${m[1]} follows its HELP`);
      type.set(m[1], m[2]);
      continue;
    }
    assert.ok(!line.startsWith('#'), `no other comment: ${line}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const fam = familyOf(m[1]);
    assert.ok(help.has(fam) && type.has(fam), `${m[1]}: its family ${fam} has HELP and TYPE before it`);
    assert.strictEqual(fam, current, `${m[1]}: within its family's group`);
    assert.ok(!seen.has(m[1] + (m[2] || '')), `${m[1]}${m[2] || ''} appears once`);
    seen.add(m[1] + (m[2] || ''));
    assert.ok(/^(-?[0-9]+(\.[0-9]+)?|[+-]Inf|NaN)$/.test(m[3]), `a value: ${line}`);
  }
  return type;
}

// Scrapes, checks the format, parses: { text, fams: Map name -> family }.
// The parser (a port of client_python's) reads samples right but folds
// every labelled series of a histogram into one and drops their labels; so
// it reads histograms' samples as untyped ones (their HELP and TYPE lines
// left out), and the histogram families here are put together from those
// samples by their labels but le: { type: 'HISTOGRAM', metrics: [{ labels,
// buckets: {le: v}, sum, count }] }.
async function scrape(port, path) {
  const text = await scrapeText(port, path);
  const types = checkFormat(text);
  const hists = [...types].filter(([, t]) => t === 'histogram').map(([n]) => n);
  const untyped = text.split('\n')
    .filter((l) => !hists.some((h) => l.startsWith(`# HELP ${h} `) || l.startsWith(`# TYPE ${h} `))).join('\n');
  const fams = new Map();
  for (const f of parsePrometheus(untyped)) {
    // Untyped, a histogram's samples come as one family per run of a name.
    if (fams.has(f.name)) fams.get(f.name).metrics.push(...f.metrics);
    else fams.set(f.name, f);
  }
  for (const name of hists) {
    const series = new Map();
    const of = (labels) => {
      const { le, ...rest } = labels || {};
      const key = JSON.stringify(rest);
      if (!series.has(key)) series.set(key, { labels: rest, buckets: {}, order: [] });
      return [series.get(key), le];
    };
    for (const s of (fams.get(`${name}_bucket`) || { metrics: [] }).metrics) {
      const [x, le] = of(s.labels);
      assert.ok(le !== undefined, `${name}_bucket has le`);
      x.buckets[le] = s.value;
      x.order.push(le);
    }
    for (const s of (fams.get(`${name}_sum`) || { metrics: [] }).metrics) of(s.labels)[0].sum = s.value;
    for (const s of (fams.get(`${name}_count`) || { metrics: [] }).metrics) of(s.labels)[0].count = s.value;
    for (const x of series.values()) {
      const les = x.order.map((le) => (le === '+Inf' ? Infinity : Number(le)));
      assert.strictEqual(les[les.length - 1], Infinity, `${name}: the last bucket is +Inf`);
      for (let i = 1; i < les.length; i++) {
        assert.ok(les[i] > les[i - 1], `${name}: buckets in increasing le`);
        assert.ok(Number(x.buckets[x.order[i]]) >= Number(x.buckets[x.order[i - 1]]), `${name}: cumulative`);
      }
      assert.strictEqual(Number(x.buckets['+Inf']), Number(x.count), `${name}: +Inf bucket = _count`);
      assert.ok(Number(x.sum) >= 0, `${name}: a _sum`);
      delete x.order;
    }
    for (const suf of ['_bucket', '_sum', '_count']) fams.delete(name + suf);
    fams.set(name, { name, type: 'HISTOGRAM', metrics: [...series.values()] });
  }
  return { text, fams };
}

const labelsMatch = (have, want) => Object.entries(want).every(([k, v]) => (have || {})[k] === v);

// The value of the sample of family NAME whose labels include LABELS
// (histograms: its count); undefined when there is none.
function value(m, name, labels = {}) {
  const f = m.fams.get(name);
  if (!f) return undefined;
  const s = f.metrics.find((x) => labelsMatch(x.labels, labels));
  if (!s) return undefined;
  return Number(s.count !== undefined ? s.count : s.value);
}

// Every counter-like sample: key -> number (counters; histograms' buckets,
// _sum and _count).
function counters(m) {
  const out = new Map();
  for (const f of m.fams.values()) {
    for (const s of f.metrics) {
      const key = `${f.name}${JSON.stringify(s.labels || {})}`;
      if (f.type === 'COUNTER') out.set(key, Number(s.value));
      if (f.type === 'HISTOGRAM') {
        out.set(`${key}_count`, Number(s.count));
        out.set(`${key}_sum`, Number(s.sum));
        for (const [le, v] of Object.entries(s.buckets)) out.set(`${key}_le${le}`, Number(v));
      }
    }
  }
  return out;
}

// ---- clients ---------------------------------------------------------------------

// A centrifuge-js client of USER subscribed to CHANNELS; counts publications.
function sdkClient(rd, user, channels) {
  const st = { user, ws: null, connected: false, subscribed: new Set(), pubs: 0, channels };
  class TrackedWs extends WebSocket {
    constructor(url, protocols) { super(url, protocols); st.ws = this; }
  }
  st.c = new Centrifuge(`ws://127.0.0.1:${rd.port}${PATH}`, {
    token: token(user), websocket: TrackedWs, minReconnectDelay: 50, maxReconnectDelay: 300, timeout: 8000,
  });
  st.c.on('connected', () => { st.connected = true; });
  for (const ch of channels) {
    const s = st.c.newSubscription(ch);
    s.on('subscribed', () => st.subscribed.add(ch));
    s.on('publication', () => { st.pubs++; });
    s.subscribe();
  }
  st.c.connect();
  return st;
}

// A raw `ws` client of the JSON protocol: send(cmd) resolves with its reply.
function rawClient(rd) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${rd.port}${PATH}`);
    const waiting = new Map();
    let id = 0;
    ws.on('message', (data) => {
      for (const line of data.toString().split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line);
        if (r.id && waiting.has(r.id)) { waiting.get(r.id)(r); waiting.delete(r.id); }
      }
    });
    ws.send = ws.send.bind(ws);
    ws.cmd = (c) => new Promise((res) => { id++; waiting.set(id, res); ws.send(JSON.stringify({ id, ...c })); });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// ---- the node under test --------------------------------------------------------

const ROOMS = ['chat:room0', 'chat:room1'];
const K = 5;        // API publishes that succeed, all to chat:room0
let rd;
let clients = [];
let raw;

before(async () => {
  rd = await new Rotord({
    prometheus: { enabled: true },
    channel: {
      without_namespace: { allow_subscribe_for_client: true },
      namespaces: [{ name: 'chat', allow_subscribe_for_client: true, history_size: 10, history_ttl: '60s' }],
    },
  }, { workers: 2 }).start();
});

after(async () => {
  for (const s of clients) { try { s.c.disconnect(); } catch (_) { /* gone */ } }
  if (raw) raw.terminate();
  if (rd) await rd.stop();
});

test('known traffic is counted exactly, whichever worker answers', async () => {
  // SDK clients until there are six and both workers hold some: users
  // u0..u2, each client on one room and on news.
  const workers = rd.workers();
  const owned = () => {
    const owners = connOwners(workers, rd.port);
    return new Set(clients.map((s) => owners.get(s.ws && s.ws._socket && s.ws._socket.localPort)));
  };
  while (clients.length < 6 || (owned().size < 2 && clients.length < 40)) {
    const i = clients.length;
    const s = sdkClient(rd, `u${i % 3}`, [ROOMS[i % 2], 'news']);
    clients.push(s);
    await waitFor(() => s.connected && s.subscribed.size === 2, 8000, 10, `client ${i} subscribed`);
  }
  assert.strictEqual(owned().size, 2, 'clients on both workers');
  const N = clients.length;
  const inRoom0 = clients.filter((s) => s.channels[0] === ROOMS[0]).length;

  // K publishes that succeed, two the API refuses (102, 107).
  for (let i = 0; i < K; i++) {
    const r = await apiPost(rd.port, '/api/publish', { channel: ROOMS[0], data: { i } });
    assert.deepStrictEqual(JSON.parse(r.body), { result: { offset: i + 1, epoch: JSON.parse(r.body).result.epoch } });
  }
  assert.strictEqual(JSON.parse((await apiPost(rd.port, '/api/publish', { channel: 'nope:x', data: 1 })).body).error.code, 102);
  assert.strictEqual(JSON.parse((await apiPost(rd.port, '/api/publish', { channel: ROOMS[0] })).body).error.code, 107);
  await waitFor(() => clients.every((s) => s.pubs === (s.channels[0] === ROOMS[0] ? K : 0)), 8000, 10,
    'every publication delivered');

  // A raw client whose commands fail with known codes: 102 twice, 108 once.
  raw = await rawClient(rd);
  assert.ok((await raw.cmd({ connect: { token: token('u0') } })).connect);
  assert.strictEqual((await raw.cmd({ subscribe: { channel: 'nope:a' } })).error.code, 102);
  assert.strictEqual((await raw.cmd({ subscribe: { channel: 'nope:b' } })).error.code, 102);
  assert.strictEqual((await raw.cmd({ rpc: { method: 'x', data: {} } })).error.code, 108);

  // Users and channels come from the workers' snapshots, a tick behind.
  await waitFor(async () => {
    const m = await scrape(rd.port);
    return value(m, 'centrifugo_node_num_users') === 3 && value(m, 'centrifugo_node_num_channels') === 3;
  }, 8000, 50, 'users and channels in the snapshots');

  // Several scrapes, on new connections: any worker answers for the node.
  for (let k = 0; k < 6; k++) {
    const m = await scrape(rd.port);
    const v = (name, labels) => value(m, name, labels);
    assert.strictEqual(v('centrifugo_node_num_clients'), N + 1);
    assert.strictEqual(v('centrifugo_node_num_users'), 3);
    assert.strictEqual(v('centrifugo_node_num_subscriptions'), 2 * N);
    assert.strictEqual(v('centrifugo_node_num_channels'), 3);
    assert.strictEqual(v('centrifugo_node_num_nodes'), 1);
    assert.strictEqual(v('centrifugo_node_build', {}), 1);
    assert.match(m.fams.get('centrifugo_node_build').metrics[0].labels.version, /^\d+\.\d+/);

    assert.strictEqual(v('centrifugo_api_command_duration_seconds', { protocol: 'http', method: 'publish' }), K + 2);
    assert.strictEqual(v('rotor_api_command_errors_total', { method: 'publish' }), 2);
    assert.strictEqual(v('centrifugo_node_messages_sent_count', { type: 'publication' }), K);
    assert.strictEqual(v('centrifugo_node_messages_received_count', { type: 'publication' }), K);

    assert.strictEqual(v('centrifugo_client_num_reply_errors', { method: 'subscribe', code: '102' }), 2);
    assert.strictEqual(v('centrifugo_client_num_reply_errors', { method: 'rpc', code: '108' }), 1);
    assert.strictEqual(m.fams.get('centrifugo_client_num_reply_errors').metrics.length, 2, 'no other error');
    assert.strictEqual(v('centrifugo_client_command_duration_seconds', { method: 'connect' }), N + 1);
    assert.strictEqual(v('centrifugo_client_command_duration_seconds', { method: 'subscribe' }), 2 * N + 2);
    assert.strictEqual(v('centrifugo_client_command_duration_seconds', { method: 'rpc' }), 1);

    const ws = { transport: 'websocket' };
    assert.strictEqual(v('centrifugo_client_connections_accepted', ws), N + 1);
    assert.strictEqual(v('centrifugo_client_connections_inflight', ws), N + 1);
    assert.strictEqual(v('centrifugo_transport_messages_received', ws), (N + 1) + (2 * N + 2) + 1);
    // Out: a reply per command and a publication per subscriber in room0.
    assert.strictEqual(v('centrifugo_transport_messages_sent', ws), (N + 1) + (2 * N + 2) + 1 + K * inRoom0);
    assert.ok(v('centrifugo_transport_messages_sent_size', ws) > v('centrifugo_transport_messages_sent', ws));
    assert.ok(v('centrifugo_transport_messages_received_size', ws) > v('centrifugo_transport_messages_received', ws));

    // Per worker: both serve, their clients add up.
    const per = m.fams.get('rotor_worker_clients').metrics;
    assert.strictEqual(per.length, 2);
    assert.ok(per.every((s) => Number(s.value) > 0), 'both workers hold clients');
    assert.strictEqual(per.reduce((a, s) => a + Number(s.value), 0), N + 1);
    assert.strictEqual(v('rotor_bus_lost_records_total'), 0);
    assert.strictEqual(v('rotor_history_appends_total'), K);
  }
});

test('a worker killed with SIGKILL and replaced: no counter goes down', async () => {
  const beforeKill = await scrape(rd.port);
  const was = counters(beforeKill);
  const owners = connOwners(rd.workers(), rd.port);
  const victim = owners.get(raw._socket.localPort);
  assert.ok(victim, 'the raw client is on a worker');
  const rawClosed = new Promise((res) => raw.once('close', res));
  process.kill(victim, 'SIGKILL');
  await rawClosed;
  await waitFor(() => rd.workers().length === 2 && !rd.workers().includes(victim), 10000, 25, 'a new worker');
  // The SDK clients of the dead worker reconnect (to either worker).
  await waitFor(() => clients.every((s) => s.connected && s.subscribed.size === 2), 10000, 25, 'reconnected');
  await waitFor(async () => value(await scrape(rd.port), 'centrifugo_node_num_clients') === clients.length,
    10000, 50, 'the clients counted again');

  const apiPubsBefore = value(beforeKill, 'centrifugo_api_command_duration_seconds', { method: 'publish' });
  const r = await apiPost(rd.port, '/api/publish', { channel: ROOMS[1], data: 'after' });
  assert.strictEqual(r.status, 200);
  for (let k = 0; k < 4; k++) {
    const m = await scrape(rd.port);
    const now = counters(m);
    for (const [key, v] of was) {
      assert.ok(now.has(key), `${key} still there`);
      assert.ok(now.get(key) >= v, `${key}: ${now.get(key)} < ${v} before the kill`);
    }
    // The dead worker's counts are in the sums still, exactly.
    assert.strictEqual(value(m, 'centrifugo_api_command_duration_seconds', { method: 'publish' }), apiPubsBefore + 1);
    assert.strictEqual(value(m, 'rotor_api_command_errors_total', { method: 'publish' }), 2);
    assert.strictEqual(value(m, 'centrifugo_client_num_reply_errors', { method: 'subscribe', code: '102' }), 2);
    assert.strictEqual(value(m, 'centrifugo_client_num_reply_errors', { method: 'rpc', code: '108' }), 1);
    assert.strictEqual(value(m, 'centrifugo_node_messages_sent_count', { type: 'publication' }), K + 1);
    assert.strictEqual(value(m, 'centrifugo_client_connections_inflight', { transport: 'websocket' }), clients.length);
  }
});

test('a reload that replaces every worker: no counter goes down', async () => {
  const before = await scrape(rd.port);
  const was = counters(before);
  const old = rd.workers();
  rd.fullConfig = deepMerge(rd.fullConfig, { workers: 3 });
  rd.writeConfig(rd.fullConfig);
  rd.signal('SIGHUP');
  await waitFor(() => {
    const now = rd.workers();
    return now.length === 3 && now.every((p) => !old.includes(p));
  }, 15000, 25, 'three new workers, the old ones gone');
  const m = await scrape(rd.port);
  const now = counters(m);
  for (const [key, v] of was) {
    assert.ok(now.has(key), `${key} still there`);
    assert.ok(now.get(key) >= v, `${key}: ${now.get(key)} < ${v} before the reload`);
  }
  for (const name of ['rotor_api_command_errors_total', 'centrifugo_client_num_reply_errors',
    'centrifugo_node_messages_sent_count']) {
    for (const s of before.fams.get(name).metrics) {
      assert.strictEqual(value(m, name, s.labels), Number(s.value), `${name}${JSON.stringify(s.labels)} exactly`);
    }
  }
  assert.strictEqual(value(m, 'centrifugo_api_command_duration_seconds', { method: 'publish' }),
    value(before, 'centrifugo_api_command_duration_seconds', { method: 'publish' }));
  assert.strictEqual(m.fams.get('rotor_worker_clients').metrics.length, 3, 'the three new workers');
});

test('disabled: 404; handler_prefix moves it', async () => {
  const off = await new Rotord({}, { workers: 1 }).start();
  try {
    assert.strictEqual((await request(off.port, { path: '/metrics' })).status, 404);
  } finally {
    await off.stop();
  }
  const moved = await new Rotord({ prometheus: { enabled: true, handler_prefix: '/prom' } }, { workers: 1 }).start();
  try {
    assert.strictEqual((await request(moved.port, { path: '/metrics' })).status, 404);
    await scrape(moved.port, '/prom');
  } finally {
    await moved.stop();
  }
});

test('with an internal port, served there only', async () => {
  const ip = await freePort();
  const d = await new Rotord({ prometheus: { enabled: true }, http_server: { internal_port: String(ip) } },
    { workers: 2, healthPort: ip }).start();
  try {
    assert.strictEqual((await request(d.port, { path: '/metrics' })).status, 404);
    const m = await scrape(ip);
    assert.strictEqual(value(m, 'centrifugo_node_num_clients'), 0);
  } finally {
    await d.stop();
  }
});

// The HTTP proxies' families (server-api.md §6.3): calls by type and proxy
// name, the ones without a usable answer, the ones in flight; a reload that
// renames a proxy keeps the old name's counts and counts the new name apart.
test('proxy calls: duration, errors and inflight by type and name, across a rename', async () => {
  const http = require('node:http');
  let hung = null;
  const backend = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const b = JSON.parse(body);
      if (req.url === '/connect') return res.end(JSON.stringify({ result: { user: 'pm' } }));
      const m = b.method;
      if (m.endsWith('fail500')) { res.statusCode = 500; return res.end('no'); }
      if (m.endsWith('badjson')) return res.end('{not json');
      if (m.endsWith('refuse')) return res.end(JSON.stringify({ error: { code: 1000, message: 'no' } }));
      if (m.endsWith('hang')) { hung = res; return undefined; }
      return res.end(JSON.stringify({ result: { data: { ok: true } } }));
    });
  });
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${backend.address().port}`;
  const cfg = {
    prometheus: { enabled: true },
    client: { proxy: { connect: { enabled: true, endpoint: `${url}/connect` } } },
    rpc: {
      proxy: { endpoint: `${url}/rpc` },
      without_namespace: { proxy_enabled: true },
      namespaces: [{ name: 'ext', proxy_enabled: true, proxy_name: 'other' }],
    },
    proxies: [{ name: 'other', endpoint: `${url}/other`, timeout: '5s' }],
  };
  const d = await new Rotord(cfg, { workers: 2 }).start();
  const clients = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = new Centrifuge(`ws://127.0.0.1:${d.port}${PATH}`, { websocket: WebSocket, minReconnectDelay: 50, timeout: 8000 });
      clients.push(c);
      const on = new Promise((r) => c.once('connected', r));
      c.connect();
      await on;
    }
    const [c] = clients;
    for (let i = 0; i < 3; i++) await c.rpc('ok', {});
    for (const m of ['fail500', 'badjson']) await assert.rejects(c.rpc(m, {}), (e) => e.code === 100);
    await c.rpc('ext:ok', {});
    await assert.rejects(c.rpc('ext:refuse', {}), (e) => e.code === 1000);
    const hang = c.rpc('ext:hang', {});
    hang.catch(() => {});
    await waitFor(() => hung !== null, 5000, 10, 'the backend holds the call');
    const L = (type, name) => ({ protocol: 'http', type, name });
    let m = await scrape(d.port);
    assert.strictEqual(value(m, 'centrifugo_proxy_inflight_requests', L('rpc', 'other')), 1, 'one call in flight');
    assert.strictEqual(m.fams.get('centrifugo_proxy_duration_seconds').metrics.length >= 3, true);
    hung.statusCode = 502;
    hung.end('bad gateway');
    await assert.rejects(hang, (e) => e.code === 100);
    m = await scrape(d.port);
    assert.strictEqual(value(m, 'centrifugo_proxy_duration_seconds', L('connect', 'default')), 2);
    assert.strictEqual(value(m, 'centrifugo_proxy_errors', L('connect', 'default')), 0);
    assert.strictEqual(value(m, 'centrifugo_proxy_duration_seconds', L('rpc', 'default')), 5);
    assert.strictEqual(value(m, 'centrifugo_proxy_errors', L('rpc', 'default')), 2);
    assert.strictEqual(value(m, 'centrifugo_proxy_duration_seconds', L('rpc', 'other')), 3);
    assert.strictEqual(value(m, 'centrifugo_proxy_errors', L('rpc', 'other')), 1, 'the 502; an error answer is an answer');
    for (const s of m.fams.get('centrifugo_proxy_inflight_requests').metrics) {
      assert.strictEqual(Number(s.value), 0, `inflight back to 0: ${JSON.stringify(s.labels)}`);
    }
    assert.strictEqual(m.fams.get('centrifugo_proxy_duration_seconds').metrics.length, 3, 'no series for what was not called');
    assert.strictEqual(value(m, 'centrifugo_proxy_duration_seconds', L('subscribe', 'default')), undefined);

    // Rename "other" to "third": the old name keeps its counts.
    d.writeConfig(deepMerge(d.fullConfig, {
      rpc: { namespaces: [{ name: 'ext', proxy_enabled: true, proxy_name: 'third' }] },
      proxies: [{ name: 'third', endpoint: `${url}/other`, timeout: '5s' }],
    }));
    d.signal('SIGHUP');
    // Calls until one is counted under the new name (the ones before the
    // reload took effect still count under the old one).
    await waitFor(async () => {
      await c.rpc('ext:ok', {});
      const x = await scrape(d.port);
      return value(x, 'centrifugo_proxy_duration_seconds', L('rpc', 'third')) === 1;
    }, 10000, 100, 'calls counted under the new name');
    m = await scrape(d.port);
    const other = value(m, 'centrifugo_proxy_duration_seconds', L('rpc', 'other'));
    assert.ok(other >= 3, `the old name keeps its counts: ${other}`);
    for (let i = 0; i < 2; i++) await c.rpc('ext:ok', {});
    m = await scrape(d.port);
    assert.strictEqual(value(m, 'centrifugo_proxy_duration_seconds', L('rpc', 'third')), 3);
    assert.strictEqual(value(m, 'centrifugo_proxy_duration_seconds', L('rpc', 'other')), other, 'the old name unchanged');
    assert.strictEqual(value(m, 'centrifugo_proxy_errors', L('rpc', 'other')), 1);
    assert.strictEqual(value(m, 'centrifugo_proxy_errors', L('rpc', 'third')), 0);
  } finally {
    for (const c of clients) c.disconnect();
    await d.stop();
    backend.closeAllConnections();
    await new Promise((r) => backend.close(r));
  }
});
