// The Python and R workers, started as real processes and spoken to over their fd 3/4 pipes.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Runtime, WorkerProcess } from "../controller/replica/worker-process.ts";
import { PROJECT_ROOT } from "./helpers/cli.ts";

const MODELS = join(PROJECT_ROOT, "test/fixtures/models");
const FILES: Record<Runtime, string> = { python3: "behaviours.py", r: "behaviours.R" };
const RUNTIMES: Runtime[] = ["python3", "r"];

const workers: WorkerProcess[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.stop()));
});

function start(runtime: Runtime, functionName: string, file = FILES[runtime]) {
  const output: string[] = [];
  const worker = new WorkerProcess({
    runtime,
    file,
    functionName,
    cwd: MODELS,
    onOutput: (stream, line) => output.push(`${stream}: ${line}`),
  });
  workers.push(worker);
  return { worker, output };
}

describe.each(RUNTIMES)("the %s worker", (runtime) => {
  it("loads the function, then answers each request in turn", async () => {
    const { worker } = start(runtime, "add");
    expect(await worker.started).toEqual({ type: "ready", protocol: 1, runtime });
    expect(await worker.call({ a: 3, b: 5 })).toEqual({ id: 1, ok: true, response: 8 });
    expect(await worker.call({ a: 0.25, b: -1 })).toEqual({ id: 2, ok: true, response: -0.75 });
  });

  it("answers an exception with its type and message, and keeps serving", async () => {
    const { worker } = start(runtime, "fails");
    await worker.started;
    const answer = await worker.call({ a: 1 });
    expect(answer).toMatchObject({
      id: 1,
      ok: false,
      error: { type: runtime === "python3" ? "ValueError" : "simpleError" },
    });
    expect(answer?.ok === false && answer.error.message).toContain("bad input");
    expect(await worker.call({ a: 2 })).toMatchObject({ id: 2, ok: false });
  });

  it("names the missing function and lists the ones it found", async () => {
    const { worker } = start(runtime, "predcit");
    const started = await worker.started;
    expect(started.type).toBe("load_error");
    const message = started.type === "load_error" ? started.error.message : "";
    expect(message).toContain("predcit");
    expect(message).toContain(
      runtime === "python3"
        ? "functions found: add, allocates, exits, fails, in_flight, prints, returns_numpy, returns_object, sleeps"
        : "functions found: add, exits, fails, prints",
    );
    await once(worker);
    expect(worker.child.exitCode).toBe(3);
  });

  it("leaves the user's prints on stdout and stderr, apart from the answers", async () => {
    const { worker, output } = start(runtime, "prints");
    await worker.started;
    expect(await worker.call({})).toEqual({ id: 1, ok: true, response: "printed" });
    await worker.stop();
    expect(output).toEqual(["stdout: to stdout", "stderr: to stderr"]);
  });

  it("reports a worker that exits mid-request: no answer, and the exit code", async () => {
    const { worker } = start(runtime, "exits");
    await worker.started;
    expect(await worker.call({})).toBeUndefined();
    expect(worker.child.exitCode).toBe(7);
    expect(await worker.call({})).toBeUndefined();
  });
});

describe("the python3 worker's JSON", () => {
  it("encodes numpy values and refuses what JSON cannot carry", async () => {
    const numpy = start("python3", "returns_numpy").worker;
    await numpy.started;
    expect(await numpy.call({})).toEqual({
      id: 1,
      ok: true,
      response: { vector: [0, 1, 2], scalar: 0.5, count: 2 },
    });
    const object = start("python3", "returns_object").worker;
    await object.started;
    expect(await object.call({})).toMatchObject({
      ok: false,
      error: { type: "TypeError", message: "Object of type object is not JSON serializable" },
    });
  });

  it("counts the requests it holds, so a second one sent too early is seen", async () => {
    const { worker } = start("python3", "in_flight");
    await worker.started;
    const alone = await worker.call({ seconds: 0 });
    expect(alone).toMatchObject({ ok: true, response: { inFlight: 1 } });
    // The agent never does this; the test models use the count to prove it.
    const [first, second] = await Promise.all([
      worker.call({ seconds: 0.2 }),
      worker.call({ seconds: 0 }),
    ]);
    expect(first).toMatchObject({ ok: true, response: { inFlight: 2 } });
    expect(second).toMatchObject({ ok: true, response: { inFlight: 1 } });
  });

  it("reports a syntax error in the user's file as a load error", async () => {
    const { worker } = start("python3", "broken", "syntax_error.py");
    const started = await worker.started;
    expect(started).toMatchObject({ type: "load_error", error: { type: "SyntaxError" } });
  });
});

describe("a worker that breaks the protocol", () => {
  it("is killed when it writes something else on its answer pipe, and says why", async () => {
    const { worker } = start("python3", "writes_on_the_answer_pipe", "breaks_protocol.py");
    await worker.started;
    expect(await worker.call({})).toBeUndefined();
    const end = await new Promise((resolve) => worker.onEnd(resolve));
    expect(end).toMatchObject({
      type: "exited",
      signal: "SIGKILL",
      error: expect.stringContaining("it wrote a line on fd 4 that is not a protocol message"),
    });
  });
});

async function once(worker: WorkerProcess): Promise<void> {
  if (!worker.exited) await new Promise((resolve) => worker.child.once("exit", resolve));
}
