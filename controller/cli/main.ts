// The `modelship` command line: one entry point, one subcommand per job.

import { runBuildContext } from "./build-context.ts";
import { runApiKeys, runCall, runDescribe, runGet, runKeys, runLogs } from "./client.ts";
import { runController } from "./controller.ts";
import { runGateway } from "./gateway.ts";
import { type CommandResult, type Output, processOutput } from "./output.ts";
import { runReplica } from "./replica.ts";
import { runUp } from "./up.ts";
import { runValidate } from "./validate.ts";

interface Command {
  summary: string;
  run(args: string[], output: Output): Promise<CommandResult>;
}

const COMMANDS: Record<string, Command> = {
  up: {
    summary: "build and serve what a git repository declares, and follow its branch",
    run: runUp,
  },
  get: {
    summary: "list modelrepositories, models, modelbuilds or modeldeployments [-o json]",
    run: runGet,
  },
  describe: {
    summary: "show one object: conditions, history, replicas and their counters",
    run: runDescribe,
  },
  logs: { summary: "print a model's replica logs [--replica ID] [--follow]", run: runLogs },
  call: { summary: "call a model through the gateway: modelship call MODEL 'JSON'", run: runCall },
  keys: { summary: "show or rotate a model's access key", run: runKeys },
  apikeys: { summary: "create, list or delete model API keys", run: runApiKeys },
  validate: {
    summary: "check manifests: schema, names, references, model files and functions",
    run: runValidate,
  },
  replica: {
    summary: "run one replica of a model: a worker behind HTTP, one request at a time",
    run: runReplica,
  },
  controller: {
    summary: "run the reconcilers on a Kubernetes cluster (Kaniko builds, Deployments)",
    run: runController,
  },
  "build-context": {
    summary: "write a build's source and Dockerfile (a build Job's init container runs it)",
    run: runBuildContext,
  },
  gateway: {
    summary: "answer calls to models: queue, keys, one call per replica at a time",
    run: runGateway,
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

export async function main(args: string[], output: Output = processOutput): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    output.out(helpText());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    output.err(`modelship: unknown command "${name}"\n\n${helpText()}`);
    return 2;
  }
  try {
    return (await command.run(rest, output)).exitCode;
  } catch (error) {
    // Usage and I/O errors: one line, no stack; the message names the flag or path.
    output.err(`modelship ${name}: ${(error as Error).message}\n`);
    return 2;
  }
}
