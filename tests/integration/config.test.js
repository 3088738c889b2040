'use strict';
// The config as a user meets it through rotord: -t names every bad key in
// one pass, -T prints the effective config with defaults, environment and
// command line override the file, and a running daemon obeys them.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { Rotord, ROTORD, ROTORCTL, run, request, mkTmp } = require('./lib/rotord');

const configs = path.join(process.env.ROTOR_SRCDIR || path.resolve(__dirname, '../..'), 'tests/configs');

function withFile(obj, fn) {
  const dir = mkTmp();
  const p = path.join(dir, 'config.json');
  fs.writeFileSync(p, typeof obj === 'string' ? obj : JSON.stringify(obj));
  try { return fn(p, dir); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
}

test('rotord -t reports every problem of a bad config in one pass, each naming its key', () => {
  const r = run(ROTORD, ['-t', '-c', path.join(configs, 'bad-types.json')]);
  assert.strictEqual(r.status, 1);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('rotord: error: '));
  for (const key of ['http_server.port', 'http_server.max_header_count', 'log.level',
    'client.ping_interval', 'client.channel_limit', 'client.allowed_origins', 'client.insecure',
    'channel.namespaces[chat].history_size', 'http_api.key', 'websocket']) {
    assert.ok(errors.some((l) => l.startsWith(`rotord: error: ${key}:`)), `no error names ${key}:\n${r.stderr}`);
  }
  assert.ok(errors.length >= 10);
  assert.doesNotMatch(r.stdout, /valid/);
});

test('rotord -t accepts a full Centrifugo v6 config and warns on unknown and unsupported keys', () => {
  let r = run(ROTORD, ['-t', '-c', path.join(configs, 'full.json')]);
  assert.strictEqual(r.status, 0, r.stderr);
  assert.match(r.stdout, /is valid/);
  r = run(ROTORD, ['-t', '-c', path.join(configs, 'unknown-ignored.json')]);
  assert.strictEqual(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: totally_unknown: unknown key/);
  assert.match(r.stderr, /warning: grpc_api\.enabled: not supported by rotor yet; ignored/);
});

test('rotord -t: malformed JSON names the file, line and column', () => {
  withFile('{\n  "workers": 2,\n  "log": {"level": "info",}\n}\n', (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 1);
    assert.ok(r.stderr.includes(p), r.stderr);
    assert.match(r.stderr, /config\.json:3:\d+: invalid JSON/);
  });
});

test('rotord -t: a missing file given with -c is an error', () => {
  const r = run(ROTORD, ['-t', '-c', '/nonexistent/rotor.json']);
  assert.strictEqual(r.status, 1);
  assert.match(r.stderr, /\/nonexistent\/rotor\.json/);
});

// A user who asks for ACME certificates, TLS to Redis, a gRPC or a subscribe
// stream proxy and got plain HTTP, no TLS or no check at all would be worse
// off than told (HTTP proxies work: proxy.test.js):
// rotor refuses to check or start, naming each key, and serves nothing
// meanwhile. (TLS with certificate files: tls.test.js.)
test('TLS, engine and proxy keys rotor does not implement stop -t and the start, each named', () => {
  const conf = {
    http_server: { tls_autocert: { enabled: true, host_whitelist: ['example.com'] } },
    engine: { type: 'redis', redis: { cluster_address: ['127.0.0.1:7000'], tls: { enabled: true } } },
    client: { proxy: { connect: { enabled: true, endpoint: 'grpc://127.0.0.1:9000' } } },
    channel: { namespaces: [{ name: 'chat', subscribe_stream_proxy_enabled: true }] },
  };
  withFile(conf, (p) => {
    for (const args of [['-t', '-c', p], ['-c', p]]) {
      const r = run(ROTORD, args);
      assert.strictEqual(r.status, 1, `rotord ${args.join(' ')}: ${r.stderr}`);
      for (const key of ['http_server.tls_autocert.enabled',
        'engine.redis.tls.enabled', 'client.proxy.connect.endpoint',
        'channel.namespaces[chat].subscribe_stream_proxy_enabled']) {
        assert.match(r.stderr, new RegExp(`(error|config): ${key.replace(/[.[\]]/g, '\\$&')}: .*not supported by rotor.*; refused`),
          `${key} named: ${r.stderr}`);
      }
      assert.doesNotMatch(r.stdout, /valid/);
    }
  });
});

test('rotord -t: cluster_address is accepted, host names too (checked, not looked up); a malformed node is named', () => {
  withFile({ engine: { type: 'redis', redis: { cluster_address: ['127.0.0.1:7000,127.0.0.1:7001'] } } }, (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 0, r.stderr);
  });
  withFile({ engine: { type: 'redis', redis: { address: ['redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001'] } } },
    (p) => assert.strictEqual(run(ROTORD, ['-t', '-c', p]).status, 0));
  withFile({ engine: { type: 'redis', redis: { cluster_address: ['127.0.0.1:7000,node.nonexistent.invalid:7001'] } } },
    (p) => {
      const r = run(ROTORD, ['-t', '-c', p]);
      assert.strictEqual(r.status, 0, r.stderr);
    });
  withFile({ engine: { type: 'redis', redis: { address: ['redis:6379'] } } }, (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 0, `docker-compose's redis:6379: ${r.stderr}`);
  });
  withFile({ engine: { type: 'redis', redis: { cluster_address: ['127.0.0.1:7000,node!example:7001'] } } }, (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 1, r.stderr);
    assert.match(r.stderr, /engine\.redis\.cluster_address\[0\]: host "node!example" is neither an IP address nor a host name/);
  });
  withFile({ engine: { type: 'redis', redis: { address: ['rediss+cluster://127.0.0.1:7000'] } } }, (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 1, r.stderr);
    assert.match(r.stderr, /engine\.redis\.address\[0\]: .*TLS/);
  });
});

test('rotord -t: sentinel_address without sentinel_master_name is refused, naming the key', () => {
  const conf = { engine: { type: 'redis', redis: { sentinel_address: ['127.0.0.1:26379,127.0.0.1:26380'] } } };
  withFile(conf, (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 1, r.stderr);
    assert.match(r.stderr, /engine\.redis\.sentinel_master_name: required with engine\.redis\.sentinel_address/);
    assert.doesNotMatch(r.stdout, /valid/);
  });
  withFile({ engine: { type: 'redis', redis: { ...conf.engine.redis, sentinel_master_name: 'm1' } } }, (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 0, r.stderr);
  });
});

test('rotord -t: pong_timeout must stay below ping_interval, and the error names both keys', () => {
  withFile({ client: { ping_interval: '5s', pong_timeout: '10s' } }, (p) => {
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 1);
    assert.match(r.stderr, /client\.pong_timeout/);
    assert.match(r.stderr, /client\.ping_interval/);
  });
});

test('rotord -T prints the effective config: defaults, file, environment and -p, in that order of strength', () => {
  withFile({ http_server: { port: 9100 }, client: { channel_limit: 7 }, log: { level: 'debug' } }, (p) => {
    const r = run(ROTORD, ['-T', '-c', p, '-p', '9200'], {
      env: { ...process.env, ROTOR_CLIENT_CHANNEL_LIMIT: '9', CENTRIFUGO_LOG_LEVEL: 'error', ROTOR_LOG_LEVEL: 'warn' },
    });
    assert.strictEqual(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout);
    assert.strictEqual(c.http_server.port, 9200, '-p beats the file');
    assert.strictEqual(c.client.channel_limit, 9, 'env beats the file');
    assert.strictEqual(c.log.level, 'warn', 'ROTOR_ beats CENTRIFUGO_');
    assert.strictEqual(c.client.ping_interval, '25s', 'defaults are present');
    assert.strictEqual(c.client.queue_max_size, 1048576);
    assert.strictEqual(c.shutdown.timeout, '30s');
    assert.ok(Number.isInteger(c.workers) && c.workers >= 1, 'workers resolved to the CPU count');
  });
});

test('a bad environment value is an error naming the variable and the key', () => {
  const r = run(ROTORD, ['-t', '-c', path.join(configs, 'full.json')],
    { env: { ...process.env, ROTOR_HTTP_SERVER_PORT: 'eighty' } });
  assert.strictEqual(r.status, 1);
  assert.match(r.stderr, /ROTOR_HTTP_SERVER_PORT/);
  assert.match(r.stderr, /http_server\.port/);
});

test('rotord refuses to start on an invalid config and says why', () => {
  withFile({ workers: 300 }, (p) => {
    const r = run(ROTORD, ['-c', p]);
    assert.strictEqual(r.status, 1);
    assert.match(r.stderr, /workers: must be an integer from 0 to 256/);
  });
});

test('ROTOR_WORKERS overrides the file\'s worker count in a running daemon', async () => {
  // The file says 2 workers; the environment says 3 and wins.
  const d = new Rotord({}, { workers: 2, expectWorkers: 3, env: { ROTOR_WORKERS: '3' } });
  try {
    await d.start();
    assert.strictEqual(d.fullConfig.workers, 2);
    assert.strictEqual(d.workers().length, 3);
    assert.strictEqual((await request(d.port, { path: '/health' })).status, 200);
  } finally {
    await d.stop();
  }
});

test('rotorctl genconfig output is a valid rotord config', () => {
  const dir = mkTmp();
  try {
    const p = path.join(dir, 'config.json');
    const g = run(ROTORCTL, ['genconfig', '-c', p]);
    assert.strictEqual(g.status, 0, g.stderr);
    const r = run(ROTORD, ['-t', '-c', p]);
    assert.strictEqual(r.status, 0, r.stderr);
    assert.strictEqual(r.stderr, '', 'no warnings for a generated config');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
