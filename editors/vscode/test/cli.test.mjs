// The extension's calls to the arbor CLI (src/arbor_cli.ts, src/arbor.ts) against a real
// daemon: what each answers, and that a refusal comes back as the API's own sentence.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as arbor from '../out/arbor.js';
import { ArborError, childEnv, run } from '../out/arbor_cli.js';
import { psql, sleep, startDaemon } from './daemon.mjs';

let d;
let s; // the extension's settings: the binary, the API's URL and the token
before(async () => {
  d = await startDaemon();
  s = { path: d.bin, api: d.api, token: d.token };
});
after(async () => d?.stop());

test('the token and the URL go in the environment, never in argv', () => {
  const env = childEnv({ path: 'arbor', api: 'http://127.0.0.1:1', token: 'arbor_secret' }, {});
  assert.deepEqual(env, { ARBOR_API: 'http://127.0.0.1:1', ARBOR_TOKEN: 'arbor_secret' });
});

test('the settings reach the daemon: a developer token from the settings lists branches', async () => {
  const { stdout } = await d.arbor(['token', 'create', 'alice', '--role', 'developer', '--project', 'default']);
  const token = stdout.trim().split('\n')[0];
  const branches = await arbor.listBranches({ ...s, token });
  assert.deepEqual(branches.map((b) => b.name), ['projects/default/branches/production']);
});

test('a refusal is the API sentence, with the exit status', async () => {
  await assert.rejects(arbor.deleteBranch(s, 'production'), (e) => {
    assert.ok(e instanceof ArborError);
    assert.equal(e.code, 1);
    assert.equal(e.message, "branch projects/default/branches/production is the project's root branch and cannot be deleted");
    return true;
  });
});

test('a wrong token is refused with the sentence that says which token was sent', async () => {
  await assert.rejects(arbor.listBranches({ ...s, token: 'not-a-token' }), (e) => {
    assert.equal(e.code, 1);
    assert.match(e.message, /^wrong token: .*the CLI sent the token from \$ARBOR_TOKEN/);
    return true;
  });
});

test('an unreachable daemon and a missing binary say so', async () => {
  await assert.rejects(arbor.listBranches({ ...s, api: 'http://127.0.0.1:1' }), (e) => {
    assert.equal(e.code, 3);
    assert.match(e.message, /^cannot connect to the Arbor API at http:\/\/127\.0\.0\.1:1/);
    return true;
  });
  await assert.rejects(run({ path: '/nonexistent/arbor' }, ['version']), (e) => {
    assert.equal(e.code, -1);
    assert.equal(e.message, "cannot run the arbor CLI '/nonexistent/arbor': not found; set arbor.path");
    return true;
  });
});

test('create, from a time too; reset to the parent; delete', async () => {
  await psql(d, 'production', 'create table items (id int primary key); insert into items values (1)');
  await sleep(200);
  const before = new Date().toISOString();
  await sleep(200);
  await psql(d, 'production', 'insert into items values (2)');

  const qa = await arbor.createBranch(s, 'qa', { ttl: '1h' });
  assert.equal(qa.name, 'projects/default/branches/qa');
  assert.ok(qa.status.expire_time, 'a branch made with a TTL expires');
  const past = await arbor.createBranch(s, 'past', { parent: 'production', at: before, ttl: '1h' });
  assert.equal(past.status.source_branch, 'projects/default/branches/production');
  assert.equal(await psql(d, 'past', 'select count(*) from items'), '1', 'the parent as it was then');

  await psql(d, 'qa', 'delete from items');
  assert.equal(await psql(d, 'qa', 'select count(*) from items'), '0');
  await arbor.resetBranch(s, 'qa');
  assert.equal(await psql(d, 'qa', 'select count(*) from items'), '2', 'the parent as it is now');

  const url = await arbor.connectionString(s, 'qa');
  assert.match(url, /^postgresql:\/\/owner:[^@]+@127\.0\.0\.1:\d+\/postgres/);

  const said = await arbor.deleteBranch(s, 'past');
  assert.match(said, /^Deleted branch projects\/default\/branches\/past\./);
  const names = (await arbor.listBranches(s)).map((b) => b.name);
  assert.ok(!names.includes('projects/default/branches/past'));
  await assert.rejects(arbor.createBranch(s, 'Bad_Name', { ttl: '1h' }), (e) => e.code === 2);
});

test('the schema diff against the parent, in markdown', async () => {
  await arbor.createBranch(s, 'feature', { ttl: '1h' });
  const same = await arbor.schemaDiff(s, 'production', 'feature');
  assert.equal(same.flagged, false);
  assert.match(same.markdown, /No schema differences/);
  await psql(d, 'feature', 'alter table items add column email text');
  const diff = await arbor.schemaDiff(s, 'production', 'feature');
  assert.equal(diff.flagged, true);
  assert.match(diff.markdown, /### Schema diff `production` → `feature`/);
  assert.match(diff.markdown, /\| added \| column \| `public\.items\.email` \|/);
});

test('migrate-check runs the SQL file on a branch of the target, which is untouched', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-vscode-sql-'));
  try {
    const good = path.join(dir, '001_add_name.sql');
    fs.writeFileSync(good, 'alter table items add column name text;\n');
    const cmd = (f) => ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', f];
    const ok = await arbor.migrateCheck(s, 'production', cmd(good), dir);
    assert.equal(ok.flagged, false);
    assert.match(ok.markdown, /## Migration check: ✅ succeeded/);
    assert.match(ok.markdown, /`public\.items\.name`/);

    const bad = path.join(dir, '002_broken.sql');
    fs.writeFileSync(bad, 'alter table items add column age int;\nalter table nope add column x int;\n');
    const failed = await arbor.migrateCheck(s, 'production', cmd(bad), dir);
    assert.equal(failed.flagged, true);
    assert.match(failed.markdown, /failed/);
    const cols = await psql(d, 'production', "select string_agg(column_name, ',' order by column_name) from information_schema.columns where table_name = 'items'");
    assert.equal(cols, 'id', 'production is untouched');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bisect names the commit that broke the check', async () => {
  await arbor.createBranch(s, 'hist', { ttl: '1h' });
  await psql(d, 'hist', 'insert into items values (3)');
  await sleep(300);
  const since = new Date().toISOString();
  await sleep(300);
  await psql(d, 'hist', 'insert into items values (4)');
  await sleep(300);
  await psql(d, 'hist', 'delete from items');
  await sleep(300);
  await psql(d, 'hist', 'insert into items values (5)');
  const r = await arbor.bisect(s, 'hist', 'select count(*) > 1 from items', since);
  assert.equal(r.found, true, JSON.stringify(r));
  assert.ok(Date.parse(r.last_good_time) < Date.parse(r.first_bad_time));
  assert.match(r.command, /^arbor branch create hist-before-\S+ --parent hist --at /);
  const never = await arbor.bisect(s, 'hist', 'select true', since);
  assert.equal(never.found, false);
  assert.ok(never.reason);
});
