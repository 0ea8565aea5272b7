// The selected branch: what it is, its endpoints, and what can be done to it. The API
// decides what is allowed; a refusal is shown with its message.
import { useState } from 'preact/hooks';
import { branchOf, call, idOf, pg, type Branch, type Credential, type Endpoint } from './api';
import { CreateDialog } from './create_dialog';
import type { ProjectData } from './project';
import { historyWindow, TimePicker } from './time_picker';
import { bytes, local, navigate, relative } from './util';
import { Confirm, Elapsed, ErrorText, useAction } from './widgets';

type Dialog = 'create' | 'reset' | 'restore' | 'delete' | null;

export function BranchPanel(props: {
  data: ProjectData;
  name: string;
  onSelect: (name: string) => void;
}) {
  const { branches, endpoints, refresh } = props.data;
  const b = branches.find((x) => x.name === props.name);
  const [dialog, setDialog] = useState<Dialog>(null);
  // What the last action did, shown while the branch it speaks of is selected.
  const [notice, setNotice] = useState({ about: '', text: '' });
  const close = () => setDialog(null);
  const created = (name: string) => {
    close();
    props.onSelect(name);
  };

  if (!b) {
    return (
      <aside class="panel">
        <p class="empty">{props.name ? `${idOf(props.name)} is gone.` : 'Select a branch.'}</p>
        <button class="primary" onClick={() => setDialog('create')}>
          New branch
        </button>
        {dialog === 'create' && (
          <CreateDialog
            data={props.data}
            parent={props.data.project.status.default_branch}
            onClose={close}
            onCreated={created}
          />
        )}
      </aside>
    );
  }
  const id = idOf(b.name);
  const parent = b.status.source_branch;
  const mine = endpoints.filter((e) => branchOf(e.name) === b.name);
  const done = async (text: string, about = b.name) => {
    setNotice({ about, text });
    close();
    await refresh();
  };

  return (
    <aside class="panel" aria-label={`Branch ${id}`}>
      <h2>{id}</h2>
      <dl>
        <dt>Parent</dt>
        <dd>
          {parent
            ? `${idOf(parent)} at ${local(Date.parse(b.status.source_branch_time ?? b.create_time))}`
            : 'none (root)'}
        </dd>
        <dt>Created</dt>
        <dd>{local(Date.parse(b.create_time))}</dd>
        <dt>State</dt>
        <dd>{b.status.current_state}</dd>
        <dt>Logical size</dt>
        <dd>{bytes(b.status.logical_size_bytes)}</dd>
        <dt>Written</dt>
        <dd>{bytes(b.status.written_bytes)}</dd>
        <dt>Expires</dt>
        <dd>
          {b.status.expire_time
            ? `${local(Date.parse(b.status.expire_time))} (${relative(b.status.expire_time)})`
            : 'never'}
        </dd>
        <dt>Protected</dt>
        <dd>{b.spec.is_protected ? 'yes' : 'no'}</dd>
      </dl>
      <div class="actions">
        <button class="primary" onClick={() => setDialog('create')}>
          New branch from {id}
        </button>
        <button onClick={() => navigate(`/${props.data.project.name}/diff`)}>Compare…</button>
        <button onClick={() => setDialog('reset')}>Reset</button>
        <button onClick={() => setDialog('restore')}>Restore…</button>
        <button class="danger" onClick={() => setDialog('delete')}>
          Delete
        </button>
      </div>
      {notice.about === b.name && (
        <p class="notice" role="status">
          {notice.text}
        </p>
      )}
      <h3>Endpoints</h3>
      {mine.length === 0 && <p class="empty">None.</p>}
      {mine.map((e) => (
        <EndpointCard key={e.uid} endpoint={e} refresh={refresh} />
      ))}

      {dialog === 'create' && (
        <CreateDialog data={props.data} parent={b.name} onClose={close} onCreated={created} />
      )}
      {dialog === 'delete' && (
        <Confirm
          title={`Delete ${id}?`}
          confirm="Delete"
          danger
          onClose={close}
          onConfirm={async () => {
            await call('DELETE', pg(b.name));
            const next = parent ?? props.data.project.status.default_branch;
            props.onSelect(next);
            await done(
              `Deleted ${id}. It can be undeleted for the project's history window.`,
              next,
            );
          }}
        >
          Its endpoints stop and it leaves every list. <code>arbor branch undelete {id}</code>{' '}
          brings it back within the project's history window.
        </Confirm>
      )}
      {dialog === 'reset' && (
        <Confirm
          title={`Reset ${id}?`}
          confirm="Reset"
          danger
          onClose={close}
          onConfirm={async () => {
            await call('POST', pg(b.name + ':reset'), {});
            await done(`Reset ${id} to the current state of its parent.`);
          }}
        >
          {id} takes the current state of its parent{parent && ` ${idOf(parent)}`}; what was written
          on {id} is lost. It keeps its name, endpoints and ports.
        </Confirm>
      )}
      {dialog === 'restore' && (
        <RestoreDialog data={props.data} branch={b} onClose={close} onDone={done} />
      )}
    </aside>
  );
}

function RestoreDialog(props: {
  data: ProjectData;
  branch: Branch;
  onClose: () => void;
  onDone: (m: string) => Promise<void>;
}) {
  const [min, max] = historyWindow(props.data.project, props.branch);
  const [at, setAt] = useState(Math.max(min, max - 60_000));
  const id = idOf(props.branch.name);
  return (
    <Confirm
      title={`Restore ${id} to an earlier state`}
      confirm="Restore"
      danger
      onClose={props.onClose}
      onConfirm={async () => {
        const time = new Date(at).toISOString();
        const r = await call<{ backup_branch: string }>(
          'POST',
          pg(props.branch.name + ':restore'),
          { source_branch_time: time },
        );
        await props.onDone(
          `Restored ${id} to ${local(at)}. Its previous state is kept as the branch ${idOf(r.backup_branch)}.`,
        );
      }}
    >
      <p>
        {id} takes its own state at this time, in place; the state it has now is kept as a new
        branch.
      </p>
      <TimePicker min={min} max={max} value={Math.min(max, Math.max(min, at))} onChange={setAt} />
    </Confirm>
  );
}

// One endpoint: its compute's state, start and stop, and a connection string with a fresh token.
function EndpointCard(props: { endpoint: Endpoint; refresh: () => Promise<void> }) {
  const e = props.endpoint;
  const { busy, error, run } = useAction();
  const [conn, setConn] = useState('');
  const [copied, setCopied] = useState('');
  const type = e.spec.endpoint_type === 'ENDPOINT_TYPE_READ_WRITE' ? 'read-write' : 'read-only';
  const act = (verb: string) =>
    run(async () => {
      await call('POST', pg(`${e.name}:${verb}`));
      await props.refresh();
    });
  const copy = () =>
    run(async () => {
      const c = await call<Credential>('POST', pg('credentials'), { endpoint: e.name });
      const host = e.status.host.includes(':') ? `[${e.status.host}]` : e.status.host;
      const url = `postgresql://${encodeURIComponent(c.role)}:${encodeURIComponent(c.token)}@${host}:${e.status.port}/postgres`;
      setConn(url);
      try {
        await navigator.clipboard.writeText(url);
        setCopied(`Copied; the token expires ${relative(c.expire_time)}.`);
      } catch {
        setCopied(`Copy it from the field; the token expires ${relative(c.expire_time)}.`);
      }
    });
  return (
    <div class="endpoint" data-endpoint={idOf(e.name)}>
      <div>
        <strong>{idOf(e.name)}</strong> <span class="hint">{type}</span>{' '}
        <span class={'compute ' + e.status.current_state}>{e.status.current_state}</span>{' '}
        <span class="hint">
          {e.status.host}:{e.status.port}
        </span>
      </div>
      <div class="actions">
        <button disabled={busy} onClick={() => act('start')}>
          Start
        </button>
        <button disabled={busy} onClick={() => act('stop')}>
          Stop
        </button>
        <button disabled={busy} onClick={copy}>
          Copy connection string
        </button>
        {busy && <Elapsed />}
      </div>
      {conn && (
        <div class="conn">
          <input
            readOnly
            aria-label="Connection string"
            value={conn}
            onFocus={(ev) => ev.currentTarget.select()}
          />
          <span class="hint">{copied}</span>
        </div>
      )}
      <ErrorText error={error} />
    </div>
  );
}
