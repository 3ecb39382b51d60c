/** What an open model (no authentication) needs beyond its name. */
export interface OpenModel {
  name: string;
  file: string;
  function: string;
  /** The model's directory in the repository; the root when left out. */
  sourcePath?: string;
  buildScript?: string;
  /** The deployment's replicas; the schema's default when left out. */
  replicas?: number;
}

/**
 * A Model without authentication and its ModelDeployment of the same name, as one YAML file:
 * the pair most `modelship up` tests commit.
 */
export function openModelManifest(model: OpenModel): string {
  const specLines = [
    "  runtime: python3",
    `  file: ${model.file}`,
    `  function: ${model.function}`,
    ...(model.sourcePath ? ["  source:", `    path: ${model.sourcePath}`] : []),
    ...(model.buildScript ? [`  buildScript: ${model.buildScript}`] : []),
    "  authentication:",
    "    enabled: false",
  ];
  const deploymentLines = [
    `  model: ${model.name}`,
    ...(model.replicas === undefined ? [] : [`  replicas: ${model.replicas}`]),
  ];
  return [
    "apiVersion: modelship.dev/v1alpha1",
    "kind: Model",
    "metadata:",
    `  name: ${model.name}`,
    "spec:",
    ...specLines,
    "---",
    "apiVersion: modelship.dev/v1alpha1",
    "kind: ModelDeployment",
    "metadata:",
    `  name: ${model.name}`,
    "spec:",
    ...deploymentLines,
    "",
  ].join("\n");
}

/** A ModelRepository following `url`'s main branch, as JSON for `kubectl apply -f -`. */
export function modelRepositoryJson(repository: {
  name: string;
  namespace: string;
  url: string;
  interval: string;
}): string {
  return JSON.stringify({
    apiVersion: "modelship.dev/v1alpha1",
    kind: "ModelRepository",
    metadata: { name: repository.name, namespace: repository.namespace },
    spec: { url: repository.url, branch: "main", interval: repository.interval },
  });
}
