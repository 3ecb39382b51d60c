// What every reconciler gets: the ports (DESIGN §4), injected, never global.
import type { Builder, Clock, Runtime, Store } from "../platform/ports.ts";

/** Labels and annotations the GitOps sync puts on what it applies (DESIGN §3). */
export const LABEL_MANAGED_BY = "modelship.dev/managed-by";
export const LABEL_SOURCE = "modelship.dev/source";
export const LABEL_MODEL = "modelship.dev/model";
export const ANNOTATION_COMMIT = "modelship.dev/commit";
export const ANNOTATION_SOURCE_PATH = "modelship.dev/source-path";
/** On Models: the files (repo-relative, a JSON list) that hold the commit's manifests. */
export const ANNOTATION_MANIFEST_FILES = "modelship.dev/manifest-files";
export const ANNOTATION_AUTHOR = "modelship.dev/commit-author";
export const ANNOTATION_RESTARTED_AT = "modelship.dev/restartedAt";
/** On a Model: a new value makes a new build of the same code (CDSW's "Rebuild"). */
export const ANNOTATION_REBUILD = "modelship.dev/rebuild";

/** Reads git for the Model reconciler: the tree id that identifies a model's code. */
export interface SourceReader {
  treeId(
    repository: { namespace: string; name: string },
    commit: string,
    path: string,
  ): Promise<string>;
  /** An id of the files below `path` other than `exclude` (see GitSource.contentId). */
  contentId(
    repository: { namespace: string; name: string },
    commit: string,
    path: string,
    exclude: ReadonlySet<string>,
  ): Promise<string>;
}

export interface ReconcileContext {
  store: Store;
  builder: Builder;
  runtime: Runtime;
  sources: SourceReader;
  clock: { now: Clock["now"] };
  /** Where callers reach a model: `${gatewayUrl()}/models/{name}/predict` (known once it listens). */
  gatewayUrl(): string;
  /** The base a build starts from, part of the build key (local: the runtime's name). */
  baseImage(runtime: "python3" | "r"): string;
  /** Progress lines for people (`modelship up` prints them). */
  log(line: string): void;
}
