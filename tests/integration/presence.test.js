'use strict';
// Presence and join/leave, node-wide: counts are exact as clients come and
// go on any worker, a killed worker's clients vanish from presence within a
// few seconds, and join/leave pushes reach the subscribers that asked.
const test = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Rotord, waitFor, holderOf, hs256, apiPost } = require('./lib/rotord');

const token = (sub) => hs256({ sub, info: { name: `n${sub}` } });

// A raw JSON client subscribed to CHANNEL; collects what it gets.
async function member(port, user, channel, sub = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/connection/websocket`);
  const msgs = [];
  ws.on('message', (d) => {
    for (const l of d.toString().split('\n')) {
      const m = JSON.parse(l);
      if (Object.keys(m).length === 0) ws.send('{}');
      else msgs.push(m);
    }
  });
  ws.on('error', () => {});
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  const connect = user === null ? {} : { token: token(user) };
  ws.send(JSON.stringify({ id: 1, connect }) + '\n' + JSON.stringify({ id: 2, subscribe: { channel, ...sub } }));
  await waitFor(() => msgs.find((m) => m.id === 2), 3000, 10, `subscribe of ${user}`);
  const reply = msgs.find((m) => m.id === 2);
  assert.ok(reply.subscribe, JSON.stringify(reply));
  return { ws, msgs, port: ws._socket.localPort, client: msgs.find((m) => m.id === 1).connect.client };
}

function api(port, method, body) {
  return apiPost(port, `/api/${method}`, body).then((r) => JSON.parse(r.body));
}

const CONFIG = {
  client: { allow_anonymous_connect_without_token: true },
  channel: {
    namespaces: [
      { name: 'pr', presence: true, allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
        allow_presence_for_subscriber: true, allow_presence_for_anonymous: true },
      { name: 'jl', presence: true, join_leave: true, allow_subscribe_for_client: true,
        allow_presence_for_subscriber: true },
    ],
  },
};

test('presence counts are exact over all workers as clients come and go, and after a worker is killed', async () => {
  const d = await new Rotord(CONFIG, { workers: 3 }).start();
  try {
    // Users 1..4, user 1 twice, and two anonymous clients (one user "").
    const users = ['1', '1', '2', '3', '4', null, null];
    const ms = [];
    for (const u of users) ms.push(await member(d.port, u, 'pr:room'));
    let st = (await api(d.port, 'presence_stats', { channel: 'pr:room' })).result;
    assert.deepStrictEqual(st, { num_clients: 7, num_users: 5 });
    const pres = (await api(d.port, 'presence', { channel: 'pr:room' })).result.presence;
    assert.deepStrictEqual(Object.keys(pres).sort(), ms.map((m) => m.client).sort());
    assert.deepStrictEqual(pres[ms[2].client], { user: '2', client: ms[2].client, conn_info: { name: 'n2' } });
    assert.deepStrictEqual(pres[ms[5].client], { user: '', client: ms[5].client });
    // The client command agrees, from any worker.
    ms[0].ws.send(JSON.stringify({ id: 3, presence_stats: { channel: 'pr:room' } }));
    await waitFor(() => ms[0].msgs.find((m) => m.id === 3), 3000, 10, 'presence_stats reply');
    assert.deepStrictEqual(ms[0].msgs.find((m) => m.id === 3).presence_stats, { num_clients: 7, num_users: 5 });

    // Leaving: an unsubscribe and a closed connection.
    ms[4].ws.send(JSON.stringify({ id: 3, unsubscribe: { channel: 'pr:room' } }));
    ms[1].ws.close();
    await waitFor(async () => {
      st = (await api(d.port, 'presence_stats', { channel: 'pr:room' })).result;
      return st.num_clients === 5;
    }, 3000, 20, 'two to leave');
    assert.deepStrictEqual(st, { num_clients: 5, num_users: 4 }, 'user 1 still there once, user 4 gone');

    // kill -9 of a worker: its members vanish within a few seconds.
    const alive = [ms[0], ms[2], ms[3], ms[5], ms[6]];
    const workers = d.workers();
    const held = alive.map((m) => holderOf(workers, m.port));
    const victim = held.find((p) => p);
    const survivors = alive.filter((m, i) => held[i] !== victim);
    process.kill(victim, 'SIGKILL');
    await waitFor(async () => {
      st = (await api(d.port, 'presence_stats', { channel: 'pr:room' })).result;
      return st.num_clients === survivors.length;
    }, 5000, 50, "the dead worker's members to vanish");
    const left = Object.keys((await api(d.port, 'presence', { channel: 'pr:room' })).result.presence).sort();
    assert.deepStrictEqual(left, survivors.map((m) => m.client).sort());
    for (const m of ms) m.ws.terminate();
  } finally {
    await d.stop();
  }
});

test('join and leave reach the subscribers that asked for them, on every worker', async () => {
  const d = await new Rotord(CONFIG, { workers: 3 }).start();
  try {
    const watcher = await member(d.port, '10', 'jl:room', { join_leave: true });
    const quiet = await member(d.port, '11', 'jl:room');
    const joiner = await member(d.port, '12', 'jl:room');
    await waitFor(() => watcher.msgs.some((m) => m.push && m.push.join && m.push.join.info.user === '12'),
      3000, 10, 'the join push');
    const join = watcher.msgs.find((m) => m.push && m.push.join && m.push.join.info.user === '12').push;
    assert.deepStrictEqual(join, { channel: 'jl:room', join: { info: { user: '12', client: joiner.client,
      conn_info: { name: 'n12' } } } });
    joiner.ws.close();
    await waitFor(() => watcher.msgs.some((m) => m.push && m.push.leave), 3000, 10, 'the leave push');
    assert.strictEqual(watcher.msgs.find((m) => m.push && m.push.leave).push.leave.info.client, joiner.client);
    assert.ok(!quiet.msgs.some((m) => m.push && (m.push.join || m.push.leave)),
      'a subscriber that did not ask gets no join/leave');
    watcher.ws.close();
    quiet.ws.close();
  } finally {
    await d.stop();
  }
});
