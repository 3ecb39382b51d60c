// The browser the dashboard's tests drive: Debian's chromium, through playwright-core (which
// brings no browser of its own). Headless, and without its sandbox, which needs user namespaces
// a container seldom has.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { PROJECT_ROOT } from "./cli.ts";

const CANDIDATES = [
  process.env.MODELSHIP_CHROMIUM,
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
];

/** The system chromium, or undefined when there is none (the tests then say so and skip). */
export const CHROMIUM = CANDIDATES.find((path): path is string => !!path && existsSync(path));

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM as string,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

/** Where tests leave screenshots: test/artifacts (ignored by git). */
export function artifactsDir(name: string): string {
  const dir = join(PROJECT_ROOT, "test", "artifacts", name);
  mkdirSync(dir, { recursive: true });
  return dir;
}
