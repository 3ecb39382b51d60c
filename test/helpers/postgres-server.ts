// A throwaway PostgreSQL server from the machine's own binaries (Debian's postgresql package:
// /usr/lib/postgresql/<version>/bin): a fresh cluster in a temp dir, on a free port of 127.0.0.1,
// password authentication (so that tests can show a password never reaches an error), fsync off.
// It can be stopped and started again on the same data and port (a "store down" test), and
// removed. PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
import { execFile } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./ports.ts";

const run = promisify(execFile);

const POSTGRES_ROOT = "/usr/lib/postgresql";
const SUPERUSER = "modelship";
/** A throwaway cluster's password: the tests look for it in error messages. */
export const TEST_PASSWORD = "pw-only-for-a-throwaway-test-cluster";

export interface PostgresServer {
  /** postgres://modelship:PASSWORD@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  /** The URL of a database of this server (made by createDatabase). */
  urlOf(database: string): string;
  /** Makes an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (`pg_ctl stop -m fast`), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same data and port. */
  start(): Promise<void>;
  /** Stops it if it runs and removes its directory. */
  remove(): Promise<void>;
}

/** The newest PostgreSQL installed, by its version directory. */
function binDir(): string {
  const versions = existsSync(POSTGRES_ROOT)
    ? readdirSync(POSTGRES_ROOT)
        .filter((name) => /^\d+$/.test(name) && existsSync(join(POSTGRES_ROOT, name, "bin/initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const newest = versions[0];
  if (newest === undefined) {
    throw new Error(
      `no PostgreSQL server under ${POSTGRES_ROOT}/<version>/bin: apt-get install postgresql`,
    );
  }
  return join(POSTGRES_ROOT, newest, "bin");
}

/** Runs a PostgreSQL binary as the user that owns the cluster. */
async function asOwner(command: string, args: string[]): Promise<void> {
  const asRoot = process.getuid?.() === 0;
  const [file, argv] = asRoot
    ? ["runuser", ["-u", "postgres", "--", command, ...args]]
    : [command, args];
  try {
    await run(file, argv, { timeout: 60_000 });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(" ")} failed:\n${stdout ?? ""}${stderr ?? ""}`);
  }
}

export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), "modelship-postgres-"));
  const data = join(dir, "data");
  const log = join(dir, "server.log");
  const passwordFile = join(dir, "password");
  writeFileSync(passwordFile, `${TEST_PASSWORD}\n`);
  if (process.getuid?.() === 0) {
    const uid = Number((await run("id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await run("id", ["-g", "postgres"])).stdout.trim());
    chownSync(dir, uid, gid);
    chownSync(passwordFile, uid, gid);
  }
  await asOwner(join(bin, "initdb"), [
    "--pgdata",
    data,
    "--username",
    SUPERUSER,
    "--pwfile",
    passwordFile,
    "--auth",
    "scram-sha-256",
    "--encoding",
    "UTF8",
    "--no-sync",
  ]);
  rmSync(passwordFile);
  const port = await freePort();
  // The socket goes in the temp dir too: the default (/var/run/postgresql) may not exist or may
  // belong to the machine's own server.
  const options = [
    "-c listen_addresses=127.0.0.1",
    `-p ${port}`,
    `-c unix_socket_directories=${dir}`,
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
  ].join(" ");
  let running = false;
  const pgCtl = (args: string[]) => asOwner(join(bin, "pg_ctl"), ["--pgdata", data, ...args]);
  const urlOf = (database: string) =>
    `postgres://${SUPERUSER}:${TEST_PASSWORD}@127.0.0.1:${port}/${database}`;

  const server: PostgresServer = {
    url: urlOf("postgres"),
    port,
    urlOf,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      const client = new pg.Client({ connectionString: urlOf("postgres") });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return urlOf(name);
    },
    async start() {
      try {
        await pgCtl(["start", "--wait", "--timeout", "60", "--log", log, "-o", options]);
      } catch (error) {
        const said = existsSync(log) ? readFileSync(log, "utf8").slice(-2000) : "(no log)";
        throw new Error(`${(error as Error).message}\nserver log:\n${said}`);
      }
      running = true;
    },
    async stop() {
      await pgCtl(["stop", "--wait", "-m", "fast"]);
      running = false;
    },
    async remove() {
      if (running) await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return server;
}
