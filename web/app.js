// agentd chat page. Plain JavaScript, no build step. Everything the model or a tool
// says is put on the page as text nodes (see renderMarkdown), never parsed as HTML.
'use strict';

const $ = (sel) => document.querySelector(sel);

// el builds an element: attrs are properties (className, type, value…), "on*" keys
// are event listeners, "data" is a dataset; children are nodes or strings (as text).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'data') Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

const state = {
  token: sessionStorage.getItem('agentd-token') || '',
  agent: localStorage.getItem('agentd-agent') || '',
  agentName: '',
  session: null,        // the open session's id; null = a new chat not created yet
  abort: null,          // AbortController of the running stream
  bubbles: new Map(),   // session_id → the assistant bubble text is streaming into
  tools: new Map(),     // tool call id → its card
  subSessions: new Set(),
  renaming: false,      // a session title is being edited
};

// ---- HTTP ---------------------------------------------------------------------

let tokenPrompt = null;

// askToken shows the token dialog once, however many requests got a 401 meanwhile.
function askToken() {
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      const dlg = $('#auth');
      $('#auth-form').addEventListener('submit', () => {
        state.token = $('#token').value.trim();
        sessionStorage.setItem('agentd-token', state.token);
        tokenPrompt = null;
        resolve();
      }, { once: true });
      dlg.showModal();
      $('#token').focus();
    });
  }
  return tokenPrompt;
}

// api sends a same-origin request with the token; on 401 it asks for the token and retries.
async function api(method, path, body, signal) {
  const headers = {};
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  const opts = { method, headers, signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (res.status === 401) {
    await askToken();
    return api(method, path, body, signal);
  }
  return res;
}

async function apiJSON(method, path, body) {
  const res = await api(method, path, body);
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error((data && (data.error || data.message)) || ('HTTP ' + res.status));
  return data;
}

const sessionPath = (id) => '/api/sessions/' + encodeURIComponent(id);

// ---- errors -------------------------------------------------------------------

function showError(msg) {
  $('#error-text').textContent = String(msg);
  $('#error').hidden = false;
}

async function guarded(fn) {
  try {
    await fn();
  } catch (e) {
    if (e.name !== 'AbortError') showError(e.message || e);
  }
}

// ---- markdown (safe subset, DOM nodes only) -----------------------------------

// renderMarkdown turns text into a fragment: fenced code, headings, lists,
// paragraphs; inline code, bold, italics and http(s) links.
function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  const lines = text.split('\n');
  let para = [];
  let list = null;
  const flush = () => {
    if (para.length) frag.append(el('p', {}, inline(para.join('\n'))));
    para = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('```')) {
      flush(); list = null;
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith('```'); i++) code.push(lines[i]);
      frag.append(el('pre', {}, el('code', {}, code.join('\n'))));
      continue;
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    const li = /^\s*(?:[-*]|\d+\.)\s+(.*)$/.exec(line);
    if (h) {
      flush(); list = null;
      frag.append(el('h' + Math.min(h[1].length + 2, 6), {}, inline(h[2])));
    } else if (li) {
      flush();
      if (!list) { list = el(/^\s*\d/.test(line) ? 'ol' : 'ul'); frag.append(list); }
      list.append(el('li', {}, inline(li[1])));
    } else if (line.trim() === '') {
      flush(); list = null;
    } else {
      list = null;
      para.push(line);
    }
  }
  flush();
  return frag;
}

function inline(text) {
  const out = [];
  const re = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g;
  let last = 0;
  for (let m; (m = re.exec(text));) {
    out.push(text.slice(last, m.index));
    if (m[1]) out.push(el('code', {}, m[1]));
    else if (m[2]) out.push(el('strong', {}, m[2]));
    else if (m[3]) out.push(el('em', {}, m[3]));
    else out.push(el('a', { href: m[5], target: '_blank', rel: 'noopener noreferrer' }, m[4]));
    last = re.lastIndex;
  }
  out.push(text.slice(last));
  return out;
}

// ---- transcript ---------------------------------------------------------------

function transcript() { return $('#messages'); }

function append(node) {
  const box = transcript();
  const empty = box.querySelector('.empty');
  if (empty) empty.remove();
  const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  box.append(node);
  if (stick) box.scrollTop = box.scrollHeight;
  return node;
}

function clearTranscript(text) {
  transcript().replaceChildren(el('p', { className: 'empty' }, text || 'Say something.'));
  state.bubbles.clear();
  state.tools.clear();
  state.subSessions.clear();
}

function note(text, kind) {
  return append(el('div', { className: 'note ' + (kind || '') }, text));
}

function userBubble(text) {
  return append(el('div', { className: 'msg user' }, el('div', { className: 'body' }, text)));
}

// assistantBubble starts a message; its text is kept raw and re-rendered on each delta.
function assistantBubble(agent) {
  const body = el('div', { className: 'body' });
  const node = append(el('div', { className: 'msg assistant' }, el('div', { className: 'who' }, agent || 'assistant'), body));
  return { node, body, text: '', reasoning: null, agent };
}

function addText(b, text) {
  b.text += text;
  b.body.replaceChildren(renderMarkdown(b.text));
  transcript().scrollTop = transcript().scrollHeight;
}

function addReasoning(b, text) {
  if (!b.reasoning) {
    b.reasoning = el('details', { className: 'reasoning' }, el('summary', {}, 'thinking'));
    b.node.insertBefore(b.reasoning, b.body);
  }
  b.reasoning.append(text);
}

function streamingBubble(sid, agent) {
  let b = state.bubbles.get(sid);
  if (!b || b.agent !== agent) {
    b = assistantBubble(agent);
    b.node.classList.add('streaming');
    state.bubbles.set(sid, b);
  }
  return b;
}

function endBubble(sid) {
  const b = state.bubbles.get(sid);
  if (b) b.node.classList.remove('streaming');
  state.bubbles.delete(sid);
}

function prettyArgs(args) {
  try { return JSON.stringify(JSON.parse(args || '{}'), null, 2); } catch { return args || ''; }
}

// toolCard shows one call with its arguments; later events fill in status and result.
function toolCard(call) {
  const id = call.id || ('anon-' + state.tools.size);
  let card = state.tools.get(id);
  if (!card) {
    const name = (call.function && call.function.name) || '?';
    card = append(el('div', { className: 'tool', data: { id, name } },
      el('span', { className: 'status' }, ''),
      el('span', { className: 'name' }, name),
      el('pre', { className: 'args' }, prettyArgs(call.function && call.function.arguments))));
    state.tools.set(id, card);
  }
  return card;
}

function setStatus(card, text) { card.querySelector('.status').textContent = text; }

function setResult(card, output, isError) {
  let pre = card.querySelector('.result');
  if (!pre) pre = card.appendChild(el('pre', { className: 'result' }));
  pre.textContent = output;
  card.classList.toggle('error', !!isError);
  card.classList.remove('pending');
  setStatus(card, isError ? 'error' : 'done');
}

// ---- confirmations and elicitations --------------------------------------------

function confirmation(ev) {
  const card = toolCard(ev.tool_call);
  card.classList.add('pending');
  setStatus(card, 'needs approval');
  const name = card.dataset.name;
  const reason = el('input', { type: 'text', className: 'reason', placeholder: 'reason (optional)' });
  const box = el('div', { className: 'actions confirm' });
  const answer = (body, label) => guarded(async () => {
    if (ev.tool_call.id) body.tool_call_id = ev.tool_call.id; // the server refuses an answer meant for another call
    const controls = box.querySelectorAll('button, input');
    controls.forEach((b) => { b.disabled = true; });
    try {
      await apiJSON('POST', sessionPath(state.session) + '/resume', body);
    } catch (e) {
      controls.forEach((b) => { b.disabled = false; });
      throw e;
    }
    card.classList.remove('pending');
    setStatus(card, label);
    box.remove();
  });
  box.append(
    el('button', { type: 'button', className: 'primary', data: { action: 'approve' }, onclick: () => answer({ confirmation: 'approve' }, 'approved') }, 'Approve'),
    el('button', { type: 'button', data: { action: 'approve-session' }, onclick: () => answer({ confirmation: 'approve-session' }, 'approved for the session') }, 'Approve for this session'),
    el('button', { type: 'button', data: { action: 'approve-tool' }, onclick: () => answer({ confirmation: 'approve-tool', tool_name: name }, 'always allowed') }, 'Always allow ' + name),
    reason,
    el('button', { type: 'button', className: 'danger', data: { action: 'reject' }, onclick: () => answer({ confirmation: 'reject', reason: reason.value }, 'rejected') }, 'Reject'));
  card.append(box);
}

function maxIterations(ev) {
  const box = el('div', { className: 'tool pending' }, 'The agent reached its limit of ' + ev.max_iterations + ' iterations.');
  const actions = el('div', { className: 'actions' });
  const answer = (c) => guarded(async () => {
    await apiJSON('POST', sessionPath(state.session) + '/resume', { confirmation: c });
    box.remove();
  });
  actions.append(el('button', { type: 'button', className: 'primary', onclick: () => answer('approve') }, 'Continue'),
    el('button', { type: 'button', onclick: () => answer('reject') }, 'Stop'));
  append(box).append(actions);
}

// schemaField is one input for a property of an elicitation's JSON schema.
function schemaField(key, prop, required) {
  const label = prop.title || key;
  let input;
  if (Array.isArray(prop.enum)) {
    input = el('select', {}, prop.enum.map((v) => el('option', { value: String(v) }, String(v))));
  } else if (prop.type === 'boolean') {
    input = el('input', { type: 'checkbox', checked: !!prop.default });
  } else if (prop.type === 'number' || prop.type === 'integer') {
    input = el('input', { type: 'number', step: prop.type === 'integer' ? '1' : 'any' });
  } else {
    input = el('input', { type: 'text' });
  }
  input.name = key;
  input.required = required && prop.type !== 'boolean';
  if (prop.default !== undefined && prop.type !== 'boolean') input.value = String(prop.default);
  return el('label', {}, el('span', {}, label + (input.required ? ' *' : '') + (prop.description ? ' — ' + prop.description : '')), input);
}

function fieldValue(input, prop) {
  if (prop.type === 'boolean') return input.checked;
  if (input.value === '') return undefined;
  if (prop.type === 'number' || prop.type === 'integer') return Number(input.value);
  return input.value;
}

function elicitation(ev) {
  const schema = (ev.schema && typeof ev.schema === 'object') ? ev.schema : {};
  const props = schema.properties || {};
  const required = schema.required || [];
  const form = el('form', { className: 'tool pending elicitation' }, el('div', { className: 'name' }, ev.message || 'The agent asks'));
  if (ev.mode === 'url' && /^https?:\/\//.test(ev.url || '')) {
    form.append(el('a', { href: ev.url, target: '_blank', rel: 'noopener noreferrer' }, ev.url));
  }
  for (const [key, prop] of Object.entries(props)) form.append(schemaField(key, prop, required.includes(key)));
  const send = (action) => guarded(async () => {
    const body = { action };
    if (action === 'accept') {
      body.content = {};
      for (const [key, prop] of Object.entries(props)) {
        const v = fieldValue(form.elements.namedItem(key), prop);
        if (v !== undefined) body.content[key] = v;
      }
    }
    await apiJSON('POST', sessionPath(state.session) + '/elicitation', body);
    form.querySelectorAll('button, input, select').forEach((b) => { b.disabled = true; });
    form.classList.remove('pending');
    form.append(el('div', { className: 'muted' }, action === 'accept' ? 'answered' : action + 'd'));
  });
  form.addEventListener('submit', (e) => { e.preventDefault(); send('accept'); });
  form.append(el('div', { className: 'actions' },
    el('button', { type: 'submit', className: 'primary' }, 'Submit'),
    el('button', { type: 'button', onclick: () => send('decline') }, 'Decline'),
    el('button', { type: 'button', onclick: () => send('cancel') }, 'Cancel')));
  append(form);
  const first = form.querySelector('input, select');
  if (first) first.focus();
}

// ---- the event stream ---------------------------------------------------------

function showUsage(input, output, cost) {
  $('#usage').textContent = input + ' in · ' + output + ' out · $' + Number(cost || 0).toFixed(4);
}

// isChild tells a sub-agent's events from the open session's own.
const isChild = (ev) => ev.session_id && ev.session_id !== state.session;

const handlers = {
  agent_info: (ev) => { $('#current-agent').textContent = ev.agent_name + ' · ' + ev.model; },
  stream_started: (ev) => { if (isChild(ev)) state.subSessions.add(ev.session_id); },
  stream_stopped: (ev) => endBubble(ev.session_id || state.session),
  agent_choice: (ev) => addText(streamingBubble(ev.session_id || state.session, ev.agent_name), ev.content),
  agent_choice_reasoning: (ev) => addReasoning(streamingBubble(ev.session_id || state.session, ev.agent_name), ev.content),
  message_added: (ev) => endBubble(ev.session_id || state.session),
  tool_call_confirmation: confirmation,
  tool_call: (ev) => { setStatus(toolCard(ev.tool_call), 'running'); },
  tool_call_response: (ev) => {
    const r = ev.result || {};
    setResult(toolCard(ev.tool_call), ev.response !== undefined ? ev.response : (r.output || ''), r.isError);
  },
  hook_blocked: (ev) => { setStatus(toolCard(ev.tool_call), 'blocked by a hook'); },
  elicitation_request: elicitation,
  max_iterations_reached: maxIterations,
  agent_switching: (ev) => note(ev.switching ? ev.from_agent + ' → ' + ev.to_agent : ev.from_agent + ' → back to ' + ev.to_agent, 'switch'),
  token_usage: (ev) => { if (!isChild(ev) && ev.usage) showUsage(ev.usage.input_tokens, ev.usage.output_tokens, ev.usage.cost); },
  session_title: () => loadSessions(),
  warning: (ev) => note(ev.message, 'warning'),
  model_fallback: (ev) => note(ev.failed_model + ' failed (' + ev.reason + '); trying ' + ev.fallback_model, 'warning'),
  error: (ev) => { note(ev.error, 'error'); showError(ev.error); },
  authorization_event: () => note('authorized'),
};

function handleEvent(ev) {
  const h = handlers[ev.type];
  if (h) h(ev);
}

// readStream consumes an SSE response: `data: {json}` frames, `:` comments ignored.
// A detached run's frames carry `id: <seq>`: the first one is remembered, so a reload
// can replay the run from the session's event log. done(ev) true ends the reading.
async function readStream(res, done) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of frame.split('\n')) {
        if (line.startsWith('id: ') && !sessionStorage.getItem('agentd-run-from')) sessionStorage.setItem('agentd-run-from', line.slice(4));
        if (!line.startsWith('data: ')) continue;
        const ev = JSON.parse(line.slice(6));
        handleEvent(ev);
        if (done && done(ev)) { reader.cancel(); return; }
      }
    }
  }
}

function setRunning(on) {
  $('#send').disabled = on;
  $('#stop').hidden = !on;
  if (on) sessionStorage.setItem('agentd-running', state.session);
  else {
    sessionStorage.removeItem('agentd-running');
    sessionStorage.removeItem('agentd-run-from');
  }
}

// stopStream stops reading the stream; runs are detached, so the run goes on (a
// reload or a later visit shows it).
function stopStream() {
  if (state.abort) state.abort.abort();
  state.abort = null;
  setRunning(false);
}

// stopRun is the Stop button: the server cancels the run, keeping what it produced.
function stopRun() {
  const id = state.session;
  stopStream();
  if (id) guarded(() => api('POST', sessionPath(id) + '/cancel'));
}

// stream reads a run (or a reattached one) to its end, then re-reads the session.
async function stream(res, ctrl, done) {
  const id = state.session;
  setRunning(true);
  try {
    await readStream(res, done);
  } finally {
    if (state.abort === ctrl) {
      state.abort = null;
      setRunning(false);
    }
    if (state.session === id) {
      for (const sid of [...state.bubbles.keys()]) endBubble(sid);
      loadSessions();
      refreshSession();
    }
  }
}

async function send(text) {
  if (!state.agent) throw new Error('no agent to talk to');
  if (!state.session) {
    const s = await apiJSON('POST', '/api/sessions', { tools_approved: $('#yolo').checked, thinking: $('#thinking').checked });
    state.session = s.id;
    location.hash = 's=' + s.id;
    clearTranscript();
    loadSessions();
  }
  userBubble(text);
  let path = sessionPath(state.session) + '/agent/' + encodeURIComponent(state.agent);
  if (state.agentName) path += '/' + encodeURIComponent(state.agentName);
  path += '?detach=true'; // a reload follows the run from the event log
  sessionStorage.removeItem('agentd-run-from');
  const ctrl = new AbortController();
  state.abort = ctrl;
  let res;
  try {
    res = await api('POST', path, { messages: [{ role: 'user', content: text }] }, ctrl.signal);
  } finally {
    if (!res || !res.ok) state.abort = null;
  }
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    throw new Error((data && data.error) || ('HTTP ' + res.status));
  }
  await stream(res, ctrl);
}

// ---- sessions -----------------------------------------------------------------

const starred = () => new Set(JSON.parse(localStorage.getItem('agentd-starred') || '[]'));

function toggleStar(id) {
  const s = starred();
  if (s.has(id)) s.delete(id); else s.add(id);
  localStorage.setItem('agentd-starred', JSON.stringify([...s]));
  loadSessions();
}

async function loadSessions() {
  if (state.renaming) return; // redrawing would drop the title being edited
  await guarded(async () => {
    const list = await apiJSON('GET', '/api/sessions');
    if (state.renaming) return;
    const stars = starred();
    list.sort((a, b) => stars.has(b.id) - stars.has(a.id));
    $('#sessions').replaceChildren(...list.map((s) => sessionItem(s, stars.has(s.id))));
  });
}

function sessionItem(s, isStarred) {
  const li = el('li', { className: s.id === state.session ? 'active' : '', data: { id: s.id } });
  const title = el('button', { type: 'button', className: 'session-title', title: s.title || 'Untitled', onclick: () => guarded(() => openSession(s.id)) }, s.title || 'Untitled');
  const del = el('button', { type: 'button', className: 'icon delete', title: 'Delete' }, '×');
  del.addEventListener('click', () => {
    // Two clicks: the first arms the button for three seconds.
    if (!del.classList.contains('confirming')) {
      del.classList.add('confirming');
      del.textContent = 'Delete?';
      setTimeout(() => { del.classList.remove('confirming'); del.textContent = '×'; }, 3000);
      return;
    }
    guarded(async () => {
      await apiJSON('DELETE', sessionPath(s.id));
      if (state.session === s.id) newChat();
      loadSessions();
    });
  });
  li.append(
    el('button', { type: 'button', className: 'icon star' + (isStarred ? ' on' : ''), title: 'Star (kept in this browser)', onclick: () => toggleStar(s.id) }, isStarred ? '★' : '☆'),
    title,
    el('button', { type: 'button', className: 'icon rename', title: 'Rename', onclick: () => rename(li, title, s) }, '✎'),
    del);
  return li;
}

function rename(li, title, s) {
  const input = el('input', { type: 'text', className: 'rename-input', value: s.title || '' });
  let done = false;
  const finish = (save) => guarded(async () => {
    if (done) return;
    done = true;
    try {
      if (save) await apiJSON('PATCH', sessionPath(s.id) + '/title', { title: input.value.trim() });
    } finally {
      state.renaming = false;
      loadSessions();
    }
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') finish(true);
    if (e.key === 'Escape') finish(false);
  });
  input.addEventListener('blur', () => finish(true));
  state.renaming = true;
  title.replaceWith(input);
  input.focus();
  input.select();
}

function newChat() {
  stopStream();
  state.session = null;
  history.replaceState(null, '', location.pathname);
  clearTranscript('New chat. Say something.');
  $('#usage').textContent = '';
  loadSessions();
  $('#input').focus();
}

// renderStored draws a stored conversation: user and assistant messages, each tool
// call with its arguments and (from the tool message) its result.
function renderStored(messages) {
  clearTranscript();
  for (const { agentName, message: m } of messages || []) {
    if (!m || m.role === 'system') continue;
    if (m.role === 'user') {
      userBubble(m.content || '');
    } else if (m.role === 'assistant') {
      if (m.content || m.reasoning_content) {
        const b = assistantBubble(agentName);
        if (m.reasoning_content) addReasoning(b, m.reasoning_content);
        addText(b, m.content || '');
      }
      for (const tc of m.tool_calls || []) setStatus(toolCard(tc), '');
    } else if (m.role === 'tool') {
      const card = state.tools.get(m.tool_call_id);
      if (card) setResult(card, m.content || '', m.is_error);
    }
  }
}

async function refreshSession() {
  if (!state.session) return;
  const s = await apiJSON('GET', sessionPath(state.session));
  $('#yolo').checked = s.tools_approved;
  $('#thinking').checked = s.thinking;
  showUsage(s.input_tokens, s.output_tokens, s.cost);
  return s;
}

async function openSession(id) {
  // Set while this tab was streaming this session's answer when the page was reloaded.
  const from = Number(sessionStorage.getItem('agentd-run-from'));
  const wasRunning = !state.abort && sessionStorage.getItem('agentd-running') === id && from > 0;
  stopStream();
  state.session = id;
  location.hash = 's=' + id;
  const s = await refreshSession();
  loadSessions();
  if (!wasRunning) {
    renderStored(s.messages);
    return;
  }
  // The run's question and what it answered so far come from the event log, so the
  // stored messages are shown up to the question.
  const msgs = s.messages || [];
  let last = msgs.length - 1;
  while (last >= 0 && msgs[last].message.role !== 'user') last--;
  renderStored(last >= 0 ? msgs.slice(0, last) : msgs);
  if (last >= 0) userBubble(msgs[last].message.content || '');
  await reattach(id, from);
}

// reattach replays the run that was streaming when the page was reloaded from its
// first event (GET …/events?since=) and follows it to its stream_stopped.
async function reattach(id, from) {
  const ctrl = new AbortController();
  state.abort = ctrl;
  const res = await api('GET', sessionPath(id) + '/events?since=' + (from - 1), undefined, ctrl.signal).catch(() => null);
  if (res && res.ok && (res.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
    await stream(res, ctrl, (ev) => ev.type === 'stream_stopped' && ev.session_id === id).catch(() => {});
    return;
  }
  state.abort = null;
  setRunning(false);
  note('The page was reloaded during an answer; showing what was stored.');
}

// ---- agents and toggles -------------------------------------------------------

async function loadAgents() {
  const list = await apiJSON('GET', '/api/agents');
  const sel = $('#agent');
  sel.replaceChildren(...list.map((a) => el('option', { value: a.name, title: a.description || '' }, a.name + (a.error ? ' (error)' : ''))));
  if (!list.some((a) => a.name === state.agent)) state.agent = list.length ? list[0].name : '';
  sel.value = state.agent;
  await loadAgentNames();
}

async function loadAgentNames() {
  const sel = $('#agent-name');
  sel.replaceChildren(el('option', { value: '' }, 'default'));
  state.agentName = '';
  if (!state.agent) return;
  const cfg = await apiJSON('GET', '/api/agents/' + encodeURIComponent(state.agent));
  for (const a of cfg.agents || []) sel.append(el('option', { value: a.Name, title: a.description || '' }, a.Name));
}

async function toggle(box, what) {
  if (!state.session) return; // applied when the session is created
  await guarded(async () => {
    await apiJSON('POST', sessionPath(state.session) + '/' + what + '/toggle');
    await refreshSession();
  });
}

// ---- wiring -------------------------------------------------------------------

function init() {
  $('#error-close').addEventListener('click', () => { $('#error').hidden = true; });
  $('#agent').addEventListener('change', (e) => guarded(async () => {
    state.agent = e.target.value;
    localStorage.setItem('agentd-agent', state.agent);
    await loadAgentNames();
  }));
  $('#agent-name').addEventListener('change', (e) => { state.agentName = e.target.value; });
  $('#yolo').addEventListener('change', (e) => toggle(e.target, 'tools'));
  $('#thinking').addEventListener('change', (e) => toggle(e.target, 'thinking'));
  $('#new-session').addEventListener('click', newChat);
  $('#stop').addEventListener('click', stopRun);
  const input = $('#input');
  $('#composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || state.abort) return;
    input.value = '';
    guarded(() => send(text));
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      $('#composer').requestSubmit();
    }
  });
  guarded(async () => {
    await loadAgents();
    await loadSessions();
    const m = /^#s=(.+)$/.exec(location.hash);
    if (m) await openSession(decodeURIComponent(m[1]));
  });
}

init();
