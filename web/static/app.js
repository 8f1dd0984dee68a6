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

// usageCard shows the caller's model tokens of the last 30 days and, when
// budgets are configured, what remains of each (docs/LIMITS.md).
function usageCard(u) {
  const total = (u.items || []).reduce((n, d) => n + d.prompt_tokens + d.completion_tokens, 0);
  const rows = [['Model tokens, last 30 days', String(total)]];
  const b = u.budget;
  if (b) {
    for (const [k, label] of [['user_day', 'Your budget today'], ['user_month', 'Your budget this month'],
      ['tenant_day', 'Your organization today'], ['tenant_month', 'Your organization this month']]) {
      const p = b[k];
      if (p && p.limit) rows.push([label, `${p.remaining} of ${p.limit} tokens left (renews ${when(p.renews_at)})`]);
    }
  }
  return h('section', { class: 'card' }, h('h2', {}, 'Usage'),
    h('dl', { class: 'kv', id: 'usage' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { 'data-field': k }, v)])));
}

async function viewMe() {
  const me = state.me;
  const usage = await api('GET', '/api/v1/usage');
  const rows = [['User', me.user_id], ['Tenant', me.tenant_id], ['Email', me.email], ['Name', me.name],
    ['Roles', (me.roles || []).join(', ') || '—'], ['Groups', (me.groups || []).join(', ') || '—'],
    ['Signed in with', me.auth_method], ['Token expires', when(me.expires_at)], ['Issuer', me.issuer]];
  render(h('h1', {}, 'Who you are'),
    h('section', { class: 'card' }, h('dl', { class: 'kv', id: 'me' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { 'data-field': k }, v || '—')]))),
    usageCard(usage),
    me.groups_overage ? h('p', { class: 'error' }, 'Your token had too many groups to list (group overage); group-gated features stay closed.') : null);
}

function listOrEmpty(items, empty, item) {
  if (!items.length) return h('p', { class: 'empty' }, empty);
  return h('ul', { class: 'list' }, items.map(item));
}

async function viewChats() {
  const [{ items }, agents] = await Promise.all([api('GET', '/api/v1/sessions'), api('GET', '/api/v1/agents?limit=200')]);
  render(h('h1', {}, 'Chats'),
    h('form', { class: 'card row', id: 'new-chat', onsubmit: onSubmit(async (f) => {
      const s = await api('POST', '/api/v1/sessions', { title: f.title.value, agent_id: f.agent_id.value || undefined });
      location.hash = '#/chats/' + s.id;
    }) }, h('label', {}, 'Title', h('input', { name: 'title', placeholder: 'New chat', maxlength: 200 })),
      h('label', {}, 'Agent', h('select', { name: 'agent_id' }, h('option', { value: '' }, 'Default agent (built-in tools)'),
        agents.items.map(a => h('option', { value: a.id }, a.name)))),
      h('button', { type: 'submit' }, 'Start chat')),
    h('section', { class: 'card' }, listOrEmpty(items, 'No chats yet.', s =>
      h('li', {}, h('a', { href: '#/chats/' + s.id }, s.title), h('span', { class: 'muted' }, when(s.updated_at))))));
}

// readEvents parses a text/event-stream body as it arrives and calls
// onEvent(type, data) for each event. idflow ends lines with "\n" (a "\r"
// before it is dropped too).
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '', type = '', data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      let line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (data.length) onEvent(type || 'message', data.join('\n'));
        type = ''; data = [];
        continue;
      }
      if (line.startsWith(':')) continue; // a comment
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? '' : line.slice(c + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (field === 'event') type = v;
      else if (field === 'data') data.push(v);
    }
  }
}

// postStream POSTs body asking for Server-Sent Events (EventSource cannot
// POST) and answers the stream. A refusal before the stream began is an
// ordinary problem+json answer: thrown as an HTTPError.
async function postStream(path, body) {
  const res = await fetch(path, { method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
    headers: { 'Accept': 'text/event-stream', 'Content-Type': 'application/json', 'X-CSRF-Token': state.csrf } });
  if (res.ok && (res.headers.get('Content-Type') || '').startsWith('text/event-stream')) return res.body;
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  throw new HTTPError(res.status, (data && data.detail) || (res.ok ? 'The server did not stream the reply.' : ''));
}

// A tool result's content is the tool's JSON when it succeeded and
// "<code>: <message>" when it failed (docs/TOOLS.md): stored tool messages
// carry no ok flag, so history tells them apart by that.
function isJSON(text) { try { JSON.parse(text); return true; } catch { return false; } }
function pretty(text) { try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; } }

// toolView is one tool call, collapsed: its name and state, then its
// arguments and (once it answered) its result.
function toolView(call) {
  return h('details', { class: 'tool', 'data-call-id': call.id, 'data-tool': call.name, 'data-state': 'running' },
    h('summary', {}, 'Tool ', h('code', {}, call.name), ' ', h('span', { class: 'badge', 'data-part': 'status' }, 'running…')),
    h('div', { class: 'tool-part' }, h('span', { class: 'muted' }, 'Arguments'),
      h('pre', { 'data-part': 'arguments' }, call.arguments === undefined ? '—' : JSON.stringify(call.arguments, null, 2))),
    h('div', { class: 'tool-part' }, h('span', { class: 'muted' }, 'Result'), h('pre', { 'data-part': 'result' }, '…')));
}

function setToolResult(el, ok, content) {
  el.dataset.state = ok ? 'ok' : 'error';
  const status = el.querySelector('[data-part=status]');
  status.textContent = ok ? 'ok' : 'error';
  status.className = 'badge ' + (ok ? 'succeeded' : 'failed');
  el.querySelector('[data-part=result]').textContent = ok ? pretty(content) : content;
}

// memoryView lists the facts of the user's memory the model was given.
function memoryView(facts) {
  return h('details', { class: 'memory', 'data-count': facts.length },
    h('summary', {}, 'Used ' + facts.length + (facts.length === 1 ? ' fact' : ' facts') + ' from your memory'),
    h('ul', {}, facts.map(f => h('li', { 'data-fact-id': f.id }, h('code', {}, f.id), ' ', f.content))));
}

function bubble(m) {
  return h('div', { class: 'msg ' + m.role, 'data-id': m.id, 'data-state': 'stored' }, m.content);
}

// showHistory renders stored messages: an assistant message that called
// tools shows its calls, and each tool message fills in its call's result.
function showHistory(log, items) {
  const calls = new Map();
  for (const m of items) {
    if (m.role === 'tool') {
      let el = calls.get(m.tool_call_id);
      if (!el) { el = toolView({ id: m.tool_call_id, name: m.name }); log.append(el); }
      setToolResult(el, isJSON(m.content), m.content);
      continue;
    }
    const tc = m.tool_calls || [];
    if (m.content || !tc.length) log.append(bubble(m));
    for (const c of tc) { const el = toolView(c); calls.set(c.id, el); log.append(el); }
  }
}

// turnView shows one agent turn as its events arrive: the user's message at
// once, the memory used, each tool call and its result, the reply as it
// streams (marked streaming), then the stored reply. data-events lists the
// event types seen, in order, and data-deltas counts the deltas.
function turnView(log, content) {
  const user = h('div', { class: 'msg user', 'data-state': 'sending' }, content);
  const turn = h('div', { class: 'turn', 'data-state': 'streaming', 'data-events': '', 'data-deltas': '0', 'aria-busy': 'true' });
  log.append(user, turn);
  const calls = new Map();
  const seen = [];
  let text = null; // the assistant text streaming now
  let deltas = 0;
  let ended = false;
  const endText = () => { if (text) { text.classList.remove('streaming'); text.removeAttribute('aria-busy'); text = null; } };
  const fail = (detail) => {
    ended = true;
    user.dataset.state = 'failed';
    user.classList.add('failed');
    turn.dataset.state = 'failed';
    turn.removeAttribute('aria-busy');
    turn.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'Not sent, nothing of it was saved: ' + detail));
  };
  const handle = (type, raw) => {
    if (ended) return;
    if (seen[seen.length - 1] !== type) { seen.push(type); turn.dataset.events = seen.join(' '); }
    let d;
    try { d = JSON.parse(raw); } catch { fail('the server sent an event that is not JSON'); return; }
    switch (type) {
      case 'message':
        user.dataset.id = d.id;
        break;
      case 'memory':
        if ((d.facts || []).length) turn.append(memoryView(d.facts));
        break;
      case 'tool_call': {
        endText();
        const el = toolView(d);
        calls.set(d.id, el);
        turn.append(el);
        break;
      }
      case 'tool_result': {
        let el = calls.get(d.id);
        if (!el) { el = toolView({ id: d.id, name: d.name }); turn.append(el); }
        setToolResult(el, d.ok, d.content);
        break;
      }
      case 'delta':
        if (!text) { text = h('div', { class: 'msg assistant streaming', 'aria-busy': 'true' }); turn.append(text); }
        text.append(d.text);
        turn.dataset.deltas = String(++deltas);
        break;
      case 'reply':
        if (!text) { text = h('div', { class: 'msg assistant' }); turn.append(text); }
        text.textContent = d.content;
        text.dataset.id = d.id;
        text.dataset.state = 'stored';
        endText();
        user.dataset.state = 'stored';
        break;
      case 'done':
        ended = true;
        turn.dataset.state = 'done';
        turn.removeAttribute('aria-busy');
        break;
      case 'error':
        fail(d.detail || d.title || 'the turn failed');
        break;
    }
  };
  const finish = () => { if (!ended) fail('the connection ended before the reply was stored'); };
  return { handle, fail, finish, get failed() { return turn.dataset.state === 'failed'; } };
}

async function viewChat(id) {
  const s = await api('GET', '/api/v1/sessions/' + encodeURIComponent(id));
  const { items } = await api('GET', '/api/v1/sessions/' + encodeURIComponent(id) + '/messages?limit=200');
  let agent = null, agentGone = false;
  if (s.agent_id) {
    try { agent = await api('GET', '/api/v1/agents/' + encodeURIComponent(s.agent_id)); } catch (e) {
      if (!(e instanceof HTTPError && e.status === 404)) throw e;
      agentGone = true;
    }
  }
  const log = h('div', { class: 'chat', id: 'messages', 'aria-live': 'polite' });
  showHistory(log, items);
  render(h('h1', {}, s.title),
    h('p', { class: 'muted', id: 'chat-agent' }, agentGone ? 'Its agent was deleted: new messages are refused.' : agent
      ? ['Agent ', h('strong', {}, agent.name), ' · tools: ', agent.tools.length ? agent.tools.map(t => [h('code', {}, t), ' ']) : 'none']
      : 'Default agent: the built-in tools you may use.'),
    items.length ? null : h('p', { class: 'empty', id: 'no-messages' }, 'No messages yet — say something.'),
    log,
    h('form', { class: 'card row', id: 'send', onsubmit: onSubmit(async (f) => {
      const content = f.content.value;
      document.getElementById('no-messages')?.remove();
      const turn = turnView(log, content);
      f.content.value = '';
      try {
        await readEvents(await postStream('/api/v1/sessions/' + encodeURIComponent(id) + '/messages', { content }), turn.handle);
        turn.finish();
      } catch (err) {
        if (err instanceof HTTPError && err.status === 401) throw err;
        turn.fail(err.message || String(err));
      }
      if (turn.failed && !f.content.value) f.content.value = content; // nothing was saved: let the user send it again
      f.content.focus();
    }) }, h('label', {}, 'Message', h('input', { name: 'content', required: true, autocomplete: 'off' })), h('button', { type: 'submit' }, 'Send')),
    h('button', { class: 'danger', id: 'delete-chat', onclick: async () => {
      if (!confirm('Delete this chat?')) return;
      try { await api('DELETE', '/api/v1/sessions/' + encodeURIComponent(id)); location.hash = '#/chats'; } catch (e) { toast(e.message); }
    } }, 'Delete chat'));
}

// toolPicker offers the tools of the catalog the user may use as
// checkboxes: the built-ins, then each downstream server's. A tool the
// agent names that the catalog does not offer the user now (a server that
// is down, a tool the policy closes) stays checked in a group of its own,
// so saving does not drop it unseen.
function toolPicker(catalog, chosen) {
  const groups = new Map([['', []]]);
  for (const t of catalog) {
    const server = t.server || '';
    if (!groups.has(server)) groups.set(server, []);
    groups.get(server).push(t);
  }
  const known = new Set(catalog.map(t => t.name));
  const missing = chosen.filter(n => !known.has(n));
  const box = (name, desc, checked) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'tools', value: name, checked }),
    h('span', {}, h('code', {}, name), desc ? h('span', { class: 'muted' }, ' — ' + desc) : null));
  return h('div', { class: 'tool-picker' },
    [...groups].filter(([, ts]) => ts.length).map(([server, ts]) =>
      h('fieldset', { 'data-server': server }, h('legend', {}, server ? 'Server ' + server : 'Built-in tools'),
        ts.map(t => box(t.name, t.title || t.description, chosen.includes(t.name))))),
    missing.length ? h('fieldset', { 'data-server': '' }, h('legend', {}, 'Not available to you now'),
      missing.map(n => box(n, 'offered only while it is available to you', true))) : null,
    catalog.length ? null : h('p', { class: 'empty' }, 'No tools are available to you.'));
}

const pickedTools = (form) => [...form.querySelectorAll('input[name=tools]:checked')].map(i => i.value);

async function viewAgents() {
  const [{ items }, llms, tools] = await Promise.all([api('GET', '/api/v1/agents?limit=200'), api('GET', '/api/v1/llms'), api('GET', '/api/v1/tools')]);
  render(h('h1', {}, 'Agents'),
    h('form', { class: 'card stack', id: 'new-agent', onsubmit: onSubmit(async (f) => {
      await api('POST', '/api/v1/agents', { name: f.name.value, instructions: f.instructions.value, model: f.model.value, tools: pickedTools(f) });
      route();
    }) },
      h('label', {}, 'Name', h('input', { name: 'name', required: true, maxlength: 200 })),
      h('label', {}, 'Instructions', h('textarea', { name: 'instructions' })),
      h('label', {}, 'Model', h('select', { name: 'model' }, llms.items.map(m => h('option', { value: m.id }, m.name)))),
      h('div', {}, h('span', { class: 'label' }, 'Tools'), toolPicker(tools.items, [])),
      h('div', {}, h('button', { type: 'submit' }, 'Create agent'))),
    h('section', { class: 'card' }, listOrEmpty(items, 'No agents yet.', a =>
      h('li', { 'data-agent-id': a.id }, h('span', {}, h('strong', {}, a.name), ' ', h('span', { class: 'badge' }, a.model), ' ',
        a.tools.map(t => [h('code', { class: 'tool-name' }, t), ' '])),
        h('span', { class: 'row-actions' },
          h('button', { class: 'secondary', 'data-action': 'chat', onclick: async () => {
            try { const s = await api('POST', '/api/v1/sessions', { title: a.name, agent_id: a.id }); location.hash = '#/chats/' + s.id; } catch (e) { toast(e.message); }
          } }, 'Chat'),
          h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/api/v1/agents/' + a.id); route(); } catch (e) { toast(e.message); } } }, 'Delete')),
        h('details', { class: 'edit-tools' }, h('summary', {}, 'Edit tools'),
          h('form', { class: 'stack', 'data-agent-id': a.id, onsubmit: onSubmit(async (f) => {
            await api('PATCH', '/api/v1/agents/' + a.id, { tools: pickedTools(f) });
            toast('Saved.');
            route();
          }) }, toolPicker(tools.items, a.tools), h('div', {}, h('button', { type: 'submit' }, 'Save tools'))))))));
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

// Personal access tokens: the token is in the create answer only, so it is
// shown once, here, and never again (the list has no token).
async function viewTokens() {
  const { items } = await api('GET', '/api/v1/tokens?limit=200');
  const created = h('div', { id: 'token-created' });
  const scopes = ['read', 'write', 'agent', 'mcp'];
  render(h('h1', {}, 'Access tokens'),
    h('p', { class: 'muted' }, 'Personal access tokens act as you, with at most their scopes, on the API and /mcp. Never on token or admin routes.'),
    h('form', { class: 'card row', id: 'create-token', onsubmit: onSubmit(async (f) => {
      const chosen = scopes.filter(s => f['scope-' + s].checked);
      const out = await api('POST', '/api/v1/tokens', { name: f.tokenname.value, scopes: chosen, expires_in: Number(f.days.value) * 86400 });
      created.replaceChildren(h('section', { class: 'card' }, h('h2', {}, 'Your new token'),
        h('p', {}, 'Copy it now: it is not shown again.'), h('code', { id: 'new-token' }, out.token)));
      const list = document.getElementById('tokens');
      if (list) list.replaceWith(tokenList([out].concat(items)));
    }) }, h('label', {}, 'Name', h('input', { name: 'tokenname', required: true })),
      ...scopes.map(s => h('label', {}, h('input', { type: 'checkbox', name: 'scope-' + s, checked: s === 'read' || null }), ' ' + s)),
      h('label', {}, 'Days', h('input', { name: 'days', type: 'number', min: '1', max: '365', value: '90', required: true })),
      h('button', { type: 'submit' }, 'Create')),
    created,
    tokenList(items),
    await grantList());
}

// grantList is the MCP clients the user allowed (idflow as the
// authorization server of /mcp); without that mode the route is absent and
// so is the section.
async function grantList() {
  let items;
  try { ({ items } = await api('GET', '/api/v1/oauth/grants')); } catch (e) { return null; }
  return h('section', { class: 'card', id: 'grants' }, h('h2', {}, 'MCP clients you allowed'),
    h('p', { class: 'muted' }, 'Each acts as you on /mcp until you revoke it.'),
    listOrEmpty(items, 'No MCP client holds a grant.', g =>
      h('li', { 'data-grant': g.id }, h('span', {}, h('strong', {}, g.client_name || g.client_id), ' ',
        h('span', { class: 'muted' }, 'redirects to ' + g.redirect_uri + ' · allowed ' + when(g.created_at))),
        h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/api/v1/oauth/grants/' + g.id); route(); } catch (e) { toast(e.message); } } }, 'Revoke'))));
}

function tokenList(items) {
  return h('section', { class: 'card', id: 'tokens' }, listOrEmpty(items, 'No tokens yet.', t =>
    h('li', { 'data-token': t.id }, h('span', {}, h('strong', {}, t.name), ' ', h('span', { class: 'badge' }, t.scopes.join(' ')), ' ',
      h('span', { class: 'muted' }, 'expires ' + when(t.expires_at) + ' · ' + (t.last_used_at ? 'last used ' + when(t.last_used_at) : 'never used'))),
      h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/api/v1/tokens/' + t.id); route(); } catch (e) { toast(e.message); } } }, 'Revoke'))));
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
  [/^#\/tokens$/, 'tokens', viewTokens],
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
