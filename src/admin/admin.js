// rotor's admin web UI: plain JavaScript, no framework, no network access
// beyond the server that serves it. Every URL is relative ("admin/api"), so
// the UI works under any admin.handler_prefix. The session token lives in
// sessionStorage (gone when the tab closes) and is sent as
// "Authorization: token <t>". Server data is put in the page with
// textContent only, never as HTML.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const PAGES = ['login', 'status', 'channels', 'presence', 'history', 'actions'];
  const TEMPLATES = {
    publish: { channel: 'news', data: { text: 'hello' } },
    broadcast: { channels: ['news', 'chat'], data: { text: 'hello' } },
    subscribe: { user: '42', channel: 'news' },
    unsubscribe: { user: '42', channel: 'news' },
    disconnect: { user: '42' },
    refresh: { user: '42', expired: false },
    presence: { channel: 'news' },
    presence_stats: { channel: 'news' },
    history: { channel: 'news', limit: 10 },
    history_remove: { channel: 'news' },
    channels: { pattern: '*' },
    info: {},
    batch: { commands: [{ publish: { channel: 'news', data: { n: 1 } } }, { info: {} }] },
  };
  let insecure = false;
  let statusTimer = null;

  // ---- session and transport ---------------------------------------------

  function token() { return sessionStorage.getItem('rotor-admin-token'); }
  function authed() { return insecure || !!token(); }

  class Unauthorized extends Error {}

  // POSTs BODY (text) to admin/api; resolves the replies, one per line.
  async function post(body) {
    const headers = { 'Content-Type': 'application/json' };
    if (!insecure) headers.Authorization = `token ${token()}`;
    const r = await fetch('admin/api', { method: 'POST', headers, body, cache: 'no-store' });
    if (r.status === 401) {
      logout();
      throw new Unauthorized('session expired or invalid: log in again');
    }
    const text = await r.text();
    if (!r.ok) throw new Error(`HTTP ${r.status}: ${text.trim()}`);
    return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
  }

  // One method call: its result, or throws its API error.
  async function call(method, params) {
    const [reply] = await post(JSON.stringify({ method, params }));
    if (!reply) throw new Error('empty answer');
    if (reply.error) throw new Error(`error ${reply.error.code}: ${reply.error.message}`);
    return reply.result || {};
  }

  // ---- pages --------------------------------------------------------------

  function show(page) {
    if (!authed()) page = 'login';
    else if (page === 'login' || !PAGES.includes(page)) page = 'status';
    for (const p of PAGES) $(`page-${p}`).hidden = p !== page;
    $('nav').hidden = page === 'login';
    for (const a of $('nav').querySelectorAll('a')) {
      a.classList.toggle('current', a.getAttribute('href') === `#${page}`);
    }
    clearInterval(statusTimer);
    statusTimer = null;
    if (page === 'status') {
      refreshStatus();
      statusTimer = setInterval(() => { if (!document.hidden) refreshStatus(); }, 5000);
    }
    if (page === 'login') $('login-password').focus();
  }

  function route() { show(location.hash.replace(/^#/, '').split('?')[0]); }

  function go(page, channel) {
    if (channel !== undefined) $(`${page}-channel`).value = channel;
    if (location.hash === `#${page}`) route();
    else location.hash = `#${page}`;
    if (channel !== undefined) $(`${page}-form`).requestSubmit();
  }

  function logout() {
    sessionStorage.removeItem('rotor-admin-token');
    show('login');
  }

  // Empties TBODY and fills it with ROWS, each an array of cell values
  // (strings, numbers, or DOM nodes).
  function fill(tbody, rows) {
    tbody.replaceChildren();
    for (const row of rows) {
      const tr = document.createElement('tr');
      for (const v of row) {
        const td = document.createElement('td');
        if (v instanceof Node) td.append(v);
        else td.textContent = v === undefined || v === null ? '' : String(v);
        tr.append(td);
      }
      tbody.append(tr);
    }
  }

  function json(v) { return v === undefined ? '' : JSON.stringify(v); }

  function duration(s) {
    if (!s) return '0s';
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return `${d ? `${d}d ` : ''}${d || h ? `${h}h ` : ''}${m}m ${s % 60}s`;
  }

  // Runs FN, showing its error (if any) in element ERR.
  async function guarded(err, fn) {
    $(err).textContent = '';
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof Unauthorized) || err === 'login-error') $(err).textContent = e.message;
    }
  }

  // ---- login --------------------------------------------------------------

  async function login(ev) {
    ev.preventDefault();
    await guarded('login-error', async () => {
      const r = await fetch('admin/auth', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ password: $('login-password').value }).toString(),
        cache: 'no-store',
      });
      if (r.status === 429) {
        throw new Error(`Too many wrong passwords: try again in ${r.headers.get('Retry-After') || 'a few'} s.`);
      }
      if (!r.ok) throw new Error(r.status === 400 ? 'Wrong password.' : `HTTP ${r.status}`);
      const data = await r.json();
      sessionStorage.setItem('rotor-admin-token', data.token);
      $('login-password').value = '';
      location.hash = '#status';
      route();
    });
  }

  // ---- status -------------------------------------------------------------

  async function refreshStatus() {
    await guarded('status-error', async () => {
      const res = await call('info', {});
      const nodes = (res.nodes || []).slice().sort((a, b) => String(a.name).localeCompare(b.name));
      fill($('status-table').tBodies[0], nodes.map((n) => [n.name, n.version, duration(n.uptime || 0),
        n.num_clients || 0, n.num_users || 0, n.num_subs || 0, n.num_channels || 0, n.uid]));
      $('status-updated').textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    });
  }

  // ---- channels, presence, history -------------------------------------------

  function linkButton(text, fn) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'small';
    b.textContent = text;
    b.addEventListener('click', fn);
    return b;
  }

  async function listChannels(ev) {
    ev.preventDefault();
    await guarded('channels-error', async () => {
      const pattern = $('channels-pattern').value.trim();
      fill($('channels-table').tBodies[0], []);
      const res = await call('channels', pattern ? { pattern } : {});
      const names = Object.keys(res.channels || {}).sort();
      fill($('channels-table').tBodies[0], names.map((ch) => {
        const span = document.createElement('span');
        span.append(linkButton('presence', () => go('presence', ch)), ' ',
          linkButton('history', () => go('history', ch)));
        return [ch, res.channels[ch].num_clients || 0, span];
      }));
      if (names.length === 0) $('channels-error').textContent = 'No active channel matches.';
    });
  }

  async function showPresence(ev) {
    ev.preventDefault();
    const channel = $('presence-channel').value.trim();
    await guarded('presence-error', async () => {
      $('presence-stats').textContent = '';
      fill($('presence-table').tBodies[0], []);
      const stats = await call('presence_stats', { channel });
      $('presence-stats').textContent = `${stats.num_clients || 0} clients, ${stats.num_users || 0} users`;
      const res = await call('presence', { channel });
      const rows = Object.values(res.presence || {}).map((p) => [p.client, p.user, json(p.conn_info),
        json(p.chan_info)]);
      fill($('presence-table').tBodies[0], rows);
    });
  }

  async function showHistory(ev) {
    ev.preventDefault();
    const channel = $('history-channel').value.trim();
    await guarded('history-error', async () => {
      fill($('history-table').tBodies[0], []);
      const limit = parseInt($('history-limit').value, 10);
      const res = await call('history', { channel, limit: Number.isNaN(limit) ? 20 : limit,
        reverse: $('history-reverse').checked });
      $('history-position').textContent = `Stream top: offset ${res.offset || 0}, epoch "${res.epoch || ''}"`;
      fill($('history-table').tBodies[0], (res.publications || []).map((p) => [p.offset, json(p.data),
        p.info ? p.info.client : '', p.info ? p.info.user : '', json(p.tags)]));
    });
  }

  // ---- actions --------------------------------------------------------------

  function pickTemplate() {
    $('action-params').value = JSON.stringify(TEMPLATES[$('action-method').value], null, 2);
  }

  async function sendAction(ev) {
    ev.preventDefault();
    const method = $('action-method').value;
    const out = $('action-response');
    out.classList.remove('error');
    let params;
    try {
      params = JSON.parse($('action-params').value || '{}');
    } catch (e) {
      out.textContent = `Parameters are not valid JSON: ${e.message}`;
      out.classList.add('error');
      return;
    }
    let body;
    if (method === 'batch') {
      // The legacy API has no batch method: each command goes as one value
      // of the command stream, and each gets its reply.
      const cmds = Array.isArray(params.commands) ? params.commands : [];
      body = cmds.map((c) => {
        const [name] = Object.keys(c);
        return JSON.stringify({ method: name, params: c[name] });
      }).join('\n');
    } else {
      body = JSON.stringify({ method, params });
    }
    $('action-request').textContent = body;
    out.textContent = '…';
    try {
      const replies = await post(body);
      out.textContent = JSON.stringify(method === 'batch' ? replies : replies[0], null, 2);
    } catch (e) {
      out.textContent = e.message;
      out.classList.add('error');
    }
  }

  // ---- start ----------------------------------------------------------------

  async function start() {
    for (const m of Object.keys(TEMPLATES)) {
      const o = document.createElement('option');
      o.value = o.textContent = m;
      $('action-method').append(o);
    }
    pickTemplate();
    $('action-method').addEventListener('change', pickTemplate);
    $('action-form').addEventListener('submit', sendAction);
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('channels-form').addEventListener('submit', listChannels);
    $('presence-form').addEventListener('submit', showPresence);
    $('history-form').addEventListener('submit', showHistory);
    window.addEventListener('hashchange', route);
    try {
      const r = await fetch('admin/settings', { cache: 'no-store' });
      insecure = (await r.json()).insecure === true;
    } catch (e) {
      $('login-error').textContent = `Cannot reach the server: ${e.message}`;
    }
    $('insecure-badge').hidden = !insecure;
    $('logout').hidden = insecure;
    route();
  }

  start();
}());
