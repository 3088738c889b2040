'use strict';
// Idempotent and versioned publishes (server-api.md §1.4 publish,
// broadcast, batch; redis-engine.md §4.1, §4.3): with the shared-memory
// engine across workers (the same idempotency_key sent through kept-alive
// connections held by two different workers answers the first result and
// publishes once: once in history, once to a centrifuge-js subscriber),
// with and without history; versions (an equal or older version dropped
// and answered with the stream's top, a new version_epoch accepted); the
// same through broadcast and batch; and the Redis engine with a real
// redis-server, with Centrifugo's keys and fields in Redis. The 300 s
// window has no setting in Centrifugo: its expiry is tested on a fake
// clock in shm/tests/test_idem.c.

const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const { Rotord, waitFor, sleep, hs256, connOwners, apiPost } = require('./lib/rotord.js');
const { Redis, available } = require('./lib/redis');

const CHANNELS = {
  channel: {
    without_namespace: { allow_subscribe_for_client: true },
    namespaces: [{ name: 'hist', history_size: 100, history_ttl: '300s', allow_subscribe_for_client: true }],
  },
};

// An HTTP agent with one kept-alive connection to RD, and the worker
// holding its server end.
async function pinnedAgent(rd) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const localPort = await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: rd.port, path: '/health', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(req.socket.localPort));
    });
    req.on('error', reject);
    req.end();
  });
  const pid = await waitFor(() => connOwners(rd.workers(), rd.port).get(localPort), 3000, 20, 'the connection\'s worker');
  return { agent, pid };
}

// Two agents whose connections two different workers hold.
async function agentsOnTwoWorkers(rd) {
  const spare = [];
  try {
    const first = await pinnedAgent(rd);
    for (let i = 0; i < 60; i++) {
      const a = await pinnedAgent(rd);
      if (a.pid !== first.pid) return [first, a];
      spare.push(a);
    }
    throw new Error('60 connections, all on one worker');
  } finally {
    for (const a of spare) a.agent.destroy();
  }
}

async function api(rd, method, body, agent) {
  const r = await apiPost(rd.port, `/api/${method}`, body, { agent: agent ? agent.agent : false });
  assert.strictEqual(r.status, 200, r.body);
  return JSON.parse(r.body);
}

// A centrifuge-js client subscribed to CHANNELS: the data of every
// publication it receives, by channel.
async function subscriber(rd, channels) {
  const c = new Centrifuge(`ws://127.0.0.1:${rd.port}/connection/websocket`,
    { websocket: WebSocket, token: hs256({ sub: 'watcher' }) });
  const got = {};
  const subs = channels.map((ch) => {
    got[ch] = [];
    const s = c.newSubscription(ch);
    s.on('publication', (ctx) => got[ch].push(ctx.data));
    s.subscribe();
    return new Promise((resolve) => s.once('subscribed', resolve));
  });
  c.connect();
  await Promise.all(subs);
  return { c, got };
}

// Publishes a marker to CH with no key and waits for S to have it: every
// publication made before it has been delivered by then.
async function settle(rd, s, ch) {
  const mark = { mark: Math.random() };
  await api(rd, 'publish', { channel: ch, data: mark });
  await waitFor(() => s.got[ch].some((d) => d.mark === mark.mark), 5000, 10, `the marker on ${ch}`);
  return s.got[ch].filter((d) => d.mark === undefined);
}

async function historyData(rd, ch) {
  const h = await api(rd, 'history', { channel: ch, limit: -1 });
  return h.result.publications.map((p) => p.data).filter((d) => d.mark === undefined);
}

// The tests both engines pass; REDIS (when given) is looked at too.
async function behaviour(t, rd, redis) {
  const [a, b] = await agentsOnTwoWorkers(rd);
  const s = await subscriber(rd, ['hist:one', 'plain', 'hist:v', 'hist:b1', 'hist:b2', 'hist:c', 'vplain']);
  try {
    await t.test('the same key through two workers: one publication, the first result twice', async () => {
      assert.notStrictEqual(a.pid, b.pid, 'the two connections are held by two workers');
      const r1 = await api(rd, 'publish', { channel: 'hist:one', data: { n: 1 }, idempotency_key: 'k1' }, a);
      assert.strictEqual(r1.result.offset, 1, JSON.stringify(r1));
      assert.match(r1.result.epoch, /^\S+$/);
      const r2 = await api(rd, 'publish', { channel: 'hist:one', data: { n: 2 }, idempotency_key: 'k1' }, b);
      assert.deepStrictEqual(r2, r1, 'the repeat answers the first result');
      const r3 = await api(rd, 'publish', { channel: 'hist:one', data: { n: 3 }, idempotency_key: 'k1' }, a);
      assert.deepStrictEqual(r3, r1, 'and again on the first worker');
      assert.deepStrictEqual(await historyData(rd, 'hist:one'), [{ n: 1 }], 'one publication in history');
      assert.deepStrictEqual(await settle(rd, s, 'hist:one'), [{ n: 1 }], 'one delivered to the subscriber');
      const r4 = await api(rd, 'publish', { channel: 'hist:one', data: { n: 4 }, idempotency_key: 'k2' }, b);
      assert.deepStrictEqual(r4.result, { offset: 3, epoch: r1.result.epoch }, 'another key publishes (after the marker)');
      const r5 = await api(rd, 'publish', { channel: 'plain', data: { n: 5 }, idempotency_key: 'k1' }, a);
      assert.deepStrictEqual(r5, { result: {} }, 'the same key on another channel is another pair');
      assert.deepStrictEqual(await historyData(rd, 'hist:one'), [{ n: 1 }, { n: 4 }]);
    });

    await t.test('the same key through two workers at once: one publication per key', async () => {
      const N = 25;
      const pairs = await Promise.all(Array.from({ length: N }, (_, i) => Promise.all([a, b].map((ag, k) =>
        api(rd, 'publish', { channel: 'hist:race', data: { i, k }, idempotency_key: `race-${i}` }, ag)))));
      for (const [x, y] of pairs) assert.deepStrictEqual(x, y, 'both racers get the same result');
      const offsets = pairs.map(([x]) => x.result.offset).sort((m, n) => m - n);
      assert.deepStrictEqual(offsets, Array.from({ length: N }, (_, i) => i + 1), 'one offset per key');
      const h = await api(rd, 'history', { channel: 'hist:race', limit: -1 });
      assert.strictEqual(h.result.publications.length, N, 'one publication per key in history');
      assert.deepStrictEqual(h.result.publications.map((p) => p.data.i).sort((m, n) => m - n),
        Array.from({ length: N }, (_, i) => i));
    });

    await t.test('without history: {} for both, delivered once', async () => {
      const r1 = await api(rd, 'publish', { channel: 'plain', data: { n: 6 }, idempotency_key: 'p1' }, a);
      const r2 = await api(rd, 'publish', { channel: 'plain', data: { n: 7 }, idempotency_key: 'p1' }, b);
      assert.deepStrictEqual([r1, r2], [{ result: {} }, { result: {} }]);
      assert.deepStrictEqual(await settle(rd, s, 'plain'), [{ n: 5 }, { n: 6 }]);
    });

    await t.test('versions: an equal or older one dropped, a new version_epoch accepted', async () => {
      const pub = (data, version, version_epoch, agent = a) =>
        api(rd, 'publish', { channel: 'hist:v', data, version, ...(version_epoch !== undefined ? { version_epoch } : {}) }, agent);
      const r1 = await pub({ v: 1 }, 1);
      const e = r1.result.epoch;
      assert.deepStrictEqual(r1.result, { offset: 1, epoch: e });
      assert.deepStrictEqual((await pub({ v: 2 }, 2, undefined, b)).result, { offset: 2, epoch: e }, 'version 2 on the other worker');
      assert.deepStrictEqual((await pub({ v: 'again 2' }, 2)).result, { offset: 2, epoch: e },
        'version 2 again: dropped, answered with the top');
      assert.deepStrictEqual((await pub({ v: 'old 1' }, 1, undefined, b)).result, { offset: 2, epoch: e }, 'version 1: dropped');
      assert.deepStrictEqual((await pub({ v: 'x1' }, 1, 'x')).result, { offset: 3, epoch: e },
        'version 1 with a new version_epoch: accepted');
      assert.deepStrictEqual((await pub({ v: 'x1 again' }, 1, 'x', b)).result, { offset: 3, epoch: e }, 'then dropped');
      assert.deepStrictEqual((await pub({ v: 'empty epoch' }, 1, '')).result, { offset: 3, epoch: e },
        'an empty version_epoch compares with any');
      assert.deepStrictEqual((await pub({ v: 'x5' }, 5, 'x')).result, { offset: 4, epoch: e });
      const want = [{ v: 1 }, { v: 2 }, { v: 'x1' }, { v: 'x5' }];
      assert.deepStrictEqual(await historyData(rd, 'hist:v'), want, 'only the accepted ones in history');
      assert.deepStrictEqual(await settle(rd, s, 'hist:v'), want, 'and on the wire');
      if (redis) {
        assert.strictEqual(redis.cli('HGET', 'centrifugo.stream.meta.hist:v', 'v').trim(), '5', 'meta field v');
        assert.strictEqual(redis.cli('HGET', 'centrifugo.stream.meta.hist:v', 've').trim(), 'x', 'meta field ve');
      }
      // Without history Centrifugo has nothing to compare with.
      for (const v of [3, 3, 1]) await api(rd, 'publish', { channel: 'vplain', data: { v }, version: v });
      assert.deepStrictEqual(await settle(rd, s, 'vplain'), [{ v: 3 }, { v: 3 }, { v: 1 }],
        'without history every version is published');
    });

    await t.test('broadcast: per channel', async () => {
      const body = { channels: ['hist:b1', 'hist:b2'], data: { b: 1 }, idempotency_key: 'bk' };
      const r1 = await api(rd, 'broadcast', body, a);
      const [x, y] = r1.result.responses.map((r) => r.result);
      assert.strictEqual(x.offset, 1, JSON.stringify(r1));
      assert.strictEqual(y.offset, 1, JSON.stringify(r1));
      const r2 = await api(rd, 'broadcast', { ...body, data: { b: 2 } }, b);
      assert.deepStrictEqual(r2, r1, 'the repeat answers the first results');
      const r3 = await api(rd, 'broadcast', { channels: ['hist:b1', 'hist:b2', 'hist:one'], data: { b: 3 }, idempotency_key: 'bk' }, a);
      assert.deepStrictEqual(r3.result.responses.slice(0, 2), r1.result.responses);
      assert.strictEqual(r3.result.responses[2].result.offset, 4, 'a channel new to the key publishes');
      const v1 = await api(rd, 'broadcast', { channels: ['hist:b1', 'hist:b2'], data: { b: 'v7' }, version: 7 }, b);
      const v2 = await api(rd, 'broadcast', { channels: ['hist:b1', 'hist:b2'], data: { b: 'v6' }, version: 6 }, a);
      assert.deepStrictEqual(v2, v1, 'an older version: both dropped, answered with their tops');
      for (const ch of ['hist:b1', 'hist:b2']) {
        assert.deepStrictEqual(await historyData(rd, ch), [{ b: 1 }, { b: 'v7' }], `${ch}: history`);
        assert.deepStrictEqual(await settle(rd, s, ch), [{ b: 1 }, { b: 'v7' }], `${ch}: delivered`);
      }
    });

    await t.test('batch: each command', async () => {
      const cmd = (data, extra) => ({ publish: { channel: 'hist:c', data, ...extra } });
      const r = await api(rd, 'batch', { commands: [
        cmd({ c: 1 }, { idempotency_key: 'ck' }), cmd({ c: 2 }, { idempotency_key: 'ck' }),
        cmd({ c: 3 }, { version: 10 }), cmd({ c: 4 }, { version: 9 }), cmd({ c: 5 }, { version: 11 }),
      ] }, a);
      const e = r.replies[0].publish.epoch;
      assert.deepStrictEqual(r, { replies: [
        { publish: { offset: 1, epoch: e } }, { publish: { offset: 1, epoch: e } },
        { publish: { offset: 2, epoch: e } }, { publish: { offset: 2, epoch: e } },
        { publish: { offset: 3, epoch: e } },
      ] });
      const again = await api(rd, 'batch', { commands: [cmd({ c: 6 }, { idempotency_key: 'ck' })] }, b);
      assert.deepStrictEqual(again, { replies: [{ publish: { offset: 1, epoch: e } }] }, 'the key through the other worker');
      const want = [{ c: 1 }, { c: 3 }, { c: 5 }];
      assert.deepStrictEqual(await historyData(rd, 'hist:c'), want);
      assert.deepStrictEqual(await settle(rd, s, 'hist:c'), want);
      if (redis) {
        const ttl = Number(redis.cli('TTL', 'centrifugo.result.hist:c.ck').trim());
        assert.ok(ttl > 290 && ttl <= 300, `the result hash lives 300 s (TTL ${ttl})`);
        assert.strictEqual(redis.cli('HGET', 'centrifugo.result.hist:c.ck', 's').trim(), '1');
        assert.strictEqual(redis.cli('HGET', 'centrifugo.result.hist:c.ck', 'e').trim(), e);
        assert.strictEqual(redis.cli('HGET', 'centrifugo.result.plain.p1', 'e'), '\n',
          'without history the result hash holds e = ""');
      }
    });
  } finally {
    s.c.disconnect();
    a.agent.destroy();
    b.agent.destroy();
  }
}

test('idempotent and versioned publishes, shared-memory engine, 3 workers', { timeout: 60000 }, async (t) => {
  const rd = await new Rotord(CHANNELS, { workers: 3 }).start();
  try {
    await behaviour(t, rd, null);
  } finally {
    await rd.stop();
  }
});

test('idempotent and versioned publishes, Redis engine', { skip: available() ? false : 'redis-server is not installed',
  timeout: 60000 }, async (t) => {
  const redis = await new Redis().start();
  let rd;
  try {
    rd = await new Rotord({ ...CHANNELS, engine: { type: 'redis', redis: { address: [`redis://127.0.0.1:${redis.port}`] } } },
      { workers: 2, expectWorkers: 3 }).start();
    await behaviour(t, rd, redis);
  } finally {
    if (rd) await rd.stop();
    await redis.stop();
  }
});
