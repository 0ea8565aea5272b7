// A real Arbor daemon for a test file: `arbor up --foreground` in a temporary data
// directory, on ports of its own, stopped and removed by stop() whatever happened.
// Environment: ARBOR_BIN, the arbor binary.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

export const run = promisify(execFile);

export function arborBin() {
  const bin = process.env.ARBOR_BIN;
  if (!bin) throw new Error('ARBOR_BIN is not set: the path of the arbor binary to test with');
  return path.resolve(bin);
}

function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// 40 ports (the proxy's, then the endpoints'), in 40000-44999, free when asked.
async function portRange() {
  for (let i = 0; i < 125; i++) {
    const lo = 40000 + ((process.pid + i * 7) % 125) * 40;
    if ((await portFree(lo)) && (await portFree(lo + 1)) && (await portFree(lo + 39))) return lo;
  }
  throw new Error('no free port range in 40000-44999');
}

function mountsUnder(dir) {
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((p) => p && p.startsWith(dir + '/'));
}

export async function startDaemon() {
  const bin = arborBin();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-vscode-test-'));
  const lo = await portRange();
  const log = fs.openSync(path.join(home, 'daemon.out'), 'a');
  const child = spawn(
    bin,
    ['up', '--foreground', '--data-dir', home, '--api-listen', '127.0.0.1:0',
      '--proxy-listen', `127.0.0.1:${lo}`, '--endpoint-ports', `${lo + 1}-${lo + 39}`,
      '--shared-buffers', '32MB'],
    { detached: true, stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  let exited = false;
  child.on('exit', () => (exited = true));

  const d = {
    bin,
    home,
    api: '',
    token: '',
    // The environment of a CLI that uses this daemon (and only it).
    env: { ...process.env, ARBOR_HOME: home, ARBOR_API: '', ARBOR_TOKEN: '' },
    // Runs `arbor ARGS` against the daemon; rejects on a non-zero exit.
    arbor: (args, opts = {}) => run(bin, args, { env: d.env, ...opts }),
    async stop() {
      const runtime = readIf(path.join(home, 'runtime-dir'));
      if (!exited) {
        child.kill('SIGTERM');
        for (let i = 0; i < 300 && !exited; i++) await sleep(100);
        if (!exited) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {}
          for (let i = 0; i < 50 && !exited; i++) await sleep(100);
        }
      }
      for (const dir of [home, runtime]) {
        if (!dir || dir === '/') continue;
        for (const m of mountsUnder(dir).reverse()) {
          await run('umount', ['-l', m]).catch(() => run('fusermount3', ['-u', '-z', m]).catch(() => {}));
        }
      }
      if (runtime && runtime !== home && runtime.startsWith('/run/arbor/')) fs.rmSync(runtime, { recursive: true, force: true });
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < 1200; i++) {
    if (exited) break;
    d.api = readIf(path.join(home, 'api'));
    if (d.api) break;
    await sleep(50);
  }
  if (!d.api) {
    const why = readIf(path.join(home, 'daemon.out'));
    await d.stop();
    throw new Error(`the daemon never became ready:\n${why}`);
  }
  d.token = readIf(path.join(home, 'admin-token'));
  d.env.ARBOR_API = d.api;
  d.env.ARBOR_TOKEN = d.token;
  return d;
}

function readIf(file) {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// A git repository with one commit on `main`, in a temporary directory (removed by the
// caller). Its git() runs as from a terminal whose environment is `env` (the hooks use it).
export async function makeRepo(env = process.env) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-vscode-repo-'));
  const git = (...args) => run('git', args, { cwd: dir, env });
  await git('init', '-q', '-b', 'main');
  await git('config', 'user.email', 'dev@example.com');
  await git('config', 'user.name', 'dev');
  fs.writeFileSync(path.join(dir, 'README.md'), '# shop\n');
  fs.writeFileSync(path.join(dir, '.env'), 'SECRET_KEY=dev-only\nDATABASE_URL=\n');
  await git('add', 'README.md');
  await git('commit', '-qm', 'first commit');
  return { dir, git };
}

// psql on a branch, through `arbor psql` (the token goes in PGPASSWORD, not argv).
export async function psql(d, branch, sql) {
  const { stdout } = await d.arbor(['psql', branch, '--', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
  return stdout.trim();
}
