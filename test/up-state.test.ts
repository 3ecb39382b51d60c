// The state directory of `modelship up`: one owner at a time, files only this user can read, and
// a damaged or empty state or key file stops the start with its name and what to do. The real
// command, as processes, on a real git repository.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyFileProblem } from "../controller/platform/local/key-store.ts";
import { lockStateDir, writeFileAtomic } from "../controller/platform/local/state-files.ts";
import { storeFileProblem } from "../controller/platform/local/store.ts";
import { runCli, startCli } from "./helpers/cli.ts";
import { commitAll, gitEnv } from "./helpers/git.ts";
import { openModelManifest } from "./helpers/manifests.ts";
import { removeUpTestRoot } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-state-"));
const repo = join(root, "repo");
const GIT_ENV = gitEnv({ name: "Annie Easley", email: "annie@example.com" });

const manifest = openModelManifest({ name: "echo", file: "echo.py", function: "echo" });

const upArgs = (stateDir: string) => [
  ...["up", "--repo", repo, "--state-dir", stateDir],
  ...["--port", "0", "--interval", "1h"],
];

const mode = (path: string) => statSync(path).mode & 0o777;

beforeAll(() => {
  execFileSync("git", ["init", "-q", "-b", "main", repo], { env: GIT_ENV });
  commitAll(repo, GIT_ENV, "echo", {
    "echo.py": "def echo(args):\n    return args\n",
    "model.yaml": manifest,
  });
});

afterAll(() => {
  removeUpTestRoot(root);
});

describe("the state directory", () => {
  it("has one owner: a second up exits at once, naming the first's pid; its files are this user's alone", async () => {
    const stateDir = join(root, "state-one");
    const first = await startCli(upArgs(stateDir));
    try {
      const started = Date.now();
      const second = runCli(upArgs(stateDir));
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(second.exitCode).toBe(2);
      expect(second.stderr).toContain(`already running for ${stateDir} (pid ${first.child.pid})`);
      expect(mode(stateDir)).toBe(0o700);
      for (const file of ["store.json", "admin.json", "up.lock"]) {
        expect(`${file} ${mode(join(stateDir, file)).toString(8)}`).toBe(`${file} 600`);
      }
      expect(mode(join(stateDir, "secrets"))).toBe(0o700);
    } finally {
      expect(await first.stop()).toBe(0);
    }
    // Once the first is gone, the directory can be taken again.
    expect(readdirSync(stateDir)).not.toContain("up.lock");
  }, 60_000);

  it("takes over a lock whose process is gone", async () => {
    const stateDir = join(root, "state-stale");
    mkdirSync(stateDir, { recursive: true });
    // A pid that cannot be running: beyond pid_max.
    writeFileSync(join(stateDir, "up.lock"), "4194305\n");
    const up = await startCli(upArgs(stateDir));
    expect(await up.stop()).toBe(0);
  }, 60_000);

  it.each<[string, string, string]>([
    ["an empty key file", "secrets/keys.json", ""],
    ["a key file without its access keys", "secrets/keys.json", '{"apiKeys": []}'],
    ["an empty state file", "store.json", ""],
    [
      "a truncated state file",
      "store.json",
      '{"version": 1, "resourceVersion": 4, "objects": [{"ki',
    ],
    ["a state file of another shape", "store.json", "{}"],
  ])(
    "refuses to start on %s, naming it and what to do",
    (_, file, text) => {
      const stateDir = mkdtempSync(join(root, "state-damaged-"));
      mkdirSync(join(stateDir, "secrets"), { recursive: true });
      writeFileSync(join(stateDir, file), text);
      const up = runCli(upArgs(stateDir));
      expect(up.exitCode).toBe(2);
      expect(up.stderr).toContain(`${join(stateDir, file)} is damaged (`);
      expect(up.stderr).toContain("modelship up did not start, and changed nothing");
      expect(up.stderr).toContain(`mv ${join(stateDir, file)} ${join(stateDir, file)}.damaged`);
      expect(readdirSync(stateDir)).not.toContain("up.lock");
      // A start of `up` takes about 4 s on two busy cores: the 5 s default made this flaky.
    },
    60_000,
  );
});

describe("lockStateDir", () => {
  it("lets one holder in at a time, and the next in once the first lets go", () => {
    const stateDir = mkdtempSync(join(root, "lock-"));
    const release = lockStateDir(stateDir);
    expect(() => lockStateDir(stateDir)).toThrow(
      `already running for ${stateDir} (pid ${process.pid})`,
    );
    release();
    lockStateDir(stateDir)();
  });

  it("takes over a lock left empty by a process that died before writing its pid", () => {
    const stateDir = mkdtempSync(join(root, "lock-empty-"));
    writeFileSync(join(stateDir, "up.lock"), "");
    lockStateDir(stateDir)();
  });
});

describe("writeFileAtomic", () => {
  it("writes the whole file with its mode and leaves no temporary file", () => {
    const dir = mkdtempSync(join(root, "atomic-"));
    const file = join(dir, "sub", "data.json");
    writeFileAtomic(file, '{"a":1}');
    writeFileAtomic(file, '{"a":2}', 0o600);
    expect(readdirSync(join(dir, "sub"))).toStrictEqual(["data.json"]);
    expect(mode(file)).toBe(0o600);
  });
});

describe("what a state file must hold", () => {
  const store = { version: 1, resourceVersion: 3, lastDeploymentId: 1, objects: [] };
  it.each<[string, unknown, string | undefined]>([
    ["a good one", store, undefined],
    [
      "with objects and events",
      { ...store, objects: [{ kind: "Model", metadata: { name: "a" } }], events: [] },
      undefined,
    ],
    ["not an object", [], "not an object"],
    ["another version", { ...store, version: 2 }, "version 2, not 1"],
    ["no counter", { ...store, resourceVersion: "3" }, 'no whole number "resourceVersion"'],
    ["no objects", { ...store, objects: undefined }, 'no "objects" list'],
    [
      "an object without a name",
      { ...store, objects: [{ kind: "Model", metadata: {} }] },
      "object 0 has no kind or name",
    ],
    ["events that are not a list", { ...store, events: {} }, '"events" is not a list'],
  ])("the store: %s → %s", (_, value, expected) => {
    expect(storeFileProblem(value)).toBe(expected);
  });

  it.each<[string, unknown, string | undefined]>([
    ["a good one", { accessKeys: { "default/a": "k" }, apiKeys: [{ sha256: "h" }] }, undefined],
    ["no access keys", { apiKeys: [] }, 'no "accessKeys" object'],
    [
      "an empty access key",
      { accessKeys: { "default/a": "" }, apiKeys: [] },
      "an access key is not a string",
    ],
    ["no API keys", { accessKeys: {} }, 'no "apiKeys" list'],
    [
      "an API key without its hash",
      { accessKeys: {}, apiKeys: [{ id: "x" }] },
      "an API key record has no sha256",
    ],
  ])("the keys: %s → %s", (_, value, expected) => {
    expect(keyFileProblem(value)).toBe(expected);
  });
});
