'use strict';
// The process model: one master and N workers, supervision of workers that
// die, workers that die with the master, one rotord per port, daemon mode.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const { Rotord, ROTORD, request, waitFor, alive, childrenOf, run, sleep, mkTmp, freePort } =
  require('./lib/rotord');

// Asks /health over `n` fresh connections and returns the statuses.
async function healthFromMany(port, n) {
  const agent = new http.Agent({ keepAlive: false });
  const rs = await Promise.all(Array.from({ length: n }, () => request(port, { path: '/health', agent })));
  return rs.map((r) => r.status);
}

test('one master forks exactly the configured 3 workers, and serves /health', async () => {
  const d = await new Rotord({}, { workers: 3 }).start();
  try {
    const kids = d.workers();
    assert.strictEqual(kids.length, 3, `workers: ${kids}`);
    for (const k of kids) assert.deepStrictEqual(childrenOf(k), [], 'workers fork nothing');
    const r = await request(d.port, { path: '/health' });
    assert.strictEqual(r.status, 200);
    assert.strictEqual(r.body, '{}');
    assert.match(r.headers['content-type'], /application\/json/);
  } finally {
    await d.stop();
  }
});

test('a worker killed with SIGKILL is replaced and serving within 2 s', async () => {
  const d = await new Rotord({}, { workers: 3 }).start();
  try {
    const before = d.workers();
    const victim = before[1];
    const t0 = Date.now();
    process.kill(victim, 'SIGKILL');
    await waitFor(() => {
      const now = d.workers();
      return now.length === 3 && !now.includes(victim);
    }, 2000, 10, 'a replacement worker');
    const statuses = await healthFromMany(d.port, 60);
    assert.ok(statuses.every((s) => s === 200), `statuses: ${statuses}`);
    assert.ok(Date.now() - t0 < 2000 + 1000);
    const after = d.workers();
    assert.strictEqual(after.filter((p) => before.includes(p)).length, 2, 'the other workers kept running');
    await waitFor(() => /worker 1 \(pid \d+\) was killed by signal 9/.test(d.log()) ||
      /was killed by signal 9/.test(d.log()), 2000, 20, 'the master to log why the worker died');
  } finally {
    await d.stop();
  }
});

test('a worker that keeps dying is restarted with back-off, and logged', async () => {
  const d = await new Rotord({}, { workers: 2 }).start();
  try {
    for (let i = 0; i < 4; i++) {
      const kids = d.workers();
      process.kill(kids[0], 'SIGKILL');
      await waitFor(() => d.workers().length === 2 && !d.workers().includes(kids[0]), 8000, 10,
        `replacement ${i}`);
    }
    assert.match(d.log(), /keeps dying \(\d+ times in a row\); next start in \d+ ms/);
    const statuses = await healthFromMany(d.port, 20);
    assert.ok(statuses.every((s) => s === 200));
  } finally {
    await d.stop();
  }
});

test('when the master is killed with SIGKILL, its workers exit and the port can be bound again', async () => {
  const d = await new Rotord({}, { workers: 3 }).start();
  const kids = d.workers();
  try {
    process.kill(d.pid, 'SIGKILL');
    await waitFor(() => kids.every((k) => !alive(k)), 3000, 20, 'workers to exit');
    const d2 = new Rotord({}, { workers: 2, port: d.port });
    await d2.start();
    const r = await request(d.port, { path: '/health' });
    assert.strictEqual(r.status, 200);
    await d2.stop();
  } finally {
    for (const k of kids) { try { process.kill(k, 'SIGKILL'); } catch (_) { /* gone */ } }
    await d.stop();
  }
});

test('a second rotord on a port already served refuses to start and names the port', async () => {
  const d = await new Rotord({}, { workers: 2 }).start();
  try {
    const dir = mkTmp();
    const cfg = path.join(dir, 'config.json');
    fs.writeFileSync(cfg, JSON.stringify({
      workers: 1, http_server: { address: '127.0.0.1', port: d.port }, shm: { dir },
    }));
    const r = run(ROTORD, ['-c', cfg]);
    assert.notStrictEqual(r.status, 0);
    assert.match(r.stderr, /already in use/);
    assert.deepStrictEqual(d.workers().length, 2, 'the running daemon is untouched');
    fs.rmSync(dir, { recursive: true, force: true });
  } finally {
    await d.stop();
  }
});

test('rotord -d runs in the background, writes its pid file, and rotord -s stop ends it', async () => {
  const dir = mkTmp();
  const port = await freePort();
  const cfg = path.join(dir, 'config.json');
  const pidFile = path.join(dir, 'rotord.pid');
  fs.writeFileSync(cfg, JSON.stringify({
    workers: 2, http_server: { address: '127.0.0.1', port }, shm: { dir }, pid_file: pidFile,
    log: { file: path.join(dir, 'rotord.log') },
  }));
  let pid;
  try {
    const r = run(ROTORD, ['-d', '-c', cfg]);
    assert.strictEqual(r.status, 0, r.stderr);
    pid = Number(fs.readFileSync(pidFile, 'utf8'));
    assert.ok(alive(pid));
    assert.strictEqual(childrenOf(pid).length, 2);
    assert.strictEqual((await request(port, { path: '/health' })).status, 200);
    const s = run(ROTORD, ['-c', cfg, '-s', 'stop']);
    assert.strictEqual(s.status, 0, s.stderr);
    await waitFor(() => !alive(pid), 5000, 20, 'the daemon to exit');
    assert.ok(!fs.existsSync(pidFile), 'pid file removed on exit');
  } finally {
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('rotord -d with a port in use exits non-zero', async () => {
  const d = await new Rotord({}, { workers: 1 }).start();
  const dir = mkTmp();
  try {
    const cfg = path.join(dir, 'config.json');
    fs.writeFileSync(cfg, JSON.stringify({
      workers: 1, http_server: { address: '127.0.0.1', port: d.port }, shm: { dir },
      log: { file: path.join(dir, 'rotord.log') },
    }));
    const r = run(ROTORD, ['-d', '-c', cfg]);
    assert.strictEqual(r.status, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await d.stop();
  }
});
