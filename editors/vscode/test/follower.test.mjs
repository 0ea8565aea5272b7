// Keeping the database branch beside the git branch (src/follower.ts, src/git.ts), with real
// git repositories, checkouts made as from a terminal, and a real daemon. The CLI the
// extension runs is the real one behind a two-line script that logs its arguments, so the
// tests see how often the extension ran `arbor git sync`.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as arbor from '../out/arbor.js';
import { Follower, decide } from '../out/follower.js';
import { watchRepo } from '../out/git.js';
import { makeRepo, sleep, startDaemon } from './daemon.mjs';

let d;
let tmp;
let log; // one line per CLI run by the extension: its arguments
let s;
const repos = [];
before(async () => {
  d = await startDaemon();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-vscode-cli-'));
  log = path.join(tmp, 'calls.log');
  const wrapper = path.join(tmp, 'arbor');
  fs.writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> '${log}'\nexec '${d.bin}' "$@"\n`, { mode: 0o755 });
  s = { path: wrapper, api: d.api, token: d.token };
});
after(async () => {
  for (const r of repos) fs.rmSync(r.dir, { recursive: true, force: true });
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  await d?.stop();
});

function syncCalls() {
  const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n') : [];
  return lines.filter((l) => /^git sync\b/.test(l));
}

// A repository whose team committed .arbor.toml; whether this clone has the hooks is up to
// the test.
async function teamRepo() {
  const repo = await makeRepo(d.env);
  repos.push(repo);
  fs.writeFileSync(
    path.join(repo.dir, '.arbor.toml'),
    'project = "default"\nparent = "production"\nttl = "7d"\nenv_file = ".env"\nvariable = "DATABASE_URL"\ndefault_branch = "main"\n',
  );
  await repo.git('add', '.arbor.toml');
  await repo.git('commit', '-qm', 'arbor');
  return repo;
}

// Follows `repo` as the extension does: the file watcher reports HEAD's moves.
async function follow(repo) {
  const events = [];
  const f = new Follower(repo.dir, async () => s, (e) => events.push(e));
  await f.start();
  const close = await watchRepo(repo.dir, () => void f.headMoved());
  const waitFor = async (pred, what) => {
    for (let i = 0; i < 400; i++) {
      const e = events.find(pred);
      if (e) return e;
      await sleep(50);
    }
    throw new Error(`no ${what} event: ${JSON.stringify(events)}`);
  };
  return { f, events, close, waitFor };
}

test('what a change of HEAD calls for', () => {
  assert.equal(decide('main', 'main', false), 'none');
  assert.equal(decide('main', undefined, false), 'none', 'a detached HEAD switches nothing');
  assert.equal(decide('main', 'feature/x', false), 'sync');
  assert.equal(decide('main', 'feature/x', true), 'hook');
  assert.equal(decide(undefined, 'main', false), 'sync');
});

test('without the hooks, a checkout in a terminal makes the branch and sets .env, once', async () => {
  const repo = await teamRepo();
  const { f, events, close, waitFor } = await follow(repo);
  try {
    await repo.git('checkout', '-q', '-b', 'feature/Orders');
    // The git extension reports the same checkout too, twice.
    await Promise.all([f.headMoved(), f.headMoved()]);
    const e = await waitFor((x) => x.action === 'sync' && !x.pending, 'sync');
    assert.equal(e.error, undefined);
    assert.match(e.line, /^git branch feature\/Orders -> database branch feature-orders \(created from production, expires in 7d\); DATABASE_URL in \.env updated$/);
    await sleep(300); // any late signal of the watcher
    assert.equal(syncCalls().length, 1, `one sync: ${syncCalls()}`);
    const names = (await arbor.listBranches(s)).map((b) => b.name);
    assert.ok(names.includes('projects/default/branches/feature-orders'));
    const env = fs.readFileSync(path.join(repo.dir, '.env'), 'utf8');
    assert.match(env, /^SECRET_KEY=dev-only\nDATABASE_URL=postgresql:\/\/owner:[^@]+@127\.0\.0\.1:\d+\/postgres/);

    // Back to main: main uses the parent itself.
    events.length = 0;
    await repo.git('checkout', '-q', 'main');
    const back = await waitFor((x) => x.action === 'sync' && !x.pending, 'sync');
    assert.match(back.line, /^git branch main -> database branch production/);
    assert.equal(syncCalls().length, 2);
  } finally {
    close();
  }
});

test('with the hooks, the extension leaves the checkout to them', async () => {
  const repo = await teamRepo();
  await d.arbor(['git', 'install', '--repo', repo.dir]);
  fs.rmSync(log, { force: true });
  const { f, close, waitFor } = await follow(repo);
  try {
    const { stderr } = await repo.git('checkout', '-b', 'feature/Hooked'); // the hook runs here
    assert.match(stderr, /arbor: git branch feature\/Hooked -> database branch feature-hooked \(created from production/);
    await f.headMoved();
    await waitFor((x) => x.action === 'hook', 'hook');
    await sleep(300);
    assert.deepEqual(syncCalls(), [], 'the extension ran no sync');
    const names = (await arbor.listBranches(s)).map((b) => b.name);
    assert.ok(names.includes('projects/default/branches/feature-hooked'));
  } finally {
    close();
  }
});

test('a detached HEAD, and a move within the same branch, switch nothing', async () => {
  const repo = await teamRepo();
  const { f, close } = await follow(repo);
  try {
    fs.rmSync(log, { force: true });
    await repo.git('checkout', '-q', '--detach');
    assert.equal((await f.headMoved()).action, 'none');
    await repo.git('checkout', '-q', 'main');
    await sleep(200);
    fs.writeFileSync(path.join(repo.dir, 'x.txt'), 'x');
    await repo.git('add', 'x.txt');
    await repo.git('commit', '-qm', 'x');
    assert.equal((await f.headMoved()).action, 'none');
    assert.deepEqual(syncCalls(), [], 'back on main from a detached HEAD: main was never left');
  } finally {
    close();
  }
});
