'use strict';
// The Redis engine end to end: two rotord nodes (2 workers and a broker
// each) on one real redis-server started here, clients of the real SDK and
// raw ones spread over both. Cross-node fan-out in order and once, history
// and recovery on the other node, presence and join/leave across nodes,
// channels of every node, /emulation POSTs forwarded to the session's
// node, server API actions reaching a user on the other node, info listing both,
// Centrifugo's bytes in Redis (and frames injected by hand as a Centrifugo
// node, with an epoch of either form, would publish them), one Redis
// subscription per node whatever its workers, and the faults: Redis killed
// and back, the broker killed, a bad password.
const test = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const { Rotord, waitFor, sleep, hs256, request, freePort } = require('./lib/rotord');
const { Redis, available, nodeClient: client, nodeApi: api } = require('./lib/redis');
const { sdk, once } = require('./lib/transports');

const skip = available() ? false : 'redis-server is not installed';


const NS = {
  http_stream: { enabled: true },
  sse: { enabled: true },
  channel: {
    without_namespace: { history_size: 100, history_ttl: '300s', force_recovery: true, allow_publish_for_client: true,
      allow_subscribe_for_client: true },
    namespaces: [{ name: 'room', presence: true, join_leave: true, force_push_join_leave: true,
      allow_subscribe_for_client: true, allow_presence_for_client: true }],
  },
};

function nodeConfig(redis, name, extra = {}) {
  return {
    ...NS,
    engine: { type: 'redis', redis: { address: [`redis://127.0.0.1:${redis.port}`], io_timeout: '1s', ...extra } },
    node: { name },
  };
}

async function startNode(redis, name, extra, opts = {}) {
  return new Rotord(nodeConfig(redis, name, extra), { workers: 2, expectWorkers: 3, ...opts }).start();
}

function brokerPid(node) {
  const all = [...node.log().matchAll(/\[broker\] serving \(generation \d+, pid (\d+)\)/g)];
  return all.length ? Number(all[all.length - 1][1]) : 0;
}

test('the Redis engine', { skip, timeout: 180000 }, async (t) => {
  const redis = await new Redis().start();
  let a, b;
  try {
    a = await startNode(redis, 'node-a');
    b = await startNode(redis, 'node-b');

    await t.test('info lists both nodes, each once', async () => {
      const info = await waitFor(async () => {
        const r = await api(a, 'info', {});
        return r.result.nodes.length === 2 ? r : false;
      }, 8000, 100, 'two nodes in info');
      const names = info.result.nodes.map((n) => n.name).sort();
      assert.deepStrictEqual(names, ['node-a', 'node-b']);
      // B learns of A from A's answer to its announcement, a moment later.
      const other = await waitFor(async () => {
        const r = await api(b, 'info', {});
        return r.result.nodes.length === 2 ? r : false;
      }, 8000, 100, 'two nodes in B\'s info');
      assert.deepStrictEqual(other.result.nodes.map((n) => n.name).sort(), ['node-a', 'node-b']);
    });

    await t.test('cross-node fan-out: every publication once, in order, on both nodes', async () => {
      const ca = await client(a, 'alice');
      const cb = await client(b, 'bob');
      const sa = await ca.call({ subscribe: { channel: 'news' } });
      const sb = await cb.call({ subscribe: { channel: 'news' } });
      assert.ok(sa.subscribe && sb.subscribe);
      const results = [];
      for (let i = 0; i < 40; i++) {
        const r = await api(i % 2 ? a : b, 'publish', { channel: 'news', data: { i } });
        assert.ok(r.result, JSON.stringify(r));
        results.push(r.result);
      }
      const epoch = results[0].epoch;
      assert.ok(/^[A-Za-z]{8}$/.test(epoch), epoch);
      assert.deepStrictEqual(results.map((r) => r.offset), Array.from({ length: 40 }, (_, i) => i + 1));
      assert.ok(results.every((r) => r.epoch === epoch), 'one epoch');
      for (const c of [ca, cb]) {
        const pubs = await waitFor(() => (c.pubs('news').length >= 40 ? c.pubs('news') : false), 5000, 20, 'forty');
        await sleep(200);
        assert.strictEqual(c.pubs('news').length, 40, 'each exactly once');
        assert.deepStrictEqual(pubs.map((p) => p.data.i), Array.from({ length: 40 }, (_, i) => i));
        assert.deepStrictEqual(pubs.map((p) => p.offset), Array.from({ length: 40 }, (_, i) => i + 1));
      }
      // One Redis subscription per node, not per worker.
      assert.strictEqual(redis.cli('PUBSUB', 'NUMSUB', 'centrifugo.client.news').trim().split('\n')[1], '2');
      ca.ws.close();
      cb.ws.close();
    });

    await t.test("Centrifugo's layout in Redis", async () => {
      const ids = redis.cli('XRANGE', 'centrifugo.stream.news', '-', '+').split('\n').filter((l) => /^\d+-0$/.test(l));
      assert.deepStrictEqual(ids.slice(0, 3), ['1-0', '2-0', '3-0']);
      assert.strictEqual(ids.length, 40);
      const meta = redis.cli('HGETALL', 'centrifugo.stream.meta.news').trim().split('\n');
      const m = {};
      for (let i = 0; i + 1 < meta.length; i += 2) m[meta[i]] = meta[i + 1];
      assert.strictEqual(m.s, '40');
      assert.ok(/^[A-Za-z]{8}$/.test(m.e), m.e);
      const ttl = Number(redis.cli('TTL', 'centrifugo.stream.news'));
      assert.ok(ttl > 290 && ttl <= 300, `history_ttl ${ttl}`);
    });

    await t.test('history from either node, and recovery on the other node', async () => {
      const ha = await api(a, 'history', { channel: 'news', limit: -1 });
      const hb = await api(b, 'history', { channel: 'news', limit: -1 });
      assert.strictEqual(ha.result.publications.length, 40);
      assert.deepStrictEqual(ha.result, hb.result);
      // A client at offset 35 on node A comes back on node B.
      const epoch = ha.result.epoch;
      const c = await client(b, 'carol');
      const r = await c.call({ subscribe: { channel: 'news', recover: true, offset: 35, epoch } });
      assert.strictEqual(r.subscribe.recovered, true, JSON.stringify(r));
      assert.deepStrictEqual(r.subscribe.publications.map((p) => p.offset), [36, 37, 38, 39, 40]);
      const stale = await c.call({ subscribe: { channel: 'other', recover: true, offset: 3, epoch: 'Nosuchep' } });
      assert.ok(!stale.subscribe.recovered, 'another epoch is not recovered');
      c.ws.close();
    });

    await t.test('presence and join/leave across nodes', async () => {
      const ca = await client(a, 'alice');
      await ca.call({ subscribe: { channel: 'room:1' } });
      const cb = await client(b, 'bob');
      await cb.call({ subscribe: { channel: 'room:1' } });
      const join = await waitFor(() => ca.msgs.find((m) => m.push && m.push.join && m.push.join.info.user === 'bob'),
        5000, 20, 'the join of bob on node A');
      assert.strictEqual(join.push.channel, 'room:1');
      for (const n of [a, b]) {
        const p = await api(n, 'presence', { channel: 'room:1' });
        assert.deepStrictEqual(Object.values(p.result.presence).map((x) => x.user).sort(), ['alice', 'bob']);
        const s = await api(n, 'presence_stats', { channel: 'room:1' });
        assert.deepStrictEqual(s.result, { num_clients: 2, num_users: 2 });
      }
      const fromClient = await ca.call({ presence: { channel: 'room:1' } });
      assert.strictEqual(Object.keys(fromClient.presence.presence).length, 2);
      cb.ws.close();
      await waitFor(() => ca.msgs.find((m) => m.push && m.push.leave && m.push.leave.info.user === 'bob'),
        5000, 20, 'the leave of bob on node A');
      await waitFor(async () => Object.keys((await api(a, 'presence', { channel: 'room:1' })).result.presence).length === 1,
        5000, 50, 'bob gone from presence');
      ca.ws.close();
    });

    await t.test('channels lists every node\'s channels, a shared one with the sum of its clients', async () => {
      const ca = await client(a, 'alice');
      const cb = await client(b, 'bob');
      const cb2 = await client(b, 'bert');
      for (const [c, ch] of [[ca, 'tally'], [ca, 'only-a'], [cb, 'tally'], [cb, 'only-b'], [cb2, 'tally']]) {
        const r = await c.call({ subscribe: { channel: ch } });
        assert.ok(r.subscribe, JSON.stringify(r));
      }
      // Each worker shows its channels to the others every 200 ms at most.
      const want = { tally: { num_clients: 3 }, 'only-a': { num_clients: 1 }, 'only-b': { num_clients: 1 } };
      for (const n of [a, b]) {
        let all;
        await waitFor(async () => {
          all = (await api(n, 'channels', {})).result.channels;
          return JSON.stringify([all.tally, all['only-a'], all['only-b']]) === JSON.stringify(Object.values(want));
        }, 3000, 100, 'both nodes\' channels').catch(() => assert.fail(`channels: ${JSON.stringify(all)}`));
        const some = await api(n, 'channels', { pattern: 'only-*' });
        assert.deepStrictEqual(some, { result: { channels: { 'only-a': { num_clients: 1 }, 'only-b': { num_clients: 1 } } } });
      }
      for (const c of [ca, cb, cb2]) c.ws.close();
    });

    await t.test('server API actions reach a user on the other node', async () => {
      const cb = await client(b, 'dave');
      await cb.call({ subscribe: { channel: 'news' } });
      const un = await api(a, 'unsubscribe', { user: 'dave', channel: 'news' });
      assert.deepStrictEqual(un, { result: {} });
      await waitFor(() => cb.msgs.find((m) => m.push && m.push.unsubscribe && m.push.channel === 'news'),
        5000, 20, 'the unsubscribe push on node B');
      const sub = await api(a, 'subscribe', { user: 'dave', channel: 'room:2' });
      assert.deepStrictEqual(sub, { result: {} });
      await waitFor(() => cb.msgs.find((m) => m.push && m.push.subscribe && m.push.channel === 'room:2'),
        5000, 20, 'the subscribe push on node B');
      const dis = await api(a, 'disconnect', { user: 'dave', disconnect: { code: 4000, reason: 'bye' } });
      assert.deepStrictEqual(dis, { result: {} });
      const closed = await cb.closed;
      assert.strictEqual(closed.code, 4000);
      assert.strictEqual(closed.reason, 'bye');
    });

    await t.test('frames a Centrifugo node publishes are delivered, either epoch form', async () => {
      // A stream an older Centrifugo started: its epoch is unix seconds.
      redis.cli('HSET', 'centrifugo.stream.meta.legacy', 'e', '1700000000', 's', '6');
      const c = await client(a, 'erin');
      const r = await c.call({ subscribe: { channel: 'legacy' } });
      assert.strictEqual(r.subscribe.epoch, '1700000000');
      assert.strictEqual(r.subscribe.offset, 6);
      await c.call({ subscribe: { channel: 'room:legacy' } });
      // Publication{data: {"x":1}} as bytes: field 4, 7 bytes.
      const pb = Buffer.concat([Buffer.from([0x22, 0x07]), Buffer.from('{"x":1}')]);
      redis.cliStdin(Buffer.concat([Buffer.from('__p1:7:1700000000__'), pb]), 'PUBLISH', 'centrifugo.client.legacy');
      redis.cliStdin(pb, 'PUBLISH', 'centrifugo.client.room:legacy');
      const got = await waitFor(() => (c.pubs('legacy').length >= 1 ? c.pubs('legacy') : false), 5000, 20, 'the p1 frame');
      assert.deepStrictEqual(got[0], { data: { x: 1 }, offset: 7 });
      const raw = await waitFor(() => (c.pubs('room:legacy').length >= 1 ? c.pubs('room:legacy') : false), 5000, 20, 'the raw frame');
      assert.deepStrictEqual(raw[0], { data: { x: 1 } });
      // rotor's own publish continues Centrifugo's stream.
      const p = await api(b, 'publish', { channel: 'legacy', data: { y: 2 } });
      assert.deepStrictEqual(p.result, { offset: 7, epoch: '1700000000' });
      c.ws.close();
    });

    await t.test('the SDK: centrifuge-js subscribed on B gets what is published on A', async () => {
      const cf = new Centrifuge(`ws://127.0.0.1:${b.port}/connection/websocket`, {
        websocket: WebSocket, token: hs256({ sub: 'frank' }),
      });
      const got = [];
      const sub = cf.newSubscription('sdk');
      sub.on('publication', (ctx) => got.push(ctx.data.n));
      cf.connect();
      sub.subscribe();
      await new Promise((r) => sub.once('subscribed', r));
      for (let n = 0; n < 10; n++) await api(a, 'publish', { channel: 'sdk', data: { n } });
      await waitFor(() => got.length === 10, 5000, 20, 'ten on the SDK');
      assert.deepStrictEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      cf.disconnect();
    });

    await t.test('emulation: POSTs that land on another node reach the session there', async () => {
      const uidB = (await api(b, 'info', {})).result.nodes[0].uid;
      for (const t of [{ name: 'http_stream', fmt: 'json' }, { name: 'http_stream', fmt: 'protobuf' }, { name: 'sse', fmt: 'json' }]) {
        const what = `${t.name}/${t.fmt}`;
        // The stream on B, the commands through A (a load balancer's split).
        const c = sdk(b.port, t, { token: hs256({ sub: 'gina' }), emulationEndpoint: `http://127.0.0.1:${a.port}/emulation` });
        try {
          const connected = once(c, 'connected', 8000);
          c.connect();
          assert.strictEqual((await connected).transport, t.name, what);
          const sub = c.newSubscription(`emu-${t.fmt}-${t.name}`);
          const got = [];
          // Protobuf carries bytes: the SDK hands them over as they are.
          sub.on('publication', (ctx) => got.push(t.fmt === 'protobuf' ? JSON.parse(Buffer.from(ctx.data).toString()) : ctx.data));
          sub.subscribe();
          await sub.ready(5000);
          const mine = { from: 'client', what };
          await sub.publish(t.fmt === 'protobuf' ? new TextEncoder().encode(JSON.stringify(mine)) : mine);
          await api(a, 'publish', { channel: sub.channel, data: { from: 'api', what } });
          await waitFor(() => got.length >= 2, 5000, 20, `${what}: both publications`);
          assert.deepStrictEqual(got, [{ from: 'client', what }, { from: 'api', what }], what);
          assert.strictEqual(c.errors.length, 0, `${what}: ${c.errors.map((e) => e.error && e.error.message)}`);
        } finally {
          c.disconnect();
        }
      }
      const post = (node, session) => request(a.port, { method: 'POST', path: '/emulation',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ node, session, data: '{"id":5,"ping":{}}' }) });
      const unknownNode = await post('01234567-89ab-4cde-8f01-23456789abcd', 'x'.repeat(36));
      assert.strictEqual(unknownNode.status, 404, 'a node nobody knows: 404');
      const noSession = await post(uidB, '0'.repeat(36));
      assert.strictEqual(noSession.status, 204);
      assert.strictEqual(noSession.headers['x-rotor-emulation'], 'no-session', 'a session node B never made');
    });

    await t.test('the broker killed with -9 is restarted; its subscribers catch up from history', async () => {
      const c = await client(b, 'gina');
      const s0 = await c.call({ subscribe: { channel: 'after-broker' } });
      const epoch = s0.subscribe.epoch;
      await api(a, 'publish', { channel: 'after-broker', data: { n: 1 } });
      await waitFor(() => c.pubs('after-broker').length === 1, 5000, 20, 'the first');
      const old = brokerPid(b);
      assert.ok(old > 0);
      process.kill(old, 'SIGKILL');
      // Published while node B has no broker: nobody there hears it.
      await api(a, 'publish', { channel: 'after-broker', data: { n: 2 } });
      await waitFor(() => brokerPid(b) !== old && brokerPid(b) > 0, 10000, 50, 'a new broker');
      // The new broker subscribes what the workers hold and tells them
      // publications may have passed: insufficient state, never a gap.
      await waitFor(() => c.msgs.find((m) => m.push && m.push.unsubscribe && m.push.channel === 'after-broker' &&
        m.push.unsubscribe.code === 2500), 10000, 50, 'insufficient state');
      const r = await waitFor(async () => {
        const x = await c.call({ subscribe: { channel: 'after-broker', recover: true, offset: 1, epoch } });
        return x.subscribe ? x : false;
      }, 10000, 200, 'subscribing again');
      assert.strictEqual(r.subscribe.recovered, true);
      assert.deepStrictEqual(r.subscribe.publications.map((p) => p.data.n), [2], 'the missed one, from history');
      await api(a, 'publish', { channel: 'after-broker', data: { n: 3 } });
      await waitFor(() => c.pubs('after-broker').some((p) => p.data.n === 3), 5000, 20, 'delivery through the new broker');
      c.ws.close();
    });

    await t.test('Redis killed: publishes fail, clients stay, all comes back', async () => {
      const c = await client(b, 'hank');
      await c.call({ subscribe: { channel: 'outage' } });
      const before = await api(a, 'publish', { channel: 'outage', data: { n: 1 } });
      assert.strictEqual(before.result.offset, 1);
      await redis.kill();
      const during = await api(a, 'publish', { channel: 'outage', data: { n: 2 } });
      assert.deepStrictEqual(during.error, { code: 100, message: 'internal server error' },
        'never ok for something that was not stored');
      assert.strictEqual(c.ws.readyState, WebSocket.OPEN, 'the client stays connected');
      await redis.start(redis.port);
      const after = await waitFor(async () => {
        const r = await api(a, 'publish', { channel: 'outage', data: { n: 3 } });
        return r.result ? r : false;
      }, 15000, 200, 'publishing again');
      assert.strictEqual(after.result.offset, 1, 'a new Redis, a new stream');
      // The subscription positioned in the old epoch cannot be proven: it
      // gets insufficient state (never a silent gap) and the client
      // subscribes again.
      await waitFor(() => c.msgs.find((m) => m.push && m.push.unsubscribe && m.push.unsubscribe.code === 2500),
        15000, 50, 'insufficient state');
      // Subscribing answers a temporary error until the node listens
      // again (as an SDK would, ask again).
      await waitFor(async () => (await c.call({ subscribe: { channel: 'outage' } })).subscribe, 15000, 300,
        'subscribing again');
      await waitFor(async () => {
        await api(b, 'publish', { channel: 'outage', data: { n: 4 } });
        return c.pubs('outage').some((p) => p.data.n === 4);
      }, 10000, 200, 'delivery after the outage');
      c.ws.close();
    });
  } finally {
    if (a) await a.stop();
    if (b) await b.stop();
    await redis.stop();
  }
});

// Centrifugo's channel -> shard mapping (ref/redis-engine.md §7.1): FNV-1a
// 64 of the channel, then jump consistent hash with its quotients in
// float64, as centrifuge computes them.
function shardOf(ch, n) {
  const M = (1n << 64n) - 1n;
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(ch)) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & M;
  let b = -1n;
  let j = 0n;
  while (j < BigInt(n)) {
    b = j;
    h = (h * 2862933555777941757n + 1n) & M;
    j = BigInt(Math.trunc(Number(b + 1n) * (2 ** 31 / Number((h >> 33n) + 1n))));
  }
  return Number(b);
}

test('two shards: each channel on the shard Centrifugo\'s hash picks, delivery across nodes on both', { skip, timeout: 60000 }, async () => {
  const r1 = await new Redis().start();
  const r2 = await new Redis().start();
  let c, d;
  try {
    const shards = { address: [`redis://127.0.0.1:${r1.port}`, `redis://127.0.0.1:${r2.port}`] };
    const cfg = (name) => ({ ...NS, engine: { type: 'redis', redis: { ...shards, io_timeout: '1s' } }, node: { name } });
    c = await new Rotord(cfg('node-c'), { workers: 2, expectWorkers: 3 }).start();
    d = await new Rotord(cfg('node-d'), { workers: 2, expectWorkers: 3 }).start();
    await waitFor(async () => (await api(c, 'info', {})).result.nodes.length === 2, 8000, 100, 'two nodes');
    const sub = await client(d, 'ivan');
    const chans = Array.from({ length: 12 }, (_, i) => `sh${i}`);
    for (const ch of chans) assert.ok((await sub.call({ subscribe: { channel: ch } })).subscribe, ch);
    for (const ch of chans) {
      for (let n = 1; n <= 3; n++) {
        const r = await api(c, 'publish', { channel: ch, data: { n } });
        assert.strictEqual(r.result && r.result.offset, n, JSON.stringify(r));
      }
    }
    const on = { [r1.port]: [], [r2.port]: [] };
    for (const ch of chans) {
      const where = [r1, r2].filter((r) => r.cli('XLEN', `centrifugo.stream.${ch}`).trim() === '3');
      assert.strictEqual(where.length, 1, `${ch}: its stream on exactly one shard`);
      assert.strictEqual(where[0], [r1, r2][shardOf(ch, 2)], `${ch}: on the shard Centrifugo's mapping names`);
      on[where[0].port].push(ch);
      // its PUB/SUB channel on that shard too: the nodes subscribe it there
      assert.strictEqual(where[0].cli('PUBSUB', 'NUMSUB', `centrifugo.client.${ch}`).trim().split('\n')[1], '1', ch);
    }
    assert.ok(on[r1.port].length > 0 && on[r2.port].length > 0, `channels on both shards: ${JSON.stringify(on)}`);
    for (const ch of chans) {
      await waitFor(() => sub.pubs(ch).length === 3, 5000, 20, `${ch} on node D`);
      assert.deepStrictEqual(sub.pubs(ch).map((p) => p.data.n), [1, 2, 3], ch);
    }
    sub.ws.close();
  } finally {
    if (c) await c.stop();
    if (d) await d.stop();
    await r1.stop();
    await r2.stop();
  }
});

test('a node restarted: its clients recover from the history in Redis', { skip, timeout: 60000 }, async () => {
  const redis = await new Redis().start();
  let a, b;
  try {
    a = await startNode(redis, 'node-a');
    b = await startNode(redis, 'node-b');
    const c = await client(a, 'judy');
    const s = await c.call({ subscribe: { channel: 'restart' } });
    for (let n = 1; n <= 3; n++) await api(b, 'publish', { channel: 'restart', data: { n } });
    await waitFor(() => c.pubs('restart').length === 3, 5000, 20, 'three before the restart');
    const port = a.port;
    await a.stop();
    a = null;
    for (let n = 4; n <= 6; n++) await api(b, 'publish', { channel: 'restart', data: { n } });
    a = await startNode(redis, 'node-a', {}, { port });
    const back = await client(a, 'judy');
    const r = await back.call({ subscribe: { channel: 'restart', recover: true, offset: 3, epoch: s.subscribe.epoch } });
    assert.ok(r.subscribe, JSON.stringify(r));
    assert.strictEqual(r.subscribe.recovered, true, JSON.stringify(r));
    assert.deepStrictEqual(r.subscribe.publications.map((p) => p.data.n), [4, 5, 6], 'what it missed while the node was down');
    await api(b, 'publish', { channel: 'restart', data: { n: 7 } });
    await waitFor(() => back.pubs('restart').some((p) => p.data.n === 7), 5000, 20, 'live again on the restarted node');
    back.ws.close();
  } finally {
    if (a) await a.stop();
    if (b) await b.stop();
    await redis.stop();
  }
});

test('/health answers for the whole node: once 200 after an outage, a subscribe on any worker works', { skip, timeout: 60000 }, async () => {
  const redis = await new Redis().start();
  let n;
  try {
    n = await startNode(redis, 'node-h', {}, { workers: 3, expectWorkers: 4 });
    await redis.kill();
    await waitFor(async () => (await request(n.port, { path: '/health' })).status === 503, 5000, 25, 'unhealthy');
    // Each link retries on its own back-off, doubling, with jitter: after
    // a few seconds down, the workers and the broker come back at moments
    // up to a second apart.
    await sleep(4000);
    await redis.start(redis.port);
    await waitFor(async () => (await request(n.port, { path: '/health' })).status === 200, 20000, 25, 'healthy again');
    const cs = await Promise.all([...Array(8).keys()].map((i) => client(n, `h${i}`)));
    try {
      const rs = await Promise.all(cs.map((c, i) => c.call({ subscribe: { channel: `h${i}`, recover: true } })));
      for (const r of rs) assert.ok(r.subscribe, `health said 200, yet ${JSON.stringify(r)}`);
    } finally {
      for (const c of cs) c.ws.close();
    }
  } finally {
    if (n) await n.stop();
    await redis.stop();
  }
});

test('a Redis address nobody listens on: the daemon runs, says why, and serves once Redis is there', { skip, timeout: 60000 }, async () => {
  const redis = new Redis();
  redis.port = await freePort();
  const n = await new Rotord(nodeConfig(redis, 'early'), { workers: 2, expectWorkers: 3, healthStatus: 503 }).start();
  try {
    const h = await request(n.port, { path: '/health' });
    assert.strictEqual(h.status, 503);
    assert.match(h.body, /redis shard 127\.0\.0\.1:\d+: .*(refused|connect)/i, h.body);
    const p = await api(n, 'publish', { channel: 'early', data: {} });
    assert.deepStrictEqual(p.error, { code: 100, message: 'internal server error' }, 'never ok before Redis is there');
    await redis.start(redis.port);
    await waitFor(async () => (await request(n.port, { path: '/health' })).status === 200, 15000, 200, 'healthy once Redis listens');
    const ok = await api(n, 'publish', { channel: 'early', data: {} });
    assert.strictEqual(ok.result.offset, 1, JSON.stringify(ok));
  } finally {
    await n.stop();
    await redis.stop();
  }
});

test('a wrong Redis password: the daemon runs, says why, and keeps trying', { skip, timeout: 60000 }, async () => {
  const redis = await new Redis({ args: ['--requirepass', 'right'], password: 'right' }).start();
  let n;
  try {
    n = await startNode(redis, 'node-p', { password: 'wrong' }, { healthStatus: 503 });
    const r = await api(n, 'publish', { channel: 'news', data: {} });
    assert.strictEqual(r.error.code, 100);
    await waitFor(() => /WRONGPASS|invalid password|AUTH/i.test(n.log()), 5000, 50, 'the reason in the log');
    const h = await request(n.port, { path: '/health' });
    assert.strictEqual(h.status, 503, 'health says the engine is down');
    assert.match(h.body, /redis/);
  } finally {
    if (n) await n.stop();
    await redis.stop();
  }
});

// Docker-compose writes "redis:6379": a host name, looked up when each link
// connects (without blocking the loop), never at config time. Here the
// machine's own name, which /etc/hosts maps to 127.0.0.1.
async function ownNameIsLoopback() {
  const name = require('node:os').hostname();
  try {
    const all = await require('node:dns').promises.lookup(name, { all: true });
    return all.length > 0 && all.every((a) => a.address === '127.0.0.1') ? name : null;
  } catch {
    return null;
  }
}

test('a Redis address by host name (as docker-compose\'s "redis:6379"): looked up at connect, served', { skip, timeout: 60000 }, async (t) => {
  const name = await ownNameIsLoopback();
  if (!name) return t.skip('the machine\'s host name does not resolve to 127.0.0.1 only');
  const redis = await new Redis().start();
  let a, b;
  try {
    a = await new Rotord({ ...NS, engine: { type: 'redis', redis: { address: [`${name}:${redis.port}`] } },
      node: { name: 'by-name-a' } }, { workers: 2, expectWorkers: 3 }).start();
    b = await new Rotord({ ...NS, engine: { type: 'redis', redis: { address: [`redis://${name}:${redis.port}/0`] } },
      node: { name: 'by-name-b' } }, { workers: 2, expectWorkers: 3 }).start();
    const c = await client(a, 'nina');
    await c.call({ subscribe: { channel: 'named' } });
    const p = await api(b, 'publish', { channel: 'named', data: { v: 1 } });
    assert.strictEqual(p.result.offset, 1, JSON.stringify(p));
    await waitFor(() => c.pubs('named').length === 1, 5000, 20, 'delivered across nodes through Redis');
    assert.deepStrictEqual(c.pubs('named')[0].data, { v: 1 });
    c.ws.close();
  } finally {
    if (a) await a.stop();
    if (b) await b.stop();
    await redis.stop();
  }
});

test('a Redis host name that does not resolve: the daemon runs, names the host and the error, keeps trying', { skip, timeout: 60000 }, async () => {
  const n = await new Rotord({ ...NS, engine: { type: 'redis', redis: { address: ['nonexistent.invalid:6379'] } },
    node: { name: 'unresolved' } }, { workers: 2, expectWorkers: 3, healthStatus: 503 }).start();
  try {
    const h = await waitFor(async () => {
      const r = await request(n.port, { path: '/health' });
      return /cannot resolve/.test(r.body) && r;
    }, 5000, 50, 'health says why');
    assert.strictEqual(h.status, 503);
    assert.match(h.body, /redis shard nonexistent\.invalid:6379: cannot resolve nonexistent\.invalid: \S/, h.body);
    await waitFor(() => /redis nonexistent\.invalid:6379: cannot resolve nonexistent\.invalid: \S/.test(n.log()),
      5000, 50, 'a log line naming the host and the error');
    const p = await api(n, 'publish', { channel: 'x', data: {} });
    assert.deepStrictEqual(p.error, { code: 100, message: 'internal server error' });
    const h2 = await request(n.port, { path: '/health' });
    assert.strictEqual(h2.status, 503, 'still down, still trying');
  } finally {
    await n.stop();
  }
});
