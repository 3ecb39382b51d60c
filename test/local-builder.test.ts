// The local platform's Builder: runtime/scripts/local-build.sh run for real by LocalBuilder, with
// real virtualenvs, R libraries and build scripts in temp dirs. The tests that are not about the
// runtime use "r", which needs no virtualenv and builds in a blink.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LocalBuilder, type LocalBuildRequest } from "../controller/platform/local/builder.ts";

let root: string;
let builder: LocalBuilder;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "modelship-local-build-"));
  builder = new LocalBuilder();
});

afterEach(async () => {
  await builder.stop();
  // Builds are read-only: give the owner back the right to delete them.
  execFileSync("chmod", ["-R", "u+w", root]);
  rmSync(root, { recursive: true, force: true });
});

/** Writes a model's source directory; a file whose name ends in ".sh" is executable. */
function source(files: Record<string, string>, name = "source"): string {
  const dir = join(root, name);
  for (const [file, text] of Object.entries(files)) {
    const path = join(dir, file);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    if (file.endsWith(".sh")) chmodSync(path, 0o755);
  }
  return dir;
}

function request(overrides: Partial<LocalBuildRequest> & { sourceDir: string }): LocalBuildRequest {
  return { name: "default/model-1", runtime: "r", outputDir: join(root, "out"), ...overrides };
}

async function build(overrides: Partial<LocalBuildRequest> & { sourceDir: string }) {
  const req = request(overrides);
  builder.start(req);
  return { status: await builder.wait(req.name), out: req.outputDir, logs: builder.logs(req.name) };
}

function writeBits(path: string): number {
  return statSync(path).mode & 0o222;
}

function buildJson(out: string): unknown {
  return JSON.parse(readFileSync(join(out, "build.json"), "utf8"));
}

const ADD = "def add(args):\n    return args['a'] + args['b']\n";

describe("LocalBuilder", { timeout: 120_000 }, () => {
  it("builds a Python model without a build script: its code, a virtualenv, read-only", async () => {
    const { status, out } = await build({
      runtime: "python3",
      sourceDir: source({ "add.py": ADD, "lib/util.py": "X = 1\n" }),
    });
    expect(status).toMatchObject({ phase: "Succeeded", image: `local:${out}` });
    expect(status.completedAt).toBeDefined();
    expect(status.message).toBeUndefined();
    expect(readFileSync(join(out, "src/add.py"), "utf8")).toBe(ADD);
    expect(readFileSync(join(out, "src/lib/util.py"), "utf8")).toBe("X = 1\n");

    const python = join(out, "venv/bin/python");
    expect(existsSync(python)).toBe(true);
    // --system-site-packages: the system's numpy is importable without a download.
    execFileSync(python, ["-c", "import numpy"]);
    expect(
      execFileSync(python, ["-c", "import sys; print(sys.prefix)"], { encoding: "utf8" }),
    ).toBe(`${join(out, "venv")}\n`);

    expect(buildJson(out)).toEqual({
      runtime: "python3",
      python,
      rLibs: null,
      buildScript: null,
    });
    // Tests run as root, which writes anyway: look at the mode bits.
    for (const path of [out, join(out, "build.json"), join(out, "src"), join(out, "src/add.py")]) {
      expect(writeBits(path), path).toBe(0);
    }
    expect(writeBits(join(out, "src/lib/util.py"))).toBe(0);
    expect(writeBits(join(out, "venv/bin"))).toBe(0);
    expect(await LocalBuilder.completedImage(out)).toBe(`local:${out}`);
  });

  it("runs build.sh in src with the virtualenv first on PATH, and keeps what it writes", async () => {
    const { status, out, logs } = await build({
      runtime: "python3",
      sourceDir: source({
        "add.py": ADD,
        "build.sh": [
          "echo training",
          "echo 'the model' > model.txt",
          'echo "$VIRTUAL_ENV" > virtual-env.txt',
          "python3 -c 'import sys; print(sys.prefix)' > prefix.txt",
          "pip3 --version > pip.txt",
        ].join("\n"),
      }),
    });
    expect(status.phase, status.message).toBe("Succeeded");
    const venv = join(out, "venv");
    expect(readFileSync(join(out, "src/model.txt"), "utf8")).toBe("the model\n");
    expect(readFileSync(join(out, "src/virtual-env.txt"), "utf8")).toBe(`${venv}\n`);
    expect(readFileSync(join(out, "src/prefix.txt"), "utf8")).toBe(`${venv}\n`);
    expect(readFileSync(join(out, "src/pip.txt"), "utf8")).toContain(venv);
    expect(writeBits(join(out, "src/model.txt"))).toBe(0);
    expect(logs).toContain("out | training\n");
    expect(logs).toContain("out | ==> running build script build.sh\n");
    expect(buildJson(out)).toMatchObject({ buildScript: "build.sh" });
    // The source itself is left alone.
    expect(existsSync(join(root, "source/model.txt"))).toBe(false);
  });

  it("fails when the build script fails, quoting its exit code and its last 20 lines", async () => {
    const lines = Array.from({ length: 25 }, (_, i) => `line ${i + 1}`);
    const { status, out, logs } = await build({
      sourceDir: source({
        "build.sh": `for i in $(seq 1 25); do echo "line $i"; done\necho oops >&2\nexit 3\n`,
      }),
    });
    expect(status.phase).toBe("Failed");
    expect(status.image).toBeUndefined();
    const [head, ...tail] = (status.message ?? "").split("\n");
    expect(head).toBe("build script build.sh exited with code 3:");
    expect(tail).toHaveLength(20);
    expect(tail).toContain("line 25");
    expect(tail).toContain("oops");
    expect(tail).not.toContain("line 1");
    for (const line of lines) expect(logs).toContain(`out | ${line}\n`);
    expect(logs).toContain("err | oops\n");
    expect(logs).toContain("err | ==> error: build script build.sh exited with code 3\n");
    // Left for inspection, never taken for a finished build.
    expect(existsSync(join(out, "src/build.sh"))).toBe(true);
    expect(existsSync(join(out, "build.json"))).toBe(false);
    expect(await LocalBuilder.completedImage(out)).toBeUndefined();
  });

  it("fails naming an explicitly named build script that is missing", async () => {
    const { status, out } = await build({
      sourceDir: source({ "build.sh": "echo should not run\n" }),
      buildScript: "train.sh",
    });
    expect(status.phase).toBe("Failed");
    expect(status.message).toMatch(/^build script train\.sh not found in the model's source/);
    expect(existsSync(out)).toBe(false);
  });

  it("runs an explicitly named build script", async () => {
    const { status, out } = await build({
      sourceDir: source({
        "build.sh": "touch build-ran\n",
        "scripts/train.sh": "echo trained > trained.txt\n",
      }),
      buildScript: "scripts/train.sh",
    });
    expect(status.phase, status.message).toBe("Succeeded");
    // Run from src, not from the script's own directory.
    expect(readFileSync(join(out, "src/trained.txt"), "utf8")).toBe("trained\n");
    expect(existsSync(join(out, "src/build-ran"))).toBe(false);
    expect(buildJson(out)).toMatchObject({ buildScript: "scripts/train.sh" });
  });

  it("runs cdsw-build.sh when there is no build.sh", async () => {
    const { status, out } = await build({
      sourceDir: source({ "cdsw-build.sh": "echo cdsw > cdsw.txt\n" }),
    });
    expect(status.phase, status.message).toBe("Succeeded");
    expect(readFileSync(join(out, "src/cdsw.txt"), "utf8")).toBe("cdsw\n");
    expect(buildJson(out)).toMatchObject({ buildScript: "cdsw-build.sh" });
  });

  it("prefers build.sh to cdsw-build.sh", async () => {
    const { status, out } = await build({
      sourceDir: source({ "build.sh": "touch build\n", "cdsw-build.sh": "touch cdsw\n" }),
    });
    expect(status.phase, status.message).toBe("Succeeded");
    expect(existsSync(join(out, "src/build"))).toBe(true);
    expect(existsSync(join(out, "src/cdsw"))).toBe(false);
  });

  it.each<[string, string, string]>([
    ["env and a program", "#!/usr/bin/env python3\n", "python"],
    ["env -S with a setting and an option", "#!/usr/bin/env -S LC_ALL=C python3 -u\n", "python"],
    ["a path and an option, saved with Windows line ends", "#!/bin/sh -e\r\n", "sh"],
    ["no #! line: bash", "", "bash"],
  ])(
    "runs the build script with the interpreter its #! line names: %s",
    async (_, line, expected) => {
      const body =
        expected === "python"
          ? 'open("ran-under", "w").write("python")\n'
          : 'if [ -n "$BASH_VERSION" ]; then echo bash > ran-under; else echo sh > ran-under; fi\n';
      const { status, out } = await build({
        runtime: "python3",
        sourceDir: source({ "build.sh": `${line}${body}` }, `shebang-${expected}-${line.length}`),
        outputDir: join(root, `out-shebang-${expected}-${line.length}`),
      });
      expect(status.phase, status.message).toBe("Succeeded");
      expect(readFileSync(join(out, "src/ran-under"), "utf8").trim()).toBe(expected);
    },
  );

  it.each<[string, string, RegExp]>([
    [
      "a program env cannot find",
      "#!/usr/bin/env no-such-interpreter\n",
      /interpreter no-such-interpreter \(from its line #!\/usr\/bin\/env no-such-interpreter\) is not on PATH/,
    ],
    [
      "a path that does not exist",
      "#!/opt/none/python -u\n",
      /interpreter \/opt\/none\/python \(from its line #!\/opt\/none\/python -u\) does not exist/,
    ],
  ])(
    "fails at once, naming the build script's missing interpreter: %s",
    async (_, line, expected) => {
      const { status } = await build({
        runtime: "python3",
        sourceDir: source({ "build.sh": `${line}echo never\n` }, `missing-${line.length}`),
        outputDir: join(root, `out-missing-${line.length}`),
      });
      expect(status.phase).toBe("Failed");
      expect(status.message).toMatch(expected);
    },
  );

  it("gives an R build its own library in R_LIBS_USER", async () => {
    const { status, out } = await build({
      runtime: "r",
      sourceDir: source({
        "add.R": "add <- function(args) args$a + args$b\n",
        "build.sh": [
          'echo "$R_LIBS_USER" > libs.txt',
          "Rscript --vanilla -e 'cat(.libPaths()[1])' > libpaths.txt",
        ].join("\n"),
      }),
    });
    expect(status.phase, status.message).toBe("Succeeded");
    const rlib = join(out, "rlib");
    expect(statSync(rlib).isDirectory()).toBe(true);
    expect(writeBits(rlib)).toBe(0);
    expect(readFileSync(join(out, "src/libs.txt"), "utf8")).toBe(`${rlib}\n`);
    expect(readFileSync(join(out, "src/libpaths.txt"), "utf8")).toBe(realpathSync(rlib));
    expect(existsSync(join(out, "venv"))).toBe(false);
    expect(buildJson(out)).toEqual({
      runtime: "r",
      python: null,
      rLibs: rlib,
      buildScript: "build.sh",
    });
  });

  it("runs a build once however often it is started, until it is forgotten", async () => {
    const counter = join(root, "runs.txt");
    const sourceDir = source({ "build.sh": 'echo "$BUILD_LABEL" >> "$COUNTER"\n' });
    const first = request({ sourceDir, env: { COUNTER: counter, BUILD_LABEL: "first" } });
    builder.start(first);
    builder.start({ ...first, outputDir: join(root, "other"), env: { COUNTER: counter } });
    const status = await builder.wait(first.name);
    expect(status.phase, status.message).toBe("Succeeded");
    builder.start(first);
    expect(builder.status(first.name)).toEqual(status);
    await builder.wait(first.name);
    expect(readFileSync(counter, "utf8")).toBe("first\n");
    expect(existsSync(join(root, "other"))).toBe(false);

    await builder.cancel(first.name);
    expect(builder.status(first.name)).toBeUndefined();
    const again = {
      ...first,
      outputDir: join(root, "again"),
      env: { ...first.env, BUILD_LABEL: "again" },
    };
    builder.start(again);
    expect((await builder.wait(first.name)).image).toBe(`local:${again.outputDir}`);
    expect(readFileSync(counter, "utf8")).toBe("first\nagain\n");
  });

  it("does not wait for what the build script leaves running in the background", async () => {
    const { status, out } = await build({
      sourceDir: source({ "build.sh": "sleep 600 &\necho $! > sleep.pid\n" }),
    });
    expect(status.phase, status.message).toBe("Succeeded");
    // Killed with the build's process group once the script exited.
    expect(alive(Number(readFileSync(join(out, "src/sleep.pid"), "utf8")))).toBe(false);
  });

  it("stop() kills a running build and everything it started", async () => {
    const sourceDir = source({
      "build.sh": 'sleep 600 &\necho "sleeping $!"\nwait\n',
    });
    const req = request({ sourceDir });
    builder.start(req);
    let sleeper: number | undefined;
    while (sleeper === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const match = /out \| sleeping (\d+)/.exec(builder.logs(req.name));
      if (match) sleeper = Number(match[1]);
    }
    expect(alive(sleeper)).toBe(true);
    await builder.stop();
    const status = builder.status(req.name);
    expect(status?.phase).toBe("Failed");
    expect(status?.message).toMatch(/^the build was stopped/);
    expect(status?.image).toBeUndefined();
    expect(alive(sleeper)).toBe(false);

    builder.start({ ...req, name: "default/model-2", outputDir: join(root, "late") });
    expect(await builder.wait("default/model-2")).toMatchObject({
      phase: "Failed",
      message: "the builder is stopped",
    });
  });

  it("reports a build script that cannot be run, and knows nothing of unknown builds", async () => {
    builder = new LocalBuilder({ script: join(root, "no-such-script.sh") });
    const { status } = await build({ sourceDir: source({ "add.py": ADD }) });
    expect(status.phase).toBe("Failed");
    expect(status.message).toContain("could not run");
    expect(status.message).toContain("no-such-script.sh");
    expect(builder.status("default/unknown")).toBeUndefined();
    expect(builder.logs("default/unknown")).toBe("");
    await expect(builder.wait("default/unknown")).rejects.toThrow("default/unknown");
  });

  it("refuses an output directory that exists", async () => {
    mkdirSync(join(root, "out"));
    const { status } = await build({ sourceDir: source({ "add.py": ADD }) });
    expect(status.phase).toBe("Failed");
    expect(status.message).toMatch(/^output directory .*\/out already exists/);
    expect(await LocalBuilder.completedImage(join(root, "out"))).toBeUndefined();
  });
});

describe("builds that share an environment (--env-cache)", () => {
  const buildScript = "#!/usr/bin/env bash\necho built >> built.txt\n";

  async function cached(name: string, files: Record<string, string>, runtime: "python3" | "r") {
    return build({
      name: `default/${name}`,
      runtime,
      sourceDir: source(files, `source-${name}`),
      outputDir: join(root, name),
      envCacheDir: join(root, "envs"),
    });
  }

  const environmentOf = (out: string, runtime: "python3" | "r") =>
    realpathSync(join(out, runtime === "python3" ? "venv" : "rlib"));

  it.each([
    { runtime: "python3" as const, requirements: "requirements.txt" },
    { runtime: "r" as const, requirements: "install.R" },
  ])(
    "$runtime: a code-only change links the first build's environment; new requirements make another",
    async ({ runtime, requirements }) => {
      const files = { "add.py": ADD, "build.sh": buildScript, [requirements]: "one\n" };
      const first = await cached("first", files, runtime);
      expect(first.status.phase).toBe("Succeeded");
      const second = await cached("second", { ...files, "add.py": `${ADD}\n# changed\n` }, runtime);
      expect(second.status.phase).toBe("Succeeded");
      expect(second.logs).toMatch(/using the environment of earlier builds/);
      expect(second.logs).not.toMatch(/creating the/);
      expect(environmentOf(second.out, runtime)).toBe(environmentOf(first.out, runtime));
      // The build script still ran, in the second build's own source.
      expect(readFileSync(join(second.out, "src/built.txt"), "utf8")).toBe("built\n");
      // Made read-only by the build that made it.
      expect(writeBits(environmentOf(first.out, runtime))).toBe(0);

      const other = await cached("other", { ...files, [requirements]: "two\n" }, runtime);
      expect(other.status.phase).toBe("Succeeded");
      expect(environmentOf(other.out, runtime)).not.toBe(environmentOf(first.out, runtime));
      const script = await cached(
        "script",
        { ...files, "build.sh": `${buildScript}true\n` },
        runtime,
      );
      expect(environmentOf(script.out, runtime)).not.toBe(environmentOf(first.out, runtime));
    },
    60_000,
  );

  it.each<{ includes: string; files: Record<string, string> }>([
    { includes: "-r", files: { "requirements.txt": "-r deps/base.txt\n" } },
    { includes: "--requirement=", files: { "requirements.txt": "--requirement=deps/base.txt\n" } },
    {
      includes: "-c in a file -r includes, relative to it",
      files: {
        "requirements.txt": "numpy\n-rdeps/more.txt\n",
        "deps/more.txt": "-c base.txt  # pins\n",
      },
    },
    {
      includes: "--constraint from constraints.txt",
      files: { "constraints.txt": "--constraint deps/base.txt\n" },
    },
    {
      includes: "-r of itself by another name, then the file",
      files: { "requirements.txt": "-r ./requirements.txt\n-r deps/../deps/base.txt\n" },
    },
  ])(
    "a change to a file a requirements file includes ($includes) makes another environment",
    async ({ files }) => {
      const all = { "add.py": ADD, "build.sh": buildScript, "deps/base.txt": "one==1\n", ...files };
      const first = await cached("first", all, "r");
      expect(first.status.phase).toBe("Succeeded");
      const same = await cached("same", { ...all, "add.py": `${ADD}\n# changed\n` }, "r");
      expect(environmentOf(same.out, "r")).toBe(environmentOf(first.out, "r"));
      const changed = await cached("changed", { ...all, "deps/base.txt": "one==2\n" }, "r");
      expect(changed.status.phase).toBe("Succeeded");
      expect(environmentOf(changed.out, "r")).not.toBe(environmentOf(first.out, "r"));
    },
  );

  it("gives a build whose script writes into the shared (read-only) environment one of its own", async () => {
    // As another user than root, for whom read-only means something.
    const nobody = { uid: 65534, gid: 65534 };
    execFileSync("chmod", ["0777", root]);
    const files = {
      "add.py": ADD,
      "build.sh": '#!/usr/bin/env bash\nset -e\ntouch "$R_LIBS_USER/installed-$$"\n',
    };
    const first = await build({
      name: "default/first",
      sourceDir: source(files, "source-first"),
      outputDir: join(root, "first"),
      envCacheDir: join(root, "envs"),
      user: nobody,
    });
    expect(first.status.phase).toBe("Succeeded");
    const second = await build({
      name: "default/second",
      sourceDir: source(files, "source-second"),
      outputDir: join(root, "second"),
      envCacheDir: join(root, "envs"),
      user: nobody,
    });
    expect(second.status.phase).toBe("Succeeded");
    expect(second.logs).toMatch(/running it again in an environment of its own/);
    // Its own library, not a link to the first build's.
    expect(realpathSync(join(second.out, "rlib"))).toBe(join(realpathSync(second.out), "rlib"));
  });

  it("makes again an environment a killed build left half made", async () => {
    const files = { "add.py": ADD, "build.sh": buildScript };
    const first = await cached("first", files, "r");
    const entry = dirname(environmentOf(first.out, "r"));
    // As a build killed before it published: the entry without its mark, and no lock held.
    execFileSync("chmod", ["-R", "u+w", entry]);
    rmSync(join(entry, "complete"));
    const second = await cached("second", files, "r");
    expect(second.status.phase).toBe("Succeeded");
    expect(second.logs).toMatch(/removing the environment a killed build left half made/);
    expect(environmentOf(second.out, "r")).toBe(join(entry, "rlib"));
    const third = await cached("third", files, "r");
    expect(third.logs).toMatch(/using the environment of earlier builds/);
  });

  it("leaves nothing in the cache when the build that makes an environment fails", async () => {
    const files = { "add.py": ADD, "build.sh": "#!/usr/bin/env bash\nexit 3\n" };
    const failed = await cached("failed", files, "r");
    expect(failed.status.phase).toBe("Failed");
    // Only the lock file, which is how a later build knows nobody is making it.
    const entries = execFileSync("ls", ["-A", join(root, "envs")], { encoding: "utf8" });
    expect(entries.trim().split("\n")).toEqual([expect.stringMatching(/^[0-9a-f]{32}\.lock$/)]);
  });

  it("runs a Python build's own interpreter from the shared venv", async () => {
    const files = {
      "add.py": ADD,
      "build.sh": '#!/usr/bin/env bash\npython -c "import sys; print(sys.prefix)" > prefix.txt\n',
    };
    await cached("first", files, "python3");
    const second = await cached("second", files, "python3");
    const prefix = readFileSync(join(second.out, "src/prefix.txt"), "utf8").trim();
    expect(realpathSync(prefix)).toBe(environmentOf(second.out, "python3"));
    const python = JSON.parse(readFileSync(join(second.out, "build.json"), "utf8")).python;
    expect(execFileSync(python, ["-c", "print(6 * 7)"], { encoding: "utf8" }).trim()).toBe("42");
  }, 60_000);
});

/** Whether a process runs (a zombie, dead but not yet reaped, does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}
