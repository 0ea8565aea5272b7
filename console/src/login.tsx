// The login form: an API token (or the admin token) for a session cookie.
import { useState } from 'preact/hooks';
import { call, type Session } from './api';
import { ErrorText, useAction } from './widgets';

export function Login(props: { onLogin: (s: Session) => void; initialError: string }) {
  const [token, setToken] = useState('');
  const { busy, error, run } = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    run(async () => props.onLogin(await call<Session>('POST', 'console/session', { token })));
  };
  return (
    <form class="login" onSubmit={submit}>
      <h1>Arbor</h1>
      <label>
        API token
        <input
          type="password"
          name="token"
          autocomplete="off"
          autofocus
          required
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
        />
      </label>
      <ErrorText error={error || (busy ? '' : props.initialError)} />
      <button class="primary" disabled={busy}>
        Log in
      </button>
      <p class="hint">
        The admin token is in <code>$ARBOR_HOME/admin-token</code>; <code>arbor console</code> opens
        this page logged in.
      </p>
    </form>
  );
}
