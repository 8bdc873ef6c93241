// The customer's web page in a real browser (Debian's Chromium, headless, driven by playwright-core),
// at phone and desktop sizes, in Korean and English: sign up, open an account with an opening
// deposit, deposit, a wrong password, withdraw too much, withdraw, deposits made through the API
// appearing without a reload, history page by page, a second account starting on no operation, a
// transfer to it (seen in both histories with the other account), a transfer to a number that does
// not exist (the money comes back) and one over the balance, the statement downloaded as a CSV file,
// the language switch keeping the session, close, log out.
//
// Fails on any console error (a missing text logs one, so does a CSP violation), any page error, any
// answer >= 500, and any element wider than the viewport. Writes a screenshot of every step.
//
//   node web.mjs --url http://127.0.0.1:PORT --out DIR [--chromium /usr/bin/chromium]
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const BASE = args.url;
const OUT = args.out;
const CHROMIUM = args.chromium || '/usr/bin/chromium';
if (!BASE || !OUT) {
  console.error('usage: node web.mjs --url URL --out DIR [--chromium PATH]');
  process.exit(64);
}
fs.mkdirSync(OUT, {recursive: true});

const WAIT = 20000;
const RUNS = [
  {name: 'phone-ko', viewport: {width: 390, height: 844}, locale: 'ko-KR', lang: 'ko', mobile: true, timezone: 'Asia/Seoul'},
  {name: 'phone-en', viewport: {width: 360, height: 740}, locale: 'en-US', lang: 'en', mobile: true, timezone: 'America/New_York'},
  {name: 'desktop-en', viewport: {width: 1280, height: 800}, locale: 'en-US', lang: 'en', mobile: false, timezone: 'Europe/London'},
  {name: 'desktop-ko', viewport: {width: 1440, height: 900}, locale: 'ko-KR', lang: 'ko', mobile: false, timezone: 'Asia/Seoul'},
];

function fail(message) { throw new Error(message); }
function check(cond, message) { if (!cond) fail(message); }

// The bank's v1 API from outside the page (another device of the same customer).
async function call(method, p, {token, body, key} = {}) {
  const headers = {'Content-Type': 'application/json'};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (key) headers['Idempotency-Key'] = key;
  const res = await fetch(BASE + p, {method, headers, body: body ? JSON.stringify(body) : undefined});
  const text = await res.text();
  return {status: res.status, body: text ? JSON.parse(text) : null};
}

async function run(browser, spec) {
  const problems = [];
  const context = await browser.newContext({viewport: spec.viewport, locale: spec.locale, timezoneId: spec.timezone,
    isMobile: spec.mobile, hasTouch: spec.mobile, deviceScaleFactor: 1, acceptDownloads: true});
  const page = await context.newPage();
  // Chromium itself logs every 4xx answer as a console error; the bank's refusals (a wrong password,
  // too little money) are expected answers, shown to the customer. Anything else logged as an error
  // fails, and 5xx answers fail below.
  page.on('console', m => {
    if (m.type() !== 'error') return;
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) return;
    problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', e => problems.push(`page error: ${e.message}`));
  page.on('response', r => { if (r.status() >= 500) problems.push(`${r.status()} from ${r.request().method()} ${r.url()}`); });
  page.on('dialog', d => d.accept());
  const dir = path.join(OUT, spec.name);
  fs.mkdirSync(dir, {recursive: true});
  let step = 0;

  // After each step: no element wider than the viewport, no problem so far, a screenshot.
  async function done(what) {
    step += 1;
    const file = path.join(dir, `${String(step).padStart(2, '0')}-${what}.png`);
    await page.screenshot({path: file, fullPage: true});
    const wide = await page.evaluate(() => {
      const width = document.documentElement.clientWidth;
      const out = [];
      if (document.documentElement.scrollWidth > width) out.push(`page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
      for (const e of document.querySelectorAll('body *')) {
        const r = e.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (getComputedStyle(e).position === 'absolute' && r.right < 0) continue;   // the skip link, parked off-screen
        if (r.right > width + 0.5 || r.left < -0.5) out.push(`${e.tagName.toLowerCase()}#${e.id}.${e.className} spans ${Math.round(r.left)}..${Math.round(r.right)} of ${width}`);
      }
      // Basics a screen reader needs: every visible field has a label, every button a name.
      for (const e of document.querySelectorAll('input, button')) {
        if (e.offsetParent === null) continue;
        if (e.tagName === 'INPUT' && e.labels.length === 0) out.push(`input#${e.id} has no label`);
        if (e.tagName === 'BUTTON' && !(e.getAttribute('aria-label') || e.textContent.trim())) out.push(`button#${e.id} has no name`);
      }
      return out.slice(0, 5);
    });
    for (const w of wide) problems.push(`${what}: ${w}`);
    if (problems.length) fail(`${spec.name} at step "${what}":\n  ${problems.join('\n  ')}\n  (screenshot ${file})`);
    console.log(`  ${spec.name}: ${what} ok`);
  }
  const text = sel => page.locator(sel).innerText();
  const waitText = async (sel, want, what) => {
    try {
      await page.waitForFunction(([s, w]) => {
        const e = document.querySelector(s);
        return e && e.offsetParent !== null && e.innerText.includes(w);
      }, [sel, want], {timeout: WAIT});
    } catch (_) {
      const had = await page.locator(sel).innerText().catch(() => '(no element)');
      fail(`${spec.name}: ${what}: expected ${JSON.stringify(want)} in ${sel}, found ${JSON.stringify(had)}`);
    }
  };
  const choose = async type => {
    await page.locator(`input[name=opType][value=${type}]`).click();
  };

  try {
    await journey();
  } catch (e) {
    await page.screenshot({path: path.join(dir, 'failed.png'), fullPage: true}).catch(() => {});
    throw new Error(`${spec.name}: ${e.message}\n  (screenshot ${path.join(dir, 'failed.png')})`);
  } finally {
    await context.close();
  }

  async function journey() {
  const response = await page.goto(BASE + '/', {waitUntil: 'load'});
  const headers = response.headers();
  check(/script-src 'self'/.test(headers['content-security-policy'] || ''), 'the page has a strict CSP: ' + headers['content-security-policy']);
  check(headers['x-content-type-options'] === 'nosniff', 'nosniff');
  check(headers['referrer-policy'] === 'no-referrer', 'referrer policy');
  const lang = await page.getAttribute('html', 'lang');
  check(lang === spec.lang, `${spec.name}: Accept-Language ${spec.locale} gives lang=${lang}`);
  const M = await page.evaluate(() => JSON.parse(document.getElementById('messages').textContent));
  const t = (key, vars = {}) => {
    check(typeof M[key] === 'string', `text ${key} exists`);
    return M[key].replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  };
  const won = n => t('money', {n: new Intl.NumberFormat(spec.lang === 'ko' ? 'ko-KR' : 'en-US').format(n)});
  if (spec.lang === 'ko') {
    check((await text('#loginForm h2')) === '로그인', 'the Korean page says 로그인');
    check(won(12345) === '12,345원', 'amounts read 12,345원');
  } else {
    check((await text('#loginForm h2')) === 'Log in', 'the English page says Log in');
  }
  await done('start');

  // Sign up (which logs in).
  const user = `web-${spec.name}-${Date.now().toString(36)}@sk.com`;
  const password = 'pw-' + spec.name;
  await page.fill('#rgUser', user);
  await page.fill('#rgName', spec.lang === 'ko' ? '김하나' : 'Hana Kim');
  await page.fill('#rgPw', password);
  await page.locator('#regForm button[type=submit]').click();
  await page.locator('#bank').waitFor({state: 'visible', timeout: WAIT});
  await waitText('#pageOut', t('msg.welcome', {name: spec.lang === 'ko' ? '김하나' : 'Hana Kim'}), 'welcome');
  await waitText('#accEmpty', t('accounts.empty'), 'no accounts yet');
  await done('signed-up');

  // Open an account with an opening deposit; its card is shown.
  await page.fill('#opnAmt', '50000');
  await waitText('#opnAmtHint', won(50000), 'the amount is echoed');
  await page.fill('#opnPw', password);
  await page.locator('#openForm button[type=submit]').click();
  await page.locator('#detail').waitFor({state: 'visible', timeout: WAIT});
  const accountNo = (await text('#detNo')).trim();
  check(accountNo.length > 0, 'the account number is shown');
  await waitText('#opnOut', t('done.open', {no: accountNo}), 'opened');
  await waitText('#detBal', won(50000), 'opening balance');
  check(await page.locator('input[name=opType]:checked').count() === 0, 'the card starts on no operation');
  check(await page.locator('#opFields').isHidden(), 'no operation form before a choice');
  await done('opened');

  // Deposit.
  await choose('deposit');
  await page.fill('#opAmt', '20000');
  await page.fill('#opPw', password);
  await page.locator('#opBtn').click();
  await waitText('#opOut', t('done.deposit', {amount: won(20000), no: accountNo}), 'deposited');
  await waitText('#detBal', won(70000), 'balance after the deposit');
  check(await page.locator('input[name=opType]:checked').count() === 0, 'back to no operation after success');
  await done('deposited');

  // A wrong password: a human message, the code only behind the details toggle.
  await choose('withdraw');
  await page.fill('#opAmt', '1000');
  await page.fill('#opPw', 'not-the-password');
  await page.locator('#opBtn').click();
  await waitText('#opOut', t('err.step_up_failed'), 'wrong password');
  await done('wrong-password');

  // Withdraw too much: told the balance.
  await page.fill('#opAmt', '1000000');
  await page.fill('#opPw', password);
  await page.locator('#opBtn').click();
  await waitText('#opOut', t('err.insufficient_funds.balance', {balance: won(70000)}), 'insufficient funds with the balance');
  const visible = await page.locator('#opOut').innerText();
  check(!visible.includes('insufficient_funds') && !visible.includes('409'), `the code stays behind the toggle: ${visible}`);
  await page.locator('#opOut summary').click();
  await waitText('#opOut details', 'insufficient_funds', 'the details toggle shows the code');
  await done('insufficient-funds');

  // Withdraw; the stale error goes as soon as the customer types.
  await page.fill('#opAmt', '30000');
  check((await page.locator('#opOut').innerText()).trim() === '', 'typing clears the old error');
  await page.fill('#opPw', password);
  await page.locator('#opBtn').click();
  await waitText('#opOut', t('done.withdraw', {amount: won(30000), no: accountNo}), 'withdrawn');
  await waitText('#detBal', won(40000), 'balance after the withdrawal');
  await done('withdrawn');

  // Ten deposits from another device (the API): the page shows them without a reload.
  const login = await call('POST', '/api/v1/sessions', {body: {userId: user, password}});
  check(login.status === 200, 'API login: ' + JSON.stringify(login));
  for (let i = 0; i < 10; i++) {
    const r = await call('POST', '/api/v1/requests', {token: login.body.token, key: `${user}-${i}`,
      body: {type: 'deposit', accountNo, amount: 1000, password}});
    check(r.status === 200, 'API deposit: ' + JSON.stringify(r));
  }
  await waitText('#detBal', won(50000), 'deposits made elsewhere appear without a reload');
  await waitText(`#accList li[data-account="${accountNo}"] .bal`, won(50000), 'the list too');
  await done('refreshed-by-itself');

  // History page by page: 13 transactions, 10 on the first page.
  await page.waitForFunction(() => document.querySelectorAll('#txList li').length === 10, null, {timeout: WAIT});
  check(await page.locator('#txMore').isVisible(), 'a button for older transactions');
  await page.locator('#txMore').click();
  await page.waitForFunction(() => document.querySelectorAll('#txList li').length === 13, null, {timeout: WAIT});
  check(await page.locator('#txMore').isHidden(), 'no more pages');
  await waitText('#txList li:last-child', t('tx.type.open'), 'the oldest is the opening');
  await done('history');

  // A second account: its card starts on no operation, whatever was chosen on the first.
  await choose('close');
  await page.fill('#opnPw', password);
  await page.locator('#openForm button[type=submit]').click();
  await page.waitForFunction(no => {
    const d = document.getElementById('detNo');
    return d && d.textContent && d.textContent !== no;
  }, accountNo, {timeout: WAIT});
  const secondNo = (await text('#detNo')).trim();
  check(await page.locator('input[name=opType]:checked').count() === 0, 'the second card starts on no operation');
  await page.locator(`#accList li[data-account="${accountNo}"] button`).click();
  await waitText('#detNo', accountNo, 'back to the first account');
  check(await page.locator('input[name=opType]:checked').count() === 0, 'the first card starts on no operation too');
  await done('second-account');

  await transfers(accountNo, secondNo);
  await statement(accountNo, secondNo);

  // The language switch: remembered, and the session survives it.
  await page.locator('#lang').click();
  const other = spec.lang === 'ko' ? 'en' : 'ko';
  await page.waitForFunction(l => document.documentElement.lang === l, other, {timeout: WAIT});
  await page.locator('#bank').waitFor({state: 'visible', timeout: WAIT});
  await page.reload();
  check(await page.getAttribute('html', 'lang') === other, 'the chosen language is remembered over Accept-Language');
  await page.locator('#bank').waitFor({state: 'visible', timeout: WAIT});
  await done('switched-language');
  await page.locator('#lang').click();
  await page.waitForFunction(l => document.documentElement.lang === l, spec.lang, {timeout: WAIT});
  await page.locator('#bank').waitFor({state: 'visible', timeout: WAIT});
  await waitText('#detNo', accountNo, 'the shown account survives the switch');

  // Empty the account and close it.
  await choose('withdraw');
  await page.fill('#opAmt', '30000');
  await page.fill('#opPw', password);
  await page.locator('#opBtn').click();
  await waitText('#opOut', t('done.withdraw', {amount: won(30000), no: accountNo}), 'emptied');
  await waitText('#detBal', won(0), 'emptied');
  await choose('close');
  await page.fill('#opPw', password);
  await page.locator('#opBtn').click();
  await waitText('#opOut', t('done.close', {no: accountNo}), 'closed');
  await waitText('#detClosed', t('detail.closedNote'), 'the card says closed');
  await waitText(`#accList li[data-account="${accountNo}"]`, t('status.closed'), 'the list says closed');
  await done('closed');

  // Log out: the session ends at the bank too, and nothing of it stays on the page.
  const pageToken = await page.evaluate(() => JSON.parse(sessionStorage.getItem('onlinebank.session')).token);
  await page.locator('#logout').click();
  await page.locator('#auth').waitFor({state: 'visible', timeout: WAIT});
  await waitText('#liOut', t('msg.loggedOut'), 'logged out');
  check((await page.locator('#pageOut').innerText()).trim() === '', 'the welcome is gone');
  check(await page.evaluate(() => sessionStorage.length) === 0, 'no session left in the tab');
  let revoked = null;
  for (let i = 0; i < 30 && revoked !== 401; i++) {
    revoked = (await call('GET', '/api/v1/accounts', {token: pageToken})).status;
    if (revoked !== 401) await new Promise(r => setTimeout(r, 200));
  }
  check(revoked === 401, `the page's token is refused after logout (${revoked})`);
  const otherDevice = await call('GET', '/api/v1/accounts', {token: login.body.token});
  check(otherDevice.status === 200, 'the other device\'s session is untouched by this logout');
  await done('logged-out');

  if (spec.name === 'desktop-en') {
    // Wrong passwords until the lockout: the customer is told how long to wait.
    const [before] = t('err.locked_out.wait').split('{time}');
    for (let i = 0; i < 6; i++) {
      await page.fill('#liUser', user);
      await page.fill('#liPw', 'wrong-' + i);
      await page.locator('#loginForm button[type=submit]').click();
      await page.waitForFunction(() => document.getElementById('liOut').classList.contains('err'), null, {timeout: WAIT});
      if ((await text('#liOut')).includes(before.trim())) break;
    }
    await waitText('#liOut', before.charAt(0).toUpperCase() + before.slice(1).trim(), 'locked out, with the time left');
    check(/\d+ min|\d+ s/.test(await text('#liOut')), 'the time left is shown');
    await done('locked-out');
  }

  // Money to the customer's second account: the answer names it and the balance after; each
  // account's history shows the transfer with the other account. Then a number that does not exist
  // (the money comes back, and the page says so) and more than the balance.
  async function transfers(from, to) {
    const send = async (target, amount) => {
      await page.fill('#opTo', target);
      await page.fill('#opAmt', String(amount));
      await page.fill('#opPw', password);
      await page.locator('#opBtn').click();
    };
    await choose('transfer');
    check(await page.locator('#opTo').isVisible(), 'a transfer asks for the account to send to');
    await send(from, 20000);
    await waitText('#opOut', t('v.toSame'), 'not to the account itself');
    await send(to, 20000);
    await waitText('#opOut', t('done.transfer', {amount: won(20000), to}), 'transferred');
    await waitText('#opOut', t('done.balance', {amount: won(30000)}), 'the answer has the balance after');
    await waitText('#detBal', won(30000), 'balance after the transfer');
    await waitText('#txList li:first-child', t('tx.type.transfer_out'), 'the history shows the transfer');
    await waitText('#txList li:first-child', t('tx.to', {no: to}), 'with the account it went to');
    check(await page.locator('input[name=opType]:checked').count() === 0, 'back to no operation after the transfer');
    await done('transferred');

    const nowhere = 'no-such-' + Date.now().toString(36);
    await choose('transfer');
    await send(nowhere, 5000);
    await waitText('#opOut', t('err.transfer.account_not_found', {to: nowhere}), 'no such account: the money came back');
    await waitText('#txList li:first-child', t('tx.returnedFrom', {no: nowhere}), 'the history shows it coming back');
    await waitText('#detBal', won(30000), 'every won came back');
    await done('transfer-returned');

    await send(to, 1000000);
    await waitText('#opOut', t('err.insufficient_funds.balance', {balance: won(30000)}), 'a transfer over the balance');
    await done('transfer-insufficient');

    await page.locator(`#accList li[data-account="${to}"] button`).click();
    await waitText('#detNo', to, 'the second account');
    await waitText('#detBal', won(20000), 'the money arrived');
    await waitText('#txList li:first-child', t('tx.type.transfer_in'), 'the second account received it');
    await waitText('#txList li:first-child', t('tx.from', {no: from}), 'from the first account');
    await done('transfer-received');
    await page.locator(`#accList li[data-account="${from}"] button`).click();
    await waitText('#detNo', from, 'back to the first account');
  }

  // The statement: this month so far by default, downloaded as a CSV file (byte order mark, header
  // row, the transfer with its counterpart). The bank's days are Korea's: where this browser's
  // day is behind, the range reaches tomorrow.
  async function statement(no, other) {
    const days = await page.evaluate(() => {
      const iso = d => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
      const now = new Date();
      return {first: iso(new Date(now.getFullYear(), now.getMonth(), 1)), today: iso(now),
        tomorrow: iso(new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1))};
    });
    check(await page.inputValue('#stFrom') === days.first, `the statement starts on the 1st: ${await page.inputValue('#stFrom')}`);
    check(await page.inputValue('#stTo') === days.today, `the statement ends today: ${await page.inputValue('#stTo')}`);
    if (spec.name === 'desktop-en') {
      await page.fill('#stFrom', days.tomorrow);
      await page.locator('#stBtn').click();
      await waitText('#stOut', t('v.statementRange'), 'the first day after the last is refused');
      await page.fill('#stFrom', days.first);
    }
    if (spec.timezone !== 'Asia/Seoul') await page.fill('#stTo', days.tomorrow);
    const [from, to] = [await page.inputValue('#stFrom'), await page.inputValue('#stTo')];
    const [download] = await Promise.all([page.waitForEvent('download', {timeout: WAIT}), page.locator('#stBtn').click()]);
    const name = download.suggestedFilename();
    check(name === `statement-${no}-${from}-${to}.csv`, `the file's name: ${name}`);
    const bytes = fs.readFileSync(await download.path());
    fs.copyFileSync(await download.path(), path.join(dir, name));
    check(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf, 'the CSV starts with a byte order mark');
    const lines = bytes.subarray(3).toString('utf8').split(/\r?\n/);
    check(lines[0] === 'time,description,amount,balance,request_id,counterpart_account_no', `the header row: ${lines[0]}`);
    check(lines.some(l => l.includes(',transfer_out,-20000,') && l.endsWith(',' + other)), `the transfer's row:\n${lines.join('\n')}`);
    await waitText('#stOut', t('st.done', {from, to}), 'downloaded');
    await done('statement');
  }
  }
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
let code = 0;
try {
  for (const spec of RUNS) {
    console.log(`web: ${spec.name} (${spec.viewport.width}x${spec.viewport.height}, ${spec.locale})`);
    await run(browser, spec);
  }
  console.log(`web: all ${RUNS.length} runs passed; screenshots in ${OUT}`);
} catch (e) {
  console.error(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
