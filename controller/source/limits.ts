// How much a commit's manifests may cost to read and parse. A commit is input from whoever can
// push to the branch: without bounds, one file could exhaust the controller's memory (a YAML alias
// bomb, a file of a billion `[`) or its time (thousands of files, a map of a million keys), and
// every sync of every repository would stall with it. A manifest past a limit is a problem like
// any other: the commit is not applied, and the next good commit is.

/** The limits on the manifests of one commit (or one repository root for `modelship validate`). */
export interface ManifestLimits {
  /**
   * YAML aliases (`*name`) in one document, and how far they may expand: more aliases than this
   * in a document, or an anchor whose uses times what it holds passes it (the yaml package's
   * `maxAliasCount`, which stops "billion laughs"), refuses the document.
   */
  maxAliasesPerDocument: number;
  /** Bytes of one manifest file; a larger file is not read. */
  maxFileBytes: number;
  /** Bytes of all the manifest files of a commit together; past it, none is validated. */
  maxCommitBytes: number;
  /** Manifest files (.yaml/.yml) below the path of a commit; more, and none is read. */
  maxFilesPerCommit: number;
  /** How deeply collections (mappings, sequences) may nest in a document: the root is 1. */
  maxDepth: number;
}

/** The limits the sync and `modelship validate` apply unless told otherwise. */
export const MANIFEST_LIMITS: Readonly<ManifestLimits> = Object.freeze({
  maxAliasesPerDocument: 100,
  maxFileBytes: 1024 * 1024,
  maxCommitBytes: 10 * 1024 * 1024,
  maxFilesPerCommit: 1000,
  maxDepth: 64,
});

/** The defaults with the given limits replaced. */
export function manifestLimits(overrides: Partial<ManifestLimits> = {}): ManifestLimits {
  return { ...MANIFEST_LIMITS, ...overrides };
}

/** A byte count as people read it: `512 bytes`, `1.5 KiB`, `10 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? "" : "s"}`;
  const units = ["KiB", "MiB", "GiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  // One decimal at most, and none when it is a round number (1 MiB, not 1.0 MiB).
  return `${Number(value.toFixed(1))} ${units[unit]}`;
}
