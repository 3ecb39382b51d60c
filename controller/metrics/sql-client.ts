// The little the metrics store needs from a SQL database (one statement with parameters, a script,
// a transaction), and its two adapters: PGlite — PostgreSQL compiled to WebAssembly, in this
// process — for `modelship up`, and node-postgres' pool for a PostgreSQL server.
//
// Both hand back int8, json and jsonb values as their text, never parsed: a count or an id can
// pass 2^53, and JSON.parse would round a metric's big integers (the store parses metrics itself,
// exactly: exact-json.ts).
import { mkdirSync } from "node:fs";
import { inspect } from "node:util";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";

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

/** The in-process database: its files in `dataDir`, or in memory only. */
export async function openEmbeddedClient(dataDir: string): Promise<SqlClient> {
  if (dataDir !== "memory") mkdirSync(dataDir, { recursive: true });
  const asIs = (value: string) => value;
  const db = await PGlite.create(dataDir === "memory" ? undefined : dataDir, {
    parsers: Object.fromEntries([...AS_TEXT].map((oid) => [oid, asIs])),
  });
  const session = (runner: Pick<PGlite, "query" | "exec">): SqlSession => ({
    async query<Row>(text: string, params?: unknown[]) {
      return (await runner.query<Row>(text, params)).rows;
    },
    async exec(script: string) {
      await runner.exec(script);
    },
  });
  return {
    ...session(db),
    // PGlite is one connection: its own transaction() holds it, so other calls wait their turn.
    transaction: (fn) => db.transaction((tx) => fn(session(tx))),
    close: () => db.close(),
  };
}

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
