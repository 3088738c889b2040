'use strict';
// Node-wide limits from client.*: connection_limit refuses the upgrade with
// HTTP 503 once that many clients are connected on any of the workers.
const test = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Rotord, sleep, waitFor } = require('./lib/rotord');

function open(port) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/connection/websocket`);
    const msgs = [];
    ws.on('message', (d) => msgs.push(...d.toString().split('\n').map((l) => JSON.parse(l))));
    ws.on('open', () => {
      ws.send(JSON.stringify({ id: 1, connect: {} }));
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
