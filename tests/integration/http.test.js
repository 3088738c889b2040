'use strict';
// The HTTP/1.1 server of the real daemon (3 workers): keep-alive under
// concurrency, pipelining, every kind of bad input answered with the right
// status and without harming the workers, and slowloris closed by the
// header timeout.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const net = require('node:net');
const { Rotord, request, sleep } = require('./lib/rotord.js');

const LIMITS = {
  read_header_timeout: '1s',
  max_header_size: 8192,
  max_header_count: 20,
  max_request_body_size: 4096,
};

let rd;
let pids;

before(async () => {
  rd = await new Rotord({ http_server: LIMITS }, { workers: 3 }).start();
  pids = rd.workers();
});

after(async () => {
  if (rd) await rd.stop();
});

// Writes `data` on a new connection and collects the answer until the
// server closes (closed: true) or `ms` pass (closed: false).
function exchange(data, ms = 3000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(rd.port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    sock.on('connect', () => sock.write(data));
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? finish(true) : reject(e)));
  });
}

// Splits a byte stream of responses (each with Content-Length) in order.
// HEAD responses have no body: pass their positions in `headAt`.
function parseResponses(text, headAt = []) {
  const out = [];
  let rest = text;
  while (rest.length) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`incomplete response: ${JSON.stringify(rest)}`);
    const lines = rest.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    assert.ok('content-length' in headers, `Content-Length in ${lines[0]}`);
    const len = headAt.includes(out.length) ? 0 : Number(headers['content-length']);
    out.push({ status: Number(m[1]), headers, body: rest.slice(end + 4, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

// The daemon still serves /health from every worker: the same workers are
// alive and 30 fresh connections (spread by SO_REUSEPORT) all get 200.
async function assertHealthy() {
  assert.deepStrictEqual(rd.workers(), pids, 'same worker pids');
  const rs = await Promise.all(Array.from({ length: 30 }, () =>
    request(rd.port, { path: '/health', agent: false })));
  for (const r of rs) assert.strictEqual(r.status, 200);
}

// Sends a bad request: expects STATUS with Connection: close and a closed
// connection, then a healthy daemon.
async function refused(data, status) {
  const { text, closed } = await exchange(data);
  const [r] = parseResponses(text);
  assert.strictEqual(r.status, status, text);
  assert.strictEqual(r.headers.connection, 'close');
  assert.ok(closed, 'server closed the connection');
  await assertHealthy();
  return r;
}

test('GET /health is 200 {} as JSON', async () => {
  const r = await request(rd.port, { path: '/health' });
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.headers['content-type'], 'application/json');
  assert.strictEqual(r.body, '{}');
});

test('/health from 200 concurrent keep-alive connections, several requests each', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
  const sockets = new Set();
  let ok = 0;
  try {
    for (let round = 0; round < 4; round++) {
      const rs = await Promise.all(Array.from({ length: 200 }, () => new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: rd.port, path: '/health', agent }, (res) => {
          let body = '';
          res.on('data', (d) => { body += d; });
          res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('socket', (s) => sockets.add(s));
        req.on('error', reject);
      })));
      for (const r of rs) if (r.status === 200 && r.body === '{}') ok++;
    }
  } finally {
    agent.destroy();
  }
  assert.strictEqual(ok, 800);
  assert.ok(sockets.size <= 200 && sockets.size >= 100, `${sockets.size} sockets for 800 requests`);
  assert.deepStrictEqual(rd.workers(), pids);
});

test('pipelined requests are answered in order', async () => {
  const { text, closed } = await exchange(
    'GET /health HTTP/1.1\r\nHost: a\r\n\r\n' +
    'HEAD /health HTTP/1.1\r\nHost: a\r\n\r\n' +
    'POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello' +
    'GET /health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n' +
    'GET /nope HTTP/1.1\r\nHost: a\r\n\r\n' +
    'GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
  const rs = parseResponses(text, [1]);
  assert.deepStrictEqual(rs.map((r) => r.status), [200, 200, 200, 200, 404],
    'in order, nothing after the 404');
  assert.deepStrictEqual(rs.map((r) => r.body.length > 0), [true, false, true, true, true]);
  assert.ok(closed);
});

test('keep-alive: HTTP/1.1 stays open, Connection: close and HTTP/1.0 close', async () => {
  let r = await exchange('GET /health HTTP/1.1\r\n\r\n', 500);
  assert.strictEqual(parseResponses(r.text)[0].status, 200);
  assert.strictEqual(r.closed, false, 'HTTP/1.1 kept alive');
  r = await exchange('GET /health HTTP/1.1\r\nConnection: close\r\n\r\n');
  assert.strictEqual(parseResponses(r.text)[0].headers.connection, 'close');
  assert.ok(r.closed);
  r = await exchange('GET /health HTTP/1.0\r\n\r\n');
  assert.ok(r.closed, 'HTTP/1.0 closed');
  r = await exchange('GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', 500);
  assert.strictEqual(parseResponses(r.text)[0].headers.connection, 'keep-alive');
  assert.strictEqual(r.closed, false, 'HTTP/1.0 keep-alive kept');
});

test('malformed request line: 400', async () => {
  await refused('GET /health HTTX/1.1\r\n\r\n', 400);
  await refused('BREW /health HTTP/1.1\r\n\r\n', 400);
  await refused('GET\r\n\r\n', 400);
});

test('bad header: 400', async () => {
  await refused('GET /health HTTP/1.1\r\nNo colon here\r\n\r\n', 400);
  await refused('GET /health HTTP/1.1\r\nHost : a\r\n\r\n', 400);
  await refused('GET /health HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n', 400);
});

test('CR smuggling (X-Abc: \\rxTransfer-Encoding: chunked): 400', async () => {
  await refused('POST /health HTTP/1.1\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n' +
    '0\r\n\r\n', 400);
});

test('Transfer-Encoding with Content-Length: 400', async () => {
  await refused('POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n' +
    '0\r\n\r\n', 400);
  await refused('POST /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx', 400);
});

test('oversized header section: 431', async () => {
  await refused(`GET /health HTTP/1.1\r\nX-Big: ${'a'.repeat(10000)}\r\n\r\n`, 431);
});

test('too many headers: 431', async () => {
  let h = '';
  for (let i = 0; i < 30; i++) h += `X-H${i}: ${i}\r\n`;
  await refused(`GET /health HTTP/1.1\r\n${h}\r\n`, 431);
});

test('oversized body: 413, announced or chunked', async () => {
  await refused(`POST /health HTTP/1.1\r\nContent-Length: 5000\r\n\r\n${'b'.repeat(5000)}`, 413);
  // Announced only: answered without waiting for the body.
  await refused('POST /health HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n', 413);
  const chunk = `${(1000).toString(16)}\r\n${'c'.repeat(1000)}\r\n`;
  await refused(`POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.repeat(5)}0\r\n\r\n`, 413);
  // Under the limit is fine.
  const r = await request(rd.port, { method: 'POST', path: '/health', body: 'x'.repeat(4000) });
  assert.strictEqual(r.status, 200);
});

test('unknown path: 404', async () => {
  await refused('GET /no/such/path HTTP/1.1\r\nHost: a\r\n\r\n', 404);
});

test('wrong method on a method-restricted route: 405 with Allow', async (t) => {
  // /health accepts any method; later routes (the server API) restrict.
  const { text } = await exchange('DELETE /api HTTP/1.1\r\nHost: a\r\n\r\n');
  const [r] = parseResponses(text);
  if (r.status !== 405) {
    t.skip('no method-restricted route yet');
    return;
  }
  assert.ok(r.headers.allow, 'Allow header');
  await assertHealthy();
});

test('unsupported HTTP version: 505', async () => {
  await refused('GET /health HTTP/1.2\r\n\r\n', 505);
  await refused('GET /health HTTP/2.0\r\n\r\n', 505);
});

test('binary garbage: 400, workers unharmed', async () => {
  // A TLS ClientHello, and random bytes.
  await refused(Buffer.from('16030100a5010000a10303' + '00'.repeat(40), 'hex'), 400);
  const junk = Buffer.alloc(3000);
  for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + 13) & 0xff;
  await refused(junk, 400);
  const zeros = Buffer.alloc(100);
  await refused(zeros, 400);
});

test('slowloris: a byte every 200 ms is closed by the 1s header timeout', async () => {
  const start = Date.now();
  const res = await new Promise((resolve, reject) => {
    const sock = net.connect(rd.port, '127.0.0.1');
    const req = 'GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: ' + 'z'.repeat(100);
    let i = 0;
    let got = '';
    let timer;
    const done = (how) => {
      clearInterval(timer);
      sock.destroy();
      resolve({ how, got, ms: Date.now() - start });
    };
    sock.on('connect', () => {
      timer = setInterval(() => {
        if (i < req.length && !sock.destroyed) sock.write(req[i++]);
      }, 200);
    });
    sock.on('data', (d) => { got += d.toString('latin1'); });
    sock.on('end', () => done('end'));
    sock.on('close', () => done('close'));
    sock.on('error', (e) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? done('reset') : reject(e)));
    setTimeout(() => done('timeout'), 6000);
  });
  assert.notStrictEqual(res.how, 'timeout', 'server closed the connection');
  assert.ok(res.ms >= 900 && res.ms < 2600, `closed after ${res.ms} ms`);
  if (res.got) assert.match(res.got, /^HTTP\/1\.1 408 /);
  await assertHealthy();
});

test('many slow connections do not stop others being served', async () => {
  const socks = [];
  for (let i = 0; i < 50; i++) {
    const s = net.connect(rd.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('GET /health HTTP/1.1\r\nX-');
    socks.push(s);
  }
  await sleep(100);
  await assertHealthy();
  for (const s of socks) s.destroy();
});

// A client socket that records what it receives and when the server ends.
function watch(port) {
  const s = net.connect(port, '127.0.0.1');
  s.got = '';
  s.on('data', (d) => { s.got += d.toString('latin1'); });
  s.on('error', () => {});
  s.ended = new Promise((resolve) => { s.on('end', resolve); s.on('close', resolve); });
  s.connected = new Promise((resolve) => s.on('connect', resolve));
  return s;
}

test('graceful stop: idle keep-alive gets a short grace, a request in flight is answered, then exit', async () => {
  const d = await new Rotord({}, { workers: 1 }).start();
  try {
    const idle = watch(d.port);
    const last = watch(d.port);
    const busy = watch(d.port);
    await Promise.all([idle.connected, last.connected, busy.connected]);
    idle.write('GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
    last.write('GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
    busy.write('GET /health HTTP/1.1\r\nHost: a\r\n');
    await sleep(200);
    assert.match(idle.got, /^HTTP\/1\.1 200 /);
    last.got = '';
    d.signal('SIGQUIT');
    const t0 = Date.now();
    await sleep(100);
    // A keep-alive client sending its next request as the stop begins is
    // answered, told to close, and closed: no request is lost to the race.
    last.write('GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
    await last.ended;
    const [lr] = parseResponses(last.got);
    assert.strictEqual(lr.status, 200);
    assert.strictEqual(lr.headers.connection, 'close');
    await idle.ended;
    const waited = Date.now() - t0;
    assert.ok(waited >= 700 && waited < 2500, `idle connection closed after its grace (${waited} ms)`);
    busy.write('\r\n');
    await busy.ended;
    const [r] = parseResponses(busy.got);
    assert.strictEqual(r.status, 200);
    assert.strictEqual(r.headers.connection, 'close');
    const { code } = await d.waitExit(10000);
    assert.strictEqual(code, 0);
  } finally {
    await d.stop();
  }
});
