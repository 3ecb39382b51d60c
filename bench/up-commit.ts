// npm run bench:up-commit — from a commit to its answer under `modelship up` (docs/benchmarks.md):
// a real `up` on a real git repository on this machine serving the iris model (scikit-learn, a
// build script that pip-installs its requirements). Each of 5 runs commits a code-only change
// (predict.py returns another version) and times until the gateway answers with it, then
// `git revert`s it and times until the previous version answers again (no build: the previous
// build is still there). Calls are made every 5 ms meanwhile; the time is from just before
// `git commit` to the first answer of the new version, and until no answer is the old one.
// Prints each run, the medians, and the load average.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../test/helpers/ports.ts";
import { BENCH_GIT_ENV, irisRepository, stopProcessGroup, upCommand } from "./lib.ts";

const RUNS = 5;
const PEERS_DIR = process.env.PEERS_DIR ?? join(homedir(), ".cache/modelship-bench/peers");

const work = mkdtempSync(join(tmpdir(), "modelship-up-commit-"));
const repo = join(work, "repo");
const predictFile = join(repo, "predict.py");
let original = "";
const withVersion = (version: number) =>
  original.replace(
    'return {"petal_width": round(float(width), 4)}',
    `return {"petal_width": round(float(width), 4), "version": ${version}}`,
  );
irisRepository(repo, join(PEERS_DIR, "model.pkl"), () => {
  original = readFileSync(predictFile, "utf8");
  writeFileSync(predictFile, withVersion(0));
});
const git = (...args: string[]) =>
  execFileSync("git", args, { cwd: repo, env: BENCH_GIT_ENV, stdio: "ignore" });

const port = await freePort();
const [command, args] = upCommand(repo, port, join(work, "state"));
const up = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
let upOutput = "";
up.stdout.on("data", (chunk) => {
  upOutput = (upOutput + chunk).slice(-20_000);
});
up.stderr.on("data", (chunk) => {
  upOutput = (upOutput + chunk).slice(-20_000);
});

async function versionAnswered(): Promise<number | undefined> {
  try {
    const answer = await fetch(`http://127.0.0.1:${port}/models/iris/predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"petal_length":5.4}',
    });
    const body = (await answer.json()) as { response?: { version?: number } };
    return body.response?.version;
  } catch {
    return undefined;
  }
}

/** Calls every 5 ms from `started`: when `version` first answered, and when the last other one did. */
async function timeUntil(
  version: number,
  started: number,
): Promise<{ first: number; all: number }> {
  let first: number | undefined;
  let lastOther = 0;
  const deadline = started + 120_000;
  for (;;) {
    const answered = await versionAnswered();
    const now = performance.now();
    if (answered === version) first ??= now - started;
    else if (answered !== undefined) lastOther = now - started;
    // 300 answers in a row of the new version after the first one: the old replica is gone.
    if (first !== undefined && now - started - Math.max(first, lastOther) > 1500) {
      return { first, all: Math.max(first, lastOther) };
    }
    if (now > deadline) throw new Error(`version ${version} never answered:\n${upOutput}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

const [loadBefore] = loadavg();
try {
  console.log("starting modelship up and its first build (the environment is made once)…");
  await timeUntil(0, performance.now());
  const commits: { first: number; all: number }[] = [];
  const reverts: { first: number; all: number }[] = [];
  for (let run = 1; run <= RUNS; run++) {
    writeFileSync(predictFile, withVersion(run));
    let started = performance.now();
    git("commit", "-qam", `version ${run}`);
    commits.push(await timeUntil(run, started));
    started = performance.now();
    git("revert", "--no-edit", "HEAD");
    reverts.push(await timeUntil(0, started));
    const [c, r] = [commits.at(-1), reverts.at(-1)];
    console.log(
      `run ${run}: commit → new answer ${((c?.first ?? 0) / 1000).toFixed(2)} s (only new ${((c?.all ?? 0) / 1000).toFixed(2)} s); revert → old answer ${((r?.first ?? 0) / 1000).toFixed(2)} s (only old ${((r?.all ?? 0) / 1000).toFixed(2)} s)`,
    );
  }
  const [loadAfter] = loadavg();
  const seconds = (values: number[]) => (median(values) / 1000).toFixed(2);
  console.log(
    `\nmedians of ${RUNS} runs; load average ${loadBefore?.toFixed(2)} before, ${loadAfter?.toFixed(2)} after\n`,
  );
  console.log("| | first answer of the new version | every answer the new version |");
  console.log("|---|---|---|");
  console.log(
    `| code-only commit (a new build) | ${seconds(commits.map((c) => c.first))} s | ${seconds(commits.map((c) => c.all))} s |`,
  );
  console.log(
    `| git revert (the previous build) | ${seconds(reverts.map((r) => r.first))} s | ${seconds(reverts.map((r) => r.all))} s |`,
  );
} finally {
  await stopProcessGroup(up);
  execFileSync("chmod", ["-R", "u+w", work]);
  rmSync(work, { recursive: true, force: true });
}
