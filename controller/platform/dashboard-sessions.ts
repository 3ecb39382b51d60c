// Who may use the dashboard of a running `modelship up`. The admin token stays in admin.json: a
// browser signs in with it (the login page), or with a one-time link `up` prints at start and
// `modelship dashboard` prints again, and gets a session token of its own in exchange. Sessions
// live in memory only (a restart signs every browser out) and are kept as hashes, so that a heap
// dump shows none of them. The admin API takes a session token wherever it takes the admin token.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** How long a one-time link works if nobody opens it. */
export const LINK_LIFETIME_MS = 15 * 60 * 1000;
/** How long a dashboard session lasts after its sign-in: a working day. */
export const SESSION_LIFETIME_MS = 12 * 60 * 60 * 1000;
/** The most links and sessions kept at once; past it, the oldest go first. */
export const MAX_CREDENTIALS = 64;

/** A server's own token (up's admin token, or one a dashboard process keeps to itself). */
export function newAdminToken(): string {
  return randomBytes(24).toString("hex");
}

const hashOf = (secret: string) => createHash("sha256").update(secret).digest("hex");

export interface SignIn {
  /** The session token: the browser's bearer token from now on. */
  token: string;
  expiresAt: string;
}

export type SignInRefusal = "wrong-token" | "used-or-expired-link";

export class DashboardSessions {
  private readonly adminToken: Buffer;
  private readonly now: () => number;
  /** Link code hash → when it stops working. */
  private readonly links = new Map<string, number>();
  /** Session token hash → when it ends. */
  private readonly sessions = new Map<string, number>();

  constructor(adminToken: string, now: () => number = Date.now) {
    this.adminToken = Buffer.from(adminToken);
    this.now = now;
  }

  /** A new one-time code for a link: it signs in once, within LINK_LIFETIME_MS. */
  newLinkCode(): string {
    const code = randomBytes(18).toString("base64url");
    remember(this.links, hashOf(code), this.now(), LINK_LIFETIME_MS);
    return code;
  }

  /**
   * Exchanges the admin token, or a link's code (which stops working then), for a session.
   * `credential` says which one the browser presents.
   */
  signIn(credential: { token?: unknown; code?: unknown }): SignIn | SignInRefusal {
    if (typeof credential.code === "string") {
      const hash = hashOf(credential.code);
      const until = this.links.get(hash);
      // A link works once: it is gone whether it was still good or not.
      this.links.delete(hash);
      if (until === undefined || until <= this.now()) return "used-or-expired-link";
      return this.newSession();
    }
    if (typeof credential.token === "string" && this.isAdminToken(credential.token)) {
      return this.newSession();
    }
    return "wrong-token";
  }

  /** Whether `token` is the admin token or a session's that has not ended. */
  accepts(token: string): boolean {
    if (this.isAdminToken(token)) return true;
    const until = this.sessions.get(hashOf(token));
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.sessions.delete(hashOf(token));
    return false;
  }

  /** Ends a session (signing out); the admin token itself cannot be ended this way. */
  signOut(token: string): boolean {
    return this.sessions.delete(hashOf(token));
  }

  isAdminToken(token: string): boolean {
    const presented = Buffer.from(token);
    return (
      presented.length === this.adminToken.length && timingSafeEqual(presented, this.adminToken)
    );
  }

  private newSession(): SignIn {
    const token = randomBytes(24).toString("base64url");
    const until = remember(this.sessions, hashOf(token), this.now(), SESSION_LIFETIME_MS);
    return { token, expiresAt: new Date(until).toISOString() };
  }
}

/**
 * Adds an entry that ends `lifetimeMs` from `now`, first dropping the ended ones and, past the
 * bound, the oldest. Returns when it ends.
 */
function remember(
  entries: Map<string, number>,
  hash: string,
  now: number,
  lifetimeMs: number,
): number {
  for (const [key, end] of entries) if (end <= now) entries.delete(key);
  while (entries.size >= MAX_CREDENTIALS) {
    const oldest = entries.keys().next().value as string;
    entries.delete(oldest);
  }
  entries.set(hash, now + lifetimeMs);
  return now + lifetimeMs;
}
