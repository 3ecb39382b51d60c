// A real Kubernetes control plane for tests, without Docker: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler run as local processes on 127.0.0.1, and kwok plays
// the nodes (no container ever runs: kwok moves pods through their phases). The binaries are built
// once by `bash test/k8s/build-binaries.sh` into a cache outside the repo.
// See docs/k8s-test-cluster.md.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer, type Server } from "node:net";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));

/** The command, run from the repo root, that builds the binaries this module needs. */
export const BUILD_COMMAND = "bash test/k8s/build-binaries.sh";

/** Directory of kwok's stage files (copied from sigs.k8s.io/kwok, see its README header). */
export const STAGES_DIR = join(HERE, "stages");
/** The stages that replace or join STAGES_DIR's when replicas are real (StartOptions). */
const REAL_REPLICA_STAGES_DIR = join(HERE, "stages-real-replicas");

/** kwok's stage files: STAGES_DIR's, with real replicas' own in place of those they replace. */
function stagesFor(realReplicas: boolean): string[] {
  const yaml = (dir: string) => readdirSync(dir).filter((file) => file.endsWith(".yaml"));
  const replaced = new Set(realReplicas ? yaml(REAL_REPLICA_STAGES_DIR) : []);
  return [
    ...yaml(STAGES_DIR)
      .filter((file) => !replaced.has(file))
      .map((file) => join(STAGES_DIR, file)),
    ...[...replaced].map((file) => join(REAL_REPLICA_STAGES_DIR, file)),
  ].sort();
}

/** The annotation that makes kwok manage a Node. */
export const KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node";

export interface Versions {
  k8s: string;
  etcd: string;
  kwok: string;
}

/** The pinned versions, from test/k8s/versions.env (shared with build-binaries.sh). */
export const VERSIONS: Versions = readVersions();

function readVersions(): Versions {
  const text = readFileSync(join(HERE, "versions.env"), "utf8");
  const get = (key: string): string => {
    const match = new RegExp(`^${key}=(\\S+)$`, "m").exec(text);
    if (!match?.[1]) throw new Error(`test/k8s/versions.env has no ${key}`);
    return match[1];
  };
  return { k8s: get("K8S_VERSION"), etcd: get("ETCD_VERSION"), kwok: get("KWOK_VERSION") };
}

export const BINARIES = [
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kwok",
] as const;
export type Component = (typeof BINARIES)[number];

/** Where build-binaries.sh puts the binaries (MODELSHIP_K8S_CACHE moves the cache). */
export function binDir(): string {
  const cache = process.env.MODELSHIP_K8S_CACHE || join(homedir(), ".cache", "modelship-k8s");
  return join(cache, VERSIONS.k8s, "bin");
}

/** The binaries that are not built yet (empty when the cluster can start). */
export function missingBinaries(): Component[] {
  return BINARIES.filter((name) => !existsSync(join(binDir(), name)));
}

export interface KubectlResult {
  /** Exit status; null when kubectl could not run or was killed (see stderr). */
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface TestCluster {
  /** A kubeconfig file: server https://127.0.0.1:PORT, the apiserver's CA, the admin token. */
  kubeconfigPath: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** Bearer token of user "admin" in group system:masters. */
  token: string;
  /** PEM of the CA that signed the apiserver's serving certificate. */
  caPem: string;
  /** Names of the fake Nodes, all Ready and schedulable when startCluster resolves. */
  nodes: string[];
  /** Temp directory holding certificates, keys, etcd's data and the logs. */
  dir: string;
  /** Log file (stdout and stderr) of each process. */
  logs: Record<Component, string>;
  /** Process id of each process (kube-apiserver's changes with startApiServer). */
  pids: Record<Component, number>;
  /** Runs the real kubectl against this cluster (synchronously). */
  kubectl(args: string[], input?: string): KubectlResult;
  /** kubectl that must succeed: its stdout, or an error with its stderr. */
  kubectlOk(args: string[], input?: string): string;
  /**
   * Runs kubectl without blocking this process: what a test must use while a controller runs in
   * the same process (a `kubectl wait` run synchronously would freeze the controller it waits for).
   */
  kubectlAsync(args: string[], input?: string): Promise<KubectlResult>;
  /** etcd's client URL (plain HTTP on 127.0.0.1). */
  etcdUrl: string;
  /**
   * Compacts etcd up to its current revision and returns it: every older resourceVersion of a
   * resource without a watch cache (UNCACHED_RESOURCE) is then gone, and a watch from one
   * gets 410 Gone.
   */
  compactEtcd(): Promise<number>;
  /**
   * Stops kube-apiserver alone (SIGTERM, then SIGKILL after a grace period), as an API server
   * outage looks to clients: connections reset, then refused. etcd and the rest keep running.
   */
  stopApiServer(): Promise<void>;
  /**
   * Starts kube-apiserver again with the same flags, port, certificates and etcd data, and
   * resolves once it answers /readyz (its pid in `pids` is the new one).
   */
  startApiServer(): Promise<void>;
  /** Kills every process (SIGTERM, then SIGKILL after a grace period) and removes the temp dir. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** How many fake Nodes kwok manages (default 1): kwok-node-0, kwok-node-1, ... */
  nodes?: number;
  /** Keep the temp dir (logs) after stop() or a failed start; also MODELSHIP_K8S_KEEP=1. */
  keepDir?: boolean;
  /**
   * Model replicas' pods start Running but not Ready, for a harness that runs a real agent for
   * each and marks it Ready once the agent answers (pod-agents.ts); other pods as usual.
   */
  realReplicas?: boolean;
}

/**
 * Where kwok takes pod IPs from: an administratively scoped multicast range, because it is the
 * one kind of address that both passes the API server's EndpointSlice validation (which refuses
 * loopback, link-local and unspecified endpoint addresses: with 127.x the EndpointSlice
 * controller cannot write any slice) and can never carry a TCP byte: Linux refuses a TCP
 * connect to a multicast address with ENETUNREACH before sending anything (tcp_v4_connect), so
 * code under test that calls a pod IP fails at once on this machine instead of reaching a
 * network.
 */
export const POD_CIDR = "239.255.0.0/16";
/** The fake nodes' InternalIP. */
export const NODE_IP = "127.0.0.1";
const NODE_LEASE_SECONDS = 40;
/** The resource whose watches compactEtcd() can expire (no watch cache in the apiserver). */
export const UNCACHED_RESOURCE = "podtemplates";

const KUBECTL = process.env.KUBECTL || "kubectl";
const START_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 5_000;

// sh -c WATCHDOG watchdog PARENT_PID DIR KEEP: waits for PARENT_PID to die, then kills (TERM,
// then KILL) each pid listed in DIR/pids whose command line still names DIR, and removes DIR.
const WATCHDOG = `
parent=$1 dir=$2 keep=$3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
for sig in TERM KILL; do
  for pid in $(cat "$dir/pids" 2>/dev/null); do
    if grep -aqF "$dir" "/proc/$pid/cmdline" 2>/dev/null; then kill -s "$sig" "$pid" 2>/dev/null; fi
  done
  if [ "$sig" = TERM ]; then sleep 3; fi
done
if [ "$keep" != 1 ]; then rm -rf "$dir"; fi
`;

interface Proc {
  name: Component;
  log: string;
  child: ChildProcess;
  exit: Promise<void>;
  exited: string | null;
}

/** Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok. */
export async function startCluster(options: StartOptions = {}): Promise<TestCluster> {
  try {
    return await startOnce(options);
  } catch (error) {
    // The free ports are picked before the processes bind them: another process may take one
    // in between. Try once more with new ports.
    if (error instanceof Error && /address already in use/.test(error.message)) {
      return await startOnce(options);
    }
    throw error;
  }
}

async function startOnce(options: StartOptions): Promise<TestCluster> {
  const nodeCount = options.nodes ?? 1;
  if (!Number.isInteger(nodeCount) || nodeCount < 0) {
    throw new Error(`startCluster: nodes must be a whole number >= 0, got ${nodeCount}`);
  }
  const keepDir = options.keepDir ?? process.env.MODELSHIP_K8S_KEEP === "1";
  const bin = binDir();
  const missing = missingBinaries();
  if (missing.length > 0) {
    throw new Error(
      `the test Kubernetes binaries are not built (missing in ${bin}: ${missing.join(", ")}). ` +
        `Build them once (about 10 minutes, then cached) with: ${BUILD_COMMAND}`,
    );
  }

  const dir = mkdtempSync(join(tmpdir(), "modelship-k8s-"));
  const procs: Proc[] = [];
  const pidFile = join(dir, "pids");
  writeFileSync(pidFile, "");
  // If this process dies without stop() (a killed test worker), the watchdog kills the cluster.
  const watchdog = spawn(
    "sh",
    ["-c", WATCHDOG, "watchdog", String(process.pid), dir, keepDir ? "1" : "0"],
    {
      detached: true,
      stdio: "ignore",
    },
  );
  watchdog.unref();
  const killAllNow = (): void => {
    for (const p of procs) if (p.exited === null) p.child.kill("SIGKILL");
  };
  process.once("exit", killAllNow);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Clients first, then the apiserver, then its storage.
    await stopProcs(procs.filter((p) => p.name !== "kube-apiserver" && p.name !== "etcd"));
    await stopProcs(procs.filter((p) => p.name === "kube-apiserver"));
    await stopProcs(procs.filter((p) => p.name === "etcd"));
    process.removeListener("exit", killAllNow);
    if (watchdog.exitCode === null && watchdog.signalCode === null) watchdog.kill("SIGKILL");
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };

  const launch = (name: Component, args: string[], env: NodeJS.ProcessEnv = {}): Proc => {
    const log = join(dir, `${name}.log`);
    const fd = openSync(log, "a");
    let child: ChildProcess;
    try {
      child = spawn(join(bin, name), args, {
        stdio: ["ignore", fd, fd],
        env: { ...process.env, ...env },
      });
    } finally {
      closeSync(fd);
    }
    if (child.pid !== undefined) appendFileSync(pidFile, `${child.pid}\n`);
    const proc: Proc = { name, log, child, exited: null, exit: Promise.resolve() };
    proc.exit = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        proc.exited = signal ? `killed by ${signal}` : `exited with code ${code}`;
        resolve();
      });
      child.once("error", (error) => {
        proc.exited = `could not start: ${error.message}`;
        resolve();
      });
    });
    procs.push(proc);
    return proc;
  };

  try {
    const [etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort] = await freePorts(6);
    const token = randomBytes(24).toString("hex");
    const server = `https://127.0.0.1:${apiPort}`;

    // ---- etcd
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    const etcd = launch("etcd", [
      "--name=test",
      `--data-dir=${join(dir, "etcd-data")}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=test=${peerUrl}`,
      // Test data is thrown away: skip fsync, the slowest part of etcd on a plain disk.
      "--unsafe-no-fsync=true",
      "--log-level=warn",
    ]);
    await waitFor("etcd /health", etcd, [etcd], 30_000, async () => {
      const answer = await get(`${etcdUrl}/health`);
      return answer.status === 200 && answer.body.includes('"health":"true"');
    });

    // ---- kube-apiserver
    const sa = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs1", format: "pem" },
    });
    const saKey = join(dir, "sa.key");
    const saPub = join(dir, "sa.pub");
    writeFileSync(saKey, sa.privateKey, { mode: 0o600 });
    writeFileSync(saPub, sa.publicKey);
    const tokenFile = join(dir, "tokens.csv");
    writeFileSync(tokenFile, `${token},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
    const certDir = join(dir, "apiserver-certs");
    mkdirSync(certDir);
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1",
      // Without it the apiserver looks for a default route to pick its address, and exits on a
      // machine that has none.
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      // No --tls-cert-file: the apiserver writes a self-signed serving cert (and its CA) here.
      `--cert-dir=${certDir}`,
      `--token-auth-file=${tokenFile}`,
      "--authorization-mode=RBAC",
      "--service-cluster-ip-range=10.0.0.0/24",
      "--allow-privileged=true",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      // PodTemplates (which nothing here uses) get no watch cache: their watches are served
      // from etcd, so compactEtcd() can make a watch's resourceVersion expire (410 Gone).
      `--watch-cache-sizes=${UNCACHED_RESOURCE}#0`,
    ];
    const apiserverReady = (apiserver: Proc): Promise<void> =>
      waitFor(
        "kube-apiserver /readyz",
        apiserver,
        [etcd, apiserver],
        START_TIMEOUT_MS,
        async () => {
          const answer = await get(`${server}/readyz`, { insecure: true });
          return answer.status === 200;
        },
      );
    let apiserver = launch("kube-apiserver", apiserverArgs);
    await apiserverReady(apiserver);
    const caPem = readServingCa(join(certDir, "apiserver.crt"));
    const caPath = join(dir, "ca.crt");
    writeFileSync(caPath, caPem);
    const ready = await get(`${server}/readyz`, { ca: caPem, token });
    if (ready.status !== 200) {
      throw new Error(`kube-apiserver /readyz with its CA and the admin token: ${ready.status}`);
    }

    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfig(server, caPem, token), { mode: 0o600 });

    // ---- controller manager, scheduler, kwok (all at once)
    const kcm = launch("kube-controller-manager", [
      `--kubeconfig=${kubeconfigPath}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      `--secure-port=${kcmPort}`,
      // Signs the legacy service-account token secrets; the CA goes into kube-root-ca.crt.
      `--service-account-private-key-file=${saKey}`,
      `--root-ca-file=${caPath}`,
    ]);
    const scheduler = launch("kube-scheduler", [
      `--kubeconfig=${kubeconfigPath}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      `--secure-port=${schedPort}`,
    ]);
    const stageFiles = stagesFor(options.realReplicas ?? false).map((file) => `--config=${file}`);
    const kwok = launch(
      "kwok",
      [
        `--kubeconfig=${kubeconfigPath}`,
        ...stageFiles,
        `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=fake`,
        // Its health endpoint (plain HTTP); without it kwok serves nothing.
        `--server-address=127.0.0.1:${kwokPort}`,
        // Pod IPs that no TCP connection can reach (see POD_CIDR).
        `--cidr=${POD_CIDR}`,
        // The node's address too: the apiserver dials it for `kubectl logs` and `exec`.
        `--node-ip=${NODE_IP}`,
        // kwok creates and renews each node's Lease in kube-node-lease (every 10 s). Without
        // it kwok refreshes the node's status only about once a minute, at the edge of the node
        // lifecycle controller's grace period, and nodes were seen going NotReady.
        `--node-lease-duration-seconds=${NODE_LEASE_SECONDS}`,
      ],
      // kwok also reads ~/.kwok/kwok.yaml when it exists: keep the user's config out.
      { HOME: dir },
    );
    const all = [etcd, apiserver, kcm, scheduler, kwok];
    await Promise.all([
      waitFor("kube-controller-manager /healthz", kcm, all, START_TIMEOUT_MS, async () => {
        return (
          (await get(`https://127.0.0.1:${kcmPort}/healthz`, { insecure: true })).status === 200
        );
      }),
      waitFor("kube-scheduler /healthz", scheduler, all, START_TIMEOUT_MS, async () => {
        return (
          (await get(`https://127.0.0.1:${schedPort}/healthz`, { insecure: true })).status === 200
        );
      }),
      waitFor("kwok /healthz", kwok, all, START_TIMEOUT_MS, async () => {
        return (await get(`http://127.0.0.1:${kwokPort}/healthz`)).status === 200;
      }),
    ]);

    // ---- fake nodes
    const api = { server, ca: caPem, token };
    const nodes: string[] = [];
    for (let i = 0; i < nodeCount; i++) {
      const name = `kwok-node-${i}`;
      const created = await send(api, "POST", "/api/v1/nodes", fakeNode(name));
      if (created.status !== 201) {
        throw new Error(`creating Node ${name}: HTTP ${created.status} ${created.body}`);
      }
      nodes.push(name);
    }
    // Ready, and the node lifecycle controller has lifted the not-ready taint, so pods schedule.
    await waitFor(
      `${nodeCount} fake node(s) Ready and untainted`,
      kwok,
      all,
      START_TIMEOUT_MS,
      async () => {
        const answer = await send(api, "GET", "/api/v1/nodes");
        if (answer.status !== 200) return false;
        const list = JSON.parse(answer.body) as { items: NodeJson[] };
        return nodes.every((name) => {
          const node = list.items.find((item) => item.metadata.name === name);
          return node !== undefined && nodeSchedulable(node);
        });
      },
    );
    // Pods need the namespace's default ServiceAccount (the ServiceAccount admission plugin).
    await waitFor("ServiceAccount default/default", kcm, all, START_TIMEOUT_MS, async () => {
      const answer = await send(api, "GET", "/api/v1/namespaces/default/serviceaccounts/default");
      return answer.status === 200;
    });

    const cacheDir = join(dir, "kubectl-cache");
    const kubectlArgs = (args: string[]) => [
      `--kubeconfig=${kubeconfigPath}`,
      `--cache-dir=${cacheDir}`,
      ...args,
    ];
    const kubectlEnv = { ...process.env, KUBECONFIG: kubeconfigPath };
    const kubectl = (args: string[], input?: string): KubectlResult => {
      const result = spawnSync(KUBECTL, kubectlArgs(args), {
        input,
        encoding: "utf8",
        timeout: 180_000,
        maxBuffer: 64 * 1024 * 1024,
        env: kubectlEnv,
      });
      return {
        status: result.status,
        stdout: result.stdout ?? "",
        stderr: (result.stderr ?? "") + (result.error ? `\n${result.error.message}` : ""),
      };
    };

    const logs = Object.fromEntries(all.map((p) => [p.name, p.log])) as Record<Component, string>;
    const pids = Object.fromEntries(all.map((p) => [p.name, p.child.pid ?? -1])) as Record<
      Component,
      number
    >;
    return {
      kubeconfigPath,
      server,
      token,
      caPem,
      nodes,
      dir,
      logs,
      pids,
      kubectl,
      kubectlOk(args: string[], input?: string): string {
        const result = kubectl(args, input);
        if (result.status !== 0) throw new Error(`kubectl ${args.join(" ")}: ${result.stderr}`);
        return result.stdout;
      },
      kubectlAsync(args: string[], input?: string): Promise<KubectlResult> {
        return new Promise((resolve) => {
          const child = spawn(KUBECTL, kubectlArgs(args), {
            env: kubectlEnv,
            stdio: ["pipe", "pipe", "pipe"],
          });
          let stdout = "";
          let stderr = "";
          child.stdout.on("data", (chunk) => {
            stdout += chunk;
          });
          child.stderr.on("data", (chunk) => {
            stderr += chunk;
          });
          const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
          child.once("error", (error) => {
            stderr += `\n${error.message}`;
          });
          child.once("close", (status) => {
            clearTimeout(timer);
            resolve({ status, stdout, stderr });
          });
          child.stdin.end(input);
        });
      },
      etcdUrl,
      async compactEtcd(): Promise<number> {
        // etcd's JSON gateway: the revision is in any answer's header.
        const status = await post(`${etcdUrl}/v3/maintenance/status`, {});
        const revision = Number(
          (JSON.parse(status) as { header: { revision: string } }).header.revision,
        );
        await post(`${etcdUrl}/v3/kv/compaction`, { revision: String(revision), physical: true });
        return revision;
      },
      async stopApiServer(): Promise<void> {
        await stopProcs([apiserver]);
      },
      async startApiServer(): Promise<void> {
        if (apiserver.exited === null) throw new Error("kube-apiserver is already running");
        // The same flags and the same etcd: same port, same data. It finds its serving
        // certificate in --cert-dir and keeps it, so the kubeconfig's CA still verifies it.
        apiserver = launch("kube-apiserver", apiserverArgs);
        pids["kube-apiserver"] = apiserver.child.pid ?? -1;
        await apiserverReady(apiserver);
      },
      stop,
    };
  } catch (error) {
    await stop();
    const where = keepDir ? ` (logs kept in ${dir})` : "";
    if (error instanceof Error) error.message += where;
    throw error;
  }
}

interface NodeJson {
  metadata: { name: string };
  spec?: { taints?: { key: string; effect: string }[] };
  status?: { conditions?: { type: string; status: string }[] };
}

function nodeSchedulable(node: NodeJson): boolean {
  const ready = node.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
  const taints = node.spec?.taints ?? [];
  return ready && !taints.some((t) => t.effect === "NoSchedule" || t.effect === "NoExecute");
}

/** A Node for kwok to manage, labelled like kwok's examples; no taint, so any pod schedules. */
function fakeNode(name: string): object {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      annotations: { [KWOK_NODE_ANNOTATION]: "fake", "node.alpha.kubernetes.io/ttl": "0" },
      labels: {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/role": "agent",
        "node-role.kubernetes.io/agent": "",
        type: "kwok",
      },
    },
  };
}

function kubeconfig(server: string, caPem: string, token: string): string {
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "modelship-test",
        cluster: {
          server,
          "certificate-authority-data": Buffer.from(caPem).toString("base64"),
        },
      },
    ],
    users: [{ name: "admin", user: { token } }],
    contexts: [{ name: "modelship-test", context: { cluster: "modelship-test", user: "admin" } }],
    "current-context": "modelship-test",
  };
  // JSON is YAML: kubectl, client-go and @kubernetes/client-node all read it.
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** The CA certificate from the self-signed bundle the apiserver wrote (serving cert, then CA). */
function readServingCa(path: string): string {
  const pems = readFileSync(path, "utf8").match(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
  );
  const ca = pems?.find((pem) => new X509Certificate(pem).ca);
  if (!ca) throw new Error(`no CA certificate in ${path}`);
  return `${ca}\n`;
}

async function stopProcs(procs: Proc[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.exited !== null) return;
      p.child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
      });
      const late = await Promise.race([p.exit.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late && p.exited === null) {
        p.child.kill("SIGKILL");
        await p.exit;
      }
    }),
  );
}

/** Polls check until it returns true; fails early, with a log tail, when a process exits. */
async function waitFor(
  what: string,
  primary: Proc,
  watched: Proc[],
  timeoutMs: number,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    const dead = watched.find((p) => p.exited !== null);
    if (dead) {
      throw new Error(
        `${dead.name} ${dead.exited} while waiting for ${what}\n${logTail(dead.log)}`,
      );
    }
    try {
      if (await check()) return;
      lastError = "";
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      const tails = logTail(primary.log);
      throw new Error(
        `timed out after ${timeoutMs / 1000}s waiting for ${what}` +
          (lastError ? ` (last error: ${lastError})` : "") +
          `\n${tails}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

function logTail(path: string, lines = 30): string {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return `(no log at ${path})`;
  }
  const tail = text.trimEnd().split("\n").slice(-lines).join("\n");
  return `--- last ${lines} lines of ${path} ---\n${tail}`;
}

async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === "string") throw new Error("no port");
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

interface Answer {
  status: number;
  body: string;
}

interface Api {
  server: string;
  ca: string;
  token: string;
}

/** POSTs JSON to etcd's gateway; the answer's body, or an error for any status but 200. */
async function post(url: string, body: object): Promise<string> {
  const answer = await get(url, { method: "POST", body: JSON.stringify(body) });
  if (answer.status !== 200) throw new Error(`POST ${url}: HTTP ${answer.status} ${answer.body}`);
  return answer.body;
}

function send(api: Api, method: string, path: string, body?: object): Promise<Answer> {
  return get(`${api.server}${path}`, {
    ca: api.ca,
    token: api.token,
    method,
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
}

function get(
  url: string,
  options: { insecure?: boolean; ca?: string; token?: string; method?: string; body?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const https = url.startsWith("https:");
  return new Promise((resolve, reject) => {
    const callback = (response: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
      );
      response.on("error", reject);
    };
    const request = https
      ? httpsRequest(
          url,
          {
            method: options.method ?? "GET",
            headers,
            timeout: 5_000,
            rejectUnauthorized: !options.insecure,
            ...(options.ca ? { ca: options.ca } : {}),
          },
          callback,
        )
      : httpRequest(url, { method: options.method ?? "GET", headers, timeout: 5_000 }, callback);
    request.on("timeout", () => request.destroy(new Error(`timeout: ${url}`)));
    request.on("error", reject);
    request.end(options.body);
  });
}
