'use strict';
// Centrifugo v6's broker and presence_manager sections for Redis: the
// broker side (PUB/SUB, history streams, join/leave, the control channel)
// on one redis-server and presence on another, engine.* left at memory;
// then a Redis broker with presence in the node's shared memory, and the
// other way round. Each check reads both servers: what belongs to a side
// is on its server and nowhere else.
const test = require('node:test');
const assert = require('node:assert');
const { Rotord, waitFor } = require('./lib/rotord');
const { Redis, available, nodeClient: client, nodeApi: api } = require('./lib/redis');

const skip = available() ? false : 'redis-server is not installed';


const NS = {
  channel: {
    without_namespace: { history_size: 100, history_ttl: '300s', allow_subscribe_for_client: true },
    namespaces: [{ name: 'room', presence: true, join_leave: true, force_push_join_leave: true,
      allow_subscribe_for_client: true, allow_presence_for_client: true }],
  },
};

const block = (r) => ({ address: [`redis://127.0.0.1:${r.port}`], io_timeout: '1s' });
const broker = (r) => ({ broker: { enabled: true, type: 'redis', redis: block(r) } });
const presence = (r) => ({ presence_manager: { enabled: true, type: 'redis', redis: block(r) } });
const keys = (r, pattern) => r.cli('KEYS', pattern).split('\n').filter(Boolean).sort();
const users = (p) => Object.values(p.result.presence).map((x) => x.user).sort();

test('broker on one Redis, presence_manager on another, engine memory', { skip, timeout: 60000 }, async () => {
  const r1 = await new Redis().start();
  const r2 = await new Redis().start();
  let a, b;
  try {
    const cfg = (name) => ({ ...NS, ...broker(r1), ...presence(r2), node: { name } });
    a = await new Rotord(cfg('node-a'), { workers: 2, expectWorkers: 3 }).start();
    b = await new Rotord(cfg('node-b'), { workers: 2, expectWorkers: 3 }).start();
    // The nodes find each other on the broker's control channel.
    await waitFor(async () => (await api(a, 'info', {})).result.nodes.length === 2, 8000, 100, 'two nodes');

    const ca = await client(a, 'alice');
    const cb = await client(b, 'bob');
    assert.ok((await cb.call({ subscribe: { channel: 'news' } })).subscribe);
    const p = await api(a, 'publish', { channel: 'news', data: { n: 1 } });
    assert.strictEqual(p.result && p.result.offset, 1, JSON.stringify(p));
    await waitFor(() => cb.pubs('news').length === 1, 5000, 20, 'the publication on node B');
    const got = cb.pubs('news')[0];
    assert.deepStrictEqual([got.data, got.offset], [{ n: 1 }, 1]);
    const h = await api(b, 'history', { channel: 'news', limit: -1 });
    assert.deepStrictEqual(h.result.publications.map((x) => x.data), [{ n: 1 }]);
    assert.strictEqual(r1.cli('XLEN', 'centrifugo.stream.news').trim(), '1', 'the stream on the broker\'s Redis');
    assert.deepStrictEqual(keys(r2, 'centrifugo.stream*'), [], 'no stream on presence\'s Redis');

    await ca.call({ subscribe: { channel: 'room:1' } });
    await cb.call({ subscribe: { channel: 'room:1' } });
    await waitFor(() => ca.msgs.find((m) => m.push && m.push.join && m.push.join.info.user === 'bob'),
      5000, 20, 'the join of bob on node A, through the broker');
    for (const n of [a, b]) {
      assert.deepStrictEqual(users(await api(n, 'presence', { channel: 'room:1' })), ['alice', 'bob']);
      assert.deepStrictEqual((await api(n, 'presence_stats', { channel: 'room:1' })).result,
        { num_clients: 2, num_users: 2 });
    }
    assert.strictEqual(r2.cli('HLEN', 'centrifugo.presence.data.room:1').trim(), '2', 'presence hash on R2');
    assert.strictEqual(r2.cli('ZCARD', 'centrifugo.presence.expire.room:1').trim(), '2', 'presence zset on R2');
    assert.deepStrictEqual(keys(r1, 'centrifugo.presence*'), [], 'no presence on the broker\'s Redis');
    // PUB/SUB is the broker's alone: nothing subscribes on R2.
    assert.ok(Number(r1.cli('PUBSUB', 'NUMSUB', 'centrifugo.client.room:1').trim().split('\n')[1]) >= 1);
    assert.deepStrictEqual(r2.cli('PUBSUB', 'CHANNELS').split('\n').filter(Boolean), [], 'no subscription on R2');

    cb.ws.close();
    await waitFor(() => ca.msgs.find((m) => m.push && m.push.leave && m.push.leave.info.user === 'bob'),
      5000, 20, 'the leave of bob on node A');
    await waitFor(async () => users(await api(a, 'presence', { channel: 'room:1' })).length === 1,
      5000, 50, 'bob gone from presence');
    assert.strictEqual(r2.cli('HLEN', 'centrifugo.presence.data.room:1').trim(), '1');
    ca.ws.close();
  } finally {
    if (a) await a.stop();
    if (b) await b.stop();
    await r1.stop();
    await r2.stop();
  }
});

test('broker redis, presence_manager memory: presence from the node\'s shared memory', { skip, timeout: 60000 }, async () => {
  const r1 = await new Redis().start();
  let a;
  try {
    a = await new Rotord({ ...NS, ...broker(r1), presence_manager: { enabled: true, type: 'memory' }, node: { name: 'a' } },
      { workers: 2, expectWorkers: 3 }).start();
    const c1 = await client(a, 'carol');
    const c2 = await client(a, 'dave');
    await c1.call({ subscribe: { channel: 'room:2' } });
    await c2.call({ subscribe: { channel: 'room:2' } });
    await waitFor(() => c1.msgs.find((m) => m.push && m.push.join && m.push.join.info.user === 'dave'),
      5000, 20, 'the join of dave, through Redis PUB/SUB');
    assert.deepStrictEqual(users(await api(a, 'presence', { channel: 'room:2' })), ['carol', 'dave']);
    assert.deepStrictEqual((await api(a, 'presence_stats', { channel: 'room:2' })).result,
      { num_clients: 2, num_users: 2 });
    assert.strictEqual(Object.keys((await c1.call({ presence: { channel: 'room:2' } })).presence.presence).length, 2);
    const p = await api(a, 'publish', { channel: 'room:2', data: { x: 1 } });
    assert.ok(p.result, JSON.stringify(p));
    await waitFor(() => c2.pubs('room:2').length === 1, 5000, 20, 'the publication, through Redis');
    assert.deepStrictEqual(keys(r1, 'centrifugo.presence*'), [], 'no presence keys in Redis');
    c1.ws.close();
    c2.ws.close();
  } finally {
    if (a) await a.stop();
    await r1.stop();
  }
});

test('broker memory, presence_manager redis: no broker process, presence in Redis', { skip, timeout: 60000 }, async () => {
  const r2 = await new Redis().start();
  let a;
  try {
    a = await new Rotord({ ...NS, ...presence(r2), node: { name: 'a' } }, { workers: 2, expectWorkers: 2 }).start();
    const c1 = await client(a, 'erin');
    await c1.call({ subscribe: { channel: 'room:3' } });
    await api(a, 'publish', { channel: 'news', data: { y: 1 } });
    assert.deepStrictEqual(users(await api(a, 'presence', { channel: 'room:3' })), ['erin']);
    assert.strictEqual(r2.cli('HLEN', 'centrifugo.presence.data.room:3').trim(), '1', 'presence hash in Redis');
    assert.deepStrictEqual(keys(r2, 'centrifugo.stream*'), [], 'history stays in shared memory');
    assert.deepStrictEqual(r2.cli('PUBSUB', 'CHANNELS').split('\n').filter(Boolean), [], 'no PUB/SUB in Redis');
    assert.ok(!/\[broker\] serving/.test(a.log()), 'no broker process');
    c1.ws.close();
  } finally {
    if (a) await a.stop();
    await r2.stop();
  }
});
