// One GitSource per ModelRepository, kept between syncs so that a URL is cloned once; and the
// SourceReader port the Model reconciler reads build identities through. Both platforms use it;
// they differ only in where credentials come from.
import { join } from "node:path";
import type { ModelRepository } from "../api/types.generated.ts";
import type { NamespacedName } from "../core/keys.ts";
import type { SourceReader, Store } from "../core/ports.ts";
import { type GitCredentialValues, GitSource } from "./git.ts";

export type GitCredentials = GitCredentialValues;

/** A repository's credentials, read when asked (each fetch): a rotated token takes at once. */
export type CredentialsOf = (
  repository: ModelRepository,
  options: { signal?: AbortSignal },
) => GitCredentials | Promise<GitCredentials>;

export class GitSources {
  private readonly store: Store;
  private readonly cacheDir: string;
  private readonly credentialsOf: CredentialsOf;
  private readonly sources = new Map<string, GitSource>();

  constructor(store: Store, cacheDir: string, credentialsOf: CredentialsOf = () => ({})) {
    this.store = store;
    this.cacheDir = cacheDir;
    this.credentialsOf = credentialsOf;
  }

  /** The source of a repository; a new URL or branch gets a new one. */
  of(repository: ModelRepository): GitSource {
    const branch = repository.spec.branch ?? "main";
    const key = `${repository.metadata.namespace ?? "default"}/${repository.metadata.name} ${repository.spec.url} ${branch}`;
    let source = this.sources.get(key);
    if (!source) {
      const { namespace, name } = repository.metadata;
      source = new GitSource({
        url: repository.spec.url,
        branch,
        cacheDir: join(this.cacheDir, "git"),
        // The repository as it is now: its secretRef may have changed since.
        credentials: async (options) =>
          this.credentialsOf(
            this.store.get("ModelRepository", namespace ?? "default", name) ?? repository,
            options,
          ),
      });
      this.sources.set(key, source);
    }
    return source;
  }

  /** The source of the ModelRepository with this name, which must exist. */
  named(repository: NamespacedName): GitSource {
    const object = this.store.get("ModelRepository", repository.namespace, repository.name);
    if (!object) throw new Error(`ModelRepository "${repository.name}" does not exist`);
    return this.of(object);
  }

  /** Reads from git objects already fetched: local and quick, so the signal only gates the start. */
  readonly reader: SourceReader = {
    treeId: (repository, commit, path, options) => {
      options?.signal?.throwIfAborted();
      return this.named(repository).treeId(commit, path);
    },
    contentId: (repository, commit, path, exclude, patterns, options) => {
      options?.signal?.throwIfAborted();
      return this.named(repository).contentId(commit, path, exclude, patterns);
    },
  };
}
