'use strict';
// The operator's endpoints under a flood: many connections scraping
// /metrics and calling the admin API as fast as they are answered, on every
// worker, while SDK clients wait for publications. Client traffic must not
// starve: every publication reaches every client while the flood goes on
// (the flood stops only once they have arrived, or after a generous bound),
// and every flood request is answered.
//
// Nothing asserts on speed: a starved client would get its publications
// only after the flood, which the bound ends, and the test would fail.

const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const { Rotord, waitFor, hs256, apiPost, request } = require('./lib/rotord');

const PASSWORD = 'flood-password';
const FLOODERS = 48;
const PUBS = 30;

function form(fields) {
  const body = new URLSearchParams(fields).toString();
  return { method: 'POST', body, headers: { 'Content-Type': 'application/x-www-form-urlencoded',
    'Content-Length': Buffer.byteLength(body) } };
}

test('a flood of /metrics scrapes and admin API calls never starves client traffic', { timeout: 90000 }, async () => {
  const rd = await new Rotord({
    prometheus: { enabled: true },
    admin: { enabled: true, password: PASSWORD, secret: 'flood-admin-secret' },
    channel: { without_namespace: { allow_subscribe_for_client: true } },
  }, { workers: 2 }).start();
  const agent = new http.Agent({ keepAlive: true, maxSockets: FLOODERS });
  const clients = [];
  let flooding = true;
  const answered = { metrics: 0, admin: 0, bad: [] };
  try {
    const auth = await request(rd.port, { path: '/admin/auth', ...form({ password: PASSWORD }) });
    assert.strictEqual(auth.status, 200, auth.body);
    const { token } = JSON.parse(auth.body);

    // Clients on both workers (fresh connections spread over the sockets).
    for (let i = 0; i < 6; i++) {
      const st = { got: [] };
      st.c = new Centrifuge(`ws://127.0.0.1:${rd.port}/connection/websocket`, {
        token: hs256({ sub: `u${i}`, exp: Math.floor(Date.now() / 1000) + 3600 }), websocket: WebSocket, timeout: 20000,
      });
      const s = st.c.newSubscription('news');
      s.on('publication', (ctx) => st.got.push(ctx.data.n));
      st.subscribed = new Promise((resolve) => s.on('subscribed', resolve));
      s.subscribe();
      st.c.connect();
      clients.push(st);
    }
    await Promise.all(clients.map((st) => st.subscribed));

    const adminBody = JSON.stringify({ method: 'info', params: {} });
    const flooder = async (k) => {
      while (flooding) {
        const scrape = k % 2 === 0;
        const r = scrape
          ? await request(rd.port, { path: '/metrics', agent })
          : await request(rd.port, { method: 'POST', path: '/admin/api', agent, body: adminBody,
            headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json',
              'Content-Length': Buffer.byteLength(adminBody) } });
        if (r.status !== 200) answered.bad.push(`${scrape ? 'metrics' : 'admin'} ${r.status} ${r.body.slice(0, 100)}`);
        else answered[scrape ? 'metrics' : 'admin']++;
      }
    };
    const flood = Promise.all([...Array(FLOODERS).keys()].map(flooder));
    // The flood is under way on every connection before the first publication.
    await waitFor(() => answered.metrics + answered.admin >= 2 * FLOODERS, 30000, 10, 'the flood to start');

    for (let n = 1; n <= PUBS; n++) {
      const r = await apiPost(rd.port, '/api/publish', { channel: 'news', data: { n } }, { timeout: 30000 });
      assert.strictEqual(r.status, 200, r.body);
    }
    await waitFor(() => clients.every((st) => st.got.length === PUBS), 30000, 20,
      'every publication at every client while the flood goes on');
    // And the flood is still being answered: it was going on all along.
    const sofar = answered.metrics + answered.admin;
    await waitFor(() => answered.metrics + answered.admin >= sofar + FLOODERS, 30000, 10,
      'the flood still answered after the publications arrived');
    flooding = false;
    await flood;

    for (const st of clients) assert.deepStrictEqual(st.got, [...Array(PUBS).keys()].map((i) => i + 1));
    assert.deepStrictEqual(answered.bad, [], 'every flood request answered 200');
    assert.ok(answered.metrics > 0 && answered.admin > 0, JSON.stringify(answered));
  } finally {
    flooding = false;
    for (const st of clients) st.c.disconnect();
    agent.destroy();
    await rd.stop();
  }
});
