// `modelship build-context`: what a Kaniko build Job's init container runs — export the model's
// source at the build's commit into OUT/src and write OUT/Dockerfile (docs/kubernetes.md).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { ModelBuild } from "../api/types.generated.ts";
import { dockerfile } from "../platform/kubernetes/build-context.ts";
import { GitSource } from "../source/git.ts";
import type { CommandResult, Output } from "./output.ts";

export const BUILD_CONTEXT_HELP = `Usage: modelship build-context --repo URL --commit C --path P --base-image IMAGE --build-json JSON --out DIR

Writes DIR/src (the files under P at commit C) and DIR/Dockerfile (FROM IMAGE, the build script,
then modelship replica). A token for the repository comes from MODELSHIP_GIT_TOKEN, or
MODELSHIP_GIT_USERNAME and MODELSHIP_GIT_PASSWORD.
`;

export async function runBuildContext(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: "string" },
      branch: { type: "string", default: "main" },
      commit: { type: "string" },
      path: { type: "string", default: "." },
      "base-image": { type: "string" },
      "build-json": { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    output.out(BUILD_CONTEXT_HELP);
    return { exitCode: 0 };
  }
  for (const flag of ["repo", "commit", "base-image", "build-json", "out"] as const) {
    if (!values[flag]) throw new Error(`--${flag} is required (see --help)`);
  }
  const build = JSON.parse(values["build-json"] as string) as ModelBuild;
  const env = process.env;
  const token = env.MODELSHIP_GIT_TOKEN || env.MODELSHIP_GIT_PASSWORD;
  const source = new GitSource({
    url: values.repo as string,
    branch: values.branch,
    cacheDir: mkdtempSync(join(tmpdir(), "modelship-git-")),
    ...(token ? { token } : {}),
    ...(env.MODELSHIP_GIT_USERNAME ? { username: env.MODELSHIP_GIT_USERNAME } : {}),
  });
  // A URL is cloned by fetching the branch; the build's commit must be on it.
  await source.fetch();
  const out = values.out as string;
  const { skipped } = await source.exportTree(
    values.commit as string,
    values.path,
    join(out, "src"),
    build.spec.exclude ?? [],
  );
  for (const file of skipped) output.err(`skipped ${file}: larger than 50 MB\n`);
  writeFileSync(join(out, "Dockerfile"), dockerfile(build, values["base-image"] as string));
  output.out(
    `wrote ${join(out, "Dockerfile")} and src/ at ${(values.commit as string).slice(0, 7)}\n`,
  );
  return { exitCode: 0 };
}
