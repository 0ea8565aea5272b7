// Small pieces every view uses: a dialog in the page, a request's busy/error state, errors.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

// The sentence to show for a failure: the API's own message when it sent one.
export const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

export function ErrorText({ error }: { error: string }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

// A modal dialog drawn in the page; Escape or a click beside it closes it.
export function Modal(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
}) {
  useEffect(() => {
    const f = (e: KeyboardEvent) => e.key === 'Escape' && props.onClose();
    addEventListener('keydown', f);
    return () => removeEventListener('keydown', f);
  }, [props.onClose]);
  return (
    <div class="overlay" onClick={(e) => e.target === e.currentTarget && props.onClose()}>
      <div
        class={props.wide ? 'dialog wide' : 'dialog'}
        role="dialog"
        aria-modal="true"
        aria-label={props.title}
      >
        <h2>{props.title}</h2>
        {props.children}
      </div>
    </div>
  );
}

// One request at a time from a form or a button: whether it runs, for how long, and what
// the API said if it failed.
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const run = async (f: () => Promise<void>) => {
    setBusy(true);
    setError('');
    try {
      await f();
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run, setError };
}

// Seconds since it appeared: what a request that takes a while shows instead of a spinner.
export function Elapsed() {
  const [start] = useState(Date.now);
  const [, tick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, []);
  return <span class="elapsed">{Math.floor((Date.now() - start) / 1000)} s</span>;
}

// A dialog asking "are you sure"; `onConfirm` runs the request, and a refusal stays shown
// in the dialog with the API's message.
export function Confirm(props: {
  title: string;
  children: ComponentChildren;
  confirm: string;
  danger?: boolean;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const { busy, error, run } = useAction();
  return (
    <Modal title={props.title} onClose={props.onClose}>
      <div class="body">{props.children}</div>
      <ErrorText error={error} />
      <div class="buttons">
        <button type="button" onClick={props.onClose}>
          {error ? 'Close' : 'Cancel'}
        </button>
        <button
          type="button"
          class={props.danger ? 'danger' : 'primary'}
          disabled={busy}
          onClick={() => run(props.onConfirm)}
        >
          {props.confirm} {busy && <Elapsed />}
        </button>
      </div>
    </Modal>
  );
}
