// JSON with sorted keys, so that equal values compare equal whatever their key order: how the
// stores and the skeleton tell a real change from a rewrite of the same thing.
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_, item) =>
    item && typeof item === "object" && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => a.localeCompare(b)))
      : item,
  );
}
