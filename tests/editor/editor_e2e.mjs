// The VS Code extension end to end, in a real VS Code: code-server (VS Code 1.100 for the
// browser, from npm) in Debian's headless Chromium, driven by Playwright, against a real
// daemon. What a developer does and sees: open a repository, give the extension a token
// (kept in the editor's SecretStorage), check out a new branch in the integrated terminal and
// see the status bar name the new database branch; then reset that branch from the tree.
//
// Environment: ARBOR_BIN (the arbor binary), ARBOR_VSIX (the packaged extension), and
// optionally ARBOR_SCREENSHOTS (a directory: editor-status-bar.png, editor-tree.png and
// editor-workbench.png go there, as in docs/img; editor-failure.png after a failure)
// and CHROMIUM (default /usr/lib/chromium/chromium).
// Setup: tests/editor/prepare.sh && npm ci --prefix tests/editor.
// Run: node --test tests/editor/editor_e2e.mjs
//
// Every process it starts gets HOME, XDG_* and TMPDIR in one temporary directory (where
// code-server, VS Code and Chromium keep their state and sockets), removed afterwards, also
// after a failure.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { makeRepo, psql, sleep, startDaemon } from '../../editors/vscode/test/daemon.mjs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const run = promisify(execFile);
const here = path.dirname(new URL(import.meta.url).pathname);
const codeServer = path.join(here, 'node_modules', 'code-server', 'out', 'node', 'entry.js');

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: see the comment at the top of this file`);
  return path.resolve(v);
}
const vsix = need('ARBOR_VSIX');
const shots = process.env.ARBOR_SCREENSHOTS;
const chromiumPath = process.env.CHROMIUM || '/usr/lib/chromium/chromium';

let d; // the daemon
let sandbox; // HOME, XDG_*, TMPDIR of code-server and Chromium
let repo;
let server; // code-server
let browser;
let page;
let failed = false;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (server.exitCode !== null) throw new Error(`code-server exited: ${server.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${ms} ms`);
}

before(async () => {
  if (shots) fs.mkdirSync(shots, { recursive: true });
  d = await startDaemon();
  sandbox = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-editor-e2e-'));
  const dir = (name) => {
    fs.mkdirSync(path.join(sandbox, name), { recursive: true, mode: 0o700 });
    return path.join(sandbox, name);
  };
  const env = {
    PATH: process.env.PATH,
    LANG: 'C.UTF-8',
    SHELL: '/bin/bash',
    HOME: dir('home'),
    XDG_CONFIG_HOME: dir('config'),
    XDG_DATA_HOME: dir('data'),
    XDG_CACHE_HOME: dir('cache'),
    XDG_RUNTIME_DIR: dir('runtime'),
    TMPDIR: dir('tmp'),
  };

  // The repository: its team committed .arbor.toml; this clone has no hooks, so the
  // extension does the sync.
  repo = await makeRepo();
  fs.writeFileSync(
    path.join(repo.dir, '.arbor.toml'),
    'project = "default"\nparent = "production"\nttl = "7d"\nenv_file = ".env"\nvariable = "DATABASE_URL"\ndefault_branch = "main"\n',
  );
  fs.mkdirSync(path.join(repo.dir, 'migrations'));
  fs.writeFileSync(path.join(repo.dir, 'migrations', '001_qa.sql'), 'create table qa_run (id int);\n');
  await repo.git('add', '.arbor.toml', 'migrations');
  await repo.git('commit', '-qm', 'arbor');

  const userData = dir('user-data');
  const extensions = dir('extensions');
  // The user's settings; the token is not one of them (below).
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify({
      'arbor.path': d.bin,
      'arbor.apiUrl': d.api,
      'arbor.refreshSeconds': 3,
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'workbench.welcomePage.walkthroughs.openOnInstall': false,
      'telemetry.telemetryLevel': 'off',
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'update.mode': 'none',
      'security.workspace.trust.enabled': false,
      'terminal.integrated.defaultProfile.linux': 'bash',
      'terminal.integrated.enablePersistentSessions': false,
      'git.autoRepositoryDetection': true,
    }),
  );
  const config = path.join(sandbox, 'code-server.yaml');
  fs.writeFileSync(config, 'auth: none\ncert: false\n');
  const common = ['--config', config, '--user-data-dir', userData, '--extensions-dir', extensions];
  await run(process.execPath, [codeServer, ...common, '--install-extension', vsix], { env });

  const port = await freePort();
  const log = fs.openSync(path.join(sandbox, 'code-server.log'), 'a');
  server = spawn(
    process.execPath,
    [codeServer, ...common, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`,
      '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', repo.dir],
    { env, detached: true, stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  await waitForHttp(`http://127.0.0.1:${port}/healthz`, 30000);

  browser = await chromium.launchPersistentContext(dir('chromium-profile'), {
    executablePath: chromiumPath,
    headless: true,
    env,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(repo.dir)}`);
  await page.locator('.monaco-workbench').waitFor({ timeout: 60000 });
});

after(async () => {
  await browser?.close().catch(() => {});
  if (server && server.exitCode === null) {
    try {
      process.kill(-server.pid, 'SIGTERM');
    } catch {}
    for (let i = 0; i < 50 && server.exitCode === null; i++) await sleep(100);
    try {
      process.kill(-server.pid, 'SIGKILL');
    } catch {}
  }
  if (failed && sandbox) {
    const log = path.join(sandbox, 'code-server.log');
    if (fs.existsSync(log)) console.error(fs.readFileSync(log, 'utf8').slice(-5000));
  }
  if (repo) fs.rmSync(repo.dir, { recursive: true, force: true });
  if (sandbox) fs.rmSync(sandbox, { recursive: true, force: true });
  await d?.stop();
});

// The extension's status bar item: the one with the database icon.
const statusItem = () =>
  page.locator('#workbench\\.parts\\.statusbar .statusbar-item').filter({ has: page.locator('.codicon-database') });

// Runs a command from the command palette by its title.
async function palette(title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor();
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor();
  await page.keyboard.press('Enter');
}

async function shot(locator, name) {
  if (shots) await locator.screenshot({ path: path.join(shots, name) });
}

test('the status bar follows a checkout in the terminal; the tree resets the branch', async () => {
  try {
    await checkoutAndReset();
  } catch (e) {
    failed = true;
    if (shots) await page?.screenshot({ path: path.join(shots, 'editor-failure.png') }).catch(() => {});
    throw e;
  }
});

async function checkoutAndReset() {
  // The extension is active once its item is in the status bar; the palette lists its
  // commands from then on.
  await statusItem().waitFor({ timeout: 60000 });
  // The token, from the command palette into the editor's SecretStorage.
  await palette('Arbor: Set API token');
  const box = page.locator('.quick-input-widget input[type="password"]');
  await box.waitFor();
  await box.fill(d.token);
  await page.keyboard.press('Enter');
  await statusItem().filter({ hasText: /production · / }).waitFor({ timeout: 30000 });
  assert.match((await statusItem().innerText()).trim(), /^production · (ACTIVE|IDLE) · no expiry/);

  // A checkout in the integrated terminal.
  await palette('Terminal: Create New Terminal');
  const terminal = page.locator('.terminal-wrapper.active .xterm');
  await terminal.waitFor();
  await terminal.click();
  await sleep(1000); // the shell starts; the terminal keeps what is typed before its prompt
  await page.keyboard.type('git checkout -b feature/Add-Email\n');

  const item = statusItem().filter({ hasText: /feature-add-email · IDLE · expires in/ });
  await item.waitFor({ timeout: 30000 });
  assert.match((await item.innerText()).trim(), /^feature-add-email · IDLE · expires in 6d23h$/);
  const names = JSON.parse((await d.arbor(['-o', 'json', 'branch', 'list'])).stdout).branches.map((b) => b.name);
  assert.ok(names.includes('projects/default/branches/feature-add-email'));
  assert.match(fs.readFileSync(path.join(repo.dir, '.env'), 'utf8'), /^DATABASE_URL=postgresql:\/\/owner:[^@]+@127\.0\.0\.1:\d+\/postgres/m);

  // The tree: the branch under its parent, marked as the current git branch's.
  await page.locator('.activitybar [aria-label^="Arbor"]').first().click();
  const row = page.locator('.monaco-list-row', { hasText: 'feature-add-email' });
  await row.waitFor({ timeout: 30000 });
  await page.locator('.monaco-list-row', { hasText: 'production' }).waitFor();
  assert.match(await row.innerText(), /feature-add-email\s*IDLE · expires in 6d23h ← feature\/Add-Email/);

  // The migration ran on the branch; saving the migration file shows the schema diff
  // against the parent, rendered by the built-in markdown preview.
  await psql(d, 'feature-add-email', 'create table qa_run (id int); insert into qa_run values (1)');
  await page.keyboard.press('Control+P');
  await page.locator('.quick-input-widget input').fill('001_qa.sql');
  await page.locator('.quick-input-list .monaco-list-row', { hasText: '001_qa.sql' }).first().waitFor();
  await page.keyboard.press('Enter');
  await page.locator('.tab.active', { hasText: '001_qa.sql' }).waitFor();
  await page.locator('.monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type('-- checked\n');
  await page.keyboard.press('Control+S');
  await page.locator('.tab', { hasText: 'Preview feature-add-email.md' }).waitFor({ timeout: 30000 });
  const preview = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
  await preview.locator('h3', { hasText: 'Schema diff production → feature-add-email' }).waitFor({ timeout: 30000 });
  await preview.locator('td', { hasText: 'public.qa_run' }).first().waitFor();

  // Screenshots for docs/editor.md: a wider side bar, no hover.
  const sash = await page.locator('#workbench\\.parts\\.sidebar').boundingBox();
  await page.mouse.move(sash.x + sash.width, 400);
  await page.mouse.down();
  await page.mouse.move(sash.x + sash.width + 200, 400, { steps: 5 });
  await page.mouse.up();
  await page.mouse.move(900, 700);
  await sleep(500);
  if (shots) {
    const bar = await page.locator('#workbench\\.parts\\.sidebar').boundingBox();
    await page.screenshot({ path: path.join(shots, 'editor-tree.png'), clip: { ...bar, height: 130 } });
  }
  await shot(page.locator('#workbench\\.parts\\.statusbar'), 'editor-status-bar.png');
  if (shots) await page.screenshot({ path: path.join(shots, 'editor-workbench.png') });

  // QA is done: a reset from the tree gives the branch its parent's state again.
  await row.click({ button: 'right' });
  const reset = page.locator('.monaco-menu .action-label', { hasText: 'Reset to parent' });
  await reset.waitFor();
  await sleep(300); // the menu takes no click while it opens
  await reset.click();
  const dialog = page.locator('.monaco-dialog-box');
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /Reset feature-add-email to the current state of production\?/);
  await dialog.locator('.monaco-button', { hasText: 'Reset' }).click();
  await page.locator('.notifications-toasts', { hasText: 'Reset feature-add-email to production.' }).waitFor({ timeout: 30000 });
  assert.equal(await psql(d, 'feature-add-email', "select to_regclass('public.qa_run') is null"), 't');
}
