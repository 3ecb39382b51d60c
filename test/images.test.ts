// The Dockerfiles, built for real with buildah (vfs storage, chroot isolation: no daemon), on
// local stand-ins for the public bases (test/images/build-bases.sh: Debian bookworm from the
// Debian mirror, as the public bases are): the modelship image, the Python runtime base, and a
// model image from the Dockerfile `modelship build-context` writes for the iris example, whose
// entry point then answers a call. docs/testing.md says what this does not cover.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, runCli } from "./helpers/cli.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";

const BUILDAH = spawnSync("buildah", ["--version"]).status === 0;
const CACHE = process.env.MODELSHIP_IMAGES_CACHE ?? join(homedir(), ".cache", "modelship-images");
const STORAGE = [
  "--storage-driver",
  "vfs",
  "--root",
  join(CACHE, "storage"),
  "--runroot",
  join(CACHE, "run"),
];
const BASES = "localhost/modelship-test";
/** The images this file makes (removed after it; the bases stay cached). */
const MODELSHIP = `${BASES}/modelship:test`;
const RUNTIME = `${BASES}/runtime-python:test`;
const IRIS = `${BASES}/iris:test`;
const GATEWAY_SECRET = "a-gateway-secret";

const root = mkdtempSync(join(tmpdir(), "modelship-images-"));
const containers: string[] = [];

function buildah(args: string[], timeoutMs = 20 * 60_000): string {
  return execFileSync("buildah", [...STORAGE, ...args], {
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** `buildah bud` of a Dockerfile, its output kept for the failure message. */
function build(
  tag: string,
  dockerfile: string,
  context: string,
  buildArgs: Record<string, string> = {},
) {
  const args = Object.entries(buildArgs).flatMap(([name, value]) => [
    "--build-arg",
    `${name}=${value}`,
  ]);
  const result = spawnSync(
    "buildah",
    [...STORAGE, "bud", "--isolation", "chroot", "-f", dockerfile, "-t", tag, ...args, context],
    { encoding: "utf8", timeout: 20 * 60_000, maxBuffer: 64 * 1024 * 1024 },
  );
  expect(result.status, `${result.stdout}\n${result.stderr}`.slice(-4000)).toBe(0);
}

/** A working container of `image`, removed after the file. */
function container(image: string): string {
  const name = buildah(["from", "--pull-never", image]).trim();
  containers.push(name);
  return name;
}

/** Runs a command in a container of `image`: its exit code and output. */
function run(name: string, command: string[], user?: string) {
  const result = spawnSync(
    "buildah",
    [
      ...STORAGE,
      "run",
      "--isolation",
      "chroot",
      ...(user ? ["--user", user] : []),
      name,
      "--",
      ...command,
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

function imageConfig(image: string): { Entrypoint?: string[]; User?: string; WorkingDir?: string } {
  return JSON.parse(buildah(["inspect", "--type", "image", image])).OCIv1.config;
}

describe.skipIf(!BUILDAH)("the images, built with buildah", () => {
  let iris: ChildProcess | undefined;

  beforeAll(() => {
    execFileSync("bash", [join(PROJECT_ROOT, "test/images/build-bases.sh")], {
      stdio: ["ignore", "inherit", "inherit"],
      timeout: 30 * 60_000,
      env: { ...process.env, MODELSHIP_IMAGES_CACHE: CACHE },
    });
  }, 30 * 60_000);

  afterAll(() => {
    // The agent's whole process group: buildah run and what it started in the container.
    if (iris?.pid) {
      try {
        process.kill(-iris.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    for (const name of containers) spawnSync("buildah", [...STORAGE, "rm", name]);
    for (const image of [IRIS, RUNTIME, MODELSHIP])
      spawnSync("buildah", [...STORAGE, "rmi", "-f", image]);
    rmSync(root, { recursive: true, force: true });
  }, 120_000);

  it(
    "builds the modelship image, which runs the CLI as its own user",
    () => {
      build(MODELSHIP, "kustomize/images/modelship.Dockerfile", PROJECT_ROOT, {
        NODE_IMAGE: `${BASES}/node:24`,
      });
      expect(imageConfig(MODELSHIP)).toMatchObject({ User: "10001", Entrypoint: ["modelship"] });
      const help = run(container(MODELSHIP), ["modelship", "build-context", "--help"], "10001");
      expect(help).toMatchObject({
        status: 0,
        output: expect.stringContaining("Usage: modelship build-context"),
      });
    },
    20 * 60_000,
  );

  it(
    "builds the Python runtime base: the model's user owns /model, where its environment is",
    () => {
      build(RUNTIME, "kustomize/images/runtime-python.Dockerfile", PROJECT_ROOT, {
        NODE_IMAGE: `${BASES}/node:24`,
        PYTHON_IMAGE: `${BASES}/python:bookworm`,
      });
      const name = container(RUNTIME);
      expect(
        run(name, ["sh", "-c", "stat -c %u /model /model/venv && command -v python3"], "10001"),
      ).toEqual({
        status: 0,
        output: "10001\n10001\n/model/venv/bin/python3\n",
      });
    },
    20 * 60_000,
  );

  it(
    "builds the iris example from the Dockerfile build-context writes: trained at build time, read-only at run time",
    () => {
      // The repository as a user commits it; build-context exports it as the init container does.
      const repo = join(root, "repo");
      cpSync(join(PROJECT_ROOT, "manifests/examples/iris"), join(repo, "iris"), {
        recursive: true,
      });
      execFileSync("git", ["init", "-q", "-b", "main", repo]);
      const env = gitEnv({ name: "Dorothy Vaughan", email: "dorothy@example.com" });
      const commit = commitAll(repo, env, "iris");
      const buildJson = JSON.stringify({
        metadata: { name: "iris-1" },
        spec: {
          model: "iris",
          number: 1,
          commit,
          tree: "0".repeat(40),
          buildKey: "0".repeat(64),
          sourcePath: "iris",
          runtime: "python3",
          file: "predict.py",
          function: "predict",
          buildScript: "build.sh",
        },
      });
      const out = join(root, "context");
      const made = runCli([
        "build-context",
        ...["--repo", repo, "--commit", commit, "--path", "iris"],
        ...["--base-image", RUNTIME, "--build-json", buildJson, "--out", out],
      ]);
      expect(made.exitCode, made.stderr).toBe(0);
      build(IRIS, join(out, "Dockerfile"), out);

      const config = imageConfig(IRIS);
      expect(config.User).toBe("10001");
      const name = container(IRIS);
      // fit.py wrote model.pkl beside the code at build time; now the code is root's.
      expect(
        run(
          name,
          ["sh", "-c", "test -f model.pkl && stat -c %u /model/src /model/src/model.pkl"],
          "10001",
        ),
      ).toEqual({
        status: 0,
        output: "0\n0\n",
      });
      const write = run(name, ["sh", "-c", "echo x > /model/src/model.pkl"], "10001");
      expect(write.status).not.toBe(0);
      expect(write.output).toContain("Permission denied");
    },
    20 * 60_000,
  );

  it("runs the iris image's entry point, which answers a call through its agent", async () => {
    const entrypoint = imageConfig(IRIS).Entrypoint ?? [];
    expect(entrypoint.slice(0, 2)).toEqual(["modelship", "replica"]);
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const name = container(IRIS);
    // The image's own entry point, as the pod runs it; only where it listens is changed, as
    // every server here binds 127.0.0.1 (the last --host and --port win).
    iris = spawn(
      "buildah",
      [
        ...STORAGE,
        ...["run", "--isolation", "chroot", "--user", "10001"],
        ...["--env", `MODELSHIP_GATEWAY_SECRET=${GATEWAY_SECRET}`, name, "--"],
        ...entrypoint,
        ...["--host", "127.0.0.1", "--port", String(port), "--replica-id", "iris-test"],
      ],
      { detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    iris.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    iris.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ready = await fetch(`${url}/readyz`).then(
        (response) => response.status === 200,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline || iris.exitCode !== null) {
        throw new Error(`the iris agent did not become ready:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const answer = await fetch(`${url}/predict`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-modelship-gateway-secret": GATEWAY_SECRET },
      body: JSON.stringify({ petal_length: 5.4 }),
    });
    expect(answer.status).toBe(200);
    const body = (await answer.json()) as {
      success: boolean;
      response: { petal_width: number };
      replicaId: string;
    };
    expect(body).toMatchObject({ success: true, replicaId: "iris-test" });
    // The example's own output (model.yaml), from the model trained at build time.
    expect(body.response.petal_width).toBeCloseTo(1.882, 2);
  }, 120_000);
});
