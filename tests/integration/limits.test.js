'use strict';
// Node-wide limits from client.*: connection_limit refuses the upgrade with
// HTTP 503 once that many clients are connected on any of the workers.
const test = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Rotord, sleep, waitFor, hs256 } = require('./lib/rotord');

const token = (sub) => hs256({ sub });

function open(port, connect = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/connection/websocket`);
    const msgs = [];
    ws.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: String(reason) })));
    ws.on('message', (d) => msgs.push(...d.toString().split('\n').map((l) => JSON.parse(l))));
    ws.on('open', () => {
      ws.send(JSON.stringify({ id: 1, connect }));
      resolve({ ws, msgs, status: 101 });
    });
    ws.on('unexpected-response', (req, res) => resolve({ ws, msgs, status: res.statusCode }));
    ws.on('error', () => {});
  });
}

test('client.connection_limit: the upgrade past the limit gets 503, counted over all workers', async () => {
  const d = await new Rotord({ client: { insecure: true, connection_limit: 6 } }, { workers: 3 }).start();
  try {
    const first = [];
    for (let i = 0; i < 6; i++) {
      const c = await open(d.port);
      assert.strictEqual(c.status, 101);
      await waitFor(() => c.msgs.some((m) => m.id === 1), 3000, 10, 'connect');
      first.push(c);
    }
    // Workers publish their counts once per loop iteration; let them settle.
    await sleep(300);
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await open(d.port)).status);
    assert.deepStrictEqual(statuses, [503, 503, 503, 503, 503, 503]);
    assert.match(d.log(), /client\.connection_limit \(6\) reached/);
    // Room again once clients leave.
    first[0].ws.close();
    first[1].ws.close();
    await sleep(300);
    const again = await open(d.port);
    assert.strictEqual(again.status, 101);
    for (const c of first) c.ws.close();
    again.ws.close();
  } finally {
    await d.stop();
  }
});

test('client.user_connection_limit: a user past the limit on the node is disconnected with 3504', async () => {
  const d = await new Rotord({ client: { user_connection_limit: 2 } }, { workers: 3 }).start();
  try {
    const conns = [];
    for (let i = 0; i < 2; i++) {
      const c = await open(d.port, { token: token('42') });
      await waitFor(() => c.msgs.some((m) => m.id === 1 && m.connect), 3000, 10, 'connect');
      conns.push(c);
      await sleep(300); // the workers' snapshots catch up
    }
    // Whichever worker the third lands on, it counts the other two.
    for (let i = 0; i < 3; i++) {
      const c = await open(d.port, { token: token('42') });
      const { code, reason } = await c.ws.closed;
      assert.strictEqual(code, 3504);
      assert.strictEqual(reason, 'connection limit');
    }
    // Other users are not limited by user 42's connections.
    const other = await open(d.port, { token: token('7') });
    await waitFor(() => other.msgs.some((m) => m.id === 1 && m.connect), 3000, 10, 'another user');
    // A slot frees when one of 42's connections goes.
    conns[0].ws.close();
    await sleep(400);
    const again = await open(d.port, { token: token('42') });
    await waitFor(() => again.msgs.some((m) => m.id === 1 && m.connect), 3000, 10, 'user 42 again');
    for (const c of [...conns, other, again]) c.ws.close();
  } finally {
    await d.stop();
  }
});
