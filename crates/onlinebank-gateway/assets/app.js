// onlinebank web page. Served by the gateway with a strict Content-Security-Policy: this file is the
// only script, every text comes from the messages block the gateway rendered for the page's language,
// and every text reaches the page through textContent (never innerHTML).
'use strict';
(() => {
const $ = id => document.getElementById(id);
const LANG = document.documentElement.lang === 'ko' ? 'ko' : 'en';
const LOCALE = LANG === 'ko' ? 'ko-KR' : 'en-US';
const MESSAGES = (() => {
  try { return JSON.parse($('messages').textContent); } catch (_) { return {}; }
})();
const STORE = 'onlinebank.session';
const SHOWN = 'onlinebank.account';
const LANG_COOKIE = 'onlinebank_lang';
const TX_PAGE = 10;
const POLL_MS = 3000;
const NUM = new Intl.NumberFormat(LOCALE);
const DATE = new Intl.DateTimeFormat(LOCALE, {dateStyle: 'medium', timeStyle: 'short'});

// A text in the page's language, with {name} placeholders filled in. A missing text is a bug: it is
// reported on the console (which the browser test fails on) and the key is shown instead.
function t(key, vars) {
  let text = MESSAGES[key];
  if (typeof text !== 'string') {
    console.error('missing translation: ' + key);
    text = key;
  }
  return vars ? text.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : text;
}
const has = key => typeof MESSAGES[key] === 'string';

let session = null;   // {token, expiresAt (ms), userId}; never the password
let expiryTimer = 0;
let current = null;   // account number shown in the detail card
let known = new Map(); // accountNo -> {version, status, balance} as last shown
let txNext = null;
let txShown = 0;
let unsure = null;    // {sig, key}: an operation whose outcome is unknown, retried with the same key
let polling = false;

const sleep = ms => new Promise(r => setTimeout(r, ms));
const won = n => (typeof n === 'number' && isFinite(n) ? t('money', {n: NUM.format(n)}) : '—');
function when(s) {
  const d = new Date(s);
  if (s == null || isNaN(d)) return s == null ? '—' : String(s);
  return DATE.format(d);
}
function duration(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return t('time.sec', {s});
  return s % 60 ? t('time.minSec', {m: Math.floor(s / 60), s: s % 60}) : t('time.min', {m: s / 60});
}
const accPath = no => '/api/v1/accounts/' + encodeURIComponent(no);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function timeEl(s) { const x = el('time', when(s)); if (s) x.dateTime = String(s); return x; }

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();   // needs a secure context (https or localhost)
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = b[6] & 15 | 64; b[8] = b[8] & 63 | 128;
  const h = Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// "12,000" -> 12000; null unless a whole number >= min that JS holds exactly.
function parseAmount(raw, min) {
  const s = raw.replace(/[\s,_원₩]/g, '');
  if (!/^\d+$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) && n >= min ? n : null;
}
function amountHint(input, hint) {
  input.addEventListener('input', () => {
    const n = parseAmount(input.value, 0);
    hint.textContent = input.value.trim() === '' ? '' : n === null ? t('amount.wholeOnly') : t('amount.echo', {amount: won(n)});
  });
}
function invalid(input, out, msg) {
  input.setAttribute('aria-invalid', 'true');
  say(out, 'err', msg);
  input.focus();
}

// ---- messages ----
const timers = new WeakMap();
function clear(out) {
  clearInterval(timers.get(out));
  out.className = 'out';
  out.replaceChildren();
}
function say(out, kind, title, lines = []) {
  clear(out);
  out.className = 'out ' + kind;
  out.append(el('strong', title));
  for (const l of lines) if (l) out.append(typeof l === 'string' ? el('p', l) : l);
}
// What support needs (code, status, request id), folded away from the customer's message.
function details(code, status, requestId, reason) {
  const d = el('details');
  d.append(el('summary', t('details.toggle')));
  if (code) d.append(el('p', t('details.code', {code})));
  if (status) d.append(el('p', t('details.status', {status})));
  if (reason && reason !== code) d.append(el('p', t('details.reason', {reason})));
  if (requestId) d.append(el('p', t('details.request', {id: requestId})));
  return d;
}
function retryAfterSeconds(v) {
  if (!v) return null;
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}
// Why a call failed: its error code, or for a request the bank cancelled, the reason it gives.
function refusal(r) {
  const code = r.data?.error?.code;
  return code === 'request_cancelled' && typeof r.data?.reason === 'string' && has('err.' + r.data.reason) ? r.data.reason : code;
}
// The customer's words for a refusal. `ctx` may carry {balance}, {transfer} (a transfer's refusal),
// {returnedFrom} (a transfer's target its money came back from) and {statement}.
function refusalTitle(code, r, ctx) {
  const allowed = r.data?.error?.allowedToday ?? r.data?.allowedToday;
  const wait = retryAfterSeconds(r.retryAfter);
  if (ctx.returnedFrom && code === 'account_not_found') return t('err.transfer.account_not_found', {to: ctx.returnedFrom});
  if (ctx.returnedFrom && code === 'account_closed') return t('err.transfer.account_closed', {to: ctx.returnedFrom});
  if (code === 'insufficient_funds' && typeof ctx.balance === 'number') return t('err.insufficient_funds.balance', {balance: won(ctx.balance)});
  if (code === 'daily_limit_exceeded' && typeof allowed === 'number') {
    return t(ctx.transfer ? 'err.transfer.daily_limit_exceeded.allowed' : 'err.daily_limit_exceeded.allowed', {amount: won(allowed)});
  }
  if (code === 'invalid_request' && ctx.statement) return t('err.statement.invalid_request');
  if (code === 'locked_out' && wait != null) return t('err.locked_out.wait', {time: duration(wait)});
  if (has('err.' + code)) return t('err.' + code);
  return t('err.unexpected', {status: r.status});
}
const mayRetry = code => code === 'service_busy' || code === 'storage_unavailable' || code === 'interrupted';
// The customer's message for a failed call: what happened in their words, what to do, and the
// technical part behind a toggle. `ctx` may also carry a `retry` function.
function sayError(out, r, what, ctx = {}) {
  if (r.network) {
    say(out, 'err', t('err.network'), [t('err.networkHint')]);
    return;
  }
  const code = r.data?.error?.code || (r.status ? 'http_' + r.status : 'unknown');
  const why = refusal(r) || code, title = refusalTitle(why, r, ctx);
  say(out, 'err', what ? t('err.when', {what, why: title}) : title.charAt(0).toUpperCase() + title.slice(1),
    mayRetry(why) ? [t('err.nothingChanged')] : []);
  if ((mayRetry(code) || code === 'outcome_unknown') && ctx.retry) {
    const wait = retryAfterSeconds(r.retryAfter);
    offerRetry(out, wait == null ? 1 : wait, ctx.retry);
  }
  out.append(details(code, r.status, r.data?.requestId, r.data?.reason));
}
// A retry button that waits out Retry-After, counting down.
function offerRetry(out, wait, retry) {
  const box = el('div', null, 'actions');
  const b = el('button', '', 'sec small');
  b.type = 'button';
  const until = Date.now() + wait * 1000;
  const hint = el('p');
  const tick = () => {
    const left = (until - Date.now()) / 1000;
    if (left > 0) {
      b.disabled = true;
      b.textContent = t('err.retryIn', {time: duration(left)});
      hint.textContent = t('err.busyWait', {time: duration(left)});
    } else {
      b.disabled = false;
      b.textContent = t('err.retry');
      hint.textContent = '';
      clearInterval(timers.get(out));
    }
  };
  tick();
  timers.set(out, setInterval(tick, 500));
  b.addEventListener('click', () => { clear(out); retry(); });
  box.append(b);
  out.append(hint, box);
}

// ---- HTTP ----
// One call to the bank with the session's token; null when the bank could not be reached.
async function send(method, path, {body, key, auth = true, accept = 'application/json'} = {}) {
  const headers = {Accept: accept};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && session) headers.Authorization = 'Bearer ' + session.token;
  if (key) headers['Idempotency-Key'] = key;
  let res;
  try {
    res = await fetch(path, {method, headers, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (_) {
    return null;
  }
  if (res.status === 401 && auth && session) endSession(t('msg.sessionEnded'));
  return res;
}
const unreachable = () => ({ok: false, network: true, status: 0, data: null});
// An answer as the page reads it: status, JSON body (or null) and the headers it uses.
async function answerOf(res) {
  let data = null;
  try { const text = await res.text(); data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  return {ok: res.ok, status: res.status, data, retryAfter: res.headers.get('Retry-After'), location: res.headers.get('Location')};
}
async function api(method, path, opts) {
  const res = await send(method, path, opts);
  return res ? answerOf(res) : unreachable();
}

// ---- session ----
// The token lives in this tab's sessionStorage: it survives a reload or a language switch, is not
// shared with other tabs and is gone when the tab closes; the CSP allows no script but this file.
function expiryMs(v) {
  if (typeof v === 'number') return v < 1e12 ? v * 1000 : v;
  const ms = Date.parse(v);
  return isNaN(ms) ? null : ms;
}
function startSession(s, quiet) {
  session = s;
  try { sessionStorage.setItem(STORE, JSON.stringify(s)); } catch (_) { /* memory only */ }
  clearTimeout(expiryTimer);
  if (s.expiresAt != null) expiryTimer = setTimeout(() => endSession(t('msg.sessionExpired')), Math.min(s.expiresAt - Date.now(), 2147483647));
  $('whoId').textContent = s.userId;
  $('who').hidden = $('bank').hidden = false;
  $('auth').hidden = true;
  document.querySelectorAll('.out').forEach(clear);
  document.querySelectorAll('#auth input').forEach(i => { i.value = ''; });
  refreshAccounts().then(() => {
    let shown = null;
    try { shown = sessionStorage.getItem(SHOWN); } catch (_) { /* none */ }
    if (session && shown && known.has(shown)) showDetail(shown, false);
  });
  if (!quiet) $('accH').focus();
}
function endSession(msg) {
  session = null; current = null; txNext = null; unsure = null; known = new Map();
  clearTimeout(expiryTimer);
  try { sessionStorage.removeItem(STORE); sessionStorage.removeItem(SHOWN); } catch (_) { /* ignore */ }
  document.querySelectorAll('input[type=password], #bank input[type=text]').forEach(i => { i.value = ''; });
  document.querySelectorAll('.out').forEach(clear);
  $('who').hidden = true; $('bank').hidden = true; $('detail').hidden = true; $('auth').hidden = false;
  $('accList').replaceChildren(); $('txList').replaceChildren();
  if (msg) say($('liOut'), 'warn', msg);
  $('liUser').focus();
}
async function login(userId, password, out) {
  say(out, 'info', t('busy.login'));
  const r = await api('POST', '/api/v1/sessions', {body: {userId, password}, auth: false});
  if (r.ok && r.data?.token) {
    startSession({token: r.data.token, expiresAt: expiryMs(r.data.expiresAt), userId});
    return true;
  }
  sayError(out, r, null, {retry: () => login(userId, password, out)});
  return false;
}
const validUser = u => /^[^\s\p{C}]{1,64}$/u.test(u);
const validPw = p => p.length >= 4 && p.length <= 128;

const isBusy = f => f.getAttribute('aria-busy') === 'true';
function busy(form, on) {
  form.setAttribute('aria-busy', on ? 'true' : 'false');
  form.querySelectorAll('button').forEach(b => { b.disabled = on; });
}

$('loginForm').addEventListener('submit', async e => {
  e.preventDefault();
  const f = e.currentTarget, out = $('liOut');
  if (isBusy(f)) return;
  const userId = $('liUser').value.trim(), pw = $('liPw').value;
  $('liPw').value = '';
  if (!validUser(userId)) return invalid($('liUser'), out, t('v.enterUserId'));
  if (!pw) return invalid($('liPw'), out, t('v.enterPassword'));
  busy(f, true);
  try { await login(userId, pw, out); } finally { busy(f, false); }
});

$('regForm').addEventListener('submit', async e => {
  e.preventDefault();
  const f = e.currentTarget, out = $('rgOut');
  if (isBusy(f)) return;
  const userId = $('rgUser').value.trim(), name = $('rgName').value.trim(), pw = $('rgPw').value;
  $('rgPw').value = '';
  if (!validUser(userId)) return invalid($('rgUser'), out, t('v.userId'));
  const n = Array.from(name).length;
  if (n < 1 || n > 100) return invalid($('rgName'), out, t('v.name'));
  if (!validPw(pw)) return invalid($('rgPw'), out, t('v.password'));
  busy(f, true);
  try {
    const register = async () => {
      say(out, 'info', t('busy.signup'));
      const r = await api('POST', '/api/v1/customers', {body: {userId, name, password: pw}, auth: false});
      if (!r.ok) return sayError(out, r, null, {retry: register});
      f.reset();
      if (await login(userId, pw, $('liOut'))) say($('pageOut'), 'ok', t('msg.welcome', {name}));
    };
    await register();
  } finally { busy(f, false); }
});

$('logout').addEventListener('click', async () => {
  // End the session at the bank too, so the token is refused from now on; the page forgets it
  // either way.
  if (session) await api('DELETE', '/api/v1/sessions/current');
  endSession(t('msg.loggedOut'));
});

$('lang').addEventListener('click', e => {
  const to = e.currentTarget.dataset.lang === 'ko' ? 'ko' : 'en';
  document.cookie = `${LANG_COOKIE}=${to}; Path=/; Max-Age=31536000; SameSite=Lax`;
  location.reload();
});

// ---- accounts ----
const changed = a => {
  const k = known.get(a.accountNo);
  return !k || k.version !== a.version || k.status !== a.status;
};
async function refreshAccounts(expect) {
  const out = $('accOut');
  for (let i = 0; ; i++) {
    const r = await api('GET', '/api/v1/accounts');
    if (!session) return;
    if (!r.ok) { sayError(out, r, t('what.loadAccounts'), {retry: () => refreshAccounts(expect)}); return; }
    const items = r.data && Array.isArray(r.data.items) ? r.data.items : [];
    const seen = !expect || items.some(a => a.accountNo === expect.accountNo && !(a.version < expect.version));
    if (seen || i >= 4) {
      renderAccounts(items);
      if (seen) clear(out);
      else say(out, 'warn', t('accounts.lag'));
      return;
    }
    await sleep(250 * 2 ** i);
  }
}
function renderAccounts(items) {
  const list = $('accList');
  list.replaceChildren();
  known = new Map();
  for (const a of items) {
    known.set(a.accountNo, {version: a.version, status: a.status, balance: a.balance});
    const closed = a.status === 'closed';
    const li = el('li', null, 'acct' + (closed ? ' closed' : ''));
    li.dataset.account = a.accountNo;
    if (a.accountNo === current) li.setAttribute('aria-current', 'true');
    const b = el('button', t('accounts.select'), 'sec');
    b.type = 'button';
    b.setAttribute('aria-label', t('accounts.selectLabel', {no: a.accountNo}));
    b.addEventListener('click', () => showDetail(a.accountNo, true));
    const meta = el('span', null, 'meta');
    meta.append(t(closed ? 'status.closed' : 'status.open'), ' · ', timeEl(a.updatedAt));
    li.append(el('span', a.accountNo, 'no mono'), el('span', won(a.balance), 'bal'), meta, b);
    list.append(li);
  }
  $('accEmpty').hidden = items.length !== 0;
}
$('refresh').addEventListener('click', async e => {
  const b = e.currentTarget;
  b.disabled = true;
  try { await refreshAccounts(); if (current) await loadDetail(current); } finally { b.disabled = false; }
});

// While the page is visible, the accounts are read every few seconds; what changed elsewhere (a
// deposit from another device, a transfer in) shows without a reload.
async function pollAccounts() {
  if (!session || polling || document.visibilityState !== 'visible') return;
  polling = true;
  try {
    const r = await api('GET', '/api/v1/accounts');
    if (!session || !r.ok || !Array.isArray(r.data?.items)) return;
    const items = r.data.items;
    if (items.length !== known.size || items.some(changed)) {
      const cur = current && items.find(a => a.accountNo === current);
      const curChanged = cur && changed(cur);
      renderAccounts(items);
      if (curChanged) await loadDetail(current);
    }
  } finally { polling = false; }
}
setInterval(pollAccounts, POLL_MS);
document.addEventListener('visibilitychange', pollAccounts);

// ---- one account ----
function resetOp() {
  document.querySelectorAll('input[name=opType]').forEach(r => { r.checked = false; });
  $('opTo').value = ''; $('opAmt').value = ''; $('opAmtHint').textContent = ''; $('opPw').value = '';
  syncOp();
}
async function showDetail(no, focus) {
  if (current !== no) { clear($('opOut')); clear($('txOut')); resetOp(); resetStatement(); unsure = null; $('txList').replaceChildren(); }
  current = no;
  try { sessionStorage.setItem(SHOWN, no); } catch (_) { /* ignore */ }
  document.querySelectorAll('#accList li').forEach(li => {
    if (li.dataset.account === no) li.setAttribute('aria-current', 'true'); else li.removeAttribute('aria-current');
  });
  $('detNo').textContent = no;
  $('detail').hidden = false;
  if (focus) { $('detH').focus(); $('detail').scrollIntoView({block: 'start'}); }
  await loadDetail(no);
}
$('detClose').addEventListener('click', () => {
  const no = current;
  current = null;
  try { sessionStorage.removeItem(SHOWN); } catch (_) { /* ignore */ }
  $('detail').hidden = true;
  resetOp(); clear($('opOut'));
  document.querySelectorAll('#accList li').forEach(li => li.removeAttribute('aria-current'));
  const b = document.querySelector(`#accList li[data-account="${CSS.escape(no || '')}"] button`);
  if (b) b.focus(); else $('accH').focus();
});
async function loadDetail(no, expect) {
  let a;
  for (let i = 0; ; i++) {
    [a] = await Promise.all([api('GET', accPath(no)), loadTx(no, true)]);
    if (!session || current !== no) return;
    if (!a.ok || !a.data || !expect || !(a.data.version < expect.version) || i >= 4) break;
    await sleep(250 * 2 ** i);
  }
  if (!a.ok || !a.data) { sayError($('txOut'), a, t('what.loadAccount'), {retry: () => loadDetail(no)}); return; }
  const d = a.data;
  $('detBal').textContent = won(d.balance);
  $('detStatus').textContent = t(d.status === 'closed' ? 'status.closed' : 'status.open');
  $('detOpened').replaceChildren(timeEl(d.openedAt));
  $('detUpdated').replaceChildren(timeEl(d.updatedAt));
  const closed = d.status === 'closed';
  $('detClosed').hidden = !closed;
  $('opForm').hidden = closed;
  const k = known.get(no);
  if (k && !(d.version < k.version)) known.set(no, {version: d.version, status: d.status, balance: d.balance});
  return d;
}
// The other account of a transfer's item, in the customer's words.
const COUNTERPART = {transfer_out: 'tx.to', transfer_in: 'tx.from', transfer_reversed: 'tx.returnedFrom'};
const ADDS = new Set(['deposit', 'transfer_in', 'transfer_reversed']);
const TAKES = new Set(['withdraw', 'transfer_out']);
function txItem(x) {
  const plus = ADDS.has(x.type) || (x.type === 'open' && x.amount > 0);
  const sign = TAKES.has(x.type) ? '−' : plus ? '+' : '';
  const li = el('li');
  const left = el('div'), right = el('div');
  left.append(el('div', has('tx.type.' + x.type) ? t('tx.type.' + x.type) : x.type, 'kind'));
  if (COUNTERPART[x.type] && x.counterpartAccountNo) left.append(el('div', t(COUNTERPART[x.type], {no: x.counterpartAccountNo}), 'party'));
  const w = el('div', null, 'when'); w.append(timeEl(x.occurredAt)); left.append(w);
  right.append(el('div', sign + won(x.amount), 'amt' + (plus ? ' plus' : '')), el('div', t('tx.after', {amount: won(x.balanceAfter)}), 'after'));
  li.append(left, right);
  return li;
}
// The first page again (as many rows as are shown, so paging is kept), or the next older page.
async function loadTx(no, first) {
  const out = $('txOut'), more = $('txMore');
  const limit = first ? Math.min(100, Math.max(TX_PAGE, txShown)) : TX_PAGE;
  let path = accPath(no) + '/transactions?limit=' + limit;
  if (!first) path += '&before=' + encodeURIComponent(txNext);
  more.disabled = true;
  const r = await api('GET', path);
  more.disabled = false;
  if (!session || current !== no) return;
  if (!r.ok) { sayError(out, r, t('what.loadTx'), {retry: () => loadTx(no, first)}); return; }
  clear(out);
  const list = $('txList');
  if (first) list.replaceChildren();
  const items = r.data && Array.isArray(r.data.items) ? r.data.items : [];
  for (const x of items) list.append(txItem(x));
  txShown = list.childElementCount;
  txNext = r.data?.next != null ? r.data.next : null;
  more.hidden = txNext === null;
  $('txEmpty').hidden = txShown > 0;
}
$('txMore').addEventListener('click', () => { if (current && txNext !== null) loadTx(current, false); });

// ---- statement (GET .../statement?format=csv, saved as a file) ----
const isoDay = d => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
const STATEMENT_DAYS = 366;
// This month so far, the customer's default.
function resetStatement() {
  const today = new Date();
  $('stFrom').value = isoDay(new Date(today.getFullYear(), today.getMonth(), 1));
  $('stTo').value = isoDay(today);
  clear($('stOut'));
}
// The statement's days, or null (and the customer told why).
function statementRange(out) {
  const from = $('stFrom').value, to = $('stTo').value, day = /^\d{4}-\d{2}-\d{2}$/;
  if (!day.test(from)) return invalid($('stFrom'), out, t('v.statementDay'));
  if (!day.test(to)) return invalid($('stTo'), out, t('v.statementDay'));
  const days = (Date.parse(to) - Date.parse(from)) / 86400000;
  if (!(days >= 0 && days < STATEMENT_DAYS)) return invalid($('stTo'), out, t('v.statementRange'));
  return {from, to};
}
// The file name the bank gives (Content-Disposition), else one like it.
function fileName(res, fallback) {
  const m = /filename="([^"\\/]+)"/.exec(res.headers.get('Content-Disposition') || '');
  return m ? m[1] : fallback;
}
// Saves a file the page holds: a link to it, clicked from here (a download, no navigation), then
// let go of.
function saveFile(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
async function downloadStatement(no, range, out) {
  const what = t('what.statement'), retry = () => downloadStatement(no, range, out);
  say(out, 'info', t('busy.statement'));
  const query = new URLSearchParams({from: range.from, to: range.to, format: 'csv'});
  const res = await send('GET', accPath(no) + '/statement?' + query, {accept: 'text/csv, application/json'});
  if (!session) return;
  if (!res || !res.ok) return sayError(out, res ? await answerOf(res) : unreachable(), what, {statement: true, retry});
  let blob;
  try { blob = await res.blob(); } catch (_) { return sayError(out, unreachable(), what, {retry}); }
  const name = fileName(res, `statement-${no}-${range.from}-${range.to}.csv`);
  saveFile(blob, name);
  say(out, 'ok', t('st.done', range), [t('st.file', {name})]);
}
$('stForm').addEventListener('submit', async e => {
  e.preventDefault();
  const f = e.currentTarget, out = $('stOut'), no = current;
  if (isBusy(f) || !no) return;
  const range = statementRange(out);
  if (!range) return;
  busy(f, true);
  try { await downloadStatement(no, range, out); } finally { busy(f, false); }
});

// ---- operations (POST /api/v1/requests) ----
function sayDone(out, d) {
  const lines = [];
  let title;
  if (d.type === 'open') title = t('done.open', {no: d.accountNo});
  else if (d.type === 'close') title = t('done.close', {no: d.accountNo});
  else if (d.type === 'transfer') title = t('done.transfer', {amount: won(d.amount), to: d.toAccountNo});
  else title = t('done.' + d.type, {amount: won(d.amount), no: d.accountNo});
  if (typeof d.balance === 'number' && d.type !== 'close') lines.push(t('done.balance', {amount: won(d.balance)}));
  say(out, 'ok', title, lines);
  out.append(details(null, null, d.requestId));
}
function requestUrl(r) {
  const id = r.data?.requestId;
  if (r.location) {
    try {
      const u = new URL(r.location, location.href);
      if (u.origin === location.origin && u.pathname.startsWith('/api/v1/requests/')) return u.pathname;
    } catch (_) { /* fall through */ }
  }
  return id ? '/api/v1/requests/' + encodeURIComponent(id) : null;
}
async function poll(out, url, id, what, onDone, body) {
  const tries = 5;
  for (let i = 1; i <= tries; i++) {
    say(out, 'warn', t('pending.title', {what}), [t('pending.body'), t('pending.checking', {i, n: tries})]);
    await sleep(1000 * i);
    if (!session) return;
    const p = await api('GET', url);
    if (p.ok && p.data) {
      if (p.data.status === 'completed') { sayDone(out, p.data); onDone(p.data); return; }
      continue;
    }
    if (p.network || p.status === 503) continue;
    sayError(out, p, what, await refusalContext(body, refusal(p)));   // e.g. 404 request_cancelled with its reason
    onDone(null, p);
    return;
  }
  say(out, 'warn', t('pending.still', {what}), [t('pending.stillBody')]);
  const box = el('div', null, 'actions');
  const b = el('button', t('pending.checkAgain'), 'sec small');
  b.type = 'button';
  b.addEventListener('click', () => poll(out, url, id, what, onDone, body));
  box.append(b);
  out.append(box, details(null, null, id));
}
// What the message for a refused operation needs from its (source) account: the balance when the
// money was short; for a transfer whose other account is missing or closed, that the source is
// still there and open, so it was the target, and the money came back.
async function refusalContext(body, code) {
  const ctx = {transfer: body.type === 'transfer'};
  const source = body.accountNo || body.fromAccountNo;
  const returned = ctx.transfer && (code === 'account_not_found' || code === 'account_closed');
  if (!source || !(returned || code === 'insufficient_funds')) return ctx;
  const a = await api('GET', accPath(source));
  if (!a.ok || !a.data) return ctx;
  if (typeof a.data.balance === 'number') ctx.balance = a.data.balance;
  if (returned && a.data.status === 'open') ctx.returnedFrom = body.toAccountNo;
  return ctx;
}
async function submitOp(out, body, onDone) {
  const what = t('what.' + body.type);
  // Same operation after an unknown outcome: reuse its key so it can only apply once.
  const sig = JSON.stringify([body.type, body.accountNo || body.fromAccountNo || '', body.toAccountNo || '', body.amount == null ? '' : body.amount]);
  const key = unsure && unsure.sig === sig ? unsure.key : uuid();
  say(out, 'info', t('busy.sending', {what}));
  const r = await api('POST', '/api/v1/requests', {body, key});
  const code = r.data?.error?.code;
  const unknown = r.network || (r.status >= 500 && r.status !== 503) || code === 'idempotency_key_in_flight' || code === 'outcome_unknown';
  unsure = unknown ? {sig, key} : null;
  if (r.status === 200 && r.data) { body.password = ''; sayDone(out, r.data); onDone(r.data); return; }
  if (r.status === 202) {
    body.password = '';
    const url = requestUrl(r), id = r.data?.requestId;
    if (url) return poll(out, url, id, what, onDone, body);
    say(out, 'warn', t('pending.title', {what}), [t('pending.refresh')]);
    return;
  }
  // A busy bank changed nothing: the retry button sends the same operation again (its password is
  // kept only while the button is offered).
  const ctx = await refusalContext(body, code);
  if (r.status === 503 || unknown) ctx.retry = () => submitOp(out, body, onDone);
  else body.password = '';
  sayError(out, r, what, ctx);
  if (unknown) out.insertBefore(el('p', t('err.outcomeUnknownHint')), out.querySelector('details'));
  onDone(null, r);
}

const opType = () => document.querySelector('input[name=opType]:checked')?.value || null;
function syncOp() {
  const type = opType();
  $('opFields').hidden = !type;
  $('opToBox').hidden = type !== 'transfer';
  $('opAmtBox').hidden = type === 'close';
  $('opCloseNote').hidden = type !== 'close';
  $('opBtn').textContent = type ? t('op.submit.' + type) : '';
}
document.querySelectorAll('input[name=opType]').forEach(r => r.addEventListener('change', () => { clear($('opOut')); syncOp(); }));
amountHint($('opAmt'), $('opAmtHint'));
amountHint($('opnAmt'), $('opnAmtHint'));

const validNo = no => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/.test(no);
// The operation the form asks for on account `no`, or null (and the customer told why).
function opBody(type, no, out) {
  const body = type === 'transfer' ? {type, fromAccountNo: no} : {type, accountNo: no};
  if (type === 'transfer') {
    const to = $('opTo').value.trim();
    if (!validNo(to)) return invalid($('opTo'), out, t('v.toAccountNo'));
    if (to === no) return invalid($('opTo'), out, t('v.toSame'));
    body.toAccountNo = to;
  }
  if (type !== 'close') {
    const amount = parseAmount($('opAmt').value, 1);
    if (amount === null) return invalid($('opAmt'), out, t('v.amount'));
    body.amount = amount;
  }
  return body;
}
// After an operation: what it changed shows (also a refusal that left items behind, like a
// transfer whose money came back).
function opSettled(type, no, d, r) {
  const code = r && refusal(r);
  if (d) resetOp();
  if (d || code === 'account_closed' || code === 'account_not_found' || code === 'insufficient_funds') {
    const expect = d && {accountNo: d.accountNo || no, version: d.version};
    refreshAccounts(expect);
    if (current === no) loadDetail(no, expect).then(() => { if (type === 'close' && d) $('detH').focus(); });
  }
}

$('opForm').addEventListener('submit', async e => {
  e.preventDefault();
  const f = e.currentTarget, out = $('opOut'), no = current, type = opType();
  if (isBusy(f) || !type) return;
  const pw = $('opPw').value;
  $('opPw').value = '';
  if (!no) return;
  const body = opBody(type, no, out);
  if (!body) return;
  if (!pw) return invalid($('opPw'), out, t('v.passwordOp'));
  if (type === 'close' && !confirm(t('op.confirmClose', {no}))) return;
  body.password = pw;
  busy(f, true);
  try {
    await submitOp(out, body, (d, r) => opSettled(type, no, d, r));
  } finally { busy(f, false); }
});

$('openForm').addEventListener('submit', async e => {
  e.preventDefault();
  const f = e.currentTarget, out = $('opnOut');
  if (isBusy(f)) return;
  const pw = $('opnPw').value;
  $('opnPw').value = '';
  const no = $('opnNo').value.trim(), rawAmt = $('opnAmt').value.trim();
  const body = {type: 'open'};
  if (no) {
    if (!validNo(no)) return invalid($('opnNo'), out, t('v.accountNo'));
    body.accountNo = no;
  }
  if (rawAmt) {
    const amount = parseAmount(rawAmt, 0);
    if (amount === null) return invalid($('opnAmt'), out, t('v.amountOpen'));
    body.amount = amount;
  }
  if (!pw) return invalid($('opnPw'), out, t('v.passwordOpen'));
  body.password = pw;
  busy(f, true);
  try {
    await submitOp(out, body, d => {
      if (!d) return;
      f.reset(); $('opnAmtHint').textContent = '';
      refreshAccounts({accountNo: d.accountNo, version: d.version}).then(() => { if (session && d.accountNo) showDetail(d.accountNo, false); });
    });
  } finally { busy(f, false); }
});

// ---- start ----
// A message that no longer applies goes: typing in a form clears that form's message, and the
// page-wide one (e.g. a welcome) goes with the next action.
document.addEventListener('input', e => {
  if (e.target.removeAttribute) e.target.removeAttribute('aria-invalid');
  const form = e.target.closest && e.target.closest('form');
  const out = form && (form.dataset.out ? $(form.dataset.out) : form.querySelector('.out'));
  if (out && !out.querySelector('button')) clear(out);
});
// A success message is news until the customer does something else.
document.addEventListener('submit', () => document.querySelectorAll('#pageOut, .out.ok').forEach(clear), true);
syncOp();
try {
  const s = JSON.parse(sessionStorage.getItem(STORE) || 'null');
  if (s && typeof s.token === 'string' && typeof s.userId === 'string' && (s.expiresAt == null || s.expiresAt > Date.now() + 5000)) startSession({token: s.token, expiresAt: s.expiresAt == null ? null : Number(s.expiresAt), userId: s.userId}, true);
  else sessionStorage.removeItem(STORE);
} catch (_) { /* no stored session */ }
})();
