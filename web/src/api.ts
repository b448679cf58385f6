// The server's JSON API (docs/ui.md): GETs, CSRF-guarded POSTs, and
// server-sent event streams that survive a server restart.
import { byId } from "./dom";

export interface Run {
  id: string;
  name: string;
  project: string;
  status: string;
  branch: string;
  base_branch?: string;
  base_commit?: string;
  prompt?: string;
  agent?: string;
  model?: string;
  created_at?: string;
  started_at?: string;
  finished_at?: string;
  exit_code?: number;
  error?: string;
  stop_reason?: string;
  max_cost_usd?: number;
  turns?: number;
  cost_usd?: number;
  egress_allowed?: number;
  egress_denied?: number;
  harvested?: boolean;
  harvest_error?: string;
  harvest_warning?: string;
  head?: string;
  merged_at?: string;
  session_id?: string;
}

export interface Commit {
  sha: string;
  subject: string;
  author: string;
  time: string;
  stat?: string;
}

export interface RunDetail {
  run: Run;
  summary?: string;
  commits?: Commit[] | null;
}

export interface DiffFile {
  path: string;
  old_path?: string;
  status: string;
  additions: number;
  deletions: number;
  binary?: boolean;
  patch?: string;
}

export interface Diff {
  stat: string;
  files: DiffFile[] | null;
}

export interface EgressRecord {
  time: string;
  decision: string;
  host: string;
  method?: string;
  path?: string;
  status?: number;
  reason?: string;
}

export interface Entry {
  kind: string;
  text: string;
}

export interface TranscriptChunk {
  next: number;
  entries: Entry[] | null;
}

export interface Session {
  csrf: string;
  project: string;
  all_projects: boolean;
  version: string;
}

export interface NewInfo {
  prompts: string[] | null;
  profiles: string[] | null;
  agents: string[] | null;
}

// APIError carries the server's own error text, shown verbatim.
export class APIError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

let session: Promise<Session> | null = null;

export function getSession(refresh = false): Promise<Session> {
  if (!session || refresh) {
    session = get<Session>("/api/session");
    session.catch(() => (session = null));
  }
  return session;
}

async function decode<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    if (!res.ok) throw new APIError(text.trim() || `${res.status} ${res.statusText}`, res.status);
    throw new APIError(`the server answered ${res.status} with something other than JSON`, res.status);
  }
  if (!res.ok) {
    const msg = body && typeof body === "object" && "error" in body ? String((body as { error: unknown }).error) : `${res.status} ${res.statusText}`;
    throw new APIError(msg, res.status);
  }
  return body as T;
}

// get tries a GET that never reached an answer (the server restarting, a
// connection dropped under load) again after 0.5, 1, 2 and 4 s before the
// page shows the failure: a GET changes nothing, so a repeat is safe. The
// server's own errors are shown at once.
export async function get<T>(path: string, retryAfterMs = 500): Promise<T> {
  for (let wait = retryAfterMs; ; wait *= 2) {
    let res: Response;
    try {
      res = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) {
      if (!(e instanceof TypeError) || wait > 8 * retryAfterMs) throw e;
      await new Promise((resolve) => setTimeout(resolve, wait));
      continue;
    }
    return decode<T>(res);
  }
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  const send = async (s: Session) =>
    fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Airlock-CSRF": s.csrf, Accept: "application/json" },
      body: JSON.stringify(body ?? {}),
    });
  let res = await send(await getSession());
  if (res.status === 403) {
    // The session may have been rotated (`airlock ui --new-session`):
    // fetch the CSRF token once more before giving up.
    const fresh = await getSession(true).catch(() => null);
    if (fresh) res = await send(fresh);
  }
  return decode<T>(res);
}

// Streams whose connection is down; the header shows "reconnecting…"
// while any is.
const down = new Set<string>();
function setDown(key: string, isDown: boolean): void {
  if (isDown) down.add(key);
  else down.delete(key);
  const badge = document.getElementById("conn");
  if (badge) badge.classList.toggle("hidden", down.size === 0);
}

export function markDown(key: string, isDown: boolean): void {
  setDown(key, isDown);
}

export interface Stream {
  close(): void;
}

// stream opens an EventSource on url and keeps it open: the browser
// retries a dropped connection by itself (sending Last-Event-ID), but gives
// up for good on an HTTP error answer (a restarting server's 502/503), so
// then a new one is made, with backoff. onReopen runs before a new
// EventSource is made (its Last-Event-ID is lost: the caller resets what it
// showed).
export function stream(
  url: string,
  handlers: Record<string, (data: unknown, ev: MessageEvent) => void>,
  onReopen?: () => void,
): Stream {
  let es: EventSource | null = null;
  let closed = false;
  let delay = 500;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const key = `${url}#${Math.random()}`;
  const open = () => {
    es = new EventSource(url, { withCredentials: true });
    es.onopen = () => {
      delay = 500;
      setDown(key, false);
    };
    es.onerror = () => {
      setDown(key, true);
      if (es && es.readyState === EventSource.CLOSED && !closed) {
        es = null;
        timer = setTimeout(() => {
          if (closed) return;
          onReopen?.();
          open();
        }, delay);
        delay = Math.min(delay * 2, 10000);
      }
    };
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (ev) => {
        const me = ev as MessageEvent;
        let data: unknown;
        try {
          data = JSON.parse(me.data);
        } catch {
          return;
        }
        fn(data, me);
      });
    }
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      es?.close();
      setDown(key, false);
    },
  };
}

export function showHeader(): void {
  getSession()
    .then((s) => {
      byId("project").textContent = s.all_projects ? "all projects" : s.project;
      byId("project").title = `airlock ${s.version}`;
    })
    .catch(() => {});
}
