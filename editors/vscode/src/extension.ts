// Wiring: the views, the commands, and the signals that HEAD moved. Uses only the public
// VS Code API and the built-in git extension's public API, so it runs as is in VS Code,
// VSCodium, Cursor and code-server.
import * as vscode from 'vscode';
import * as commands from './commands';
import { Follower, FollowEvent } from './follower';
import { watchRepo } from './git';
import { BranchNode } from './model';
import { Settings } from './settings';
import { Snapshot, takeSnapshot } from './snapshot';
import { BranchTree, Reports, StatusBar } from './views';

// The subset of the git extension's API (extensions/git/src/api/git.d.ts) used here.
interface GitRepository {
  rootUri: vscode.Uri;
  state: { HEAD?: { name?: string }; onDidChange: vscode.Event<void> };
}
interface GitApi {
  repositories: GitRepository[];
  onDidOpenRepository: vscode.Event<GitRepository>;
}

export async function activate(ctx: vscode.ExtensionContext): Promise<void> {
  const out = vscode.window.createOutputChannel('Arbor');
  const settings = new Settings(ctx.secrets);
  const statusBar = new StatusBar();
  const tree = new BranchTree();
  const reports = new Reports();
  const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file');
  const repo = folder?.uri.fsPath;

  let snap: Snapshot = {};
  // One refresh at a time. A call while one waits to start joins it; a call while one runs
  // queues one more, so that what changed meanwhile is seen.
  let waiting: Promise<void> | undefined;
  let last: Promise<void> = Promise.resolve();
  const refresh = (): Promise<void> => {
    if (waiting) return waiting;
    const next = last.then(async () => {
      waiting = undefined;
      snap = await takeSnapshot(await settings.cli(), repo);
      statusBar.render(snap);
      tree.render(snap);
    });
    waiting = next;
    last = next.catch(() => undefined);
    return next;
  };

  const c: commands.Context = { settings, tree, reports, out, repo, snapshot: () => snap, refresh };
  const onFollow = (e: FollowEvent): void => {
    if (e.action === 'none') return void refresh();
    statusBar.busy(e.pending ? `Switching the database branch of ${e.gitBranch}…` : undefined);
    if (e.pending) return;
    out.appendLine(`${e.gitBranch}: ${e.action}${e.line ? `: ${e.line}` : ''}${e.error ? `: ${e.error.message}` : ''}`);
    if (e.error) void vscode.window.showErrorMessage(e.error.message);
    else if (e.line) vscode.window.setStatusBarMessage(`$(database) ${e.line}`, 8000);
    void refresh();
    // The hook runs after git has moved HEAD: look again once it has had time to finish.
    if (e.action === 'hook') for (const ms of [1500, 4000, 10000]) setTimeout(() => void refresh(), ms);
  };
  const follower = repo ? new Follower(repo, () => settings.cli(), onFollow) : undefined;
  // The follower refreshes the views once it knows what the move calls for.
  const headMoved = (): void => void follower?.headMoved();

  ctx.subscriptions.push(
    out,
    statusBar,
    vscode.window.registerTreeDataProvider('arbor.branches', tree),
    vscode.workspace.registerTextDocumentContentProvider(Reports.scheme, reports),
  );
  // A command from the tree gets the branch's node; from the palette, nothing; from the
  // explorer or an editor, the file's URI.
  const node = (arg: unknown): BranchNode | undefined =>
    typeof arg === 'object' && arg !== null && 'branch' in arg ? (arg as BranchNode) : undefined;
  const file = (arg: unknown): vscode.Uri | undefined => (arg instanceof vscode.Uri ? arg : undefined);
  const table: [string, (arg?: unknown) => Promise<void>][] = [
    ['arbor.refresh', () => commands.refresh(c)],
    ['arbor.sync', () => commands.sync(c)],
    ['arbor.install', () => commands.install(c)],
    ['arbor.createBranch', (a) => commands.createBranch(c, node(a))],
    ['arbor.resetBranch', (a) => commands.resetBranch(c, node(a))],
    ['arbor.deleteBranch', (a) => commands.deleteBranch(c, node(a))],
    ['arbor.copyConnectionString', (a) => commands.copyConnectionString(c, node(a))],
    ['arbor.openPsql', (a) => commands.openPsql(c, node(a))],
    ['arbor.diff', (a) => commands.diff(c, node(a))],
    ['arbor.migrateCheck', (a) => commands.migrateCheck(c, file(a))],
    ['arbor.bisect', (a) => commands.bisect(c, node(a))],
    ['arbor.setToken', () => commands.setToken(c)],
    ['arbor.clearToken', () => commands.clearToken(c)],
    ['arbor.actions', () => commands.actions(c)],
  ];
  for (const [id, run] of table) ctx.subscriptions.push(vscode.commands.registerCommand(id, run));

  // A saved migration: the current branch's schema diff against its parent, beside it.
  ctx.subscriptions.push(
    vscode.workspace.onDidSaveTextDocument((doc) => {
      if (!folder || !settings.diffOnSave) return;
      if (vscode.languages.match({ pattern: new vscode.RelativePattern(folder, settings.migrationFiles) }, doc) === 0) return;
      void commands.diff(c, undefined, true);
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('arbor')) void refresh();
    }),
    ctx.secrets.onDidChange(() => void refresh()),
  );

  if (repo && follower) {
    await follower.start();
    // A checkout anywhere (a terminal, another tool) changes .git/HEAD.
    const close = await watchRepo(repo, headMoved);
    ctx.subscriptions.push({ dispose: close });
    // The built-in git extension also reports its own checkouts; any editor built on VS Code
    // has it, but the extension works without it.
    const git = vscode.extensions.getExtension<{ getAPI(v: 1): GitApi }>('vscode.git');
    try {
      const api = (await git?.activate())?.getAPI(1);
      const follow = (r: GitRepository) => {
        let head = r.state.HEAD?.name;
        ctx.subscriptions.push(
          r.state.onDidChange(() => {
            if (r.state.HEAD?.name === head) return;
            head = r.state.HEAD?.name;
            headMoved();
          }),
        );
      };
      api?.repositories.forEach(follow);
      if (api) ctx.subscriptions.push(api.onDidOpenRepository(follow));
    } catch (e) {
      out.appendLine(`the git extension is not available: ${(e as Error).message}`);
    }
  }

  // The computes' states change without any event here (a compute suspends when idle).
  let timer = setInterval(() => void refresh(), settings.refreshMs);
  ctx.subscriptions.push({ dispose: () => clearInterval(timer) });
  ctx.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration('arbor.refreshSeconds')) return;
      clearInterval(timer);
      timer = setInterval(() => void refresh(), settings.refreshMs);
    }),
  );
  await refresh();
}

export function deactivate(): void {}
