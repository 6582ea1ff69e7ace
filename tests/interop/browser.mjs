// Drives the demo page and the dashboard in Debian's headless Chromium (playwright-core, no downloaded browser).
//
//   node browser.mjs demo BASE_URL SCREENSHOT_DIR             the demo page: join, chat, every "try" button (http or https)
//   node browser.mjs dashboard BASE_URL ADMIN_KEY SCREENSHOT_DIR  login, live numbers, the connection list, Close
//   node browser.mjs login BASE_URL ADMIN_KEY PATH...          signs in from each admin URL given (e.g. /_sluice and /_sluice/)
//   node browser.mjs pubsub BASE_URL                           the demo's topic panel (the JS client on /chat) in two tabs
//   node browser.mjs client-restart BASE_URL                   the JS client in the page; prints SUBSCRIBED, the test
//                                                              restarts the gateway, the page reconnects and resubscribes
//
// Prints "OK <details>" and exits 0, or prints "FAIL <why>" and exits 1. Screenshots go to SCREENSHOT_DIR.
import { chromium } from 'playwright-core';
import { WebSocket } from 'ws';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [mode, base, ...rest] = process.argv.slice(2);
// An https BASE_URL is the gateway's self-signed demo certificate: Chromium is told to accept it.
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', ...(base.startsWith('https:') ? ['--ignore-certificate-errors'] : [])],
});
const errors = [];

function fail(message) {
  console.log(`FAIL ${message}${errors.length ? ` (page errors: ${errors.join(' | ')})` : ''}`);
  process.exit(1);
}

async function newPage({ socketsMayFail = false } = {}) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => errors.push(e.message));
  // While the gateway restarts, Chromium logs each refused WebSocket attempt: expected there, an error anywhere else.
  const expected = (text) => text.startsWith('Failed to load resource') || (socketsMayFail && text.startsWith('WebSocket connection to'));
  page.on('console', (m) => { if (m.type() === 'error' && !expected(m.text())) errors.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400 && !r.url().includes('/login')) errors.push(`${r.status()} ${r.url()}`); });
  return page;
}

async function demo(shots) {
  const page = await newPage();
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(base + '/');
  await page.fill('#name', 'ann');
  await page.click('#connect');
  await page.waitForSelector('#status.online', { timeout: 10000 });

  await page.fill('#text', 'hello from chromium');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelector('#messages').innerText.includes('hello from chromium'), null, { timeout: 10000 });

  // Each button sends what one policy stops or changes; the page lists the outcome it got back.
  const expectations = { password: 'password: ***', oversized: 'answered 413', burst: 'answered 429', invalid: 'answered 400' };
  for (const [button, text] of Object.entries(expectations)) {
    await page.click(`button[data-try="${button}"]`);
    await page.waitForFunction((t) => document.body.innerText.includes(t), text, { timeout: 10000 })
      .catch(() => fail(`after "${button}" the page never showed ${text}`));
    await page.waitForTimeout(1100); // let the rate limit's bucket refill so the next try is judged on its own
  }

  await page.screenshot({ path: join(shots, 'demo.png'), fullPage: true });
  if (errors.length) fail('the page logged errors');
  // Over https, say which schemes the page's WebSockets used (the test expects wss only).
  const schemes = [...new Set(sockets.map((u) => u.split(':')[0]))].join(',');
  console.log(base.startsWith('https:') ? `OK demo over ${schemes}` : 'OK demo');
}

// The rate chart's y axis (named in the canvas's aria-label): five different, falling values ending at 0.
async function checkAxis(page, when) {
  const label = await page.evaluate(() => document.querySelector('#chart').getAttribute('aria-label'));
  const values = (label.split('axis ')[1] ?? '').split(', ').map(Number);
  const falling = values.length === 5 && values[4] === 0 && values.every((v, i) => i === 0 || v < values[i - 1]);
  if (!falling) fail(`the chart's axis ${when} is not five falling values: "${label}"`);
}

async function dashboard(adminKey, shots) {
  const page = await newPage();
  await page.goto(base + '/_sluice/');
  if (adminKey) {
    await page.fill('input[name="key"]', 'wrong');
    await page.click('button[type="submit"]');
    await page.waitForSelector('#failed:not([hidden])', { timeout: 10000 }).catch(() => fail('a wrong key was not refused'));
    await page.fill('input[name="key"]', adminKey);
    await page.click('button[type="submit"]');
  }

  await page.waitForFunction(() => document.querySelector('#live-text')?.innerText === 'live', null, { timeout: 15000 })
    .catch(() => fail('the dashboard never went live'));
  await page.waitForFunction(() => document.querySelector('#connections').innerText === '0', null, { timeout: 15000 })
    .catch(() => fail('the dashboard did not start at 0 connections'));
  const chartBefore = await page.evaluate(() => document.querySelector('#chart').toDataURL());
  await checkAxis(page, 'at rest');

  // Now a client connects and talks: the count, the rate and the chart must follow.
  const ws = new WebSocket(base.replace('http', 'ws') + '/echo');
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  const traffic = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('tick'), 100);

  await page.waitForFunction(() => document.querySelector('#connections').innerText === '1', null, { timeout: 15000 })
    .catch(() => fail('the count did not go to 1 when a client connected'));
  await page.waitForFunction(() => document.querySelector('#cluster-connections').innerText === '1'
      && document.querySelector('#node-picker').options.length === 1, null, { timeout: 15000 })
    .catch(() => fail('the cluster totals or the node picker did not show this node and its connection'));
  await page.waitForFunction(() => parseFloat(document.querySelector('#rate-in').innerText) > 0, null, { timeout: 15000 })
    .catch(() => fail('the inbound message rate stayed at zero'));
  await page.waitForFunction((before) => document.querySelector('#chart').toDataURL() !== before, chartBefore, { timeout: 15000 })
    .catch(() => fail('the chart did not change'));
  await page.waitForSelector('#list button[data-close]', { timeout: 15000 }).catch(() => fail('the connection list is empty'));
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.httpOnly && c.sameSite === 'Strict');
  if (adminKey && !session) fail(`no HttpOnly SameSite=Strict cookie: ${JSON.stringify(cookies)}`);

  await page.waitForTimeout(2500); // a few chart points for the screenshot
  await checkAxis(page, 'with traffic');
  await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
  await page.click('#list button[data-close]');
  const result = await Promise.race([closed, new Promise((r) => setTimeout(() => r(null), 10000))]);
  clearInterval(traffic);
  if (!result) fail('the Close button did not close the connection');
  if (result.code !== 1008) fail(`Close closed with ${result.code}, not 1008`);
  await page.waitForFunction(() => document.querySelector('#connections').innerText === '0', null, { timeout: 15000 })
    .catch(() => fail('the count did not go back to 0'));
  if (errors.length) fail('the page logged errors');
  console.log(`OK dashboard closed ${result.code}`);
}

// Each URL in a fresh browser context (no cookie yet): the login page, the key, and the dashboard going live.
async function login(adminKey, paths) {
  for (const path of paths) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(base + path);
    await page.fill('input[name="key"]', adminKey);
    await page.click('button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#live-text')?.innerText === 'live', null, { timeout: 15000 })
      .catch(() => fail(`signing in from ${path} did not reach a live dashboard (at ${page.url()})`));
    await context.close();
  }

  if (errors.length) fail('the page logged errors');
  console.log(`OK login ${paths.join(' ')}`);
}

// The demo page's topic panel in two tabs: what one publishes, the other shows.
async function pubsub() {
  const response = await fetch(base + '/sluice-client.js');
  if (!response.ok || !response.headers.get('content-type').startsWith('text/javascript')) fail(`/sluice-client.js answered ${response.status} ${response.headers.get('content-type')}`);
  const [a, b] = [await newPage(), await newPage()];
  for (const page of [a, b]) {
    await page.goto(base + '/');
    await page.waitForSelector('#ps-status.online', { timeout: 15000 }).catch(() => fail('the topic panel never went online'));
    await page.waitForFunction(() => window.sluiceDemo.topics.includes('demo'), null, { timeout: 10000 });
  }
  // Subscribed on both before publishing: the ack resolves the page's subscribe.
  await b.evaluate(() => window.sluiceDemo.subscribe('demo'));
  await a.fill('#ps-text', 'hello through the client');
  await a.click('#ps-send');
  await b.waitForFunction(() => document.querySelector('#ps-messages').innerText.includes('hello through the client'), null, { timeout: 10000 })
    .catch(() => fail('the other tab never showed the published text'));
  if (errors.length) fail('the page logged errors');
  console.log('OK pubsub');
}

// The JS client in Chromium across a gateway restart: reconnect, resubscribe, receive again.
async function clientRestart() {
  const page = await newPage({ socketsMayFail: true });
  await page.goto(base + '/');
  await page.waitForFunction(() => window.sluiceDemo?.state === 'connected', null, { timeout: 15000 }).catch(() => fail('never connected'));
  await page.evaluate(async () => {
    window.trace = [];
    window.acks = [];
    window.sluiceDemo.on('state', (s) => window.trace.push(s.state));
    // Only answers to the resubscription count: the first subscribe's answer must not satisfy the wait below.
    window.sluiceDemo.on('subscribed', (s) => window.acks.push(window.trace.includes('reconnecting') ? `again:${s.topic}` : s.topic));
    await window.sluiceDemo.subscribe('demo');
  });
  console.log('SUBSCRIBED');
  await page.waitForFunction(() => window.trace.includes('reconnecting'), null, { timeout: 60000 }).catch(() => fail('the page never saw the gateway go'));
  await page.waitForFunction(() => window.sluiceDemo.state === 'connected' && window.acks.includes('again:demo'), null, { timeout: 90000 })
    .catch(() => fail('the page did not reconnect and resubscribe'));
  // A raw peer publishes: the page shows it without having subscribed again itself.
  const ws = new WebSocket(base.replace('http', 'ws') + '/chat');
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  ws.send(JSON.stringify({ op: 'publish', topic: 'demo', data: { text: 'after the restart' } }));
  await page.waitForFunction(() => document.querySelector('#ps-messages').innerText.includes('after the restart'), null, { timeout: 15000 })
    .catch(() => fail('the message after the restart never arrived'));
  ws.close();
  if (errors.length) fail('the page logged errors');
  const trace = await page.evaluate(() => window.trace.join(','));
  console.log(`OK client-restart ${trace.startsWith('disconnected,reconnecting') ? 'reconnected' : trace}`);
}

try {
  if (mode === 'pubsub') {
    await pubsub();
  } else if (mode === 'client-restart') {
    await clientRestart();
  } else if (mode === 'demo') {
    mkdirSync(rest[0], { recursive: true });
    await demo(rest[0]);
  } else if (mode === 'dashboard') {
    mkdirSync(rest[1], { recursive: true });
    await dashboard(rest[0], rest[1]);
  } else if (mode === 'login') {
    await login(rest[0], rest.slice(1));
  } else {
    fail(`unknown mode ${mode}`);
  }
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  await browser.close();
}
process.exit(0);
