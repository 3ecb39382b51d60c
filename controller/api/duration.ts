// Go-style durations, as Kubernetes and Flux write them in specs: `30s`, `1h30m`, `1.5s`.

/** Milliseconds in a duration, or undefined if `text` is not one. */
export function parseDurationMs(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join("") !== text) return undefined;
  return parts.reduce(
    (sum, part) => sum + Number(part[1]) * (units[part[2] as string] as number),
    0,
  );
}
