// The page: who is logged in, which project, which view. Everything else is in the views.
import { useEffect, useErrorBoundary, useState } from 'preact/hooks';
import {
  ApiError,
  call,
  idOf,
  pg,
  setCsrf,
  setOnUnauthenticated,
  type Project,
  type Session,
} from './api';
import { Login } from './login';
import { ProjectPage } from './project';
import { messageOf } from './widgets';
import { navigate, useRoute } from './util';

export function App() {
  const [crash, resetCrash] = useErrorBoundary();
  // undefined while the page asks the server whether its cookie is still a session.
  const [session, setSession] = useState<Session | null>();
  const [loginError, setLoginError] = useState('');

  const enter = (s: Session) => {
    setCsrf(s.csrf_token);
    setLoginError('');
    setSession(s);
  };

  useEffect(() => {
    setOnUnauthenticated((message) => {
      setCsrf('');
      setLoginError(message);
      setSession(null);
    });
    // `arbor console` opens the page with #login=CODE: a one-time code, spent at once.
    const code = new URLSearchParams(location.hash.slice(1)).get('login');
    if (code) history.replaceState(null, '', location.pathname + location.search);
    const first = code
      ? call<Session>('POST', 'console/session', { code })
      : call<Session>('GET', 'console/session');
    first.then(enter, (e) => {
      if (code) setLoginError(messageOf(e));
      setSession(null);
    });
  }, []);

  if (crash) {
    return (
      <div class="crash" role="alert">
        <p>The console failed: {String(crash.message ?? crash)}</p>
        <button onClick={resetCrash}>Try again</button>
      </div>
    );
  }
  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null) return <Login onLogin={enter} initialError={loginError} />;
  return <Console session={session} onLogout={() => setSession(null)} />;
}

function Console({ session, onLogout }: { session: Session; onLogout: () => void }) {
  const path = useRoute();
  const [projects, setProjects] = useState<Project[]>();
  const [error, setError] = useState('');

  useEffect(() => {
    call<{ projects: Project[] }>('GET', pg('projects')).then(
      (r) => setProjects(r.projects ?? []),
      (e) => setError(messageOf(e)),
    );
  }, []);

  const m = /^\/projects\/([^/]+)(?:\/(diff|insight))?/.exec(path);
  const project = projects?.find((p) => idOf(p.name) === m?.[1]);
  useEffect(() => {
    if (projects?.length && !project) {
      const def = projects.find((p) => idOf(p.name) === 'default') ?? projects[0];
      navigate(`/projects/${idOf(def.name)}`);
    }
  }, [projects, project]);

  // A session that is gone already (401) is logged out too.
  const logout = () =>
    call('DELETE', 'console/session').then(onLogout, (e) =>
      e instanceof ApiError && e.status === 401 ? onLogout() : setError(messageOf(e)),
    );
  const { name, role } = session.principal;

  return (
    <div class="console">
      <header>
        <strong class="logo">Arbor</strong>
        <nav class="projects" aria-label="Projects">
          {projects?.map((p) => (
            <a
              href={`/projects/${idOf(p.name)}`}
              class={p === project ? 'current' : ''}
              onClick={(e) => {
                e.preventDefault();
                navigate(`/projects/${idOf(p.name)}`);
              }}
            >
              {idOf(p.name)}
            </a>
          ))}
        </nav>
        <span class="who">
          {name} ({role})
        </span>
        <button onClick={logout}>Log out</button>
      </header>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {projects?.length === 0 && <p class="empty">There are no projects yet.</p>}
      {project && (
        <ProjectPage
          key={project.name}
          project={project}
          projects={projects!}
          tab={m?.[2] ?? 'tree'}
        />
      )}
    </div>
  );
}
