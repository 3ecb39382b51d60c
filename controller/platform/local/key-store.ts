// Keys of a `modelship up` installation, in the state directory (mode 0600, like a kubeconfig):
// each model's access key, which `modelship keys show` prints as CDSW's UI shows it, and the
// model API keys, of which only the hash is kept — they are shown once, when created. The
// gateway itself only ever gets hashes.

import { existsSync } from "node:fs";
import { isRecord } from "../../api/canonical-json.ts";
import {
  type ApiKeyRecord,
  DEFAULT_API_KEY_LIFETIME_MS,
  generateAccessKey,
  generateApiKey,
  hashKey,
  type NewApiKey,
} from "../../gateway/keys.ts";
import { readStateFile, writeFileAtomic } from "./state-files.ts";

interface KeyFile {
  /** "namespace/model" → access key. */
  accessKeys: Record<string, string>;
  apiKeys: ApiKeyRecord[];
}

/** What is wrong with a key file's content, if anything. */
export function keyFileProblem(value: unknown): string | undefined {
  if (!isRecord(value)) return "not an object";
  if (!isRecord(value.accessKeys)) return 'no "accessKeys" object';
  if (Object.values(value.accessKeys).some((key) => typeof key !== "string" || key === "")) {
    return "an access key is not a string";
  }
  if (!Array.isArray(value.apiKeys)) return 'no "apiKeys" list';
  if (!value.apiKeys.every((record) => isRecord(record) && typeof record.sha256 === "string")) {
    return "an API key record has no sha256";
  }
  return undefined;
}

export class KeyStore {
  private readonly file: string | undefined;
  private data: KeyFile = { accessKeys: {}, apiKeys: [] };

  constructor(file?: string) {
    this.file = file;
    if (file && existsSync(file)) {
      this.data = readStateFile<KeyFile>(
        file,
        keyFileProblem,
        "every model gets a new access key and every API key must be made again",
      );
    }
  }

  private save(): void {
    if (this.file) writeFileAtomic(this.file, JSON.stringify(this.data, null, 2), 0o600);
  }

  /** The model's access key, made on first use. */
  accessKey(model: string): string {
    let key = this.data.accessKeys[model];
    if (!key) {
      key = generateAccessKey();
      this.data.accessKeys[model] = key;
      this.save();
    }
    return key;
  }

  accessKeyHash(model: string): string {
    return hashKey(this.accessKey(model));
  }

  /** A new access key for the model; the old one stops working as soon as the gateway is fed. */
  rotateAccessKey(model: string): string {
    const key = generateAccessKey();
    this.data.accessKeys[model] = key;
    this.save();
    return key;
  }

  createApiKey(user: string, now: Date, lifetimeMs = DEFAULT_API_KEY_LIFETIME_MS): NewApiKey {
    const created = generateApiKey(user, now, lifetimeMs);
    this.data.apiKeys.push(created.record);
    this.save();
    return created;
  }

  apiKeys(): ApiKeyRecord[] {
    return [...this.data.apiKeys];
  }

  deleteApiKey(id: string): boolean {
    const before = this.data.apiKeys.length;
    this.data.apiKeys = this.data.apiKeys.filter((record) => record.id !== id);
    if (this.data.apiKeys.length === before) return false;
    this.save();
    return true;
  }
}
