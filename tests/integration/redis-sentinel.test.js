'use strict';
// The Redis engine on a Sentinel group (ref/redis-engine.md §11, topology
// 3): a master, two replicas and three sentinels started here, two rotord
// nodes configured with sentinel_address and sentinel_wait_replicas.
// Cross-node delivery; then a manual failover (SENTINEL FAILOVER) and the
// master killed (SIGKILL), each under a steady publisher on node A (one
// publish every 20 ms, history on): publishes work again after the
// failover, EVERY publish answered OK is in the history afterwards (from
// either node), and a subscriber on node B either received each of them or
// was told its state is insufficient (and then recovers them): never a
// silent gap. The failover window (first to last failed publish) is
// printed.
const test = require('node:test');
const assert = require('node:assert');
const { Rotord, waitFor, sleep, apiPost } = require('./lib/rotord');
const { sentinelAvailable, sentinelGroup, nodeClient: client, nodeApi: api } = require('./lib/redis');

const skip = sentinelAvailable() ? false : 'redis-server or redis-sentinel is not installed';


function nodeConfig(group, name) {
  return {
    channel: {
      without_namespace: { history_size: 10000, history_ttl: '300s', force_recovery: true,
        allow_subscribe_for_client: true },
    },
    engine: { type: 'redis', redis: { sentinel_address: [group.address], sentinel_master_name: group.name,
      io_timeout: '1s', sentinel_wait_replicas: true } },
    node: { name },
  };
}

// Under a steady publisher on node A (one publish every 20 ms on CH), the
// master is killed (HOW "kill") or SENTINEL FAILOVER is asked (HOW
// "failover"): publishes work again, every one answered OK is in the
// history of both nodes, and the subscriber on B got each one or was told
// insufficient state and recovers them.
async function steadyFailover(t, group, a, b, ch, how) {
      const sub = await client(b, 'carol');
      const s = await sub.call({ subscribe: { channel: ch, recover: true } });
      assert.ok(s.subscribe, JSON.stringify(s));
      const okPubs = []; // { i, offset, epoch }
      const failed = []; // { i, at, error }
      let stop = false;
      let i = 0;
      const publisher = (async () => {
        while (!stop) {
          const n = i++;
          const at = Date.now();
          try {
            const r = await apiPost(a.port, '/api/publish', JSON.stringify({ channel: ch, data: { n } }));
            const j = JSON.parse(r.body);
            if (j.result) okPubs.push({ n, offset: j.result.offset, epoch: j.result.epoch, at });
            else failed.push({ n, at, error: JSON.stringify(j.error) });
          } catch (e) {
            failed.push({ n, at, error: e.message });
          }
          await sleep(Math.max(0, 20 - (Date.now() - at)));
        }
      })();
      try {
        await waitFor(() => okPubs.length >= 50, 10000, 20, 'fifty publishes before the failover');
        const old = group.master();
        const killedAt = Date.now();
        if (how === 'kill') await old.kill('SIGKILL');
        else assert.strictEqual(group.sentinels[0].cli('SENTINEL', 'failover', group.name).trim(), 'OK');
        await waitFor(() => { const p = group.sentinels[0].masterNow(); return p && p !== old.port; }, 30000, 50,
          'the sentinels to name a new master');
        const namedAt = Date.now();
        // publishes work again: 50 in a row after the last failure
        await waitFor(() => failed.length > 0 && okPubs.filter((p) => p.at > failed[failed.length - 1].at).length >= 50,
          25000, 50, 'fifty good publishes after the failover');
        const window = failed.length ? failed[failed.length - 1].at - failed[0].at : 0;
        t.diagnostic(`failover: ${failed.length} publishes failed over ${window} ms (first ${failed.length ?
          failed[0].at - killedAt : 0} ms after the ${how}); ${okPubs.length} OK; errors: ${[...new Set(
          failed.map((f) => f.error))].slice(0, 3).join(' | ')}`);
        console.log(`# ${how}: failover window: ${window} ms, ${failed.length} failed, first failure ${failed.length ?
          failed[0].at - killedAt : 0} ms after the ${how}, new master named after ${namedAt - killedAt} ms, last `
          + `failure ${failed[failed.length - 1].at - namedAt} ms after that`);
      } finally {
        stop = true;
        await publisher;
      }

      // EVERY publish answered OK is in the history, with its offset, on either node.
      const epoch = okPubs[0].epoch;
      for (const node of [a, b]) {
        const h = await api(node, 'history', { channel: ch, limit: -1 });
        assert.ok(h.result, JSON.stringify(h));
        const byOffset = new Map(h.result.publications.map((p) => [Number(p.offset), p.data.n]));
        const missing = okPubs.filter((p) => byOffset.get(p.offset) !== p.n);
        assert.deepStrictEqual(missing, [], `acknowledged publishes missing from history on ${node === a ? 'A' : 'B'}`);
        assert.ok(okPubs.every((p) => p.epoch === epoch), 'one epoch: the data survived the failover');
        assert.strictEqual(h.result.epoch, epoch);
      }
      const offsets = okPubs.map((p) => p.offset);
      assert.ok(offsets.every((o, k) => k === 0 || o > offsets[k - 1]), 'offsets increase');

      // The subscriber: every acknowledged publication, or insufficient state.
      const want = new Set(okPubs.map((p) => p.n));
      const got = () => sub.msgs.filter((m) => m.push && m.push.pub && m.push.channel === ch).map((m) => m.push.pub);
      const lost = () => sub.msgs.find((m) => m.push && m.push.unsubscribe && m.push.channel === ch &&
        m.push.unsubscribe.code === 2500);
      await waitFor(() => got().some((p) => p.data.n === okPubs[okPubs.length - 1].n) || lost(), 8000, 20,
        'the last publication or insufficient state');
      const pubs = got();
      // no silent gap: until insufficient state, offsets are contiguous
      for (let k = 1; k < pubs.length; k++) {
        assert.strictEqual(Number(pubs[k].offset), Number(pubs[k - 1].offset) + 1,
          `a gap between offsets ${pubs[k - 1].offset} and ${pubs[k].offset} without insufficient state`);
      }
      let received = new Set(pubs.map((p) => p.data.n));
      if (lost()) {
        t.diagnostic(`the subscriber got insufficient state after ${pubs.length} publications; recovering`);
        const last = pubs[pubs.length - 1];
        const r = await sub.call({ subscribe: { channel: ch, recover: true, epoch, offset: last ? Number(last.offset) : 0 } });
        assert.ok(r.subscribe && r.subscribe.recovered, `recovered: ${JSON.stringify(r).slice(0, 300)}`);
        received = new Set([...received, ...(r.subscribe.publications || []).map((p) => p.data.n)]);
      }
      const notReceived = [...want].filter((n) => !received.has(n));
      assert.deepStrictEqual(notReceived, [], 'every acknowledged publication reached the subscriber');
      sub.ws.close();
}

test('the Redis engine on a Sentinel group', { skip, timeout: 90000 }, async (t) => {
  const group = await sentinelGroup('m1');
  let a, b;
  try {
    a = await new Rotord(nodeConfig(group, 'node-a'), { workers: 2, expectWorkers: 3 }).start();
    b = await new Rotord(nodeConfig(group, 'node-b'), { workers: 2, expectWorkers: 3 }).start();

    await t.test('cross-node delivery through the master the sentinels name', async () => {
      await waitFor(async () => (await api(a, 'info', {})).result.nodes.length === 2, 10000, 100, 'two nodes');
      const cb = await client(b, 'bob');
      const s = await cb.call({ subscribe: { channel: 'warmup' } });
      assert.ok(s.subscribe, JSON.stringify(s));
      const r = await api(a, 'publish', { channel: 'warmup', data: { hello: 1 } });
      assert.ok(r.result, JSON.stringify(r));
      await waitFor(() => cb.msgs.find((m) => m.push && m.push.pub && m.push.channel === 'warmup'), 5000, 20,
        'the publication on node B');
      const master = group.master();
      assert.ok(master.cli('XLEN', 'centrifugo.stream.warmup').trim() === '1', 'the stream is on the master');
      cb.ws.close();
    });

    // Sentinel promotes a replica while the old master still takes writes
    // until it is converted, seconds later: what it took in between is
    // lost (without sentinel_wait_replicas: ~150 of ~470 acknowledged
    // publishes at one per 20 ms). With it, a publish is ok only once
    // every healthy replica has it, and the promoted one stopped
    // replicating from the old master: those publishes fail instead.
    await t.test('SENTINEL FAILOVER under a steady publisher: no acknowledged publish lost, no silent gap',
      () => steadyFailover(t, group, a, b, 'manual', 'failover'));
    await group.ready();

    await t.test('SIGKILL of the master under a steady publisher: no acknowledged publish lost, no silent gap',
      () => steadyFailover(t, group, a, b, 'steady', 'kill'));
  } finally {
    if (a) await a.stop();
    if (b) await b.stop();
    await group.stop();
  }
});
