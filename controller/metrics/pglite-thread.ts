// The embedded metrics store's database, on a thread of its own. PGlite runs PostgreSQL in
// WebAssembly synchronously: on the gateway's thread, each batch write would hold up every call
// in flight for milliseconds. Here it runs beside the event loop (on another core when there is
// one), and the gateway's thread only posts messages (sql-client.ts: openEmbeddedClient).
import { mkdirSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { PGlite } from "@electric-sql/pglite";

/** What the client asks: one statement with parameters, or a script. */
export type ThreadRequest =
  | { id: number; op: "query"; text: string; params?: unknown[] }
  | { id: number; op: "exec"; text: string }
  | { id: number; op: "close" };

export type ThreadAnswer =
  | { id: number; rows: unknown[] }
  | { id: number; error: { message: string; code?: string } };

export interface ThreadData {
  dataDir: string;
  /** Type oids whose values stay text. */
  asText: number[];
}

const port = parentPort;
if (port) {
  const { dataDir, asText } = workerData as ThreadData;
  if (dataDir !== "memory") mkdirSync(dataDir, { recursive: true });
  const asIs = (value: string) => value;
  const opened = PGlite.create(dataDir === "memory" ? undefined : dataDir, {
    parsers: Object.fromEntries(asText.map((oid) => [oid, asIs])),
  });
  // A database that cannot open answers every request with why.
  opened.catch(() => {});
  port.on("message", async (request: ThreadRequest) => {
    let answer: ThreadAnswer;
    try {
      const db = await opened;
      if (request.op === "query") {
        answer = { id: request.id, rows: (await db.query(request.text, request.params)).rows };
      } else if (request.op === "exec") {
        await db.exec(request.text);
        answer = { id: request.id, rows: [] };
      } else {
        await db.close();
        answer = { id: request.id, rows: [] };
      }
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      answer = {
        id: request.id,
        error: {
          message: (error as Error).message ?? String(error),
          ...(typeof code === "string" ? { code } : {}),
        },
      };
    }
    port.postMessage(answer);
  });
}
