'use strict';
// Starts and drives the real rotord for integration tests: a config in a
// fresh temporary directory, a free loopback port, the daemon in the
// foreground as a child of the test, and helpers to talk to it and to look
// at its process tree. Every daemon started here is stopped by its pid.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const builddir = process.env.ROTOR_BUILDDIR || path.resolve(__dirname, '../../..');
const ROTORD = path.join(builddir, 'src/rotord');
const ROTORCTL = path.join(builddir, 'src/rotorctl');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A port that was free a moment ago on 127.0.0.1.
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Polls fn() every `every` ms until it returns a truthy value or `ms` pass.
async function waitFor(fn, ms = 5000, every = 25, what = 'condition') {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}` +
    (last instanceof Error ? `: ${last.message}` : ''));
}

// One raw HTTP exchange on a new connection: writes `data` (string or
// Buffer) and resolves with everything the server sent until it closed the
// connection or `ms` passed.
function rawExchange(port, data, ms = 3000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    const timer = setTimeout(() => { sock.destroy(); resolve(Buffer.concat(chunks).toString('latin1')); }, ms);
    sock.on('connect', () => sock.write(data));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (e) => { if (e.code === 'ECONNRESET') return; clearTimeout(timer); reject(e); });
    sock.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1')); });
  });
}

// One GET /health on a new connection, answered or not: resolves with
// {status, error} once the server answered and closed, the connection
// failed, or MS passed ("no answer").
function oneRequest(port, ms) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    const done = (error) => {
      clearTimeout(timer);
      sock.destroy();
      const m = /^HTTP\/1\.1 (\d+)/.exec(got);
      resolve({ status: m ? Number(m[1]) : 0, error: m ? null : error });
    };
    const timer = setTimeout(() => done('no answer'), ms);
    sock.on('connect', () => sock.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    sock.on('data', (b) => { got += b; });
    sock.on('error', (e) => done(e.code || e.message));
    sock.on('close', () => done('closed'));
  });
}

// The pid of the worker the master started last for SLOT, from its log.
function workerOfSlot(d, slot) {
  const all = [...d.log().matchAll(/started worker (\d+) \(pid (\d+), generation (\d+)\)/g)];
  const m = all.filter((x) => Number(x[1]) === slot).pop();
  return m ? Number(m[2]) : 0;
}

// A minimal HTTP/1.1 request with node's http module: resolves with
// {status, headers, body}. Without an agent it opens a connection of its
// own (node's global agent would reuse kept-alive ones across tests). With
// a timeout (ms) it rejects when no whole answer came by then. With `tls`
// (node TLS options: ca, cert, key) it speaks HTTPS to "localhost".
function request(port, { method = 'GET', path: p = '/', headers = {}, body, agent = false, timeout = 0, tls } = {}) {
  const http = require(tls ? 'node:https' : 'node:http');
  tls = tls ? { servername: 'localhost', ...tls } : {};
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent, ...tls }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString() }));
    });
    if (timeout) req.setTimeout(timeout, () => req.destroy(new Error(`${method} ${p}: no answer in ${timeout} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// The server API key of every daemon Rotord starts (http_api.key).
const API_KEY = 'test-api-key';

// POSTs BODY to the server API at PATH ('/api/publish', '/api/batch'...):
// an object JSON-encoded, a string as is (byte-exact payloads), with the
// key. Resolves request()'s {status, headers, body}.
function apiPost(port, path, body, { agent = false, timeout = 10000 } = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return request(port, {
    method: 'POST', path, body: text, agent, timeout,
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) },
  });
}

// The pids whose parent is `ppid`.
function childrenOf(ppid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(d));
    } catch (_) { /* gone */ }
  }
  return out.sort((a, b) => a - b);
}

// Which of PIDS holds the server end of each established TCP connection:
// a map from the connection's client-side port to the pid, found through
// /proc (the socket inodes of each pid against /proc/net/tcp and tcp6).
// With SERVER_PORT, only connections to that port count.
function connOwners(pids, serverPort) {
  const owner = new Map();
  for (const pid of pids) {
    let fds = [];
    try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch (_) { continue; }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) owner.set(m[1], pid);
      } catch (_) { /* closed meanwhile */ }
    }
  }
  const byPort = new Map();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = fs.readFileSync(f, 'utf8'); } catch (_) { continue; }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10 || c[3] !== '01') continue; // ESTABLISHED
      if (serverPort !== undefined && parseInt(c[1].split(':')[1], 16) !== serverPort) continue;
      const pid = owner.get(c[9]);
      if (pid) byPort.set(parseInt(c[2].split(':')[1], 16), pid);
    }
  }
  return byPort;
}

// The pid among PIDS holding the server end of the connection whose client
// end is bound to local port CLIENT_PORT, or null.
function holderOf(pids, clientPort) {
  return connOwners(pids).get(clientPort) || null;
}

// Runs FN under a time bound of MS (a test must never hang).
async function bounded(ms, what, fn) {
  let timer;
  const t = new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: over ${ms} ms`)), ms); });
  try {
    return await Promise.race([fn(), t]);
  } finally {
    clearTimeout(timer);
  }
}

function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch (_) {
    return false;
  }
}

function mkTmp(prefix = 'rotor-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Runs rotorctl or rotord synchronously: {status, stdout, stderr}. Throws
// on a sanitizer report, which an expected failure status would hide.
function run(bin, args, opts = {}) {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 15000, ...opts });
  const report = sanitizerReport(`${r.stderr || ''}`);
  if (report) throw new Error(`${path.basename(bin)} ${args.join(' ')}: a sanitizer report:\n${report}`);
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// An HS256 token with CLAIMS, signed with SECRET (the test config's
// client.token.hmac_secret_key by default).
function hs256(claims, secret = 'test-secret') {
  const crypto = require('node:crypto');
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${crypto.createHmac('sha256', secret).update(body).digest('base64url')}`;
}

// A raw JSON WebSocket session on PORT, connected with TOKEN: every reply
// and push in ws.msgs (pings answered), the bytes of every WebSocket
// message received in ws.bytes, the close code in ws.closed (a promise);
// ws.call(cmd) sends a command and resolves with its reply.
async function rawJsonSession(port, token) {
  const WebSocket = require('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/connection/websocket`);
  ws.msgs = [];
  ws.bytes = 0;
  ws.on('message', (d) => {
    ws.bytes += d.length;
    for (const line of d.toString().split('\n')) {
      if (!line) continue;
      const m = JSON.parse(line);
      if (Object.keys(m).length === 0) ws.send('{}'); // pong
      else ws.msgs.push(m);
    }
  });
  ws.closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  ws.nextId = 1;
  ws.call = async (cmd) => {
    const id = ++ws.nextId;
    ws.send(JSON.stringify({ id, ...cmd }));
    return waitFor(() => ws.msgs.find((m) => m.id === id), 3000, 10, `reply ${id}`);
  };
  ws.send(JSON.stringify({ id: 1, connect: { token } }));
  await waitFor(() => ws.msgs.find((m) => m.id === 1 && m.connect), 3000, 10, 'connect');
  return ws;
}

class Rotord {
  // config: object merged over a small test config; opts.workers sets
  // `workers`; opts.env adds environment variables; opts.args adds options;
  // opts.bin runs another rotord binary (a copy the test may replace);
  // opts.wrapper is a command line that execs it (systemd-socket-activate);
  // opts.expectWorkers is the worker count start() waits for when the
  // environment or the command line overrides the file's; opts.tls (node
  // TLS options: ca, cert, key) makes start() reach /health over HTTPS, on
  // opts.healthPort when the config moves it to an internal port.
  constructor(config = {}, opts = {}) {
    this.config = config;
    this.opts = opts;
    this.dir = mkTmp();
    this.configPath = path.join(this.dir, 'config.json');
    this.logPath = path.join(this.dir, 'rotord.log');
    this.stderr = '';
  }

  writeConfig(config) {
    fs.writeFileSync(this.configPath, JSON.stringify(config, null, 2));
  }

  baseConfig() {
    return {
      workers: this.opts.workers || 2,
      http_server: { address: '127.0.0.1', port: this.port },
      log: { level: 'info', file: this.logPath },
      shm: { dir: this.dir },
      pid_file: path.join(this.dir, 'rotord.pid'),
      client: { token: { hmac_secret_key: 'test-secret' } },
      http_api: { key: API_KEY },
    };
  }

  async start() {
    this.port = this.opts.port || await freePort();
    this.fullConfig = deepMerge(this.baseConfig(), this.config);
    this.writeConfig(this.fullConfig);
    return this.launch();
  }

  // Starts the daemon again once it has exited (QUIT, or kill -9 of every
  // process): the same config file as it stands, the same port, the same
  // directory (so the same shm.dir and history data), nothing removed.
  async restart() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      throw new Error('rotord is still running');
    }
    return this.launch();
  }

  // Spawns rotord on the config file and waits until it serves /health
  // with its workers.
  async launch() {
    const argv = [...(this.opts.wrapper || []), this.opts.bin || ROTORD, '-c', this.configPath,
      ...(this.opts.args || [])];
    this.proc = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, ...(this.opts.env || {}) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => resolve({ code, signal }));
    });
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    const want = this.opts.expectWorkers || this.fullConfig.workers;
    await waitFor(async () => {
      if (this.proc.exitCode !== null) throw new Error(`rotord exited: ${this.log()}`);
      if (this.workers().length !== want) return false;
      const r = await request(this.opts.healthPort || this.port, { path: '/health', tls: this.opts.tls });
      return r.status === (this.opts.healthStatus || 200);
    }, 10000, 25, 'rotord to serve /health');
    return this;
  }

  log() {
    let s = this.stderr;
    try { s += fs.readFileSync(this.logPath, 'utf8'); } catch (_) { /* none yet */ }
    return s;
  }

  workers() { return childrenOf(this.pid); }

  // The workers' resident memory together, in kB.
  workersRss() {
    return this.workers().reduce((sum, pid) => {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      return sum + Number(m[1]);
    }, 0);
  }

  signal(sig) { process.kill(this.pid, sig); }

  // Waits for the master to exit; resolves {code, signal}.
  async waitExit(ms = 15000) {
    let timer;
    const t = new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('rotord did not exit')), ms); });
    try {
      return await Promise.race([this.exited, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  // Stops the daemon (TERM, then KILL) and removes its directory. Throws
  // if a sanitizer reported anything in any of its processes (a build
  // with --enable-sanitizers): a worker that dies of one is respawned by
  // the master, so only its report on the shared stderr or in the log
  // tells.
  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      const kids = this.workers();
      try { this.signal('SIGTERM'); } catch (_) { /* gone */ }
      try {
        await this.waitExit(10000);
      } catch (_) {
        try { process.kill(this.pid, 'SIGKILL'); } catch (e) { /* gone */ }
        for (const k of kids) { try { process.kill(k, 'SIGKILL'); } catch (e) { /* gone */ } }
      }
    }
    const report = sanitizerReport(this.log());
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (report) throw new Error(`rotord (pid ${this.pid}): a sanitizer report:\n${report}`);
  }
}

// What ASan, UBSan or LSan wrote in TEXT, from its first line, or ''.
function sanitizerReport(text) {
  const m = /^.*(runtime error:|ERROR: (Address|Leak)Sanitizer|SUMMARY: \w+Sanitizer).*$/m.exec(text);
  return m ? text.slice(m.index, m.index + 4000) : '';
}

function deepMerge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object') {
      out[k] = deepMerge(a[k], v);
    } else {
      out[k] = v;
    }
  }
  return out;
}

module.exports = {
  rawJsonSession,
  ROTORD, ROTORCTL, Rotord, freePort, waitFor, sleep, rawExchange, request, API_KEY, apiPost,
  childrenOf, alive, mkTmp, run, oneRequest, workerOfSlot, deepMerge, holderOf, connOwners, bounded, hs256, sanitizerReport,
};
