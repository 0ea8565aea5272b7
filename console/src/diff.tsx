// Compares two branches, or a branch and a past state (B@TIME): the schema diff as the CLI's
// markdown, and the data diff's per-table counts from its JSON report.
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { call, idOf, pg, type DataDiff } from './api';
import { Markdown } from './markdown';
import type { ProjectData } from './project';
import { historyWindow, TimePicker } from './time_picker';
import { Elapsed, ErrorText, messageOf } from './widgets';

// One request's outcome: running (with its start), done, or refused with the API's message.
type Result<T> = { busy: true } | { value: T } | { error: string } | null;

export function DiffView(props: { data: ProjectData; initial: string }) {
  const { project, branches } = props.data;
  const [from, setFrom] = useState(props.initial);
  const [to, setTo] = useState(props.data.project.status.default_branch);
  const [past, setPast] = useState(false);
  const [at, setAt] = useState(Date.now() - 300_000);
  const [schema, setSchema] = useState<Result<string>>(null);
  const [data, setData] = useState<Result<DataDiff>>(null);
  const [min, max] = historyWindow(
    project,
    branches.find((b) => b.name === to),
  );
  const when = Math.min(max, Math.max(min, at));

  const compare = (e: Event) => {
    e.preventDefault();
    const against = idOf(to) + (past ? '@' + new Date(when).toISOString() : '');
    const path = pg(from + ':diff_data');
    setSchema({ busy: true });
    setData({ busy: true });
    call<{ markdown: string }>('POST', path, {
      against,
      schema_only: true,
      format: 'markdown',
    }).then(
      (r) => setSchema({ value: r.markdown }),
      (e) => setSchema({ error: messageOf(e) }),
    );
    call<DataDiff>('POST', path, { against }).then(
      (r) => setData({ value: r }),
      (e) => setData({ error: messageOf(e) }),
    );
  };
  const running = schema && 'busy' in schema;

  return (
    <div class="diff">
      <form class="form row-form" onSubmit={compare}>
        <label>
          Compare
          <select name="from" value={from} onChange={(e) => setFrom(e.currentTarget.value)}>
            {branches.map((b) => (
              <option value={b.name}>{idOf(b.name)}</option>
            ))}
          </select>
        </label>
        <label>
          with
          <select name="to" value={to} onChange={(e) => setTo(e.currentTarget.value)}>
            {branches.map((b) => (
              <option value={b.name}>{idOf(b.name)}</option>
            ))}
          </select>
        </label>
        <label class="inline">
          <input
            type="checkbox"
            name="past"
            checked={past}
            onChange={(e) => setPast(e.currentTarget.checked)}
          />{' '}
          as it was at a point in time
        </label>
        <button class="primary" disabled={!!running}>
          Compare
        </button>
      </form>
      {past && <TimePicker min={min} max={max} value={when} onChange={setAt} />}
      <section aria-label="Schema diff">
        <h3>Schema</h3>
        <Outcome result={schema}>{(md) => <Markdown text={md} />}</Outcome>
      </section>
      <section aria-label="Data diff">
        <h3>Data</h3>
        <Outcome result={data}>{(d) => <DataTable diff={d} />}</Outcome>
      </section>
    </div>
  );
}

function Outcome<T>(props: { result: Result<T>; children: (v: T) => ComponentChildren }) {
  const r = props.result;
  if (!r) return <p class="hint">Pick two sides and compare.</p>;
  if ('busy' in r)
    return (
      <p class="loading">
        Comparing (starting computes and reading catalogs or rows)… <Elapsed />
      </p>
    );
  if ('error' in r) return <ErrorText error={r.error} />;
  return <>{props.children(r.value)}</>;
}

function DataTable({ diff }: { diff: DataDiff }) {
  return (
    <div>
      <p>
        <code>{diff.from}</code> → <code>{diff.to}</code>:{' '}
        {diff.identical ? 'the same data' : 'the data differs'}.
        {diff.fallback && ` Every table was read in full: ${diff.fallback}`}
      </p>
      {diff.tables.length > 0 && (
        <table class="counts">
          <thead>
            <tr>
              <th>table</th>
              <th class="num">only in {diff.from}</th>
              <th class="num">only in {diff.to}</th>
              <th class="num">changed</th>
              <th>read</th>
              <th>notes</th>
            </tr>
          </thead>
          <tbody>
            {diff.tables.map((t) => (
              <tr class={t.differs ? 'differs' : ''}>
                <td>
                  <code>{t.table}</code>
                </td>
                <td class="num">{t.only_in_from_count}</td>
                <td class="num">{t.only_in_to_count}</td>
                <td class="num">{t.changed_count}</td>
                <td>{t.read}</td>
                <td>{t.notes?.join('; ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {!!diff.tables_on_one_side?.length && (
        <p>On one side only (see the schema): {diff.tables_on_one_side.join(', ')}</p>
      )}
      {!!diff.skipped_tables?.length && <p>Not compared: {diff.skipped_tables.join(', ')}</p>}
    </div>
  );
}
