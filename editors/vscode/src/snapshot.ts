// One look at Arbor from the repository: its mapping and hooks (`arbor git status`), the
// project's branches and their computes. The status bar and the tree both render it.
import { RepoStatus, gitStatus, listBranches, listEndpoints } from './arbor';
import { CliSettings } from './arbor_cli';
import { Branch, Endpoint } from './types';

export interface Snapshot {
  repo?: RepoStatus;
  repoError?: string; // why there is no mapping: no .arbor.toml, not a repository
  project?: string; // the project shown: .arbor.toml's, else the setting's
  branches?: Branch[];
  endpoints?: Endpoint[];
  listError?: string; // why there are no branches: the CLI's sentence
}

// Never rejects: what could not be read is said in repoError and listError.
export async function takeSnapshot(s: CliSettings, repo: string | undefined): Promise<Snapshot> {
  const snap: Snapshot = {};
  if (repo === undefined) {
    snap.repoError = 'No folder is open.';
  } else {
    try {
      snap.repo = await gitStatus(s, repo);
    } catch (e) {
      snap.repoError = (e as Error).message;
    }
  }
  snap.project = snap.repo?.status.project || s.project || undefined;
  const inProject = { ...s, project: snap.project };
  try {
    [snap.branches, snap.endpoints] = await Promise.all([
      listBranches(inProject),
      listEndpoints(inProject),
    ]);
  } catch (e) {
    snap.listError = (e as Error).message;
  }
  return snap;
}
