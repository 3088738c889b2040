'use strict';
// Signals: HUP reloads (invalid config kept out, in-place changes without
// restarting workers, worker-count changes through new workers, no failed
// request while it happens), QUIT and TERM stop cleanly, USR1 reopens logs,
// rotord -s finds the master through the pid file.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const { Rotord, ROTORD, request, waitFor, run, sleep, alive, oneRequest, workerOfSlot } = require('./lib/rotord');

function rewrite(d, patch) {
  const { deepMerge } = require('./lib/rotord');
  d.fullConfig = deepMerge(d.fullConfig, patch);
  d.writeConfig(d.fullConfig);
}

test('HUP with an invalid config logs every error, keeps the same workers and keeps serving', async () => {
  const d = await new Rotord({}, { workers: 3 }).start();
  try {
    const before = d.workers();
    fs.writeFileSync(d.configPath, JSON.stringify({
      ...d.fullConfig, workers: 'many', http_server: { ...d.fullConfig.http_server, idle_timeout: 'soon' },
    }));
    d.signal('SIGHUP');
    await waitFor(() => /invalid; keeping the running one unchanged/.test(d.log()), 3000, 20, 'the reload error');
    const log = d.log();
    assert.match(log, /workers: must be an integer/);
    assert.match(log, /http_server\.idle_timeout:/);
    await sleep(300);
    assert.deepStrictEqual(d.workers(), before, 'same worker pids');
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);
  } finally {
    await d.stop();
  }
});

test('HUP with a changed log level and health path applies in place, in every worker, without restarting one', async () => {
  const d = await new Rotord({}, { workers: 3 }).start();
  try {
    const before = d.workers();
    rewrite(d, { log: { level: 'debug' }, health: { handler_prefix: '/healthz' } });
    d.signal('SIGHUP');
    await waitFor(() => (d.log().match(/configuration reloaded in place/g) || []).length === 3,
      3000, 20, 'all 3 workers to apply the config');
    assert.match(d.log(), /reload: log\.level changed from "info" to "debug"/);
    assert.deepStrictEqual(d.workers(), before, 'same worker pids');
    // Every worker now answers on the new path: ask on many connections.
    const agent = new http.Agent({ keepAlive: false });
    const rs = await Promise.all(Array.from({ length: 60 }, () =>
      request(d.port, { path: '/healthz', agent })));
    assert.ok(rs.every((r) => r.status === 200), rs.map((r) => r.status).join(','));
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 404);
  } finally {
    await d.stop();
  }
});

test('HUP with a changed worker count ends with the new count of new workers', async () => {
  const d = await new Rotord({}, { workers: 3 }).start();
  try {
    const before = d.workers();
    rewrite(d, { workers: 2 });
    d.signal('SIGHUP');
    await waitFor(() => {
      const now = d.workers();
      return now.length === 2 && now.every((p) => !before.includes(p));
    }, 5000, 20, '2 new workers');
    assert.match(d.log(), /reload: workers changed from 3 to 2 \(restarts the workers\)/);
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);
    const mid = d.workers();
    rewrite(d, { workers: 4 });
    d.signal('SIGHUP');
    await waitFor(() => {
      const now = d.workers();
      return now.length === 4 && now.every((p) => !mid.includes(p));
    }, 5000, 20, '4 new workers');
    const agent = new http.Agent({ keepAlive: false });
    const rs = await Promise.all(Array.from({ length: 80 }, () => request(d.port, { path: '/health', agent })));
    assert.ok(rs.every((r) => r.status === 200));
  } finally {
    await d.stop();
  }
});

test('no request fails while HUP restarts the workers under load', async () => {
  const d = await new Rotord({}, { workers: 2 }).start();
  try {
    let ok = 0;
    const failures = [];
    let running = true;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const loops = Array.from({ length: 20 }, async () => {
      while (running) {
        try {
          const r = await request(d.port, { path: '/health', agent });
          if (r.status === 200) ok++; else failures.push(r.status);
        } catch (e) {
          failures.push(e.code || e.message);
        }
      }
    });
    await sleep(300);
    for (const n of [3, 2, 3]) {
      rewrite(d, { workers: n });
      d.signal('SIGHUP');
      await waitFor(() => d.workers().length === n, 5000, 20, `${n} workers`);
      await sleep(300);
    }
    running = false;
    await Promise.all(loops);
    agent.destroy();
    assert.ok(ok > 100, `only ${ok} requests went through`);
    assert.deepStrictEqual(failures, []);
  } finally {
    await d.stop();
  }
});

// Deterministic form of the load test above: the connections queued on a
// slot's listening socket while its worker retires. The retiring worker of
// the slot the reload drops is stopped (SIGSTOP) while connections queue
// on its socket, so they can be served only if a current worker accepts on
// that socket; when it resumes and closes its copy, nothing may be reset.
test('HUP that shrinks the worker count: connections queued on a dropped slot are served, none reset', async () => {
  const d = await new Rotord({}, { workers: 3 }).start();
  const stopped = workerOfSlot(d, 2);
  try {
    assert.ok(stopped > 0, 'worker 2 found in the log');
    process.kill(stopped, 'SIGSTOP');
    // About a third of these land on slot 2's socket and wait there.
    const early = Array.from({ length: 60 }, () => oneRequest(d.port, 15000));
    await sleep(300);
    rewrite(d, { workers: 2 });
    d.signal('SIGHUP');
    await waitFor(() => /generation 2 started with 2 worker/.test(d.log()), 5000, 20, 'the new generation');
    // And these come while the stopped worker's socket is still open.
    const late = Array.from({ length: 60 }, () => oneRequest(d.port, 15000));
    const rs = await Promise.all([...early, ...late]);
    const bad = rs.filter((r) => r.status !== 200).map((r) => r.error);
    assert.strictEqual(bad.length, 0, `${bad.length} of ${rs.length} requests failed while worker 2 was ` +
      `stopped: ${[...new Set(bad)].join(', ')}`);
    // The retiring worker resumes, drains and closes its copy of the socket.
    process.kill(stopped, 'SIGCONT');
    const during = [];
    while (alive(stopped)) {
      during.push(oneRequest(d.port, 15000));
      await sleep(5);
    }
    const rs2 = await Promise.all(during);
    const bad2 = rs2.filter((r) => r.status !== 200).map((r) => r.error);
    assert.strictEqual(bad2.length, 0, `failed while it exited: ${[...new Set(bad2)].join(', ')}`);
    assert.strictEqual(d.workers().length, 2);
  } finally {
    try { process.kill(stopped, 'SIGCONT'); } catch (_) { /* gone */ }
    await d.stop();
  }
});

test('QUIT is graceful: a request in flight completes, then rotord exits 0', async () => {
  const d = await new Rotord({}, { workers: 2 }).start();
  try {
    const sock = net.connect(d.port, '127.0.0.1');
    await new Promise((r) => sock.on('connect', r));
    let got = '';
    sock.on('data', (b) => { got += b; });
    sock.write('POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345');
    await sleep(200);
    d.signal('SIGQUIT');
    await sleep(300);
    assert.ok(alive(d.pid), 'still draining the open request');
    sock.write('67890');
    const { code, signal } = await d.waitExit(5000);
    assert.strictEqual(signal, null);
    assert.strictEqual(code, 0);
    assert.match(got, /^HTTP\/1\.1 200 /);
    assert.match(got, /connection: close/i);
    sock.destroy();
  } finally {
    await d.stop();
  }
});

test('QUIT gives up on open connections at shutdown.timeout', async () => {
  const d = await new Rotord({ shutdown: { timeout: '1s' } }, { workers: 1 }).start();
  try {
    const sock = net.connect(d.port, '127.0.0.1');
    await new Promise((r) => sock.on('connect', r));
    sock.on('error', () => {});
    sock.write('POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12');
    await sleep(100);
    const t0 = Date.now();
    d.signal('SIGQUIT');
    const { code } = await d.waitExit(6000);
    assert.strictEqual(code, 0);
    assert.ok(Date.now() - t0 < 4000, 'bounded by shutdown.timeout');
    sock.destroy();
  } finally {
    await d.stop();
  }
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  test(`${sig} is a fast shutdown: exit 0 at once, even with idle keep-alive connections open`, async () => {
    const d = await new Rotord({}, { workers: 3 }).start();
    try {
      const kids = d.workers();
      const agent = new http.Agent({ keepAlive: true });
      await request(d.port, { path: '/health', agent });
      const t0 = Date.now();
      d.signal(sig);
      const { code, signal } = await d.waitExit(5000);
      assert.strictEqual(signal, null);
      assert.strictEqual(code, 0);
      assert.ok(Date.now() - t0 < 3000);
      assert.ok(kids.every((k) => !alive(k)), 'no worker left behind');
      agent.destroy();
    } finally {
      await d.stop();
    }
  });
}

test('USR1 reopens the log file in the master and every worker', async () => {
  const d = await new Rotord({}, { workers: 2 }).start();
  try {
    fs.renameSync(d.logPath, d.logPath + '.1');
    d.signal('SIGUSR1');
    await waitFor(() => fs.existsSync(d.logPath) &&
      (fs.readFileSync(d.logPath, 'utf8').match(/log reopened/g) || []).length === 3,
      3000, 20, 'the master and both workers to reopen the log');
    // Workers write there too: a graceful stop makes each of them log.
    d.signal('SIGQUIT');
    await d.waitExit(5000);
    const fresh = fs.readFileSync(d.logPath, 'utf8');
    assert.strictEqual((fresh.match(/\[worker \d+\] exiting/g) || []).length, 2, fresh);
  } finally {
    await d.stop();
  }
});

test('rotord -s reload and -s quit reach the master through the pid file', async () => {
  const d = await new Rotord({}, { workers: 2 }).start();
  try {
    rewrite(d, { log: { level: 'debug' } });
    let r = run(ROTORD, ['-c', d.configPath, '-s', 'reload']);
    assert.strictEqual(r.status, 0, r.stderr);
    await waitFor(() => /log\.level changed/.test(d.log()), 3000, 20, 'the reload');
    r = run(ROTORD, ['-c', d.configPath, '-s', 'bogus']);
    assert.strictEqual(r.status, 2);
    assert.match(r.stderr, /unknown signal "bogus"/);
    r = run(ROTORD, ['-c', d.configPath, '-s', 'quit']);
    assert.strictEqual(r.status, 0, r.stderr);
    const { code } = await d.waitExit(5000);
    assert.strictEqual(code, 0);
  } finally {
    await d.stop();
  }
});
