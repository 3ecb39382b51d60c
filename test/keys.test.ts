// Access keys and model API keys: shapes, hashes, checks and lifetimes.
import { describe, expect, it } from "vitest";
import {
  apiKeyId,
  checkApiKey,
  DEFAULT_API_KEY_LIFETIME_MS,
  generateAccessKey,
  generateApiKey,
  hashKey,
  keyMatches,
  parseLifetime,
} from "../controller/gateway/keys.ts";

const ISSUED = new Date("2026-03-01T12:00:00Z");

describe("access keys", () => {
  it("are 32 lower-case base32 characters, different every time", () => {
    const keys = Array.from({ length: 200 }, generateAccessKey);
    for (const key of keys) expect(key).toMatch(/^[a-z2-7]{32}$/);
    expect(new Set(keys).size).toBe(200);
  });

  it("are kept as a sha256 that matches the key and nothing else", () => {
    const key = generateAccessKey();
    const stored = hashKey(key);
    expect(stored).toMatch(/^[0-9a-f]{64}$/);
    expect(stored).not.toContain(key);
    expect(keyMatches(key, stored)).toBe(true);
    expect(keyMatches(`${key}x`, stored)).toBe(false);
    expect(keyMatches(key, stored.slice(2))).toBe(false);
  });
});

describe("model API keys", () => {
  it("carry their id, expire after a year by default, and store only a hash", () => {
    const { key, record } = generateApiKey("alice", ISSUED);
    expect(key).toMatch(/^msk_[a-z2-7]+_[a-z2-7]{32}$/);
    expect(apiKeyId(key)).toBe(record.id);
    expect(record).toMatchObject({ user: "alice", createdAt: ISSUED.toISOString() });
    expect(Date.parse(record.expiresAt) - ISSUED.getTime()).toBe(DEFAULT_API_KEY_LIFETIME_MS);
    expect(JSON.stringify(record)).not.toContain(key.split("_")[2]);
  });

  it.each([
    ["msk_abc_def", "abc"],
    ["msk_abc", undefined],
    ["sk_abc_def", undefined],
    ["msk_a_b_c", undefined],
    ["", undefined],
  ])("apiKeyId(%j) is %j", (key, id) => {
    expect(apiKeyId(key)).toBe(id);
  });

  const valid = generateApiKey("alice", ISSUED, 30 * 86_400_000);
  const records = new Map([[valid.record.id, valid.record]]);
  const lookup = (id: string) => records.get(id);
  const [prefix, id, secret] = valid.key.split("_");
  it.each([
    ["the key itself, in its lifetime", valid.key, ISSUED.getTime() + 1000, "ok"],
    ["the key, a second before expiry", valid.key, Date.parse(valid.record.expiresAt) - 1000, "ok"],
    ["the key, at expiry", valid.key, Date.parse(valid.record.expiresAt), "auth.expired_key"],
    ["a wrong secret", `${prefix}_${id}_${"a".repeat(32)}`, ISSUED.getTime(), "auth.invalid_key"],
    ["an unknown id", `${prefix}_zzzz_${secret}`, ISSUED.getTime(), "auth.invalid_key"],
    ["no key shape", "Bearer", ISSUED.getTime(), "auth.invalid_key"],
  ])("%s → %s", (_, key, now, expected) => {
    const check = checkApiKey(key, lookup, now);
    expect(check.ok ? "ok" : check.code).toBe(expected);
    if (check.ok) expect(check.user).toBe("alice");
    else expect(check.message).not.toContain(secret);
  });
});

describe("parseLifetime", () => {
  it.each([
    ["30m", 30 * 60_000],
    ["12h", 12 * 3_600_000],
    ["30d", 30 * 86_400_000],
    ["2w", 14 * 86_400_000],
    ["1y", 365 * 86_400_000],
  ])("%s is %i ms", (text, ms) => {
    expect(parseLifetime(text)).toBe(ms);
  });

  it.each(["", "30", "0d", "1.5d", "-1d", "30 d", "1mo"])(
    "refuses %j and says what it wants",
    (text) => {
      expect(() => parseLifetime(text)).toThrow(/such as 30d, 12h or 1y/);
    },
  );
});
