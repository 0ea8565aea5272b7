// The console's first paint in Debian's Chromium (driven by Playwright), against what the
// page must fetch first, measured in the same page: the branch list and the endpoint list.
// Run by bench/console_bench.sh, which starts the daemon and fills the project.
//
// Environment: ARBOR_CONSOLE_URL, ARBOR_ADMIN_TOKEN, ROUNDS (default 7), CHROMIUM.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../console/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const base = process.env.ARBOR_CONSOLE_URL.replace(/\/$/, '');
const token = process.env.ARBOR_ADMIN_TOKEN;
const rounds = Number(process.env.ROUNDS || 7);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-paint-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 860 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // The session cookie goes into the browser's own jar.
  const login = await context.request.post(`${base}/api/2.0/console/session`, { data: { token } });
  if (!login.ok()) throw new Error(`login: ${login.status()} ${await login.text()}`);
  const page = context.pages()[0] || (await context.newPage());
  const paints = [];
  const fetches = [];
  let rows = 0;
  for (let i = 0; i < rounds; i++) {
    await page.goto(`${base}/`, { waitUntil: 'commit' });
    await page.waitForSelector('.tree [data-branch="production"]', { timeout: 60_000 });
    // The frame that shows the tree: the next animation frame after it is in the DOM.
    paints.push(await page.evaluate(
      () => new Promise((r) => requestAnimationFrame(() => r(performance.now())))));
    rows = await page.evaluate(() => document.querySelectorAll('.tree [data-branch]').length);
    // The data alone, from the same page: both lists fetched and parsed, nothing drawn.
    fetches.push(await page.evaluate(async () => {
      const t0 = performance.now();
      const get = (p) => fetch(`/api/2.0/postgres/projects/default/${p}`).then((r) => r.json());
      const [b, e] = await Promise.all([get('branches'), get('endpoints')]);
      if (!b.branches || !e.endpoints) throw new Error('the lists did not come');
      return performance.now() - t0;
    }));
  }
  const branches = await context.request.get(`${base}/api/2.0/postgres/projects/default/branches`);
  const n = (await branches.json()).branches.length;
  const paint = median(paints);
  const data = median(fetches);
  console.log(`branches in the project      ${n} (rows drawn: ${rows}, the ones on screen)`);
  console.log(`first paint of the tree      ${paint.toFixed(0)} ms (median of ${rounds}, from navigation)`);
  console.log(`its data alone (baseline)    ${data.toFixed(0)} ms (both lists fetched and parsed)`);
  console.log(`ratio paint / data           ${(paint / data).toFixed(2)}`);
  console.log(`target: first paint <= 1000 ms: ${paint <= 1000 ? 'met' : 'NOT met'}`);
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
