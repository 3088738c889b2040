'use strict';
// The shared-memory bus between workers, seen from clients: a worker that
// falls a whole ring behind never delivers across the gap to positioned
// subscriptions (unsubscribe 2500, then the client resubscribes), and the
// other workers are not held back by it.
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const WebSocket = require('ws');
const { Rotord, sleep, waitFor, holderOf, apiPost } = require('./lib/rotord');

// A raw JSON client: connects, subscribes, collects every message.
async function rawClient(port, channel) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/connection/websocket`);
  const msgs = [];
  ws.on('message', (d) => {
    for (const line of d.toString().split('\n')) {
      const m = JSON.parse(line);
      if (Object.keys(m).length === 0) ws.send('{}'); // answer pings
      else msgs.push(m);
    }
  });
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  ws.send(JSON.stringify({ id: 1, connect: {} }) + '\n' + JSON.stringify({ id: 2, subscribe: { channel } }));
  await waitFor(() => msgs.some((m) => m.id === 2), 3000, 10, `subscribe to ${channel}`);
  return { ws, msgs, port: ws._socket.localPort };
}

function publish(port, channel, data, agent) {
  return apiPost(port, '/api/publish', { channel, data }, { agent });
}

// A keep-alive agent with one connection, held by worker PID.
async function agentOn(port, workers, pid) {
  for (let i = 0; i < 40; i++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const local = await new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/health', agent }, (res) => {
        const localPort = res.socket.localPort;
        res.resume();
        res.on('end', () => resolve(localPort));
      });
      req.on('error', reject);
    });
    if (holderOf(workers, local) === pid) return agent;
    agent.destroy();
  }
  throw new Error(`no connection landed on worker ${pid}`);
}

test('a worker lapped on the bus ends its positioned subscriptions with 2500, never a silent gap', async () => {
  const d = await new Rotord({
    shm: { bus_size: 65536 },
    client: { insecure: true },
    channel: { namespaces: [{ name: 'pos', force_positioning: true }] },
  }, { workers: 2 }).start();
  let stopped = null;
  try {
    // Clients until the kernel's SO_REUSEPORT spread gives what the test
    // needs: a positioned and a plain subscriber on one worker (the victim)
    // and a positioned one on the other. Bounded: 60 connections at most.
    const workers = d.workers();
    const clients = [];
    const held = [];
    let victim, other, pos, plain, otherPos;
    for (let i = 0; i < 60; i++) {
      const c = await rawClient(d.port, i % 2 ? 'pos:x' : 'plain');
      c.positioned = i % 2 === 1;
      clients.push(c);
      held.push(holderOf(workers, c.port));
      assert.ok(held[i], 'every connection is held by a worker');
      for (const v of workers) {
        const o = workers.find((p) => p !== v);
        const on = (pid, positioned) => clients.find((x, k) => held[k] === pid && x.positioned === positioned);
        if (on(v, true) && on(v, false) && on(o, true)) {
          [victim, other, pos, plain, otherPos] = [v, o, on(v, true), on(v, false), on(o, true)];
          break;
        }
      }
      if (victim) break;
    }
    assert.ok(victim, 'positioned and plain subscribers where needed within 60 connections');

    const agent = await agentOn(d.port, workers, other);
    process.kill(victim, 'SIGSTOP');
    stopped = victim;
    // 150 KiB through the running worker overruns the paused one's 64 KiB ring.
    const big = 'x'.repeat(1024);
    const sent = 150;
    for (let i = 0; i < sent; i++) {
      const r = await publish(d.port, 'pos:x', { i, big }, agent);
      assert.strictEqual(r.status, 200);
    }
    agent.destroy();
    await waitFor(() => otherPos.msgs.filter((m) => m.push && m.push.pub).length >= sent, 5000, 20,
      'the running worker to deliver everything');
    process.kill(victim, 'SIGCONT');
    stopped = null;

    await waitFor(() => pos.msgs.some((m) => m.push && m.push.unsubscribe), 5000, 20,
      'the paused worker to end the positioned subscription');
    const unsub = pos.msgs.find((m) => m.push && m.push.unsubscribe);
    assert.strictEqual(unsub.push.channel, 'pos:x');
    assert.strictEqual(unsub.push.unsubscribe.code, 2500);
    // Whatever it delivered before noticing is a prefix: in order, no gap.
    const got = pos.msgs.filter((m) => m.push && m.push.pub).map((m) => m.push.pub.data.i);
    got.forEach((v, k) => assert.strictEqual(v, k, 'delivered publications are contiguous from the first'));
    assert.ok(got.length < sent, 'it did miss some (the ring was overrun)');
    assert.match(d.log(), /fell behind and lost \d+ record/);
    // The plain subscriber stays subscribed, and the connection lives on.
    assert.ok(!plain.msgs.some((m) => m.push && m.push.unsubscribe));
    const before = plain.msgs.length;
    await publish(d.port, 'plain', { after: true });
    await waitFor(() => plain.msgs.length > before, 3000, 20, 'later publications');
    for (const c of clients) c.ws.close();
  } finally {
    if (stopped) process.kill(stopped, 'SIGCONT');
    await d.stop();
  }
});
