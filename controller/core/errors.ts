// Errors the ports throw that callers act on, the same on both platforms.

/** The object is not there (a 404 from the API server, or not in the local store). */
export class NotFoundError extends Error {
  readonly status = 404;
  constructor(message: string) {
    super(message);
    this.name = "NotFoundError";
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof NotFoundError || (error as { status?: unknown })?.status === 404;
}
