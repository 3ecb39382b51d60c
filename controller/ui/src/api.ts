// The dashboard's one client of the admin API — the same API, paths and object shapes the CLI
// reads (docs/cli.md): objects in the Kubernetes resource shape, lists with `items`, and watches
// as a stream of {"type", "object"} lines. The session token lives in this tab's sessionStorage
// only; every request carries it as a bearer token, and a 401 signs the tab out.

const SESSION_KEY = "modelship.session";

export function sessionToken(): string | null {
  return sessionStorage.getItem(SESSION_KEY);
}

/** Listeners told when the session ends (signed out, expired, or refused). */
const signedOutListeners = new Set<() => void>();

export function onSignedOut(listener: () => void): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

function endSession(): void {
  sessionStorage.removeItem(SESSION_KEY);
  for (const listener of signedOutListeners) listener();
}

export class ApiError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.status = status;
  }
}

async function errorOf(response: Response): Promise<ApiError> {
  let message = `the admin API answered ${response.status}`;
  try {
    const body = (await response.json()) as { error?: string };
    if (body.error) message = body.error;
  } catch {
    // Not JSON: the status says enough.
  }
  return new ApiError(message, response.status);
}

/** Signs in with the admin token or a link's one-time code; throws with the server's reason. */
export async function signIn(credential: { token: string } | { code: string }): Promise<void> {
  const response = await fetch("/api/v1/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(credential),
  });
  if (!response.ok) throw await errorOf(response);
  const { token } = (await response.json()) as { token: string };
  sessionStorage.setItem(SESSION_KEY, token);
}

export async function signOut(): Promise<void> {
  try {
    await fetch("/api/v1/login", { method: "DELETE", headers: authorization() });
  } finally {
    endSession();
  }
}

function authorization(): Record<string, string> {
  const token = sessionToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** One call to the admin API; the answer's JSON, or an ApiError with the server's message. */
export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(path, {
    ...init,
    headers: { "content-type": "application/json", ...authorization(), ...init.headers },
  });
  if (response.status === 401) {
    endSession();
    throw await errorOf(response);
  }
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

/**
 * Reads a stream of JSON lines (a watch, a log that follows) until `signal` aborts, handing each
 * line to `onLine`; `onOpen` runs on each (re)connection, before its first line. A broken stream
 * is opened again after a pause, as a Kubernetes informer lists and watches again.
 */
export async function followLines<T>(
  path: string,
  onLine: (line: T) => void,
  signal: AbortSignal,
  onOpen: () => void = () => {},
): Promise<void> {
  let pause = 500;
  while (!signal.aborted) {
    try {
      const response = await fetch(path, { headers: authorization(), signal });
      if (response.status === 401) {
        endSession();
        return;
      }
      if (!response.ok || !response.body) throw await errorOf(response);
      onOpen();
      pause = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += value;
        let newline = pending.indexOf("\n");
        while (newline !== -1) {
          const text = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (text) onLine(JSON.parse(text) as T);
          newline = pending.indexOf("\n");
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 10_000);
  }
}
