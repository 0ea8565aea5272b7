// One project: its branches and endpoints, polled while the tab is visible, and its views.
import { useRef, useState } from 'preact/hooks';
import { call, idOf, pg, type Branch, type Endpoint, type Project } from './api';
import { BranchPanel } from './branch_panel';
import { DiffView } from './diff';
import { Insight } from './insight';
import { BranchTree } from './tree';
import { navigate, usePoll } from './util';
import { ErrorText, messageOf } from './widgets';

export interface ProjectData {
  project: Project;
  branches: Branch[];
  endpoints: Endpoint[];
  refresh: () => Promise<void>;
}

const kPollMs = 2000;

export function ProjectPage(props: { project: Project; projects: Project[]; tab: string }) {
  const P = idOf(props.project.name);
  const [lists, setLists] = useState<{ branches: Branch[]; endpoints: Endpoint[] }>();
  const [error, setError] = useState('');
  const [selected, setSelected] = useState(props.project.status.default_branch);
  const last = useRef('');

  const refresh = async () => {
    try {
      const [b, e] = await Promise.all([
        call<{ branches?: Branch[] }>('GET', pg(`projects/${P}/branches`)),
        call<{ endpoints?: Endpoint[] }>('GET', pg(`projects/${P}/endpoints`)),
      ]);
      setError('');
      // Most polls change nothing: skip the render then.
      const text = JSON.stringify([b, e]);
      if (text === last.current) return;
      last.current = text;
      setLists({ branches: b.branches ?? [], endpoints: e.endpoints ?? [] });
    } catch (e) {
      setError(messageOf(e));
    }
  };
  usePoll(refresh, kPollMs, [P]);

  const data: ProjectData | undefined = lists && { project: props.project, ...lists, refresh };
  const tabs: [string, string, string][] = [
    ['tree', `/projects/${P}`, 'Branches'],
    ['diff', `/projects/${P}/diff`, 'Diff'],
    ['insight', `/projects/${P}/insight`, 'Insight'],
  ];
  return (
    <main>
      <nav class="tabs">
        {tabs.map(([id, href, label]) => (
          <a
            href={href}
            class={props.tab === id ? 'current' : ''}
            onClick={(e) => {
              e.preventDefault();
              navigate(href);
            }}
          >
            {label}
          </a>
        ))}
      </nav>
      <ErrorText error={error} />
      {!data && !error && <p class="loading">Loading branches…</p>}
      {data && props.tab === 'tree' && (
        <div class="split">
          <BranchTree data={data} selected={selected} onSelect={setSelected} />
          <BranchPanel data={data} name={selected} onSelect={setSelected} />
        </div>
      )}
      {data && props.tab === 'diff' && <DiffView data={data} initial={selected} />}
      {data && props.tab === 'insight' && <Insight data={data} projects={props.projects} />}
    </main>
  );
}
