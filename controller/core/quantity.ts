// Kubernetes quantities, as a ModelDeployment's resources give them: CPU in cores ("500m",
// "1.5", 2) and memory in bytes ("512Mi", "2Gi", "1G", 1e9). For totals and for the limits
// `modelship up` enforces itself.

const SUFFIXES: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The value of a quantity (cores for CPU, bytes for memory); throws on one that is not. */
export function parseQuantity(value: string | number): number {
  if (typeof value === "number") return value;
  const match = /^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(m|k|[KMGTPE]i?)|[eE]([+-]?[0-9]+))?$/.exec(
    value.trim(),
  );
  if (!match) throw new Error(`"${value}" is not a Kubernetes quantity such as 500m, 2Gi or 1.5`);
  const number = Number(match[1]);
  if (match[3] !== undefined) return number * 10 ** Number(match[3]);
  return number * (SUFFIXES[match[2] ?? ""] as number);
}

/** Cores as kubectl prints them: whole cores plain, else millicores ("1500m"). */
export function formatCpu(cores: number): string {
  const milli = Math.round(cores * 1000);
  return milli % 1000 === 0 ? String(milli / 1000) : `${milli}m`;
}

/** Bytes in the largest binary unit that keeps one decimal at most ("6Gi", "1.5Gi", "512Mi"). */
export function formatBytes(bytes: number): string {
  for (const unit of ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"]) {
    const size = SUFFIXES[unit] as number;
    if (bytes >= size) {
      const value = Math.round((bytes / size) * 10) / 10;
      return `${value}${unit}`;
    }
  }
  return String(Math.round(bytes));
}
