'use strict';
// The WebSocket transport of the real daemon: the upgrade and its refusals,
// subprotocols, and RFC 6455 behaviour driven with the `ws` client and with
// raw sockets for frames no library would send: protocol errors (1002),
// invalid UTF-8 (1007), oversized messages and headers (1009), close
// reasons split byte by byte, pings, the close handshake, many connections,
// a disconnect code no close frame may carry (5000) and the graceful stop
// (3001).
//
// Only transport-level facts are asserted, so the file holds whatever
// session answers: a client sends {"id":1,"connect":{}} (anonymous connects
// are allowed in the config) and expects one reply frame of the right kind
// whose first message carries id 1.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const WebSocket = require('ws');
const { Rotord, rawExchange, sleep, apiPost } = require('./lib/rotord.js');
const { parseFrames } = require('./lib/wsframes.js');

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
const PATH = '/connection/websocket';
const CONNECT_JSON = '{"id":1,"connect":{}}';
// Command{id: 1, connect: {}} with its varint length prefix.
const CONNECT_PB = Buffer.from([0x04, 0x08, 0x01, 0x22, 0x00]);

let rd;

before(async () => {
  rd = await new Rotord({
    client: {
      allowed_origins: ['https://*.example.com'],
      allow_anonymous_connect_without_token: true,
    },
  }, { workers: 2 }).start();
});

after(async () => {
  if (rd) await rd.stop();
});

const url = (q = '') => `ws://127.0.0.1:${rd.port}${PATH}${q}`;

// Opens a `ws` client; resolves once open, rejects on a refused upgrade.
function open(q = '', protocols = undefined, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url(q), protocols, opts);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
}

function nextMessage(ws, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no message')), ms);
    ws.once('message', (data, isBinary) => { clearTimeout(t); resolve({ data, isBinary }); });
  });
}

function closed(ws, ms = 8000) {
  return new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve({ code: -1, reason: '' });
    const t = setTimeout(() => reject(new Error('not closed')), ms);
    ws.once('close', (code, reason) => { clearTimeout(t); resolve({ code, reason: reason.toString() }); });
  });
}

// ---- raw sockets ----------------------------------------------------------

const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

// A client frame: b0 = FIN|RSV|opcode; payload (Buffer or string, or a
// number: header only, declaring that length); masked unless told not to.
function frame(b0, payload, { masked = true } = {}) {
  const declared = typeof payload === 'number';
  const data = declared ? Buffer.alloc(0) : Buffer.from(payload);
  const len = declared ? payload : data.length;
  const m = masked ? 0x80 : 0;
  let head;
  if (len < 126) {
    head = Buffer.from([b0, m | len]);
  } else if (len <= 0xffff) {
    head = Buffer.from([b0, m | 126, len >> 8, len & 0xff]);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  const body = Buffer.from(data);
  if (masked) for (let i = 0; i < body.length; i++) body[i] ^= MASK[i & 3];
  return Buffer.concat([head, masked ? MASK : Buffer.alloc(0), body]);
}

function closePayload(code, reason = Buffer.alloc(0)) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, Buffer.from(reason)]);
}

const closeCode = (f) => (f && f.op === 8 && f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 0);

// Upgrades a raw socket; resolves {sock, head, rest} once the response
// head is in, with any bytes after it in `rest`.
function rawUpgrade(q = '', extra = '', first = Buffer.alloc(0)) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(rd.port, '127.0.0.1');
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      resolve({ sock, head: buf.subarray(0, end).toString('latin1'), rest: buf.subarray(end + 4) });
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.on('connect', () => {
      sock.write(Buffer.concat([Buffer.from(`GET ${PATH}${q} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`), first]));
    });
  });
}

// Everything the server sends until it closes the connection (or `ms`).
function collect(sock, initial = Buffer.alloc(0), ms = 4000) {
  return new Promise((resolve) => {
    const chunks = [initial];
    let done = false;
    const finish = (isClosed) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      sock.destroy();
      resolve({ ...parseFrames(Buffer.concat(chunks)), closed: isClosed });
    };
    const t = setTimeout(() => finish(false), ms);
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
  });
}

// Upgrades, sends `bytes` (all at once, or one byte at a time), and
// resolves with what came back until the server closed.
async function exchangeFrames(bytes, { slow = false, q = '' } = {}) {
  const { sock, head, rest } = await rawUpgrade(q);
  assert.match(head, /^HTTP\/1\.1 101 /);
  const result = collect(sock, rest);
  if (slow) {
    for (const b of bytes) {
      if (sock.destroyed) break;
      sock.write(Buffer.from([b]));
      await sleep(1);
    }
  } else {
    sock.write(bytes);
  }
  return result;
}

async function expectClose(bytes, code, opts) {
  const r = await exchangeFrames(bytes, opts);
  const last = r.frames[r.frames.length - 1];
  assert.strictEqual(closeCode(last), code, `close ${code}, got ${JSON.stringify(r.frames.map((f) => [f.op, closeCode(f)]))}`);
  assert.ok(r.closed, 'and the server closed TCP');
  assert.ok(r.frames.every((f) => !f.masked), 'server frames are never masked');
  return r;
}

// The first line of a JSON frame must parse and carry id 1.
function assertReplyJson(data) {
  const first = data.toString().split('\n')[0];
  const msg = JSON.parse(first);
  assert.strictEqual(msg.id, 1, `reply to id 1: ${first}`);
}

// ---- the upgrade -------------------------------------------------------------

test('upgrade answers 101 with the RFC 6455 accept value', async () => {
  const { sock, head } = await rawUpgrade();
  sock.destroy();
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.match(head, /\r\nUpgrade: websocket(\r\n|$)/i);
  assert.match(head, /\r\nConnection: Upgrade(\r\n|$)/i);
  assert.ok(head.includes(`\r\nSec-WebSocket-Accept: ${ACCEPT}`), head);
  assert.ok(!/Sec-WebSocket-Protocol/i.test(head), 'no subprotocol unless offered');
  assert.ok(!/Sec-WebSocket-Extensions/i.test(head), 'no extension negotiated');
});

test('refused upgrades get the right status and no 101', async () => {
  const base = `Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\n`;
  const cases = [
    ['version 8 -> 426', `GET ${PATH} HTTP/1.1\r\n${base}Sec-WebSocket-Version: 8\r\n\r\n`, 426,
      /\r\nSec-WebSocket-Version: 13\r\n/],
    ['no version -> 426', `GET ${PATH} HTTP/1.1\r\n${base}\r\n`, 426],
    ['bad key -> 400', `GET ${PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n', 400],
    ['no key -> 400', `GET ${PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Version: 13\r\n\r\n', 400],
    // (not an upgrade request at all: an ordinary one, so it asks to close)
    ['no Upgrade -> 400', `GET ${PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n` +
      `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`, 400],
    ['POST -> 405', `POST ${PATH} HTTP/1.1\r\n${base}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n`, 405],
    ['HTTP/1.0 -> 400', `GET ${PATH} HTTP/1.0\r\n${base}Sec-WebSocket-Version: 13\r\n\r\n`, 400],
    ['foreign Origin -> 403', `GET ${PATH} HTTP/1.1\r\n${base}Sec-WebSocket-Version: 13\r\n` +
      'Origin: https://evil.com\r\n\r\n', 403],
    ['other path -> 404', `GET ${PATH}/x HTTP/1.1\r\n${base}Sec-WebSocket-Version: 13\r\n\r\n`, 404],
  ];
  await Promise.all(cases.map(async ([name, req, status, hdr]) => {
    const text = await rawExchange(rd.port, req, 3000);
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
    assert.ok(m, `${name}: a status line in ${JSON.stringify(text)}`);
    assert.strictEqual(Number(m[1]), status, name);
    if (hdr) assert.match(text, hdr, name);
  }));
});

test('allowed Origin patterns pass, case-insensitively; no Origin passes', async () => {
  for (const origin of ['https://app.example.com', 'HTTPS://Deep.Sub.Example.COM', undefined]) {
    const ws = await open('', undefined, origin ? { origin } : {});
    ws.close();
    await closed(ws);
  }
  await assert.rejects(open('', undefined, { origin: 'https://example.com.evil.net' }), /status 403/);
});

test('subprotocols: centrifuge-json and centrifuge-protobuf are echoed', async () => {
  for (const p of ['centrifuge-json', 'centrifuge-protobuf']) {
    const ws = await open('', [p]);
    assert.strictEqual(ws.protocol, p);
    ws.close(1000);
    await closed(ws);
  }
  const ws = await open('', ['chat', 'centrifuge-protobuf']);
  assert.strictEqual(ws.protocol, 'centrifuge-protobuf', 'picked from a list');
  ws.close(1000);
  await closed(ws);
  const plain = await open('?cf_ws_frame_ping_pong=true');
  assert.strictEqual(plain.protocol, '', 'nothing echoed when nothing was offered');
  plain.close(1000);
  await closed(plain);
});

// ---- messages ----------------------------------------------------------------

test('JSON: a command in a text frame is answered with a text frame', async () => {
  const ws = await open('', ['centrifuge-json']);
  const reply = nextMessage(ws);
  ws.send(CONNECT_JSON);
  const { data, isBinary } = await reply;
  assert.strictEqual(isBinary, false);
  assertReplyJson(data);
  ws.close(1000);
  assert.strictEqual((await closed(ws)).code, 1000);
});

test('protobuf: a varint-delimited command is answered with a binary frame', async () => {
  for (const [q, protocols] of [['', ['centrifuge-protobuf']], ['?format=protobuf', undefined]]) {
    const ws = await open(q, protocols);
    const reply = nextMessage(ws);
    ws.send(CONNECT_PB);
    const { data, isBinary } = await reply;
    assert.strictEqual(isBinary, true, `binary reply (${q || protocols})`);
    // First message: varint length, then Reply.id = 1 (field 1, varint).
    let len = 0; let shift = 0; let i = 0;
    for (; i < data.length; i++) {
      len |= (data[i] & 0x7f) << shift;
      shift += 7;
      if (!(data[i] & 0x80)) { i++; break; }
    }
    assert.ok(len > 0 && data.length >= i + len, 'a whole length-delimited message');
    assert.deepStrictEqual([...data.subarray(i, i + 2)], [0x08, 0x01], 'id 1 first');
    ws.close(1000);
    await closed(ws);
  }
});

test('the first frame may share a TCP write with the handshake', async () => {
  const { sock, head, rest } = await rawUpgrade('', '', frame(0x81, CONNECT_JSON));
  assert.match(head, /^HTTP\/1\.1 101 /);
  const r = await new Promise((resolve) => {
    let buf = rest;
    const check = () => {
      const p = parseFrames(buf);
      if (p.frames.length) resolve(p.frames[0]);
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); check(); });
    check();
  });
  sock.destroy();
  assert.strictEqual(r.op, 1, 'a text frame');
  assertReplyJson(r.payload);
});

test('a fragmented command with a ping between fragments', async () => {
  const half = Math.floor(CONNECT_JSON.length / 2);
  const bytes = Buffer.concat([
    frame(0x01, CONNECT_JSON.slice(0, half)),
    frame(0x89, 'between'),
    frame(0x80, CONNECT_JSON.slice(half)),
  ]);
  const { sock, rest } = await rawUpgrade();
  const got = new Promise((resolve) => {
    let buf = rest;
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const p = parseFrames(buf);
      if (p.frames.some((f) => f.op === 1)) resolve(p.frames);
    });
  });
  sock.write(bytes);
  const frames = await got;
  sock.destroy();
  assert.strictEqual(frames[0].op, 10, 'the pong comes first');
  assert.strictEqual(frames[0].payload.toString(), 'between', 'with the ping payload');
  assertReplyJson(frames.find((f) => f.op === 1).payload);
});

test('ping frames are answered with pongs carrying the same payload', async () => {
  const ws = await open();
  for (const payload of ['', 'hello', 'x'.repeat(125)]) {
    const pong = new Promise((resolve) => ws.once('pong', resolve));
    ws.ping(payload);
    assert.strictEqual((await pong).toString(), payload);
  }
  ws.close(1000);
  await closed(ws);
});

test('a client close is echoed with its code, then TCP closes', async () => {
  for (const code of [1000, 1001, 4000, 3001]) {
    const ws = await open();
    ws.close(code, 'bye');
    const c = await closed(ws);
    assert.strictEqual(c.code, code, `echoed ${code}`);
  }
  const r = await exchangeFrames(frame(0x88, ''));
  assert.strictEqual(closeCode(r.frames[0]), 1000, 'an empty close is answered with 1000');
  assert.ok(r.closed);
});

// ---- bad frames ----------------------------------------------------------------

test('protocol errors close with 1002', async () => {
  const cases = [
    frame(0x81, 'unmasked', { masked: false }),
    frame(0xc1, 'rsv1 (no permessage-deflate)'),
    frame(0xa1, 'rsv2'),
    frame(0x83, 'opcode 3'),
    frame(0x8b, 'opcode 11'),
    frame(0x89, Buffer.alloc(126)),
    frame(0x09, 'fragmented ping'),
    frame(0x80, 'continuation without a start'),
    Buffer.concat([frame(0x01, 'a'), frame(0x81, 'b')]),
    frame(0x88, Buffer.from([0x03])),
    frame(0x88, closePayload(1005)),
    frame(0x88, closePayload(1006)),
    frame(0x88, closePayload(999)),
    frame(0x88, closePayload(2999)),
    frame(0x88, closePayload(5000)),
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
  ];
  await Promise.all(cases.map((bytes) => expectClose(bytes, 1002)));
});

test('invalid UTF-8 closes with 1007, at once', async () => {
  const cases = [
    Buffer.from([0x61, 0xff, 0x62]),
    Buffer.from([0xc0, 0x80]),
    Buffer.from([0xed, 0xa0, 0x80]),
    Buffer.from([0xf4, 0x90, 0x80, 0x80]),
    Buffer.from([0x61, 0xe2, 0x82]),
  ];
  await Promise.all(cases.map((p) => expectClose(frame(0x81, p), 1007)));
  // Fail fast: the first fragment's bad byte, the rest never sent.
  await expectClose(frame(0x01, Buffer.from([0x6f, 0x6b, 0xfe])), 1007);
  // Split across fragments: a sequence cut by the last fragment's end.
  await expectClose(Buffer.concat([frame(0x01, Buffer.from([0xc3])), frame(0x80, '')]), 1007);
});

test('close reasons are checked whole, however they arrive (wslay bug)', async () => {
  const bad = frame(0x88, closePayload(1000, Buffer.from([0x6f, 0x6b, 0xff])));
  const good = frame(0x88, closePayload(1000, Buffer.from('ok\u00e9')));
  await expectClose(bad, 1007);
  await expectClose(bad, 1007, { slow: true });
  await expectClose(good, 1000);
  await expectClose(good, 1000, { slow: true });
  // Split after 9 bytes.
  const { sock, rest } = await rawUpgrade();
  const r = collect(sock, rest);
  sock.write(good.subarray(0, 9));
  await sleep(20);
  sock.write(good.subarray(9));
  const res = await r;
  assert.strictEqual(closeCode(res.frames[0]), 1000);
});

test('oversized messages close with 1009, without big allocations', async () => {
  // A whole message over 64 KiB through the ws client.
  const ws = await open();
  ws.send(Buffer.alloc(70000, 0x61));
  assert.strictEqual((await closed(ws)).code, 1009);
  // Fragments adding up to more than the limit.
  const frags = [];
  for (let i = 0; i < 100; i++) frags.push(frame(i === 0 ? 0x02 : 0x00, Buffer.alloc(1024)));
  await expectClose(Buffer.concat(frags), 1009);
  // Headers declaring 1 GiB, 20 of them at once: the worker's memory does
  // not move, and the answer does not wait for a payload.
  const rss = rd.workersRss();
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 20 }, () => expectClose(frame(0x82, 1 << 30), 1009)));
  assert.ok(Date.now() - t0 < 2000, 'closed at the header');
  assert.ok(rd.workersRss() - rss < 16 * 1024, `RSS grew by ${rd.workersRss() - rss} kB`);
  // A message of exactly 64 KiB (a command padded with spaces) is served.
  const ok = await open();
  const reply = nextMessage(ok);
  ok.send(CONNECT_JSON.padEnd(65536, ' '));
  assertReplyJson((await reply).data);
  ok.terminate();
});

test('garbage after the handshake never harms the worker', async () => {
  const pids = rd.workers();
  const junk = [];
  for (let i = 0; i < 40; i++) {
    const b = Buffer.alloc(1 + ((i * 37) % 300));
    for (let j = 0; j < b.length; j++) b[j] = (i * 131 + j * 17) & 0xff;
    junk.push(b);
  }
  await Promise.all(junk.map(async (b) => {
    const { sock, rest } = await rawUpgrade();
    const r = collect(sock, rest, 300); // an incomplete frame just waits
    sock.write(b);
    await r;
  }));
  assert.deepStrictEqual(rd.workers(), pids, 'same workers alive');
  const ws = await open();
  const reply = nextMessage(ws);
  ws.send(CONNECT_JSON);
  assertReplyJson((await reply).data);
  ws.terminate();
});

// ---- many, and the end -------------------------------------------------------------

test('300 connections at once each get their reply and close cleanly', async () => {
  const clients = await Promise.all(Array.from({ length: 300 }, () => open()));
  const replies = await Promise.all(clients.map((ws) => {
    const r = nextMessage(ws, 5000);
    ws.send(CONNECT_JSON);
    return r;
  }));
  for (const { data } of replies) assertReplyJson(data);
  const codes = await Promise.all(clients.map((ws) => { ws.close(1000); return closed(ws); }));
  assert.ok(codes.every((c) => c.code === 1000));
});

// A connected client of the daemon D: {ws, id}.
async function connected(d) {
  const ws = await new Promise((resolve, reject) => {
    const c = new WebSocket(`ws://127.0.0.1:${d.port}${PATH}`);
    c.once('open', () => resolve(c));
    c.once('error', reject);
  });
  const reply = nextMessage(ws);
  ws.send(CONNECT_JSON);
  return { ws, id: JSON.parse((await reply).data.toString()).connect.client };
}

test('a disconnect code no close frame may carry (API, 5000) closes without a status; the worker lives', async () => {
  const own = await new Rotord({ client: { allow_anonymous_connect_without_token: true } },
    { workers: 1 }).start();
  try {
    const { ws, id } = await connected(own);
    const c = closed(ws);
    const r = await apiPost(own.port, '/api/disconnect', { client: id, disconnect: { code: 5000, reason: 'app' } });
    assert.strictEqual(r.status, 200);
    assert.strictEqual((await c).code, 1005);
    const again = await connected(own);
    assert.ok(again.id);
    again.ws.close();
  } finally {
    await own.stop();
  }
});

test('a graceful stop closes WebSocket connections with 3001', async () => {
  const own = await new Rotord({ client: { allow_anonymous_connect_without_token: true } },
    { workers: 1 }).start();
  try {
    const { ws } = await connected(own);
    const c = closed(ws);
    own.signal('SIGQUIT');
    const { code } = await c;
    assert.strictEqual(code, 3001);
    assert.strictEqual((await own.waitExit()).code, 0);
  } finally {
    await own.stop();
  }
});
