// npm run bench:replica-memory — what each replica of the iris model costs in memory
// (docs/benchmarks.md): 1 to 9 replica agents in this process, their workers forked from one
// preloaded parent (as `modelship up` runs Python replicas), against the same number of workers
// that each load the file themselves, in the same run. Each replica answers a call before it is
// measured (a model's first call touches pages the load did not). Memory is the sum over every
// process of the model's (the parent, each launcher and worker) of PSS, from
// /proc/PID/smaps_rollup: what the machine gives them, each shared page divided among those that
// share it. RSS counts a shared page once per process, so it is printed too, but says little here.
// How much the machine's available memory fell as each replica came is printed beside both.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ReplicaAgent } from "../controller/replica/agent.ts";
import { PreloadedParents } from "../controller/replica/preloaded-parents.ts";
import { median, processTree, ROOT } from "./lib.ts";

const MAX_REPLICAS = 9;
const PEERS_DIR = process.env.PEERS_DIR ?? join(homedir(), ".cache/modelship-bench/peers");

const work = mkdtempSync(join(tmpdir(), "modelship-replica-memory-"));
const model = join(work, "iris");
cpSync(join(ROOT, "bench/peers/modelship"), model, { recursive: true });
const pickle = join(PEERS_DIR, "model.pkl");
if (existsSync(pickle)) cpSync(pickle, join(model, "model.pkl"));
else execFileSync("python3", [join(ROOT, "bench/peers/fit_iris.py"), join(model, "model.pkl")]);

interface Memory {
  /** PSS and RSS in MB, summed over this process's descendants. */
  pss: number;
  rss: number;
  /** RSS and USS (private pages: what its end would free) of each descendant, in MB. */
  byPid: Map<number, { rss: number; uss: number }>;
  /**
   * The machine's MemAvailable (/proc/meminfo), in MB: how much it fell as a replica came is
   * what the replica cost the machine, by no process's accounting (noisy by a few MB: other
   * processes and the page cache move it too).
   */
  available: number;
}

function memory(): Memory {
  let pss = 0;
  let rss = 0;
  const byPid = new Map<number, { rss: number; uss: number }>();
  for (const pid of processTree(process.pid).slice(1)) {
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
      const field = (name: string) =>
        Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(rollup)?.[1] ?? 0) / 1024;
      pss += field("Pss");
      rss += field("Rss");
      byPid.set(pid, { rss: field("Rss"), uss: field("Private_Clean") + field("Private_Dirty") });
    } catch {}
  }
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  const available = Number(/^MemAvailable:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0) / 1024;
  return { pss, rss, byPid, available };
}

/** How much the machine's available memory fell from replica `index - 1` to replica `index`. */
function fellBy(list: Memory[], index: number): number {
  return (list[index - 1] as Memory).available - (list[index] as Memory).available;
}

/** RSS and USS of the processes in `now` that were not in `before`: what one replica added. */
function added(now: Memory, before: Memory | undefined): { rss: number; uss: number } {
  let rss = 0;
  let uss = 0;
  for (const [pid, each] of now.byPid) {
    if (before?.byPid.has(pid)) continue;
    rss += each.rss;
    uss += each.uss;
  }
  return { rss, uss };
}

async function replicas(forked: boolean): Promise<Memory[]> {
  const parents = new PreloadedParents(join(work, forked ? "forked" : "plain"));
  execFileSync("mkdir", ["-p", join(work, forked ? "forked" : "plain")]);
  const options = { file: "predict.py", functionName: "predict", cwd: model };
  const parent = forked ? await parents.acquire(options) : undefined;
  if (forked && !parent) throw new Error("the preloaded parent did not start");
  const agents: ReplicaAgent[] = [];
  const measured: Memory[] = [];
  try {
    for (let count = 1; count <= MAX_REPLICAS; count++) {
      const agent = new ReplicaAgent({
        replicaId: `iris-${count}`,
        runtime: "python3",
        file: "predict.py",
        functionName: "predict",
        directory: model,
        timeoutSeconds: 30,
        ...(parent ? { forkServer: parent.socketPath } : {}),
      });
      agents.push(agent);
      agent.start();
      await agent.whenReady();
      const answer = await agent.predict('{"petal_length": 5.4}');
      if (answer.status !== 200) throw new Error(`iris answered ${answer.body}`);
      // Let the kernel settle what the call touched.
      await new Promise((resolve) => setTimeout(resolve, 300));
      measured.push(memory());
    }
  } finally {
    await Promise.all(agents.map((agent) => agent.stop()));
    parent?.release();
    await parents.stopAll();
  }
  return measured;
}

const [loadBefore] = loadavg();
try {
  const forked = await replicas(true);
  const plain = await replicas(false);
  console.log(
    `iris (scikit-learn), Python ${execFileSync("python3", ["--version"], { encoding: "utf8" }).trim()}; load average ${loadBefore?.toFixed(2)}\n`,
  );
  console.log(
    "| replicas | forked: PSS of all, MB | added by this one | its own processes: RSS / private, MB | MemAvailable fell by, MB | plain workers: PSS, MB | added | its own: RSS / private | MemAvailable fell by | forked RSS sum, MB |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (let index = 0; index < MAX_REPLICAS; index++) {
    const f = forked[index] as Memory;
    const p = plain[index] as Memory;
    const fAdded = index === 0 ? "" : (f.pss - (forked[index - 1]?.pss ?? 0)).toFixed(1);
    const pAdded = index === 0 ? "" : (p.pss - (plain[index - 1]?.pss ?? 0)).toFixed(1);
    const fOwn = added(f, forked[index - 1]);
    const pOwn = added(p, plain[index - 1]);
    const fFell = index === 0 ? "" : fellBy(forked, index).toFixed(1);
    const pFell = index === 0 ? "" : fellBy(plain, index).toFixed(1);
    console.log(
      `| ${index + 1} | ${f.pss.toFixed(1)} | ${fAdded} | ${fOwn.rss.toFixed(1)} / ${fOwn.uss.toFixed(1)} | ${fFell} | ${p.pss.toFixed(1)} | ${pAdded} | ${pOwn.rss.toFixed(1)} / ${pOwn.uss.toFixed(1)} | ${pFell} | ${f.rss.toFixed(0)} |`,
    );
  }
  console.log(
    "\nRSS counts every page a process maps, shared or not: a forked replica's RSS includes the " +
      "model's pages it shares with its parent and siblings. PSS divides each shared page among " +
      "the processes that map it (the sum is what the machine gives); private pages are what " +
      "the replica's end would free.",
  );
  const addedPss = forked.slice(1).map((each, index) => each.pss - (forked[index]?.pss ?? 0));
  const worst = Math.max(...addedPss);
  console.log(
    `\nthe 2nd to ${MAX_REPLICAS}th forked replica each added at most ${worst.toFixed(1)} MB of PSS ${worst <= 20 ? "(≤ 20 MB: met)" : "(> 20 MB: NOT met)"}, and at most ${Math.max(...forked.slice(1).map((each, index) => added(each, forked[index]).uss)).toFixed(1)} MB of private memory`,
  );
  const fell = (list: Memory[]) => list.slice(1).map((_, index) => fellBy(list, index + 1));
  console.log(
    `the machine's available memory fell by ${median(fell(forked)).toFixed(1)} MB per added forked replica (median; at most ${Math.max(...fell(forked)).toFixed(1)}), and by ${median(fell(plain)).toFixed(1)} MB per added plain worker`,
  );
} finally {
  execFileSync("chmod", ["-R", "u+w", work]);
  rmSync(work, { recursive: true, force: true });
}
