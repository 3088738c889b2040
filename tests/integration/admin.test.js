'use strict';
// The admin interface (admin.*; ref/operations.md §6) through the real
// daemon: Centrifugo's endpoints over raw HTTP (settings, init, auth, the
// session check of admin/api, every server API method through it, the
// wrong-password limit, static files and path traversal, the internal
// port, insecure mode, reload, config errors), then rotor's own UI driven
// in headless Chromium (Debian's chromium, npm puppeteer-core): log in, see
// the node, publish from the Actions form to an SDK client subscribed with
// centrifuge, and a screenshot saved as a test artifact.

const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const {
  Rotord, ROTORD, freePort, waitFor, rawExchange, request, apiPost, hs256, run, mkTmp, bounded,
} = require('./lib/rotord.js');

const SRCDIR = process.env.ROTOR_SRCDIR || path.resolve(__dirname, '../..');
const BUILDDIR = process.env.ROTOR_BUILDDIR || SRCDIR;
const WEB = path.join(SRCDIR, 'src', 'admin');
const CHROMIUM = '/usr/bin/chromium';
const PASSWORD = 'admin-password';
const SECRET = 'admin-secret-for-tests';
const CHANNELS = {
  without_namespace: {
    history_size: 10, history_ttl: '300s', presence: true, allow_subscribe_for_client: true,
  },
};

function adminConfig(admin = {}, extra = {}) {
  return {
    admin: { enabled: true, password: PASSWORD, secret: SECRET, web_path: WEB, ...admin },
    channel: CHANNELS,
    ...extra,
  };
}

async function withDaemon(config, opts, fn) {
  const rd = await new Rotord(config, opts).start();
  try {
    await fn(rd);
  } finally {
    await rd.stop();
  }
}

function form(fields) {
  const body = new URLSearchParams(fields).toString();
  return {
    method: 'POST', body,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body) },
  };
}

// What Centrifugo's own UI sends: a FormData body, multipart/form-data.
function multipart(fields) {
  const b = 'rotorTestBoundary7MA4YWxkTrZu0gW';
  const body = Object.entries(fields).map(([k, v]) =>
    `--${b}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`).join('') + `--${b}--\r\n`;
  return {
    method: 'POST', body,
    headers: { 'Content-Type': `multipart/form-data; boundary=${b}`, 'Content-Length': Buffer.byteLength(body) },
  };
}

// POSTs PASSWORD to admin/auth from the local address FROM.
function authFrom(from, port, password) {
  const http = require('node:http');
  const body = new URLSearchParams({ password }).toString();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/admin/auth', localAddress: from,
      agent: false, headers: { 'Content-Type': 'application/x-www-form-urlencoded',
        'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function login(port, password = PASSWORD) {
  const r = await request(port, { path: '/admin/auth', ...form({ password }) });
  assert.strictEqual(r.status, 200, `auth: ${r.status} ${r.body}`);
  const { token } = JSON.parse(r.body);
  assert.match(token, /^[A-Za-z0-9_-]{40,}$/);
  return token;
}

// POSTs BODY (an object or a string of command values) to admin/api.
function adminApi(port, body, { token, header, query = '' } = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) };
  if (header !== undefined) headers.Authorization = header;
  else if (token !== undefined) headers.Authorization = `token ${token}`;
  return request(port, { method: 'POST', path: `/admin/api${query}`, body: text, headers });
}

function replies(body) {
  return body.split('\n').filter((l) => l).map((l) => JSON.parse(l));
}

// ---- endpoints -------------------------------------------------------------------

test('settings and init say insecure false, edition oss, and never a secret', async () => {
  await withDaemon(adminConfig(), {}, async (rd) => {
    const s = await request(rd.port, { path: '/admin/settings' });
    assert.strictEqual(s.status, 200);
    assert.match(s.headers['content-type'], /^application\/json/);
    assert.strictEqual(s.headers['x-content-type-options'], 'nosniff');
    assert.deepStrictEqual(JSON.parse(s.body), { insecure: false, edition: 'oss' });
    for (const secret of [PASSWORD, SECRET]) assert.ok(!s.body.includes(secret));

    const i = await request(rd.port, { path: '/admin/init' });
    assert.deepStrictEqual(JSON.parse(i.body), { insecure: false, edition: 'oss', authenticated: false });
    const token = await login(rd.port);
    const i2 = await request(rd.port, { path: '/admin/init', headers: { Authorization: `token ${token}` } });
    assert.deepStrictEqual(JSON.parse(i2.body), { insecure: false, edition: 'oss', authenticated: true });
    const i3 = await request(rd.port, { path: `/admin/init?token=${token}` });
    assert.strictEqual(JSON.parse(i3.body).authenticated, true);

    const post = await request(rd.port, { method: 'POST', path: '/admin/settings' });
    assert.strictEqual(post.status, 405);
  });
});

test('auth: the right password (urlencoded or multipart) opens a session, a wrong one is 400 and logged', async () => {
  await withDaemon(adminConfig(), {}, async (rd) => {
    const t1 = await login(rd.port);
    const m = await request(rd.port, { path: '/admin/auth', ...multipart({ password: PASSWORD }) });
    assert.strictEqual(m.status, 200, m.body);
    assert.ok(JSON.parse(m.body).token);
    assert.strictEqual(m.headers['cache-control'], 'no-store');

    const bad = await request(rd.port, { path: '/admin/auth', ...form({ password: `${PASSWORD}x` }) });
    assert.strictEqual(bad.status, 400);
    assert.ok(!bad.body.includes('token'));
    const none = await request(rd.port, { path: '/admin/auth', ...form({}) });
    assert.strictEqual(none.status, 400);
    const badMulti = await request(rd.port, { path: '/admin/auth', ...multipart({ password: 'nope' }) });
    assert.strictEqual(badMulti.status, 400);
    await waitFor(() => /admin: wrong password from 127\.0\.0\.1/.test(rd.log()), 5000, 25, 'the log line');
    assert.ok(!rd.log().includes(PASSWORD), 'the password is never logged');

    const get = await request(rd.port, { path: '/admin/auth' });
    assert.strictEqual(get.status, 405);
    assert.match(get.headers.allow, /POST/);

    const r = await adminApi(rd.port, { method: 'info', params: {} }, { token: t1 });
    assert.strictEqual(r.status, 200);
  });
});

test('admin/api: 401 without a session, with a bad one, or with the wrong scheme', async () => {
  await withDaemon(adminConfig(), {}, async (rd) => {
    const body = { method: 'info', params: {} };
    const token = await login(rd.port);
    const raw = Buffer.from(token, 'base64url');
    const flipped = Buffer.from(raw);
    flipped[raw.length - 1] ^= 1;
    // A token of the right shape, issued now, signed with another secret.
    const crypto = require('node:crypto');
    const iat = Buffer.alloc(8);
    iat.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000)));
    const forged = Buffer.concat([iat, crypto.createHmac('sha256', 'another-secret').update(iat).digest()]);
    // Tokens made as rotor makes them (admin.c): a fresh one passes, one
    // issued two days ago has expired, one from the future is refused.
    const made = (ageS) => {
      const t = Buffer.alloc(8);
      t.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000) - ageS));
      const pw = crypto.createHash('sha256').update(PASSWORD).digest();
      const mac = crypto.createHmac('sha256', SECRET)
        .update(Buffer.concat([Buffer.from('rotor-admin-session\0'), t, pw])).digest();
      return Buffer.concat([t, mac]).toString('base64url');
    };
    const fresh = await adminApi(rd.port, body, { token: made(0) });
    assert.strictEqual(fresh.status, 200, 'a token made here the way rotor makes them');
    const cases = [
      {}, { header: '' }, { header: 'token' }, { header: `Bearer ${token}` }, { header: `apikey ${token}` },
      { header: `token ${token} extra` }, { header: `token ${flipped.toString('base64url')}` },
      { header: `token ${forged.toString('base64url')}` }, { header: 'token insecure' },
      { header: `token ${token.slice(0, -2)}` }, { header: `X-API-Key ${'test-api-key'}` },
      { query: '?token=garbage' }, { token: made(2 * 86400) }, { token: made(-3600) },
    ];
    for (const c of cases) {
      const r = await adminApi(rd.port, body, c);
      assert.strictEqual(r.status, 401, `${JSON.stringify(c)}: ${r.status} ${r.body}`);
      assert.strictEqual(r.body, '');
    }
    // The server API key is not an admin session.
    const k = await request(rd.port, { method: 'POST', path: '/admin/api', body: JSON.stringify(body),
      headers: { 'X-API-Key': 'test-api-key' } });
    assert.strictEqual(k.status, 401);

    for (const c of [{ token }, { header: `TOKEN   ${token}` }, { query: `?token=${token}` }]) {
      const r = await adminApi(rd.port, body, c);
      assert.strictEqual(r.status, 200, `${JSON.stringify(c)}: ${r.status}`);
      assert.ok(JSON.parse(r.body).result.nodes.length >= 1);
      assert.strictEqual(r.headers['x-content-type-options'], 'nosniff');
    }
    const get = await request(rd.port, { path: '/admin/api', headers: { Authorization: `token ${token}` } });
    assert.strictEqual(get.status, 405);

    // Bounded: a body over 1 MiB is refused before it is run.
    const big = JSON.stringify({ method: 'publish', params: { channel: 'x', data: 'y'.repeat(1100000) } });
    const r = await adminApi(rd.port, big, { token });
    assert.strictEqual(r.status, 413);
  });
});

test('admin/api runs every server API method, as /api does', async () => {
  await withDaemon(adminConfig(), {}, async (rd) => {
    const token = await login(rd.port);
    const one = async (method, params) => {
      const r = await adminApi(rd.port, { method, params }, { token });
      assert.strictEqual(r.status, 200, `${method}: ${r.status} ${r.body}`);
      return JSON.parse(r.body);
    };
    const calls = {
      publish: { channel: 'news', data: { n: 1 } },
      broadcast: { channels: ['news', 'other'], data: { n: 2 } },
      subscribe: { user: 'nobody', channel: 'news' },
      unsubscribe: { user: 'nobody', channel: 'news' },
      disconnect: { user: 'nobody' },
      refresh: { user: 'nobody', expired: false },
      presence: { channel: 'news' },
      presence_stats: { channel: 'news' },
      history: { channel: 'news', limit: 10 },
      channels: {},
      info: {},
      history_remove: { channel: 'other' },
    };
    const got = {};
    for (const [m, p] of Object.entries(calls)) {
      got[m] = await one(m, p);
      assert.ok(got[m].result, `${m}: ${JSON.stringify(got[m])}`);
    }
    assert.strictEqual(typeof got.publish.result.offset, 'number');
    assert.strictEqual(got.broadcast.result.responses.length, 2);
    assert.deepStrictEqual(got.presence_stats.result, { num_clients: 0, num_users: 0 });
    assert.deepStrictEqual(got.history.result.publications.map((p) => p.data), [{ n: 1 }, { n: 2 }]);
    assert.ok(got.info.result.nodes[0].name);
    // rpc exists, and OSS has no server RPC: 104, as Centrifugo answers.
    assert.deepStrictEqual(await one('rpc', { method: 'x' }), { error: { code: 104, message: 'not found' } });
    // Unknown channel options answer as in /api: the same code ran.
    const viaApi = await apiPost(rd.port, '/api', { method: 'history', params: { channel: 'news', limit: 10 } });
    const viaAdmin = await adminApi(rd.port, { method: 'history', params: { channel: 'news', limit: 10 } }, { token });
    assert.strictEqual(viaAdmin.body, viaApi.body);

    // A batch is a stream of commands, one reply each, ids kept.
    const stream = [
      { id: 1, method: 'publish', params: { channel: 'news', data: { n: 3 } } },
      { id: 2, method: 'presence_stats', params: { channel: 'news' } },
      { id: 3, method: 'connections', params: {} }, // a PRO method: known, not here
    ].map((c) => JSON.stringify(c)).join('\n');
    const b = await adminApi(rd.port, stream, { token });
    const rs = replies(b.body);
    assert.strictEqual(rs.length, 3);
    assert.strictEqual(rs[0].id, 1);
    assert.strictEqual(rs[0].result.offset, 3);
    assert.deepStrictEqual(rs[1], { id: 2, result: { num_clients: 0, num_users: 0 } });
    assert.deepStrictEqual(rs[2], { id: 3, error: { code: 104, message: 'not found' } });
    const empty = await adminApi(rd.port, '', { token });
    assert.strictEqual(empty.status, 400);
  });
});

test('wrong passwords: 429 with Retry-After once the bucket is empty, right password included, logged', async () => {
  // One worker: the bucket is per worker and per address.
  await withDaemon(adminConfig(), { workers: 1 }, async (rd) => {
    const token = await login(rd.port);
    let wrong = 0;
    let limited = null;
    for (let i = 0; i < 30 && !limited; i++) {
      const r = await request(rd.port, { path: '/admin/auth', ...form({ password: `guess-${i}` }) });
      if (r.status === 429) limited = r;
      else {
        assert.strictEqual(r.status, 400);
        wrong++;
      }
    }
    assert.ok(limited, 'a 429 within 30 wrong passwords');
    const at = Date.now();
    assert.ok(wrong >= 5, `the burst of 5 tries was allowed (${wrong})`);
    assert.match(limited.headers['retry-after'], /^[1-9][0-9]*$/);
    const right = await request(rd.port, { path: '/admin/auth', ...form({ password: PASSWORD }) });
    // Refused too, unless a token refilled meanwhile (12 s).
    if (right.status !== 429) assert.ok(Date.now() - at >= 12000, `right password while locked: ${right.status}`);
    await waitFor(() => /too many wrong passwords from 127\.0\.0\.1/.test(rd.log()), 5000, 25, 'the lockout log line');
    // Sessions already open keep working.
    const r = await adminApi(rd.port, { method: 'info', params: {} }, { token });
    assert.strictEqual(r.status, 200);
    // The bucket is the address's: another loopback address logs in.
    const other = await authFrom('127.0.0.2', rd.port, PASSWORD);
    assert.strictEqual(other.status, 200, `from 127.0.0.2: ${other.status} ${other.body}`);
    assert.match(rd.log(), /session opened from 127\.0\.0\.2/);
  });
});

test('wrong passwords from many addresses do not buy fresh buckets once the table is full', async () => {
  await withDaemon(adminConfig(), { workers: 1 }, async (rd) => {
    const start = Date.now();
    // 64 addresses (the table's size), each until its bucket is empty.
    for (let i = 1; i <= 64; i++) {
      let status = 0;
      for (let n = 0; n < 30 && status !== 429; n++) status = (await authFrom(`127.0.1.${i}`, rd.port, 'guess')).status;
      assert.strictEqual(status, 429, `127.0.1.${i} locked`);
    }
    // A 65th address inherits an empty bucket: even the right password waits.
    const r = await authFrom('127.0.2.1', rd.port, PASSWORD);
    if (r.status !== 429) assert.ok(Date.now() - start >= 12000, `a newcomer got ${r.status} at once`);
  });
});

// ---- static files ------------------------------------------------------------------

test('static files: types, nosniff, and no way out of the directory', async () => {
  const top = mkTmp('rotor-admin-web-');
  const web = path.join(top, 'web');
  try {
    fs.mkdirSync(path.join(web, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(top, 'secret.txt'), 'TOP-SECRET-CONTENT');
    fs.writeFileSync(path.join(web, 'index.html'), '<!DOCTYPE html><title>t</title>');
    fs.writeFileSync(path.join(web, 'app.js'), 'console.log(1)');
    fs.writeFileSync(path.join(web, 'style.css'), 'body{}');
    fs.writeFileSync(path.join(web, 'data.bin'), 'bin');
    fs.writeFileSync(path.join(web, 'sub', 'index.html'), '<p>sub</p>');
    fs.writeFileSync(path.join(web, '.hidden'), 'TOP-SECRET-CONTENT');
    fs.symlinkSync(path.join(top, 'secret.txt'), path.join(web, 'link.txt'));
    fs.symlinkSync(top, path.join(web, 'up'));
    await withDaemon(adminConfig({ web_path: web }), {}, async (rd) => {
      const types = { '/': 'text/html; charset=utf-8', '/index.html': 'text/html; charset=utf-8',
        '/app.js': 'text/javascript; charset=utf-8', '/style.css': 'text/css; charset=utf-8',
        '/data.bin': 'application/octet-stream', '/sub/': 'text/html; charset=utf-8' };
      for (const [p, type] of Object.entries(types)) {
        const r = await request(rd.port, { path: p });
        assert.strictEqual(r.status, 200, p);
        assert.strictEqual(r.headers['content-type'], type, p);
        assert.strictEqual(r.headers['x-content-type-options'], 'nosniff', p);
      }
      const head = await request(rd.port, { method: 'HEAD', path: '/app.js' });
      assert.strictEqual(head.status, 200);
      assert.strictEqual(head.body, '');
      assert.strictEqual((await request(rd.port, { method: 'POST', path: '/app.js' })).status, 405);
      assert.strictEqual((await request(rd.port, { path: '/missing.js' })).status, 404);
      assert.strictEqual((await request(rd.port, { path: '/sub' })).status, 404, 'a directory is no file');

      const attempts = ['/../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E%2Fsecret.txt', '/.%2e/secret.txt',
        '/sub/../../secret.txt', '/sub/%2e%2e/%2e%2e/secret.txt', '/link.txt', '/up/secret.txt', '/.hidden',
        '//secret.txt', '/%2fetc%2fpasswd', '/..%5csecret.txt', '/index.html%00.js', '/./index.html',
        `/..${'/..'.repeat(20)}/etc/passwd`];
      for (const p of attempts) {
        const res = await rawExchange(rd.port, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        const status = Number(res.split(' ')[1]);
        assert.ok(status === 404 || status === 400, `${p}: ${res.split('\r\n')[0]}`);
        assert.ok(!res.includes('TOP-SECRET') && !res.includes('root:'), `${p} leaked`);
      }
      await waitFor(() => /admin: \/link\.txt resolves outside/.test(rd.log()), 5000, 25, 'the symlink warning');
    });
  } finally {
    fs.rmSync(top, { recursive: true, force: true });
  }
});

test('handler_prefix: the UI under <prefix>/, <prefix> redirects there, the root is not the admin\'s', async () => {
  await withDaemon(adminConfig({ handler_prefix: '/ui/' }), {}, async (rd) => {
    const r = await request(rd.port, { path: '/ui' });
    assert.strictEqual(r.status, 301);
    assert.strictEqual(r.headers.location, '/ui/');
    const page = await request(rd.port, { path: '/ui/' });
    assert.strictEqual(page.status, 200);
    assert.match(page.body, /rotor admin/);
    assert.strictEqual((await request(rd.port, { path: '/ui/admin.css' })).headers['content-type'],
      'text/css; charset=utf-8');
    assert.strictEqual((await request(rd.port, { path: '/ui/admin/settings' })).status, 200);
    assert.strictEqual((await request(rd.port, { path: '/admin/settings' })).status, 404);
    assert.strictEqual((await request(rd.port, { path: '/' })).status, 404);
  });
});

test('without admin.web_path the installed UI is served, or a warning says it is not installed', async () => {
  const cfg = adminConfig();
  delete cfg.admin.web_path;
  await withDaemon(cfg, {}, async (rd) => {
    assert.strictEqual((await request(rd.port, { path: '/admin/settings' })).status, 200, 'the endpoints regardless');
    const page = await request(rd.port, { path: '/' });
    const missing = /admin\.web_path: not set, and rotor's web UI is not installed in (\S+):/.exec(rd.log());
    if (missing) {
      assert.ok(!fs.existsSync(path.join(missing[1], 'index.html')));
      assert.strictEqual(page.status, 404);
    } else {
      assert.strictEqual(page.status, 200, 'make install put the UI in $(datadir)/rotor/admin');
      assert.match(page.body, /rotor admin/);
    }
  });
});

// ---- placement, insecure mode, reload, config ---------------------------------------------

test('with an internal port the admin is there only, unless admin.external', async () => {
  for (const external of [false, true]) {
    const internal = await freePort();
    const cfg = adminConfig({ external }, { http_server: { address: '127.0.0.1', internal_port: String(internal) } });
    await withDaemon(cfg, { healthPort: internal }, async (rd) => {
      const [on, off] = external ? [rd.port, internal] : [internal, rd.port];
      for (const p of ['/admin/settings', '/', '/admin.js']) {
        assert.strictEqual((await request(on, { path: p })).status, 200, `${p} on the ${external ? 'external' : 'internal'} port`);
        assert.strictEqual((await request(off, { path: p })).status, 404, `${p} not on the other`);
      }
      const token = await login(on);
      assert.strictEqual((await adminApi(on, { method: 'info', params: {} }, { token })).status, 200);
      assert.strictEqual((await adminApi(off, { method: 'info', params: {} }, { token })).status, 404);
    });
  }
});

test('admin.insecure: no password, no session, a loud warning', async () => {
  const cfg = adminConfig({ insecure: true, password: '', secret: '' });
  await withDaemon(cfg, {}, async (rd) => {
    const s = await request(rd.port, { path: '/admin/settings' });
    assert.deepStrictEqual(JSON.parse(s.body), { insecure: true, edition: 'oss' });
    const a = await request(rd.port, { path: '/admin/auth', ...form({ password: 'anything' }) });
    assert.deepStrictEqual(JSON.parse(a.body), { token: 'insecure' });
    const r = await adminApi(rd.port, { method: 'info', params: {} });
    assert.strictEqual(r.status, 200);
    assert.ok(JSON.parse(r.body).result.nodes.length >= 1);
    assert.match(rd.log(), /warn .*admin\.insecure: the admin interface and its server API are open to anyone/);
  });
});

test('rotord -t: admin.enabled without password or secret is an error naming the key', () => {
  const dir = mkTmp();
  try {
    const check = (admin) => {
      const file = path.join(dir, 'c.json');
      fs.writeFileSync(file, JSON.stringify({ admin }));
      return run(ROTORD, ['-t', '-c', file]);
    };
    let r = check({ enabled: true });
    assert.strictEqual(r.status, 1);
    assert.match(r.stderr, /error: admin\.password: must be set when admin\.enabled/);
    assert.match(r.stderr, /error: admin\.secret: must be set when admin\.enabled/);
    r = check({ enabled: true, password: 'p' });
    assert.strictEqual(r.status, 1);
    assert.doesNotMatch(r.stderr, /admin\.password:/);
    assert.match(r.stderr, /admin\.secret:/);
    r = check({ enabled: true, password: 'p', secret: 's', web_path: WEB });
    assert.strictEqual(r.status, 0, r.stderr);
    r = check({ enabled: false });
    assert.strictEqual(r.status, 0, r.stderr);
    r = check({ enabled: true, password: 'p', secret: 's', web_path: path.join(WEB, 'index.html') });
    assert.strictEqual(r.status, 1);
    assert.match(r.stderr, /error: admin\.web_path: .*not a directory/);
    r = check({ enabled: true, password: 'p', secret: 's', web_path: WEB, handler_prefix: 'ui' });
    assert.strictEqual(r.status, 1);
    assert.match(r.stderr, /error: admin\.handler_prefix: must be empty or start with '\/'/);
    r = check({ enabled: true, password: 'p', secret: 's', web_path: WEB, web_proxy_address: 'http://127.0.0.1:3000' });
    assert.strictEqual(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: admin\.web_proxy_address: not supported by rotor yet; ignored/);
    r = check({ enabled: true, insecure: true });
    assert.strictEqual(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: admin\.insecure/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('HUP: a new password ends the sessions, the prefix moves, enabled=false removes it all', async () => {
  await withDaemon(adminConfig(), {}, async (rd) => {
    const old = await login(rd.port);
    const reload = async (admin) => {
      rd.fullConfig.admin = { ...rd.fullConfig.admin, ...admin };
      rd.writeConfig(rd.fullConfig);
      const before = (rd.log().match(/configuration reloaded in place/g) || []).length;
      rd.signal('SIGHUP');
      await waitFor(() => (rd.log().match(/configuration reloaded in place/g) || []).length >= before + 2,
        10000, 25, 'both workers to reload');
    };
    await reload({ password: 'new-password', handler_prefix: '/adm' });
    assert.strictEqual((await request(rd.port, { path: '/adm/admin/settings' })).status, 200);
    assert.strictEqual((await request(rd.port, { path: '/admin/settings' })).status, 404);
    const r = await request(rd.port, { method: 'POST', path: '/adm/admin/api', body: '{"method":"info"}',
      headers: { Authorization: `token ${old}` } });
    assert.strictEqual(r.status, 401, 'the old session ended with the old password');
    const bad = await request(rd.port, { path: '/adm/admin/auth', ...form({ password: PASSWORD }) });
    assert.strictEqual(bad.status, 400);
    const ok = await request(rd.port, { path: '/adm/admin/auth', ...form({ password: 'new-password' }) });
    assert.strictEqual(ok.status, 200);
    await reload({ enabled: false });
    assert.strictEqual((await request(rd.port, { path: '/adm/admin/settings' })).status, 404);
    assert.strictEqual((await request(rd.port, { path: '/adm/' })).status, 404);
  });
});

test('with the Redis engine, admin/api info lists every node, and a publication reaches the other node',
  { skip: require('./lib/redis').available() ? false : 'redis-server is not installed' }, async () => {
    const { Redis, nodeClient } = require('./lib/redis');
    const redis = await new Redis().start();
    const nodes = [];
    try {
      const engine = { type: 'redis', redis: { address: [`redis://127.0.0.1:${redis.port}`] } };
      nodes.push(await new Rotord(adminConfig({}, { engine, node: { name: 'node-a' } }),
        { workers: 2, expectWorkers: 3 }).start());
      nodes.push(await new Rotord({ channel: CHANNELS, engine, node: { name: 'node-b' } },
        { workers: 2, expectWorkers: 3 }).start());
      const [a, b] = nodes;
      const token = await login(a.port);
      const info = await waitFor(async () => {
        const r = JSON.parse((await adminApi(a.port, { method: 'info', params: {} }, { token })).body);
        return r.result.nodes.length === 2 && r;
      }, 10000, 100, 'both nodes in info');
      assert.deepStrictEqual(info.result.nodes.map((n) => n.name).sort(), ['node-a', 'node-b']);
      // The admin interface is node A's alone.
      assert.strictEqual((await request(b.port, { path: '/admin/settings' })).status, 404);
      const c = await nodeClient(b, 'bob');
      try {
        const sub = await c.call({ subscribe: { channel: 'news' } });
        assert.ok(sub.subscribe, JSON.stringify(sub));
        const r = await adminApi(a.port, { method: 'publish', params: { channel: 'news', data: { via: 'admin' } } },
          { token });
        assert.ok(JSON.parse(r.body).result, r.body);
        const pubs = await waitFor(() => c.pubs('news').length && c.pubs('news'), 8000, 25, 'the publication on node B');
        assert.deepStrictEqual(pubs.map((p) => p.data), [{ via: 'admin' }]);
      } finally {
        c.ws.terminate();
      }
    } finally {
      for (const n of nodes) await n.stop();
      await redis.stop();
    }
  });

// ---- the UI in a real browser ---------------------------------------------------------------

const noChromium = fs.existsSync(CHROMIUM) ? false
  : `${CHROMIUM} is not installed (Debian package "chromium"; contrib/dev.sh installs it)`;

test('the UI in headless Chromium: log in, see the node, publish to an SDK client', { skip: noChromium }, async () => {
  const puppeteer = require('puppeteer-core');
  const artifacts = path.join(BUILDDIR, 'tests/integration/artifacts');
  fs.mkdirSync(artifacts, { recursive: true });
  const profile = mkTmp('rotor-chromium-');
  let browser = null;
  let sdk = null;
  await withDaemon(adminConfig(), {}, async (rd) => {
    try {
      const node = JSON.parse((await apiPost(rd.port, '/api/info', {})).body).result.nodes[0].name;
      // A subscriber with the official SDK.
      const got = [];
      sdk = new Centrifuge(`ws://127.0.0.1:${rd.port}/connection/websocket`, {
        websocket: WebSocket, token: hs256({ sub: 'watcher' }), minReconnectDelay: 50, timeout: 5000,
      });
      sdk.on('error', () => {});
      const sub = sdk.newSubscription('news');
      sub.on('publication', (ctx) => got.push(ctx.data));
      const subscribed = new Promise((resolve) => sub.on('subscribed', resolve));
      sub.subscribe();
      sdk.connect();
      await bounded(10000, 'SDK subscribe', () => subscribed);

      browser = await puppeteer.launch({
        executablePath: CHROMIUM, headless: true, userDataDir: profile,
        args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
          '--disable-component-update', '--disable-sync', '--disable-extensions'],
      });
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      await page.setViewport({ width: 1200, height: 800 });
      await page.goto(`http://127.0.0.1:${rd.port}/`, { waitUntil: 'load' });

      // A wrong password stays on the login page with a message.
      await page.waitForSelector('#login-password', { visible: true });
      await page.type('#login-password', 'wrong');
      await page.click('#login-submit');
      await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
      assert.strictEqual(await page.$eval('#login-error', (e) => e.textContent), 'Wrong password.');
      assert.strictEqual(await page.$eval('#page-status', (e) => e.hidden), true);
      errors.length = 0; // the browser reports that 400 as an error: the only one allowed

      await page.$eval('#login-password', (e) => { e.value = ''; });
      await page.type('#login-password', PASSWORD);
      await page.click('#login-submit');
      // The status page lists this node (from info).
      await page.waitForFunction((name) => [...document.querySelectorAll('#status-table tbody td')]
        .some((td) => td.textContent === name), { timeout: 10000 }, node);
      const row = await page.$$eval('#status-table tbody tr', (trs) => trs.map((tr) =>
        [...tr.children].map((td) => td.textContent)));
      assert.strictEqual(row.length, 1);
      assert.strictEqual(row[0][0], node);
      assert.strictEqual(row[0][3], '1', 'one client: the SDK');

      // Channels: the SDK's channel with its one subscriber.
      await page.click('a[href="#channels"]');
      await page.click('#channels-form button[type=submit]');
      await page.waitForFunction(() => [...document.querySelectorAll('#channels-table tbody td')]
        .some((td) => td.textContent === 'news'));

      // Actions: publish from the form.
      await page.click('a[href="#actions"]');
      await page.select('#action-method', 'publish');
      await page.$eval('#action-params', (e) => {
        e.value = JSON.stringify({ channel: 'news', data: { from: 'the admin UI' } });
      });
      await page.click('#action-send');
      await page.waitForFunction(() => /"offset"/.test(document.getElementById('action-response').textContent));
      await waitFor(() => got.length === 1, 10000, 25, 'the publication at the SDK client');
      assert.deepStrictEqual(got, [{ from: 'the admin UI' }]);
      await page.screenshot({ path: path.join(artifacts, 'admin-actions.png') });

      // Presence and history of the channel, from the channels page's buttons.
      await page.click('a[href="#channels"]');
      await page.click('#channels-form button[type=submit]');
      // Found and clicked in one step in the page: the list may be redrawn meanwhile.
      await page.waitForFunction(() => {
        const tr = [...document.querySelectorAll('#channels-table tbody tr')].find((r) => r.cells[0].textContent === 'news');
        if (tr) tr.querySelectorAll('button')[1].click(); // "history"
        return !!tr;
      });
      await page.waitForFunction(() => /the admin UI/.test(document.querySelector('#history-table tbody').textContent));
      await page.click('a[href="#presence"]');
      await page.$eval('#presence-channel', (e) => { e.value = 'news'; });
      await page.click('#presence-form button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#presence-table tbody').textContent.includes('watcher'));

      await page.click('a[href="#status"]');
      await page.waitForFunction((name) => [...document.querySelectorAll('#status-table tbody td')]
        .some((td) => td.textContent === name), {}, node);
      await page.screenshot({ path: path.join(artifacts, 'admin.png') });
      assert.ok(fs.statSync(path.join(artifacts, 'admin.png')).size > 1000);
      await waitFor(() => /admin: session opened from 127\.0\.0\.1/.test(rd.log()), 5000, 25, 'the session log line');

      // Log out: back to the login page, which a reload keeps.
      await page.click('#logout');
      await page.waitForSelector('#login-password', { visible: true });
      await page.reload({ waitUntil: 'load' });
      await page.waitForSelector('#login-password', { visible: true });
      assert.strictEqual(await page.$eval('#nav', (e) => e.hidden), true);

      // admin.insecure under a handler_prefix: no login, the relative URLs
      // resolve under /ui/ (reached through the redirect from /ui).
      await withDaemon(adminConfig({ insecure: true, password: '', secret: '', handler_prefix: '/ui' }), {},
        async (rd2) => {
          const p2 = await browser.newPage();
          p2.on('pageerror', (e) => errors.push(e.message));
          p2.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
          await p2.goto(`http://127.0.0.1:${rd2.port}/ui`, { waitUntil: 'load' });
          assert.strictEqual(p2.url(), `http://127.0.0.1:${rd2.port}/ui/`);
          await p2.waitForFunction(() => document.querySelectorAll('#status-table tbody tr').length === 1);
          assert.strictEqual(await p2.$eval('#page-login', (e) => e.hidden), true);
          assert.strictEqual(await p2.$eval('#insecure-badge', (e) => e.hidden), false);
          await p2.screenshot({ path: path.join(artifacts, 'admin-insecure.png') });
          await p2.close();
        });
      assert.deepStrictEqual(errors, [], 'no script error or CSP violation in the pages');
    } finally {
      if (sdk) sdk.disconnect();
      if (browser) {
        const pid = browser.process() && browser.process().pid;
        await browser.close().catch(() => {});
        if (pid) { try { process.kill(pid, 'SIGKILL'); } catch (_) { /* gone */ } }
      }
      fs.rmSync(profile, { recursive: true, force: true });
    }
  });
});
