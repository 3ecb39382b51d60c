// What the benchmarks share: real processes of `modelship` on 127.0.0.1 (replica agents, a
// gateway), a keep-alive HTTP client, percentiles and a closed-loop load.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../", import.meta.url));
const ENTRY = join(ROOT, "bin/modelship.js");
export const MODELS = join(ROOT, "bench/models");

export interface Started {
  child: ChildProcess;
  url: string;
}

export const children: ChildProcess[] = [];

/**
 * Starts `modelship ARGS` and resolves with the URL it says it listens on; `entry` is another
 * script that says so the same way (another checkout's bin/modelship.js, bench/tcp-relay.ts).
 */
export function start(args: string[], entry = ENTRY): Promise<Started> {
  const child = spawn(process.execPath, [entry, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (chunk) => {
      out += chunk;
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve({ child, url: match[1] as string });
    });
    child.once("exit", (code) =>
      reject(new Error(`${relative(ROOT, entry)} ${args[0]} exited with ${code}`)),
    );
  });
}

/** Where a replica's function is: bench/models/bench_model.py unless said otherwise. */
export interface ModelFile {
  directory: string;
  file: string;
}

export async function startReplica(
  id: string,
  functionName: string,
  extra: string[] = [],
  model: ModelFile = { directory: MODELS, file: "bench_model.py" },
): Promise<Started> {
  const replica = await start([
    "replica",
    ...["--dir", model.directory, "--file", model.file, "--function", functionName],
    ...["--runtime", "python3", "--port", "0", "--replica-id", id, "--quiet", ...extra],
  ]);
  for (;;) {
    const ready = await fetch(`${replica.url}/readyz`);
    if (ready.ok) return replica;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export const client = new Agent({ keepAlive: true, maxSockets: 256 });

export interface Answer {
  status: number;
  ms: number;
}

/** One POST with a keep-alive connection; resolves with the status and the time it took. */
export function post(url: string, body: string): Promise<Answer> {
  const target = new URL(url);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        agent: client,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (incoming) => {
        incoming.resume();
        incoming.on("end", () =>
          resolve({ status: incoming.statusCode ?? 0, ms: performance.now() - started }),
        );
      },
    );
    outgoing.setNoDelay(true);
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Closed loop for `seconds`: `concurrency` callers, each calling again once answered; calls a second. */
export async function closedLoop(
  urls: string[],
  concurrency: number,
  body: string,
  seconds: number,
): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let answered = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, caller) => {
      const url = urls[caller % urls.length] as string;
      while (performance.now() < end) {
        const answer = await post(url, body);
        if (answer.status !== 200) throw new Error(`${url} answered ${answer.status}`);
        answered += 1;
      }
    }),
  );
  return answered / seconds;
}

/** Stops every process started here. */
export function stopAll(): void {
  client.destroy();
  for (const child of children) child.kill("SIGTERM");
}

/**
 * A git repository (one commit on main) of the iris model bench:peers and bench:up-commit serve
 * (bench/peers/modelship), with the pickle every peer serves: `pickle`, else one fitted now by
 * the same script. `edit` changes the files before the commit.
 */
export function irisRepository(
  repo: string,
  pickle: string,
  edit: (dir: string) => void = () => {},
): void {
  cpSync(join(ROOT, "bench/peers/modelship"), repo, { recursive: true });
  if (existsSync(pickle)) cpSync(pickle, join(repo, "model.pkl"));
  else execFileSync("python3", [join(ROOT, "bench/peers/fit_iris.py"), join(repo, "model.pkl")]);
  edit(repo);
  commitRepository(repo, "iris");
}

/** Makes `repo` a git repository of its files, in one commit on main. */
export function commitRepository(repo: string, message: string): void {
  const git = (...args: string[]) =>
    execFileSync("git", args, { cwd: repo, env: BENCH_GIT_ENV, stdio: "ignore" });
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-qm", message);
}

/**
 * Stops a process started `detached` (a process group of its own, as `up` is, with its
 * workers) by SIGTERM to its group; resolves once it exited.
 */
export function stopProcessGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-(child.pid as number), "SIGTERM");
  } catch {}
  return exited;
}

export const BENCH_GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "bench",
  GIT_AUTHOR_EMAIL: "bench@example.com",
  GIT_COMMITTER_NAME: "bench",
  GIT_COMMITTER_EMAIL: "bench@example.com",
};

/** `modelship up` following `repo`, its gateway on `port`, its state in `stateDir`: command and arguments. */
export function upCommand(repo: string, port: number, stateDir: string): [string, string[]] {
  return [
    join(ROOT, "node_modules/.bin/node"),
    [
      ENTRY,
      "up",
      "--repo",
      repo,
      "--port",
      String(port),
      "--admin-port",
      "0",
      "--state-dir",
      stateDir,
    ],
  ];
}

/** The pids of a process and all its descendants, from /proc. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {}
  }
  const tree: number[] = [];
  const visit = (pid: number) => {
    tree.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return tree;
}
