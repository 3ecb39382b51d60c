// The installation's kustomize tree, rendered by the real `kubectl kustomize`: the images are set
// in one place per overlay, the namespaces carry their Pod Security levels, and every pod the
// installation runs in the models' namespace is one `restricted` admits. (That the API server
// admits them is shown on the test control plane, in kubernetes.test.ts.)
// biome-ignore-all lint/suspicious/noExplicitAny: rendered objects are read field by field
import { execFileSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { PROJECT_ROOT } from "./helpers/cli.ts";

const OVERLAYS = ["dev", "production"];
const root = mkdtempSync(join(tmpdir(), "modelship-kustomize-"));

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

/** The objects an overlay renders to (`kubectl kustomize`). */
function render(kustomizeDir: string, overlay: string): any[] {
  const text = execFileSync("kubectl", ["kustomize", join(kustomizeDir, "overlays", overlay)], {
    encoding: "utf8",
  });
  return parseAllDocuments(text).map((document) => document.toJS());
}

/** A copy of the kustomize tree whose overlay changes one line of its `images:`. */
function withImageLine(overlay: string, from: string, to: string): string {
  const copy = mkdtempSync(join(root, `${overlay}-`));
  cpSync(join(PROJECT_ROOT, "kustomize"), copy, { recursive: true });
  const file = join(copy, "overlays", overlay, "kustomization.yaml");
  const text = readFileSync(file, "utf8");
  expect(text).toContain(from);
  writeFileSync(file, text.replace(from, to));
  return copy;
}

const deployments = (objects: any[]) => objects.filter((object) => object.kind === "Deployment");
/** What runs pods: the Deployments and the dev overlay's StatefulSet. */
const workloads = (objects: any[]) =>
  objects.filter((object) => object.kind === "Deployment" || object.kind === "StatefulSet");
const containersOf = (deployment: any): any[] => [
  ...(deployment.spec.template.spec.initContainers ?? []),
  ...deployment.spec.template.spec.containers,
];
const settings = (objects: any[]) =>
  objects.find(
    (object) => object.kind === "ConfigMap" && object.metadata.name === "modelship-config",
  ).data;

describe.each(OVERLAYS)("the %s overlay", (overlay) => {
  const objects = render(join(PROJECT_ROOT, "kustomize"), overlay);

  it("sets the modelship image in one place: every Deployment and the build setting follow", () => {
    const changed = render(
      withImageLine(
        overlay,
        "  - name: ghcr.io/modelship/modelship\n    newTag: 0.1.0",
        "  - name: ghcr.io/modelship/modelship\n    newName: registry.example.com/ms\n    newTag: 9.9.9",
      ),
      overlay,
    );
    const ours = deployments(changed).filter((deployment) =>
      deployment.metadata.name.startsWith("modelship-"),
    );
    expect(ours.map((deployment) => deployment.metadata.name).sort()).toEqual([
      "modelship-controller",
      "modelship-gateway",
    ]);
    for (const deployment of ours) {
      expect(containersOf(deployment).map((container) => container.image)).toEqual(
        containersOf(deployment).map(() => "registry.example.com/ms:9.9.9"),
      );
    }
    // What the controller gives build Jobs follows too: one image, one line.
    expect(settings(changed).MODELSHIP_IMAGE).toBe("registry.example.com/ms:9.9.9");
    expect(JSON.stringify(changed)).not.toContain("ghcr.io/modelship/modelship:");
  });

  it.each([
    ["ghcr.io/modelship/runtime-python", "0.1.0", "MODELSHIP_PYTHON_BASE_IMAGE"],
    ["ghcr.io/modelship/runtime-r", "0.1.0", "MODELSHIP_R_BASE_IMAGE"],
    ["ghcr.io/osscontainertools/kaniko", "v1.28.0", "MODELSHIP_EXECUTOR_IMAGE"],
  ])("pins %s by digest in one line, and the setting %s follows", (image, tag, setting) => {
    const digest = `sha256:${"e".repeat(64)}`;
    const changed = render(
      withImageLine(
        overlay,
        `  - name: ${image}\n    newTag: ${tag}`,
        `  - name: ${image}\n    digest: ${digest}`,
      ),
      overlay,
    );
    expect(settings(changed)[setting]).toBe(`${image}@${digest}`);
  });

  it("puts the models at Pod Security `restricted` and the builds, alone, at `baseline`", () => {
    const namespaces = Object.fromEntries(
      objects
        .filter((object) => object.kind === "Namespace")
        .map((object) => [
          object.metadata.name,
          object.metadata.labels["pod-security.kubernetes.io/enforce"],
        ]),
    );
    expect(namespaces).toStrictEqual({ modelship: "restricted", "modelship-builds": "baseline" });
    expect(settings(objects).MODELSHIP_BUILD_NAMESPACE).toBe("modelship-builds");
    // No Secret of the installation is declared where builds run.
    expect(
      objects.filter(
        (object) => object.kind === "Secret" && object.metadata.namespace === "modelship-builds",
      ),
    ).toEqual([]);
  });

  it("puts every namespaced object in one of its two namespaces", () => {
    const clusterScoped = new Set([
      "Namespace",
      "CustomResourceDefinition",
      "ClusterRole",
      "ClusterRoleBinding",
    ]);
    for (const object of objects.filter((item) => !clusterScoped.has(item.kind))) {
      expect(["modelship", "modelship-builds"], `${object.kind} ${object.metadata.name}`).toContain(
        object.metadata.namespace,
      );
    }
  });

  it("runs every pod of the models' namespace as `restricted` asks", () => {
    const inModelship = workloads(objects).filter(
      (deployment) => deployment.metadata.namespace === "modelship",
    );
    expect(inModelship.length).toBeGreaterThan(1);
    for (const deployment of inModelship) {
      const pod = deployment.spec.template.spec;
      expect(pod.securityContext, deployment.metadata.name).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: "RuntimeDefault" },
      });
      for (const container of containersOf(deployment)) {
        expect(container.securityContext, deployment.metadata.name).toMatchObject({
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"] },
        });
      }
    }
  });

  it("names the controller's Lease in its RBAC, and gives the builds' namespace only what builds need", () => {
    const role = (namespace: string, name: string) =>
      objects.find(
        (object) =>
          object.kind === "Role" &&
          object.metadata.namespace === namespace &&
          object.metadata.name === name,
      );
    const leaseRules = role("modelship", "modelship-controller").rules.filter((rule: any) =>
      rule.resources.includes("leases"),
    );
    expect(leaseRules).toEqual([
      {
        apiGroups: ["coordination.k8s.io"],
        resources: ["leases"],
        resourceNames: ["modelship-controller"],
        verbs: ["get", "update"],
      },
      // Create cannot name its object: it does not exist yet.
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
    ]);
    const builds = role("modelship-builds", "modelship-controller-builds");
    expect(builds.rules.flatMap((rule: any) => rule.resources).sort()).toEqual([
      "jobs",
      "pods",
      "pods/log",
      "secrets",
    ]);
    const binding = objects.find(
      (object) =>
        object.kind === "RoleBinding" && object.metadata.name === "modelship-controller-builds",
    );
    expect(binding.subjects).toEqual([
      { kind: "ServiceAccount", name: "modelship-controller", namespace: "modelship" },
    ]);
  });
});

describe("the metrics store's database", () => {
  const secretOf = (objects: any[]) =>
    objects.find(
      (object) => object.kind === "Secret" && object.metadata.name === "modelship-metrics-store",
    );

  it("is the dev overlay's: a PostgreSQL 15 server whose Secret's URL names its Service, user, database and password", () => {
    const objects = render(join(PROJECT_ROOT, "kustomize"), "dev");
    const secret = secretOf(objects);
    expect(secret.metadata.namespace).toBe("modelship");
    const url = new URL(secret.stringData.url);
    const server = objects.find((object) => object.kind === "StatefulSet");
    const service = objects.find(
      (object) => object.kind === "Service" && object.metadata.name === url.hostname,
    );
    expect(server.spec.serviceName).toBe(service.metadata.name);
    expect(service.spec.selector).toEqual(server.spec.template.metadata.labels);
    expect(service.spec.ports).toEqual([
      { name: "postgres", port: Number(url.port), targetPort: "postgres" },
    ]);
    const [postgres] = server.spec.template.spec.containers;
    expect(postgres.image).toMatch(/^postgres:15[-.]/);
    const env = Object.fromEntries(
      postgres.env.map((variable: any) => [variable.name, variable.value ?? variable.valueFrom]),
    );
    expect(env).toMatchObject({
      POSTGRES_USER: url.username,
      POSTGRES_DB: url.pathname.slice(1),
      POSTGRES_PASSWORD: { secretKeyRef: { name: secret.metadata.name, key: "password" } },
    });
    expect(url.password).toBe(secret.stringData.password);
    expect(url.password).toMatch(/^dev-only-/);
    expect(server.spec.replicas).toBe(1);
    // Only the gateway's pods reach it.
    const policy = objects.find(
      (object) => object.kind === "NetworkPolicy" && object.metadata.name === "metrics-postgres",
    );
    expect(policy.spec.podSelector.matchLabels).toEqual(server.spec.template.metadata.labels);
    expect(policy.spec.ingress).toEqual([
      {
        from: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "modelship-gateway" } } }],
        ports: [{ port: Number(url.port), protocol: "TCP" }],
      },
    ]);
    // The gateway reads the URL from the Secret, never from a literal.
    const gateway = objects.find(
      (object) => object.kind === "Deployment" && object.metadata.name === "modelship-gateway",
    );
    expect(gateway.spec.template.spec.containers[0].env).toEqual([
      {
        name: "MODELSHIP_METRICS_URL",
        valueFrom: { secretKeyRef: { name: secret.metadata.name, key: "url" } },
      },
    ]);
  });

  it("is not the production overlay's: an installation brings its own", () => {
    const objects = render(join(PROJECT_ROOT, "kustomize"), "production");
    expect(secretOf(objects)).toBeUndefined();
    expect(objects.filter((object) => object.kind === "StatefulSet")).toEqual([]);
    const gateway = objects.find(
      (object) => object.kind === "Deployment" && object.metadata.name === "modelship-gateway",
    );
    expect(gateway.spec.template.spec.containers[0].env).toBeUndefined();
  });
});

describe("components/watch-all-namespaces", () => {
  it("binds the per-namespace rights cluster-wide and follows every namespace; the base binds them in modelship alone", () => {
    const copy = mkdtempSync(join(root, "all-"));
    cpSync(join(PROJECT_ROOT, "kustomize"), copy, { recursive: true });
    const overlay = join(copy, "overlays", "all");
    mkdirSync(overlay);
    writeFileSync(
      join(overlay, "kustomization.yaml"),
      "resources: [../dev]\ncomponents: [../../components/watch-all-namespaces]\n",
    );
    const objects = render(copy, "all");
    const clusterBindings = objects
      .filter((object) => object.kind === "ClusterRoleBinding")
      .map((binding) => [binding.roleRef.name, binding.subjects[0].name]);
    expect(clusterBindings.sort()).toEqual([
      ["modelship-controller-models", "modelship-controller"],
      ["modelship-gateway-models", "modelship-gateway"],
    ]);
    expect(settings(objects).MODELSHIP_WATCH_NAMESPACES).toBe("*");
    const base = render(join(PROJECT_ROOT, "kustomize"), "dev");
    expect(base.filter((object) => object.kind === "ClusterRoleBinding")).toEqual([]);
    expect(settings(base).MODELSHIP_WATCH_NAMESPACES).toBeUndefined();
  });
});

describe("the release workflow", () => {
  it("builds and pushes every image of kustomize/images for amd64 and arm64, with an SBOM and provenance", () => {
    const workflow = parse(
      readFileSync(join(PROJECT_ROOT, ".github/workflows/release.yaml"), "utf8"),
    );
    expect(workflow.on.push.tags).toEqual(["v*"]);
    const job = workflow.jobs.images;
    const dockerfiles = readdirSync(join(PROJECT_ROOT, "kustomize/images"))
      .filter((file) => file.endsWith(".Dockerfile"))
      .map((file) => file.replace(/\.Dockerfile$/, ""))
      .sort();
    expect([...job.strategy.matrix.image].sort()).toEqual(dockerfiles);
    const build = job.steps.find((step: any) => step.id === "build");
    expect(build.with).toMatchObject({
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a GitHub Actions expression, as written
      file: "kustomize/images/${{ matrix.image }}.Dockerfile",
      platforms: "linux/amd64,linux/arm64",
      push: true,
      sbom: true,
      provenance: "mode=max",
    });
    // The images the overlays name are the ones it pushes.
    for (const overlay of OVERLAYS) {
      const names = parse(
        readFileSync(
          join(PROJECT_ROOT, "kustomize/overlays", overlay, "kustomization.yaml"),
          "utf8",
        ),
      ).images.map((image: any) => image.name);
      for (const image of dockerfiles) expect(names).toContain(`ghcr.io/modelship/${image}`);
    }
  });
});
