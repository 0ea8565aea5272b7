// Formatting, the page's route and polling: small helpers shared by the views.
import { useEffect, useRef, useState } from 'preact/hooks';

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n: number | undefined): string {
  if (n === undefined || n === null) return '–';
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

// "in 3 h", "12 min ago": how far `iso` is from now, to the largest whole unit.
export function relative(iso: string, now = Date.now()): string {
  const ms = Date.parse(iso) - now;
  const a = Math.abs(ms) / 1000;
  const [v, u] =
    a < 60 ? [a, 's'] : a < 3600 ? [a / 60, 'min'] : a < 86400 ? [a / 3600, 'h'] : [a / 86400, 'd'];
  const s = `${Math.floor(v)} ${u}`;
  return ms >= 0 ? `in ${s}` : `${s} ago`;
}

// A time as the user's clock shows it, to the second.
export const local = (ms: number) => new Date(ms).toLocaleString();

// The page's address is its state: "/projects/P", "/projects/P/diff", "/projects/P/insight".
export function useRoute(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const f = () => setPath(location.pathname);
    addEventListener('popstate', f);
    addEventListener('arbor-navigate', f);
    return () => {
      removeEventListener('popstate', f);
      removeEventListener('arbor-navigate', f);
    };
  }, []);
  return path;
}

export function navigate(path: string) {
  if (path === location.pathname) return;
  history.pushState(null, '', path);
  dispatchEvent(new Event('arbor-navigate'));
}

// Runs `f` now and then every `ms` after the previous run ended, only while the tab is
// visible (and at once when it becomes visible again). `f` changing restarts the cycle.
export function usePoll(f: () => Promise<void>, ms: number, deps: unknown[]) {
  const latest = useRef(f);
  latest.current = f;
  useEffect(() => {
    let timer = 0;
    let stopped = false;
    let busy = false;
    const run = async () => {
      clearTimeout(timer);
      if (stopped || busy || document.visibilityState !== 'visible') return;
      busy = true;
      try {
        await latest.current();
      } catch {
        // `f` shows its own errors; the next run tries again.
      } finally {
        busy = false;
        if (!stopped) timer = setTimeout(run, ms);
      }
    };
    document.addEventListener('visibilitychange', run);
    run();
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', run);
    };
  }, deps);
}
