'use strict';
// Smoke runs of the load generator (contrib/bench/rotor-bench): every
// scenario for about a second with tiny counts, over every client
// transport, against a rotord it starts itself and against one started
// here (--url, --pid). Each run must exit 0 and print a JSON line whose
// counts make sense: deliveries arrived, every subscriber subscribed,
// nothing lost, no errors. Timings are never asserted: this checks the
// tool, not rotor's speed.

const { test } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { ROTORD, Rotord, waitFor, apiPost } = require('./lib/rotord');

const builddir = process.env.ROTOR_BUILDDIR || path.resolve(__dirname, '../..');
const BENCH = path.join(builddir, 'contrib/bench/rotor-bench');

// Runs rotor-bench with args; resolves {code, signal, stdout, stderr, json}
// where json is its last stdout line parsed. onSpawn(child) may signal it.
function bench(args, { env = {}, timeout = 60000, onSpawn } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BENCH, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, timeout);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = stdout.trim().split('\n');
      let json = null;
      try { json = JSON.parse(lines[lines.length - 1]); } catch (_) { /* reported below */ }
      resolve({ code, signal, stdout, stderr, json });
    });
    if (onSpawn) onSpawn(child);
  });
}

// Starts rotor-bench with its own rotord for a short run of `scenario`.
function own(scenario, args = [], opts = {}) {
  return bench([scenario, '--rotord', ROTORD, '--workers', '2', '-d', '1', '--warmup', '0.2', ...args], opts);
}

function ok(r, what) {
  assert.ok(r.json, `${what}: a JSON line (stdout: ${r.stdout}; stderr: ${r.stderr})`);
  assert.strictEqual(r.code, 0, `${what}: exit 0 (stderr: ${r.stderr}; json: ${JSON.stringify(r.json)})`);
  assert.strictEqual(r.json.errors.total, 0, `${what}: no errors: ${JSON.stringify(r.json.errors)}`);
  return r.json;
}

// Quantiles in order: a broken histogram merge would show here.
function latSane(l, what) {
  assert.ok(l.n > 0, `${what}: samples`);
  assert.ok(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, `${what}: ordered quantiles ${JSON.stringify(l)}`);
}

function serverSane(j, what) {
  assert.ok(j.server, `${what}: server figures`);
  assert.ok(j.server.cpu_s >= 0, `${what}: server CPU`);
  assert.ok(j.server.before.pss_kb > 0 && j.server.end.pss_kb > 0, `${what}: PSS sampled`);
  assert.ok(j.server.end.procs.length >= 2, `${what}: master and workers sampled`);
}

test('the tool is built', () => {
  assert.ok(fs.existsSync(BENCH), `${BENCH} exists (built by make)`);
});

test('fanout: every subscriber gets every publication, with latencies', async () => {
  const j = ok(await own('fanout', ['-n', '40']), 'fanout');
  assert.strictEqual(j.subscribed, 40);
  assert.ok(j.published > 0 && j.deliveries > 0, 'published and delivered');
  assert.strictEqual(j.lost, 0);
  assert.strictEqual(j.deliveries_all, j.expected, 'deliveries equal publications x subscribers');
  assert.strictEqual(j.out_of_order, 0);
  latSane(j.latency_us, 'delivery latency');
  latSane(j.arrival_us, 'arrival latency');
  // Every read carries the kernel's stamp, which precedes the read.
  assert.strictEqual(j.arrival_us.n, j.latency_us.n, 'an arrival stamp for every delivery');
  for (const q of ['p50', 'p90', 'p99', 'max'])
    assert.ok(j.arrival_us[q] <= j.latency_us[q], `arrival ${q} before the read: ${JSON.stringify(j)}`);
  latSane(j.api_rtt_us, 'API round trip');
  serverSane(j, 'fanout');
  assert.ok(['io_uring', 'recvmsg'].includes(j.generator.reads), `reads: ${j.generator.reads}`);
  // io_uring is asked for: it ran, or recvmsg did and the JSON says why.
  if (j.generator.reads === 'io_uring')
    assert.strictEqual(j.generator.fallback, null);
  else
    assert.ok(['kernel', 'self-check'].includes(j.generator.fallback), JSON.stringify(j.generator));
});

// Reads through io_uring are the default where the kernel has it; the
// recvmsg path must keep working for the kernels that do not.
test('fanout and a churned storm, reading with recvmsg', async () => {
  let j = ok(await own('fanout', ['-n', '40', '--no-uring']), 'fanout --no-uring');
  assert.strictEqual(j.generator.reads, 'recvmsg');
  assert.strictEqual(j.deliveries_all, j.expected);
  assert.strictEqual(j.arrival_us.n, j.latency_us.n);
  j = ok(await own('connect', ['-n', '200', '--churn', '--no-uring', '--warmup', '0']), 'connect --no-uring');
  assert.strictEqual(j.connects, 200);
});

// A generator sleeping on the ring's eventfd (--uring-eventfd) wakes one RCU grace period
// late on some kernels (6.18): the self-check must then leave io_uring for
// recvmsg before any connection, and without the self-check the stall
// watchdog must move the open connections to recvmsg mid-run, losing
// nothing. Where the kernel wakes it in time, io_uring simply runs.
test('a late-waking ring: the self-check and the stall watchdog fall back to recvmsg', async () => {
  let j = ok(await own('fanout', ['-n', '40', '--uring-eventfd']), 'fanout --uring-eventfd');
  assert.strictEqual(j.deliveries_all, j.expected);
  if (j.generator.reads === 'recvmsg')
    assert.strictEqual(j.generator.fallback, 'self-check', JSON.stringify(j.generator));
  else
    assert.strictEqual(j.generator.reads, 'io_uring', JSON.stringify(j.generator));
  assert.ok(j.generator.uring_check_us > 0, 'the self-check ran');
  j = ok(await own('fanout', ['-n', '40', '--rate', '200', '--uring-eventfd', '--no-uring-check']),
    'fanout --uring-eventfd --no-uring-check');
  assert.strictEqual(j.deliveries_all, j.expected, 'nothing lost in the move');
  assert.strictEqual(j.generator.uring_check_us, 0, 'no self-check');
  if (j.generator.reads === 'mixed')
    assert.strictEqual(j.generator.fallback, 'stalls', JSON.stringify(j.generator));
  else
    assert.strictEqual(j.generator.reads, 'io_uring', JSON.stringify(j.generator));
});

test('fanout over protobuf and mixed formats, at a fixed rate', async () => {
  for (const format of ['protobuf', 'mixed']) {
    const j = ok(await own('fanout', ['-n', '30', '--format', format, '--rate', '50']), format);
    assert.strictEqual(j.format, format);
    assert.strictEqual(j.subscribed, 30);
    assert.ok(j.deliveries > 0, `${format}: deliveries`);
    assert.ok(j.published <= 50 * 1.5, `${format}: the rate is kept (${j.published} in ~1 s)`);
    assert.strictEqual(j.lost, 0);
  }
});

test('fanout with HS256 connection tokens', async () => {
  const j = ok(await own('fanout', ['-n', '20', '--token-secret', 'bench-secret']), 'tokens');
  assert.strictEqual(j.subscribed, 20);
  assert.ok(j.deliveries > 0);
});

test('channels: subscribers over several channels', async () => {
  const j = ok(await own('channels', ['-n', '60', '-m', '6']), 'channels');
  assert.strictEqual(j.channels, 6);
  assert.strictEqual(j.subscribed, 60);
  assert.ok(j.deliveries > 0);
  assert.strictEqual(j.deliveries_all, j.expected);
});

test('burst: several publications per API request, over two generator processes', async () => {
  const j = ok(await own('burst', ['-n', '40', '--burst', '5', '--procs', '2']), 'burst');
  assert.strictEqual(j.procs, 2);
  assert.strictEqual(j.burst, 5);
  assert.strictEqual(j.published % 5, 0, 'whole bursts');
  assert.ok(j.deliveries > 0);
  assert.strictEqual(j.deliveries_all, j.expected);
});

test('idle: connections survive server pings; memory per connection is reported', async () => {
  const env = { ROTOR_CLIENT_PING_INTERVAL: '1s', ROTOR_CLIENT_PONG_TIMEOUT: '500ms' };
  const j = ok(await own('idle', ['-n', '100', '-d', '2.5'], { env }), 'idle');
  assert.strictEqual(j.subscribed, 100);
  assert.ok(j.pings >= 100, `every connection answered pings (${j.pings})`);
  serverSane(j, 'idle');
  assert.ok(j.server.pss_per_conn_b > 0, 'PSS per connection');
  assert.ok(j.server.cpu_us_per_conn_s >= 0);
});

test('connect: a storm, kept and churned', async () => {
  let j = ok(await own('connect', ['-n', '200', '--concurrency', '16', '--warmup', '0']), 'connect');
  assert.strictEqual(j.connects, 200);
  assert.ok(j.connects_per_s > 0);
  latSane(j.connect_us, 'connect time');
  j = ok(await own('connect', ['-n', '200', '--churn', '--src-addrs', '2', '--warmup', '0']), 'connect --churn');
  assert.strictEqual(j.connects, 200);
});

test('api: publishes over keep-alive, pipelined', async () => {
  const j = ok(await own('api', ['--pub-conns', '2', '--pipeline', '2']), 'api');
  assert.ok(j.api_requests > 0 && j.api_errors === 0);
  assert.strictEqual(j.published, j.api_requests);
  latSane(j.api_rtt_us, 'API round trip');
});

test('a running daemon (--url, --api-key, --pid); every connection is closed afterwards', async () => {
  const d = await new Rotord({ client: { insecure: true }, http_stream: { enabled: true } }, { workers: 2 }).start();
  try {
    const r = await bench(['fanout', '--url', `http://127.0.0.1:${d.port}`, '--api-key', 'test-api-key',
      '--pid', String(d.pid), '-n', '30', '-d', '1', '--warmup', '0']);
    const j = ok(r, '--url');
    assert.strictEqual(j.workers, 2);
    assert.ok(j.deliveries > 0);
    serverSane(j, '--url');
    const s = ok(await bench(['fanout', '--url', `http://127.0.0.1:${d.port}`, '--api-key', 'test-api-key',
      '--transport', 'http_stream', '-n', '30', '-d', '1', '--warmup', '0']), '--url over http_stream');
    assert.strictEqual(s.deliveries_all, s.expected);
    await waitFor(async () => {
      const info = await apiPost(d.port, '/api/info', {});
      const nodes = JSON.parse(info.body).result.nodes;
      return nodes.every((n) => n.num_clients === 0);
    }, 5000, 50, 'no clients left');
  } finally {
    await d.stop();
  }
});

// The transports other than WebSocket (contrib/bench/README, "Transports").
// rotor-bench enables each in the config of the rotord it starts; two
// workers, so that POSTs to /emulation and SockJS requests that land on
// the worker not holding the session are routed (or handed) to it.
const OTHER = ['http_stream', 'sse', 'sockjs-websocket', 'sockjs-xhr-streaming'];

test('fanout over every other transport: every publication reaches every subscriber', async () => {
  for (const t of OTHER) {
    const j = ok(await own('fanout', ['-n', '30', '--transport', t]), t);
    assert.strictEqual(j.transport, t);
    assert.strictEqual(j.subscribed, 30, `${t}: subscribed`);
    assert.ok(j.deliveries > 0, `${t}: deliveries`);
    assert.strictEqual(j.lost, 0, `${t}: lost`);
    assert.strictEqual(j.deliveries_all, j.expected, `${t}: deliveries equal publications x subscribers`);
    assert.strictEqual(j.out_of_order, 0, `${t}: in order`);
    latSane(j.latency_us, `${t}: delivery latency`);
  }
});

// rotord ends an XHR streaming response at 128 KiB; the client reopens it
// on the same session. 2,000-byte payloads to 10 subscribers for a second
// carry megabytes per connection: many reopenings, nothing may be lost.
test('sockjs-xhr-streaming: streams reopened at the response limit lose nothing', async () => {
  const j = ok(await own('fanout', ['-n', '10', '--size', '2000', '--transport', 'sockjs-xhr-streaming']),
    'xhr-streaming');
  assert.ok(j.deliveries_all * 2000 / 10 > 4 * 131072, `several responses' worth per connection: ${j.deliveries_all}`);
  assert.strictEqual(j.deliveries_all, j.expected);
});

test('http_stream carries protobuf and mixed formats; SSE and SockJS refuse protobuf', async () => {
  for (const format of ['protobuf', 'mixed']) {
    const j = ok(await own('fanout', ['-n', '20', '--transport', 'http_stream', '--format', format]), format);
    assert.strictEqual(j.format, format);
    assert.strictEqual(j.deliveries_all, j.expected, `${format}: nothing lost`);
    assert.ok(j.deliveries > 0);
  }
  for (const t of ['sse', 'sockjs-websocket', 'sockjs-xhr-streaming']) {
    const r = await own('fanout', ['-n', '5', '--transport', t, '--format', 'protobuf']);
    assert.strictEqual(r.code, 2, `${t}: a usage error`);
    assert.match(r.stderr, /JSON only/);
  }
  const r = await own('fanout', ['--transport', 'carrier-pigeon']);
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /unknown --transport/);
});

test('idle over every other transport: pongs through POST /emulation and xhr_send keep them alive', async () => {
  const env = { ROTOR_CLIENT_PING_INTERVAL: '1s', ROTOR_CLIENT_PONG_TIMEOUT: '500ms' };
  for (const t of OTHER) {
    const j = ok(await own('idle', ['-n', '40', '-d', '2.5', '--transport', t], { env }), t);
    assert.strictEqual(j.subscribed, 40, `${t}: subscribed`);
    assert.ok(j.pings >= 40, `${t}: every connection answered pings (${j.pings})`);
    assert.ok(j.server.pss_per_conn_b > 0, `${t}: PSS per connection`);
  }
});

test('connect storms over every other transport, kept and churned', async () => {
  for (const t of OTHER) {
    let j = ok(await own('connect', ['-n', '100', '--warmup', '0', '--transport', t]), t);
    assert.strictEqual(j.connects, 100, `${t}: connects`);
    latSane(j.connect_us, `${t}: connect time`);
    j = ok(await own('connect', ['-n', '100', '--churn', '--warmup', '0', '--transport', t]), `${t} --churn`);
    assert.strictEqual(j.connects, 100, `${t} --churn: connects`);
  }
});

test('emulation: presence_stats commands through POST /emulation, JSON and protobuf, http_stream and SSE', async () => {
  for (const args of [[], ['--format', 'protobuf'], ['--transport', 'sse']]) {
    const j = ok(await own('emulation', ['-n', '20', ...args]), `emulation ${args.join(' ')}`);
    assert.strictEqual(j.scenario, 'emulation');
    assert.strictEqual(j.transport, args[0] === '--transport' ? 'sse' : 'http_stream');
    assert.strictEqual(j.subscribed, 20);
    assert.ok(j.commands > 0 && j.commands_all >= j.commands, `commands answered: ${j.commands}`);
    latSane(j.command_us, 'command round trip');
    assert.ok(j.server.us_per_command > 0, 'server CPU per command');
  }
  const r = await own('emulation', ['--transport', 'websocket']);
  assert.strictEqual(r.code, 2, 'emulation needs an emulation transport');
});

// HTTP/1.1 lets the POST pool pipeline (--post-pipeline). rotord with two
// workers answers a POST for a session of the other worker once that
// worker acknowledges it over the bus, at the flush point; the pipelined
// request behind it is read then, and used to wait for the next timer
// (libev does not look at fed events before it sleeps): up to 100 ms a
// command, 16-60 commands/s, pongs too late (3012). The bound is far below
// what the slowest machine does without that stall (tens of thousands).
test('emulation with pipelined POSTs over two workers', async () => {
  const j = ok(await own('emulation', ['-n', '20', '--post-conns', '2', '--post-pipeline', '16']), 'pipelined');
  assert.ok(j.commands_per_s > 1000, `commands flow: ${j.commands_per_s}/s`);
});

test('failures are reported: no server means errors and exit 1', async () => {
  const r = await bench(['fanout', '--url', 'http://127.0.0.1:1', '-n', '5', '-d', '0.3', '--warmup', '0']);
  assert.strictEqual(r.code, 1);
  assert.ok(r.json && r.json.errors.connect > 0, `connect errors: ${r.stdout}`);
});

// --tls: rotor-bench gives its rotord a self-signed certificate and every
// connection (subscribers, the POST pool, API publishers, the health
// check) speaks TLS through sock.c.
test('--tls: fanout over WebSocket and the POST transports, API publishes and a handshake storm', async () => {
  for (const t of ['websocket', 'http_stream', 'sockjs-xhr-streaming']) {
    const j = ok(await own('fanout', ['-n', '30', '--tls', '--transport', t]), `fanout --tls over ${t}`);
    assert.strictEqual(j.tls, true);
    assert.strictEqual(j.subscribed, 30, `${t}: subscribed`);
    assert.ok(j.deliveries > 0, `${t}: deliveries`);
    assert.strictEqual(j.deliveries_all, j.expected, `${t}: deliveries equal publications x subscribers`);
  }
  let j = ok(await own('fanout', ['-n', '20', '--tls', '--no-uring']), 'fanout --tls --no-uring');
  assert.strictEqual(j.generator.reads, 'recvmsg');
  assert.strictEqual(j.deliveries_all, j.expected);
  j = ok(await own('api', ['--tls', '--pub-conns', '2', '--pipeline', '4']), 'api --tls');
  assert.ok(j.api_requests > 0 && j.api_errors === 0, 'publishes over TLS');
  j = ok(await own('handshake', ['-n', '100', '--tls', '--warmup', '0']), 'handshake --tls');
  assert.strictEqual(j.connects, 100);
  assert.ok(j.server.us_per_connect > 0, 'rotord CPU per handshake');
});

test('handshake: bare TCP connects; --tls against a plaintext port fails every handshake, exit 1', async () => {
  const j = ok(await own('handshake', ['-n', '50', '--warmup', '0']), 'handshake');
  assert.strictEqual(j.connects, 50);
  const d = await new Rotord({ client: { insecure: true } }, { workers: 1 }).start();
  try {
    const t = await bench(['handshake', '--url', `https://127.0.0.1:${d.port}`, '-n', '5', '-d', '2', '--warmup', '0']);
    assert.strictEqual(t.code, 1);
    assert.strictEqual(t.json.tls, true, 'https:// implies --tls');
    assert.strictEqual(t.json.errors.handshake, 5, `handshake errors: ${t.stdout}`);
  } finally {
    await d.stop();
  }
});

test('SIGINT ends a long run early, with a report', async () => {
  const r = await own('fanout', ['-n', '10', '-d', '60'], {
    onSpawn: (child) => setTimeout(() => child.kill('SIGINT'), 1500),
    timeout: 30000,
  });
  assert.ok(r.json, `a JSON line: ${r.stderr}`);
  assert.ok(r.json.window_s < 30, 'stopped early');
  assert.strictEqual(r.json.subscribed, 10);
});
