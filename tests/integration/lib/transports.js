'use strict';
// Clients of every bidirectional transport for the integration tests:
// the official SDK (centrifuge, JSON and protobuf builds) given Node's
// fetch, ReadableStream, `ws` and `eventsource` as its own tests give them,
// and a raw JSON client that shows the wire: the messages of a WebSocket
// frame, of an HTTP-streaming response (chunked or HTTP/1.0) and of an SSE
// stream, how the stream ended, and /emulation POSTs whose status is kept.

const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const WebSocket = require('ws');
const EventSource = require('eventsource');
const { Centrifuge } = require('centrifuge');
const PB = require('centrifuge/build/protobuf');
const { Rotord, request } = require('./rotord.js');

// Every transport in every format the SDK speaks on it (protobuf: no SSE).
const TRANSPORTS = [
  { name: 'websocket', fmt: 'json' },
  { name: 'websocket', fmt: 'protobuf' },
  { name: 'http_stream', fmt: 'json' },
  { name: 'http_stream', fmt: 'protobuf' },
  { name: 'sse', fmt: 'json' },
];
const label = (t) => `${t.name}/${t.fmt}`;
const RAW_TRANSPORTS = ['websocket', 'http_stream', 'sse'];

function endpoint(port, name) {
  return name === 'websocket' ? `ws://127.0.0.1:${port}/connection/websocket`
    : `http://127.0.0.1:${port}/connection/${name}`;
}

// The SDK options that make every transport work in Node.
function sdkOptions(port, opts = {}) {
  return {
    websocket: WebSocket,
    fetch: globalThis.fetch,
    readableStream: ReadableStream,
    eventsource: EventSource,
    emulationEndpoint: `http://127.0.0.1:${port}/emulation`,
    minReconnectDelay: 50,
    maxReconnectDelay: 300,
    timeout: 3000,
    ...opts,
  };
}

// An SDK client on transport T (or on the list LIST of {transport,
// endpoint} when given), not yet connected; its 'error' events are kept in
// c.errors instead of thrown.
function sdk(port, t, opts = {}, list = null) {
  const C = t.fmt === 'protobuf' ? PB.Centrifuge : Centrifuge;
  const c = new C(list || [{ transport: t.name, endpoint: endpoint(port, t.name) }], sdkOptions(port, opts));
  c.errors = [];
  c.on('error', (e) => c.errors.push(e));
  return c;
}

// A namespace NAME where a connected client may do everything (subscribe,
// publish, history, presence), with history and recovery; EXTRA adds or
// overrides options.
function openNamespace(name, extra = {}) {
  return {
    name,
    presence: true,
    history_size: 1000,
    history_ttl: '300s',
    force_recovery: true,
    allow_subscribe_for_client: true,
    allow_publish_for_client: true,
    allow_history_for_subscriber: true,
    allow_presence_for_subscriber: true,
    ...extra,
  };
}

// Waits for EVENT on an SDK emitter (client or subscription) that PRED
// accepts; rejects after MS.
function once(em, event, ms = 5000, pred = () => true) {
  return new Promise((resolve, reject) => {
    const h = (ctx) => {
      if (!pred(ctx)) return;
      clearTimeout(t);
      em.removeListener(event, h);
      resolve(ctx);
    };
    const t = setTimeout(() => { em.removeListener(event, h); reject(new Error(`no ${event} event in ${ms} ms`)); }, ms);
    em.on(event, h);
  });
}

// ---- who holds a connection ----------------------------------------------------

// The inode of the server end of the connection from local port
// CLIENT_PORT to SERVER_PORT, in whatever state (a server end that was
// shut down but not closed still has one), or null when /proc/net/tcp
// does not show it: the table is read in pieces while it changes, retry.
function serverInode(serverPort, clientPort) {
  const want = `:${serverPort.toString(16).toUpperCase().padStart(4, '0')} `;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = fs.readFileSync(f, 'utf8'); } catch (_) { continue; }
    for (const line of text.split('\n')) {
      if (!line.includes(want)) continue; // cheap first look
      const c = line.trim().split(/\s+/);
      if (c.length < 10 || c[9] === '0') continue; // TIME_WAIT: no socket any more
      if (parseInt(c[1].split(':')[1], 16) === serverPort && parseInt(c[2].split(':')[1], 16) === clientPort) return c[9];
    }
  }
  return null;
}

// The pid among PIDS with a descriptor on socket INODE, or null: a
// reliable way to see that a server end was closed.
function inodeHolder(pids, inode) {
  for (const pid of pids) {
    let fds = [];
    try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch (_) { continue; }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch (_) { /* closed meanwhile */ }
    }
  }
  return null;
}

// ---- the daemon -------------------------------------------------------------------

// Starts rotord with CONFIG and WORKERS workers, with rd.agent for the
// server API calls of a test (kept alive: many calls would otherwise leave
// as many sockets in TIME_WAIT). A daemon that does not start leaves no
// directory behind. Stop it with stopDaemon.
async function startDaemon(config, workers) {
  const rd = new Rotord(config, { workers });
  try {
    await rd.start();
  } catch (e) {
    await rd.stop();
    throw e;
  }
  rd.agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  return rd;
}

// Stops RD (or, when it exited by itself, removes its directory).
async function stopDaemon(rd, exited = false) {
  rd.agent.destroy();
  if (exited) fs.rmSync(rd.dir, { recursive: true, force: true });
  else await rd.stop();
}

// ---- the raw client ------------------------------------------------------------

// An /emulation POST on a connection of its own: resolves {status, headers, body}.
function emulationPost(port, body, { ctype = 'application/json', headers = {}, agent = false } = {}) {
  const data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return request(port, {
    method: 'POST', path: '/emulation', body: data, agent, timeout: 10000,
    headers: { 'Content-Type': ctype, 'Content-Length': Buffer.byteLength(data), ...headers },
  });
}

// Reads an HTTP response from a socket byte by byte as it comes: the head,
// then the body (chunked, or up to EOF), handed on in pieces.
class ResponseReader {
  constructor(onHead, onBody, onEnd) {
    this.buf = Buffer.alloc(0);
    this.head = null;
    this.chunked = false;
    this.terminated = false; // the last chunk (0\r\n\r\n) came
    this.onHead = onHead;
    this.onBody = onBody;
    this.onEnd = onEnd;
  }

  feed(d) {
    this.buf = Buffer.concat([this.buf, d]);
    if (!this.head) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      const lines = this.buf.subarray(0, i).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.(\d) (\d{3})/.exec(lines[0]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const k = l.indexOf(':');
        headers[l.slice(0, k).trim().toLowerCase()] = l.slice(k + 1).trim();
      }
      this.head = { version: m ? `1.${m[1]}` : '?', status: m ? Number(m[2]) : 0, headers, text: lines.join('\n') };
      this.chunked = /chunked/i.test(headers['transfer-encoding'] || '');
      this.buf = this.buf.subarray(i + 4);
      this.onHead(this.head);
    }
    if (!this.chunked) {
      if (this.buf.length) this.onBody(this.buf);
      this.buf = Buffer.alloc(0);
      return;
    }
    while (!this.terminated) {
      const i = this.buf.indexOf('\r\n');
      if (i < 0) return;
      const n = parseInt(this.buf.subarray(0, i).toString('latin1'), 16);
      if (n === 0) {
        if (this.buf.length < i + 4) return;
        this.terminated = true;
        this.buf = this.buf.subarray(i + 4);
        return;
      }
      if (this.buf.length < i + 2 + n + 2) return;
      this.onBody(this.buf.subarray(i + 2, i + 2 + n));
      this.buf = this.buf.subarray(i + 2 + n + 2);
    }
  }
}

// One JSON session over a transport, driven by hand. Every message that
// arrives is parsed into `messages`; pings ({}) are answered unless
// autoPong is off; `ended` resolves once the transport is over with
// {code, reason} of the close frame (WebSocket) or of the last disconnect
// push (streams: code 0 when there was none), `clean` (streams: the
// response was complete: the last chunk came, or HTTP/1.0 EOF) and the
// messages received.
class RawClient {
  constructor(port, transport, opts) {
    this.port = port;
    this.transport = transport;
    this.opts = opts;
    this.messages = [];
    this.waiters = [];
    this.autoPong = opts.autoPong !== false;
    this.pongs = [];
    this.ended = new Promise((resolve) => { this.endResolve = resolve; });
    this.isEnded = false;
  }

  // Opens it with the connect command CONNECT (an object: the
  // ConnectRequest) and waits for the connect reply; resolves the client,
  // with `result` the ConnectResult (or `reply` the whole reply when it
  // carries no result). Options: autoPong, http10, headers, method (sse),
  // waitConnect (default true).
  static async open(port, transport, connect = {}, opts = {}) {
    const c = new RawClient(port, transport, opts);
    const first = c.next((m) => m.id === 1, opts.ms || 5000);
    c.start(JSON.stringify({ id: 1, connect }));
    if (opts.waitConnect === false) {
      first.catch(() => {}); // a refused connection never answers
      return c;
    }
    const reply = await first;
    c.reply = reply;
    c.result = reply.connect;
    if (c.result) {
      c.session = c.result.session;
      c.node = c.result.node;
    }
    return c;
  }

  start(connectText) {
    if (this.transport === 'websocket') return this.startWs(connectText);
    const { http10 = false, headers = {} } = this.opts;
    const sock = net.connect(this.port, '127.0.0.1');
    this.sock = sock;
    let head;
    if (this.transport === 'http_stream') {
      head = `POST /connection/http_stream HTTP/1.${http10 ? 0 : 1}\r\nHost: 127.0.0.1\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(connectText)}\r\n`;
    } else if ((this.opts.method || 'GET') === 'GET') {
      head = `GET /connection/sse?cf_connect=${encodeURIComponent(connectText)} HTTP/1.${http10 ? 0 : 1}\r\n` +
        'Host: 127.0.0.1\r\nAccept: text/event-stream\r\n';
    } else {
      head = `POST /connection/sse HTTP/1.${http10 ? 0 : 1}\r\nHost: 127.0.0.1\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(connectText)}\r\n`;
    }
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    head += '\r\n';
    const body = this.transport === 'http_stream' || this.opts.method === 'POST' ? connectText : '';
    this.text = '';
    this.reader = new ResponseReader((h) => {
      this.head = h;
      if (h.status !== 200) this.finish(); // refused: nothing to stream
    }, (b) => { if (!this.isEnded) this.onStreamBytes(b); }, null);
    sock.on('connect', () => { this.localPort = sock.localPort; sock.write(head + body); });
    sock.on('data', (d) => this.reader.feed(d));
    sock.on('error', () => {});
    sock.on('close', () => this.finish());
  }

  startWs(connectText) {
    const ws = new WebSocket(endpoint(this.port, 'websocket'), { headers: this.opts.headers || {} });
    this.ws = ws;
    ws.on('open', () => { this.localPort = ws._socket.localPort; this.sock = ws._socket; ws.send(connectText); });
    ws.on('message', (data) => {
      for (const line of data.toString().split('\n')) if (line.trim()) this.onMessage(this.parse(line));
    });
    ws.on('unexpected-response', (req, res) => {
      this.head = { status: res.statusCode, headers: res.headers };
      this.finish();
    });
    ws.on('error', () => {});
    ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.finish();
    });
  }

  // The stream's framing: JSON lines (http_stream) or SSE events after a
  // "\r\n" prelude.
  onStreamBytes(b) {
    this.text += b.toString('utf8');
    if (this.transport === 'http_stream') {
      let i;
      while ((i = this.text.indexOf('\n')) >= 0) {
        const line = this.text.slice(0, i);
        this.text = this.text.slice(i + 1);
        if (line.length) this.onMessage(this.parse(line));
      }
      return;
    }
    if (this.prelude === undefined) {
      if (this.text.length < 2) return;
      this.prelude = this.text.slice(0, 2);
      this.text = this.text.slice(2);
    }
    let i;
    while ((i = this.text.indexOf('\n\n')) >= 0) {
      const ev = this.text.slice(0, i);
      this.text = this.text.slice(i + 2);
      const data = ev.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      this.onMessage(this.parse(data));
    }
  }

  // Parses one message; text that is not JSON is kept as {unparsed}.
  parse(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return { unparsed: text };
    }
  }

  onMessage(m) {
    this.messages.push(m);
    if (this.autoPong && Object.keys(m).length === 0) this.pongs.push(this.send([{}]));
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(m)) return true;
      clearTimeout(w.timer);
      w.resolve(m);
      return false;
    });
  }

  finish() {
    if (this.isEnded) return;
    this.isEnded = true;
    let code = this.closeCode;
    let reason = this.closeReason;
    if (this.transport !== 'websocket') {
      const last = this.messages[this.messages.length - 1];
      const d = last && last.push && last.push.disconnect;
      code = d ? d.code : 0;
      reason = d ? d.reason : '';
    }
    const clean = this.transport === 'websocket' ? true
      : this.head && this.head.version === '1.1' && /chunked/i.test(this.head.headers['transfer-encoding'] || '')
        ? this.reader.terminated : this.text === '';
    for (const w of this.waiters) { clearTimeout(w.timer); w.reject(new Error(`${this.transport}: ended (${code} ${reason}) before the awaited message`)); }
    this.waiters = [];
    this.endResolve({ code, reason, clean, messages: this.messages });
  }

  // The first message (already received or to come) that PRED accepts.
  next(pred, ms = 5000) {
    const have = this.messages.find(pred);
    if (have) return Promise.resolve(have);
    if (this.isEnded) return Promise.reject(new Error(`${this.transport}: already ended`));
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.transport}: no such message in ${ms} ms (have ${JSON.stringify(this.messages).slice(0, 400)})`));
      }, ms);
      this.waiters.push(w);
    });
  }

  // Sends commands CMDS (objects): a WebSocket frame, or an /emulation
  // POST (resolves its status).
  async send(cmds, { ctype } = {}) {
    const data = cmds.map((x) => JSON.stringify(x)).join('\n');
    if (this.transport === 'websocket') {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
      return 0;
    }
    const r = await emulationPost(this.port, { session: this.session, node: this.node, data }, { ctype });
    return r.status;
  }

  // Sends one command with id ID and resolves its reply.
  async call(id, cmd, ms = 5000) {
    const reply = this.next((m) => m.id === id, ms);
    await this.send([{ id, ...cmd }]);
    return reply;
  }

  pause() { this.sock.pause(); }

  resume() { this.sock.resume(); }

  // Waits until the transport is over; rejects after MS.
  async end(ms = 10000) {
    let t;
    const to = new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${this.transport}: not ended in ${ms} ms`)), ms); });
    try {
      return await Promise.race([this.ended, to]);
    } finally {
      clearTimeout(t);
    }
  }

  close() {
    if (this.ws) this.ws.terminate();
    else if (this.sock) this.sock.destroy();
  }
}

module.exports = {
  TRANSPORTS, RAW_TRANSPORTS, label, endpoint, sdkOptions, sdk, once, openNamespace, emulationPost, RawClient,
  ResponseReader, serverInode, inodeHolder, startDaemon, stopDaemon,
};
