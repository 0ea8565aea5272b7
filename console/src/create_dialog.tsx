// "New branch": a parent, optionally a past state of it, an expiry (or none) and protection.
import { useState } from 'preact/hooks';
import { call, idOf, pg } from './api';
import type { ProjectData } from './project';
import { historyWindow, TimePicker } from './time_picker';
import { Elapsed, ErrorText, Modal, useAction } from './widgets';

type Expiry = 'never' | 'ttl' | 'until';

export function CreateDialog(props: {
  data: ProjectData;
  parent: string;
  onClose: () => void;
  onCreated: (name: string) => void;
}) {
  const { project, branches } = props.data;
  const P = idOf(project.name);
  const defaultTtl = project.spec.default_branch_ttl;
  const [id, setId] = useState('');
  const [parent, setParent] = useState(props.parent);
  const [past, setPast] = useState(false);
  const [at, setAt] = useState(Date.now() - 60_000);
  const [expiry, setExpiry] = useState<Expiry>(defaultTtl ? 'ttl' : 'never');
  const [ttlHours, setTtlHours] = useState(defaultTtl ? parseInt(defaultTtl, 10) / 3600 : 24);
  const [until, setUntil] = useState('');
  const [protect, setProtect] = useState(false);
  const { busy, error, run } = useAction();

  const [min, max] = historyWindow(
    project,
    branches.find((b) => b.name === parent),
  );
  const when = Math.min(max, Math.max(min, at));
  const submit = (e: Event) => {
    e.preventDefault();
    const spec: Record<string, unknown> = { source_branch: parent, is_protected: protect };
    if (past) spec.source_branch_time = new Date(when).toISOString();
    if (expiry === 'never') spec.no_expiry = true;
    if (expiry === 'ttl') spec.ttl = `${Math.round(ttlHours * 3600)}s`;
    if (expiry === 'until') spec.expire_time = new Date(until).toISOString();
    run(async () => {
      const b = await call<{ name: string }>(
        'POST',
        pg(`projects/${P}/branches?branch_id=${encodeURIComponent(id)}`),
        { spec },
      );
      await props.data.refresh();
      props.onCreated(b.name);
    });
  };

  return (
    <Modal title="New branch" onClose={props.onClose} wide>
      <form class="form" onSubmit={submit}>
        <label>
          Name
          <input
            name="branch_id"
            required
            autofocus
            value={id}
            placeholder="dev"
            onInput={(e) => setId(e.currentTarget.value)}
          />
        </label>
        <label>
          Parent
          <select name="parent" value={parent} onChange={(e) => setParent(e.currentTarget.value)}>
            {branches.map((b) => (
              <option value={b.name}>{idOf(b.name)}</option>
            ))}
          </select>
        </label>
        <fieldset>
          <legend>Data</legend>
          <label class="inline">
            <input type="radio" name="when" checked={!past} onChange={() => setPast(false)} /> the
            parent as it is now
          </label>
          <label class="inline">
            <input type="radio" name="when" checked={past} onChange={() => setPast(true)} /> the
            parent as it was at a point in time
          </label>
          {past && <TimePicker min={min} max={max} value={when} onChange={setAt} />}
        </fieldset>
        <fieldset>
          <legend>Expiry</legend>
          <label class="inline">
            <input
              type="radio"
              name="expiry"
              checked={expiry === 'never'}
              onChange={() => setExpiry('never')}
            />{' '}
            no expiry
          </label>
          <label class="inline">
            <input
              type="radio"
              name="expiry"
              checked={expiry === 'ttl'}
              onChange={() => setExpiry('ttl')}
            />{' '}
            expires after
            <input
              type="number"
              class="short"
              aria-label="Hours to live"
              min="0.01"
              step="any"
              value={ttlHours}
              onInput={(e) => setTtlHours(Number(e.currentTarget.value))}
            />
            hours
          </label>
          <label class="inline">
            <input
              type="radio"
              name="expiry"
              checked={expiry === 'until'}
              onChange={() => setExpiry('until')}
            />{' '}
            expires at
            <input
              type="datetime-local"
              aria-label="Expiry time"
              value={until}
              required={expiry === 'until'}
              onInput={(e) => setUntil(e.currentTarget.value)}
            />
          </label>
        </fieldset>
        <label class="inline">
          <input
            type="checkbox"
            name="protected"
            checked={protect}
            onChange={(e) => setProtect(e.currentTarget.checked)}
          />{' '}
          protected (cannot be deleted, reset or restored)
        </label>
        <ErrorText error={error} />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button class="primary" disabled={busy}>
            Create {busy && <Elapsed />}
          </button>
        </div>
      </form>
    </Modal>
  );
}
