'use strict';
// Every bidirectional transport behaves alike: one table of transports
// (WebSocket, HTTP-streaming and SSE; JSON and, where the SDK has it,
// protobuf) and one test per behaviour that runs over all of them, on the
// real daemon with 4 workers (client-protocol.md §3-§8):
//
//   the session (connect, subscribe, publish, history, presence, RPC 108,
//   disconnect), recovery after a reconnect, join/leave, server-side
//   subscriptions, server disconnect and unsubscribe codes, one fan-out to
//   every transport, client.connection_limit (503 on the connect request)
//   and client.user_connection_limit (3504), a missing pong (3012, the
//   connection freed), a client that stops reading (3008), HUP reload
//   without a dropped connection, and SIGQUIT (3001, then the end).
//
// The SDK (centrifuge, given fetch, ReadableStream, ws and eventsource as
// its own tests give them) is used where it can express a flow; a raw JSON
// client (lib/transports.js) where the wire itself is asserted: the close
// frame of a WebSocket, the disconnect push and the end of a stream.

const { test, describe } = require('node:test');
const assert = require('node:assert');
const { waitFor, sleep, apiPost, hs256, run, ROTORCTL, deepMerge } = require('./lib/rotord.js');
const {
  TRANSPORTS, RAW_TRANSPORTS, label, sdk, once, openNamespace, RawClient, serverInode, inodeHolder, startDaemon, stopDaemon,
} = require('./lib/transports.js');

const NS = openNamespace('mx', { join_leave: true, force_push_join_leave: true });

const BASE = {
  // Short enough that pings happen during the tests, long enough for a
  // loaded machine; the no-pong test shortens them.
  client: { ping_interval: '4s', pong_timeout: '3s' },
  http_stream: { enabled: true },
  sse: { enabled: true },
  channel: { namespaces: [NS] },
};

// Publication data in the client's format: protobuf clients carry bytes.
const enc = (t, obj) => (t.fmt === 'protobuf' ? new TextEncoder().encode(JSON.stringify(obj)) : obj);
const dec = (t, data) => (t.fmt === 'protobuf' ? JSON.parse(new TextDecoder().decode(data)) : data);

// A server API call on RD's kept-alive connections (many calls would
// otherwise leave as many sockets in TIME_WAIT).
async function api(rd, method, body) {
  const r = await apiPost(rd.port, `/api/${method}`, body, { agent: rd.agent });
  assert.strictEqual(r.status, 200, `${method}: ${r.status} ${r.body}`);
  const j = JSON.parse(r.body);
  assert.ok(!j.error, `${method}: ${r.body}`);
  return j.result || {};
}

// Runs FN(x) against a daemon with CONFIG (merged over BASE) and 4 workers,
// with x.sdk / x.raw making clients that are always closed, and the daemon
// always stopped.
async function withDaemon(config, fn, { workers = 4 } = {}) {
  const rd = await startDaemon(deepMerge(BASE, config), workers);
  const sdks = [];
  const raws = [];
  const x = {
    rd,
    sdk(t, opts) {
      const c = sdk(rd.port, t, opts);
      sdks.push(c);
      return c;
    },
    async raw(transport, connect = {}, opts = {}) {
      const r = await RawClient.open(rd.port, transport, connect, opts);
      raws.push(r);
      return r;
    },
    api: (method, body) => api(rd, method, body),
  };
  try {
    await fn(x);
  } finally {
    for (const c of sdks) { try { c.disconnect(); } catch (_) { /* gone */ } }
    for (const r of raws) r.close();
    await stopDaemon(rd, x.exited);
  }
}

// A connected SDK client of T for USER (a token with CLAIMS), with its
// events recorded in c.events ([name, code, reason]).
async function connected(x, t, user, claims = {}, opts = {}) {
  const c = x.sdk(t, { token: hs256({ sub: user, ...claims }), ...opts });
  const ctx = once(c, 'connected');
  c.connect();
  c.ctx = await ctx;
  c.events = []; // what happens to the session from now on
  for (const ev of ['connecting', 'disconnected']) c.on(ev, (e) => c.events.push([ev, e.code, e.reason]));
  assert.strictEqual(c.ctx.transport, t.name, `${label(t)}: the transport it asked for`);
  return c;
}

// The client ids in channel CH's presence (server API).
async function presenceIds(x, ch) {
  const r = await x.api('presence', { channel: ch });
  return Object.keys(r.presence || {}).sort();
}

// Connected clients on the whole node, from the workers' counters.
function clients(rd) {
  const r = run(ROTORCTL, ['stats', '-c', rd.configPath, '--json']);
  assert.strictEqual(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).clients;
}

// Runs FN(t, i) for every transport at once.
const everyTransport = (fn) => Promise.all(TRANSPORTS.map((t, i) => fn(t, i)));

describe('every transport', { concurrency: true }, () => {
  test('a session: connect, subscribe, publish, history, presence, RPC 108, disconnect', { timeout: 30000 }, () => withDaemon({}, async (x) => {
    await everyTransport(async (t, i) => {
      const ch = `mx:basic${i}`;
      const c = await connected(x, t, `basic-${i}`);
      assert.ok(c.ctx.client, 'a client id');
      const sub = c.newSubscription(ch);
      const pubs = [];
      sub.on('publication', (p) => pubs.push(p));
      sub.subscribe();
      await sub.ready(5000);
      await sub.publish(enc(t, { n: 1, t: label(t) }));
      await waitFor(() => pubs.length === 1, 5000, 10, `${label(t)}: its own publication`);
      assert.deepStrictEqual(dec(t, pubs[0].data), { n: 1, t: label(t) });
      assert.strictEqual(pubs[0].offset, 1);

      const h = await sub.history({ limit: 10 });
      assert.strictEqual(h.publications.length, 1, label(t));
      assert.deepStrictEqual(dec(t, h.publications[0].data), { n: 1, t: label(t) });
      assert.strictEqual(h.offset, 1);
      assert.ok(h.epoch, 'an epoch');

      const p = await sub.presence();
      assert.deepStrictEqual(Object.keys(p.clients), [c.ctx.client], label(t));
      assert.strictEqual(p.clients[c.ctx.client].user, `basic-${i}`);
      const ps = await sub.presenceStats();
      assert.deepStrictEqual([ps.numClients, ps.numUsers], [1, 1]);

      await assert.rejects(c.rpc('anything', enc(t, {})), (e) => e.code === 108, `${label(t)}: RPC without a handler`);
      assert.strictEqual(c.state, 'connected', 'an RPC error does not end the session');

      const d = once(c, 'disconnected');
      c.disconnect();
      assert.strictEqual((await d).code, 0, 'disconnect called');
      // The server noticed: the session left the channel's presence.
      await waitFor(async () => (await presenceIds(x, ch)).length === 0, 5000, 25, `${label(t)}: the server to free the session`);
    });
  }));

  test('recovery after a reconnect', { timeout: 30000 }, () => withDaemon({}, async (x) => {
    await everyTransport(async (t, i) => {
      const ch = `mx:rec${i}`;
      const c = await connected(x, t, `rec-${i}`);
      const sub = c.newSubscription(ch);
      const pubs = [];
      const subscribed = [];
      sub.on('publication', (p) => pubs.push(dec(t, p.data)));
      sub.on('subscribed', (ctx) => subscribed.push(ctx));
      sub.subscribe();
      await sub.ready(5000);
      await x.api('publish', { channel: ch, data: { n: 1 } });
      await waitFor(() => pubs.length === 1, 5000, 10, 'the first publication');

      const d = once(c, 'disconnected');
      c.disconnect();
      await d;
      await waitFor(async () => (await presenceIds(x, ch)).length === 0, 5000, 25, 'the session to end');
      for (let n = 2; n <= 4; n++) await x.api('publish', { channel: ch, data: { n } });
      const again = once(sub, 'subscribed');
      c.connect();
      const ctx = await again;
      assert.strictEqual(ctx.wasRecovering, true, label(t));
      assert.strictEqual(ctx.recovered, true, label(t));
      await waitFor(() => pubs.length === 4, 5000, 10, `${label(t)}: the missed publications`);
      assert.deepStrictEqual(pubs.map((p) => p.n), [1, 2, 3, 4], `${label(t)}: each once, in order`);
      assert.strictEqual(subscribed.length, 2);
    });
  }));

  test('join and leave, server-side subscriptions (token and API)', { timeout: 30000 }, () => withDaemon({}, async (x) => {
    await everyTransport(async (t, i) => {
      const jl = `mx:jl${i}`;
      const c = await connected(x, t, `jl-${i}`, { channels: [`mx:srv${i}`] });
      // The token's channel arrived with the connect.
      const serverPubs = [];
      c.on('publication', (ctx) => serverPubs.push([ctx.channel, dec(t, ctx.data)]));
      assert.ok(c.ctx.client);
      const sub = c.newSubscription(jl);
      const joins = [];
      const leaves = [];
      sub.on('join', (ctx) => joins.push(ctx.info.user));
      sub.on('leave', (ctx) => leaves.push(ctx.info.user));
      sub.subscribe();
      await sub.ready(5000);
      // Another user joins and leaves over WebSocket.
      const other = await connected(x, TRANSPORTS[0], `other-${i}`);
      const os = other.newSubscription(jl);
      os.subscribe();
      await os.ready(5000);
      await waitFor(() => joins.includes(`other-${i}`), 5000, 10, `${label(t)}: a join`);
      os.unsubscribe();
      await waitFor(() => leaves.includes(`other-${i}`), 5000, 10, `${label(t)}: a leave`);

      await x.api('publish', { channel: `mx:srv${i}`, data: { srv: 1 } });
      // A server-side subscription made later through the API.
      const sbs = once(c, 'subscribed', 5000, (ctx) => ctx.channel === `mx:api${i}`);
      await x.api('subscribe', { user: `jl-${i}`, channel: `mx:api${i}` });
      await sbs;
      await x.api('publish', { channel: `mx:api${i}`, data: { api: 1 } });
      await waitFor(() => serverPubs.length === 2, 5000, 10, `${label(t)}: publications on both server-side channels`);
      assert.deepStrictEqual(serverPubs, [[`mx:srv${i}`, { srv: 1 }], [`mx:api${i}`, { api: 1 }]]);
      // And removed through the API.
      const uns = once(c, 'unsubscribed', 5000, (ctx) => ctx.channel === `mx:api${i}`);
      await x.api('unsubscribe', { user: `jl-${i}`, channel: `mx:api${i}` });
      await uns;
    });
  }));

  test('server disconnects and unsubscribes carry their codes', { timeout: 30000 }, () => withDaemon({}, async (x) => {
    await everyTransport(async (t, i) => {
      const user = `codes-${i}`;
      const c = await connected(x, t, user);
      const sub = c.newSubscription(`mx:codes${i}`);
      sub.subscribe();
      await sub.ready(5000);
      // Server unsubscribe: 2000, the subscription stays unsubscribed.
      const u = once(sub, 'unsubscribed');
      await x.api('unsubscribe', { user, channel: `mx:codes${i}` });
      assert.strictEqual((await u).code, 2000, label(t));
      // A reconnecting code: the client reconnects.
      const back = once(c, 'connected', 8000);
      await x.api('disconnect', { user, disconnect: { code: 4000, reason: 'come back' } });
      await back;
      assert.deepStrictEqual(c.events[c.events.length - 1], ['connecting', 4000, 'come back'], label(t));
      // A terminal one: disconnected for good, with the code and reason.
      const d = once(c, 'disconnected');
      await x.api('disconnect', { user, disconnect: { code: 4501, reason: 'go away' } });
      const ctx = await d;
      assert.deepStrictEqual([ctx.code, ctx.reason], [4501, 'go away'], label(t));
    });
    // On the wire: a close frame with the code, or a disconnect push and the
    // end of the response.
    await Promise.all(RAW_TRANSPORTS.map(async (tr, i) => {
      const token = hs256({ sub: `rawcodes-${i}` });
      const r = await x.raw(tr, { token });
      await x.api('disconnect', { user: `rawcodes-${i}`, disconnect: { code: 4502, reason: 'raw' } });
      const e = await r.end();
      assert.deepStrictEqual([e.code, e.reason, e.clean], [4502, 'raw', true], tr);
    }));
  }));

  test('one publication reaches every transport the same way', { timeout: 30000 }, () => withDaemon({}, async (x) => {
    const ch = 'mx:fan';
    const clients = await Promise.all(TRANSPORTS.map(async (t, i) => {
      const c = await connected(x, t, `fan-${i}`);
      const sub = c.newSubscription(ch);
      c.got = [];
      sub.on('publication', (p) => c.got.push([p.offset, dec(t, p.data)]));
      sub.subscribe();
      await sub.ready(5000);
      c.t = t;
      return c;
    }));
    const sent = [];
    for (let n = 1; n <= 40; n++) {
      const data = { n, text: `é ✓ ${'x'.repeat(n * 7)}`, nested: { list: [n, null, true] } };
      sent.push([n, data]);
      await x.api('publish', { channel: ch, data });
    }
    await waitFor(() => clients.every((c) => c.got.length === sent.length), 8000, 10, 'every publication everywhere');
    for (const c of clients) assert.deepStrictEqual(c.got, sent, label(c.t));
  }));

  test('client.connection_limit: the connect request is refused with 503', { timeout: 30000 }, () => withDaemon({ client: { connection_limit: 2 } }, async (x) => {
    await x.raw('websocket', { token: hs256({ sub: 'a' }) });
    await x.raw('http_stream', { token: hs256({ sub: 'b' }) });
    // The limit counts the clients of every worker as their counters
    // show them (rotorctl stats reads the same counters).
    await waitFor(() => clients(x.rd) === 2, 5000, 25, 'both clients counted');
    for (const tr of RAW_TRANSPORTS) {
      for (let k = 0; k < 4; k++) { // connections land on different workers
        const r = await RawClient.open(x.rd.port, tr, { token: hs256({ sub: 'c' }) }, { waitConnect: false });
        const e = await r.end(5000);
        r.close();
        assert.strictEqual(r.head && r.head.status, 503, `${tr}: ${JSON.stringify(r.head)} ${JSON.stringify(e)}`);
        assert.deepStrictEqual(e.messages, [], `${tr}: no session`);
      }
    }
  }));

  test('client.user_connection_limit: one connection too many ends with 3504', { timeout: 30000 }, () => withDaemon({ client: { user_connection_limit: 1 } }, async (x) => {
    const firsts = [];
    for (const t of TRANSPORTS) {
      const first = await connected(x, TRANSPORTS[0], `ucl-${label(t)}`);
      firsts.push(first);
      // Workers learn each other's users from the snapshots they write
      // on their ticks (info merges them afresh: once it counts this user,
      // every snapshot does) and cache the merge for 200 ms at most.
      await waitFor(async () => (await x.api('info', {})).nodes[0].num_users === firsts.length, 10000, 25,
        `${label(t)}: the user in every worker's view`);
      await sleep(300);
      const c = x.sdk(t, { token: hs256({ sub: `ucl-${label(t)}` }) });
      const d = once(c, 'disconnected');
      c.connect();
      const ctx = await d;
      assert.deepStrictEqual([ctx.code, ctx.reason], [3504, 'connection limit'], label(t));
      assert.strictEqual(first.state, 'connected', 'the first one stays');
    }
    for (const first of firsts) first.disconnect();
  }));

  test('a client that does not answer pings: 3012 and the connection freed', { timeout: 30000 }, () => withDaemon({ client: { ping_interval: '1s', pong_timeout: '500ms' } }, async (x) => {
    await Promise.all(RAW_TRANSPORTS.map(async (tr, i) => {
      const r = await x.raw(tr, { token: hs256({ sub: `np-${i}` }) }, { autoPong: false });
      assert.strictEqual(r.result.ping, 1);
      assert.strictEqual(r.result.pong, true);
      const inode = await waitFor(() => serverInode(x.rd.port, r.localPort), 3000, 20, 'the server end');
      const e = await r.end(8000);
      assert.deepStrictEqual([e.code, e.reason, e.clean], [3012, 'no pong', true], tr);
      assert.deepStrictEqual(e.messages.filter((m) => Object.keys(m).length === 0).length, 1, `${tr}: one ping, never answered`);
      // No worker holds the server end any more.
      await waitFor(() => inodeHolder(x.rd.workers(), inode) === null, 3000, 25, `${tr}: the server to close its end`);
    }));
  }));

  // Pings far apart: a paused client cannot answer them, and on a busy
  // machine the publishing below may outlast BASE's 4 s + 3 s (3012 first).
  test('a client that stops reading is disconnected as slow (3008)', { timeout: 40000 }, () => withDaemon({ client: { queue_max_size: 65536, ping_interval: '60s', pong_timeout: '30s' } }, async (x) => {
    const big = 'y'.repeat(16000);
    await Promise.all(RAW_TRANSPORTS.map(async (tr, i) => {
      const user = `slow-${i}`;
      const r = await x.raw(tr, { token: hs256({ sub: user, channels: [`mx:slow${i}`] }) });
      r.pause();
      // Publish until the server gives up on the session (it leaves the
      // channel's presence), then read what the connection still holds.
      let n = 0;
      for (; n < 4000; n++) {
        await x.api('publish', { channel: `mx:slow${i}`, data: { n, big } });
        if (n % 8 === 7 && (await presenceIds(x, `mx:slow${i}`)).length === 0) break;
      }
      assert.ok(n < 4000, `${tr}: the session ended`);
      r.resume();
      const e = await r.end(8000);
      assert.deepStrictEqual([e.code, e.reason], [3008, 'slow'], `${tr}: ${e.messages.length} messages`);
      const pubs = e.messages.filter((m) => m.push && m.push.pub).map((m) => m.push.pub.data.n);
      assert.deepStrictEqual(pubs, pubs.map((_, k) => k), `${tr}: what arrived is a prefix, in order`);
    }));
  }));

  test('HUP reload keeps every connection and applies the new config', { timeout: 30000 }, () => withDaemon({}, async (x) => {
    const clients = await Promise.all(TRANSPORTS.map(async (t, i) => {
      const c = await connected(x, t, `hup-${i}`);
      const sub = c.newSubscription('mx:hup');
      c.got = [];
      sub.on('publication', (p) => c.got.push(dec(t, p.data).n));
      sub.subscribe();
      await sub.ready(5000);
      c.t = t;
      return c;
    }));
    const raws = await Promise.all(RAW_TRANSPORTS.map((tr, i) => x.raw(tr, { token: hs256({ sub: `hupraw-${i}`, channels: ['mx:hup'] }) })));
    const before = (x.rd.log().match(/configuration reloaded in place/g) || []).length;
    x.rd.fullConfig.channel.namespaces = [NS, { ...NS, name: 'late' }];
    x.rd.writeConfig(x.rd.fullConfig);
    x.rd.signal('SIGHUP');
    await waitFor(() => (x.rd.log().match(/configuration reloaded in place/g) || []).length >= before + 4, 5000, 20,
      'every worker to apply the reload');
    await x.api('publish', { channel: 'mx:hup', data: { n: 1 } });
    await waitFor(() => clients.every((c) => c.got.length === 1), 5000, 10, 'the publication after the reload');
    for (const r of raws) await r.next((m) => m.push && m.push.pub && m.push.pub.data.n === 1);
    // The new namespace works on the same connections.
    await Promise.all(clients.map(async (c) => {
      const s = c.newSubscription('late:x');
      s.subscribe();
      await s.ready(5000);
      assert.deepStrictEqual(c.events, [], `${label(c.t)}: not disconnected`);
    }));
    for (const r of raws) assert.ok(!r.isEnded, `${r.transport}: still open`);
  }));

  test('SIGQUIT: a 3001 disconnect, then the end, on every transport', { timeout: 30000 }, () => withDaemon({}, async (x) => {
    const raws = [];
    for (let k = 0; k < 3; k++) {
      for (const [i, tr] of RAW_TRANSPORTS.entries()) raws.push(await x.raw(tr, { token: hs256({ sub: `q-${i}-${k}` }) }));
    }
    const sdks = await Promise.all(TRANSPORTS.map(async (t, i) => {
      const c = await connected(x, t, `qs-${i}`);
      c.on('connecting', (ctx) => { if (ctx.code === 3001) c.disconnect(); });
      c.t = t;
      return c;
    }));
    x.rd.signal('SIGQUIT');
    for (const r of raws) {
      const e = await r.end(8000);
      assert.deepStrictEqual([e.code, e.reason, e.clean], [3001, 'shutdown', true], r.transport);
    }
    await waitFor(() => sdks.every((c) => c.events.length > 0), 5000, 10, 'every SDK client to see the stop');
    for (const c of sdks) assert.deepStrictEqual(c.events[0], ['connecting', 3001, 'shutdown'], label(c.t));
    const ex = await x.rd.waitExit(10000);
    x.exited = true;
    assert.deepStrictEqual(ex, { code: 0, signal: null });
  }));
});
