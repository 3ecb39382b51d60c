// The metrics store's port (docs/metrics.md): what the gateway writes (predictions with the
// metrics a model tracked, delayed metrics by a prediction's uuid, aggregates over a window) and
// what the SDK, the CLI and the dashboard read back; and experiments, the runs of `modelship run`
// with what they tracked. One SQL schema in PostgreSQL's dialect implements it twice over: PGlite
// in process for `modelship up`, a PostgreSQL server on the cluster (controller/metrics/sql-store.ts).

/** Which model a metric belongs to: the gateway knows all of it for a prediction. */
export interface MetricsSubject {
  /** The Model's name (the gateway serves a name once, whatever its namespace). */
  model: string;
  /** The ModelBuild number that answered; undefined for an aggregate over all builds. */
  build?: number;
  /** The ModelDeployment's name. */
  deployment?: string;
  /** The rollout (status.deploymentId) that answered. */
  deploymentId?: number;
}

/** One answered prediction whose function tracked metrics. */
export interface PredictionRecord extends MetricsSubject {
  uuid: string;
  /** When the gateway received the call, ms since the epoch. */
  startMs: number;
  /** When it was answered. */
  endMs: number;
  /** The tracked metrics as the model's worker wrote them: a JSON object's text, not parsed. */
  metricsJson: string;
}

/** Metrics computed over a window of predictions (accuracy, drift), by a job. */
export interface AggregateRecord extends MetricsSubject {
  startMs: number;
  endMs: number;
  metrics: Record<string, unknown>;
}

/** What a read selects: a model, optionally one build or one deployment (or one rollout). */
export interface MetricsQuery extends MetricsSubject {
  /** Inclusive window start, ms since the epoch (default 0). */
  sinceMs?: number;
  /** Exclusive window end (default: no end). */
  untilMs?: number;
  /** Rows per page (default 1000, at most 10000). */
  limit?: number;
  /** The `next` of the previous page. */
  cursor?: string;
}

/**
 * A row as read_metrics returns it (CDSW's shape and spelling): a prediction (with its delayed
 * metrics merged over its tracked ones, the latest last), an aggregate, or an hourly rollup of
 * predictions older than the retention.
 */
export interface MetricsRow {
  type: "prediction" | "aggregate" | "rollup";
  /** A prediction's uuid. */
  predictionUuid?: string;
  modelCrn: string;
  modelBuildCrn?: string;
  modelDeploymentCrn?: string;
  startTimeStampMs: number;
  endTimeStampMs: number;
  metrics: Record<string, unknown>;
  /** A rollup's: how many predictions it stands for. */
  count?: number;
}

export interface MetricsPage {
  rows: MetricsRow[];
  /** Pass as `cursor` for the next page; undefined on the last. */
  next?: string;
}

/** What one retention pass did. */
export interface RollupResult {
  /** Predictions folded into hourly rollups (and then deleted with their delayed metrics). */
  predictions: number;
  /** Hourly rollup rows written or updated. */
  hours: number;
}

/** A file an experiment run left: created or changed in its copy of the source, or named by track_file. */
export interface RunFile {
  /** Its path in the run's copy of the model's source directory, '/'-separated. */
  name: string;
  /** Its size in bytes; absent for a file track_file named that the run did not leave. */
  size?: number;
  /** Whether the script named it with track_file. */
  tracked: boolean;
}

export type RunStatus = "succeeded" | "failed";

/** One `modelship run` (CDSW's experiment): a script run in its Model's build environment. */
export interface RunRecord {
  model: string;
  /** The work tree the run was started from (its top, links resolved). */
  repository: string;
  /** The Model's source directory, relative to the work tree ("." for its top). */
  sourcePath: string;
  /** The work tree's HEAD; absent before the first commit. */
  commit?: string;
  /** Whether the work tree held changes or untracked files that HEAD does not. */
  dirty: boolean;
  /** The script, relative to the source directory. */
  script: string;
  args: string[];
  /** Succeeded exactly when the exit code is 0. */
  status: RunStatus;
  /** The script's exit code (128 + the signal's number for one a signal ended). */
  exitCode: number;
  startedMs: number;
  durationMs: number;
  /** The last value of each key the script tracked. */
  metrics: Record<string, unknown>;
  files: RunFile[];
  /** The key of the cached environment it ran in. */
  environment: string;
}

export interface Run extends RunRecord {
  /** 1, 2, 3… in the order runs were recorded. */
  id: number;
}

export interface RunsQuery {
  /** Only this Model's runs. */
  model?: string;
  /** At most this many, the newest (default 1000, at most 10000). */
  limit?: number;
}

export interface MetricsStore {
  /** Writes a batch in one transaction: all of it or, on an error, none. */
  writePredictions(records: PredictionRecord[]): Promise<void>;
  /**
   * Adds metrics to a stored prediction (ground truth); false when no prediction has the uuid.
   * `metricsJson` is a JSON object's text.
   */
  trackDelayed(uuid: string, metricsJson: string, atMs: number): Promise<boolean>;
  /** The subject of a stored prediction, or undefined. */
  prediction(uuid: string): Promise<MetricsSubject | undefined>;
  /** Stores an aggregate; returns its id. */
  trackAggregate(record: AggregateRecord): Promise<number>;
  /** Predictions, aggregates and rollups of the subject in the window, oldest first. */
  read(query: MetricsQuery): Promise<MetricsPage>;
  /**
   * Retention: folds predictions that started before `beforeMs` into hourly rollups (per
   * model, build, deployment and rollout: count, and count/sum/min/max of each numeric metric),
   * in the same transaction that deletes them. Nothing is dropped without its rollup.
   */
  rollUp(beforeMs: number): Promise<RollupResult>;
  /** Stores a finished experiment run; returns its id. */
  recordRun(record: RunRecord): Promise<number>;
  /** Runs, newest first. */
  listRuns(query?: RunsQuery): Promise<Run[]>;
  /** One run, or undefined. */
  getRun(id: number): Promise<Run | undefined>;
  close(): Promise<void>;
}
