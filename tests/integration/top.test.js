'use strict';
// rotorctl top against the real daemon with two workers: subscribers per
// channel summed over the workers' snapshots, publications counted on the
// bus while it watches, and the stream top (offset, epoch) of channels with
// history, all read from shared memory without a request to the daemon.
// Known subscriptions (raw `ws` clients of the JSON protocol) and server
// API publishes; --once with SIGINT ends the count when the test says, so
// the counts are exact. Waits are bounded and poll for a state.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const WebSocket = require('ws');
const { Rotord, ROTORCTL, run, waitFor, apiPost } = require('./lib/rotord.js');

const PATH = '/connection/websocket';
let rd;
const sockets = [];

before(async () => {
  rd = await new Rotord({
    client: { insecure: true },
    channel: {
      without_namespace: { allow_subscribe_for_client: true },
      namespaces: [{ name: 'chat', allow_subscribe_for_client: true, history_size: 10, history_ttl: '60s' }],
    },
  }, { workers: 2 }).start();
});

after(async () => {
  for (const ws of sockets) ws.terminate();
  if (rd) await rd.stop();
});

// A raw client subscribed to CHANNELS; resolves once every reply came.
function subscriber(channels) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${rd.port}${PATH}`);
    sockets.push(ws);
    let replies = 0;
    ws.on('message', (d) => {
      for (const line of d.toString().split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line);
        if (r.error) reject(new Error(JSON.stringify(r)));
        if (r.id && ++replies === channels.length + 1) resolve(ws);
      }
    });
    ws.once('open', () => {
      const cmds = [{ id: 1, connect: {} }, ...channels.map((channel, i) => ({ id: i + 2, subscribe: { channel } }))];
      ws.send(cmds.map((c) => JSON.stringify(c)).join('\n'));
    });
    ws.once('error', reject);
  });
}

// The table rotorctl top printed: { header, rows: Map channel -> {...} }.
function parseTable(out) {
  const lines = out.trim().split('\n');
  const at = lines.findIndex((l) => l.startsWith('CHANNEL'));
  assert.ok(at >= 1, `a table: ${out}`);
  assert.deepStrictEqual(lines[at].split(/\s+/), ['CHANNEL', 'SUBSCRIBERS', 'PUBS/S', 'PUBS', 'TOP', 'EPOCH']);
  const rows = new Map();
  for (const l of lines.slice(at + 1)) {
    const [name, subs, rate, pubs, top, epoch] = l.trim().split(/\s+/);
    rows.set(name, { subs: Number(subs), rate: Number(rate), pubs: Number(pubs), top, epoch });
  }
  return { header: lines[0], rows };
}

const topOnce = (...args) => run(ROTORCTL, ['top', '-c', rd.configPath, '--once', ...args]);

test('subscribers, publications and stream tops, exactly', async () => {
  // 3 on chat:a (with history), 2 of them also on news (without), 1 on chat:b.
  await subscriber(['chat:a', 'news']);
  await subscriber(['chat:a', 'news']);
  await subscriber(['chat:a']);
  await subscriber(['chat:b']);
  let epoch;
  for (let i = 1; i <= 4; i++) {
    const r = JSON.parse((await apiPost(rd.port, '/api/publish', { channel: 'chat:a', data: { i } })).body);
    assert.strictEqual(r.result.offset, i);
    epoch = r.result.epoch;
  }

  // The snapshots follow within a tick or two.
  const t = await waitFor(() => {
    const r = topOnce('-d', '0.05');
    assert.strictEqual(r.status, 0, r.stderr);
    const tab = parseTable(r.stdout);
    const a = tab.rows.get('chat:a');
    return a && a.subs === 3 && tab.rows.size === 3 ? tab : null;
  }, 8000, 50, 'top to show the subscriptions');
  assert.match(t.header, /^2 workers, 4 clients, 6 subscriptions, 3 channels;/);
  assert.deepStrictEqual([...t.rows.keys()], ['chat:a', 'news', 'chat:b'], 'most subscribers first');
  assert.deepStrictEqual(t.rows.get('chat:a'), { subs: 3, rate: 0, pubs: 0, top: '4', epoch });
  assert.deepStrictEqual(t.rows.get('news'), { subs: 2, rate: 0, pubs: 0, top: '-', epoch: '-' });
  assert.deepStrictEqual(t.rows.get('chat:b'), { subs: 1, rate: 0, pubs: 0, top: '-', epoch: '-' },
    'a channel with history but no publication has no stream');

  // Publications while it watches: it counts from when it says so until
  // interrupted, then prints.
  const child = spawn(ROTORCTL, ['top', '-c', rd.configPath, '--once', '-d', '120', '-n', '2'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
  try {
    await waitFor(() => /counting publications/.test(err), 8000, 10, 'top to watch');
    for (let i = 0; i < 5; i++) assert.strictEqual((await apiPost(rd.port, '/api/publish', { channel: 'news', data: i })).status, 200);
    for (let i = 0; i < 2; i++) assert.strictEqual((await apiPost(rd.port, '/api/publish', { channel: 'chat:a', data: i })).status, 200);
    assert.strictEqual((await apiPost(rd.port, '/api/publish', { channel: 'nobody', data: 1 })).status, 200);
    child.kill('SIGINT');
    assert.deepStrictEqual(await exited, { code: 0, signal: null }, err);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  const w = parseTable(out);
  assert.strictEqual(w.rows.size, 2, '-n 2: two rows');
  assert.match(w.header, /4 channels;/, 'nobody, published to, is a channel too');
  const a = w.rows.get('chat:a'), n = w.rows.get('news');
  assert.deepStrictEqual([a.subs, a.pubs, a.top, a.epoch], [3, 2, '6', epoch]);
  assert.deepStrictEqual([n.subs, n.pubs, n.top], [2, 5, '-']);
  assert.ok(n.rate > 0 && a.rate > 0 && n.rate > a.rate, 'rates follow the counts');
});

test('no daemon: an error, not a hang', () => {
  const r = run(ROTORCTL, ['top', '-c', '/nonexistent/config.json', '--once']);
  assert.notStrictEqual(r.status, 0);
  assert.strictEqual(r.stdout, '');
});

test('bad options are refused', () => {
  for (const args of [['-n', '0'], ['-d', 'x'], ['-d', '0'], ['--json']]) {
    const r = run(ROTORCTL, ['top', '-c', rd.configPath, '--once', ...args]);
    assert.strictEqual(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  }
});
