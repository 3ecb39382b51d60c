// git's smart HTTP protocol, served by `git http-backend` as a CGI program on 127.0.0.1: a real
// git server for the sources that fetch from a URL, with the Authorization header under the
// test's control.
import { spawn } from "node:child_process";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface GitServer {
  url: string;
  /** The Authorization header of every request (undefined when absent). */
  authorizations: (string | undefined)[];
  /** When set, requests without exactly this Authorization header get a 401. */
  requireAuthorization: string | undefined;
  close(): Promise<void>;
}

function cgiHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    env[`HTTP_${name.toUpperCase().replace(/-/g, "_")}`] = Array.isArray(value)
      ? value.join(", ")
      : value;
  }
  return env;
}

/** Serves the repositories below `projectRoot` (as `<url>/<name>`) until close(). */
export async function serveGit(projectRoot: string): Promise<GitServer> {
  const state: GitServer = {
    url: "",
    authorizations: [],
    requireAuthorization: undefined,
    close: async () => {},
  };
  const server: Server = createServer((request, response) => {
    const authorization = request.headers.authorization;
    state.authorizations.push(authorization);
    if (state.requireAuthorization !== undefined && authorization !== state.requireAuthorization) {
      // Echo what came, as a careless server might: the source must not repeat it.
      const decoded = authorization?.startsWith("Basic ")
        ? Buffer.from(authorization.slice(6), "base64").toString()
        : "";
      response.writeHead(401, { "WWW-Authenticate": 'Basic realm="git"' });
      response.end(`bad credentials: ${authorization ?? "none"} (${decoded})\n`);
      return;
    }
    const url = new URL(request.url ?? "/", "http://localhost");
    const child = spawn("git", ["http-backend"], {
      env: {
        ...process.env,
        ...cgiHeaders(request.headers),
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: "1",
        GATEWAY_INTERFACE: "CGI/1.1",
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: request.method ?? "GET",
        CONTENT_TYPE: request.headers["content-type"] ?? "",
        CONTENT_LENGTH: request.headers["content-length"] ?? "",
        GIT_PROTOCOL: String(request.headers["git-protocol"] ?? ""),
        REMOTE_ADDR: "127.0.0.1",
      },
    });
    request.pipe(child.stdin);
    const chunks: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.stderr.resume();
    child.on("close", () => {
      const output = Buffer.concat(chunks);
      let end = output.indexOf("\r\n\r\n");
      let separator = 4;
      if (end < 0) {
        end = output.indexOf("\n\n");
        separator = 2;
      }
      if (end < 0) {
        response.writeHead(502);
        response.end("http-backend wrote no headers\n");
        return;
      }
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of output.subarray(0, end).toString("latin1").split(/\r?\n/)) {
        const colon = line.indexOf(":");
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      response.writeHead(status, headers);
      response.end(output.subarray(end + separator));
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () => new Promise<void>((done) => server.close(() => done()));
  return state;
}
