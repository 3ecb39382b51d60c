// Runs the real `modelship` entry point in a child process, the way a user's shell would.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ENTRY_POINT = fileURLToPath(new URL("../../bin/modelship.js", import.meta.url));

export interface CliRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** What a child prints on stdout and stderr, kept as it comes (its streams must be pipes). */
function printed(child: ChildProcess): { stdout: () => string; stderr: () => string } {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  return { stdout: () => stdout, stderr: () => stderr };
}

/**
 * Runs a program to its end without blocking this process (a server it talks to may run in
 * it): its exit code and everything it printed.
 */
export function runProcess(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? PROJECT_ROOT,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output = printed(child);
    child.once("error", reject);
    child.once("close", (code) =>
      resolve({ exitCode: code ?? -1, stdout: output.stdout(), stderr: output.stderr() }),
    );
  });
}

/** `modelship ARGS` to its end, without blocking this process (runCli does). */
export function runCliAsync(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliRun> {
  return runProcess(process.execPath, [ENTRY_POINT, ...args], {
    ...options,
    env: { ...process.env, ...options.env },
  });
}

export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): CliRun {
  const result = spawnSync(process.execPath, [ENTRY_POINT, ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: { ...process.env, ...options.env },
    encoding: "utf8",
    timeout: 60_000,
  });
  if (result.error) throw result.error;
  return { exitCode: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

export interface CliProcess {
  child: ChildProcess;
  /** The URL the command printed in its "listening on" line. */
  url: string;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then waits for the exit; returns the exit code. */
  stop(): Promise<number | null>;
}

/** Long-running commands still alive: killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  // A test that failed or timed out before its cleanup must not leave servers behind.
  for (const child of running) child.kill("SIGKILL");
});

/** Starts a long-running `modelship` command and waits for its "listening on URL" line. */
export async function startCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliProcess> {
  const child = spawn(process.execPath, [ENTRY_POINT, ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const { stdout, stderr } = printed(child);
  running.add(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  exited.then(() => running.delete(child));
  const url = await new Promise<string>((resolve, reject) => {
    const check = () => {
      const match = /listening on (http:\/\/\S+|unix:\S+)/.exec(stdout());
      if (match) {
        child.stdout.off("data", check);
        resolve(match[1] as string);
      }
    };
    child.stdout.on("data", check);
    exited.then((code) =>
      reject(new Error(`modelship ${args[0]} exited with ${code}: ${stderr()}`)),
    );
  });
  return {
    child,
    url,
    stdout,
    stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}
