// The branch tree, drawn as a flat list: each row carries its depth's guide lines (CSS draws
// them). Rows have one fixed height, so only those in view (and a few around) are in the
// page: a tree of thousands of branches costs what a screenful does.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { branchOf, idOf, type Branch, type Endpoint } from './api';
import type { ProjectData } from './project';
import { bytes, relative } from './util';

// One row: the branch, and for each level above it the guide to draw: "p" a parent's line
// going on, "b" nothing, then "t" (a child with siblings below) or "l" (the last child).
interface Row {
  branch: Branch;
  guides: string;
}

const kMaxGuides = 24; // deeper rows draw their last 24 levels
const kRowPx = 30; // as .tree .row's height in style.css
const kOverscan = 10;

export function flatten(branches: Branch[]): Row[] {
  const byName = new Map(branches.map((b) => [b.name, b]));
  const children = new Map<string, Branch[]>();
  const roots: Branch[] = [];
  for (const b of branches) {
    const parent = b.status.source_branch ?? b.spec.source_branch;
    if (parent && parent !== b.name && byName.has(parent)) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent)!.push(b);
    } else {
      roots.push(b);
    }
  }
  const rows: Row[] = [];
  const seen = new Set<string>();
  const walk = (b: Branch, guides: string, below: string) => {
    if (seen.has(b.name)) return;
    seen.add(b.name);
    rows.push({ branch: b, guides });
    const kids = children.get(b.name) ?? [];
    kids.forEach((k, i) => {
      const last = i === kids.length - 1;
      walk(k, below + (last ? 'l' : 't'), below + (last ? 'b' : 'p'));
    });
  };
  for (const r of roots) walk(r, '', '');
  return rows;
}

// The branch's compute: the state of its read-write endpoint.
export function computeStates(endpoints: Endpoint[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of endpoints) {
    if (e.spec.endpoint_type === 'ENDPOINT_TYPE_READ_WRITE')
      m.set(branchOf(e.name), e.status.current_state);
  }
  return m;
}

export function BranchTree(props: {
  data: ProjectData;
  selected: string;
  onSelect: (name: string) => void;
}) {
  const { branches, endpoints } = props.data;
  const rows = useMemo(() => flatten(branches), [branches]);
  const compute = useMemo(() => computeStates(endpoints), [endpoints]);
  const list = useRef<HTMLDivElement>(null);
  const [view, setView] = useState({ top: 0, height: 1000 });
  const measure = () =>
    list.current && setView({ top: list.current.scrollTop, height: list.current.clientHeight });
  useLayoutEffect(() => {
    measure();
    addEventListener('resize', measure);
    return () => removeEventListener('resize', measure);
  }, []);
  // A branch selected elsewhere (just created, say) is scrolled into view.
  const at = rows.findIndex((r) => r.branch.name === props.selected);
  useEffect(() => {
    const el = list.current;
    if (
      el &&
      at >= 0 &&
      (at * kRowPx < el.scrollTop || (at + 2) * kRowPx > el.scrollTop + el.clientHeight)
    ) {
      el.scrollTop = at * kRowPx - el.clientHeight / 2;
    }
  }, [props.selected, at >= 0]);

  const first = Math.max(0, Math.floor(view.top / kRowPx) - kOverscan);
  const last = Math.min(rows.length, Math.ceil((view.top + view.height) / kRowPx) + kOverscan);
  const now = Date.now();
  const onClick = (e: MouseEvent) => {
    const row = (e.target as HTMLElement).closest<HTMLElement>('[data-name]');
    if (row) props.onSelect(row.dataset.name!);
  };
  const onKey = (e: KeyboardEvent) => {
    if (e.key === 'Enter' || e.key === ' ') onClick(e as unknown as MouseEvent);
  };
  return (
    <div
      class="tree"
      role="grid"
      aria-label="Branches"
      aria-rowcount={rows.length}
      ref={list}
      onScroll={measure}
      onClick={onClick}
      onKeyDown={onKey}
    >
      <div class="row head" role="row">
        <span>Branch</span>
        <span>State</span>
        <span>Compute</span>
        <span class="num">Logical size</span>
        <span class="num">Written</span>
        <span>Expires</span>
      </div>
      <div style={{ height: rows.length * kRowPx, paddingTop: first * kRowPx }}>
        {rows.slice(first, last).map(({ branch: b, guides }) => {
          const id = idOf(b.name);
          const state = compute.get(b.name) ?? 'NONE';
          const g = guides.length > kMaxGuides ? guides.slice(-kMaxGuides) : guides;
          return (
            <div
              key={b.uid}
              class={b.name === props.selected ? 'row selected' : 'row'}
              role="row"
              tabIndex={0}
              aria-selected={b.name === props.selected}
              data-name={b.name}
              data-branch={id}
            >
              <span class="name">
                {Array.from(g, (c) => (
                  <i class={'g ' + c} />
                ))}
                <span class={b.status.default ? 'id default' : 'id'}>{id}</span>
                {b.spec.is_protected && <span class="badge protected">protected</span>}
              </span>
              <span class={'state ' + b.status.current_state}>{b.status.current_state}</span>
              <span class={'compute ' + state}>{state === 'NONE' ? '–' : state}</span>
              <span class="num">{bytes(b.status.logical_size_bytes)}</span>
              <span class="num">{bytes(b.status.written_bytes)}</span>
              <span class="expiry" title={b.status.expire_time}>
                {b.status.expire_time ? relative(b.status.expire_time, now) : 'never'}
              </span>
            </div>
          );
        })}
      </div>
    </div>
  );
}
