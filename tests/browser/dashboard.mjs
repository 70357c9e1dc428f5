// The dashboard in headless Chromium (Debian's /usr/bin/chromium) through
// playwright-core; tests/e2e/test_dashboard.py sets up the collector and
// passes its URL, tokens and customers in DESKPULSE_DASHBOARD_TEST.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';

const setup = JSON.parse(process.env.DESKPULSE_DASHBOARD_TEST);
const require = createRequire(path.join(process.env.NODE_PATH, 'package.json'));
const { chromium } = require('playwright-core');
let browser;

before(async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});
after(async () => { await browser.close(); });

/// A page that records console errors, page errors and failed requests.
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // A request cut short by the next navigation is not a failure.
  page.on('requestfailed', (r) => {
    if (r.failure()?.errorText !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  return { page, problems, context };
}

async function logIn(page, token) {
  await page.goto(setup.url);
  await page.fill('#token', token);
  await page.click('button[type=submit]');
}

const shot = (page, name) => page.screenshot({ path: path.join(setup.artifacts, `${name}.png`), fullPage: true });

test('a vendor logs in and sees the fleet table with every customer', async () => {
  const { page, problems, context } = await openPage();
  const response = await page.goto(setup.url);
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(response.headers()['x-content-type-options'], 'nosniff');
  await logIn(page, setup.vendor);
  await page.waitForSelector('body[data-painted=fleet]');
  const names = await page.$$eval('#fleet tbody tr td:first-child a', (as) => as.map((a) => a.textContent));
  for (const name of setup.customers) assert.ok(names.includes(name), `${name} is in the fleet table: ${names}`);
  // Risk, LHI, a sparkline on every row; sorting by name is linkable.
  assert.ok(await page.$$eval('#fleet tbody tr svg.spark', (s) => s.length) === names.length);
  // The book recorded today's snapshots: every sparkline shows at least a point.
  await page.waitForFunction(() => [...document.querySelectorAll('#fleet svg.spark')].every((s) => s.querySelector('circle')),
    null, { timeout: 1000 }).catch(async () => {
    await page.reload();
    await page.waitForSelector('body[data-painted=fleet]');
  });
  const drawn = await page.$$eval('#fleet svg.spark', (s) => s.map((x) => x.querySelectorAll('circle').length));
  assert.ok(drawn.every((n) => n > 0), `sparklines drawn: ${drawn}`);
  await page.click('#fleet th button:text("Customer")');
  await page.waitForFunction(() => location.hash.includes('sort=name'));
  await page.waitForSelector('body[data-painted=fleet]');
  const sorted = await page.$$eval('#fleet tbody tr td:first-child a', (as) => as.map((a) => a.textContent));
  assert.deepEqual(sorted, [...sorted].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  await shot(page, 'fleet');
  assert.deepEqual(problems, []);
  await context.close();
});

test('a customer view renders its charts with data', async () => {
  const { page, problems, context } = await openPage();
  await logIn(page, setup.vendor);
  await page.waitForSelector('body[data-painted=fleet]');
  await page.click(`#fleet a:text-is("Fabrikam Logistics")`);
  await page.waitForSelector('body[data-painted=customer]');
  await page.waitForFunction(() => document.querySelectorAll('.uplot canvas').length >= 5);
  const charts = await page.$$eval('.uplot', (u) => u.length);
  assert.ok(charts >= 5, `${charts} charts`);
  // The canvases hold drawn pixels, not a blank chart.
  const inked = await page.$$eval('.uplot canvas', (cs) => cs.map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  }));
  assert.ok(inked.every((n) => n > 100), `every chart is drawn: ${inked}`);
  assert.ok(await page.$$eval('#drivers tbody tr', (r) => r.length) > 0, 'drivers are listed');
  assert.ok(await page.$$eval('#peripherals tbody tr', (r) => r.length) > 0, 'peripherals are listed');
  // The collector's catalog gave the simulated devices (sent without a verdict) theirs.
  const verdicts = await page.$$eval('#peripherals tbody tr td:nth-child(2)', (t) => t.map((x) => x.firstChild.textContent));
  assert.ok(verdicts.some((v) => ['supported', 'partial', 'unsupported'].includes(v)), `verdicts: ${verdicts}`);
  assert.ok(await page.$$eval('#worst tbody tr', (r) => r.length) > 0, 'worst endpoints are listed');
  assert.ok(await page.$$eval('.stack div', (d) => d.length) >= 5, 'the boot phases are drawn');
  const captions = await page.$$eval('.caption', (c) => c.map((x) => x.textContent).join('\n'));
  assert.match(captions, /endpoints reporting/);
  assert.match(captions, /\(30 days\)/);
  // An endpoint: its report, history and devices.
  await page.click('#worst tbody tr:first-child a');
  await page.waitForSelector('body[data-painted=endpoint]');
  assert.ok(await page.$$eval("#devices tbody tr", (r) => r.length) > 0, "the endpoint's devices from the store");
  await page.waitForSelector('.uplot canvas');
  await shot(page, 'endpoint');
  await page.goBack();
  await page.waitForSelector('body[data-painted=customer]');
  await shot(page, 'customer');
  assert.deepEqual(problems, []);
  await context.close();
});

test('a customer-admin sees only its own customer, through the UI and by URL', async () => {
  const { page, context } = await openPage();
  await logIn(page, setup.admin);
  await page.waitForSelector('body[data-painted=customer]');
  assert.ok((await page.textContent('h1')).startsWith('Contoso Legal '));
  assert.equal(await page.$('#fleet'), null, 'no fleet table');
  assert.equal(await page.$('#crumbs a[href="#/fleet"]'), null, 'no link to a fleet');
  // The fleet's URL leads home; another customer's URL shows nothing of it.
  await page.goto(`${setup.url}#/fleet`);
  await page.waitForFunction((id) => location.hash === `#/customers/${id}`, setup.admin_customer);
  for (const hash of [`#/customers/${setup.other_customer}`, `#/customers/${setup.other_customer}/endpoints/1`]) {
    await page.goto(`${setup.url}${hash}`);
    await page.waitForSelector('[role=alert]');
    const text = await page.textContent('main');
    assert.match(text, /Not found/);
    assert.doesNotMatch(text, /Fabrikam/);
  }
  await shot(page, 'customer-admin-refused');
  await context.close();
});

test('markup in customer, site and device names shows as text', async () => {
  const { page, problems, context } = await openPage();
  await logIn(page, setup.vendor);
  await page.waitForSelector('body[data-painted=fleet]');
  const name = await page.textContent(`#fleet tr[data-customer="${setup.evil.id}"] td:first-child a`);
  assert.equal(name, setup.evil.name);
  await page.goto(`${setup.url}#/customers/${setup.evil.id}`);
  await page.waitForSelector('body[data-painted=customer]');
  assert.equal(await page.textContent('h1'), setup.evil.name + ' ' + await page.textContent('h1 .badge'));
  assert.match(await page.textContent('main'), new RegExp(setup.evil.site.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  await page.click('#worst tbody tr:first-child a');
  await page.waitForSelector('body[data-painted=endpoint]');
  const devices = await page.$$eval('#devices tbody td:first-child', (t) => t.map((x) => x.textContent));
  assert.ok(devices.includes(setup.evil.device), `the device's name as text: ${devices}`);
  // Nothing ran and no element came from the markup.
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.$$eval('main img, main script, main b', (e) => e.length), 0);
  await shot(page, 'markup-as-text');
  assert.deepEqual(problems, []);
  await context.close();
});
