'use strict';
// rotorctl: genconfig, checkconfig, gentoken/checktoken, gensubtoken/
// checksubtoken, version and the command line. Tokens that rotorctl must
// refuse or accept are also built here with node's crypto, independently
// of rotor's own signer: expired, foreign secret, typ at+jwt, RS256, ES256,
// alg none.

const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { ROTORCTL, run, mkTmp, sleep } = require('./lib/rotord.js');

const b64u = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

// A JWT signed with node's crypto for header.alg (default {alg, typ: JWT}).
// HS*: key is the secret; RS*/ES*: a KeyObject; anything else: no signature.
function jwt(payload, { alg: algOpt = 'HS256', key, header } = {}) {
  const h = header || { alg: algOpt, typ: 'JWT' };
  const alg = h.alg;
  const data = `${b64u(h)}.${b64u(payload)}`;
  const md = `sha${alg.slice(2)}`;
  let sig = '';
  if (alg.startsWith('HS')) sig = crypto.createHmac(md, key).update(data).digest('base64url');
  else if (alg.startsWith('RS')) sig = crypto.sign(md, Buffer.from(data), key).toString('base64url');
  else if (alg.startsWith('ES')) {
    sig = crypto.sign(md, Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  }
  return `${data}.${sig}`;
}

const payloadOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
const now = () => Math.floor(Date.now() / 1000);

// A directory with config.json holding `config`; returns {dir, file}.
function withConfig(config) {
  const dir = mkTmp('rotorctl-');
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  return { dir, file };
}

const ctl = (args, opts = {}) => run(ROTORCTL, args, opts);

test('genconfig writes a valid config with fresh secrets and never overwrites', () => {
  const dir = mkTmp('rotorctl-');
  try {
    const r1 = ctl(['genconfig'], { cwd: dir });
    assert.strictEqual(r1.status, 0, r1.stderr);
    assert.match(r1.stdout, /config\.json/);
    const file = path.join(dir, 'config.json');
    const c1 = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.strictEqual((fs.statSync(file).mode & 0o777), 0o600, 'secrets file is private');
    assert.match(c1.client.token.hmac_secret_key, /^[A-Za-z0-9_-]{86}$/, '64 bytes, base64url, no padding');
    assert.match(c1.admin.password, /^[A-Za-z0-9_-]{22}$/, '16 bytes');
    assert.match(c1.admin.secret, /^[A-Za-z0-9_-]{86}$/);
    assert.match(c1.http_api.key, /^[A-Za-z0-9_-]{86}$/);
    assert.deepStrictEqual(c1.client.allowed_origins, []);
    assert.strictEqual(c1.admin.enabled, false);

    const again = ctl(['genconfig'], { cwd: dir });
    assert.strictEqual(again.status, 1, 'refuses to overwrite');
    assert.match(again.stderr, /exists/);
    assert.deepStrictEqual(JSON.parse(fs.readFileSync(file, 'utf8')), c1, 'file unchanged');

    const r2 = ctl(['genconfig', '-c', 'other.json'], { cwd: dir });
    assert.strictEqual(r2.status, 0, r2.stderr);
    const c2 = JSON.parse(fs.readFileSync(path.join(dir, 'other.json'), 'utf8'));
    assert.notStrictEqual(c2.client.token.hmac_secret_key, c1.client.token.hmac_secret_key);
    assert.notStrictEqual(c2.admin.password, c1.admin.password);
    assert.notStrictEqual(c2.http_api.key, c1.http_api.key);

    const check = ctl(['checkconfig'], { cwd: dir });
    assert.strictEqual(check.status, 0, check.stderr);
    assert.match(check.stdout, /valid/);
    const strict = ctl(['checkconfig', '--config', 'other.json', '--strict'], { cwd: dir });
    assert.strictEqual(strict.status, 0, strict.stderr);

    assert.strictEqual(ctl(['genconfig', '-c', 'x.yaml'], { cwd: dir }).status, 1, 'JSON only');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('checkconfig reports every problem with its key, and --strict fails on unknown keys', () => {
  const { dir, file } = withConfig({
    http_server: { port: 'eighty' },
    client: { token: { hmac_secret_key: 's', user_id_claim: 'a.b' } },
    bogus_key: 1,
  });
  try {
    const bad = ctl(['checkconfig', '-c', file]);
    assert.strictEqual(bad.status, 1);
    assert.match(bad.stderr, /http_server\.port/);
    assert.match(bad.stderr, /client\.token\.user_id_claim/);
    assert.match(bad.stderr, /bogus_key/);

    fs.writeFileSync(file, JSON.stringify({ client: { token: { hmac_secret_key: 's' } }, bogus_key: 1 }));
    const lax = ctl(['checkconfig', '-c', file]);
    assert.strictEqual(lax.status, 0, lax.stderr);
    assert.match(lax.stderr, /warning: .*bogus_key/);
    const strict = ctl(['checkconfig', '-c', file, '-s']);
    assert.strictEqual(strict.status, 1);

    fs.writeFileSync(file, JSON.stringify({ client: { token: { rsa_public_key: 'junk' } } }));
    const pem = ctl(['checkconfig', '-c', file]);
    assert.strictEqual(pem.status, 1);
    assert.match(pem.stderr, /client\.token\.rsa_public_key/);

    const missing = ctl(['checkconfig', '-c', path.join(dir, 'nope.json')]);
    assert.strictEqual(missing.status, 1);
    assert.match(missing.stderr, /nope\.json/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('gentoken then checktoken: round trip, output format, -q, TTL', () => {
  const { dir, file } = withConfig({ client: { token: { hmac_secret_key: 'round-trip-secret' } } });
  try {
    const g = ctl(['gentoken', '-c', file, '-u', 'alice']);
    assert.strictEqual(g.status, 0, g.stderr);
    const lines = g.stdout.trimEnd().split('\n');
    assert.strictEqual(lines.length, 2);
    assert.strictEqual(lines[0], 'HMAC SHA-256 JWT for user "alice" with expiration TTL 168h0m0s:');
    const token = lines[1];
    const p = payloadOf(token);
    assert.strictEqual(p.sub, 'alice');
    assert.ok(Math.abs(p.exp - (now() + 604800)) <= 5, 'exp one week ahead');
    assert.ok(Math.abs(p.iat - now()) <= 5);
    // The signature is the one node computes with the same secret.
    assert.strictEqual(jwt(p, { key: 'round-trip-secret', header: JSON.parse(Buffer.from(token.split('.')[0], 'base64url')) }).split('.')[2],
      token.split('.')[2]);

    const c = ctl(['checktoken', '-c', file, token]);
    assert.strictEqual(c.status, 0, c.stderr);
    assert.match(c.stdout, /^valid token for user "alice" with expiration at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n/);
    assert.match(c.stdout, /payload: \{.*"sub":"alice".*\}/);

    const q = ctl(['gentoken', '--config', file, '--user', 'bob', '--quiet']);
    assert.strictEqual(q.status, 0, q.stderr);
    assert.match(q.stdout, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/, '-q prints the token only');
    assert.strictEqual(payloadOf(q.stdout.trim()).sub, 'bob');

    const hour = ctl(['gentoken', '-c', file, '-u', 'x', '-t', '3600']);
    assert.match(hour.stdout, /with expiration TTL 1h0m0s:/);
    const secs = ctl(['gentoken', '-c', file, '-u', 'x', '--ttl', '90']);
    assert.match(secs.stdout, /with expiration TTL 1m30s:/);
    const never = ctl(['gentoken', '-c', file, '-u', 'x', '-t', '0']);
    assert.match(never.stdout, /^HMAC SHA-256 JWT for user "x" without expiration:\n/);
    assert.strictEqual(payloadOf(never.stdout.trim().split('\n')[1]).exp, undefined, 'no exp claim');
    const anon = ctl(['gentoken', '-c', file]);
    assert.match(anon.stdout, /^HMAC SHA-256 JWT for anonymous user with/);
    const anonCheck = ctl(['checktoken', '-c', file, anon.stdout.trim().split('\n')[1]]);
    assert.match(anonCheck.stdout, /^valid token for anonymous user/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('checktoken refuses expired, foreign, tampered and alg none tokens', async () => {
  const secret = 'refuse-secret';
  const { dir, file } = withConfig({ client: { token: { hmac_secret_key: secret } } });
  try {
    const check = (t) => ctl(['checktoken', '-c', file, t]);

    const expired = check(jwt({ sub: 'u', exp: now() - 10 }, { key: secret }));
    assert.strictEqual(expired.status, 1);
    assert.strictEqual(expired.stderr, 'token error: token expired\n');

    const floatExpired = check(jwt({ sub: 'u', exp: 1.5e9 }, { key: secret }));
    assert.strictEqual(floatExpired.status, 1);
    assert.match(floatExpired.stderr, /token expired/);

    const notYet = check(jwt({ sub: 'u', nbf: now() + 3600 }, { key: secret }));
    assert.strictEqual(notYet.status, 1);
    assert.match(notYet.stderr, /token expired/);

    const foreign = check(jwt({ sub: 'u' }, { key: 'another-secret' }));
    assert.strictEqual(foreign.status, 1);
    assert.match(foreign.stderr, /^token error: invalid token/);

    const good = jwt({ sub: 'u' }, { key: secret });
    assert.strictEqual(check(good).status, 0);
    const parts = good.split('.');
    const tampered = `${parts[0]}.${b64u({ sub: 'admin' })}.${parts[2]}`;
    assert.strictEqual(check(tampered).status, 1, 'payload swapped');

    for (const alg of ['none', 'NONE', 'nOnE']) {
      const r = check(jwt({ sub: 'u' }, { header: { alg, typ: 'JWT' } }));
      assert.strictEqual(r.status, 1, `alg ${alg}`);
      assert.match(r.stderr, /invalid token/);
    }
    assert.strictEqual(check(`${parts[0]}.${parts[1]}`).status, 1, 'two parts');
    assert.strictEqual(check(jwt({ sub: 'u', exp: 'soon' }, { key: secret })).status, 1, 'exp a string');
    assert.strictEqual(check(jwt({ sub: 'u', exp: String(now() + 60) }, { key: secret })).status, 0,
      'exp a numeric string, as Go json.Number reads it');

    // The real path: a short-lived token from gentoken, checked after it lapsed.
    // (Not checked while fresh: under valgrind or a busy make -j, one second
    // may pass before checktoken runs; the round trip above covers that.)
    const short = ctl(['gentoken', '-c', file, '-u', 'u', '-t', '1', '-q']).stdout.trim();
    assert.strictEqual(payloadOf(short).exp, payloadOf(short).iat + 1);
    await sleep(2100);
    const lapsed = check(short);
    assert.strictEqual(lapsed.status, 1);
    assert.match(lapsed.stderr, /token expired/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('checktoken accepts typ at+jwt, RS256 and ES256 tokens from node crypto', () => {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { dir, file } = withConfig({
    client: {
      token: {
        hmac_secret_key: 'typ-secret',
        rsa_public_key: rsa.publicKey.export({ type: 'spki', format: 'pem' }),
        ecdsa_public_key: ec.publicKey.export({ type: 'spki', format: 'pem' }),
      },
    },
  });
  try {
    const check = (t) => ctl(['checktoken', '-c', file, t]);
    let r = check(jwt({ sub: 'oauth' }, { key: 'typ-secret', header: { alg: 'HS256', typ: 'at+jwt' } }));
    assert.strictEqual(r.status, 0, r.stderr);
    assert.match(r.stdout, /user "oauth"/);
    r = check(jwt({ sub: 'r' }, { alg: 'RS256', key: rsa.privateKey }));
    assert.strictEqual(r.status, 0, r.stderr);
    r = check(jwt({ sub: 'r' }, { alg: 'RS256', key: rsa.privateKey, header: { alg: 'RS256', typ: 'at+jwt' } }));
    assert.strictEqual(r.status, 0, r.stderr);
    r = check(jwt({ sub: 'e' }, { alg: 'ES256', key: ec.privateKey }));
    assert.strictEqual(r.status, 0, r.stderr);
    assert.match(r.stdout, /user "e"/);
    // HS256 signed with the RSA public key text: the classic confusion.
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    r = check(jwt({ sub: 'evil' }, { key: pem }));
    assert.strictEqual(r.status, 1);
    r = check(jwt({ sub: 'evil' }, { key: pem, header: { alg: 'HS256', typ: 'at+jwt' } }));
    assert.strictEqual(r.status, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('gensubtoken then checksubtoken: round trip with the channel', () => {
  const { dir, file } = withConfig({ client: { token: { hmac_secret_key: 'sub-secret' } } });
  try {
    const g = ctl(['gensubtoken', '-c', file, '-u', 'bob', '-s', 'news', '-t', '3600']);
    assert.strictEqual(g.status, 0, g.stderr);
    const [line, token] = g.stdout.trimEnd().split('\n');
    assert.strictEqual(line, 'HMAC SHA-256 JWT for user "bob" and channel "news" with expiration TTL 1h0m0s:');
    assert.strictEqual(payloadOf(token).channel, 'news');

    const c = ctl(['checksubtoken', '-c', file, token]);
    assert.strictEqual(c.status, 0, c.stderr);
    assert.match(c.stdout, /^valid subscription token for user "bob" and channel "news" with expiration at /);

    const q = ctl(['gensubtoken', '-c', file, '--user', 'bob', '--channel', 'chat:1', '-q']);
    assert.strictEqual(payloadOf(q.stdout.trim()).channel, 'chat:1');

    // A subscription token is not a connection token, and the other way round.
    const asConn = ctl(['checktoken', '-c', file, token]);
    assert.strictEqual(asConn.status, 1);
    assert.match(asConn.stderr, /channel/);
    const conn = ctl(['gentoken', '-c', file, '-u', 'bob', '-q']).stdout.trim();
    const asSub = ctl(['checksubtoken', '-c', file, conn]);
    assert.strictEqual(asSub.status, 1);
    assert.match(asSub.stderr, /channel/);

    const noChannel = ctl(['gensubtoken', '-c', file, '-u', 'bob']);
    assert.strictEqual(noChannel.status, 2, 'channel is required');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('gentoken needs an HMAC secret and a config file; the environment can supply the secret', () => {
  const { dir, file } = withConfig({ client: { token: { rsa_public_key: '' } } });
  try {
    const none = ctl(['gentoken', '-c', file, '-u', 'a']);
    assert.strictEqual(none.status, 1);
    assert.match(none.stderr, /HMAC secret/);

    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    const missing = ctl(['gentoken', '-u', 'a'], { cwd: empty });
    assert.strictEqual(missing.status, 1);
    assert.match(missing.stderr, /config\.json/);

    const env = { ...process.env, ROTOR_CLIENT_TOKEN_HMAC_SECRET_KEY: 'from-env' };
    const g = ctl(['gentoken', '-c', file, '-u', 'envuser', '-q'], { env });
    assert.strictEqual(g.status, 0, g.stderr);
    const token = g.stdout.trim();
    assert.strictEqual(ctl(['checktoken', '-c', file, token], { env }).status, 0);
    const ours = jwt(payloadOf(token), { key: 'from-env' });
    assert.strictEqual(ctl(['checktoken', '-c', file, ours], { env }).status, 0, 'node-signed token');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('version, help, configdoc and command-line mistakes', () => {
  const v = ctl(['version']);
  assert.strictEqual(v.status, 0);
  assert.match(v.stdout, /^rotor v\d+\.\d+\.\d+\S*\n$/);

  const h = ctl(['--help']);
  assert.strictEqual(h.status, 0);
  for (const cmd of ['genconfig', 'checkconfig', 'gentoken', 'gensubtoken', 'checktoken', 'checksubtoken', 'version']) {
    assert.match(h.stdout, new RegExp(`\\b${cmd}\\b`));
  }
  const gh = ctl(['gentoken', '-h']);
  assert.strictEqual(gh.status, 0);
  assert.match(gh.stdout, /--ttl/);

  const doc = ctl(['configdoc']);
  assert.strictEqual(doc.status, 0);
  assert.match(doc.stdout, /^client\.token\.hmac_secret_key\t/m);

  const unknown = ctl(['frobnicate']);
  assert.strictEqual(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command/);
  assert.match(unknown.stderr, /usage/);
  assert.strictEqual(ctl([]).status, 2);
  assert.strictEqual(ctl(['gentoken', '--bogus']).status, 2);
  assert.strictEqual(ctl(['checktoken']).status, 2, 'token missing');
  assert.strictEqual(ctl(['gentoken', '-t', 'soon']).status, 2, 'bad TTL');
});

test('rotorctl stats reads the running daemon; reload and quit reach it through the pid file', async () => {
  const { Rotord, waitFor } = require('./lib/rotord');
  const WebSocket = require('ws');
  const d = await new Rotord({ client: { insecure: true } }, { workers: 2 }).start();
  const sockets = [];
  try {
    for (let i = 0; i < 3; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${d.port}/connection/websocket`);
      await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
      ws.send(JSON.stringify({ id: 1, connect: {} }) + '\n' + JSON.stringify({ id: 2, subscribe: { channel: 'news' } }));
      sockets.push(ws);
    }
    let st;
    await waitFor(() => {
      const r = run(ROTORCTL, ['stats', '-c', d.configPath, '--json']);
      assert.strictEqual(r.status, 0, r.stderr);
      st = JSON.parse(r.stdout);
      return st.clients === 3 && st.subscriptions === 3;
    }, 3000, 50, 'stats to show 3 clients');
    assert.strictEqual(st.master_pid, d.pid);
    assert.deepStrictEqual(st.workers.map((w) => w.pid).sort((a, b) => a - b), d.workers());
    assert.ok(st.bus.ring_bytes > 0 && st.bus.laps === 0);
    assert.strictEqual(st.history.streams_max, 65536, 'the history table, read-only');
    assert.ok(st.presence.entries_max > 0 && st.presence.clients === 0);
    const text = run(ROTORCTL, ['stats', '-c', d.configPath]);
    assert.match(text.stdout, new RegExp(`^master pid ${d.pid}, up \\d+s, 2 worker\\(s\\)`));
    let r = run(ROTORCTL, ['reload', '-c', d.configPath]);
    assert.strictEqual(r.status, 0, r.stderr);
    await waitFor(() => /reload: nothing changed/.test(d.log()), 3000, 20, 'the reload');
    r = run(ROTORCTL, ['quit', '-c', d.configPath]);
    assert.strictEqual(r.status, 0, r.stderr);
    const { code } = await d.waitExit(5000);
    assert.strictEqual(code, 0);
    r = run(ROTORCTL, ['stats', '-c', d.configPath]);
    assert.strictEqual(r.status, 1, 'no daemon, no stats');
    assert.match(r.stderr, /cannot attach/);
  } finally {
    for (const ws of sockets) ws.terminate();
    await d.stop();
  }
});
