// Insight: what each branch wrote, hour by hour (GET projects/P/usage), and what the store
// holds against what full copies of every branch would take (what copy-on-write saves).
import { useState } from 'preact/hooks';
import { call, idOf, pg, type Branch, type Project, type ServerStatus, type Usage } from './api';
import type { ProjectData } from './project';
import { bytes, usePoll } from './util';
import { ErrorText, messageOf } from './widgets';

const kHour = 3600_000;
const kColors = [
  '#2f6fde',
  '#e0752d',
  '#3a9e5c',
  '#b0499e',
  '#c9a227',
  '#20a3a8',
  '#d2494e',
  '#7a67d8',
];
const kSeries = kColors.length - 1; // the rest is drawn as "other branches"

export function Insight(props: { data: ProjectData; projects: Project[] }) {
  const P = idOf(props.data.project.name);
  const [hours, setHours] = useState(24);
  const [usage, setUsage] = useState<Usage>();
  const [store, setStore] = useState<{ bytes?: number; logical: number; branches: number }>();
  const [error, setError] = useState('');

  usePoll(
    async () => {
      try {
        const end = Math.ceil(Date.now() / kHour) * kHour;
        const range = `start=${new Date(end - hours * kHour).toISOString()}&end=${new Date(end).toISOString()}`;
        const [u, s, ...lists] = await Promise.all([
          call<Usage>('GET', pg(`projects/${P}/usage?${range}`)),
          call<ServerStatus>('GET', pg('status')),
          ...props.projects.map((p) =>
            call<{ branches?: Branch[] }>('GET', pg(`${p.name}/branches`)),
          ),
        ]);
        const all = lists.flatMap((l) => l.branches ?? []);
        setUsage(u);
        setStore({
          bytes: s.store_bytes,
          logical: all.reduce((n, b) => n + (b.status.logical_size_bytes ?? 0), 0),
          branches: all.length,
        });
        setError('');
      } catch (e) {
        setError(messageOf(e));
      }
    },
    10_000,
    [P, hours],
  );

  return (
    <div class="insight">
      <ErrorText error={error} />
      <section aria-label="Written bytes over time">
        <h3>
          Written bytes per hour, by branch
          <select
            aria-label="Range"
            value={hours}
            onChange={(e) => setHours(Number(e.currentTarget.value))}
          >
            <option value={24}>last 24 hours</option>
            <option value={168}>last 7 days</option>
          </select>
        </h3>
        {usage ? <WrittenChart usage={usage} hours={hours} /> : <p class="loading">Loading…</p>}
      </section>
      <section aria-label="Copy-on-write savings">
        <h3>Store on disk against the branches' logical sizes (all projects)</h3>
        {store ? <StoreChart {...store} /> : <p class="loading">Loading…</p>}
      </section>
    </div>
  );
}

function WrittenChart({ usage, hours }: { usage: Usage; hours: number }) {
  const end = Math.ceil(Date.parse(usage.end) / kHour) * kHour;
  const start = end - hours * kHour;
  // Bytes per branch and hour; the largest writers get their own colour.
  const totals = new Map<string, number>();
  for (const r of usage.usage) totals.set(r.branch, (totals.get(r.branch) ?? 0) + r.written_bytes);
  const ranked = [...totals].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const series = ranked.slice(0, kSeries).map(([name]) => name);
  const other = ranked.length > kSeries;
  const cells = new Map<string, number>(); // `${hourIndex}/${seriesIndex}`
  for (const r of usage.usage) {
    const h = Math.floor((Date.parse(r.hour) - start) / kHour);
    if (h < 0 || h >= hours) continue;
    const i = series.indexOf(r.branch);
    const s = i === -1 ? kSeries : i;
    cells.set(`${h}/${s}`, (cells.get(`${h}/${s}`) ?? 0) + r.written_bytes);
  }
  const perHour = Array.from({ length: hours }, (_, h) =>
    Array.from({ length: kSeries + 1 }, (_, s) => cells.get(`${h}/${s}`) ?? 0),
  );
  const max = Math.max(1, ...perHour.map((v) => v.reduce((a, b) => a + b, 0)));
  const [W, H, left, top, bottom] = [1000, 240, 70, 12, 22];
  const bw = (W - left) / hours;
  const y = (v: number) => ((H - top - bottom) * v) / max;
  const tick = hours <= 24 ? 6 : 24;

  if (!ranked.length) return <p class="empty">Nothing was written in this range.</p>;
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label="Written bytes per hour">
        {[0, 0.5, 1].map((f) => (
          <g>
            <line
              x1={left}
              x2={W}
              y1={H - bottom - y(max * f)}
              y2={H - bottom - y(max * f)}
              class="grid"
            />
            <text x={left - 6} y={H - bottom - y(max * f) + 4} class="axis" text-anchor="end">
              {bytes(max * f)}
            </text>
          </g>
        ))}
        {perHour.map((v, h) => {
          let base = H - bottom;
          return v.map((n, s) => {
            if (!n) return null;
            base -= y(n);
            const who = s < kSeries ? idOf(series[s]) : 'other branches';
            return (
              <rect
                x={left + h * bw + 1}
                y={base}
                width={Math.max(1, bw - 2)}
                height={y(n)}
                fill={kColors[s]}
              >
                <title>{`${who}, ${new Date(start + h * kHour).toLocaleString()}: ${bytes(n)}`}</title>
              </rect>
            );
          });
        })}
        {perHour.map((_, h) =>
          h % tick === 0 ? (
            <text x={left + h * bw} y={H - 6} class="axis">
              {new Date(start + h * kHour).toLocaleString(
                [],
                hours <= 24
                  ? { hour: '2-digit', minute: '2-digit' }
                  : { month: 'short', day: 'numeric' },
              )}
            </text>
          ) : null,
        )}
      </svg>
      <figcaption class="legend">
        {series.map((name, s) => (
          <span>
            <i style={{ background: kColors[s] }} /> {idOf(name)} {bytes(totals.get(name))}
          </span>
        ))}
        {other && (
          <span>
            <i style={{ background: kColors[kSeries] }} /> other branches
          </span>
        )}
      </figcaption>
    </figure>
  );
}

function StoreChart(props: { bytes?: number; logical: number; branches: number }) {
  if (props.bytes === undefined)
    return <p class="empty">This daemon does not report its store's size.</p>;
  const bars: [string, number, string][] = [
    [
      `Sum of the logical sizes of ${props.branches} branches (full copies)`,
      props.logical,
      kColors[1],
    ],
    ['Store on disk', props.bytes, kColors[0]],
  ];
  const max = Math.max(1, props.logical, props.bytes);
  const [W, row] = [1000, 30];
  const saved = props.logical - props.bytes;
  return (
    <figure class="chart">
      <svg
        viewBox={`0 0 ${W} ${bars.length * row * 2}`}
        role="img"
        aria-label="Store against logical sizes"
      >
        {bars.map(([label, v, color], i) => (
          <g transform={`translate(0 ${i * row * 2})`}>
            <text x={0} y={16} class="label">
              {label}: {bytes(v)}
            </text>
            <rect
              x={0}
              y={24}
              width={Math.max(2, (W * v) / max)}
              height={row}
              fill={color}
              rx={3}
            />
          </g>
        ))}
      </svg>
      <figcaption>
        {saved > 0
          ? `Copy-on-write saves ${bytes(saved)}: the store holds ${((100 * props.bytes) / props.logical).toFixed(1)} % of what full copies would take.`
          : 'The store is larger than the sum of the logical sizes: it also keeps each branch\u2019s history window.'}
      </figcaption>
    </figure>
  );
}
