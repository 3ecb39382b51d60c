// The little the metrics store needs from a SQL database (one statement with parameters, a script,
// a transaction), and its two adapters: PGlite — PostgreSQL compiled to WebAssembly, in this
// process — for `modelship up`, and node-postgres' pool for a PostgreSQL server.
//
// Both hand back int8, json and jsonb values as their text, never parsed: a count or an id can
// pass 2^53, and JSON.parse would round a metric's big integers (the store parses metrics itself,
// exactly: exact-json.ts).
import { inspect } from "node:util";
import { Worker } from "node:worker_threads";
import pg from "pg";
import type { ThreadAnswer, ThreadData, ThreadRequest } from "./pglite-thread.ts";

export interface SqlSession {
  /** One statement with `$1`… parameters; its rows. */
  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<Row[]>;
  /** Several statements without parameters (a migration). */
  exec(script: string): Promise<void>;
}

export interface SqlClient extends SqlSession {
  /** Runs `fn` on one connection in one transaction: committed if it resolves, else rolled back. */
  transaction<T>(fn: (tx: SqlSession) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** PostgreSQL's type oids whose values stay text (see the header). */
const INT8 = 20;
const JSON_OID = 114;
const JSONB = 3802;
const AS_TEXT = new Set([INT8, JSON_OID, JSONB]);

/**
 * The in-process database: its files in `dataDir`, or in memory only. PGlite runs on a thread of
 * its own (pglite-thread.ts), so that its work never stalls the gateway's calls. It is one
 * connection: requests go one at a time, in order, and a transaction holds it until it ends.
 */
export async function openEmbeddedClient(dataDir: string): Promise<SqlClient> {
  const data: ThreadData = { dataDir, asText: [...AS_TEXT] };
  const thread = new Worker(new URL("./pglite-thread.ts", import.meta.url), { workerData: data });
  const pending = new Map<
    number,
    { resolve: (rows: unknown[]) => void; reject: (error: Error) => void }
  >();
  let nextId = 1;
  let ended: Error | undefined;
  const endAll = (error: Error) => {
    ended = error;
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };
  thread.on("message", (answer: ThreadAnswer) => {
    const waiting = pending.get(answer.id);
    pending.delete(answer.id);
    if (!waiting) return;
    if ("rows" in answer) waiting.resolve(answer.rows);
    else waiting.reject(Object.assign(new Error(answer.error.message), answer.error));
  });
  thread.on("error", (error) =>
    endAll(new Error(`the embedded metrics store failed: ${error.message}`)),
  );
  thread.on("exit", () => endAll(ended ?? new Error("the embedded metrics store is closed")));
  const send = (request: DistributiveOmit<ThreadRequest, "id">): Promise<unknown[]> => {
    if (ended) return Promise.reject(ended);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      thread.postMessage({ id, ...request });
    });
  };
  /** The end of the last request queued: each waits for the one before (one connection). */
  let turn: Promise<unknown> = Promise.resolve();
  const inTurn = <T>(work: () => Promise<T>): Promise<T> => {
    const result = turn.then(work, work);
    turn = result.catch(() => {});
    return result;
  };
  const direct: SqlSession = {
    query: async <Row>(text: string, params?: unknown[]) =>
      (await send({ op: "query", text, ...(params ? { params } : {}) })) as Row[],
    exec: async (text: string) => {
      await send({ op: "exec", text });
    },
  };
  const client: SqlClient = {
    query: (text, params) => inTurn(() => direct.query(text, params)),
    exec: (text) => inTurn(() => direct.exec(text)),
    // The whole transaction is one turn: nothing of another caller's runs inside it.
    transaction: (fn) =>
      inTurn(async () => {
        await direct.exec("BEGIN");
        try {
          const result = await fn(direct);
          await direct.exec("COMMIT");
          return result;
        } catch (error) {
          await direct.exec("ROLLBACK").catch(() => {});
          throw error;
        }
      }),
    close: () =>
      inTurn(async () => {
        if (ended) return;
        await send({ op: "close" }).catch(() => {});
        await thread.terminate();
      }),
  };
  // A database that cannot be opened (a damaged directory) fails here, as it did in process.
  await client.query("SELECT 1").catch(async (error) => {
    await thread.terminate();
    throw error;
  });
  return client;
}

/** Omit over each member of a union. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A pool of connections to the PostgreSQL server at `url` (postgres://user:password@host/db). */
export function openPostgresClient(url: string): SqlClient {
  const hide = passwordHider(url);
  let pool: pg.Pool;
  try {
    pool = new pg.Pool({
      connectionString: url,
      // Without it a server that drops packets holds a caller forever.
      connectionTimeoutMillis: 10_000,
      types: {
        getTypeParser: ((oid: number, format?: "text" | "binary") =>
          AS_TEXT.has(oid)
            ? (value: string) => value
            : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
      },
    });
  } catch (error) {
    throw hide(error);
  }
  // An idle connection the server closed (a restart) is reported here, and unheard it would end
  // the process. The pool has already dropped it; the next query opens a new one, and a query
  // that cannot reports its own error.
  pool.on("error", () => {});
  const session = (runner: pg.Pool | pg.PoolClient): SqlSession => ({
    async query<Row>(text: string, params?: unknown[]) {
      return (await runner.query(text, params)).rows as Row[];
    },
    async exec(script: string) {
      // Without parameters node-postgres uses the simple protocol, which runs several statements.
      await runner.query(script);
    },
  });
  const pooled = session(pool);
  return {
    query: <Row>(text: string, params?: unknown[]) =>
      pooled.query<Row>(text, params).catch(hide.rethrow),
    exec: (script) => pooled.exec(script).catch(hide.rethrow),
    async transaction(fn) {
      const connection = await pool.connect().catch(hide.rethrow);
      let broken = false;
      try {
        await connection.query("BEGIN");
        const result = await fn(session(connection));
        await connection.query("COMMIT");
        return result;
      } catch (error) {
        await connection.query("ROLLBACK").catch(() => {
          broken = true;
        });
        throw hide(error);
      } finally {
        // A connection that could not even roll back is closed, not handed to the next caller.
        connection.release(broken);
      }
    },
    close: () => pool.end(),
  };
}

export interface PasswordHider {
  (error: unknown): unknown;
  rethrow(error: unknown): never;
}

/**
 * What keeps a connection URL's password out of errors (node-postgres masks it in the one error
 * it knows to, a URL that does not parse; this covers the rest): an error that shows it anywhere
 * (its message, a property, a cause) is replaced by one with the message alone, the password
 * masked; others pass as they are. A URL that does not parse is masked whole.
 */
export function passwordHider(url: string): PasswordHider {
  const secrets = passwordsIn(url);
  const mask = (text: string) =>
    secrets.reduce((masked, secret) => masked.replaceAll(secret, "****"), text);
  const hide = ((error: unknown) => {
    const message = messageOf(error);
    const shown = inspect(error, { depth: 4 });
    if (!secrets.some((secret) => shown.includes(secret)) && message === (error as Error).message) {
      return error;
    }
    const safe = new Error(mask(message));
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string") Object.assign(safe, { code });
    return safe;
  }) as PasswordHider;
  hide.rethrow = (error: unknown): never => {
    throw hide(error);
  };
  return hide;
}

/** The password as written in the URL and decoded; the whole URL if it does not parse. */
function passwordsIn(url: string): string[] {
  let password: string;
  try {
    password = new URL(url).password;
  } catch {
    return [url];
  }
  if (password === "") return [];
  let decoded = password;
  try {
    decoded = decodeURIComponent(password);
  } catch {
    // A malformed escape: node-postgres will refuse the URL, and the raw form is what it shows.
  }
  return [...new Set([password, decoded])];
}

/** An error's message; Node reports a refused connection to every address as an AggregateError with none. */
function messageOf(error: unknown): string {
  if (error instanceof AggregateError && error.message === "") {
    return error.errors.map(messageOf).join("; ");
  }
  return error instanceof Error ? error.message : String(error);
}
