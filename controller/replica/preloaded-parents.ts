// Preloaded parents of Python replicas (docs/workers.md#preloaded-parents): one process per
// model build and environment loads the user's file once and forks a worker for each replica,
// so N replicas cost about one model plus N small processes, and a replica that crashes is
// forked again in milliseconds. A parent with no replica left stays a while (PARENT_IDLE_MS),
// so that a rollback to the build it holds (a `git revert`) starts its replicas at once.
import type { ChildProcess } from "node:child_process";
import { chownSync, mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DEFAULT_KILL_GRACE_MS,
  signalProcessGroup,
  spawnPreloadedParent,
  untrackProcessGroup,
  type WorkerOptions,
} from "./worker-process.ts";

/** How long a parent no replica uses is kept, for a rollback to its build. */
export const PARENT_IDLE_MS = 10 * 60_000;
/** How long a parent may take to load the file and listen. */
const LISTEN_TIMEOUT_MS = 120_000;

/** What a parent is started with: a worker's options, less what is the replica's own. */
export type ParentOptions = Pick<
  WorkerOptions,
  "file" | "functionName" | "cwd" | "env" | "uid" | "gid" | "memoryLimitBytes"
>;

interface Parent {
  child: ChildProcess;
  directory: string;
  socketPath: string;
  /** Resolves true once it listens, false if it ended (or never listened) first. */
  listening: Promise<boolean>;
  users: number;
  idleTimer: NodeJS.Timeout | undefined;
  ended: boolean;
}

export class PreloadedParents {
  private readonly parents = new Map<string, Parent>();
  private readonly socketDir: string;
  private readonly idleMs: number;

  /**
   * Parents listen in directories of their own under `socketDir` (each 0700, the model user's:
   * the parent and the launchers run as that user). `socketDir` itself must let that user
   * through; the system's temporary directory by default.
   */
  constructor(socketDir = tmpdir(), idleMs = PARENT_IDLE_MS) {
    this.socketDir = socketDir;
    this.idleMs = idleMs;
  }

  /** How many parents run now (for tests and the benchmark). */
  get size(): number {
    return this.parents.size;
  }

  /**
   * The socket of a listening parent for these options (started if need be), counted as used
   * once more; undefined when none could be started, and the worker then loads the file itself.
   */
  async acquire(
    options: ParentOptions,
  ): Promise<{ socketPath: string; release(): void } | undefined> {
    const key = JSON.stringify(options);
    let parent = this.parents.get(key);
    if (parent === undefined || parent.ended) {
      // Made and kept before any wait: replicas started together share one parent.
      parent = this.start(options);
      this.parents.set(key, parent);
    }
    const started = parent;
    started.users += 1;
    clearTimeout(started.idleTimer);
    started.idleTimer = undefined;
    if (!(await started.listening)) {
      this.releaseOf(key, started);
      return undefined;
    }
    let released = false;
    return {
      socketPath: started.socketPath,
      release: () => {
        if (released) return;
        released = true;
        this.releaseOf(key, started);
      },
    };
  }

  /** Stops every parent (their children go with them). */
  async stopAll(): Promise<void> {
    const all = [...this.parents.values()];
    this.parents.clear();
    await Promise.all(all.map((parent) => this.stop(parent)));
  }

  private releaseOf(key: string, parent: Parent): void {
    parent.users -= 1;
    if (parent.users > 0) return;
    if (parent.ended) {
      if (this.parents.get(key) === parent) this.parents.delete(key);
      return;
    }
    parent.idleTimer = setTimeout(() => {
      if (parent.users > 0) return;
      if (this.parents.get(key) === parent) this.parents.delete(key);
      void this.stop(parent);
    }, this.idleMs);
    parent.idleTimer.unref();
  }

  private start(options: ParentOptions): Parent {
    // A directory of its own, the model user's: the parent makes its socket in it, and the
    // launchers, run as that user, connect to it; nobody else may enter.
    const directory = mkdtempSync(join(this.socketDir, "modelship-parent-"));
    if (options.uid !== undefined && options.gid !== undefined) {
      chownSync(directory, options.uid, options.gid);
    }
    const socketPath = join(directory, "fork.sock");
    const child = spawnPreloadedParent({ ...options, runtime: "python3" }, socketPath);
    const parent: Parent = {
      child,
      directory,
      socketPath,
      listening: Promise.resolve(false),
      users: 0,
      idleTimer: undefined,
      ended: false,
    };
    parent.listening = new Promise<boolean>((resolve) => {
      // Its stdout carries what the file prints at import too: the handshake is looked for in
      // the last few KB of it, however much came before.
      let tail = "";
      let heard = false;
      const timer = setTimeout(() => {
        // Too slow: stopped, so that it holds no memory, and the next replica tries again.
        if (child.pid !== undefined) signalProcessGroup(child.pid, "SIGKILL");
        parent.ended = true;
        resolve(false);
      }, LISTEN_TIMEOUT_MS);
      child.stdout?.on("data", (chunk: Buffer) => {
        if (heard) return;
        tail = (tail + chunk.toString("utf8")).slice(-8192);
        if (/\{"type": "listening", "loaded": (true|false)\}\n/.test(tail)) {
          heard = true;
          clearTimeout(timer);
          resolve(true);
        }
      });
      const ended = () => {
        parent.ended = true;
        clearTimeout(timer);
        resolve(false);
      };
      child.once("exit", () => {
        // What the file's import started in the parent's group (a helper that ignores
        // SIGTERM) goes with it, now, while the group's id cannot have been reused. Its forked
        // workers die with it on their own (PR_SET_PDEATHSIG).
        if (child.pid !== undefined) {
          signalProcessGroup(child.pid, "SIGKILL");
          untrackProcessGroup(child.pid);
        }
        ended();
        // A parent that ended by itself (a crash) leaves its directory: removed now.
        void rm(directory, { recursive: true, force: true });
      });
      child.once("error", ended);
    });
    return parent;
  }

  private async stop(parent: Parent): Promise<void> {
    clearTimeout(parent.idleTimer);
    const pid = parent.child.pid;
    if (!parent.ended && pid !== undefined) {
      const exited = new Promise<void>((resolve) => {
        if (parent.child.exitCode !== null || parent.child.signalCode !== null) resolve();
        else parent.child.once("exit", () => resolve());
      });
      signalProcessGroup(pid, "SIGTERM");
      const timer = setTimeout(() => signalProcessGroup(pid, "SIGKILL"), DEFAULT_KILL_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    await rm(parent.directory, { recursive: true, force: true });
  }
}
