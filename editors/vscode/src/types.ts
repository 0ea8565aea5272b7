// The JSON the CLI prints with `-o json`: the API's resources (docs/api.md) and the git
// commands' own answers (docs/workflow.md). Only the fields the extension reads; written
// once, here.

export interface Branch {
  name: string; // projects/P/branches/B
  uid: string;
  create_time: string;
  spec: {
    is_protected?: boolean;
    no_expiry?: boolean;
    source_branch?: string;
  };
  status: {
    current_state: string; // READY, ...
    default?: boolean;
    expire_time?: string;
    source_branch?: string;
    source_branch_time?: string;
    logical_size_bytes?: number;
    written_bytes?: number;
  };
}

export interface Endpoint {
  name: string; // projects/P/branches/B/endpoints/E
  spec: { endpoint_type?: string };
  status: {
    current_state: string; // ACTIVE, IDLE, STARTING
    host?: string;
    port?: number;
  };
}

// `arbor git status -o json`.
export interface GitStatus {
  repository: string;
  project: string;
  parent: string;
  default_branch: string;
  hooks: string; // "post-checkout installed, post-merge installed"
  branches: {
    git_branch: string;
    database_branch: string;
    current: boolean;
    exists: boolean | null; // null: the daemon could not be asked
    expires: string;
  }[];
}

// `arbor bisect -o json`.
export interface BisectResult {
  found: boolean;
  reason?: string;
  branch?: string;
  last_good_time?: string;
  first_bad_time?: string;
  first_bad_commit_time?: string;
  points?: number;
  probes?: number;
  command?: string;
}
