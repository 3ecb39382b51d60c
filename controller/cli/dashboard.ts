// `modelship dashboard`: a new one-time sign-in link to the dashboard of a running `modelship up`
// (docs/dashboard.md). `up` prints one at start; this makes another, for a second browser or
// once that one has expired.
import { parseArgs } from "node:util";
import { adminJson, STATE_DIR_LINE, STATE_DIR_OPTION } from "./client.ts";
import type { CommandResult, Output } from "./output.ts";

export const DASHBOARD_HELP = `Usage: modelship dashboard

Prints a link that signs a browser in to the dashboard of the running modelship up: once, within
15 minutes. The dashboard's own sign-in page takes the admin token (admin.json) instead.

Options:
${STATE_DIR_LINE}
`;

export async function runDashboard(args: string[], output: Output): Promise<CommandResult> {
  const { values } = parseArgs({ args, options: STATE_DIR_OPTION, strict: true });
  const { url } = await adminJson<{ url: string }>(values["state-dir"], "/api/v1/dashboard-links", {
    method: "POST",
  });
  output.out(`${url}\n`);
  return { exitCode: 0 };
}
