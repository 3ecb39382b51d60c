// Access keys and model API keys (docs/gateway.md#keys). Only hashes are stored; a key is shown
// once, when it is made. Keys are long random strings, not passwords, so one sha256 is the right
// hash (GitHub and Stripe tokens are kept the same way): a slow hash would cost every request
// milliseconds and add nothing against guessing 160 random bits.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Lower-case base32 (RFC 4648 alphabet): keys survive shells, URLs and case-folding forms. */
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let text = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      text += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) text += BASE32[(value << (5 - bits)) & 31];
  return text;
}

/** sha256 of a key, in hex: what the stores keep. */
export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** Compares a key with a stored hash in time that does not depend on where they differ. */
export function keyMatches(key: string, storedHash: string): boolean {
  const stored = Buffer.from(storedHash, "hex");
  const candidate = createHash("sha256").update(key).digest();
  return stored.length === candidate.length && timingSafeEqual(stored, candidate);
}

/** A model's access key: 32 characters (160 bits), like CDSW's. */
export function generateAccessKey(): string {
  return base32(randomBytes(20));
}

export const API_KEY_PREFIX = "msk";
/** One year, as CDSW. */
export const DEFAULT_API_KEY_LIFETIME_MS = 365 * 24 * 60 * 60 * 1000;

export interface ApiKeyRecord {
  /** Public part of the key, for listing and deleting: `msk_<id>_<secret>`. */
  id: string;
  user: string;
  /** sha256 of the whole key, in hex. */
  sha256: string;
  createdAt: string;
  expiresAt: string;
}

export interface NewApiKey {
  /** Shown once; never stored. */
  key: string;
  record: ApiKeyRecord;
}

export function generateApiKey(
  user: string,
  now: Date,
  lifetimeMs = DEFAULT_API_KEY_LIFETIME_MS,
): NewApiKey {
  const id = base32(randomBytes(8));
  const key = `${API_KEY_PREFIX}_${id}_${base32(randomBytes(20))}`;
  return {
    key,
    record: {
      id,
      user,
      sha256: hashKey(key),
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + lifetimeMs).toISOString(),
    },
  };
}

/** The id inside a presented API key, or undefined when it does not have the key's shape. */
export function apiKeyId(key: string): string | undefined {
  const parts = key.split("_");
  return parts.length === 3 && parts[0] === API_KEY_PREFIX ? parts[1] : undefined;
}

export type ApiKeyCheck =
  | { ok: true; user: string }
  | { ok: false; code: "auth.invalid_key" | "auth.expired_key"; message: string };

/**
 * Checks a presented API key against the stored records. A deleted (revoked) key is unknown, so
 * it is `auth.invalid_key`; an expired one says so, to tell its owner to make a new one.
 */
export function checkApiKey(
  key: string,
  lookup: (id: string) => ApiKeyRecord | undefined,
  now: number,
): ApiKeyCheck {
  const id = apiKeyId(key);
  const record = id === undefined ? undefined : lookup(id);
  if (record === undefined || !keyMatches(key, record.sha256)) {
    return {
      ok: false,
      code: "auth.invalid_key",
      message: "the API key is not valid: it is mistyped, or it was deleted; create a new one",
    };
  }
  if (Date.parse(record.expiresAt) <= now) {
    return {
      ok: false,
      code: "auth.expired_key",
      message: `the API key ${record.id} expired at ${record.expiresAt}; create a new one`,
    };
  }
  return { ok: true, user: record.user };
}

const DURATION_UNITS_MS: Record<string, number> = {
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

/** Parses `30d`, `12h`, `1y` (minutes, hours, days, weeks, years) into milliseconds. */
export function parseLifetime(text: string): number {
  const match = /^([1-9][0-9]*)([mhdwy])$/.exec(text);
  if (!match) {
    throw new Error(`"${text}" is not a lifetime: use a number and a unit, such as 30d, 12h or 1y`);
  }
  return Number(match[1]) * (DURATION_UNITS_MS[match[2] as string] as number);
}
