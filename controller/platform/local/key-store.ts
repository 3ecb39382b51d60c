// Keys of a `modelship up` installation, in the state directory (mode 0600, like a kubeconfig):
// each model's access key, which `modelship keys show` prints as CDSW's UI shows it, and the
// model API keys, of which only the hash is kept — they are shown once, when created. The
// gateway itself only ever gets hashes.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import {
  type ApiKeyRecord,
  DEFAULT_API_KEY_LIFETIME_MS,
  generateAccessKey,
  generateApiKey,
  hashKey,
  type NewApiKey,
} from "../../gateway/keys.ts";

interface KeyFile {
  /** "namespace/model" → access key. */
  accessKeys: Record<string, string>;
  apiKeys: ApiKeyRecord[];
}

export class KeyStore {
  private readonly file: string | undefined;
  private data: KeyFile = { accessKeys: {}, apiKeys: [] };

  constructor(file?: string) {
    this.file = file;
    if (file && existsSync(file)) {
      try {
        this.data = JSON.parse(readFileSync(file, "utf8")) as KeyFile;
      } catch (error) {
        throw new Error(`the key file ${file} is damaged (${(error as Error).message})`);
      }
    }
  }

  private save(): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    const temporary = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(this.data, null, 2), { mode: 0o600 });
    chmodSync(temporary, 0o600);
    renameSync(temporary, this.file);
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
