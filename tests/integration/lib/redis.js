'use strict';
// A real redis-server for the Redis engine's integration tests: started on
// a free loopback port in a temporary directory, without persistence, as a
// child of the test, and stopped by its pid; redis-cli for looking at what
// rotor left in it.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const { freePort, waitFor, mkTmp } = require('./rotord');

function available() {
  return spawnSync('sh', ['-c', 'command -v redis-server && command -v redis-cli']).status === 0;
}

class Redis {
  constructor(opts = {}) {
    this.opts = opts;
    this.dir = mkTmp('rotor-redis-');
  }

  async start(port) {
    this.port = port || this.port || await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--loglevel', 'warning', ...(this.opts.args || [])];
    this.proc = spawn('redis-server', args, { stdio: 'ignore' });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
    await waitFor(() => this.cli('PING').trim() === 'PONG', 5000, 20, `redis-server on ${this.port}`);
    return this;
  }

  // redis-cli with ARGS; its output as text (raw mode: no quoting).
  cli(...args) {
    const auth = this.opts.password ? ['-a', this.opts.password, '--no-auth-warning'] : [];
    const r = spawnSync('redis-cli', ['-p', String(this.port), ...auth, '--raw', ...args], { encoding: 'latin1' });
    return r.stdout || '';
  }

  // The same with binary input on stdin as the last argument (-x).
  cliStdin(input, ...args) {
    const auth = this.opts.password ? ['-a', this.opts.password, '--no-auth-warning'] : [];
    const r = spawnSync('redis-cli', ['-p', String(this.port), ...auth, '-x', ...args], { input });
    return (r.stdout || '').toString();
  }

  async kill(sig = 'SIGKILL') {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill(sig);
      await this.exited;
    }
  }

  pause(on) { this.proc.kill(on ? 'SIGSTOP' : 'SIGCONT'); }

  async stop() {
    try { this.proc.kill('SIGCONT'); } catch (_) { /* gone */ }
    await this.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Redis, available };
