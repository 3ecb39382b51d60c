// JSON text to values without changing a number: one that a JavaScript number would not write back
// as the same decimal (9007199254740993, 1e400, 0.1000000000000000055511151231257827) becomes
// JSON.rawJSON of its text, which JSON.stringify writes exactly as it came. The rest stay plain
// numbers, to compute with. (Node 22+: JSON.parse hands a reviver each number's source.)

/** JSON.parse with a reviver's third argument, and JSON.rawJSON (TypeScript's lib has neither yet). */
const json = JSON as unknown as {
  parse(
    text: string,
    reviver: (key: string, value: unknown, context: { source?: string }) => unknown,
  ): unknown;
  rawJSON(text: string): unknown;
};

export function parseExactJson(text: string): unknown {
  return json.parse(text, (_key, value, context) =>
    typeof value === "number" &&
    context.source !== undefined &&
    !writesBackAs(value, context.source)
      ? json.rawJSON(context.source)
      : value,
  );
}

/** Whether JSON.stringify(value) is the same decimal number as `source` (1.0 is 1, 1E2 is 100). */
function writesBackAs(value: number, source: string): boolean {
  return Number.isFinite(value) && canonicalDecimal(String(value)) === canonicalDecimal(source);
}

/** A decimal as sign, significant digits and exponent ("-12e3"); every zero is "0". */
function canonicalDecimal(text: string): string {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return text;
  const [, sign, whole = "", fraction = "", exponent = "0"] = match;
  const digits = `${whole}${fraction}`.replace(/^0+/, "");
  const significant = digits.replace(/0+$/, "");
  if (significant === "") return "0";
  const scale = Number(exponent) - fraction.length + (digits.length - significant.length);
  return `${sign}${significant}e${scale}`;
}
