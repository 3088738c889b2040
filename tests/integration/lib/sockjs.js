'use strict';
// Raw HTTP for the SockJS tests: every request on a fresh TCP connection
// (so that, with several workers, one session's requests land on different
// workers, as a browser's pooled connections do), responses read byte for
// byte, and streaming responses read one HTTP chunk at a time (SockJS sends
// every frame in a chunk of its own).

const net = require('node:net');

// Parses the head of a response in BUF (latin1 string) if complete:
// {status, version, headers (lower-case names; repeated ones joined by
// ', '), rest}.
function parseHead(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.(\d) (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    const k = l.slice(0, i).trim().toLowerCase();
    const v = l.slice(i + 1).trim();
    headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
  }
  return { version: `1.${m[1]}`, status: Number(m[2]), headers, rest: buf.slice(end + 4) };
}

// A response read from a socket as it arrives: the head, then the body in
// HTTP chunks (chunked), or in whatever pieces arrive (HTTP/1.0 streams).
class Response {
  constructor(sock) {
    this.sock = sock;
    this.buf = '';          // latin1: bytes as they came
    this.closed = false;
    this.waiters = [];
    sock.setNoDelay(true);
    sock.on('data', (d) => { this.buf += d.toString('latin1'); this.wake(); });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => {});
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // Waits until pred() returns non-undefined, up to MS.
  async until(pred, ms, what) {
    const end = Date.now() + ms;
    for (;;) {
      const v = pred();
      if (v !== undefined) return v;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}; have ${JSON.stringify(this.buf.slice(0, 300))}`);
      await new Promise((res) => { const t = setTimeout(res, left); this.waiters.push(() => { clearTimeout(t); res(); }); });
    }
  }

  async head(ms = 3000) {
    const h = await this.until(() => parseHead(this.buf) || (this.closed ? null : undefined), ms, 'a response head');
    if (!h) throw new Error('connection closed before a response head');
    this.buf = h.rest;
    Object.assign(this, { status: h.status, version: h.version, headers: h.headers });
    this.chunked = /chunked/i.test(h.headers['transfer-encoding'] || '');
    return this;
  }

  // The next chunk's data as a UTF-8 string; '' for the last chunk; null
  // when the connection closed instead.
  async chunk(ms = 3000) {
    return this.until(() => {
      const nl = this.buf.indexOf('\r\n');
      if (nl < 0) return this.closed ? null : undefined;
      const size = parseInt(this.buf.slice(0, nl), 16);
      if (this.buf.length < nl + 2 + size + 2) return this.closed ? null : undefined;
      const data = this.buf.slice(nl + 2, nl + 2 + size);
      this.buf = this.buf.slice(nl + 2 + size + 2);
      return Buffer.from(data, 'latin1').toString('utf8');
    }, ms, 'a chunk');
  }

  // Exactly N body bytes (not chunked), as a string; null if closed first.
  async bytes(n, ms = 3000) {
    return this.until(() => {
      if (this.buf.length >= n) {
        const d = this.buf.slice(0, n);
        this.buf = this.buf.slice(n);
        return Buffer.from(d, 'latin1').toString('utf8');
      }
      return this.closed ? null : undefined;
    }, ms, `${n} bytes`);
  }

  // The whole body: by Content-Length, chunks up to the last one, or up to
  // the close.
  async body(ms = 3000) {
    if (this.chunked) {
      let s = '';
      for (;;) {
        const c = await this.chunk(ms);
        if (c === null) throw new Error(`connection closed inside a chunked body after ${JSON.stringify(s)}`);
        if (c === '') return s;
        s += c;
      }
    }
    if ('content-length' in this.headers) return this.bytes(Number(this.headers['content-length']), ms);
    await this.until(() => (this.closed ? true : undefined), ms, 'the connection to close');
    const d = this.buf;
    this.buf = '';
    return Buffer.from(d, 'latin1').toString('utf8');
  }

  // Resolves once the server closed the connection (within MS).
  async closedWithin(ms = 3000) {
    return this.until(() => (this.closed ? true : undefined), ms, 'the connection to close');
  }

  close() { this.sock.destroy(); }
}

// Writes the request on SOCK.
function writeRequest(sock, method, path, { headers = {}, body, version = '1.1' } = {}) {
  const b = body === undefined ? null : Buffer.from(body);
  let h = `${method} ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of Object.entries(headers)) h += `${k}: ${v}\r\n`;
  if (b !== null || method === 'POST') h += `Content-Length: ${b ? b.length : 0}\r\n`;
  sock.write(h + '\r\n');
  if (b) sock.write(b);
}

// Opens a fresh connection, sends one request and resolves with the
// Response once its head arrived (read the body with body(), chunk()...).
async function open(port, method, path, opts = {}) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  const r = new Response(sock);
  writeRequest(sock, method, path, opts);
  return r.head(opts.timeout || 3000);
}

// One whole request/response on a fresh connection: {status, version,
// headers, body}; the connection is closed afterwards.
async function fetch1(port, method, path, opts = {}) {
  const r = await open(port, method, path, opts);
  try {
    const body = await r.body(opts.timeout || 3000);
    return { status: r.status, version: r.version, headers: r.headers, body };
  } finally {
    r.close();
  }
}

// A fresh random session URL under PREFIX: '/<server>/<session>'.
function sessionUrl(prefix) {
  const a = 'abcdefghijklmnopqrstuvwxyz012345';
  let id = '';
  for (let i = 0; i < 8; i++) id += a[Math.floor(Math.random() * a.length)];
  return `${prefix}/${String(Math.floor(Math.random() * 1000)).padStart(3, '0')}/${id}`;
}

// The messages of one SockJS frame line 'a[...]' (the JSON strings).
function frameMessages(line) {
  if (!line.startsWith('a[')) throw new Error(`not a message frame: ${JSON.stringify(line)}`);
  return JSON.parse(line.slice(1));
}

module.exports = { open, fetch1, writeRequest, Response, sessionUrl, frameMessages, parseHead };
