// The arbor CLI, the extension's only way to the daemon. Every rule (branch names, what a
// checkout does, what may be deleted) stays in the CLI and the API; this file knows only the
// command lines and their exit codes (docs/cli.md). No `vscode` import: node's test runner
// drives it against a real daemon.
import { execFile } from 'node:child_process';

export interface CliSettings {
  // The arbor binary: a path, or a name looked up on PATH.
  path: string;
  // The API's base URL; empty: the CLI's own default ($ARBOR_API, $ARBOR_HOME/api, ...).
  api?: string;
  // An API token; empty: the CLI's own default ($ARBOR_TOKEN, $ARBOR_HOME/admin-token).
  token?: string;
  // The project of short branch names; empty: the CLI's default (`default`).
  project?: string;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

// A command that failed. `message` is the CLI's one line, which carries the API's sentence
// as is, without the `arbor: ` in front; `code` is the exit status (docs/cli.md), or -1 when
// the command could not be started.
export class ArborError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

// The sentence of a failed command: its last `arbor: ` line on stderr (anything before it is
// the output of a child such as psql), else its last line.
export function sentence(stderr: string, code: number): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const own = lines.filter((l) => l.startsWith('arbor: '));
  const line = own.length > 0 ? own[own.length - 1] : lines[lines.length - 1];
  if (line === undefined) return `arbor exited with status ${code} and said nothing`;
  return line.replace(/^arbor: /, '');
}

// The child's environment: the settings go in ARBOR_API and ARBOR_TOKEN, never in argv,
// where `ps` would show the token.
export function childEnv(s: CliSettings, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base };
  if (s.api) env.ARBOR_API = s.api;
  if (s.token) env.ARBOR_TOKEN = s.token;
  return env;
}

export interface RunOptions {
  cwd?: string;
  // Exit statuses that are answers, not failures (1 for `arbor diff`: "different").
  ok?: number[];
  timeoutMs?: number;
}

// Runs `arbor ARGS` and resolves with what it printed. Rejects with an ArborError when the
// exit status is not in `ok` (default [0]) or the binary cannot be run.
export function run(s: CliSettings, args: string[], opts: RunOptions = {}): Promise<CliResult> {
  const full = s.project ? ['--project', s.project, ...args] : args;
  return new Promise((resolve, reject) => {
    execFile(
      s.path,
      full,
      {
        cwd: opts.cwd,
        env: childEnv(s),
        maxBuffer: 64 * 1024 * 1024,
        timeout: opts.timeoutMs ?? 10 * 60 * 1000,
      },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
        if (e && typeof e.code === 'string') {
          const why = e.code === 'ENOENT' ? 'not found' : e.message;
          reject(new ArborError(`cannot run the arbor CLI '${s.path}': ${why}; set arbor.path`, -1));
          return;
        }
        const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        if (!(opts.ok ?? [0]).includes(code)) {
          reject(new ArborError(sentence(stderr, code), code));
          return;
        }
        resolve({ code, stdout, stderr });
      },
    );
  });
}

// Runs `arbor -o json ARGS` and parses its answer.
export async function json<T>(s: CliSettings, args: string[], opts: RunOptions = {}): Promise<T> {
  const r = await run(s, ['-o', 'json', ...args], opts);
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new ArborError(`arbor ${args.join(' ')} printed something that is not JSON`, 4);
  }
}
