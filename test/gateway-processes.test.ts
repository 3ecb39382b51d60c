// `modelship replica` and `modelship gateway` as the separate processes they are in production:
// two gateways share three replicas and still never give one two calls at once.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, runCli, startCli } from "./helpers/cli.ts";
import { eventually, getJson, MODELS_DIR, postJson } from "./helpers/replica.ts";

const processes: CliProcess[] = [];
let directory: string;
let configFile: string;
let replicaUrls: string[];

function writeConfig(models: unknown[]): void {
  writeFileSync(configFile, JSON.stringify({ models }));
}

const probeRoute = () => ({
  name: "probe",
  authentication: { enabled: false },
  replicas: replicaUrls.map((url, index) => ({ id: `probe-${index + 1}`, url })),
});

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), "modelship-gateways-"));
  configFile = join(directory, "gateway.yaml");
  const replicas = await Promise.all(
    [1, 2, 3].map((index) =>
      startCli([
        "replica",
        ...["--dir", MODELS_DIR, "--file", "behaviours.py", "--function", "in_flight"],
        ...["--runtime", "python3", "--port", "0", "--replica-id", `probe-${index}`, "--quiet"],
      ]),
    ),
  );
  processes.push(...replicas);
  replicaUrls = replicas.map((replica) => replica.url);
  await eventually(async () => {
    const ready = await Promise.all(replicaUrls.map((url) => fetch(`${url}/readyz`)));
    return ready.every((response) => response.ok);
  });
  writeConfig([probeRoute()]);
  processes.push(
    ...(await Promise.all(
      [1, 2].map(() => startCli(["gateway", "--config", configFile, "--port", "0"])),
    )),
  );
});

afterAll(async () => {
  const codes = await Promise.all(processes.map((running) => running.stop()));
  // SIGTERM is a clean stop for both commands.
  expect(codes).toEqual(processes.map(() => 0));
  rmSync(directory, { recursive: true, force: true });
});

describe("two gateway processes in front of the same three replicas", () => {
  it("never give a replica two calls at once: the agent's 503 sends a gateway elsewhere", async () => {
    const gateways = processes.slice(3);
    const answers = await Promise.all(
      Array.from({ length: 90 }, (_, index) =>
        postJson(`${(gateways[index % 2] as CliProcess).url}/models/probe/predict`, {
          seconds: 0.01,
        }),
      ),
    );
    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    expect(new Set(answers.map((answer) => answer.body.response.inFlight))).toEqual(new Set([1]));
    const stats = await Promise.all(replicaUrls.map((url) => getJson(`${url}/stats`)));
    const refused = stats.reduce((sum, replica) => sum + replica.body.busy, 0);
    // The gateways did collide, and each collision was turned away rather than served twice.
    expect(refused).toBeGreaterThan(0);
    expect(stats.reduce((sum, replica) => sum + replica.body.success, 0)).toBe(90);
  });

  it("reload their configuration when the file changes, and keep the old one when it is broken", async () => {
    const gateway = processes[3] as CliProcess;
    writeConfig([probeRoute(), { ...probeRoute(), name: "probe-two" }]);
    await eventually(
      async () => (await postJson(`${gateway.url}/models/probe-two/predict`, {})).status === 200,
    );

    writeFileSync(configFile, "models:\n  - name: Probe\n    replicas: nope\n");
    await eventually(() => gateway.stderr().includes("kept the previous configuration"));
    expect(gateway.stderr()).toContain(`${configFile}: /models/0/name: must be a DNS-1123 label`);
    expect(gateway.stderr()).toContain(`${configFile}: /models/0/replicas: must be array`);
    expect((await postJson(`${gateway.url}/models/probe-two/predict`, {})).status).toBe(200);
  });
});

describe("modelship gateway", () => {
  it("does not start on a broken configuration, and names the field", () => {
    const broken = join(directory, "broken.yaml");
    writeFileSync(broken, "models:\n  - name: ok\n    accessKeySha256: my-secret-key\n");
    const run = runCli(["gateway", "--config", broken, "--port", "0"]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain(`${broken}: /models/0/accessKeySha256: must be a sha256 in hex`);
    // A key written where its hash belongs is not echoed back.
    expect(run.stderr).not.toContain("my-secret-key");
  });
});
