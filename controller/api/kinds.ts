// The kinds and their names, as plain constants: what the schemas below describe, and what the
// dashboard's front end (which cannot load the schemas' files) names them by too.

export const API_GROUP = "modelship.dev";
export const API_VERSION = "v1alpha1";
export const GROUP_VERSION = `${API_GROUP}/${API_VERSION}`;

export const KINDS = ["ModelRepository", "Model", "ModelBuild", "ModelDeployment"] as const;
export type Kind = (typeof KINDS)[number];

/** The names a URL or a command line may give a kind: plural, singular and kubectl's short names. */
export const KIND_NAMES: Record<string, Kind> = {
  modelrepositories: "ModelRepository",
  modelrepository: "ModelRepository",
  mrepo: "ModelRepository",
  models: "Model",
  model: "Model",
  mdl: "Model",
  modelbuilds: "ModelBuild",
  modelbuild: "ModelBuild",
  mb: "ModelBuild",
  modeldeployments: "ModelDeployment",
  modeldeployment: "ModelDeployment",
  md: "ModelDeployment",
};

/** The default upper bound of ModelDeployment spec.replicas; an installation may raise it. */
export const DEFAULT_MAX_REPLICAS = 9;
