// The metrics store's schema, in PostgreSQL's dialect (PGlite runs the same), as numbered
// migrations: `schema_migrations` records each version applied, `migrate` applies the missing ones
// in order, each in its own transaction, and refuses a database that a newer modelship migrated.
// A migration, once released, never changes: a change is a new version.
//
// Times are bigint milliseconds since the epoch, as the port speaks them: no time zone enters a
// comparison or the hour a rollup belongs to. Subjects (model, build, deployment, rollout) are
// written out on each row rather than normalised: rows are written once and read by subject.
import type { SqlClient, SqlSession } from "./sql-client.ts";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "predictions, delayed metrics, aggregates and hourly rollups",
    sql: `
CREATE TABLE predictions (
  uuid uuid PRIMARY KEY,
  -- The order rows were written in: the tie-breaker of a read's order.
  seq bigint GENERATED ALWAYS AS IDENTITY,
  model text NOT NULL,
  build integer,
  deployment text,
  deployment_id integer,
  start_ms bigint NOT NULL,
  end_ms bigint NOT NULL,
  metrics jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object')
);
CREATE INDEX predictions_by_model ON predictions (model, start_ms, seq);
CREATE INDEX predictions_by_build ON predictions (model, build, start_ms, seq);
-- A deployment's reads take all its rollouts or one: an index each keeps both in time order.
CREATE INDEX predictions_by_deployment ON predictions (model, deployment, start_ms, seq);
CREATE INDEX predictions_by_rollout
  ON predictions (model, deployment, deployment_id, start_ms, seq);
-- Retention's cutoff.
CREATE INDEX predictions_by_start ON predictions (start_ms);

-- Ground truth added later, by prediction uuid. No foreign key: the metrics stay apart from the
-- prediction's row (merged when read), and retention deletes both in one statement.
CREATE TABLE delayed_metrics (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  prediction_uuid uuid NOT NULL,
  at_ms bigint NOT NULL,
  metrics jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object')
);
CREATE INDEX delayed_metrics_by_prediction ON delayed_metrics (prediction_uuid, id);

-- Metrics over a window (accuracy, drift), written by a job. The subject fields it leaves out are
-- NULL: an aggregate over the whole model has only its model.
CREATE TABLE aggregate_metrics (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  model text NOT NULL,
  build integer,
  deployment text,
  deployment_id integer,
  start_ms bigint NOT NULL,
  end_ms bigint NOT NULL,
  metrics jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aggregate_metrics_by_subject
  ON aggregate_metrics (model, build, deployment, deployment_id, start_ms, id);

-- Predictions older than the retention, one row per hour and subject: how many, and per numeric
-- metric {count, sum, min, max}, as exact numerics.
CREATE TABLE prediction_rollups (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hour_ms bigint NOT NULL CHECK (hour_ms % 3600000 = 0),
  model text NOT NULL,
  build integer,
  deployment text,
  deployment_id integer,
  count bigint NOT NULL,
  metrics jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
  -- A later pass over the same hour adds into this row (NULLs are one subject, not many).
  UNIQUE NULLS NOT DISTINCT (hour_ms, model, build, deployment, deployment_id)
);
CREATE INDEX prediction_rollups_by_model ON prediction_rollups (model, hour_ms, id);
CREATE INDEX prediction_rollups_by_build ON prediction_rollups (model, build, hour_ms, id);
CREATE INDEX prediction_rollups_by_deployment
  ON prediction_rollups (model, deployment, hour_ms, id);
CREATE INDEX prediction_rollups_by_rollout
  ON prediction_rollups (model, deployment, deployment_id, hour_ms, id);

-- A prediction's metrics with its delayed ones merged over them in arrival order:
-- metrics || metrics_merge_agg(delayed ORDER BY id), key by key, the latest last.
CREATE AGGREGATE metrics_merge_agg(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}');

-- Two rollups' {count, sum, min, max} per key, added together (a key in one only is kept).
CREATE FUNCTION rollup_metrics_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT coalesce(jsonb_object_agg(key, CASE
    WHEN a -> key IS NULL THEN b -> key
    WHEN b -> key IS NULL THEN a -> key
    ELSE jsonb_build_object(
      'count', (a -> key -> 'count')::numeric + (b -> key -> 'count')::numeric,
      'sum', (a -> key -> 'sum')::numeric + (b -> key -> 'sum')::numeric,
      'min', least((a -> key -> 'min')::numeric, (b -> key -> 'min')::numeric),
      'max', greatest((a -> key -> 'max')::numeric, (b -> key -> 'max')::numeric))
    END), '{}'::jsonb)
  FROM (SELECT jsonb_object_keys(a) UNION SELECT jsonb_object_keys(b)) AS keys (key)
$$;
`,
  },
  {
    version: 2,
    name: "experiment runs",
    sql: `
-- One row per finished \`modelship run\`: where it ran, what it ran, how it ended, the last value of
-- each metric it tracked and the files it left (kept in the state directory, not here).
CREATE TABLE runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  model text NOT NULL,
  repository text NOT NULL,
  source_path text NOT NULL,
  -- NULL before the work tree's first commit; 64 hex digits in a SHA-256 repository.
  git_commit text CHECK (git_commit ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
  dirty boolean NOT NULL,
  script text NOT NULL,
  args jsonb NOT NULL CHECK (jsonb_typeof(args) = 'array'),
  status text NOT NULL CHECK (status IN ('succeeded', 'failed')),
  exit_code integer NOT NULL,
  started_ms bigint NOT NULL,
  duration_ms bigint NOT NULL CHECK (duration_ms >= 0),
  metrics jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
  files jsonb NOT NULL CHECK (jsonb_typeof(files) = 'array'),
  environment text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'succeeded') = (exit_code = 0))
);
-- A model's runs, newest first.
CREATE INDEX runs_by_model ON runs (model, id);
`,
  },
];

/** The newest version this code knows. */
export const SCHEMA_VERSION = Math.max(...MIGRATIONS.map((migration) => migration.version));

/**
 * Serialises migrations between processes that open one database at once (two controllers
 * starting): a transaction-scoped advisory lock, held until each migration commits.
 */
const LOCK = "SELECT pg_advisory_xact_lock(7391850217)";

async function appliedVersions(tx: SqlSession): Promise<Set<number>> {
  const rows = await tx.query<{ version: number }>("SELECT version FROM schema_migrations");
  return new Set(rows.map((row) => row.version));
}

/**
 * Applies the migrations the database lacks, oldest first, each with its record in
 * `schema_migrations` in one transaction; returns the versions it applied. Throws, changing
 * nothing, when the database has a version newer than `migrations` know.
 */
export async function migrate(
  client: SqlClient,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  const known = Math.max(0, ...migrations.map((migration) => migration.version));
  await client.transaction(async (tx) => {
    await tx.query(LOCK);
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const newest = Math.max(0, ...(await appliedVersions(tx)));
    if (newest > known) {
      throw new Error(
        `the metrics database is at schema version ${newest}, newer than this modelship's ${known}: run a modelship that knows version ${newest}, or point it at another database`,
      );
    }
  });
  const applied: number[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    await client.transaction(async (tx) => {
      await tx.query(LOCK);
      // Another process may have applied it while this one waited for the lock.
      if ((await appliedVersions(tx)).has(migration.version)) return;
      await tx.exec(migration.sql);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [
        migration.version,
        migration.name,
      ]);
      applied.push(migration.version);
    });
  }
  return applied;
}
