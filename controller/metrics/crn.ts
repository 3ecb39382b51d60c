// The ids a metric is read and tracked by, in the shape of CDSW's CRNs so that scripts written
// for CDSW keep their argument names (model_crn, model_build_crn, model_deployment_crn):
//   crn:modelship:<model>                                   a Model
//   crn:modelship:<model>/builds/<N>                        one of its builds
//   crn:modelship:<model>/deployments/<deployment>/<id>     one rollout of a ModelDeployment
//   crn:modelship:<model>/deployments/<deployment>          all rollouts of it
// `modelship describe` prints them. The prefix may be left out ("iris/builds/3").
import type { MetricsSubject } from "./port.ts";

const PREFIX = "crn:modelship:";
/** A Kubernetes object name (RFC 1123 subdomain), as Models and ModelDeployments have. */
const NAME = "[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?";
const CRN = new RegExp(
  `^(${NAME})(?:/builds/([1-9][0-9]{0,8})|/deployments/(${NAME})(?:/([1-9][0-9]{0,8}))?)?$`,
);

export function modelCrn(model: string): string {
  return `${PREFIX}${model}`;
}

export function buildCrn(model: string, build: number): string {
  return `${PREFIX}${model}/builds/${build}`;
}

export function deploymentCrn(model: string, deployment: string, deploymentId?: number): string {
  return `${PREFIX}${model}/deployments/${deployment}${deploymentId === undefined ? "" : `/${deploymentId}`}`;
}

/** What a CRN names, or a message saying what a CRN looks like. */
export function parseCrn(text: string): MetricsSubject | string {
  const body = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : text;
  const match = CRN.exec(body);
  if (!match) {
    return `"${text}" is not a modelship CRN: crn:modelship:MODEL, crn:modelship:MODEL/builds/N or crn:modelship:MODEL/deployments/DEPLOYMENT[/ID] (modelship describe shows them)`;
  }
  const [, model, build, deployment, deploymentId] = match;
  return {
    model: model as string,
    ...(build === undefined ? {} : { build: Number(build) }),
    ...(deployment === undefined ? {} : { deployment }),
    ...(deploymentId === undefined ? {} : { deploymentId: Number(deploymentId) }),
  };
}
