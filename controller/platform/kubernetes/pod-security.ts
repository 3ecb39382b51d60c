// What every pod modelship makes declares so that the API server's Pod Security admission
// admits it at the `restricted` level (the model pods, a build's init container) — or, for the
// Kaniko executor alone, at `baseline` (builder.ts). Without these, a namespace that enforces
// `restricted` refuses the pods and the Deployment or Job reports FailedCreate.
import type { ResourceSettings } from "./settings.ts";

export const podSecurity = {
  /** The pod's part: a non-root user, and the runtime's default seccomp profile. */
  restrictedPod(uid: number): Record<string, unknown> {
    return {
      runAsNonRoot: true,
      runAsUser: uid,
      runAsGroup: uid,
      // Volumes (emptyDirs) are writable by the pod's group.
      fsGroup: uid,
      seccompProfile: { type: "RuntimeDefault" },
    };
  },
  /** A container's part: no way to gain privileges, no capabilities, a read-only root. */
  restrictedContainer(uid: number): Record<string, unknown> {
    return {
      runAsNonRoot: true,
      runAsUser: uid,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      readOnlyRootFilesystem: true,
      seccompProfile: { type: "RuntimeDefault" },
    };
  },
};

/**
 * Requests and limits from a setting: memory is requested and limited (a leak restarts the
 * container, not the node); CPU is requested and not limited, as throttling a model's burst
 * only makes its calls slower.
 */
export function resourcesOf(settings: ResourceSettings): Record<string, Record<string, string>> {
  return {
    requests: {
      ...(settings.cpu ? { cpu: settings.cpu } : {}),
      ...(settings.memory ? { memory: settings.memory } : {}),
    },
    limits: settings.memory ? { memory: settings.memory } : {},
  };
}
