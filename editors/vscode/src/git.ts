// The little the extension reads from git itself: the current branch, and the files that
// change when HEAD moves, whoever moves it (the git extension, a terminal, another tool).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function git(repo: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd: repo }, (err, stdout) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: stdout.trim() });
    });
  });
}

// The checked-out branch's name, or undefined for a detached HEAD (or no repository).
export async function headBranch(repo: string): Promise<string | undefined> {
  const r = await git(repo, ['symbolic-ref', '--short', '-q', 'HEAD']);
  return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
}

export interface GitDirs {
  top: string; // the work tree's root, where .arbor.toml is
  gitDir: string; // the work tree's git directory, where HEAD is
  commonDir: string; // where the hook records the branches it made (arbor-branches.json)
}

// Undefined outside a repository (or in a bare one).
export async function gitDirs(repo: string): Promise<GitDirs | undefined> {
  const r = await git(repo, ['rev-parse', '--show-toplevel', '--absolute-git-dir', '--git-common-dir']);
  if (r.code !== 0) return undefined;
  const [top, gitDir, common] = r.stdout.split('\n');
  return { top, gitDir, commonDir: path.resolve(repo, common) };
}

// The files whose change means "look again": HEAD (a checkout), the hook's record (the hook
// finished), and .arbor.toml (set up, or changed by a pull).
const watched = new Set(['HEAD', 'arbor-branches.json', '.arbor.toml']);

// Calls `onChange` when HEAD, the hook's record or .arbor.toml changes. fs.watch on the
// directories, not the files: git replaces HEAD by renaming HEAD.lock over it. Close it
// with the returned function.
export async function watchRepo(repo: string, onChange: () => void): Promise<() => void> {
  const dirs = await gitDirs(repo);
  const watchers: fs.FSWatcher[] = [];
  for (const dir of new Set(dirs ? [dirs.gitDir, dirs.commonDir, dirs.top] : [repo])) {
    try {
      watchers.push(
        fs.watch(dir, (_event, file) => {
          if (file !== null && watched.has(file.toString())) onChange();
        }),
      );
    } catch {
      // A directory that cannot be watched: the periodic refresh still catches up.
    }
  }
  return () => watchers.forEach((w) => w.close());
}
