// npm run bench:gateway — what the gateway costs, measured against calling replicas directly in
// the same run (docs/benchmarks.md). Everything is a real process on 127.0.0.1: replica agents
// with Python workers, a gateway over HTTP (a cluster's), `modelship up` (its agents in the
// gateway's process), and this client.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { freePort } from "../test/helpers/ports.ts";
import {
  type Answer,
  closedLoop,
  commitRepository,
  MODELS,
  percentile,
  post,
  ROOT,
  type Started,
  start,
  startReplica,
  stopAll,
  stopProcessGroup,
  upCommand,
} from "./lib.ts";

/** Service time of the `work` function: a replica's capacity is 1000 / WORK_MS calls a second. */
const WORK_MS = 10;
const quick = process.argv.includes("--quick");
/** `--against REF`: the gateway of another commit, in a worktree, measured in the same run. */
const againstFlag = process.argv.indexOf("--against");
const against = againstFlag === -1 ? undefined : process.argv[againstFlag + 1];
const LATENCY_CALLS = quick ? 500 : 3000;
const THROUGHPUT_SECONDS = quick ? 1.5 : 4;
const OVERLOAD_SECONDS = quick ? 2 : 5;
const OVERLOAD_QUEUE_TIMEOUT_S = 0.05;

interface Percentiles {
  p50: number;
  p99: number;
}

/**
 * Calls `urls` in turn, one call at a time, so that each path meets the same background noise
 * (two cores shared by five processes); returns each one's percentiles.
 */
async function latency(urls: string[], body: string): Promise<Percentiles[]> {
  const times = urls.map((): number[] => []);
  for (let call = 0; call < 200; call++) for (const url of urls) await post(url, body); // warm up
  for (let call = 0; call < LATENCY_CALLS; call++) {
    for (const [index, url] of urls.entries()) {
      const answer = await post(url, body);
      if (answer.status !== 200) throw new Error(`${url} answered ${answer.status}`);
      times[index]?.push(answer.ms);
    }
  }
  return times.map((list) => ({ p50: percentile(list, 50), p99: percentile(list, 99) }));
}

/** CPU time (user + system) a process has used so far, in ms, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The gateway of commit `ref`, from a git worktree of it in `directory` (removed by the caller). */
function gatewayAt(ref: string, directory: string, config: string): Promise<Started> {
  execFileSync("git", ["worktree", "add", "--detach", "--quiet", directory, ref], { cwd: ROOT });
  symlinkSync(join(ROOT, "node_modules"), join(directory, "node_modules"));
  return start(["gateway", "--config", config, "--port", "0"], join(directory, "bin/modelship.js"));
}

/** A bare TCP relay to `url` (bench/tcp-relay.ts) in a process of its own. */
function startRelay(url: string): Promise<Started> {
  const target = new URL(url);
  return start([target.hostname, target.port], join(ROOT, "bench/tcp-relay.ts"));
}

/** The `modelship up` started here, stopped at the end even if it never served. */
let upProcess: ChildProcess | undefined;

/** The models `up` serves: name, bench_model.py's function, replicas. */
const UP_MODELS: [string, string, number][] = [
  ["add", "add", 1],
  ["work-1", "work", 1],
  ["work-2", "work", 2],
  ["work-4", "work", 4],
];

/**
 * `modelship up` on a git repository of bench_model.py and a Model and ModelDeployment for each
 * of UP_MODELS, in a process group of its own (stopping it stops its workers); resolves once
 * every replica of each is ready.
 */
async function startUp(directory: string): Promise<string> {
  const repo = join(directory, "up-repo");
  mkdirSync(repo);
  copyFileSync(join(MODELS, "bench_model.py"), join(repo, "bench_model.py"));
  const manifest = UP_MODELS.map(([name, fn, replicas]) =>
    [
      "apiVersion: modelship.dev/v1alpha1",
      "kind: Model",
      `metadata: { name: ${name} }`,
      `spec: { runtime: python3, file: bench_model.py, function: ${fn}, authentication: { enabled: false } }`,
      "---",
      "apiVersion: modelship.dev/v1alpha1",
      "kind: ModelDeployment",
      `metadata: { name: ${name} }`,
      `spec: { model: ${name}, build: latest, replicas: ${replicas} }`,
    ].join("\n"),
  ).join("\n---\n");
  writeFileSync(join(repo, "models.yaml"), `${manifest}\n`);
  commitRepository(repo, "bench models");
  const port = await freePort();
  const stateDir = join(directory, "up-state");
  const [command, args] = upCommand(repo, port, stateDir);
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "inherit"], detached: true });
  upProcess = child;
  const deadline = Date.now() + 120_000;
  // Every replica ready, not only a first one: a call while another still starts would queue.
  while (!everyReplicaReady(stateDir)) {
    if (child.exitCode !== null) throw new Error(`modelship up exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error("modelship up did not serve every model in 120 s");
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return `http://127.0.0.1:${port}`;
}

/** Whether every deployment of UP_MODELS has all its replicas ready (`modelship get md -o json`). */
function everyReplicaReady(stateDir: string): boolean {
  try {
    const list = JSON.parse(
      execFileSync(
        process.execPath,
        [join(ROOT, "bin/modelship.js"), "get", "md", "-o", "json", "--state-dir", stateDir],
        { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
      ),
    ) as { items: { metadata: { name: string }; status?: { readyReplicas?: number } }[] };
    return UP_MODELS.every(([name, , replicas]) =>
      list.items.some(
        (item) => item.metadata.name === name && item.status?.readyReplicas === replicas,
      ),
    );
  } catch {
    return false;
  }
}

/** Closed loop: `concurrency` callers, each calling again as soon as answered; calls a second. */
function throughput(urls: string[], concurrency: number, body: string): Promise<number> {
  return closedLoop(urls, concurrency, body, THROUGHPUT_SECONDS);
}

/** Open loop at `rate` calls a second: the share of 429s and how late each 429 came. */
async function overload(url: string, rate: number, body: string) {
  const calls: Promise<Answer>[] = [];
  const started = performance.now();
  const total = Math.round(rate * OVERLOAD_SECONDS);
  for (let sent = 0; sent < total; ) {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    for (; sent < Math.min(due, total); sent++) calls.push(post(url, body));
    await new Promise((resolve) => setImmediate(resolve));
  }
  const answers = await Promise.all(calls);
  const busy = answers.filter((answer) => answer.status === 429);
  const other = answers.filter((answer) => answer.status !== 429 && answer.status !== 200);
  if (other.length > 0) throw new Error(`unexpected answers: ${other[0]?.status}`);
  const lateness = busy.map((answer) => answer.ms - OVERLOAD_QUEUE_TIMEOUT_S * 1000);
  return {
    calls: answers.length,
    busyShare: busy.length / answers.length,
    p50Late: percentile(lateness, 50),
    p99Late: percentile(lateness, 99),
  };
}

const ms = (value: number) => `${value.toFixed(3)} ms`;

async function main(): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), "modelship-bench-"));
  try {
    const adder = await startReplica("add-1", "add");
    const workers = await Promise.all(
      [1, 2, 3, 4].map((index) => startReplica(`work-${index}`, "work")),
    );
    const route = (name: string, replicas: Started[], queueTimeoutSeconds = 30) => ({
      name,
      authentication: { enabled: false },
      queueTimeoutSeconds,
      replicas: replicas.map((replica, index) => ({
        id: `${name}-${index + 1}`,
        url: replica.url,
      })),
    });
    const config = join(directory, "gateway.json");
    writeFileSync(
      config,
      JSON.stringify({
        models: [
          route("add", [adder]),
          ...[1, 2, 4].map((count) => route(`work-${count}`, workers.slice(0, count))),
          route("overload", workers.slice(0, 2), OVERLOAD_QUEUE_TIMEOUT_S),
        ],
      }),
    );
    const gateway = await start(["gateway", "--config", config, "--port", "0"]);
    const relay = await startRelay(adder.url);
    const earlier = against && (await gatewayAt(against, join(directory, "against"), config));
    const upUrl = await startUp(directory);
    const addBody = JSON.stringify({ a: 3, b: 5 });
    const workBody = JSON.stringify({ ms: WORK_MS });

    console.log(
      `machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    );
    console.log(`\nlatency at concurrency 1 (add, ${LATENCY_CALLS} calls each)`);
    const pids = [gateway.child.pid, relay.child.pid] as number[];
    const cpuBefore = pids.map(cpuMs);
    const [direct, viaGateway, viaRelay, viaUp, viaEarlier] = (await latency(
      [
        `${adder.url}/predict`,
        `${gateway.url}/models/add/predict`,
        `${relay.url}/predict`,
        `${upUrl}/models/add/predict`,
        ...(earlier ? [`${earlier.url}/models/add/predict`] : []),
      ],
      addBody,
    )) as [Percentiles, Percentiles, Percentiles, Percentiles, Percentiles | undefined];
    const [gatewayCpu, relayCpu] = pids.map(
      (pid, index) => ((cpuMs(pid) - (cpuBefore[index] as number)) * 1000) / LATENCY_CALLS,
    ) as [number, number];
    console.log(`  (a) direct to the agent   p50 ${ms(direct.p50)}   p99 ${ms(direct.p99)}`);
    console.log(
      `  (b) through the gateway   p50 ${ms(viaGateway.p50)}   p99 ${ms(viaGateway.p99)}   CPU ${gatewayCpu.toFixed(0)} µs a call`,
    );
    console.log(
      `  (c) through a TCP relay   p50 ${ms(viaRelay.p50)}   p99 ${ms(viaRelay.p99)}   CPU ${relayCpu.toFixed(0)} µs a call (the floor for a hop)`,
    );
    console.log(
      `  (d) through up's gateway  p50 ${ms(viaUp.p50)}   p99 ${ms(viaUp.p99)}   (its agent in the gateway's process: no hop)`,
    );
    console.log(
      `  added by the gateway      p50 ${ms(viaGateway.p50 - direct.p50)}   p99 ${ms(viaGateway.p99 - direct.p99)}   (target p50 ≤ 0.1 ms)`,
    );
    console.log(
      `  added by the relay        p50 ${ms(viaRelay.p50 - direct.p50)}   p99 ${ms(viaRelay.p99 - direct.p99)}`,
    );
    console.log(
      `  added by up's gateway     p50 ${ms(viaUp.p50 - direct.p50)}   p99 ${ms(viaUp.p99 - direct.p99)}   (target p50 ≤ 0.1 ms)`,
    );
    if (viaEarlier) {
      console.log(
        `  added by the gateway at ${against}   p50 ${ms(viaEarlier.p50 - direct.p50)}   p99 ${ms(viaEarlier.p99 - direct.p99)}   (the same calls, interleaved)`,
      );
    }
    console.log(
      `  load average ${loadavg()
        .map((value) => value.toFixed(2))
        .join(" ")}`,
    );

    console.log(`\nthroughput (work: ${WORK_MS} ms a call; ${THROUGHPUT_SECONDS} s per row)`);
    const one = await throughput([`${workers[0]?.url}/predict`], 1, workBody);
    console.log(`  (a) one agent, called directly: ${one.toFixed(1)} calls/s`);
    for (const count of [1, 2, 4]) {
      const directN = await throughput(
        workers.slice(0, count).map((replica) => `${replica.url}/predict`),
        count,
        workBody,
      );
      for (const concurrency of [count, 2 * count]) {
        const through = await throughput(
          [`${gateway.url}/models/work-${count}/predict`],
          concurrency,
          workBody,
        );
        console.log(
          `  N=${count} concurrency ${String(concurrency).padEnd(2)}  gateway ${through.toFixed(1).padStart(6)} calls/s   ` +
            `÷ (N × one direct) = ${(through / (count * one)).toFixed(3)}   ÷ N agents direct (${directN.toFixed(1)}) = ${(through / directN).toFixed(3)}   (target ≥ 0.95)`,
        );
        const throughUp = await throughput(
          [`${upUrl}/models/work-${count}/predict`],
          concurrency,
          workBody,
        );
        console.log(
          `                     up      ${throughUp.toFixed(1).padStart(6)} calls/s   ` +
            `÷ (N × one direct) = ${(throughUp / (count * one)).toFixed(3)}   ÷ N agents direct (${directN.toFixed(1)}) = ${(throughUp / directN).toFixed(3)}   (target ≥ 0.95)`,
        );
      }
    }

    // With a function that costs nothing, the path is all the work: what the gateway's CPU per
    // call costs in calls a second, on two cores the client, agent and worker share. An agent
    // takes one call at a time (a second is answered busy): it is called directly by one
    // caller, and the gateways by one and by four (they queue the rest).
    console.log(`\nthroughput of add (costs nothing; ${THROUGHPUT_SECONDS} s per row)`);
    const directAdd = await throughput([`${adder.url}/predict`], 1, addBody);
    console.log(`  direct to the agent, concurrency 1: ${directAdd.toFixed(0)} calls/s`);
    for (const concurrency of [1, 4]) {
      const viaGatewayAdd = await throughput(
        [`${gateway.url}/models/add/predict`],
        concurrency,
        addBody,
      );
      const viaUpAdd = await throughput([`${upUrl}/models/add/predict`], concurrency, addBody);
      console.log(
        `  concurrency ${concurrency}  gateway ${viaGatewayAdd.toFixed(0)} calls/s (÷ direct ${(viaGatewayAdd / directAdd).toFixed(3)})   up ${viaUpAdd.toFixed(0)} calls/s (÷ direct ${(viaUpAdd / directAdd).toFixed(3)})`,
      );
    }

    // The overload is the gateway's alone: up's processes would only be noise on two cores.
    if (upProcess) await stopProcessGroup(upProcess);
    const capacity = (2 * 1000) / WORK_MS;
    console.log(
      `\noverload: 2 replicas (capacity ${capacity} calls/s) offered ${2 * capacity} calls/s for ${OVERLOAD_SECONDS} s, queueTimeoutSeconds ${OVERLOAD_QUEUE_TIMEOUT_S}`,
    );
    const result = await overload(`${gateway.url}/models/overload/predict`, 2 * capacity, workBody);
    console.log(
      `  ${result.calls} calls, ${(result.busyShare * 100).toFixed(1)} % answered 429 model.busy`,
    );
    console.log(
      `  a 429 came after its deadline by p50 ${ms(result.p50Late)}, p99 ${ms(result.p99Late)}   (target p99 ≤ 5 ms)`,
    );
  } finally {
    stopAll();
    if (upProcess) await stopProcessGroup(upProcess);
    if (against) {
      execFileSync("git", ["worktree", "remove", "--force", join(directory, "against")], {
        cwd: ROOT,
        stdio: "ignore",
      });
    }
    // A build's files are read-only (docs/builds.md).
    execFileSync("chmod", ["-R", "u+w", directory]);
    rmSync(directory, { recursive: true, force: true });
  }
}

await main();
