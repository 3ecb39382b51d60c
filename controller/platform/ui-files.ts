// The dashboard's built files (controller/ui/dist, made by `npm run build`), served at /ui. They
// are read and compressed once, when the server starts: a few hundred kilobytes, and no file
// system access per request. Every answer carries a strict Content-Security-Policy: the page
// runs only its own bundled scripts, talks only to the API it came from, and cannot be framed.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const UI_PREFIX = "/ui";

/** Where `npm run build` writes the dashboard. */
export const UI_DIST = fileURLToPath(new URL("../ui/dist/", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
};

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
} as const;

interface UiFile {
  contentType: string;
  body: Buffer;
  gzipped: Buffer;
  /** Vite's assets have a content hash in their name: they never change under that name. */
  immutable: boolean;
}

export interface UiFiles {
  /** Answers a GET or HEAD under /ui; false when the path is not the dashboard's. */
  serve(request: IncomingMessage, response: ServerResponse, pathname: string): boolean;
  /** Whether the dashboard is built (else /ui says how to build it). */
  readonly built: boolean;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

export function loadUiFiles(dist: string = UI_DIST): UiFiles {
  const files = new Map<string, UiFile>();
  if (existsSync(join(dist, "index.html"))) {
    for (const path of walk(dist)) {
      const body = readFileSync(path);
      const name = relative(dist, path).split(sep).join("/");
      files.set(`/${name}`, {
        contentType: CONTENT_TYPES[extname(path)] ?? "application/octet-stream",
        body,
        gzipped: gzipSync(body, { level: 9 }),
        immutable: name.startsWith("assets/"),
      });
    }
  }
  const index = files.get("/index.html");
  return {
    built: index !== undefined,
    serve(request, response, pathname) {
      if (pathname !== UI_PREFIX && !pathname.startsWith(`${UI_PREFIX}/`)) return false;
      if (request.method !== "GET" && request.method !== "HEAD") {
        response.writeHead(405, { allow: "GET, HEAD", ...SECURITY_HEADERS }).end();
        return true;
      }
      // Relative asset paths resolve against /ui/, not /.
      if (pathname === UI_PREFIX) {
        response.writeHead(308, { location: `${UI_PREFIX}/`, ...SECURITY_HEADERS }).end();
        return true;
      }
      if (!index) {
        response
          .writeHead(503, { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS })
          .end("the dashboard is not built: run `npm run build` in the modelship checkout\n");
        return true;
      }
      const rest = pathname.slice(UI_PREFIX.length);
      // The pages are routed in the page itself (#/models/…), so /ui/ is the one page there is.
      const file = rest === "/" ? index : files.get(rest);
      if (!file) {
        response
          .writeHead(404, { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS })
          .end(`no file ${pathname} in the dashboard\n`);
        return true;
      }
      const gzip = /\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""));
      const body = gzip ? file.gzipped : file.body;
      response.writeHead(200, {
        "content-type": file.contentType,
        "content-length": body.length,
        "cache-control": file.immutable ? "public, max-age=31536000, immutable" : "no-cache",
        vary: "accept-encoding",
        ...(gzip ? { "content-encoding": "gzip" } : {}),
        ...SECURITY_HEADERS,
      });
      response.end(request.method === "HEAD" ? undefined : body);
      return true;
    },
  };
}
