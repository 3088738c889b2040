'use strict';
// permessage-deflate (RFC 7692) on the real daemon: `ws` clients with and
// without it on one channel get the same messages, the compressed ones
// fewer bytes; the answer to each kind of offer; centrifuge-js (JSON and
// protobuf) over a compressing `ws`; compressed commands whole and
// fragmented, with a ping between fragments; RSV1 without negotiation
// (1002), a stream that does not inflate (1007), a deflate bomb (1009)
// while another client of the same worker keeps receiving;
// compression_min_size; uni_websocket; a bad compression_level.
//
// Raw sockets show what `ws` hides: RSV1 on the server's frames, and
// compressed client frames built by hand.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const zlib = require('node:zlib');
const WebSocket = require('ws');
const { Centrifuge: CentrifugeJson } = require('centrifuge');
const { Centrifuge: CentrifugePb } = require('centrifuge/build/protobuf');
const { Rotord, ROTORD, run, mkTmp, waitFor, hs256, apiPost } = require('./lib/rotord.js');
const { clientFrame, parseFrames } = require('./lib/wsframes.js');

const PATH = '/connection/websocket';
const OFFER = 'permessage-deflate; client_max_window_bits';
const BOTH = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

const CONFIG = {
  channel: { without_namespace: { allow_subscribe_for_client: true, allow_publish_for_client: true } },
  websocket: { compression: true },
  uni_websocket: { enabled: true, compression: true },
};

let rd;

before(async () => {
  rd = await new Rotord(CONFIG, { workers: 1 }).start();
});

after(async () => {
  if (rd) await rd.stop();
});

const token = (sub) => hs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 });
const connectCmd = (id, sub = 'u') => JSON.stringify({ id, connect: { token: token(sub) } });

// A client's compressed message: raw deflate, sync flush, the tail cut.
const deflate = (data) => {
  const z = zlib.deflateRawSync(Buffer.from(data), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.ok(z.subarray(-4).equals(TAIL));
  return z.subarray(0, -4);
};
// A server frame's payload inflated as a client does (no context kept).
const inflate = (payload) => zlib.inflateRawSync(Buffer.concat([payload, TAIL]),
  { finishFlush: zlib.constants.Z_SYNC_FLUSH });

async function publish(channel, data) {
  const r = await apiPost(rd.port, '/api/publish', { channel, data });
  assert.strictEqual(r.status, 200, r.body);
}

// A raw WebSocket client: upgrades with EXTRA headers; every frame the
// server sends lands in `frames`, data frames also in `msgs` (inflated
// where RSV1 is set, split at '\n').
class Raw {
  static open(port, { ext = OFFER, p = PATH } = {}) {
    return new Promise((resolve, reject) => {
      const r = new Raw();
      r.sock = net.connect(port, '127.0.0.1');
      r.sock.setNoDelay(true);
      r.buf = Buffer.alloc(0);
      r.frames = [];
      r.msgs = [];
      r.closed = new Promise((res) => r.sock.once('close', res));
      r.sock.on('data', (d) => {
        r.buf = Buffer.concat([r.buf, d]);
        if (r.head === undefined) {
          const end = r.buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          r.head = r.buf.subarray(0, end).toString('latin1');
          r.buf = r.buf.subarray(end + 4);
          resolve(r);
        }
        const { frames, used } = parseFrames(r.buf);
        r.buf = r.buf.subarray(used);
        for (const f of frames) {
          r.frames.push(f);
          if (f.op === 1 || f.op === 2) {
            const data = f.rsv1 ? inflate(f.payload) : f.payload;
            r.msgs.push(...data.toString().split('\n'));
          }
        }
      });
      r.sock.once('error', reject);
      r.sock.on('connect', () => {
        r.sock.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
          `${ext ? `Sec-WebSocket-Extensions: ${ext}\r\n` : ''}\r\n`);
      });
    });
  }

  extension() {
    const m = /\r\nSec-WebSocket-Extensions: ([^\r]*)/i.exec(this.head);
    return m ? m[1] : null;
  }

  send(op, payload, opts) { this.sock.write(clientFrame(op, payload, opts)); }

  sendDeflated(text) { this.send(1, deflate(text), { rsv1: true }); }

  waitMsg(pred, what) {
    return waitFor(() => this.msgs.map((m) => { try { return JSON.parse(m); } catch (_) { return null; } })
      .find((m) => m && pred(m)), 5000, 10, what);
  }

  async closeCode() {
    await waitFor(() => this.frames.some((f) => f.op === 8), 5000, 10, 'a close frame');
    const f = this.frames.find((x) => x.op === 8);
    return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
  }

  destroy() { this.sock.destroy(); }
}

// A `ws` client with OPTS (perMessageDeflate...), connected and subscribed
// to CHANNEL; it collects the JSON messages it receives.
async function wsClient(channel, opts) {
  const ws = new WebSocket(`ws://127.0.0.1:${rd.port}${PATH}`, opts);
  ws.msgs = [];
  ws.on('message', (d) => ws.msgs.push(...d.toString().split('\n')));
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  ws.send(`${connectCmd(1)}\n${JSON.stringify({ id: 2, subscribe: { channel } })}`);
  await waitFor(() => ws.msgs.some((m) => JSON.parse(m).id === 2), 5000, 10, 'subscribed');
  return ws;
}

const pubsOf = (msgs) => msgs.map((m) => JSON.parse(m)).filter((m) => m.push && m.push.pub).map((m) => JSON.stringify(m.push));

// ==== negotiation =============================================================

test('each offer gets the answer RFC 7692 asks for, or none', async () => {
  const cases = [
    [OFFER, BOTH],
    ['permessage-deflate', BOTH],
    ['permessage-deflate; client_no_context_takeover', BOTH],
    ['permessage-deflate; server_no_context_takeover', BOTH],
    ['permessage-deflate; server_max_window_bits=10', `${BOTH}; server_max_window_bits=10`],
    ['permessage-deflate; server_max_window_bits="11"; client_max_window_bits=9', `${BOTH}; server_max_window_bits=11`],
    ['permessage-deflate; server_max_window_bits=8', null],
    ['permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits', BOTH],
    ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', null],
    ['permessage-deflate; client_max_window_bits=16', null],
    ['permessage-deflate; mystery=1', null],
    ['x-webkit-deflate-frame', null],
    ['permessage-deflate; server_max_window_bits="12', null],
  ];
  for (const [offer, want] of cases) {
    const r = await Raw.open(rd.port, { ext: offer });
    r.destroy();
    assert.match(r.head, /^HTTP\/1\.1 101 /);
    assert.strictEqual(r.extension(), want, `offer "${offer}"`);
  }
});

test('ws clients with each offer option receive the same publications', async () => {
  const variants = [
    false,
    { threshold: 0 },
    { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
    { threshold: 0, serverMaxWindowBits: 10, clientMaxWindowBits: 10 },
    { threshold: 0, serverMaxWindowBits: 9 },
  ];
  const clients = [];
  try {
    for (const v of variants) clients.push(await wsClient('opts', { perMessageDeflate: v }));
    for (const [i, ws] of clients.entries()) {
      const negotiated = (ws.extensions || '').includes('permessage-deflate');
      assert.strictEqual(negotiated, variants[i] !== false, `variant ${i}: ${ws.extensions}`);
    }
    const data = { text: 'a publication that compresses '.repeat(40), n: 1 };
    for (let n = 0; n < 5; n++) await publish('opts', { ...data, n });
    await waitFor(() => clients.every((ws) => pubsOf(ws.msgs).length === 5), 5000, 10, 'every publication');
    const want = pubsOf(clients[0].msgs);
    for (const ws of clients) assert.deepStrictEqual(pubsOf(ws.msgs), want);
  } finally {
    for (const ws of clients) ws.terminate();
  }
});

// ==== output ==================================================================

test('with and without deflate on one channel: the same messages, fewer bytes compressed', async () => {
  const plain = await wsClient('same', { perMessageDeflate: false });
  const packed = await wsClient('same', { perMessageDeflate: { threshold: 0 } });
  const raw = await Raw.open(rd.port);
  try {
    assert.strictEqual(raw.extension(), BOTH);
    raw.sendDeflated(`${connectCmd(1)}\n${JSON.stringify({ id: 2, subscribe: { channel: 'same' } })}`);
    await raw.waitMsg((m) => m.id === 2, 'subscribed');
    const before = [plain._socket.bytesRead, packed._socket.bytesRead];
    for (let n = 0; n < 30; n++) {
      await publish('same', { n, text: `message ${n}: ${'the same words again and again '.repeat(30)}` });
    }
    await waitFor(() => [plain.msgs, packed.msgs, raw.msgs].every((m) => pubsOf(m).length === 30), 5000, 10, 'all 30');
    assert.deepStrictEqual(pubsOf(packed.msgs), pubsOf(plain.msgs), 'identical messages');
    assert.deepStrictEqual(pubsOf(raw.msgs), pubsOf(plain.msgs), 'identical once inflated by hand');
    const pubFrames = raw.frames.filter((f) => f.op === 1 && inflate(f.payload).includes('"pub"'));
    assert.ok(pubFrames.length > 0 && pubFrames.every((f) => f.rsv1), 'publication frames carry RSV1');
    const plainBytes = plain._socket.bytesRead - before[0];
    const packedBytes = packed._socket.bytesRead - before[1];
    assert.ok(packedBytes * 5 < plainBytes, `compressed ${packedBytes} bytes, plain ${plainBytes}`);
  } finally {
    plain.terminate();
    packed.terminate();
    raw.destroy();
  }
});

test('several messages in one frame inflate as one message joined by newlines', async () => {
  const raw = await Raw.open(rd.port);
  try {
    raw.sendDeflated(`${connectCmd(1)}\n${JSON.stringify({ id: 2, subscribe: { channel: 'many' } })}`);
    await raw.waitMsg((m) => m.id === 2, 'subscribed');
    // One API batch: the publications reach the client in one flush.
    const cmds = [];
    for (let n = 0; n < 10; n++) cmds.push(JSON.stringify({ method: 'publish', params: { channel: 'many', data: { n } } }));
    const r = await apiPost(rd.port, '/api', cmds.join('\n'));
    assert.strictEqual(r.status, 200, r.body);
    await waitFor(() => pubsOf(raw.msgs).length === 10, 5000, 10, 'ten publications');
    assert.deepStrictEqual(pubsOf(raw.msgs).map((m) => JSON.parse(m).pub.data.n), [...Array(10).keys()]);
    const multi = raw.frames.filter((f) => f.rsv1 && inflate(f.payload).toString().split('\n').length > 1);
    assert.ok(multi.length > 0, 'at least one compressed frame held several messages');
  } finally {
    raw.destroy();
  }
});

test('centrifuge-js (JSON and protobuf) over a ws that negotiates deflate', async () => {
  const clients = [];
  try {
    for (const Ctor of [CentrifugeJson, CentrifugePb]) {
      const st = { pubs: [], exts: [] };
      class DeflateWs extends WebSocket {
        constructor(url, protocols) {
          super(url, protocols, { perMessageDeflate: { threshold: 0 } });
          this.once('open', () => st.exts.push(this.extensions));
        }
      }
      const c = new Ctor(`ws://127.0.0.1:${rd.port}${PATH}`, { token: token('sdk'), websocket: DeflateWs });
      const s = c.newSubscription('sdk');
      s.on('publication', (ctx) => st.pubs.push(ctx.data));
      st.sub = s;
      st.c = c;
      s.subscribe();
      c.connect();
      clients.push(st);
    }
    await waitFor(() => clients.every((st) => st.sub.state === 'subscribed'), 5000, 10, 'subscribed');
    for (const st of clients) assert.match(st.exts[0], /^permessage-deflate/);
    await publish('sdk', { text: 'hello '.repeat(50) });
    // The JSON client publishes too, its command compressed by ws.
    await clients[0].sub.publish({ text: 'from the client '.repeat(20) });
    await waitFor(() => clients.every((st) => st.pubs.length === 2), 5000, 10, 'two publications each');
    const [j] = clients;
    assert.deepStrictEqual(j.pubs[0], { text: 'hello '.repeat(50) });
    assert.deepStrictEqual(j.pubs[1], { text: 'from the client '.repeat(20) });
    const pb = clients[1].pubs.map((d) => JSON.parse(Buffer.from(d).toString()));
    assert.deepStrictEqual(pb, j.pubs);
  } finally {
    for (const st of clients) st.c.disconnect();
  }
});

// ==== input ===================================================================

test('compressed commands: whole, fragmented, and with a ping between fragments', async () => {
  const raw = await Raw.open(rd.port);
  try {
    raw.sendDeflated(connectCmd(1));
    await raw.waitMsg((m) => m.id === 1 && m.connect, 'connect reply');
    // subscribe, compressed and cut into three fragments: RSV1 on the first only
    const z = deflate(JSON.stringify({ id: 2, subscribe: { channel: 'frag' } }));
    const a = Math.floor(z.length / 3);
    raw.send(1, z.subarray(0, a), { fin: false, rsv1: true });
    raw.send(9, 'between');
    raw.send(0, z.subarray(a, 2 * a), { fin: false });
    raw.send(0, z.subarray(2 * a));
    await raw.waitMsg((m) => m.id === 2 && m.subscribe, 'subscribe reply');
    assert.ok(raw.frames.some((f) => f.op === 10 && f.payload.toString() === 'between'), 'the ping got its pong');
    // publish, compressed, one byte per write
    const pub = clientFrame(1, deflate(JSON.stringify({ id: 3, publish: { channel: 'frag', data: { x: 'y'.repeat(3000) } } })),
      { rsv1: true });
    for (const b of pub) raw.sock.write(Buffer.from([b]));
    await raw.waitMsg((m) => m.id === 3, 'publish reply');
    const p = await raw.waitMsg((m) => m.push && m.push.pub, 'its publication');
    assert.strictEqual(p.push.pub.data.x, 'y'.repeat(3000));
    // and an uncompressed command on the same connection
    raw.send(1, JSON.stringify({ id: 4, presence_stats: { channel: 'frag' } }));
    await raw.waitMsg((m) => m.id === 4, 'an uncompressed command still works');
  } finally {
    raw.destroy();
  }
});

test('RSV1 without negotiation closes with 1002, and so does RSV1 on a continuation', async () => {
  const plain = await Raw.open(rd.port, { ext: null });
  try {
    assert.strictEqual(plain.extension(), null);
    plain.send(1, deflate(connectCmd(1)), { rsv1: true });
    assert.strictEqual(await plain.closeCode(), 1002);
  } finally {
    plain.destroy();
  }
  const cont = await Raw.open(rd.port);
  try {
    const z = deflate(connectCmd(1));
    cont.send(1, z.subarray(0, 5), { fin: false, rsv1: true });
    cont.send(0, z.subarray(5), { rsv1: true });
    assert.strictEqual(await cont.closeCode(), 1002);
  } finally {
    cont.destroy();
  }
});

test('a compressed message that does not inflate closes with 1007', async () => {
  const raw = await Raw.open(rd.port);
  try {
    // BTYPE 11 is reserved: no deflate stream starts this way.
    raw.send(1, Buffer.from([0x07, 0x12, 0x34, 0x56]), { rsv1: true });
    assert.strictEqual(await raw.closeCode(), 1007);
  } finally {
    raw.destroy();
  }
  const bad = await Raw.open(rd.port);
  try {
    // Valid deflate, but the text it inflates to is not UTF-8.
    bad.send(1, deflate(Buffer.from([0x7b, 0xc3, 0x28, 0x7d])), { rsv1: true });
    assert.strictEqual(await bad.closeCode(), 1007);
  } finally {
    bad.destroy();
  }
});

test('a deflate bomb closes with 1009; the worker\'s other clients keep receiving', async () => {
  const other = await wsClient('bomb', { perMessageDeflate: { threshold: 0 } });
  const raw = await Raw.open(rd.port);
  try {
    const bomb = deflate(Buffer.alloc(10 * 1024 * 1024));
    assert.ok(bomb.length < 65536, `10 MB of zeros deflate to ${bomb.length} bytes, under the limit`);
    const rss = rd.workersRss();
    raw.send(1, bomb, { rsv1: true });
    assert.strictEqual(await raw.closeCode(), 1009);
    assert.ok(rd.workersRss() - rss < 4096, `the worker grew by ${rd.workersRss() - rss} kB`);
    await publish('bomb', { after: true });
    await waitFor(() => pubsOf(other.msgs).length === 1, 5000, 10, 'the other client still receives');
    assert.strictEqual(other.readyState, WebSocket.OPEN);
  } finally {
    raw.destroy();
    other.terminate();
  }
});

// ==== settings ================================================================

test('compression_min_size: small frames go uncompressed', async () => {
  const small = await new Rotord({ ...CONFIG, websocket: { compression: true, compression_min_size: 300 } },
    { workers: 1 }).start();
  const raw = await Raw.open(small.port);
  try {
    raw.sendDeflated(`${connectCmd(1)}\n${JSON.stringify({ id: 2, subscribe: { channel: 'sz' } })}`);
    await raw.waitMsg((m) => m.id === 2, 'subscribed');
    for (const text of ['short', 'long '.repeat(100)]) {
      const r = await apiPost(small.port, '/api/publish', { channel: 'sz', data: { text } });
      assert.strictEqual(r.status, 200);
    }
    await waitFor(() => pubsOf(raw.msgs).length === 2, 5000, 10, 'two publications');
    const frameOf = (text) => raw.frames.find((f) => f.op === 1 &&
      (f.rsv1 ? inflate(f.payload) : f.payload).toString().includes(text));
    assert.strictEqual(frameOf('"short"').rsv1, false, 'a frame under the minimum is sent as it is');
    assert.strictEqual(frameOf('long long').rsv1, true, 'a larger one is compressed');
  } finally {
    raw.destroy();
    await small.stop();
  }
});

test('uni_websocket negotiates deflate and compresses what it sends', async () => {
  const raw = await Raw.open(rd.port, { p: '/connection/uni_websocket' });
  try {
    assert.strictEqual(raw.extension(), BOTH);
    raw.sendDeflated(JSON.stringify({ token: token('uni'), subs: { uni: {} } }));
    await raw.waitMsg((m) => m.connect, 'connect push');
    await publish('uni', { text: 'uni '.repeat(100) });
    const p = await raw.waitMsg((m) => m.pub, 'publication push');
    assert.strictEqual(p.pub.data.text, 'uni '.repeat(100));
    assert.ok(raw.frames.filter((f) => f.op === 1).every((f) => f.rsv1), 'every data frame compressed');
  } finally {
    raw.destroy();
  }
});

test('without websocket.compression an offer is not answered', async () => {
  const off = await new Rotord({ ...CONFIG, websocket: { compression: false } }, { workers: 1 }).start();
  try {
    const raw = await Raw.open(off.port);
    raw.destroy();
    assert.match(raw.head, /^HTTP\/1\.1 101 /);
    assert.strictEqual(raw.extension(), null);
  } finally {
    await off.stop();
  }
});

test('a compression_level outside 1..9 is a config error naming the key', () => {
  const dir = mkTmp();
  try {
    for (const [key, level] of [['websocket', 0], ['websocket', 10], ['uni_websocket', -1]]) {
      const p = path.join(dir, 'c.json');
      fs.writeFileSync(p, JSON.stringify({ [key]: { compression_level: level } }));
      const r = run(ROTORD, ['-t', '-c', p]);
      assert.notStrictEqual(r.status, 0, `${key}.compression_level ${level} refused`);
      assert.match(r.stderr, new RegExp(`${key}\\.compression_level: must be an integer from 1 to 9`));
    }
    const p = path.join(dir, 'ok.json');
    fs.writeFileSync(p, JSON.stringify({ websocket: { compression: true, compression_level: 9 } }));
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /compression/, 'and no longer "not supported"');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
