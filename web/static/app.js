// idflow web UI: plain ES modules, no build step, no inline script (the CSP
// forbids it). Every element is built with textContent, never innerHTML, so
// user data can never become markup.

const state = { me: null, csrf: '' };

// h builds an element: h('a', {href: '#/x', class: 'y'}, 'text', child…).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class HTTPError extends Error {
  constructor(status, detail) { super(detail || ('HTTP ' + status)); this.status = status; }
}

// api calls the JSON API with the session cookie and, on writes, the CSRF token.
async function api(method, path, body, isForm) {
  const opts = { method, credentials: 'same-origin', headers: { 'Accept': 'application/json' } };
  if (method !== 'GET') opts.headers['X-CSRF-Token'] = state.csrf;
  if (body !== undefined) {
    if (isForm) opts.body = body;
    else { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  }
  const res = await fetch(path, opts);
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new HTTPError(res.status, data && data.detail);
  return data;
}

const main = () => document.getElementById('main');

function render(...nodes) {
  const m = main();
  m.replaceChildren(...nodes.flat(Infinity).filter(n => n !== null && n !== undefined && n !== false));
  m.focus({ preventScroll: true });
}

function toast(msg) {
  const t = document.getElementById('toast');
  t.textContent = msg; t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function loading() { render(h('p', { class: 'loading', role: 'status' }, 'Loading…')); }

function signInAgain() {
  const back = encodeURIComponent('/' + location.hash);
  return h('div', { class: 'card', id: 'expired' },
    h('h1', {}, 'Session expired — sign in again'),
    h('p', {}, 'Your session has ended. Nothing you saved was lost.'),
    h('a', { class: 'button', href: '/auth/login?return_to=' + back }, 'Sign in'));
}

// failure renders an error the way a user needs to read it.
function failure(err) {
  if (err instanceof HTTPError && err.status === 401) return signInAgain();
  if (err instanceof HTTPError && err.status === 404) {
    return h('div', { class: 'card', id: 'not-found' }, h('h1', {}, 'Not found'),
      h('p', {}, 'There is nothing here, or it is not yours.'), h('a', { href: '#/' }, 'Back to start'));
  }
  return h('p', { class: 'error', role: 'alert' }, err.message || String(err));
}

function when(t) { return t ? new Date(t).toLocaleString() : ''; }

async function guarded(fn) {
  loading();
  try { await fn(); } catch (err) { render(failure(err)); }
}

// submitting disables a form's buttons while work is under way.
function onSubmit(fn) {
  return async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const buttons = form.querySelectorAll('button');
    buttons.forEach(b => { b.disabled = true; });
    try { await fn(form); } catch (err) {
      if (err instanceof HTTPError && err.status === 401) render(signInAgain());
      else toast(err.message);
    } finally { buttons.forEach(b => { b.disabled = false; }); }
  };
}

// Views.

async function viewMe() {
  const me = state.me;
  const rows = [['User', me.user_id], ['Tenant', me.tenant_id], ['Email', me.email], ['Name', me.name],
    ['Roles', (me.roles || []).join(', ') || '—'], ['Groups', (me.groups || []).join(', ') || '—'],
    ['Signed in with', me.auth_method], ['Token expires', when(me.expires_at)], ['Issuer', me.issuer]];
  render(h('h1', {}, 'Who you are'),
    h('section', { class: 'card' }, h('dl', { class: 'kv', id: 'me' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { 'data-field': k }, v || '—')]))),
    me.groups_overage ? h('p', { class: 'error' }, 'Your token had too many groups to list (group overage); group-gated features stay closed.') : null);
}

function listOrEmpty(items, empty, item) {
  if (!items.length) return h('p', { class: 'empty' }, empty);
  return h('ul', { class: 'list' }, items.map(item));
}

async function viewChats() {
  const { items } = await api('GET', '/api/v1/sessions');
  render(h('h1', {}, 'Chats'),
    h('form', { class: 'card row', id: 'new-chat', onsubmit: onSubmit(async (f) => {
      const s = await api('POST', '/api/v1/sessions', { title: f.title.value });
      location.hash = '#/chats/' + s.id;
    }) }, h('label', {}, 'Title', h('input', { name: 'title', placeholder: 'New chat', maxlength: 200 })), h('button', { type: 'submit' }, 'Start chat')),
    h('section', { class: 'card' }, listOrEmpty(items, 'No chats yet.', s =>
      h('li', {}, h('a', { href: '#/chats/' + s.id }, s.title), h('span', { class: 'muted' }, when(s.updated_at))))));
}

async function viewChat(id) {
  const s = await api('GET', '/api/v1/sessions/' + encodeURIComponent(id));
  const { items } = await api('GET', '/api/v1/sessions/' + encodeURIComponent(id) + '/messages?limit=200');
  const log = h('div', { class: 'chat', id: 'messages', 'aria-live': 'polite' });
  const add = (m) => log.append(h('div', { class: 'msg ' + m.role }, m.content));
  items.forEach(add);
  render(h('h1', {}, s.title),
    items.length ? null : h('p', { class: 'empty', id: 'no-messages' }, 'No messages yet — say something.'),
    log,
    h('form', { class: 'card row', id: 'send', onsubmit: onSubmit(async (f) => {
      const out = await api('POST', '/api/v1/sessions/' + encodeURIComponent(id) + '/messages', { content: f.content.value });
      document.getElementById('no-messages')?.remove();
      add(out.message); add(out.reply);
      f.content.value = ''; f.content.focus();
    }) }, h('label', {}, 'Message', h('input', { name: 'content', required: true, autocomplete: 'off' })), h('button', { type: 'submit' }, 'Send')),
    h('button', { class: 'danger', id: 'delete-chat', onclick: async () => {
      if (!confirm('Delete this chat?')) return;
      try { await api('DELETE', '/api/v1/sessions/' + encodeURIComponent(id)); location.hash = '#/chats'; } catch (e) { toast(e.message); }
    } }, 'Delete chat'));
}

async function viewAgents() {
  const [{ items }, llms] = await Promise.all([api('GET', '/api/v1/agents'), api('GET', '/api/v1/llms')]);
  render(h('h1', {}, 'Agents'),
    h('form', { class: 'card stack', id: 'new-agent', onsubmit: onSubmit(async (f) => {
      await api('POST', '/api/v1/agents', { name: f.name.value, instructions: f.instructions.value, model: f.model.value,
        tools: f.tools.value.split(',').map(s => s.trim()).filter(Boolean) });
      route();
    }) },
      h('label', {}, 'Name', h('input', { name: 'name', required: true, maxlength: 200 })),
      h('label', {}, 'Instructions', h('textarea', { name: 'instructions' })),
      h('div', { class: 'row' },
        h('label', {}, 'Model', h('select', { name: 'model' }, llms.items.map(m => h('option', { value: m.id }, m.name)))),
        h('label', {}, 'Tools (comma-separated)', h('input', { name: 'tools', placeholder: 'whoami, search_memory' })),
        h('button', { type: 'submit' }, 'Create agent'))),
    h('section', { class: 'card' }, listOrEmpty(items, 'No agents yet.', a =>
      h('li', {}, h('span', {}, h('strong', {}, a.name), ' ', h('span', { class: 'badge' }, a.model)),
        h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/api/v1/agents/' + a.id); route(); } catch (e) { toast(e.message); } } }, 'Delete')))));
}

const sampleDefinition = { steps: [
  { id: 'recall', type: 'memory_search', query: 'project' },
  { id: 'think', type: 'wait', ms: 500 },
  { id: 'answer', type: 'prompt', prompt: 'Summarise: {{previous}}' },
  { id: 'me', type: 'tool', tool: 'whoami' } ] };

async function viewWorkflows() {
  const { items } = await api('GET', '/api/v1/workflows');
  render(h('h1', {}, 'Workflows'),
    h('form', { class: 'card stack', id: 'new-workflow', onsubmit: onSubmit(async (f) => {
      let def;
      try { def = JSON.parse(f.definition.value); } catch { throw new Error('The definition is not valid JSON.'); }
      const wf = await api('POST', '/api/v1/workflows', { name: f.name.value, definition: def });
      location.hash = '#/workflows/' + wf.id;
    }) },
      h('label', {}, 'Name', h('input', { name: 'name', required: true })),
      h('label', {}, 'Definition (JSON)', h('textarea', { name: 'definition' }, JSON.stringify(sampleDefinition, null, 2))),
      h('div', {}, h('button', { type: 'submit' }, 'Create workflow'))),
    h('section', { class: 'card' }, listOrEmpty(items, 'No workflows yet.', w =>
      h('li', {}, h('a', { href: '#/workflows/' + w.id }, w.name), h('span', { class: 'badge' }, w.status + (w.version ? ' v' + w.version : ''))))));
}

async function viewWorkflow(id) {
  const w = await api('GET', '/api/v1/workflows/' + encodeURIComponent(id));
  render(h('h1', {}, w.name, ' ', h('span', { class: 'badge' }, w.status + (w.version ? ' v' + w.version : ''))),
    h('form', { class: 'card stack', id: 'edit-workflow', onsubmit: onSubmit(async (f) => {
      let def;
      try { def = JSON.parse(f.definition.value); } catch { throw new Error('The definition is not valid JSON.'); }
      await api('PUT', '/api/v1/workflows/' + w.id, { name: f.name.value, definition: def });
      toast('Saved.');
    }) },
      h('label', {}, 'Name', h('input', { name: 'name', value: w.name, required: true })),
      h('label', {}, 'Definition (JSON)', h('textarea', { name: 'definition', rows: 14 }, JSON.stringify(w.definition, null, 2))),
      h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Save draft'),
        h('button', { type: 'button', class: 'secondary', id: 'publish', onclick: async () => {
          try { const p = await api('POST', '/api/v1/workflows/' + w.id + '/publish'); toast('Published v' + p.version); } catch (e) { toast(e.message); }
        } }, 'Publish'))),
    h('form', { class: 'card row', id: 'start-run', onsubmit: onSubmit(async (f) => {
      let input = null;
      if (f.input.value.trim()) { try { input = JSON.parse(f.input.value); } catch { throw new Error('The input is not valid JSON.'); } }
      const run = await api('POST', '/api/v1/workflows/' + w.id + '/runs', { input });
      location.hash = '#/runs/' + run.id;
    }) }, h('label', {}, 'Run input (JSON, optional)', h('input', { name: 'input', placeholder: '{"topic": "q3"}' })), h('button', { type: 'submit' }, 'Start run')),
    h('button', { class: 'danger', onclick: async () => {
      if (!confirm('Delete this workflow?')) return;
      try { await api('DELETE', '/api/v1/workflows/' + w.id); location.hash = '#/workflows'; } catch (e) { toast(e.message); }
    } }, 'Delete workflow'));
}

async function viewRuns() {
  const { items } = await api('GET', '/api/v1/runs');
  render(h('h1', {}, 'Runs'), h('section', { class: 'card' }, listOrEmpty(items, 'No runs yet. Start one from a workflow.', r =>
    h('li', {}, h('a', { href: '#/runs/' + r.id }, r.id), h('span', { class: 'badge ' + r.status }, r.status), h('span', { class: 'muted' }, when(r.created_at))))));
}

let socket = null;
function closeSocket() { if (socket) { socket.onclose = null; socket.close(1000); socket = null; } }

async function viewRun(id) {
  const run = await api('GET', '/api/v1/runs/' + encodeURIComponent(id));
  const status = h('span', { class: 'badge ' + run.status, id: 'run-status' }, run.status);
  const list = h('ol', { class: 'events', id: 'events', 'aria-live': 'polite' });
  const note = h('p', { class: 'muted', id: 'stream-state', role: 'status' }, 'Connecting…');
  render(h('h1', {}, 'Run ', h('code', {}, run.id), ' ', status),
    h('p', {}, h('a', { href: '#/workflows/' + run.workflow_id }, 'Workflow'), ' · started ', when(run.created_at)),
    h('section', { class: 'card' }, h('h2', {}, 'Events'), note, list),
    ['succeeded', 'failed', 'cancelled'].includes(run.status) ? null : h('button', { class: 'danger', id: 'cancel-run', onclick: async () => {
      try { await api('POST', '/api/v1/runs/' + run.id + '/cancel'); } catch (e) { toast(e.message); }
    } }, 'Cancel run'));
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  socket = new WebSocket(proto + '//' + location.host + '/ws/execution/' + encodeURIComponent(id), ['idflow.v1']);
  socket.onopen = () => { note.textContent = 'Live'; };
  socket.onmessage = (m) => {
    const e = JSON.parse(m.data);
    list.append(h('li', { 'data-type': e.type, 'data-user': e.user_id }, '#' + e.seq + ' ' + e.type + (e.step_id ? ' [' + e.step_id + ']' : '') +
      (e.data ? ' ' + JSON.stringify(e.data) : '')));
    const ended = { 'run.completed': 'succeeded', 'run.failed': 'failed', 'run.cancelled': 'cancelled' }[e.type];
    if (ended) {
      status.textContent = ended; status.className = 'badge ' + ended;
      document.getElementById('cancel-run')?.remove();
    }
  };
  socket.onclose = (ev) => {
    note.textContent = ev.code === 1000 ? 'Run ended.' : ev.code === 4401 ? 'Session expired — sign in again.' : 'Disconnected (' + ev.code + ').';
  };
}

async function viewDocuments() {
  const { items } = await api('GET', '/api/v1/documents');
  render(h('h1', {}, 'Documents'),
    h('form', { class: 'card row', id: 'upload', onsubmit: onSubmit(async (f) => {
      if (!f.file.files.length) throw new Error('Choose a text file first.');
      const fd = new FormData(); fd.append('file', f.file.files[0]);
      await api('POST', '/api/v1/etl/ingest', fd, true);
      route();
    }) }, h('label', {}, 'Text file', h('input', { type: 'file', name: 'file', accept: '.txt,.md,.csv,.json,text/*' })), h('button', { type: 'submit' }, 'Upload')),
    h('section', { class: 'card' }, listOrEmpty(items, 'No documents yet.', d =>
      h('li', {}, h('span', {}, h('a', { href: '/api/v1/documents/' + d.id + '/content' }, d.filename), ' ',
        h('span', { class: 'muted' }, d.size + ' bytes · ' + d.fact_count + ' facts')),
        h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/api/v1/documents/' + d.id); route(); } catch (e) { toast(e.message); } } }, 'Delete')))));
}

async function viewMemory() {
  const { items } = await api('GET', '/api/v1/facts?limit=50');
  const results = h('div', { id: 'results' });
  render(h('h1', {}, 'Memory'),
    h('form', { class: 'card row', id: 'search', onsubmit: onSubmit(async (f) => {
      const out = await api('POST', '/api/v1/memory/search', { query: f.query.value, limit: 10 });
      results.replaceChildren(h('section', { class: 'card' }, h('h2', {}, 'Results'), listOrEmpty(out.items, 'Nothing matched.', r =>
        h('li', {}, h('span', {}, r.fact.content), h('span', { class: 'badge' }, r.score.toFixed(2))))));
    }) }, h('label', {}, 'Search your memory', h('input', { name: 'query', required: true })), h('button', { type: 'submit' }, 'Search')),
    results,
    h('form', { class: 'card row', id: 'add-fact', onsubmit: onSubmit(async (f) => {
      await api('POST', '/api/v1/facts', { content: f.content.value }); route();
    }) }, h('label', {}, 'Remember a fact', h('input', { name: 'content', required: true })), h('button', { type: 'submit' }, 'Add')),
    h('section', { class: 'card' }, h('h2', {}, 'Your facts'), listOrEmpty(items, 'No facts yet.', f =>
      h('li', {}, h('span', {}, f.content), h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/api/v1/facts/' + f.id); route(); } catch (e) { toast(e.message); } } }, 'Forget')))));
}

async function viewConnections() {
  let items = [];
  try { items = (await api('GET', '/api/v1/connections')).items || []; } catch (e) { if (!(e instanceof HTTPError && e.status === 404)) throw e; }
  render(h('h1', {}, 'Connections'),
    h('p', { class: 'muted' }, 'Downstream services idflow calls for you, each with your own credential.'),
    h('form', { class: 'card row', id: 'connect', onsubmit: onSubmit(async (f) => {
      const out = await api('POST', '/api/v1/connections/' + encodeURIComponent(f.provider.value) + '/connect');
      location.assign(out.authorize_url);
    }) }, h('label', {}, 'Provider', h('input', { name: 'provider', value: 'dev', required: true })), h('button', { type: 'submit' }, 'Connect')),
    h('section', { class: 'card' }, listOrEmpty(items, 'No connections yet.', c =>
      h('li', {}, h('span', {}, h('strong', {}, c.provider), ' ', h('span', { class: 'badge ' + c.status }, c.status)),
        h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/api/v1/connections/' + encodeURIComponent(c.provider)); route(); } catch (e) { toast(e.message); } } }, 'Disconnect')))));
}

async function viewAudit() {
  const admin = (state.me.roles || []).includes('admin');
  const { items } = await api('GET', admin ? '/api/v1/admin/audit?limit=100' : '/api/v1/audit?limit=100');
  render(h('h1', {}, admin ? 'Audit (all users)' : 'Your audit trail'),
    h('section', { class: 'card' }, listOrEmpty(items, 'No events yet.', e =>
      h('li', { 'data-user': e.user_id }, h('span', {}, h('strong', {}, e.action), ' ', e.resource, admin ? ' · ' + (e.user_id || 'anonymous request') : ''),
        h('span', { class: 'badge ' + (e.outcome === 'success' ? 'succeeded' : 'failed') }, e.outcome), h('span', { class: 'muted' }, when(e.at))))));
}

// Router.

const routes = [
  [/^#?\/?$/, 'me', viewMe],
  [/^#\/chats$/, 'chats', viewChats],
  [/^#\/chats\/([\w-]+)$/, 'chats', viewChat],
  [/^#\/agents$/, 'agents', viewAgents],
  [/^#\/workflows$/, 'workflows', viewWorkflows],
  [/^#\/workflows\/([\w-]+)$/, 'workflows', viewWorkflow],
  [/^#\/runs$/, 'runs', viewRuns],
  [/^#\/runs\/([\w-]+)$/, 'runs', viewRun],
  [/^#\/documents$/, 'documents', viewDocuments],
  [/^#\/memory$/, 'memory', viewMemory],
  [/^#\/connections$/, 'connections', viewConnections],
  [/^#\/audit$/, 'audit', viewAudit],
];

function route() {
  closeSocket();
  const hash = location.hash || '#/';
  for (const [re, nav, view] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    document.querySelectorAll('[data-nav]').forEach(a => a.toggleAttribute('aria-current', a.dataset.nav === nav));
    document.querySelectorAll('[data-nav][aria-current]').forEach(a => a.setAttribute('aria-current', 'page'));
    guarded(() => view(...m.slice(1)));
    return;
  }
  render(failure(new HTTPError(404)));
}

async function start() {
  try {
    state.me = await api('GET', '/api/v1/me');
    state.csrf = state.me.csrf_token || '';
    document.getElementById('who').textContent = state.me.name || state.me.email || state.me.user_id;
    document.getElementById('logout-csrf').value = state.csrf;
  } catch (err) {
    render(failure(err));
    return;
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
