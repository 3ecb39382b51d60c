// The metrics store (port.ts) over SQL: one implementation for PGlite in process (`modelship up`)
// and for a PostgreSQL server (the cluster), through the SqlClient of sql-client.ts. The schema
// and its migrations are schema.ts'; docs/metrics-store.md says how it reads, retains and fails.
import { buildCrn, deploymentCrn, modelCrn } from "./crn.ts";
import { parseExactJson } from "./exact-json.ts";
import type {
  AggregateRecord,
  MetricsPage,
  MetricsQuery,
  MetricsRow,
  MetricsStore,
  MetricsSubject,
  PredictionRecord,
  RollupResult,
  Run,
  RunFile,
  RunRecord,
  RunStatus,
  RunsQuery,
} from "./port.ts";
import { migrate } from "./schema.ts";
import { openEmbeddedClient, openPostgresClient, type SqlClient } from "./sql-client.ts";

export const DEFAULT_READ_LIMIT = 1000;
export const MAX_READ_LIMIT = 10_000;
const HOUR_MS = 3_600_000;
/** A uuid as the gateway makes them (crypto.randomUUID); anything else names no prediction. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A read's order within one start time: by type (the `kind` column), then in the order rows were
 * written (`position`: a prediction's seq, an aggregate's or a rollup's id).
 */
const TYPES = ["aggregate", "prediction", "rollup"] as const;
const AGGREGATE = 0;
const PREDICTION = 1;
const ROLLUP = 2;

/** Migrates the database behind `client` and returns a store on it (closing `client` on failure). */
export async function openMetricsStore(client: SqlClient): Promise<SqlMetricsStore> {
  try {
    await migrate(client);
  } catch (error) {
    await client.close();
    throw error;
  }
  return new SqlMetricsStore(client);
}

/** The store in process, its files in `dataDir` (a directory of `modelship up`'s state), or "memory". */
export async function openEmbeddedMetricsStore(dataDir: string): Promise<SqlMetricsStore> {
  return openMetricsStore(await openEmbeddedClient(dataDir));
}

/** The store on a PostgreSQL server: postgres://user:password@host:port/database. */
export function openPostgresMetricsStore(url: string): Promise<SqlMetricsStore> {
  return openMetricsStore(openPostgresClient(url));
}

/** A row of a read as the union in `read` selects it; int8 and jsonb come as text. */
interface PageRow {
  kind: number;
  position: string;
  uuid: string | null;
  model: string;
  build: number | null;
  deployment: string | null;
  deployment_id: number | null;
  start_ms: string;
  end_ms: string;
  count: string | null;
  metrics: string;
}

/** Where a page ends: the order key of its last row. */
interface Cursor {
  startMs: string;
  kind: number;
  position: string;
}

export class SqlMetricsStore implements MetricsStore {
  private readonly client: SqlClient;

  constructor(client: SqlClient) {
    this.client = client;
  }

  async writePredictions(records: PredictionRecord[]): Promise<void> {
    if (records.length === 0) return;
    const column = <T>(value: (record: PredictionRecord) => T | undefined) =>
      records.map((record) => value(record) ?? null);
    // One statement over arrays, whatever the batch's size. The metrics go as text and become
    // jsonb in the database, whose numbers are exact. A uuid already stored is a retried batch.
    await this.client.query(
      `INSERT INTO predictions
         (uuid, model, build, deployment, deployment_id, start_ms, end_ms, metrics)
       SELECT uuid, model, build, deployment, deployment_id, start_ms, end_ms, metrics::jsonb
       FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::text[], $5::integer[],
                   $6::bigint[], $7::bigint[], $8::text[])
         AS batch (uuid, model, build, deployment, deployment_id, start_ms, end_ms, metrics)
       ON CONFLICT (uuid) DO NOTHING`,
      [
        column((record) => record.uuid),
        column((record) => record.model),
        column((record) => record.build),
        column((record) => record.deployment),
        column((record) => record.deploymentId),
        column((record) => record.startMs),
        column((record) => record.endMs),
        column((record) => record.metricsJson),
      ],
    );
  }

  async trackDelayed(uuid: string, metricsJson: string, atMs: number): Promise<boolean> {
    if (!UUID.test(uuid)) return false;
    // Inserts only beside a stored prediction. A retention pass holds delayed_metrics locked
    // (rollUp), so this waits for it and then finds the prediction gone, rather than adding
    // metrics to one that is being folded away.
    const rows = await this.client.query(
      `INSERT INTO delayed_metrics (prediction_uuid, at_ms, metrics)
       SELECT uuid, $2, $3::jsonb FROM predictions WHERE uuid = $1
       RETURNING id`,
      [uuid, atMs, metricsJson],
    );
    return rows.length > 0;
  }

  async prediction(uuid: string): Promise<MetricsSubject | undefined> {
    if (!UUID.test(uuid)) return undefined;
    const [row] = await this.client.query<SubjectColumns>(
      "SELECT model, build, deployment, deployment_id FROM predictions WHERE uuid = $1",
      [uuid],
    );
    return row && subjectOf(row);
  }

  async trackAggregate(record: AggregateRecord): Promise<number> {
    const [row] = await this.client.query<{ id: string }>(
      `INSERT INTO aggregate_metrics
         (model, build, deployment, deployment_id, start_ms, end_ms, metrics)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
       RETURNING id`,
      [
        record.model,
        record.build ?? null,
        record.deployment ?? null,
        record.deploymentId ?? null,
        record.startMs,
        record.endMs,
        // JSON.stringify writes a JSON.rawJSON number (a read's big integers) as it came; the
        // table refuses anything but an object.
        JSON.stringify(record.metrics),
      ],
    );
    return Number(row?.id);
  }

  async read(query: MetricsQuery): Promise<MetricsPage> {
    const limit = readLimit(query.limit);
    const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const params: unknown[] = [];
    const param = (value: unknown, type: string) => {
      params.push(value);
      return `$${params.length}::${type}`;
    };
    const model = param(query.model, "text");
    const build = query.build === undefined ? undefined : param(query.build, "integer");
    const deployment = query.deployment === undefined ? undefined : param(query.deployment, "text");
    const deploymentId =
      query.deploymentId === undefined ? undefined : param(query.deploymentId, "integer");
    const since = param(query.sinceMs ?? 0, "bigint");
    const until = query.untilMs === undefined ? undefined : param(query.untilMs, "bigint");
    const after = cursor && {
      startMs: param(cursor.startMs, "bigint"),
      kind: param(cursor.kind, "integer"),
      position: param(cursor.position, "bigint"),
    };
    // One more row than the page, to know whether another page follows.
    const take = param(limit + 1, "integer");

    /** The window and the cursor, over a table whose start is `time` and order `position`. */
    const window = (time: string, kind: number, position: string) => [
      `${time} >= ${since}`,
      ...(until ? [`${time} < ${until}`] : []),
      ...(after
        ? [
            // The first bound lets an index on the time serve; the row comparison is exact.
            `${time} >= ${after.startMs}`,
            `(${time}, ${kind}, ${position}) > (${after.startMs}, ${after.kind}, ${after.position})`,
          ]
        : []),
    ];
    // A read takes what lies inside its subject: a model's read has every build's and every
    // deployment's predictions, rollups and aggregates (a job tracks accuracy by deployment, as
    // CDSW's examples do, and a model-wide read must show it); a build's read, what that build
    // answered and the aggregates tracked for it.
    const narrowed = [
      `model = ${model}`,
      ...(build ? [`build = ${build}`] : []),
      ...(deployment ? [`deployment = ${deployment}`] : []),
      ...(deploymentId ? [`deployment_id = ${deploymentId}`] : []),
    ];
    const where = (conditions: string[]) => conditions.join(" AND ");
    const rows = await this.client.query<PageRow>(
      `SELECT kind, position, uuid, model, build, deployment, deployment_id, start_ms, end_ms,
         count,
         CASE WHEN kind = ${PREDICTION}
           THEN metrics || (SELECT metrics_merge_agg(delayed.metrics ORDER BY delayed.id)
                            FROM delayed_metrics AS delayed
                            WHERE delayed.prediction_uuid = page.uuid)
           ELSE metrics
         END AS metrics
       FROM (
         SELECT * FROM (
           (SELECT ${PREDICTION} AS kind, seq AS position, uuid, model, build, deployment,
              deployment_id, start_ms, end_ms, NULL::bigint AS count, metrics
            FROM predictions
            WHERE ${where([...narrowed, ...window("start_ms", PREDICTION, "seq")])}
            ORDER BY start_ms, seq LIMIT ${take})
           UNION ALL
           (SELECT ${AGGREGATE}, id, NULL, model, build, deployment, deployment_id, start_ms,
              end_ms, NULL, metrics
            FROM aggregate_metrics
            WHERE ${where([...narrowed, ...window("start_ms", AGGREGATE, "id")])}
            ORDER BY start_ms, id LIMIT ${take})
           UNION ALL
           (SELECT ${ROLLUP}, id, NULL, model, build, deployment, deployment_id, hour_ms,
              hour_ms + ${HOUR_MS}, count, metrics
            FROM prediction_rollups
            WHERE ${where([...narrowed, ...window("hour_ms", ROLLUP, "id")])}
            ORDER BY hour_ms, id LIMIT ${take})
         ) AS candidates
         ORDER BY start_ms, kind, position LIMIT ${take}
       ) AS page
       -- Merging delayed metrics here, outside the limit, merges them for this page's rows only.
       ORDER BY start_ms, kind, position`,
      params,
    );
    const last = rows.length > limit ? rows[limit - 1] : undefined;
    return {
      rows: rows.slice(0, limit).map(metricsRowOf),
      ...(last ? { next: encodeCursor(last) } : {}),
    };
  }

  async rollUp(beforeMs: number): Promise<RollupResult> {
    return this.client.transaction(async (tx) => {
      // Until this commits no delayed metric is added (trackDelayed waits), so every one of a
      // folded prediction is folded with it; a second pass waits for the first.
      await tx.query("LOCK TABLE delayed_metrics IN SHARE ROW EXCLUSIVE MODE");
      // One statement, one snapshot: what is deleted is exactly what is folded, even while
      // predictions that started before the cutoff are still being written.
      const [result] = await tx.query<{ predictions: string; hours: string }>(
        `WITH folded AS (
           DELETE FROM predictions WHERE start_ms < $1::bigint
           RETURNING uuid, model, build, deployment, deployment_id, start_ms, metrics
         ), folded_delayed AS (
           DELETE FROM delayed_metrics AS delayed USING folded
           WHERE delayed.prediction_uuid = folded.uuid
           RETURNING delayed.prediction_uuid, delayed.id, delayed.metrics
         ), merged AS (
           SELECT model, build, deployment, deployment_id,
             -- The hour's start, floored (% truncates towards zero).
             start_ms - ((start_ms % ${HOUR_MS}) + ${HOUR_MS}) % ${HOUR_MS} AS hour_ms,
             metrics || (SELECT metrics_merge_agg(mine.metrics ORDER BY mine.id)
                         FROM folded_delayed AS mine
                         WHERE mine.prediction_uuid = folded.uuid) AS metrics
           FROM folded
         ), parts AS (
           SELECT hour_ms, model, build, deployment, deployment_id, count(*) AS predictions,
             NULL::text AS key, NULL::jsonb AS stats
           FROM merged GROUP BY hour_ms, model, build, deployment, deployment_id
           UNION ALL
           SELECT hour_ms, model, build, deployment, deployment_id, 0, entry.key,
             jsonb_build_object('count', count(*), 'sum', sum(entry.value::numeric),
               'min', min(entry.value::numeric), 'max', max(entry.value::numeric))
           FROM merged, jsonb_each(merged.metrics) AS entry
           WHERE jsonb_typeof(entry.value) = 'number'
           GROUP BY hour_ms, model, build, deployment, deployment_id, entry.key
         ), hours AS (
           -- GROUP BY takes NULLs as equal, so a subject without a build is one group.
           SELECT hour_ms, model, build, deployment, deployment_id, sum(predictions) AS count,
             coalesce(jsonb_object_agg(key, stats) FILTER (WHERE key IS NOT NULL), '{}')
               AS metrics
           FROM parts GROUP BY hour_ms, model, build, deployment, deployment_id
         ), written AS (
           INSERT INTO prediction_rollups AS rollup
             (hour_ms, model, build, deployment, deployment_id, count, metrics)
           SELECT hour_ms, model, build, deployment, deployment_id, count, metrics FROM hours
           ON CONFLICT (hour_ms, model, build, deployment, deployment_id) DO UPDATE
           SET count = rollup.count + excluded.count,
               metrics = rollup_metrics_add(rollup.metrics, excluded.metrics)
           RETURNING 1
         )
         SELECT (SELECT count(*) FROM folded) AS predictions,
                (SELECT count(*) FROM written) AS hours`,
        [beforeMs],
      );
      return { predictions: Number(result?.predictions), hours: Number(result?.hours) };
    });
  }

  async recordRun(record: RunRecord): Promise<number> {
    const [row] = await this.client.query<{ id: string }>(
      `INSERT INTO runs (model, repository, source_path, git_commit, dirty, script, args, status,
         exit_code, started_ms, duration_ms, metrics, files, environment)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14)
       RETURNING id`,
      [
        record.model,
        record.repository,
        record.sourcePath,
        record.commit ?? null,
        record.dirty,
        record.script,
        JSON.stringify(record.args),
        record.status,
        record.exitCode,
        record.startedMs,
        record.durationMs,
        // As trackAggregate's: a JSON.rawJSON number is written as it came.
        JSON.stringify(record.metrics),
        JSON.stringify(record.files),
        record.environment,
      ],
    );
    return Number(row?.id);
  }

  async listRuns(query: RunsQuery = {}): Promise<Run[]> {
    const limit = readLimit(query.limit);
    const rows =
      query.model === undefined
        ? await this.client.query<RunColumns>(
            `SELECT ${RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT $1`,
            [limit],
          )
        : await this.client.query<RunColumns>(
            `SELECT ${RUN_COLUMNS} FROM runs WHERE model = $1 ORDER BY id DESC LIMIT $2`,
            [query.model, limit],
          );
    return rows.map(runOf);
  }

  async getRun(id: number): Promise<Run | undefined> {
    // An id the table cannot hold names no run (and would be an error of the database).
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    const [row] = await this.client.query<RunColumns>(
      `SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1`,
      [id],
    );
    return row && runOf(row);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

const RUN_COLUMNS = `id, model, repository, source_path, git_commit, dirty, script, args, status,
  exit_code, started_ms, duration_ms, metrics, files, environment`;

/** A row of `runs`; int8 and jsonb come as text. */
interface RunColumns {
  id: string;
  model: string;
  repository: string;
  source_path: string;
  git_commit: string | null;
  dirty: boolean;
  script: string;
  args: string;
  status: RunStatus;
  exit_code: number;
  started_ms: string;
  duration_ms: string;
  metrics: string;
  files: string;
  environment: string;
}

function runOf(row: RunColumns): Run {
  return {
    id: Number(row.id),
    model: row.model,
    repository: row.repository,
    sourcePath: row.source_path,
    ...(row.git_commit === null ? {} : { commit: row.git_commit }),
    dirty: row.dirty,
    script: row.script,
    args: JSON.parse(row.args) as string[],
    status: row.status,
    exitCode: row.exit_code,
    startedMs: Number(row.started_ms),
    durationMs: Number(row.duration_ms),
    metrics: parseExactJson(row.metrics) as Record<string, unknown>,
    files: JSON.parse(row.files) as RunFile[],
    environment: row.environment,
  };
}

interface SubjectColumns {
  model: string;
  build: number | null;
  deployment: string | null;
  deployment_id: number | null;
}

function subjectOf(row: SubjectColumns): MetricsSubject {
  return {
    model: row.model,
    ...(row.build === null ? {} : { build: row.build }),
    ...(row.deployment === null ? {} : { deployment: row.deployment }),
    ...(row.deployment_id === null ? {} : { deploymentId: row.deployment_id }),
  };
}

function metricsRowOf(row: PageRow): MetricsRow {
  const type = TYPES[row.kind];
  if (type === undefined) throw new Error(`a metrics row of no known kind: ${row.kind}`);
  return {
    type,
    ...(row.uuid === null ? {} : { predictionUuid: row.uuid }),
    modelCrn: modelCrn(row.model),
    ...(row.build === null ? {} : { modelBuildCrn: buildCrn(row.model, row.build) }),
    ...(row.deployment === null
      ? {}
      : {
          modelDeploymentCrn: deploymentCrn(
            row.model,
            row.deployment,
            row.deployment_id ?? undefined,
          ),
        }),
    startTimeStampMs: Number(row.start_ms),
    endTimeStampMs: Number(row.end_ms),
    metrics: parseExactJson(row.metrics) as Record<string, unknown>,
    ...(row.count === null ? {} : { count: Number(row.count) }),
  };
}

function readLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_READ_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`a read's limit is a positive integer, not ${limit}`);
  }
  return Math.min(limit, MAX_READ_LIMIT);
}

// A cursor is the order key of a page's last row, as base64url JSON: opaque to callers, and
// exact (the int8 values stay the database's text).
function encodeCursor(row: PageRow): string {
  const key = [row.start_ms, row.kind, row.position];
  return Buffer.from(JSON.stringify(key)).toString("base64url");
}

function decodeCursor(text: string): Cursor {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    key = undefined;
  }
  if (
    Array.isArray(key) &&
    key.length === 3 &&
    typeof key[0] === "string" &&
    /^-?\d{1,19}$/.test(key[0]) &&
    Number.isInteger(key[1]) &&
    TYPES[key[1]] !== undefined &&
    typeof key[2] === "string" &&
    /^\d{1,19}$/.test(key[2])
  ) {
    return { startMs: key[0], kind: key[1], position: key[2] };
  }
  throw new RangeError("not a metrics cursor: pass the `next` of the page before");
}
