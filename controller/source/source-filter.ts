// Which files below a Model's source path make up its build (docs/builds.md): all of them but
// the directories of other Models nested inside it, what `spec.source.exclude` names, and what
// the source's own `.modelshipignore` names (both gitignore syntax, relative to the source
// path). The build key is computed over these files and the build gets exactly these, on both
// platforms, so a change to any other file never makes a new build.
import { posix } from "node:path";
import ignore from "ignore";

/** The file in a model's source directory that lists more paths to leave out of its build. */
export const MODELSHIPIGNORE = ".modelshipignore";

/** How many bytes of a .modelshipignore are read; past this, the build refuses it. */
export const MAX_MODELSHIPIGNORE_BYTES = 64 * 1024;

/** True for a path (relative to the source path; a directory's with a trailing "/") the build leaves out. */
export type SourceFilter = (relativePath: string) => boolean;

/** The filter of gitignore-syntax `patterns`; blank lines and # comments are ignored, as git does. */
export function sourceFilter(patterns: readonly string[]): SourceFilter {
  if (patterns.length === 0) return () => false;
  // A CommonJS package: Node hands its module.exports as the default import, which carries the
  // factory as `default` too, the one name TypeScript's types give it.
  const matcher = ignore.default().add([...patterns]);
  return (relativePath) => matcher.ignores(relativePath);
}

/**
 * The patterns a build of a Model leaves out, besides its .modelshipignore: the directories of
 * other Models strictly inside `sourcePath` (anchored, so only that directory), then its own
 * `source.exclude`.
 */
export function excludePatterns(
  sourcePath: string,
  nestedSources: readonly string[],
  declared: readonly string[] = [],
): string[] {
  const prefix = sourcePath === "." ? "" : `${sourcePath}/`;
  const nested = nestedSources
    .filter((path) => path !== sourcePath && path.startsWith(prefix))
    .map((path) => `/${literalPattern(path.slice(prefix.length))}/`);
  return [...new Set(nested)].sort().concat(declared);
}

/**
 * A path as a gitignore pattern that matches that path: its special characters escaped. The
 * `ignore` package takes no escaped `?`, so a `?` stays a wildcard (it matches itself too).
 */
export function literalPattern(path: string): string {
  return path.replace(/[\\[\]!#*]/g, "\\$&").replace(/ $/, "\\ ");
}

/** True when directory `inner` is `outer` or below it (repo-relative, "." the root). */
function within(inner: string, outer: string): boolean {
  return outer === "." || inner === outer || inner.startsWith(`${outer}/`);
}

export interface DeclaredModel {
  /** The manifest's path in the repository. */
  repoPath: string;
  /** Its source path (modelSourcePath). */
  sourcePath: string;
  /** Its spec.file, relative to the source path. */
  file?: string | undefined;
}

/**
 * For each Model (by index), the directories of the other Models that lie strictly inside its
 * source path — each one's manifest directory and its source.path — that hold neither this
 * Model's own manifest nor its own file: those are the other model's, not this one's. A
 * directory this Model's file lives in stays, even when it is another's source too (shared
 * code).
 */
export function nestedSourcesOf(models: readonly DeclaredModel[]): string[][] {
  return models.map((model, index) => {
    const ownManifestDir = posix.dirname(model.repoPath);
    const ownFile =
      model.file === undefined
        ? undefined
        : posix.normalize(posix.join(model.sourcePath, model.file));
    const found = new Set<string>();
    models.forEach((other, otherIndex) => {
      if (otherIndex === index) return;
      for (const directory of [posix.dirname(other.repoPath), other.sourcePath]) {
        const strictlyInside =
          directory !== model.sourcePath && within(directory, model.sourcePath);
        const holdsOwn =
          within(ownManifestDir, directory) ||
          (ownFile !== undefined && within(ownFile, directory));
        if (strictlyInside && !holdsOwn) found.add(directory);
      }
    });
    return [...found].sort();
  });
}

/** A build's filter: `patterns`, then those of the source's .modelshipignore text, if it has one. */
export function buildFilter(
  patterns: readonly string[],
  modelshipignore: string | undefined,
): SourceFilter {
  return sourceFilter([...patterns, ...(modelshipignore?.split(/\r?\n/) ?? [])]);
}
