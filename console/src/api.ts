// The REST API as the console uses it: its types (docs/api.md), written once, and one way to
// call it. The page authenticates with the session cookie the server set at login; every call
// that changes state carries the session's CSRF token in X-Arbor-CSRF.

export type Role = 'admin' | 'developer' | 'viewer';

export interface Session {
  csrf_token: string;
  principal: { name: string; role: Role; project: string };
}

export interface Project {
  name: string; // projects/P
  uid: string;
  create_time: string;
  spec: { history_retention_duration: string; default_branch_ttl?: string };
  status: { default_branch: string };
}

export interface Branch {
  name: string; // projects/P/branches/B
  uid: string;
  create_time: string;
  spec: {
    source_branch?: string;
    source_branch_time?: string;
    ttl?: string;
    expire_time?: string;
    no_expiry?: boolean;
    is_protected?: boolean;
  };
  status: {
    current_state: string;
    default: boolean;
    logical_size_bytes: number;
    written_bytes: number;
    expire_time?: string;
    source_branch?: string;
    source_branch_time?: string;
  };
}

export type ComputeState = 'ACTIVE' | 'IDLE' | 'STARTING';

export interface Endpoint {
  name: string; // projects/P/branches/B/endpoints/E
  uid: string;
  spec: { endpoint_type: string; source_branch_time?: string };
  status: { current_state: ComputeState; host: string; port: number; connection_string: string };
}

export interface UsageRow {
  hour: string;
  branch: string;
  endpoint: string;
  cu_seconds: number;
  written_bytes: number;
}

export interface Usage {
  start: string;
  end: string;
  usage: UsageRow[];
}

export interface ServerStatus {
  version: string;
  store_bytes?: number;
}

export interface Credential {
  token: string;
  role: string;
  expire_time: string;
}

// What :diff_data answers in its default (json) format; only what the console shows.
export interface TableDiff {
  table: string;
  read?: string;
  differs: boolean;
  notes: string[];
  only_in_from_count: number;
  only_in_to_count: number;
  changed_count: number;
}

export interface DataDiff {
  from: string;
  to: string;
  identical: boolean;
  tables: TableDiff[];
  skipped_tables?: string[];
  tables_on_one_side?: string[];
  fallback?: string;
}

// A refusal or failure, carrying the API's own sentence.
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrf = '';
let onUnauthenticated = (_message: string) => {};

export function setCsrf(token: string) {
  csrf = token;
}

// Called with the API's message on any 401 but the login's own, so that the page goes back
// to the login form and says why.
export function setOnUnauthenticated(f: (message: string) => void) {
  onUnauthenticated = f;
}

// Calls `path` (under /api/2.0/) and answers its JSON. Throws ApiError with the API's
// message for a 4xx/5xx, and with a sentence of ours when the daemon cannot be reached or
// answers something that is not JSON.
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-Arbor-CSRF'] = csrf;
  let res: Response;
  try {
    res = await fetch('/api/2.0/' + path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'UNREACHABLE', `The Arbor daemon cannot be reached (${String(e)}).`);
  }
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = undefined;
  }
  if (res.ok && json !== undefined) return json as T;
  if (res.status === 401 && path !== 'console/session') onUnauthenticated(json?.message ?? '');
  if (json?.message) throw new ApiError(res.status, json.error_code ?? '', json.message);
  throw new ApiError(
    res.status,
    'HTTP',
    `The daemon answered ${res.status} ${res.statusText}: ${text.slice(0, 200)}`,
  );
}

export const pg = (path: string) => 'postgres/' + path;

// The last part of a resource name: "projects/P/branches/dev" -> "dev".
export const idOf = (name: string) => name.slice(name.lastIndexOf('/') + 1);

// "projects/P/branches/B/endpoints/E" -> "projects/P/branches/B".
export const branchOf = (endpoint: string) => endpoint.slice(0, endpoint.indexOf('/endpoints/'));

// "86400s" -> milliseconds.
export const durationMs = (d: string) => parseInt(d, 10) * 1000;
