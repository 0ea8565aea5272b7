// What the status bar and the tree show, computed from the CLI's answers. Pure functions:
// no `vscode`, no I/O; the clock is a parameter.
import { RepoStatus } from './arbor';
import { Branch, Endpoint, GitStatus } from './types';

// `projects/P/branches/B` (or `.../branches/B/endpoints/E`) -> `B`.
export function shortId(name: string): string {
  const m = /\/branches\/([^/]+)/.exec(name);
  return m ? m[1] : name;
}

// "6d22h", "1h5m", "55m", "30s": as `arbor branch list` writes them.
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const units: [string, number][] = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
  const i = units.findIndex(([, size]) => s >= size);
  if (i < 0) return '0s';
  const [unit, size] = units[i];
  const n = Math.floor(s / size);
  const next = unit === 'd' || unit === 'h' ? units[i + 1] : undefined; // "5m", not "5m30s"
  const rest = next ? Math.floor((s - n * size) / next[1]) : 0;
  return next && rest > 0 ? `${n}${unit}${rest}${next[0]}` : `${n}${unit}`;
}

// "never", "in 6d22h" or "expired".
export function formatExpiry(b: Branch, now: Date): string {
  const t = b.status.expire_time;
  if (!t) return 'never';
  const left = Date.parse(t) - now.getTime();
  return left > 0 ? `in ${formatDuration(left)}` : 'expired';
}

// The state of the branch's read-write endpoint: ACTIVE, IDLE, STARTING, or "-" for none.
export function computeState(branch: string, endpoints: Endpoint[]): string {
  const mine = endpoints.filter((e) => shortId(e.name) === branch);
  const rw = mine.find((e) => (e.spec.endpoint_type ?? 'ENDPOINT_TYPE_READ_WRITE') === 'ENDPOINT_TYPE_READ_WRITE');
  return rw?.status.current_state ?? '-';
}

export interface BranchNode {
  id: string; // the short id, `dev`
  branch: Branch;
  parentId?: string;
  state: string; // computeState
  children: BranchNode[];
}

// The project's branches as a tree: the default branch first, children under their parent
// by age, as `arbor branch list` shows them.
export function buildTree(branches: Branch[], endpoints: Endpoint[]): BranchNode[] {
  const nodes = new Map<string, BranchNode>();
  for (const b of branches) {
    const id = shortId(b.name);
    const parent = b.status.source_branch ?? b.spec.source_branch;
    nodes.set(id, {
      id,
      branch: b,
      parentId: parent ? shortId(parent) : undefined,
      state: computeState(id, endpoints),
      children: [],
    });
  }
  const roots: BranchNode[] = [];
  for (const n of nodes.values()) {
    const parent = n.parentId === undefined ? undefined : nodes.get(n.parentId);
    (parent ? parent.children : roots).push(n);
  }
  const byAge = (a: BranchNode, b: BranchNode) =>
    Number(b.branch.status.default ?? false) - Number(a.branch.status.default ?? false) ||
    Date.parse(a.branch.create_time) - Date.parse(b.branch.create_time);
  const sort = (list: BranchNode[]) => {
    list.sort(byAge);
    for (const n of list) sort(n.children);
  };
  sort(roots);
  return roots;
}

// The tree item's line after the name: "default · ACTIVE" or "IDLE · expires in 6d22h".
export function describeNode(n: BranchNode, now: Date): string {
  const parts: string[] = [];
  if (n.branch.status.default) parts.push('default');
  if (n.branch.spec.is_protected) parts.push('protected');
  if (n.state !== '-') parts.push(n.state);
  const expiry = formatExpiry(n.branch, now);
  if (expiry !== 'never') parts.push(`expires ${expiry}`);
  return parts.join(' · ');
}

export function nodeTooltip(n: BranchNode, now: Date): string {
  const b = n.branch;
  const lines = [b.name, `state ${b.status.current_state}, compute ${n.state}`];
  if (n.parentId) lines.push(`parent ${n.parentId}, forked at ${b.status.source_branch_time ?? '?'}`);
  lines.push(b.status.expire_time ? `expires ${b.status.expire_time} (${formatExpiry(b, now)})` : 'never expires');
  return lines.join('\n');
}

// The current git branch and its database branch, from `arbor git status`.
export function currentBranch(status: GitStatus): GitStatus['branches'][number] | undefined {
  return status.branches.find((b) => b.current);
}

// Whether the repository's post-checkout hook is Arbor's: then every checkout, from any git
// client, already runs `arbor git sync`.
export function hooksInstalled(status: GitStatus): boolean {
  return /\bpost-checkout installed\b/.test(status.hooks);
}

export interface StatusInput {
  repo?: RepoStatus;
  repoError?: string; // no .arbor.toml, not a repository, no arbor binary
  branches?: Branch[];
  endpoints?: Endpoint[];
}

export interface StatusView {
  text: string;
  tooltip: string;
  warning: boolean; // the database branch is not there, or not known
}

// The status bar item: the current git branch's database branch, its compute's state and
// its expiry.
export function statusView(input: StatusInput, now: Date): StatusView {
  if (!input.repo) {
    return {
      text: '$(database) Arbor',
      tooltip: `${input.repoError ?? 'No repository'}\nRun "Arbor: Set up this repository" (arbor git install).`,
      warning: false,
    };
  }
  const { status, unreachable } = input.repo;
  const cur = currentBranch(status);
  const hooks = `hooks: ${status.hooks}`;
  if (!cur) {
    return {
      text: '$(database) detached HEAD',
      tooltip: `HEAD is detached: no database branch is switched.\n${hooks}`,
      warning: false,
    };
  }
  const mapping = `git branch ${cur.git_branch} → database branch ${cur.database_branch}`;
  if (unreachable) {
    return { text: `$(database) ${cur.database_branch} · ?`, tooltip: `${mapping}\n${unreachable}`, warning: true };
  }
  const branch = input.branches?.find((b) => shortId(b.name) === cur.database_branch);
  if (cur.exists === false || (input.branches && !branch)) {
    return {
      text: `$(database) ${cur.database_branch} · not created`,
      tooltip: `${mapping}\nThe database branch does not exist yet: click to sync (arbor git sync).\n${hooks}`,
      warning: true,
    };
  }
  const state = computeState(cur.database_branch, input.endpoints ?? []);
  const expiry = branch ? formatExpiry(branch, now) : cur.expires;
  const parts = [cur.database_branch, state === '-' ? 'no compute' : state];
  parts.push(expiry === 'never' ? 'no expiry' : `expires ${expiry}`);
  const lines = [mapping, `compute ${state}`];
  if (branch?.status.expire_time) lines.push(`expires ${branch.status.expire_time}`);
  lines.push(hooks);
  return { text: `$(database) ${parts.join(' · ')}`, tooltip: lines.join('\n'), warning: false };
}
