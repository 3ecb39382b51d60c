// The objects the dashboard shows: the generated types of the kinds (from schemas/), and the
// shapes of the admin API's other answers — the server's own types where they are importable
// (type imports only: nothing of the server's code is bundled).
import type { ObjectMeta } from "../../api/types.generated.ts";

export type {
  Condition,
  DeploymentRecord,
  Model,
  ModelBuild,
  ModelDeployment,
  ModelRepository,
} from "../../api/types.generated.ts";
export type { EventRecord, ReplicaInfo } from "../../core/ports.ts";
export type { TrafficPoint } from "../../core/traffic.ts";

export interface Resource {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & { creationTimestamp?: string; resourceVersion?: string };
}

export interface LogEntry {
  replica: string;
  seq: number;
  time: string;
  stream: "stdout" | "stderr" | "agent";
  worker: number;
  line: string;
}

export interface ApiKeyRecord {
  id: string;
  user: string;
  createdAt: string;
  expiresAt: string;
}
