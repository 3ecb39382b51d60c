// Who runs the model, and with what: a worker gets only the environment it is given (never the
// agent's own tokens), and can run as another user, who then cannot read the agent's files.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { workerEnvironment } from "../controller/replica/agent.ts";
import { inheritedEnvironment, WorkerProcess } from "../controller/replica/worker-process.ts";
import { MODELS_DIR, postJson, type RunningReplica, startReplica } from "./helpers/replica.ts";

const running: RunningReplica[] = [];
const cleanups: (() => void)[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((replica) => replica.stop()));
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function whoami(options: Parameters<typeof startReplica>[0], file = "/nonexistent") {
  const replica = await startReplica({ file: "identity.py", ...options });
  running.push(replica);
  await replica.agent.whenReady();
  const answer = await postJson(`${replica.url}/predict`, { file });
  expect(answer.status).toBe(200);
  return answer.body.response;
}

/** A file only root may read, in a directory anyone may enter. */
function rootOnlyFile(): string {
  const directory = mkdtempSync(join(tmpdir(), "modelship-secret-"));
  chmodSync(directory, 0o755);
  const file = join(directory, "token");
  writeFileSync(file, "the agent's secret", { mode: 0o600 });
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return file;
}

describe("a worker's environment", () => {
  it("has none of the agent's own variables: a token in the agent's environment does not reach the function", async () => {
    process.env.MODELSHIP_GIT_TOKEN = "ghp_not-for-the-model";
    cleanups.push(() => delete process.env.MODELSHIP_GIT_TOKEN);
    const { environ } = await whoami({
      functionName: "whoami",
      env: { MODEL_SETTING: "from spec.env" },
    });
    expect(environ.MODELSHIP_GIT_TOKEN).toBeUndefined();
    expect(JSON.stringify(environ)).not.toContain("ghp_not-for-the-model");
    expect(environ.MODEL_SETTING).toBe("from spec.env");
    expect(environ.PATH).toContain(process.env.PATH);
    // Nothing else of the agent's: no variable with the agent's value but those it passes on.
    // (A python3 that is a shell shim, as pyenv's, sets a few of its own: PWD, SHLVL, PYENV_*.)
    const passedOn = new Set([...Object.keys(inheritedEnvironment(process.env)), "PYTHONPATH"]);
    const launcher = /^(PWD|SHLVL|_|LC_\w+|_?PYENV\w*)$/;
    const leaked = Object.keys(environ).filter(
      (name) => environ[name] === process.env[name] && !passedOn.has(name) && !launcher.test(name),
    );
    expect(leaked).toEqual([]);
  });

  it("is exactly what a WorkerProcess is given, with the runtime on PYTHONPATH", async () => {
    const worker = new WorkerProcess({
      runtime: "python3",
      file: "identity.py",
      functionName: "whoami",
      cwd: MODELS_DIR,
      env: { PATH: process.env.PATH, ONLY: "this" },
    });
    cleanups.push(() => void worker.stop());
    await worker.started;
    const answer = await worker.call({ file: "/nonexistent" });
    const environ = answer?.ok
      ? (answer.response as { environ: Record<string, string> }).environ
      : {};
    expect(environ.ONLY).toBe("this");
    expect(environ.PYTHONPATH).toMatch(/runtime\/python\/$/);
    expect(environ.HOME).toBeUndefined();
  });
});

describe("workerEnvironment", () => {
  it.each<[string, NodeJS.ProcessEnv, NodeJS.ProcessEnv | undefined, boolean, NodeJS.ProcessEnv]>([
    [
      "keeps PATH, HOME and LANG of the agent, nothing else",
      { PATH: "/bin", HOME: "/root", LANG: "C.UTF-8", MODELSHIP_GIT_TOKEN: "t", AWS_SECRET: "s" },
      undefined,
      false,
      { PATH: "/bin", HOME: "/root", LANG: "C.UTF-8" },
    ],
    [
      "lets the model's variables win (a venv's PATH)",
      { PATH: "/bin" },
      { PATH: "/venv/bin:/bin", VIRTUAL_ENV: "/venv" },
      false,
      { PATH: "/venv/bin:/bin", VIRTUAL_ENV: "/venv" },
    ],
    ["adds tracebacks when asked", {}, { A: "1" }, true, { A: "1", MODELSHIP_TRACEBACKS: "1" }],
    ["leaves out what the agent does not set", { HOME: "/h" }, {}, false, { HOME: "/h" }],
  ])("%s", (_, agentEnv, modelEnv, tracebacks, expected) => {
    expect(workerEnvironment(agentEnv, modelEnv, tracebacks)).toEqual(expected);
  });
});

describe.skipIf(process.getuid?.() !== 0)("a worker run as another user", () => {
  it("runs as uid 65534 and cannot read a file only root may read", async () => {
    const file = rootOnlyFile();
    const asNobody = await whoami({ functionName: "whoami", uid: 65534, gid: 65534 }, file);
    expect(asNobody).toMatchObject({ uid: 65534, gid: 65534, groups: [], file: "PermissionError" });
    // The same function as root reads it: it is the user that differs.
    expect((await whoami({ functionName: "whoami" }, file)).file).toBe("the agent's secret");
  });

  it("is refused a uid without a gid, which would keep the agent's group", () => {
    expect(
      () =>
        new WorkerProcess({
          runtime: "python3",
          file: "identity.py",
          functionName: "whoami",
          cwd: MODELS_DIR,
          uid: 65534,
        }),
    ).toThrow("uid and gid are given together");
  });
});
