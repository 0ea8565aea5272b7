// The status bar item and the branch tree: both render the latest Snapshot and nothing
// else (model.ts decides what they say).
import * as vscode from 'vscode';
import { BranchNode, buildTree, currentBranch, describeNode, nodeTooltip, statusView } from './model';
import { Snapshot } from './snapshot';

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('arbor.branch', vscode.StatusBarAlignment.Left, 50);

  constructor() {
    this.item.name = 'Arbor database branch';
    this.item.command = 'arbor.actions';
    this.item.text = '$(database) Arbor';
    this.item.show();
  }

  private busyWith: string | undefined;

  // A sync is under way: renders wait until it is done, and then show its result.
  busy(what: string | undefined): void {
    this.busyWith = what;
    if (what === undefined) return;
    this.item.text = '$(sync~spin) Arbor';
    this.item.tooltip = what;
    this.item.backgroundColor = undefined;
  }

  render(snap: Snapshot): void {
    if (this.busyWith !== undefined) return;
    const view = statusView(snap, new Date());
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.warning ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}

export class BranchTree implements vscode.TreeDataProvider<BranchNode> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  private roots: BranchNode[] = [];
  private current: string | undefined;
  private gitBranch: string | undefined;

  render(snap: Snapshot): void {
    this.roots = snap.branches ? buildTree(snap.branches, snap.endpoints ?? []) : [];
    const cur = snap.repo ? currentBranch(snap.repo.status) : undefined;
    this.current = cur?.database_branch;
    this.gitBranch = cur?.git_branch;
    this.changed.fire();
  }

  getChildren(node?: BranchNode): BranchNode[] {
    return node ? node.children : this.roots;
  }

  getTreeItem(n: BranchNode): vscode.TreeItem {
    const item = new vscode.TreeItem(
      n.id,
      n.children.length > 0 ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = n.id;
    const mine = n.id === this.current;
    const description = describeNode(n, new Date());
    item.description = mine ? `${description} ← ${this.gitBranch}` : description;
    item.tooltip = nodeTooltip(n, new Date());
    const color = n.state === 'ACTIVE' ? new vscode.ThemeColor('charts.green') : undefined;
    item.iconPath = new vscode.ThemeIcon(mine ? 'database' : 'circle-outline', color);
    // Menus: a root branch cannot be reset or deleted, and has no parent to diff against.
    item.contextValue = n.parentId === undefined ? 'branch-root' : 'branch-child';
    return item;
  }

  // Every branch, depth first: for quick picks.
  all(): BranchNode[] {
    const out: BranchNode[] = [];
    const walk = (list: BranchNode[]) => list.forEach((n) => (out.push(n), walk(n.children)));
    walk(this.roots);
    return out;
  }
}

// Read-only markdown documents (schema diffs, migration checks, bisects) under the scheme
// `arbor-report`, shown in an editor tab and refreshed in place when run again.
export class Reports implements vscode.TextDocumentContentProvider {
  static readonly scheme = 'arbor-report';
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? '';
  }

  // `name` is a path such as `diff/dev.md`.
  async show(name: string, markdown: string, preserveFocus = false): Promise<void> {
    const uri = vscode.Uri.from({ scheme: Reports.scheme, path: `/${name}` });
    this.texts.set(uri.toString(), markdown);
    this.changed.fire(uri);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.languages.setTextDocumentLanguage(doc, 'markdown');
    // The built-in markdown extension renders the tables; without it, the text.
    try {
      await vscode.commands.executeCommand('markdown.showPreview', uri, undefined, { preserveFocus });
    } catch {
      await vscode.window.showTextDocument(doc, { preview: false, preserveFocus });
    }
  }
}
