// The commands: each asks what it needs, runs one CLI command, and shows the CLI's answer or
// its sentence. None decides what Arbor allows: a refusal is the API's, shown as it said it.
import path from 'node:path';
import * as vscode from 'vscode';
import * as arbor from './arbor';
import { CliSettings } from './arbor_cli';
import { BranchNode, currentBranch } from './model';
import { Settings } from './settings';
import { Snapshot } from './snapshot';
import { BranchTree, Reports } from './views';

// What the commands share with the rest of the extension.
export interface Context {
  settings: Settings;
  tree: BranchTree;
  reports: Reports;
  out: vscode.OutputChannel;
  repo: string | undefined;
  snapshot(): Snapshot;
  refresh(): Promise<void>;
}

// The CLI settings in the project the tree shows.
async function cli(c: Context): Promise<CliSettings> {
  return { ...(await c.settings.cli()), project: c.snapshot().project };
}

// Runs `work`, showing its progress; an error is shown as the CLI's sentence.
async function attempt<T>(c: Context, title: string, work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Arbor: ${title}` },
      work,
    );
  } catch (e) {
    c.out.appendLine(`${title}: ${(e as Error).message}`);
    void vscode.window.showErrorMessage((e as Error).message);
    return undefined;
  }
}

// The branch a command acts on: the tree's node, else the current git branch's database
// branch, else one the user picks.
async function target(c: Context, node: BranchNode | undefined, prompt: string): Promise<BranchNode | undefined> {
  if (node) return node;
  const snap = c.snapshot();
  const cur = snap.repo ? currentBranch(snap.repo.status) : undefined;
  const all = c.tree.all();
  const mine = all.find((n) => n.id === cur?.database_branch);
  if (mine) return mine;
  const pick = await vscode.window.showQuickPick(
    all.map((n) => ({ label: n.id, description: n.parentId ? `from ${n.parentId}` : 'root', node: n })),
    { placeHolder: prompt },
  );
  return pick?.node;
}

export async function refresh(c: Context): Promise<void> {
  await c.refresh();
}

export async function sync(c: Context): Promise<void> {
  if (!c.repo) return;
  const repo = c.repo;
  const line = await attempt(c, 'switching the database branch', async () => arbor.gitSync(await c.settings.cli(), repo));
  if (line !== undefined) void vscode.window.showInformationMessage(line);
  await c.refresh();
}

export async function install(c: Context): Promise<void> {
  if (!c.repo) return;
  const repo = c.repo;
  const said = await attempt(c, 'arbor git install', async () => arbor.gitInstall(await c.settings.cli(), repo));
  if (said !== undefined) {
    c.out.appendLine(said);
    void vscode.window.showInformationMessage(said.split('\n').pop() ?? said);
  }
  await c.refresh();
}

export async function createBranch(c: Context, node?: BranchNode): Promise<void> {
  let parent = node?.id;
  if (!parent) {
    const all = c.tree.all();
    const pick = await vscode.window.showQuickPick(
      all.map((n) => ({ label: n.id, description: n.branch.status.default ? 'default' : '' })),
      { placeHolder: 'The branch to fork' },
    );
    if (!pick) return;
    parent = pick.label;
  }
  const name = await vscode.window.showInputBox({
    title: `New branch of ${parent}`,
    prompt: 'Its id: lowercase letters, digits and hyphens, starting with a letter',
  });
  if (!name) return;
  const when = await vscode.window.showQuickPick(
    [
      { label: 'Now', description: `${parent} as it is now`, at: false },
      { label: 'At a time…', description: `${parent} as it was then, exact to the commit`, at: true },
    ],
    { title: `New branch ${name} of ${parent}` },
  );
  if (!when) return;
  let at: string | undefined;
  if (when.at) {
    at = await vscode.window.showInputBox({
      title: `${name}: ${parent} as it was at`,
      prompt: 'RFC 3339 (2026-11-24T16:00:00Z) or how long ago (-30m, -2h, -1d)',
      value: '-1h',
    });
    if (!at) return;
  }
  const ttl = c.settings.branchTtl;
  const made = await attempt(c, `creating ${name}`, async () =>
    arbor.createBranch(await cli(c), name, { parent, at, ttl }),
  );
  if (made) void vscode.window.showInformationMessage(`Created branch ${name} from ${parent}${at ? ` at ${at}` : ''}, expires in ${ttl}.`);
  await c.refresh();
}

export async function resetBranch(c: Context, node?: BranchNode): Promise<void> {
  const n = await target(c, node, 'The branch to reset to its parent');
  if (!n) return;
  const ok = await vscode.window.showWarningMessage(
    `Reset ${n.id} to the current state of ${n.parentId ?? 'its parent'}?`,
    { modal: true, detail: `What ${n.id} wrote since it was forked is lost. Its name and connection string stay.` },
    'Reset',
  );
  if (ok !== 'Reset') return;
  const done = await attempt(c, `resetting ${n.id}`, async () => arbor.resetBranch(await cli(c), n.id));
  if (done) void vscode.window.showInformationMessage(`Reset ${n.id} to ${n.parentId ?? 'its parent'}.`);
  await c.refresh();
}

export async function deleteBranch(c: Context, node?: BranchNode): Promise<void> {
  const n = await target(c, node, 'The branch to delete');
  if (!n) return;
  const ok = await vscode.window.showWarningMessage(
    `Delete branch ${n.id}?`,
    { modal: true, detail: 'Its endpoints stop. It stays recoverable for the project\'s history window (arbor branch undelete).' },
    'Delete',
  );
  if (ok !== 'Delete') return;
  const said = await attempt(c, `deleting ${n.id}`, async () => arbor.deleteBranch(await cli(c), n.id));
  if (said !== undefined) void vscode.window.showInformationMessage(said.replace(/\n\s*/g, ' '));
  await c.refresh();
}

export async function copyConnectionString(c: Context, node?: BranchNode): Promise<void> {
  const n = await target(c, node, 'The branch to connect to');
  if (!n) return;
  const url = await attempt(c, `connection string of ${n.id}`, async () => arbor.connectionString(await cli(c), n.id));
  if (url === undefined) return;
  await vscode.env.clipboard.writeText(url);
  void vscode.window.showInformationMessage(`Copied the connection string of ${n.id}: its password is a token valid for an hour.`);
}

export async function openPsql(c: Context, node?: BranchNode): Promise<void> {
  const n = await target(c, node, 'The branch to open psql on');
  if (!n) return;
  const s = await cli(c);
  // The settings go in the terminal's environment; `arbor psql` puts the token in PGPASSWORD.
  const env: Record<string, string> = {};
  if (s.api) env.ARBOR_API = s.api;
  if (s.token) env.ARBOR_TOKEN = s.token;
  const term = vscode.window.createTerminal({
    name: `psql ${n.id}`,
    shellPath: s.path,
    shellArgs: arbor.psqlArgs(s, n.id),
    env,
    cwd: c.repo,
  });
  term.show();
}

// The schema diff of a branch against its parent, in a tab.
export async function diff(c: Context, node?: BranchNode, preserveFocus = false): Promise<void> {
  const n = await target(c, node, 'The branch to compare with its parent');
  if (!n) return;
  if (!n.parentId) {
    void vscode.window.showInformationMessage(`${n.id} is a root branch: it has no parent to compare with.`);
    return;
  }
  const parent = n.parentId;
  const report = await attempt(c, `schema diff ${parent} → ${n.id}`, async () =>
    arbor.schemaDiff(await cli(c), parent, n.id),
  );
  if (report) await c.reports.show(`diff/${n.id}.md`, report.markdown, preserveFocus);
}

// Runs the open SQL file on a temporary branch of the target and shows the report.
export async function migrateCheck(c: Context, uri?: vscode.Uri): Promise<void> {
  const doc = uri ? await vscode.workspace.openTextDocument(uri) : vscode.window.activeTextEditor?.document;
  if (!doc || doc.uri.scheme !== 'file') {
    void vscode.window.showInformationMessage('Open a SQL file (a migration) first.');
    return;
  }
  if (doc.isDirty) await doc.save();
  const snap = c.snapshot();
  const targetBranch = c.settings.migrateTarget || snap.repo?.status.parent || defaultBranch(snap);
  if (!targetBranch) {
    void vscode.window.showErrorMessage('No branch to check the migration against: set arbor.migrateTarget.');
    return;
  }
  const file = doc.uri.fsPath;
  const command = c.settings.migrateCommand.map((a) => a.split('${file}').join(file));
  const report = await attempt(c, `checking ${path.basename(file)} on a branch of ${targetBranch}`, async () =>
    arbor.migrateCheck(await cli(c), targetBranch, command, c.repo ?? path.dirname(file)),
  );
  if (!report) return;
  await c.reports.show(`migrate-check/${path.basename(file)}.md`, report.markdown);
  const verdict = report.flagged ? 'failed' : 'succeeded';
  void vscode.window.showInformationMessage(`The migration ${verdict} on a branch of ${targetBranch}; ${targetBranch} is untouched.`);
}

function defaultBranch(snap: Snapshot): string | undefined {
  const b = snap.branches?.find((x) => x.status.default);
  return b ? b.name.replace(/^.*\/branches\//, '') : undefined;
}

// Finds the commit that made a check go false; offers a branch at the last good state.
export async function bisect(c: Context, node?: BranchNode): Promise<void> {
  const n = await target(c, node, 'The branch whose history to search');
  if (!n) return;
  const check = await vscode.window.showInputBox({
    title: `Bisect ${n.id}`,
    prompt: 'A query returning one boolean: true is good',
    placeHolder: 'select count(*) = 32 from final_entities',
  });
  if (!check) return;
  const since = await vscode.window.showInputBox({
    title: `Bisect ${n.id}: since`,
    prompt: 'The window\'s start: RFC 3339 or how long ago (-2h); empty: the earliest state still available',
  });
  if (since === undefined) return;
  const r = await attempt(c, `bisecting ${n.id}`, async () => arbor.bisect(await cli(c), n.id, check, since || undefined));
  if (!r) return;
  if (!r.found) {
    void vscode.window.showInformationMessage(r.reason ?? 'The check never turns false in the window.');
    return;
  }
  const lines = [
    `## Bisect ${n.id}`,
    '',
    `Check: \`${check}\``,
    '',
    `- last good: ${r.last_good_time}`,
    `- first bad: ${r.first_bad_time} (its last commit: ${r.first_bad_commit_time})`,
    `- ${r.points} states in the window, ${r.probes} probes`,
    '',
    'Branch off the last good state with:',
    '',
    '```sh',
    r.command ?? '',
    '```',
    '',
  ];
  await c.reports.show(`bisect/${n.id}.md`, lines.join('\n'));
  const name = /branch create (\S+)/.exec(r.command ?? '')?.[1];
  if (!name || !r.last_good_time) return;
  const make = await vscode.window.showInformationMessage(
    `First bad state of ${n.id}: ${r.first_bad_time}.`,
    `Create ${name}`,
  );
  if (make !== `Create ${name}`) return;
  const at = r.last_good_time;
  const made = await attempt(c, `creating ${name}`, async () =>
    arbor.createBranch(await cli(c), name, { parent: n.id, at, ttl: c.settings.branchTtl }),
  );
  if (made) void vscode.window.showInformationMessage(`Created branch ${name}: ${n.id} as it was at ${at}.`);
  await c.refresh();
}

export async function setToken(c: Context): Promise<void> {
  const token = await vscode.window.showInputBox({
    title: 'Arbor API token',
    prompt: 'An API token (arbor token create) or the admin token; kept in the editor\'s secret storage',
    password: true,
    ignoreFocusOut: true,
  });
  if (!token) return;
  await c.settings.setToken(token.trim());
  await c.refresh();
}

export async function clearToken(c: Context): Promise<void> {
  await c.settings.clearToken();
  void vscode.window.showInformationMessage('Forgot the Arbor API token: the CLI uses its own again ($ARBOR_TOKEN, $ARBOR_HOME/admin-token).');
  await c.refresh();
}

// The status bar's menu.
export async function actions(c: Context): Promise<void> {
  const snap = c.snapshot();
  const items: { label: string; command: string }[] = [];
  if (!snap.repo) items.push({ label: '$(tools) Set up this repository (arbor git install)', command: 'arbor.install' });
  else items.push({ label: '$(sync) Sync the database branch with the git branch', command: 'arbor.sync' });
  items.push(
    { label: '$(diff) Schema diff against parent', command: 'arbor.diff' },
    { label: '$(copy) Copy connection string', command: 'arbor.copyConnectionString' },
    { label: '$(terminal) Open psql', command: 'arbor.openPsql' },
    { label: '$(discard) Reset to parent', command: 'arbor.resetBranch' },
    { label: '$(search) Bisect…', command: 'arbor.bisect' },
    { label: '$(key) Set API token', command: 'arbor.setToken' },
  );
  const pick = await vscode.window.showQuickPick(items, { placeHolder: 'Arbor' });
  if (pick) await vscode.commands.executeCommand(pick.command);
}
