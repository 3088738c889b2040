'use strict';
// Subscription expiry without a refresh: a client-side subscription from an
// expiring subscription token ends with unsubscribe 2501 once
// client.expired_sub_close_delay has passed after its expiry; a server-side
// one (API subscribe with expire_at) ends the connection with 3006.
const test = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const { Rotord, waitFor, hs256, apiPost } = require('./lib/rotord');


async function connect(port, user) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/connection/websocket`);
  const msgs = [];
  ws.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  ws.on('message', (d) => { for (const l of d.toString().split('\n')) msgs.push(JSON.parse(l)); });
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  ws.send(JSON.stringify({ id: 1, connect: { token: hs256({ sub: user }) } }));
  await waitFor(() => msgs.find((m) => m.id === 1), 3000, 10, 'connect reply');
  return { ws, msgs, client: msgs.find((m) => m.id === 1).connect.client };
}

test('an expiring subscription that is not refreshed ends with unsubscribe 2501', async () => {
  const d = await new Rotord({ client: { expired_sub_close_delay: '1s' } }, { workers: 2 }).start();
  try {
    const c = await connect(d.port, '42');
    const exp = Math.floor(Date.now() / 1000) + 2;
    c.ws.send(JSON.stringify({ id: 2, subscribe: { channel: '$secret', token: hs256({ sub: '42', channel: '$secret', exp }) } }));
    await waitFor(() => c.msgs.find((m) => m.id === 2), 3000, 10, 'subscribe reply');
    const sub = c.msgs.find((m) => m.id === 2);
    assert.strictEqual(sub.subscribe.expires, true);
    assert.ok(sub.subscribe.ttl >= 1 && sub.subscribe.ttl <= 2, `ttl ${sub.subscribe.ttl}`);
    const t0 = Date.now();
    await waitFor(() => c.msgs.find((m) => m.push && m.push.unsubscribe), 6000, 20, 'the 2501 push');
    const push = c.msgs.find((m) => m.push && m.push.unsubscribe).push;
    assert.deepStrictEqual(push, { channel: '$secret', unsubscribe: { code: 2501, reason: 'subscription expired' } });
    assert.ok(Date.now() - t0 >= 1500, 'not before expiry + delay');
    assert.strictEqual(c.ws.readyState, WebSocket.OPEN, 'the connection stays');
    c.ws.close();
  } finally {
    await d.stop();
  }
});

test('an expiring server-side subscription that is not refreshed ends the connection with 3006', async () => {
  const d = await new Rotord({ client: { expired_sub_close_delay: '1s', insecure: true } }, { workers: 2 }).start();
  try {
    const c = await connect(d.port, '7');
    const r = await apiPost(d.port, '/api/subscribe',
      { user: '7', channel: 'news', expire_at: Math.floor(Date.now() / 1000) + 1 });
    assert.strictEqual(r.status, 200, r.body);
    await waitFor(() => c.msgs.find((m) => m.push && m.push.subscribe), 3000, 10, 'the subscribe push');
    const { code, reason } = await c.ws.closed;
    assert.strictEqual(code, 3006);
    assert.strictEqual(reason, 'subscription expired');
  } finally {
    await d.stop();
  }
});
