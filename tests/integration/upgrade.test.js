'use strict';
// Binary upgrade (USR2, rotorctl upgrade): the new master inherits the
// listening sockets and the shared memory, serves, and the old one drains;
// a new binary that fails or refuses the running layout leaves the old one
// serving with its pid file; a USR2 during an upgrade is refused; the
// service manager hears READY/RELOADING/MAINPID/STOPPING (sd_notify).
//
// Every test runs a copy of rotord from its own directory, so that it can
// replace "the installed binary" as a package upgrade would.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const {
  Rotord, ROTORD, ROTORCTL, waitFor, sleep, alive, hs256, apiPost, deepMerge, childrenOf, request, oneRequest,
  workerOfSlot,
} = require('./lib/rotord.js');

const NS = {
  name: 'up', history_size: 1000, history_ttl: '300s', force_recovery: true,
  allow_subscribe_for_client: true,
};
const CLIENTS = Number(process.env.ROTOR_UPGRADE_CLIENTS || 2000);

// A rotord started from a copy of the binary in its own directory.
async function startCopy(config = {}, opts = {}) {
  const d = new Rotord(deepMerge({ channel: { namespaces: [NS] } }, config), { workers: 2, ...opts });
  d.bin = path.join(d.dir, 'rotord');
  fs.copyFileSync(ROTORD, d.bin);
  fs.chmodSync(d.bin, 0o755);
  d.opts.bin = d.bin;
  d.pidPath = d.baseConfig().pid_file;
  d.masters = new Set();
  await d.start();
  d.masters.add(d.pid);
  return d;
}

// Replaces the binary at D's path as a package manager does: a new file
// renamed over the old one.
function replaceBinary(d, content, mode = 0o755) {
  const tmp = `${d.bin}.new`;
  if (Buffer.isBuffer(content)) fs.writeFileSync(tmp, content);
  else fs.writeFileSync(tmp, content);
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, d.bin);
}

const readPid = (d) => {
  try { return Number(fs.readFileSync(d.pidPath, 'utf8').trim()) || 0; } catch (_) { return 0; }
};

// Waits until the pid file names a master other than OLD that runs while
// OLD has exited; returns the new pid.
async function waitNewMaster(d, old, ms = 30000) {
  const pid = await waitFor(() => {
    const p = readPid(d);
    return p && p !== old && alive(p) && !alive(old) ? p : 0;
  }, ms, 25, 'a new master serving and the old one gone');
  d.masters.add(pid);
  return pid;
}

// Stops every master this test saw (the new ones are not the test's
// children), then the Rotord itself (its directory, sanitizer check).
async function stopAll(d) {
  for (const pid of d.masters) {
    if (pid === d.pid || !alive(pid)) continue;
    const kids = childrenOf(pid);
    try { process.kill(pid, 'SIGTERM'); } catch (_) { /* gone */ }
    try {
      await waitFor(() => !alive(pid), 10000, 25, `master ${pid} to exit`);
    } catch (_) {
      for (const k of [pid, ...kids]) { try { process.kill(k, 'SIGKILL'); } catch (e) { /* gone */ } }
    }
  }
  await d.stop();
}

// Runs rotorctl upgrade without blocking this process (run() would: the
// clients and the publisher here must go on while it waits); resolves
// {status, stdout, stderr}.
function upgrade(d) {
  return new Promise((resolve) => {
    const p = spawn(ROTORCTL, ['upgrade', '-c', d.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (b) => { stdout += b; });
    p.stderr.on('data', (b) => { stderr += b; });
    p.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

const token = (sub) => hs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 });

// An SDK client subscribed to CHANNEL with recovery, recording publications,
// subscribed contexts, connects, and every error of the sockets under it.
function sdkSub(port, channel, user) {
  const st = { seqs: [], subscribed: [], connects: 0, disconnects: [], wsErrors: [], unsubscribed: [] };
  class TrackedWs extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.on('error', (e) => st.wsErrors.push(e.code || e.message));
      this.on('unexpected-response', (_, res) => st.wsErrors.push(`HTTP ${res.statusCode}`));
    }
  }
  const c = new Centrifuge(`ws://127.0.0.1:${port}/connection/websocket`, {
    token: token(user), websocket: TrackedWs, minReconnectDelay: 100, maxReconnectDelay: 2000, timeout: 20000,
  });
  st.c = c;
  c.on('connected', () => { st.connects++; });
  // A reconnect-advised disconnect puts the client back in 'connecting'
  // with its code (the first 'connecting' is the connect call itself, 0).
  c.on('connecting', (ctx) => { if (ctx.code) st.disconnects.push(ctx.code); });
  c.on('disconnected', (ctx) => { st.disconnects.push(`disconnected ${ctx.code}`); });
  const sub = c.newSubscription(channel);
  st.sub = sub;
  sub.on('subscribed', (ctx) => st.subscribed.push({
    wasRecovering: ctx.wasRecovering, recovered: ctx.recovered,
    epoch: ctx.streamPosition && ctx.streamPosition.epoch,
  }));
  sub.on('unsubscribed', (ctx) => st.unsubscribed.push(ctx.code));
  sub.on('publication', (ctx) => st.seqs.push(ctx.data.seq));
  sub.subscribe();
  c.connect();
  return st;
}

// Publishes {seq} to CHANNEL through the API, one request (on a new
// connection) at a time, until stop(); records acked seqs and failures.
function publisher(port, channel) {
  const p = { acked: [], failed: [], stopped: false, seq: 1 };
  p.done = (async () => {
    while (!p.stopped && p.seq <= 900) {
      const seq = p.seq++;
      try {
        const r = await apiPost(port, '/api/publish', { channel, data: { seq } }, { timeout: 20000 });
        const body = JSON.parse(r.body);
        if (r.status === 200 && body.result) p.acked.push(seq);
        else p.failed.push(`${seq}: ${r.status} ${r.body}`);
      } catch (e) {
        p.failed.push(`${seq}: ${e.code || e.message}`);
      }
      await sleep(20);
    }
  })();
  p.stop = async () => { p.stopped = true; await p.done; };
  return p;
}

test(`USR2 under load: ${CLIENTS} recovering subscribers and an API publisher lose nothing, get nothing twice`,
  { timeout: 240000 }, async () => {
    const d = await startCopy();
    const clients = [];
    let pub;
    try {
      const channel = 'up:load';
      for (let i = 0; i < CLIENTS; i++) {
        clients.push(sdkSub(d.port, channel, `u${i}`));
        if (i % 200 === 199) await waitFor(() => clients.every((st) => st.subscribed.length > 0), 60000, 20,
          `${i + 1} clients subscribed`);
      }
      await waitFor(() => clients.every((st) => st.subscribed.length > 0), 60000, 20, 'every client subscribed');
      const epoch = clients[0].subscribed[0].epoch;
      pub = publisher(d.port, channel);
      await waitFor(() => pub.acked.length >= 10, 60000, 10, 'publications before the upgrade');

      const old = d.pid;
      const oldWorkers = d.workers();
      const r = await upgrade(d);
      assert.strictEqual(r.status, 0, `rotorctl upgrade: ${r.stderr}\n${d.log().slice(-3000)}`);
      assert.match(r.stdout, /new master \(pid \d+\) serves/);
      const now = await waitNewMaster(d, old);
      assert.notStrictEqual(now, old);
      assert.deepStrictEqual(await d.waitExit(1000), { code: 0, signal: null }, 'the old master exits 0');
      assert.ok(oldWorkers.every((w) => !alive(w)), 'the old workers are gone');
      assert.ok(!fs.existsSync(`${d.pidPath}.oldbin`), 'no .oldbin left');
      // Every client is back on the new workers, recovered.
      await waitFor(() => clients.every((st) => st.sub.state === 'subscribed' && st.connects >= 2), 60000, 50,
        'every client reconnected and resubscribed');
      // The publisher goes on a while against the new workers alone.
      const after = pub.acked.length;
      await waitFor(() => pub.acked.length >= after + 10, 60000, 10, 'publications after the upgrade');
      await pub.stop();
      const lastSeq = 5000;
      const lr = await apiPost(d.port, '/api/publish', { channel, data: { seq: lastSeq } });
      assert.strictEqual(lr.status, 200);
      pub.acked.push(lastSeq);
      await waitFor(() => clients.every((st) => st.seqs[st.seqs.length - 1] === lastSeq), 30000, 50,
        'the last publication everywhere');

      assert.deepStrictEqual(pub.failed, [], 'no API request failed');
      const hist = JSON.parse((await apiPost(d.port, '/api/history', { channel, limit: -1 })).body).result;
      const stream = hist.publications.map((p) => p.data.seq);
      assert.deepStrictEqual(stream, pub.acked, 'the stream holds every acked publication once, in order');
      assert.strictEqual(hist.epoch, epoch, 'the stream kept its epoch across the upgrade');
      let wrong = 0, unrecovered = 0;
      const errors = new Map();
      for (const st of clients) {
        if (JSON.stringify(st.seqs) !== JSON.stringify(stream)) wrong++;
        for (const s of st.subscribed.slice(1)) if (!(s.wasRecovering && s.recovered && s.epoch === epoch)) unrecovered++;
        for (const e of st.wsErrors) errors.set(e, (errors.get(e) || 0) + 1);
      }
      assert.deepStrictEqual([...errors], [], 'no connection refused or reset');
      assert.strictEqual(wrong, 0, `${wrong} client(s) did not get every publication exactly once in order`);
      assert.strictEqual(unrecovered, 0, `${unrecovered} resubscription(s) did not recover`);
      const codes = new Set(clients.flatMap((st) => st.disconnects));
      assert.deepStrictEqual([...codes], [3001], 'the old workers told their clients to reconnect (3001)');
      assert.ok(/upgrade: serving; telling the old master/.test(d.log()));
    } finally {
      if (pub) await pub.stop();
      for (const st of clients) { try { st.c.disconnect(); } catch (_) { /* closed */ } }
      await stopAll(d);
    }
  });

// The listening sockets change hands: nothing waiting in one may be lost.
// An old worker is stopped (SIGSTOP) while connections queue on its
// socket and the new binary comes up with fewer workers than there are
// sockets; everything queued or still arriving must be served by the new
// workers while it stays stopped, and nothing reset when it resumes.
test('USR2 with fewer workers: connections queued on a stopped old worker\'s socket are served, none reset', { timeout: 60000 }, async () => {
  const d = await startCopy({}, { workers: 3 });
  const stopped = workerOfSlot(d, 2);
  try {
    assert.ok(stopped > 0, 'worker 2 found in the log');
    const old = d.pid;
    process.kill(stopped, 'SIGSTOP');
    const early = Array.from({ length: 60 }, () => oneRequest(d.port, 15000));
    await sleep(300);
    d.fullConfig = deepMerge(d.fullConfig, { workers: 2 });
    d.writeConfig(d.fullConfig);
    d.signal('SIGUSR2');
    await waitFor(() => /upgrade: serving; telling the old master/.test(d.log()), 30000, 20, 'the new master serving');
    const late = Array.from({ length: 60 }, () => oneRequest(d.port, 15000));
    const rs = await Promise.all([...early, ...late]);
    const bad = rs.filter((r) => r.status !== 200).map((r) => r.error);
    assert.strictEqual(bad.length, 0, `${bad.length} of ${rs.length} requests failed while the old worker 2 was ` +
      `stopped: ${[...new Set(bad)].join(', ')}`);
    process.kill(stopped, 'SIGCONT');
    const during = [];
    while (alive(old)) {
      during.push(oneRequest(d.port, 15000));
      await sleep(5);
    }
    const rs2 = await Promise.all(during);
    const bad2 = rs2.filter((r) => r.status !== 200).map((r) => r.error);
    assert.strictEqual(bad2.length, 0, `failed while the old master exited: ${[...new Set(bad2)].join(', ')}`);
    const now = await waitNewMaster(d, old);
    assert.strictEqual(childrenOf(now).length, 2);
  } finally {
    try { process.kill(stopped, 'SIGCONT'); } catch (_) { /* gone */ }
    await stopAll(d);
  }
});

test('a new binary that fails, or refuses the running layout, leaves the old master serving with its pid file', { timeout: 60000 }, async () => {
  const d = await startCopy();
  try {
    const old = d.pid;
    const good = fs.readFileSync(d.bin);
    // A binary that dies at once.
    replaceBinary(d, '#!/bin/sh\nexit 1\n');
    let r = await upgrade(d);
    assert.strictEqual(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /failed before it served \(exit status 1.*the old master \(pid \d+\) still serves/);
    assert.match(d.log(), /upgrade: the new master \(pid \d+\) exited with status 1 before it served; this master keeps serving/);
    assert.strictEqual(readPid(d), old, 'the pid file is back');
    assert.ok(!fs.existsSync(`${d.pidPath}.oldbin`));
    assert.ok(alive(old));
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);

    // The real binary again, but the config changes the bus geometry: the
    // new master refuses to attach the running bus and exits 3.
    replaceBinary(d, good);
    d.fullConfig = deepMerge(d.fullConfig, { shm: { bus_size: 1048576 } });
    d.writeConfig(d.fullConfig);
    r = await upgrade(d);
    assert.strictEqual(r.status, 3, r.stdout + r.stderr);
    assert.match(r.stderr, /refused the running master's shared memory layout/);
    assert.match(d.log(), /upgrade: the bus segment \S+rotor-\d+\.bus is \d+ bytes, this configuration makes it \d+ \(shm\.bus_size changed\); a full restart is required/);
    assert.match(d.log(), /exited with status 3 before it served/);
    assert.strictEqual(readPid(d), old);
    assert.ok(alive(old));
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);
    const workers = d.workers();
    assert.strictEqual(workers.length, 2, 'the old workers serve on');

    // The config back, but the running bus segment says another layout
    // version (its seg_hdr.version, bytes 12-15, which nothing reads after
    // attaching): the new master names the segment and both versions.
    d.fullConfig = deepMerge(d.fullConfig, { shm: { bus_size: 16777216 } });
    d.writeConfig(d.fullConfig);
    const busPath = path.join(d.dir, `rotor-${d.port}.bus`);
    const fd = fs.openSync(busPath, 'r+');
    const ver = Buffer.alloc(4);
    fs.readSync(fd, ver, 0, 4, 12);
    const real = ver.readUInt32LE(0);
    const fake = Buffer.alloc(4);
    fake.writeUInt32LE(real + 98);
    fs.writeSync(fd, fake, 0, 4, 12);
    try {
      r = await upgrade(d);
    } finally {
      fs.writeSync(fd, ver, 0, 4, 12);
      fs.closeSync(fd);
    }
    assert.strictEqual(r.status, 3, r.stdout + r.stderr);
    assert.ok(d.log().includes(`upgrade: the layout of the bus segment ${busPath} changed from version ${real + 98} ` +
      `(running) to ${real} (this binary); a full restart is required`), d.log().slice(-2000));
    assert.strictEqual(readPid(d), old);
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);

    // Then the same binary upgrades.
    r = await upgrade(d);
    assert.strictEqual(r.status, 0, r.stderr);
    const now = await waitNewMaster(d, old);
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);
    assert.strictEqual(childrenOf(now).length, 2);
  } finally {
    await stopAll(d);
  }
});

test('a new master stopped while its old master still drains leaves the shared segments to it', { timeout: 60000 }, async () => {
  const d = await startCopy();
  const net = require('node:net');
  let sock;
  try {
    const old = d.pid;
    // A request in flight keeps an old worker draining after the QUIT.
    sock = net.connect(d.port, '127.0.0.1');
    sock.on('error', () => {});
    let got = '';
    sock.on('data', (b) => { got += b; });
    await new Promise((r) => sock.on('connect', r));
    sock.write('POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345');
    await sleep(200);
    d.signal('SIGUSR2');
    await waitFor(() => /upgrade: serving; telling the old master/.test(d.log()), 30000, 20, 'the new master serving');
    const now = await waitFor(() => { const p = readPid(d); return p !== old && p; }, 30000, 20, 'the new pid file');
    d.masters.add(now);
    assert.ok(alive(old), 'the old master drains the request');
    process.kill(now, 'SIGQUIT');
    await waitFor(() => !alive(now), 30000, 20, 'the new master to exit');
    assert.match(d.log(), new RegExp(`the old master \\(pid ${old}\\) serves on; the shared segments stay`));
    for (const f of ['bus', 'pres']) {
      assert.ok(fs.existsSync(path.join(d.dir, `rotor-${d.port}.${f}`)), `the ${f} segment is still there`);
    }
    assert.ok(alive(old));
    sock.write('67890');
    assert.deepStrictEqual(await d.waitExit(30000), { code: 0, signal: null });
    assert.match(got, /^HTTP\/1\.1 200 /, 'the request in flight was answered');
  } finally {
    if (sock) sock.destroy();
    await stopAll(d);
  }
});

test('a USR2 while an upgrade is in flight is refused, and the upgrade completes once', { timeout: 60000 }, async () => {
  const d = await startCopy();
  try {
    const old = d.pid;
    // A new binary slow to start: a script that waits, then execs the real
    // one in the same process (LISTEN_PID stays right).
    const real = `${d.bin}.real`;
    fs.copyFileSync(ROTORD, real);
    fs.chmodSync(real, 0o755);
    const gate = path.join(d.dir, 'gate');
    replaceBinary(d, `#!/bin/sh\nwhile [ ! -e '${gate}' ]; do sleep 0.05; done\nexec '${real}' "$@"\n`);
    d.signal('SIGUSR2');
    await waitFor(() => fs.existsSync(`${d.pidPath}.oldbin`), 30000, 20, 'the pid file renamed .oldbin');
    d.signal('SIGUSR2');
    await waitFor(() => /upgrade: already in flight \(new master pid \d+\); SIGUSR2 ignored/.test(d.log()),
      10000, 20, 'the refusal');
    const r = await upgrade(d);
    assert.notStrictEqual(r.status, 0);
    assert.match(r.stderr, /no pid in|belongs to pid|refused/, r.stderr);
    fs.writeFileSync(gate, '');
    const now = await waitNewMaster(d, old);
    assert.strictEqual((d.log().match(/upgrade: started /g) || []).length, 1, 'one new master only');
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);
    assert.strictEqual(childrenOf(now).length, 2);
  } finally {
    await stopAll(d);
  }
});

// A unix datagram listener standing in for the service manager: every
// message it receives, in order.
async function notifyListener(addr) {
  const py = spawn('python3', ['-u', '-c', `
import json, socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + a[1:] if a.startswith('@') else a)
print('"listening"')
while True:
    d, _ = s.recvfrom(65536)
    print(json.dumps(d.decode()))
`, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
  const l = { msgs: [], proc: py };
  let buf = '';
  py.stdout.on('data', (b) => {
    buf += b;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      l.msgs.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  l.stop = () => { try { process.kill(py.pid, 'SIGKILL'); } catch (_) { /* gone */ } };
  try {
    await waitFor(() => l.msgs[0] === 'listening', 30000, 20, 'the notify listener');
  } catch (e) {
    l.stop();
    throw e;
  }
  l.msgs.shift();
  return l;
}

test('sd_notify: READY at start, RELOADING/READY around HUP, MAINPID and READY from the new master, STOPPING', { timeout: 60000 }, async () => {
  const dir = fs.mkdtempSync('/tmp/rotor-notify-');
  const sockPath = path.join(dir, 'notify.sock');
  const l = await notifyListener(sockPath);
  let d;
  try {
    d = await startCopy({}, { env: { NOTIFY_SOCKET: sockPath } });
    await waitFor(() => l.msgs.some((m) => /^READY=1$/m.test(m)), 20000, 20, 'READY=1');
    assert.ok(l.msgs.every((m) => !/MAINPID/.test(m)), 'no MAINPID at a plain start');
    // A reload in place.
    l.msgs.length = 0;
    d.fullConfig = deepMerge(d.fullConfig, { log: { level: 'debug' } });
    d.writeConfig(d.fullConfig);
    d.signal('SIGHUP');
    await waitFor(() => l.msgs.length >= 2, 20000, 20, 'RELOADING then READY');
    assert.match(l.msgs[0], /^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    assert.match(l.msgs[1], /^READY=1$/m);
    // A reload with new workers: READY only once they serve.
    l.msgs.length = 0;
    d.fullConfig = deepMerge(d.fullConfig, { workers: 3 });
    d.writeConfig(d.fullConfig);
    d.signal('SIGHUP');
    await waitFor(() => l.msgs.length >= 2, 20000, 20, 'RELOADING then READY');
    assert.match(l.msgs[0], /^RELOADING=1/);
    assert.match(l.msgs[1], /^READY=1/m);
    // The upgrade: the old master says RELOADING, the new one MAINPID+READY,
    // the old one STOPPING as it drains.
    l.msgs.length = 0;
    const old = d.pid;
    const r = await upgrade(d);
    assert.strictEqual(r.status, 0, r.stderr);
    const now = await waitNewMaster(d, old);
    await waitFor(() => l.msgs.some((m) => /STOPPING=1/.test(m)), 20000, 20, 'STOPPING from the old master');
    const i = l.msgs.findIndex((m) => /^RELOADING=1/m.test(m));
    const j = l.msgs.findIndex((m) => m.startsWith(`MAINPID=${now}\nREADY=1`));
    const k = l.msgs.findIndex((m) => /STOPPING=1/.test(m));
    assert.ok(i >= 0 && j > i && k > j, `order: ${JSON.stringify(l.msgs)}`);
    // The new master stops: STOPPING.
    l.msgs.length = 0;
    process.kill(now, 'SIGQUIT');
    await waitFor(() => !alive(now), 30000, 20, 'the new master to exit');
    await waitFor(() => l.msgs.some((m) => /STOPPING=1/.test(m)), 20000, 20, 'STOPPING from the new master');
  } finally {
    l.stop();
    if (d) await stopAll(d);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('sd_notify to an abstract socket (@name)', { timeout: 30000 }, async () => {
  const name = `@rotor-notify-${process.pid}-${Date.now()}`;
  const l = await notifyListener(name);
  let d;
  try {
    d = await startCopy({}, { env: { NOTIFY_SOCKET: name } });
    await waitFor(() => l.msgs.some((m) => /^READY=1$/m.test(m)), 20000, 20, 'READY=1');
  } finally {
    l.stop();
    if (d) await stopAll(d);
  }
});

// systemd's socket activation through the same code as the upgrade: one
// socket passed without SO_REUSEPORT, shared by the workers, handed on.
const activator = spawnSync('sh', ['-c', 'command -v systemd-socket-activate'], { encoding: 'utf8' }).stdout.trim();
test('socket activation: one passed socket is shared by the workers and handed on by USR2',
  { timeout: 60000, skip: activator ? false : 'systemd-socket-activate is not installed' }, async () => {
    const { freePort } = require('./lib/rotord.js');
    const port = await freePort();
    // The activator runs rotord at the first connection: this one, which
    // waits in the socket's queue meanwhile and must be served.
    const first = (async () => { await sleep(300); return oneRequest(port, 20000); })();
    const d = await startCopy({}, { port, wrapper: [activator, '-l', `127.0.0.1:${port}`] });
    try {
      assert.strictEqual((await first).status, 200, 'the connection that started it is served');
      assert.match(d.log(), /took 1 listening socket\(s\) from the service manager/);
      assert.match(d.log(), /the 1 listening socket\(s\) passed without SO_REUSEPORT are shared by the 2 workers/);
      const before = await Promise.all(Array.from({ length: 40 }, () => oneRequest(d.port, 15000)));
      assert.deepStrictEqual(before.filter((r) => r.status !== 200), []);
      const old = d.pid;
      const r = await upgrade(d);
      assert.strictEqual(r.status, 0, r.stderr);
      const now = await waitNewMaster(d, old);
      assert.match(d.log(), /took 1 listening socket\(s\) from the old master/);
      assert.strictEqual(childrenOf(now).length, 2);
      const after = await Promise.all(Array.from({ length: 40 }, () => oneRequest(d.port, 15000)));
      assert.deepStrictEqual(after.filter((x) => x.status !== 200), []);
    } finally {
      await stopAll(d);
    }
  });
