// The web console end to end: Debian's Chromium, driven by Playwright, against a real daemon
// that the caller started (tests/integration/console_test.cc). What a user does and sees:
// logging in, the branch tree, creating (also at a point in time), deleting, a refusal, the
// live updates, the diff and insight views, and that the session cannot be stolen by script
// or used without its CSRF token.
//
// Environment: ARBOR_CONSOLE_URL (the API's base URL, which serves the console too),
// ARBOR_ADMIN_TOKEN, ARBOR_BIN (the arbor binary), ARBOR_HOME (its data directory), and
// optionally ARBOR_BROWSER_PROFILE (a directory for Chromium's profile; default a new
// temporary one), ARBOR_SCREENSHOTS (a directory for PNGs of the views) and CHROMIUM.
//
// Run: node --test tests/console/console_test.mjs
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

const require = createRequire(new URL('../../console/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const run = promisify(execFile);

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: see the comment at the top of this file`);
  return v;
}
const base = need('ARBOR_CONSOLE_URL').replace(/\/$/, '');
const token = need('ARBOR_ADMIN_TOKEN');
const arbor = need('ARBOR_BIN');
const home = need('ARBOR_HOME');
const shots = process.env.ARBOR_SCREENSHOTS;
const P = 'default';

// The REST API with the admin token, as the CLI would call it.
async function api(method, p, body) {
  const res = await fetch(`${base}/api/2.0/${p}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      'Content-Type': 'application/json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json().catch(() => ({})) };
}

// psql on the branch's read-write endpoint, with a fresh token as the password (from the
// environment: a secret never goes in argv).
async function psql(branch, sql) {
  const eps = await api('GET', `postgres/projects/${P}/branches/${branch}/endpoints`);
  const ep = eps.json.endpoints.find((e) => e.spec.endpoint_type === 'ENDPOINT_TYPE_READ_WRITE');
  const cred = await api('POST', 'postgres/credentials', { endpoint: ep.name });
  assert.equal(cred.status, 200, JSON.stringify(cred.json));
  const { stdout } = await run(
    'psql',
    [ep.status.connection_string, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    {
      env: {
        ...process.env,
        PGPASSWORD: cred.json.token,
        PGCONNECT_TIMEOUT: '60',
      },
    },
  );
  return stdout.trim();
}

// The browser runs in UTC: a date-time field's value is the ISO time without the Z.
const localTime = (d) => d.toISOString().slice(0, 23);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let context;
let page;
let profile;
const row = (id) => page.locator(`.tree [data-branch="${id}"]`);
const panel = () => page.locator('aside.panel');
const dialog = () => page.getByRole('dialog');

async function shot(name) {
  if (shots)
    await page.screenshot({
      path: path.join(shots, `console-${name}.png`),
      fullPage: true,
    });
}

async function select(id) {
  await row(id).click();
  await panel().getByRole('heading', { name: id, exact: true }).waitFor();
}

before(async () => {
  // A fresh profile each run, removed afterwards.
  profile = process.env.ARBOR_BROWSER_PROFILE;
  if (profile) fs.mkdirSync(profile, { recursive: true });
  else profile = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-console-chromium-'));
  if (shots) fs.mkdirSync(shots, { recursive: true });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timezoneId: 'UTC',
    viewport: { width: 1280, height: 860 },
  });
  context.setDefaultTimeout(20_000);
  page = context.pages()[0] ?? (await context.newPage());
});

after(async () => {
  await context?.close().catch(() => {});
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test('a wrong token shows the API\u2019s message; the admin token logs in', async () => {
  const refused = await fetch(`${base}/api/2.0/console/session`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: 'arbor_wrong' }),
  });
  assert.equal(refused.status, 401);
  const { message } = await refused.json();
  assert.ok(message);

  await page.goto(base + '/');
  await page.getByLabel('API token').fill('arbor_wrong');
  await page.getByRole('button', { name: 'Log in' }).click();
  assert.equal(await page.getByRole('alert').textContent(), message);

  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await row('production').waitFor();
});

test('a branch made in the console (no expiry) appears in the tree', async () => {
  await select('production');
  await panel().getByRole('button', { name: 'New branch from production' }).click();
  await dialog().getByLabel('Name', { exact: true }).fill('console-dev');
  await dialog().getByLabel('no expiry').check();
  await dialog().getByRole('button', { name: 'Create' }).click();
  await dialog().waitFor({ state: 'detached' });
  await row('console-dev').waitFor();
  const b = (await api('GET', `postgres/projects/${P}/branches/console-dev`)).json;
  assert.equal(b.status.source_branch, `projects/${P}/branches/production`);
  assert.equal(b.status.expire_time, undefined);
  assert.equal(await row('console-dev').locator('.expiry').textContent(), 'never');
});

let between; // a time between the first and the second row on production

test('a branch at a point in time picked in the console has only the rows of then', async () => {
  await psql('production', 'create table items (id int primary key); insert into items values (1)');
  await sleep(1000);
  // Whole milliseconds that Chromium's date-time field keeps as typed (it drops trailing zeros).
  between = new Date(Math.floor(Date.now() / 1000) * 1000 + 123);
  await sleep(1000);
  await psql('production', 'insert into items values (2)');

  await select('production');
  await panel().getByRole('button', { name: 'New branch from production' }).click();
  await dialog().getByLabel('Name', { exact: true }).fill('console-pitr');
  await dialog().getByLabel('the parent as it was at a point in time').check();
  await dialog().getByLabel('Exact time').fill(localTime(between));
  await dialog().getByLabel('no expiry').check();
  await shot('create-dialog');
  await dialog().getByRole('button', { name: 'Create' }).click();
  await dialog().waitFor({ state: 'detached' });
  await row('console-pitr').waitFor();

  const b = (await api('GET', `postgres/projects/${P}/branches/console-pitr`)).json;
  assert.equal(Date.parse(b.status.source_branch_time), between.getTime());
  assert.equal(
    await psql('console-pitr', "select string_agg(id::text, ',' order by id) from items"),
    '1',
  );
});

test('a branch deleted in the console (after its confirmation) leaves the tree', async () => {
  await select('console-pitr');
  await panel().getByRole('button', { name: 'Delete' }).click();
  await dialog().getByRole('button', { name: 'Delete' }).click();
  await row('console-pitr').waitFor({ state: 'detached' });
  assert.equal((await api('GET', `postgres/projects/${P}/branches/console-pitr`)).status, 404);
});

test('deleting a protected branch shows the API\u2019s refusal and keeps it', async () => {
  const made = await api('POST', `postgres/projects/${P}/branches?branch_id=console-keep`, {
    spec: { no_expiry: true, is_protected: true },
  });
  assert.equal(made.status, 200, JSON.stringify(made.json));
  await select('console-keep');
  await panel().getByRole('button', { name: 'Delete' }).click();
  await dialog().getByRole('button', { name: 'Delete' }).click();
  const shown = await dialog().getByRole('alert').textContent();
  const refusal = await api('DELETE', `postgres/projects/${P}/branches/console-keep`);
  assert.equal(refusal.status, 409);
  assert.equal(shown, refusal.json.message);
  await dialog().getByRole('button', { name: 'Close' }).click();
  assert.equal(await row('console-keep').count(), 1);
  assert.equal(await row('console-keep').locator('.badge.protected').count(), 1);
});

test('a branch made with the CLI appears without a reload', async () => {
  await page.evaluate(() => (window.notReloaded = true));
  await run(arbor, ['branch', 'create', 'console-cli', '--no-expiry'], {
    env: { ...process.env, ARBOR_HOME: home },
  });
  await row('console-cli').waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.notReloaded), true);
  await shot('tree');
});

test('the diff view shows the schema diff and the data diff against a past state', async () => {
  await page.getByRole('link', { name: 'Diff' }).click();
  await page.locator('select[name="from"]').selectOption({ label: 'console-dev' });
  await page.locator('select[name="to"]').selectOption({ label: 'production' });
  await page.getByRole('button', { name: 'Compare' }).click();
  const schema = page.getByRole('region', { name: 'Schema diff' });
  const table = schema
    .locator('tr')
    .filter({ has: page.getByText('public.items', { exact: true }) });
  await table.waitFor({ timeout: 30_000 });
  assert.deepEqual((await table.locator('td').allTextContents()).slice(0, 2), ['added', 'table']);
  const data = page.getByRole('region', { name: 'Data diff' });
  await data.getByText('public.items').first().waitFor({ timeout: 30_000 });

  // production now against production between the two rows: row 2 is only in production.
  await page.locator('select[name="from"]').selectOption({ label: 'production' });
  await page.getByLabel('as it was at a point in time').check();
  await page.getByLabel('Exact time').fill(localTime(between));
  await page.getByRole('button', { name: 'Compare' }).click();
  await data.locator('code', { hasText: 'production@' }).waitFor({ timeout: 30_000 });
  const items = data.locator('tr', { hasText: 'public.items' });
  assert.deepEqual(await items.locator('td.num').allTextContents(), ['1', '0', '0']);
  await shot('diff');
});

test('insight draws written bytes over time and the store against logical sizes', async () => {
  await page.getByRole('link', { name: 'Insight' }).click();
  await page
    .getByRole('img', { name: 'Written bytes per hour' })
    .or(page.getByText('Nothing was written'))
    .waitFor();
  await page.getByRole('img', { name: 'Store against logical sizes' }).waitFor();
  assert.match(await page.locator('.insight figcaption').last().textContent(), /store/i);
  await shot('insight');
});

test('the session cookie is out of scripts\u2019 reach, and a change without the CSRF header is refused', async () => {
  const cookies = await context.cookies(base);
  assert.ok(cookies.length > 0, 'the login set no cookie');
  const seen = await page.evaluate(() => document.cookie);
  for (const c of cookies) {
    assert.equal(c.httpOnly, true, c.name);
    assert.equal(c.sameSite, 'Strict', c.name);
    assert.ok(!seen.includes(c.value), `document.cookie shows ${c.name}`);
  }
  const status = await page.evaluate(async (p) => {
    const res = await fetch(`/api/2.0/postgres/projects/${p}/branches?branch_id=console-csrf`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ spec: { no_expiry: true } }),
    });
    return res.status;
  }, P);
  assert.equal(status, 403);
  assert.equal((await api('GET', `postgres/projects/${P}/branches/console-csrf`)).status, 404);
});
