// The `modelship` command line: one entry point, one subcommand per job. Each command's module
// is loaded when it runs, so that `modelship get` does not load the Kubernetes client nor `up`
// the controller's.
import { type CommandResult, type Output, processOutput } from "./output.ts";

interface Command {
  summary: string;
  /** Its usage and options, for `modelship <command> --help`. */
  help(): Promise<string>;
  run(args: string[], output: Output): Promise<CommandResult>;
  /**
   * Passes the arguments after its own on to a program (run SCRIPT ARGS...): it answers --help
   * among its own itself, so that a script's --help reaches the script.
   */
  passesArgumentsOn?: true;
}

const COMMANDS: Record<string, Command> = {
  up: {
    summary: "build and serve what a git repository declares, and follow its branch",
    help: async () => (await import("./up.ts")).UP_HELP,
    run: async (args, output) => (await import("./up.ts")).runUp(args, output),
  },
  get: {
    summary: "list modelrepositories, models, modelbuilds or modeldeployments [-o json]",
    help: async () => (await import("./client.ts")).GET_HELP,
    run: async (args, output) => (await import("./client.ts")).runGet(args, output),
  },
  describe: {
    summary: "show one object: conditions, history, replicas and their counters",
    help: async () => (await import("./client.ts")).DESCRIBE_HELP,
    run: async (args, output) => (await import("./client.ts")).runDescribe(args, output),
  },
  logs: {
    summary: "print a model's replica logs [--replica ID] [--follow]",
    help: async () => (await import("./client.ts")).LOGS_HELP,
    run: async (args, output) => (await import("./client.ts")).runLogs(args, output),
  },
  call: {
    summary: "call a model through the gateway: modelship call MODEL 'JSON'",
    help: async () => (await import("./client.ts")).CALL_HELP,
    run: async (args, output) => (await import("./client.ts")).runCall(args, output),
  },
  metrics: {
    summary: "what a model's predictions tracked, ground truth, aggregates [--drift FEATURE]",
    help: async () => (await import("./metrics.ts")).METRICS_HELP,
    run: async (args, output) => (await import("./metrics.ts")).runMetrics(args, output),
  },
  run: {
    summary: "run a training script as an experiment, in its model's build environment",
    help: async () => (await import("./run.ts")).RUN_HELP,
    run: async (args, output) => (await import("./run.ts")).runRun(args, output),
    passesArgumentsOn: true,
  },
  runs: {
    summary: "the experiments run, their metrics side by side; show one; add a file it left",
    help: async () => (await import("./runs.ts")).RUNS_HELP,
    run: async (args, output) => (await import("./runs.ts")).runRuns(args, output),
  },
  dashboard: {
    summary: "a one-time link that signs a browser in to the dashboard of modelship up",
    help: async () => (await import("./dashboard.ts")).DASHBOARD_HELP,
    run: async (args, output) => (await import("./dashboard.ts")).runDashboard(args, output),
  },
  keys: {
    summary: "show or rotate a model's access key",
    help: async () => (await import("./client.ts")).KEYS_HELP,
    run: async (args, output) => (await import("./client.ts")).runKeys(args, output),
  },
  apikeys: {
    summary: "create, list or delete model API keys",
    help: async () => (await import("./client.ts")).APIKEYS_HELP,
    run: async (args, output) => (await import("./client.ts")).runApiKeys(args, output),
  },
  rollout: {
    summary: "restart every replica of a deployment, with no downtime and no commit",
    help: async () => (await import("./operations.ts")).ROLLOUT_HELP,
    run: async (args, output) => (await import("./operations.ts")).runRollout(args, output),
  },
  top: {
    summary: "the admin overview: active models, replicas, requested CPU and memory",
    help: async () => (await import("./operations.ts")).TOP_HELP,
    run: async (args, output) => (await import("./operations.ts")).runTop(args, output),
  },
  validate: {
    summary: "check manifests: schema, names, references, model files and functions",
    help: async () => (await import("./validate.ts")).VALIDATE_HELP,
    run: async (args, output) => (await import("./validate.ts")).runValidate(args, output),
  },
  plan: {
    summary: "what merging a change will do: objects, builds made or brought back, rollouts",
    help: async () => (await import("./plan.ts")).PLAN_HELP,
    run: async (args, output) => (await import("./plan.ts")).runPlan(args, output),
  },
  replica: {
    summary: "run one replica of a model: a worker behind HTTP, one request at a time",
    help: async () => (await import("./replica.ts")).REPLICA_HELP,
    run: async (args, output) => (await import("./replica.ts")).runReplica(args, output),
  },
  controller: {
    summary: "run the reconcilers on a Kubernetes cluster (Kaniko builds, Deployments)",
    help: async () => (await import("./controller.ts")).CONTROLLER_HELP,
    run: async (args, output) => (await import("./controller.ts")).runController(args, output),
  },
  "build-context": {
    summary: "write a build's source and Dockerfile (a build Job's init container runs it)",
    help: async () => (await import("./build-context.ts")).BUILD_CONTEXT_HELP,
    run: async (args, output) => (await import("./build-context.ts")).runBuildContext(args, output),
  },
  gateway: {
    summary: "answer calls to models: queue, keys, one call per replica at a time",
    help: async () => (await import("./gateway.ts")).GATEWAY_HELP,
    run: async (args, output) => (await import("./gateway.ts")).runGateway(args, output),
  },
};

export function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(
    ([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`,
  );
  return `Usage: modelship <command> [options]

Turns a Python or R function in git into a versioned, load-balanced REST API.

Commands:
${lines.join("\n")}

Run \`modelship <command> --help\` for a command's options.
`;
}

/** The version in package.json, read when asked. */
async function version(): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  const file = new URL("../../package.json", import.meta.url);
  return (JSON.parse(await readFile(file, "utf8")) as { version: string }).version;
}

export async function main(args: string[], output: Output = processOutput): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    output.out(helpText());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v" || name === "version") {
    output.out(`modelship ${await version()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    output.err(`modelship: unknown command "${name}"\n\n${helpText()}`);
    return 2;
  }
  // Asked anywhere among a command's arguments, help is answered before they are parsed.
  if (!command.passesArgumentsOn && (rest.includes("--help") || rest.includes("-h"))) {
    output.out(await command.help());
    return 0;
  }
  try {
    return (await command.run(rest, output)).exitCode;
  } catch (error) {
    // Usage and I/O errors: one line, no stack; the message names the flag or path.
    output.err(`modelship ${name}: ${(error as Error).message}\n`);
    return 2;
  }
}
