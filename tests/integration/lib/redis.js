'use strict';
// A real redis-server for the Redis engine's integration tests: started on
// a free loopback port in a temporary directory, without persistence, as a
// child of the test, and stopped by its pid; redis-cli for looking at what
// rotor left in it.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const assert = require('node:assert');
const WebSocket = require('ws');
const { freePort, waitFor, mkTmp, hs256, apiPost } = require('./rotord');

function available() {
  return spawnSync('sh', ['-c', 'command -v redis-server && command -v redis-cli']).status === 0;
}

class Redis {
  constructor(opts = {}) {
    this.opts = opts;
    this.dir = mkTmp('rotor-redis-');
  }

  async start(port) {
    this.port = port || this.port || await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--loglevel', 'warning', ...(this.opts.args || [])];
    this.proc = spawn('redis-server', args, { stdio: 'ignore' });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
    await waitFor(() => this.cli('PING').trim() === 'PONG', 5000, 20, `redis-server on ${this.port}`);
    return this;
  }

  // redis-cli with ARGS; its output as text (raw mode: no quoting).
  cli(...args) {
    const auth = this.opts.password ? ['-a', this.opts.password, '--no-auth-warning'] : [];
    const r = spawnSync('redis-cli', ['-p', String(this.port), ...auth, '--raw', ...args], { encoding: 'latin1' });
    return r.stdout || '';
  }

  // The same with binary input on stdin as the last argument (-x).
  cliStdin(input, ...args) {
    const auth = this.opts.password ? ['-a', this.opts.password, '--no-auth-warning'] : [];
    const r = spawnSync('redis-cli', ['-p', String(this.port), ...auth, '-x', ...args], { input });
    return (r.stdout || '').toString();
  }

  async kill(sig = 'SIGKILL') {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill(sig);
      await this.exited;
    }
  }

  pause(on) { this.proc.kill(on ? 'SIGSTOP' : 'SIGCONT'); }

  async stop() {
    try { this.proc.kill('SIGCONT'); } catch (_) { /* gone */ }
    await this.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// redis-sentinel from a writable config file of its own (Sentinel rewrites
// it), monitoring MASTER_NAME at 127.0.0.1:masterPort.
class Sentinel extends Redis {
  constructor(masterName, masterPort, opts = {}) {
    super(opts);
    this.masterName = masterName;
    this.masterPort = masterPort;
  }

  async start(port) {
    this.port = port || this.port || await freePort();
    const file = `${this.dir}/sentinel.conf`;
    const n = this.masterName;
    fs.writeFileSync(file, [`port ${this.port}`, 'bind 127.0.0.1', `dir ${this.dir}`, 'loglevel warning',
      `sentinel monitor ${n} 127.0.0.1 ${this.masterPort} ${this.opts.quorum || 2}`,
      `sentinel down-after-milliseconds ${n} ${this.opts.downAfter || 1000}`,
      `sentinel failover-timeout ${n} 3000`, ...(this.opts.lines || [])].join('\n') + '\n');
    this.proc = spawn('redis-sentinel', [file], { stdio: 'ignore' });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
    await waitFor(() => this.cli('PING').trim() === 'PONG', 5000, 20, `redis-sentinel on ${this.port}`);
    return this;
  }

  // The port of the master this sentinel names now, 0 if none.
  masterNow() {
    const [, port] = this.cli('SENTINEL', 'get-master-addr-by-name', this.masterName).trim().split('\n');
    return Number(port) || 0;
  }
}

function sentinelAvailable() {
  return available() && spawnSync('sh', ['-c', 'command -v redis-sentinel']).status === 0;
}

// ref/redis-engine.md §11 topology 3: a master, two replicas and three
// sentinels monitoring it as NAME (down-after 1 s, failover-timeout 3 s),
// ready for a failover (each sentinel sees the quorum and both replicas
// are linked). stop() stops every process by pid, whatever started.
async function sentinelGroup(name = 'm1') {
  const g = { name, servers: [], sentinels: [] };
  g.stop = async () => { for (const p of [...g.sentinels, ...g.servers]) await p.stop(); };
  // Ready for a failover: every sentinel sees the quorum and two replicas
  // in good state (flags "slave" only), and both replicas finished their
  // initial sync (ROLE "connected"): until then, what the master
  // acknowledges exists only there, and a failover loses it whoever the
  // client is.
  g.ready = () => waitFor(() => g.sentinels.every((s) => s.cli('SENTINEL', 'ckquorum', name).startsWith('OK 3') &&
    s.cli('SENTINEL', 'replicas', name).split('\n').filter((l, i, a) => a[i - 1] === 'flags' && l === 'slave')
      .length === 2) && g.servers.filter((r) => r.cli('ROLE').startsWith('slave\n'))
    .filter((r) => r.cli('ROLE').split('\n')[3] === 'connected').length === 2,
  20000, 100, 'the sentinels to see the quorum and two replicas in sync');
  try {
    const master = await new Redis({ args: ['--repl-diskless-sync-delay', '0'] }).start();
    g.servers.push(master);
    for (let i = 0; i < 2; i++) {
      g.servers.push(await new Redis({ args: ['--replicaof', '127.0.0.1', String(master.port)] }).start());
    }
    for (let i = 0; i < 3; i++) g.sentinels.push(await new Sentinel(name, master.port).start());
    await g.ready();
  } catch (e) {
    await g.stop();
    throw e;
  }
  g.address = g.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',');
  // The server the sentinels name master now.
  g.master = () => g.servers.find((s) => s.port === g.sentinels[0].masterNow());
  return g;
}

// A raw JSON client connected to rotord NODE as USER (the tests of the
// Redis engine spread them over nodes): what it got, a call helper, its
// close and the publications of a channel.
async function nodeClient(node, user) {
  const ws = new WebSocket(`ws://127.0.0.1:${node.port}/connection/websocket`);
  const msgs = [];
  let id = 1;
  ws.on('message', (d) => {
    for (const l of d.toString().split('\n')) {
      const m = JSON.parse(l);
      if (Object.keys(m).length === 0) ws.send('{}');
      else msgs.push(m);
    }
  });
  ws.on('error', () => {});
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  const call = async (cmd) => {
    const my = ++id;
    ws.send(JSON.stringify({ id: my, ...cmd }));
    return waitFor(() => msgs.find((m) => m.id === my), 8000, 10, `reply to ${JSON.stringify(cmd)}`);
  };
  ws.send(JSON.stringify({ id: 1, connect: { token: hs256({ sub: user }) } }));
  const c = await waitFor(() => msgs.find((m) => m.id === 1), 8000, 10, 'connect');
  assert.ok(c.connect, JSON.stringify(c));
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return { ws, msgs, call, closed, id: c.connect.client,
    pubs: (ch) => msgs.filter((m) => m.push && m.push.pub && m.push.channel === ch).map((m) => m.push.pub) };
}

// A free loopback port that leaves room for a cluster bus at port + 10000.
async function clusterPort() {
  for (let i = 0; i < 200; i++) {
    const p = await freePort();
    if (p + 10000 > 65535) continue;
    const busFree = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(p + 10000, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (busFree) return p;
  }
  throw new Error('no free port pair for a cluster node');
}

// ref/redis-engine.md §11 topology 4: N cluster-enabled servers joined by
// redis-cli --cluster create with no replicas, ready once every one says
// cluster_state:ok. g.cli(...) asks one node and follows redirections
// (redis-cli -c); g.numsub(ch) sums PUBSUB NUMSUB over the nodes (each
// counts its own subscribers). stop() stops every process by pid.
async function clusterGroup(n = 3) {
  const g = { servers: [] };
  g.stop = async () => { for (const p of g.servers) await p.stop(); };
  try {
    for (let i = 0; i < n; i++) {
      const r = new Redis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--cluster-node-timeout', '5000'] });
      g.servers.push(r);
      await r.start(await clusterPort());
    }
    const res = spawnSync('redis-cli', ['--cluster', 'create', ...g.servers.map((r) => `127.0.0.1:${r.port}`),
      '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30000 });
    if (res.status !== 0) throw new Error(`redis-cli --cluster create: ${res.stdout} ${res.stderr}`);
    await waitFor(() => g.servers.every((r) => r.cli('CLUSTER', 'INFO').includes('cluster_state:ok')), 20000, 50,
      'cluster_state:ok on every node');
  } catch (e) {
    await g.stop();
    throw e;
  }
  g.cli = (...args) => spawnSync('redis-cli', ['-c', '-p', String(g.servers[0].port), '--raw', ...args],
    { encoding: 'latin1' }).stdout || '';
  g.numsub = (ch) => g.servers.reduce((sum, r) => sum + Number(r.cli('PUBSUB', 'NUMSUB', ch).trim().split('\n')[1]), 0);
  g.seeds = (k) => g.servers.slice(0, k).map((r) => `127.0.0.1:${r.port}`).join(',');
  return g;
}

// The server API of rotord NODE: METHOD with BODY, the parsed answer.
function nodeApi(node, method, body) {
  return apiPost(node.port, `/api/${method}`, body).then((r) => JSON.parse(r.body));
}

module.exports = { nodeApi, Redis, Sentinel, available, sentinelAvailable, sentinelGroup, clusterGroup, nodeClient };
