// What a Kaniko build gets: the model's source at the build's commit, and a Dockerfile on the
// runtime's base image that runs the build script and starts `modelship replica`. The build
// Job's init container makes it with `modelship build-context` (controller/cli/build-context.ts).
import type { ModelBuild } from "../../api/types.generated.ts";

/** Where the code lives in a model's image. */
export const MODEL_DIR = "/model/src";
/** The model's user in the runtime images (kustomize/images/), and in its pods. */
export const MODEL_UID = 10001;
/** The port the replica agent listens on in a pod. */
export const REPLICA_PORT = 8080;

/** A JSON string is a valid Dockerfile exec-form word. */
const word = (text: string) => JSON.stringify(text);

export function dockerfile(build: ModelBuild, baseImage: string): string {
  const { runtime, file, function: functionName, buildScript } = build.spec;
  // An explicit script must exist; the default build.sh (or CDSW's cdsw-build.sh) may not.
  const script = buildScript
    ? `bash ${word(buildScript)}`
    : "if [ -f build.sh ]; then bash build.sh; elif [ -f cdsw-build.sh ]; then bash cdsw-build.sh; fi";
  return [
    `# modelship build ${build.metadata.name}: commit ${build.spec.commit}, key ${build.spec.buildKey}`,
    `FROM ${baseImage}`,
    // The build script runs as the model's user, in a copy of the source it may write to (a
    // model file trained beside the code, the packages it installs into /model's environment).
    `USER ${MODEL_UID}`,
    `COPY --chown=${MODEL_UID}:${MODEL_UID} src ${MODEL_DIR}`,
    `WORKDIR ${MODEL_DIR}`,
    `RUN ${script}`,
    // Then it is root's, read-only to the model: what runs is what was built, and nothing else.
    "USER 0",
    // Readable by all (a file the build wrote 0600 too), writable by none but root.
    "RUN chown -R 0:0 /model && chmod -R a+rX,go-w /model",
    `USER ${MODEL_UID}`,
    `LABEL dev.modelship.build=${word(build.metadata.name)} dev.modelship.commit=${word(build.spec.commit)}`,
    `EXPOSE ${REPLICA_PORT}`,
    `ENTRYPOINT ["modelship", "replica", "--dir", ${word(MODEL_DIR)}, "--file", ${word(file)}, "--function", ${word(functionName)}, "--runtime", ${word(runtime)}, "--port", "${REPLICA_PORT}", "--host", "0.0.0.0"]`,
    "",
  ].join("\n");
}
