// What the tree and the status bar show (src/model.ts, src/snapshot.ts), from what a real
// daemon and a real repository answer.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import * as arbor from '../out/arbor.js';
import {
  buildTree,
  describeNode,
  formatDuration,
  hooksInstalled,
  shortId,
  statusView,
} from '../out/model.js';
import { takeSnapshot } from '../out/snapshot.js';
import { makeRepo, psql, startDaemon } from './daemon.mjs';

let d;
let s;
const repos = [];
before(async () => {
  d = await startDaemon();
  s = { path: d.bin, api: d.api, token: d.token };
});
after(async () => {
  for (const r of repos) fs.rmSync(r.dir, { recursive: true, force: true });
  await d?.stop();
});

test('durations as the CLI writes them', () => {
  const h = 3600e3;
  assert.equal(formatDuration(7 * 24 * h), '7d');
  assert.equal(formatDuration(6 * 24 * h + 22 * h + 59e3), '6d22h');
  assert.equal(formatDuration(h + 5 * 60e3), '1h5m');
  assert.equal(formatDuration(55 * 60e3 + 59e3), '55m');
  assert.equal(formatDuration(30e3), '30s');
  assert.equal(formatDuration(-5), '0s');
  assert.equal(shortId('projects/default/branches/dev/endpoints/primary'), 'dev');
});

test('the tree: the default branch first, children under their parent by age', async () => {
  await arbor.createBranch(s, 'dev', { ttl: '7d' });
  await arbor.createBranch(s, 'ci-42', { ttl: '1h' });
  await arbor.createBranch(s, 'dev-fix', { parent: 'dev', ttl: '1h' });
  await psql(d, 'dev', 'select 1'); // starts dev's compute
  const snap = await takeSnapshot({ ...s, project: 'default' }, undefined);
  const roots = buildTree(snap.branches, snap.endpoints);
  const shape = (n) => (n.children.length ? { [n.id]: n.children.map(shape) } : n.id);
  assert.deepEqual(roots.map(shape), [{ production: [{ dev: ['dev-fix'] }, 'ci-42'] }]);

  const now = new Date();
  const [production] = roots;
  const [dev, ci] = production.children;
  assert.equal(describeNode(production, now), 'default · ACTIVE');
  assert.equal(dev.state, 'ACTIVE');
  assert.match(describeNode(dev, now), /^ACTIVE · expires in 6d23h$/);
  assert.match(describeNode(ci, now), /^IDLE · expires in 59m$/);
  assert.equal(production.parentId, undefined);
  assert.equal(dev.children[0].parentId, 'dev');
});

test('the status bar: not set up, then the current branch with its state and expiry', async () => {
  const repo = await makeRepo(d.env);
  repos.push(repo);
  let snap = await takeSnapshot(s, repo.dir);
  assert.match(snap.repoError, /^no \.arbor\.toml in .*: run `arbor git install` first$/);
  assert.equal(snap.project, undefined);
  assert.equal(statusView(snap, new Date()).text, '$(database) Arbor');

  await d.arbor(['git', 'install', '--repo', repo.dir]);
  await repo.git('checkout', '-q', '-b', 'feature/Add-Email'); // the hook makes the branch
  snap = await takeSnapshot(s, repo.dir);
  assert.equal(snap.project, 'default');
  assert.ok(hooksInstalled(snap.repo.status));
  const view = statusView(snap, new Date());
  assert.match(view.text, /^\$\(database\) feature-add-email · IDLE · expires in 6d23h$/);
  assert.match(view.tooltip, /^git branch feature\/Add-Email → database branch feature-add-email$/m);
  assert.equal(view.warning, false);

  // A git branch whose database branch is gone.
  await arbor.deleteBranch(s, 'feature-add-email');
  snap = await takeSnapshot(s, repo.dir);
  assert.equal(statusView(snap, new Date()).text, '$(database) feature-add-email · not created');

  // The daemon unreachable: the mapping is still known.
  snap = await takeSnapshot({ ...s, api: 'http://127.0.0.1:1' }, repo.dir);
  const down = statusView(snap, new Date());
  assert.equal(down.text, '$(database) feature-add-email · ?');
  assert.match(down.tooltip, /cannot connect to the Arbor API/);
  assert.match(snap.listError, /cannot connect to the Arbor API/);

  await repo.git('checkout', '-q', '--detach');
  snap = await takeSnapshot(s, repo.dir);
  assert.equal(statusView(snap, new Date()).text, '$(database) detached HEAD');
});
