// What the extension asks of Arbor, one function per command line (docs/cli.md). Each
// resolves with the CLI's answer or rejects with an ArborError carrying its sentence.
import { ArborError, CliSettings, json, run, sentence } from './arbor_cli';
import { BisectResult, Branch, Endpoint, GitStatus } from './types';

// The git commands take the project from .arbor.toml, never from the settings.
function inRepo(s: CliSettings): CliSettings {
  return { ...s, project: undefined };
}

export interface RepoStatus {
  status: GitStatus;
  // The daemon could not be reached: the mapping is known, whether branches exist is not.
  unreachable?: string;
}

// The repository's mapping of git branches to database branches, and its hooks. Rejects
// when the repository has no .arbor.toml (exit 1) or is not a repository.
export async function gitStatus(s: CliSettings, repo: string): Promise<RepoStatus> {
  const r = await run(inRepo(s), ['-o', 'json', 'git', 'status', '--repo', repo], { ok: [0, 3] });
  let status: GitStatus;
  try {
    status = JSON.parse(r.stdout) as GitStatus;
  } catch {
    if (r.code === 3) throw new ArborError(sentence(r.stderr, 3), 3);
    throw new ArborError('arbor git status printed something that is not JSON', 4);
  }
  return r.code === 3 ? { status, unreachable: sentence(r.stderr, 3) } : { status };
}

// `arbor git sync`: what the hook does, for the current git branch. Resolves with its line.
export async function gitSync(s: CliSettings, repo: string): Promise<string> {
  const r = await run(inRepo(s), ['git', 'sync', '--repo', repo]);
  return r.stdout.trim();
}

// `arbor git install`: .arbor.toml (unless there is one) and the hooks.
export async function gitInstall(s: CliSettings, repo: string): Promise<string> {
  const r = await run(inRepo(s), ['git', 'install', '--repo', repo]);
  return r.stdout.trim();
}

export async function listBranches(s: CliSettings): Promise<Branch[]> {
  return (await json<{ branches?: Branch[] }>(s, ['branch', 'list'])).branches ?? [];
}

// Every endpoint of the project, or of one branch.
export async function listEndpoints(s: CliSettings, branch?: string): Promise<Endpoint[]> {
  const args = ['endpoint', 'list', ...(branch ? [branch] : [])];
  return (await json<{ endpoints?: Endpoint[] }>(s, args)).endpoints ?? [];
}

export interface CreateOptions {
  parent?: string;
  at?: string; // TIME as the CLI takes it: RFC 3339, `-30m`, `now`
  ttl: string; // DUR: `7d`
}

export async function createBranch(s: CliSettings, name: string, o: CreateOptions): Promise<Branch> {
  const args = ['branch', 'create', name, '--ttl', o.ttl];
  if (o.parent) args.push('--parent', o.parent);
  if (o.at) args.push('--at', o.at);
  return json<Branch>(s, args);
}

// The branch takes its parent's current state, keeping its name and connection string.
export async function resetBranch(s: CliSettings, name: string): Promise<Branch> {
  return json<Branch>(s, ['branch', 'reset', name]);
}

// Resolves with the CLI's words (how to undelete).
export async function deleteBranch(s: CliSettings, name: string): Promise<string> {
  return (await run(s, ['branch', 'delete', name])).stdout.trim();
}

// A postgresql:// URL with a fresh token (1 h) as the password.
export async function connectionString(s: CliSettings, name: string): Promise<string> {
  return (await run(s, ['connection-string', name])).stdout.trim();
}

export interface Report {
  markdown: string;
  // diff: the two differ; migrate-check: the migration failed.
  flagged: boolean;
}

// The schema difference from `from` to `to`, in markdown.
export async function schemaDiff(s: CliSettings, from: string, to: string): Promise<Report> {
  const r = await run(s, ['diff', from, to, '--format', 'markdown'], { ok: [0, 1] });
  return { markdown: r.stdout, flagged: r.code === 1 };
}

// Runs `command` on a temporary branch of `target` (`target` is never touched) and reports.
export async function migrateCheck(
  s: CliSettings,
  target: string,
  command: string[],
  cwd: string,
): Promise<Report> {
  const args = ['migrate-check', '--target', target, '--format', 'markdown', '--', ...command];
  const r = await run(s, args, { ok: [0, 1], cwd });
  return { markdown: r.stdout, flagged: r.code === 1 };
}

// The commit that made `check` go false. `found: false` (exit 1) comes with the reason.
export async function bisect(
  s: CliSettings,
  branch: string,
  check: string,
  since?: string,
): Promise<BisectResult> {
  const args = ['bisect', branch, '--check', check, ...(since ? ['--since', since] : [])];
  return json<BisectResult>(s, args, { ok: [0, 1] });
}

// The argv, after the binary, of `arbor psql` on a branch (for a terminal).
export function psqlArgs(s: CliSettings, name: string): string[] {
  return [...(s.project ? ['--project', s.project] : []), 'psql', name];
}
