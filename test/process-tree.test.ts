// A worker's whole process tree belongs to its replica: children the model forks (on import or
// in a call), grandchildren left as orphans, processes that ignore SIGTERM — none of them
// outlives a stop, a timeout or a crash, and none of them can wedge a stop.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PreloadedParents } from "../controller/replica/preloaded-parents.ts";
import {
  eventually,
  MODELS_DIR,
  postJson,
  type RunningReplica,
  startReplica,
} from "./helpers/replica.ts";

const running: RunningReplica[] = [];
/** Every pid a test saw: killed at the end whatever happened, so no test leaves one behind. */
const seen = new Set<number>();
/** Preloaded parents of the forked variant, and where they listen. */
let parents: PreloadedParents | undefined;
let parentsDir: string | undefined;
afterEach(async () => {
  await Promise.all(running.splice(0).map((replica) => replica.stop()));
  await parents?.stopAll();
  if (parentsDir) rmSync(parentsDir, { recursive: true, force: true });
  parents = undefined;
  parentsDir = undefined;
  for (const pid of seen) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  seen.clear();
});

const GRACE_MS = 500;

/** How the variant starts workers: afresh, or forked from a preloaded parent of the file. */
let forked = false;

async function readyReplica(file: string, functionName: string, timeoutSeconds = 30) {
  let forkServer: string | undefined;
  if (forked) {
    parentsDir ??= mkdtempSync(join(tmpdir(), "modelship-parents-"));
    parents ??= new PreloadedParents(parentsDir);
    forkServer = (await parents.acquire({ file, functionName, cwd: MODELS_DIR }))?.socketPath;
    expect(forkServer).toBeDefined();
  }
  const replica = await startReplica({
    file,
    functionName,
    timeoutSeconds,
    killGraceMs: GRACE_MS,
    ...(forkServer ? { forkServer } : {}),
  });
  running.push(replica);
  await replica.agent.whenReady();
  return replica;
}

/** Whether a process runs: a zombie (dead, not yet reaped by init) does not. */
function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // The state follows the command name, which is in parentheses and may hold spaces.
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

function track(...pids: number[]): number[] {
  for (const pid of pids) seen.add(pid);
  return pids;
}

/** Stops the replica and returns how long the stop took. */
async function timedStop(replica: RunningReplica): Promise<number> {
  running.splice(running.indexOf(replica), 1);
  const started = performance.now();
  await replica.stop();
  return performance.now() - started;
}

describe.each([
  { variant: "a worker started afresh", fork: false },
  { variant: "a worker forked from a preloaded parent", fork: true },
])("a replica's process tree, $variant", ({ fork }) => {
  beforeEach(() => {
    forked = fork;
  });

  it("is stopped whole: a forked child that ignores SIGTERM and holds the pipes does not wedge the stop", async () => {
    const replica = await readyReplica("processes.py", "forks_stubborn_child");
    const { body } = await postJson(`${replica.url}/predict`, {});
    const pids = track(body.response.worker, body.response.child);
    expect(pids.map(alive)).toEqual([true, true]);

    // SIGTERM is ignored: the child goes at the SIGKILL, one grace after the worker's exit.
    expect(await timedStop(replica)).toBeLessThan(GRACE_MS + 2000);
    await eventually(() => !pids.some(alive), 3000);
  });

  it("takes an orphaned grandchild down with it", async () => {
    const replica = await readyReplica("processes.py", "spawns_grandchild");
    const { body } = await postJson(`${replica.url}/predict`, {});
    const pids = track(body.response.worker, body.response.grandchild);
    expect(pids.map(alive)).toEqual([true, true]);
    await timedStop(replica);
    await eventually(() => !pids.some(alive), 3000);
  });

  it("takes down what the model's import started (forked: with the parent, which imported it)", async () => {
    const replica = await readyReplica("forks_on_import.py", "predict");
    const { body } = await postJson(`${replica.url}/predict`, {});
    const pids = track(body.response.worker, body.response.helper);
    expect(pids.map(alive)).toEqual([true, true]);
    await timedStop(replica);
    if (fork) {
      // The import ran once, in the parent: its helper serves every replica, and goes with it.
      await eventually(() => !alive(body.response.worker), 3000);
      expect(alive(body.response.helper)).toBe(true);
      await parents?.stopAll();
    }
    await eventually(() => !pids.some(alive), 3000);
  });

  it("is killed whole when a call runs past timeoutSeconds, and the next worker serves", async () => {
    const replica = await readyReplica("processes.py", "ignores_sigterm", 0.5);
    const late = await postJson(`${replica.url}/predict`, {});
    expect(late.code).toBe("model.timeout");
    const printed = replica.agent.log
      .since()
      .map((line) => /^worker (\d+) child (\d+)$/.exec(line.line))
      .find(Boolean);
    const pids = track(Number(printed?.[1]), Number(printed?.[2]));
    await eventually(() => !pids.some(alive), 3000);

    await replica.agent.whenReady();
    expect(replica.agent.workerPid).not.toBe(pids[0]);
    const next = await postJson(`${replica.url}/predict`, { seconds: 0 });
    expect([next.status, next.body.response]).toEqual([200, "awake"]);
  });

  it("is killed whole when the worker crashes, before the restart", async () => {
    const replica = await readyReplica("processes.py", "forks_stubborn_child");
    const { body } = await postJson(`${replica.url}/predict`, {});
    const pids = track(body.response.worker, body.response.child);
    process.kill(body.response.worker, "SIGKILL");
    await eventually(() => !pids.some(alive), 3000);
    await eventually(() => replica.agent.stats.restarts === 1 && replica.agent.ready, 5000);
  });

  it("is stopped in about two graces when the worker itself ignores SIGTERM and is busy", async () => {
    const replica = await readyReplica("processes.py", "ignores_sigterm");
    // Its caller gets 502, or a closed connection when the stop closes it first.
    const call = postJson(`${replica.url}/predict`, { seconds: 600 }).then(
      (answer) => answer.code,
      () => "connection closed",
    );
    await eventually(() => replica.agent.log.since().some((line) => /child/.test(line.line)));
    const printed = replica.agent.log
      .since()
      .map((line) => /^worker (\d+) child (\d+)$/.exec(line.line))
      .find(Boolean);
    const pids = track(Number(printed?.[1]), Number(printed?.[2]));
    // The agent gives the call no grace here: the worker and its child are killed.
    expect(await timedStop(replica)).toBeLessThan(2 * GRACE_MS + 2000);
    expect(["model.unexpected_shutdown", "connection closed"]).toContain(await call);
    await eventually(() => !pids.some(alive), 3000);
  });
});
