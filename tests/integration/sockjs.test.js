'use strict';
// SockJS with the official SDK: centrifuge-js 5 over sockjs-client 1.6,
// forced onto each transport that exists in Node (websocket, xhr-streaming,
// eventsource, xhr-polling), against the real daemon with 4 workers, so
// that one session's polls, streams and sends land on different workers
// and are handed to the one that holds the session (sockjs.md §9, §10).
// Per transport: the connected event names the transport, subscribe,
// publish (client and API) in order, history, presence and presence
// stats, join and leave, a server-side subscription, RPC answered 108
// (no RPC handler), recovery after a reconnect, and a disconnect from the
// server API with its own code and reason. Then the whole daemon: a HUP
// reload keeps every session, and a graceful stop ends each with 3001.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const WebSocket = require('ws');
const SockJS = require('sockjs-client');
const { Centrifuge } = require('centrifuge');
const { Rotord, waitFor, sleep, hs256, apiPost } = require('./lib/rotord.js');

const TRANSPORTS = ['websocket', 'xhr-streaming', 'eventsource', 'xhr-polling'];
const NS = {
  name: 'sj', history_size: 100, history_ttl: '300s', force_recovery: true, presence: true, join_leave: true,
  force_push_join_leave: true, allow_subscribe_for_client: true, allow_publish_for_subscriber: true,
  allow_history_for_subscriber: true, allow_presence_for_subscriber: true,
};
const CONFIG = { sockjs: { enabled: true }, channel: { namespaces: [NS] }, log: { level: 'debug' } };

const token = (sub, claims = {}) => hs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600, ...claims });

async function apiOk(rd, method, body) {
  const r = await apiPost(rd.port, `/api/${method}`, body);
  assert.strictEqual(r.status, 200, `${method}: ${r.status} ${r.body}`);
  const j = JSON.parse(r.body);
  assert.ok(!j.error, `${method}: ${r.body}`);
  return j.result;
}

// A centrifuge-js client over SockJS forced onto TRANSPORT, recording what
// it sees.
function sockjsClient(rd, transport, user, opts = {}) {
  const c = new Centrifuge([{ transport: 'sockjs', endpoint: `http://127.0.0.1:${rd.port}/connection/sockjs` }], {
    sockjs: SockJS, sockjsOptions: { transports: [transport] }, token: token(user, opts.claims),
    minReconnectDelay: 100, maxReconnectDelay: 400, timeout: 5000, ...opts.sdk,
  });
  const st = { c, user, events: [], connected: [], pubs: [], subscribed: [] };
  c.on('connected', (ctx) => st.connected.push(ctx));
  c.on('connecting', (ctx) => { if (ctx.code !== 0) st.events.push(['connecting', ctx.code, ctx.reason]); });
  c.on('disconnected', (ctx) => st.events.push(['disconnected', ctx.code, ctx.reason]));
  c.on('subscribed', (ctx) => st.subscribed.push(ctx));
  c.on('publication', (ctx) => st.pubs.push([ctx.channel, ctx.data]));
  return st;
}

function nativeClient(rd, user) {
  const c = new Centrifuge(`ws://127.0.0.1:${rd.port}/connection/websocket`, {
    websocket: WebSocket, token: token(user), minReconnectDelay: 100, maxReconnectDelay: 400,
  });
  return c;
}

let rd;
const handoffs = () => (rd.log().match(/handoff: fd \d+ .* handed to bus slot/g) || []).length;

before(async () => {
  rd = await new Rotord(CONFIG, { workers: 4 }).start();
});

after(async () => {
  await rd.stop();
});

for (const transport of TRANSPORTS) {
  test(`sockjs ${transport}: connect, subscribe, publish, history, presence, join/leave, server-side ` +
       'subscription, RPC 108, recovery, disconnect code', { timeout: 30000 }, async () => {
    const tag = transport.replace('-', '');
    const room = `sj:room-${tag}`;
    const serverCh = `sj:server-${tag}`;
    const a = sockjsClient(rd, transport, `a-${tag}`, { claims: { channels: [serverCh] } });
    const b = nativeClient(rd, `b-${tag}`);
    try {
      a.c.connect();
      await waitFor(() => a.connected.length === 1, 8000, 10, `${transport}: connected`);
      assert.strictEqual(a.connected[0].transport, `sockjs-${transport}`);
      assert.strictEqual(a.c.state, 'connected');
      // The server-side subscription from the token.
      await waitFor(() => a.subscribed.some((s) => s.channel === serverCh), 3000, 10, 'server-side subscribed');

      const sub = a.c.newSubscription(room);
      const joins = [];
      const pubs = [];
      const subscribed = [];
      sub.on('join', (ctx) => joins.push(ctx.info.user));
      sub.on('publication', (ctx) => pubs.push(ctx.data));
      sub.on('subscribed', (ctx) => subscribed.push(ctx));
      sub.subscribe();
      await sub.ready(5000);

      // Another client on the native WebSocket joins; A sees it.
      b.connect();
      const bsub = b.newSubscription(room);
      const bpubs = [];
      const bleaves = [];
      bsub.on('publication', (ctx) => bpubs.push(ctx.data));
      bsub.on('leave', (ctx) => bleaves.push(ctx.info.user));
      bsub.subscribe();
      await bsub.ready(5000);
      await waitFor(() => joins.includes(`b-${tag}`), 3000, 10, 'the join of b');

      // Publications from the client and from the API, in order, to both.
      await sub.publish({ n: 1 });
      await apiOk(rd, 'publish', { channel: room, data: { n: 2 } });
      await sub.publish({ n: 3, text: 'quote " backslash \\ newline \n emoji 😀 %25' });
      await waitFor(() => pubs.length === 3 && bpubs.length === 3, 3000, 10, 'three publications');
      assert.deepStrictEqual(pubs, [{ n: 1 }, { n: 2 }, { n: 3, text: 'quote " backslash \\ newline \n emoji 😀 %25' }]);
      assert.deepStrictEqual(bpubs, pubs);
      await apiOk(rd, 'publish', { channel: serverCh, data: { s: 1 } });
      await waitFor(() => a.pubs.some(([ch]) => ch === serverCh), 3000, 10, 'the server-side publication');
      assert.deepStrictEqual(a.pubs.filter(([ch]) => ch === serverCh), [[serverCh, { s: 1 }]]);

      const h = await sub.history({ limit: 10 });
      assert.deepStrictEqual(h.publications.map((p) => p.data), pubs);
      const p = await sub.presence();
      assert.deepStrictEqual(Object.values(p.clients).map((ci) => ci.user).sort(), [`a-${tag}`, `b-${tag}`]);
      assert.deepStrictEqual(await sub.presenceStats(), { numClients: 2, numUsers: 2 });

      // No RPC handler: 108.
      await assert.rejects(a.c.rpc('anything', {}), (e) => e.code === 108, 'RPC answered 108');

      // A reconnect (4000 from the API: reconnect) while publications go
      // on: the subscription recovers what it missed.
      await apiOk(rd, 'disconnect', { user: `a-${tag}`, disconnect: { code: 4000, reason: 'again' } });
      await waitFor(() => a.events.some((e) => e[0] === 'connecting' && e[1] === 4000), 3000, 10, 'the reconnect');
      assert.deepStrictEqual(a.events[0], ['connecting', 4000, 'again']);
      for (let n = 4; n <= 6; n++) await apiOk(rd, 'publish', { channel: room, data: { n } });
      await waitFor(() => subscribed.length === 2 && pubs.length === 6, 8000, 10, 'the recovery');
      assert.strictEqual(subscribed[1].wasRecovering, true);
      assert.strictEqual(subscribed[1].recovered, true);
      assert.deepStrictEqual(pubs.slice(3), [{ n: 4 }, { n: 5 }, { n: 6 }]);
      assert.strictEqual(a.connected.length, 2);
      assert.strictEqual(a.connected[1].transport, `sockjs-${transport}`);

      // A disconnect with a terminal code from the API reaches the SDK as
      // the SockJS close frame's code and reason; b sees a leave.
      bleaves.length = 0;
      await apiOk(rd, 'disconnect', { user: `a-${tag}`, disconnect: { code: 4509, reason: 'custom' } });
      await waitFor(() => a.events.some((e) => e[0] === 'disconnected'), 3000, 10, 'the disconnect');
      assert.deepStrictEqual(a.events.filter((e) => e[0] === 'disconnected'), [['disconnected', 4509, 'custom']]);
      assert.strictEqual(a.c.state, 'disconnected');
      await waitFor(() => bleaves.includes(`a-${tag}`), 3000, 10, 'the leave of a');
      await waitFor(async () => {
        const r = await apiOk(rd, 'presence', { channel: room });
        return Object.values(r.presence).every((ci) => ci.user !== `a-${tag}`);
      }, 3000, 25, 'a out of presence');
    } finally {
      a.c.disconnect();
      b.disconnect();
    }
  });
}

test('sockjs HTTP sessions crossed workers: their requests were handed to the owner', () => {
  // The transports above opened several HTTP sessions with 4 workers and
  // fresh connections at every reconnect; some requests must have come to
  // a worker that was not the owner.
  assert.ok(handoffs() > 0, 'handoffs in the log');
  assert.doesNotMatch(rd.log(), /out of reach|malformed record/);
});

test('sockjs: a HUP reload keeps every session; a graceful stop ends each with 3001', { timeout: 30000 }, async () => {
  const d = await new Rotord(CONFIG, { workers: 4 }).start();
  const clients = [];
  let stopped = false;
  try {
    for (const t of TRANSPORTS) {
      const st = sockjsClient(d, t, `hup-${t}`, { claims: { channels: ['sj:hup'] } });
      st.c.connect();
      clients.push(st);
    }
    await waitFor(() => clients.every((st) => st.subscribed.length === 1), 8000, 10, 'every client subscribed');
    // A reload that changes a key in place (the ping interval).
    const before = (d.log().match(/configuration reloaded in place/g) || []).length;
    d.fullConfig.client = { ...d.fullConfig.client, ping_interval: '20s' };
    d.writeConfig(d.fullConfig);
    d.signal('SIGHUP');
    await waitFor(() => (d.log().match(/configuration reloaded in place/g) || []).length >= before + 4, 5000, 20,
      'every worker to apply the reload');
    for (let n = 1; n <= 3; n++) await apiOk(d, 'publish', { channel: 'sj:hup', data: { n } });
    await waitFor(() => clients.every((st) => st.pubs.length === 3), 5000, 10, 'publications after the reload');
    for (const st of clients) {
      assert.deepStrictEqual(st.events, [], `${st.user}: not disconnected by the reload`);
      assert.strictEqual(st.connected.length, 1, `${st.user}: one connect`);
    }

    // Graceful stop: every session gets c[3001,"shutdown"] (the SDK goes
    // to connecting with it); stop reconnecting then.
    for (const st of clients) st.c.on('connecting', (ctx) => { if (ctx.code === 3001) st.c.disconnect(); });
    d.signal('SIGQUIT');
    await waitFor(() => clients.every((st) => st.events.some((e) => e[0] === 'connecting')), 8000, 10,
      'every client to see the stop');
    for (const st of clients) {
      assert.deepStrictEqual(st.events.find((e) => e[0] === 'connecting'), ['connecting', 3001, 'shutdown'], st.user);
    }
    const ex = await d.waitExit(10000);
    stopped = true;
    assert.deepStrictEqual(ex, { code: 0, signal: null });
  } finally {
    for (const st of clients) st.c.disconnect();
    if (!stopped) await d.stop();
    else fs.rmSync(d.dir, { recursive: true, force: true });
  }
});
