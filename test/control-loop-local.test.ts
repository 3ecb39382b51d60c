// The control loop's shared behaviour (test/helpers/control-loop.ts) on the local platform:
// `modelship up`'s store, builder (real venvs) and runtime (real replicas), in this process. An
// operator's hand edits are made on the store directly, as nothing else edits it locally.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { LocalPlatform, UP_REPOSITORY } from "../controller/platform/local/platform.ts";
import { controlLoopSuite } from "./helpers/control-loop.ts";
import { removeUpTestRoot } from "./helpers/up.ts";

const root = mkdtempSync(join(tmpdir(), "modelship-loop-local-"));
const NAMESPACE = "default";
const log: string[] = [];
let platform: LocalPlatform;

afterAll(() => {
  if (process.env.MODELSHIP_TEST_DEBUG) console.log(log.join("\n"));
  removeUpTestRoot(root);
});

controlLoopSuite("local", {
  namespace: NAMESPACE,
  repository: UP_REPOSITORY,
  buildTimeoutMs: 120_000,
  async start(repo, interval) {
    platform = new LocalPlatform({
      stateDir: join(root, "state"),
      repository: { url: repo, branch: "main", path: ".", interval },
      host: "127.0.0.1",
      gatewayPort: 0,
      log: (line) => log.push(line),
    });
    await platform.start();
  },
  stop: () => platform.stop(),
  get: (kind, name) => platform.store.get(kind, NAMESPACE, name),
  list: (kind) => platform.store.list(kind, NAMESPACE),
  async editSpec(kind, name, spec) {
    const current = platform.store.get(kind, NAMESPACE, name);
    if (!current) throw new Error(`${kind} ${name} does not exist`);
    await platform.store.apply({ ...current, spec } as unknown as typeof current);
  },
  async remove(kind, name) {
    await platform.store.delete(kind, NAMESPACE, name);
  },
  async create(object) {
    await platform.store.apply(object);
  },
  events: (kind, name) => platform.store.listEvents({ kind, namespace: NAMESPACE, name }),
  otherNamespace: {
    name: "team-b",
    get: (kind, name) => platform.store.get(kind, "team-b", name),
    async remove(kind, name) {
      await platform.store.delete(kind, "team-b", name);
    },
  },
});
