'use strict';
// The Redis engine on a Redis Cluster (ref/redis-engine.md §2.2, §11
// topology 4): three masters started here, two rotord nodes (2 workers and
// a broker each) on cluster_address, and a third on a plain address of one
// cluster node, which rotor must find to be a cluster (as Centrifugo 6.1+
// does) or it would use other key names. Cross-node fan-out once and in
// order, history and recovery from the other node, presence and join/leave,
// and the names Centrifugo uses in a cluster: {CH}-tagged keys and the
// {p}.client.{CH} PUB/SUB channel.
const test = require('node:test');
const assert = require('node:assert');
const { Rotord, waitFor, sleep } = require('./lib/rotord');
const { available, clusterGroup, nodeClient: client, nodeApi: api } = require('./lib/redis');

const skip = available() ? false : 'redis-server is not installed';


function nodeConfig(redis, name) {
  return {
    channel: {
      without_namespace: { history_size: 100, history_ttl: '300s', force_recovery: true,
        allow_subscribe_for_client: true },
      namespaces: [{ name: 'room', presence: true, join_leave: true, force_push_join_leave: true,
        allow_subscribe_for_client: true, allow_presence_for_client: true }],
    },
    engine: { type: 'redis', redis: { io_timeout: '2s', ...redis } },
    node: { name },
  };
}

// Subscribes C to CH, retrying while the node's broker is not ready yet
// (a temporary error, code 100, as Centrifugo while PUB/SUB is down).
async function subscribe(c, ch, extra = {}) {
  let r;
  await waitFor(async () => {
    r = await c.call({ subscribe: { channel: ch, ...extra } });
    return r.subscribe || (r.error && r.error.code !== 100 ? r : false);
  }, 10000, 100, `subscribe ${ch}`);
  assert.ok(r.subscribe, JSON.stringify(r));
  return r;
}

function hash(text) {
  const l = text.trim().split('\n');
  const m = {};
  for (let i = 0; i + 1 < l.length; i += 2) m[l[i]] = l[i + 1];
  return m;
}

test('the Redis engine on a Redis Cluster', { skip, timeout: 120000 }, async (t) => {
  const cluster = await clusterGroup(3);
  const nodes = [];
  try {
    const cfg = { cluster_address: [cluster.seeds(2)] };
    const a = await new Rotord(nodeConfig(cfg, 'node-a'), { workers: 2, expectWorkers: 3 }).start();
    nodes.push(a);
    const b = await new Rotord(nodeConfig(cfg, 'node-b'), { workers: 2, expectWorkers: 3 }).start();
    nodes.push(b);

    await t.test('info lists both nodes', async () => {
      for (const n of [a, b]) {
        await waitFor(async () => (await api(n, 'info', {})).result.nodes.length === 2, 10000, 100, 'two nodes');
      }
    });

    await t.test('cross-node fan-out: every publication once, in order, on both nodes', async () => {
      const ca = await client(a, 'alice');
      const cb = await client(b, 'bob');
      await subscribe(ca, 'news');
      await subscribe(cb, 'news');
      const results = [];
      for (let i = 0; i < 30; i++) {
        const r = await api(i % 2 ? a : b, 'publish', { channel: 'news', data: { i } });
        assert.ok(r.result, JSON.stringify(r));
        results.push(r.result);
      }
      assert.deepStrictEqual(results.map((r) => r.offset), Array.from({ length: 30 }, (_, i) => i + 1));
      assert.ok(results.every((r) => r.epoch === results[0].epoch), 'one epoch');
      for (const c of [ca, cb]) {
        const pubs = await waitFor(() => (c.pubs('news').length >= 30 ? c.pubs('news') : false), 8000, 20, 'thirty');
        await sleep(200);
        assert.strictEqual(c.pubs('news').length, 30, 'each exactly once');
        assert.deepStrictEqual(pubs.map((p) => p.data.i), Array.from({ length: 30 }, (_, i) => i));
        assert.deepStrictEqual(pubs.map((p) => p.offset), Array.from({ length: 30 }, (_, i) => i + 1));
      }
      // One subscription per node, on Centrifugo's cluster name.
      assert.strictEqual(cluster.numsub('centrifugo.client.{news}'), 2);
      assert.strictEqual(cluster.numsub('centrifugo.client.news'), 0);
      ca.ws.close();
      cb.ws.close();
    });

    await t.test("Centrifugo's cluster names: the channel's keys share its {CH} slot", async () => {
      const ids = cluster.cli('XRANGE', 'centrifugo.stream.{news}', '-', '+').split('\n').filter((l) => /^\d+-0$/.test(l));
      assert.strictEqual(ids.length, 30);
      assert.deepStrictEqual(ids.slice(0, 3), ['1-0', '2-0', '3-0']);
      const m = hash(cluster.cli('HGETALL', 'centrifugo.stream.meta.{news}'));
      assert.strictEqual(m.s, '30');
      assert.ok(/^[A-Za-z]{8}$/.test(m.e), m.e);
      assert.strictEqual(cluster.cli('EXISTS', 'centrifugo.stream.news').trim(), '0', 'no untagged key');
      const slot = cluster.cli('CLUSTER', 'KEYSLOT', 'centrifugo.stream.{news}').trim();
      assert.strictEqual(cluster.cli('CLUSTER', 'KEYSLOT', 'centrifugo.stream.meta.{news}').trim(), slot);
      assert.strictEqual(cluster.cli('CLUSTER', 'KEYSLOT', 'news').trim(), slot);
    });

    await t.test('history from either node, and recovery on the other node', async () => {
      const ha = await api(a, 'history', { channel: 'news', limit: -1 });
      const hb = await api(b, 'history', { channel: 'news', limit: -1 });
      assert.strictEqual(ha.result.publications.length, 30);
      assert.deepStrictEqual(ha.result, hb.result);
      const c = await client(b, 'carol');
      const r = await subscribe(c, 'news', { recover: true, offset: 26, epoch: ha.result.epoch });
      assert.strictEqual(r.subscribe.recovered, true, JSON.stringify(r));
      assert.deepStrictEqual(r.subscribe.publications.map((p) => p.offset), [27, 28, 29, 30]);
      c.ws.close();
    });

    await t.test('presence and join/leave across nodes', async () => {
      const ca = await client(a, 'alice');
      await subscribe(ca, 'room:1');
      const cb = await client(b, 'bob');
      await subscribe(cb, 'room:1');
      await waitFor(() => ca.msgs.find((m) => m.push && m.push.join && m.push.join.info.user === 'bob'),
        8000, 20, 'the join of bob on node A');
      for (const n of [a, b]) {
        const p = await api(n, 'presence', { channel: 'room:1' });
        assert.deepStrictEqual(Object.values(p.result.presence).map((x) => x.user).sort(), ['alice', 'bob']);
        const s = await api(n, 'presence_stats', { channel: 'room:1' });
        assert.deepStrictEqual(s.result, { num_clients: 2, num_users: 2 });
      }
      assert.strictEqual(cluster.cli('HLEN', 'centrifugo.presence.data.{room:1}').trim(), '2');
      assert.strictEqual(cluster.cli('ZCARD', 'centrifugo.presence.expire.{room:1}').trim(), '2');
      cb.ws.close();
      await waitFor(() => ca.msgs.find((m) => m.push && m.push.leave && m.push.leave.info.user === 'bob'),
        8000, 20, 'the leave of bob on node A');
      ca.ws.close();
    });

    await t.test('a plain address of a cluster node is found to be a cluster: same names', async () => {
      const p = cluster.servers[2].port;
      const c = await new Rotord(nodeConfig({ address: [`redis://127.0.0.1:${p}`] }, 'node-c'),
        { workers: 2, expectWorkers: 3 }).start();
      nodes.push(c);
      await waitFor(async () => (await api(a, 'info', {})).result.nodes.length === 3, 10000, 100, 'three nodes');
      const cc = await client(c, 'dan');
      await subscribe(cc, 'news');
      const r = await api(c, 'publish', { channel: 'news', data: { i: 30 } });
      assert.strictEqual(r.result && r.result.offset, 31, JSON.stringify(r));
      const r2 = await api(a, 'publish', { channel: 'news', data: { i: 31 } });
      assert.strictEqual(r2.result && r2.result.offset, 32, JSON.stringify(r2));
      await waitFor(() => cc.pubs('news').length >= 2, 8000, 20, 'both on node C');
      assert.deepStrictEqual(cc.pubs('news').map((x) => x.offset), [31, 32]);
      assert.strictEqual(hash(cluster.cli('HGETALL', 'centrifugo.stream.meta.{news}')).s, '32');
      assert.strictEqual(cluster.cli('EXISTS', 'centrifugo.stream.news').trim(), '0', 'no untagged key');
      assert.ok(c.log().includes('cluster_enabled:1'), 'the log says why');
      cc.ws.close();
    });
  } finally {
    for (const n of nodes) await n.stop();
    await cluster.stop();
  }
});
