// Python replicas forked from one preloaded parent (fork_server.py, launch_worker.py): real
// Python processes, real agents. The file is loaded once for all replicas and again for none of
// their restarts; each replica still has its own process, environment, memory limit and log;
// a load error, a crash, a timeout and a parent that is gone are what they are without a parent.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ReplicaAgent, type ReplicaOptions } from "../controller/replica/agent.ts";
import { PreloadedParents } from "../controller/replica/preloaded-parents.ts";
import { eventually } from "./helpers/replica.ts";

let dir: string;
let parents: PreloadedParents;
const agents: ReplicaAgent[] = [];

const MODEL = `
import os, resource, time
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "loads.txt"), "a") as out:
    out.write(f"{os.getpid()}\\n")

def predict(args):
    if args.get("exit"):
        os._exit(9)
    if args.get("sleep"):
        time.sleep(args["sleep"])
    print("called", flush=True)
    return {
        "pid": os.getpid(),
        "env": os.environ.get("MODEL_SETTING"),
        "crn": os.environ.get("MODELSHIP_DEPLOYMENT_CRN"),
        "limit": resource.getrlimit(resource.RLIMIT_DATA)[0],
    }
`;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "modelship-preloaded-"));
  writeFileSync(join(dir, "model.py"), MODEL);
  parents = new PreloadedParents(dir, 200);
});

afterEach(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  await parents.stopAll();
  rmSync(dir, { recursive: true, force: true });
});

const loads = () => readFileSync(join(dir, "loads.txt"), "utf8").trim().split("\n").length;

async function replica(
  id: string,
  forkServer: string | undefined,
  extra: Partial<ReplicaOptions> = {},
): Promise<ReplicaAgent> {
  const agent = new ReplicaAgent({
    replicaId: id,
    runtime: "python3",
    file: "model.py",
    functionName: "predict",
    directory: dir,
    timeoutSeconds: 30,
    restartBackoffMs: 10,
    ...(forkServer ? { forkServer } : {}),
    ...extra,
  });
  agents.push(agent);
  agent.start();
  return agent;
}

async function call(agent: ReplicaAgent, request: object = {}) {
  const answer = await agent.predict(JSON.stringify(request));
  return { ...answer, json: JSON.parse(answer.body) };
}

const options = () => ({ file: "model.py", functionName: "predict", cwd: dir });

describe("replicas forked from a preloaded parent", () => {
  it("load the file once for three replicas, each in its own process with its own environment", async () => {
    const parent = await parents.acquire({ ...options(), env: { MODEL_SETTING: "parent" } });
    expect(parent).toBeDefined();
    const list = await Promise.all(
      [1, 2, 3].map((n) =>
        replica(`r${n}`, parent?.socketPath, {
          env: { MODEL_SETTING: `replica-${n}` },
          serves: { model: "m", build: 1, deployment: "m", deploymentId: n },
        }),
      ),
    );
    await Promise.all(list.map((agent) => agent.whenReady()));
    const answers = await Promise.all(list.map((agent) => call(agent)));
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    const pids = answers.map((answer) => answer.json.response.pid);
    expect(new Set(pids).size).toBe(3);
    // The parent loaded it; no replica did.
    expect(loads()).toBe(1);
    // Each call sees its replica's environment, not the parent's.
    expect(answers.map((answer) => answer.json.response.env)).toEqual([
      "replica-1",
      "replica-2",
      "replica-3",
    ]);
    expect(answers[1]?.json.response.crn).toMatch(/m.*2/);
    // What the function prints is its replica's log.
    expect(list[0]?.log.since(0, 100).some((line) => line.line === "called")).toBe(true);
    expect(list.map((agent) => agent.workerPid)).not.toContain(undefined);
  });

  it("forks a crashed or timed-out worker again, without loading the file again", async () => {
    const parent = await parents.acquire(options());
    const agent = await replica("crash", parent?.socketPath, { timeoutSeconds: 1 });
    await agent.whenReady();
    const first = await call(agent);
    const crashed = await call(agent, { exit: true });
    expect(crashed.json.error).toBe("model.unexpected_shutdown");
    await agent.whenReady();
    const again = await call(agent);
    expect(again.status).toBe(200);
    expect(again.json.response.pid).not.toBe(first.json.response.pid);
    const timedOut = await call(agent, { sleep: 5 });
    expect(timedOut.json.error).toBe("model.timeout");
    await eventually(() => agent.ready);
    expect((await call(agent)).status).toBe(200);
    expect(loads()).toBe(1);
    expect(agent.stats.restarts).toBe(2);
  });

  it("holds each forked worker to its memory limit", async () => {
    const limit = 2 * 1024 ** 3;
    const parent = await parents.acquire(options());
    const agent = await replica("limited", parent?.socketPath, { memoryLimitBytes: limit });
    await agent.whenReady();
    expect((await call(agent)).json.response.limit).toBe(limit);
  });

  it("reports the file's load error from each replica, as a worker started afresh does", async () => {
    writeFileSync(join(dir, "broken.py"), "import not_a_module_anywhere\n");
    const parent = await parents.acquire({ ...options(), file: "broken.py" });
    const agent = await replica("broken", parent?.socketPath, { file: "broken.py" });
    await expect(agent.whenReady()).rejects.toThrow(
      /cannot load predict from broken\.py: ModuleNotFoundError: No module named 'not_a_module_anywhere'/,
    );
    expect(agent.state).toBe("failed");
  });

  it.each([
    { left: "a thread", start: "threading.Thread(target=stop.wait, name='poller').start()" },
    { left: "a daemon thread", start: "threading.Thread(target=stop.wait, daemon=True).start()" },
  ])(
    "loads the file in each worker, saying why, when its import leaves $left running",
    async ({ start }) => {
      writeFileSync(
        join(dir, "threaded.py"),
        `import os, threading
stop = threading.Event()
${start}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "loads.txt"), "a") as out:
    out.write(f"{os.getpid()}\\n")

def predict(args):
    # A worker forked from the parent would see only its own main thread.
    return {"threads": threading.active_count()}
`,
      );
      const parent = await parents.acquire({ ...options(), file: "threaded.py" });
      expect(parent).toBeDefined();
      const list = await Promise.all(
        ["t1", "t2"].map((id) => replica(id, parent?.socketPath, { file: "threaded.py" })),
      );
      await Promise.all(list.map((agent) => agent.whenReady()));
      for (const agent of list) {
        expect((await call(agent)).json.response.threads).toBe(2);
        const lines = agent.log.since(0, 100).map((line) => line.line);
        expect(lines).toContainEqual(
          expect.stringMatching(
            /not forked from the preloaded parent: the model's import left 1 thread\(s\) running .*this worker loads the file itself/,
          ),
        );
      }
      // Once in the parent, and once in each worker.
      expect(loads()).toBe(3);
    },
  );

  it("loads the file itself when there is no parent, and after the parent is gone", async () => {
    const alone = await replica("alone", join(dir, "no-such-parent.sock"));
    await alone.whenReady();
    expect((await call(alone)).status).toBe(200);
    expect(loads()).toBe(1);

    const parent = await parents.acquire(options());
    const agent = await replica("orphan", parent?.socketPath);
    await agent.whenReady();
    const before = await call(agent);
    // The parent stops: its children die with it, and the restarted worker loads the file.
    await parents.stopAll();
    await eventually(async () => {
      if (!agent.ready) return false;
      const answer = await call(agent);
      return answer.status === 200 && answer.json.response.pid !== before.json.response.pid;
    }, 20_000);
    expect(loads()).toBe(3);
  });

  it("shares a parent between the same options, keeps it a while unused, then stops it", async () => {
    const first = await parents.acquire(options());
    const second = await parents.acquire(options());
    const other = await parents.acquire({ ...options(), env: { MODEL_SETTING: "other" } });
    expect(second?.socketPath).toBe(first?.socketPath);
    expect(other?.socketPath).not.toBe(first?.socketPath);
    expect(parents.size).toBe(2);
    first?.release();
    second?.release();
    other?.release();
    // Kept for the idle time (200 ms here), then stopped.
    expect(parents.size).toBe(2);
    await eventually(() => parents.size === 0, 5000);
  });

  it("keeps what the import opened and printed out of the way, and hands over an environment of any size", async () => {
    writeFileSync(
      join(dir, "chatty.py"),
      `import os
print("x" * 20000, flush=True)  # more than the handshake's tail
journal = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "journal.txt"), "a")

def predict(args):
    journal.write("call\\n")
    journal.flush()
    return {"big": len(os.environ.get("BIG", "")), "fd": journal.fileno()}
`,
    );
    const parent = await parents.acquire({ ...options(), file: "chatty.py" });
    expect(parent).toBeDefined();
    const big = "b".repeat(100_000); // more than one socket buffer, less than one variable may hold
    const agent = await replica("chatty", parent?.socketPath, {
      file: "chatty.py",
      env: { BIG: big },
    });
    await agent.whenReady();
    const answer = await call(agent);
    expect(answer.json.response.big).toBe(big.length);
    // The file the import opened is still the import's: not the worker's pipes (3, 4), open.
    expect(answer.json.response.fd).toBeGreaterThan(4);
    expect(readFileSync(join(dir, "journal.txt"), "utf8")).toBe("call\n");
  });
});
