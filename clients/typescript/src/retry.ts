// When a call may be repeated, and how long to wait between tries.
//
// The rule: a retry must never apply a write twice. So
// - reads (GET) are retried on any transport failure and on 503: reading twice is harmless;
// - writes (PUT, DELETE, POST) are retried only when the agent cannot have seen them: the
//   connection was never made (socket missing, connection refused, connect timeout), or the
//   agent answered 503, which it sends only when it wrote nothing (over its connection limit,
//   or the PostgreSQL tier unreachable for a conditional write). A write whose connection
//   broke after it was sent is never retried: it is reported with `maybeApplied`.

/** How many extra tries, and the exponential backoff between them (full jitter). */
export interface RetryOptions {
  /** Extra tries after the first; 0 turns retries off. */
  retries: number;
  /** The first wait's upper bound, in milliseconds; it doubles on every try. */
  minDelayMs: number;
  /** No wait is longer than this. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { retries: 4, minDelayMs: 25, maxDelayMs: 1000 };

/** Reads may be repeated; writes only where the agent cannot have acted. */
export type Safety = "read" | "write";

// Errors of connecting: nothing was sent.
const NOT_CONNECTED = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN", "UND_ERR_CONNECT_TIMEOUT"]);
// Errors of a connection that broke with the request possibly sent.
const BROKEN = new Set(["ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

function codeOf(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** True when the error shows the request never left this process. */
export function neverSent(error: unknown): boolean {
  const code = codeOf(error);
  return code !== undefined && NOT_CONNECTED.has(code);
}

/** True when the connection failed (before or after sending): the agent is unreachable. */
export function isTransportError(error: unknown): boolean {
  const code = codeOf(error);
  return code !== undefined && (NOT_CONNECTED.has(code) || BROKEN.has(code));
}

/** May a call of this safety be tried again after this transport error? */
export function retryableError(safety: Safety, error: unknown): boolean {
  return safety === "read" ? isTransportError(error) : neverSent(error);
}

/** May a call be tried again after this HTTP status? Only 503 means "nothing done, later". */
export function retryableStatus(status: number): boolean {
  return status === 503;
}

/** The wait before try number `attempt` (1 for the first retry). */
export function backoffMs(options: RetryOptions, attempt: number): number {
  const ceiling = Math.min(options.maxDelayMs, options.minDelayMs * 2 ** (attempt - 1));
  return Math.random() * ceiling;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
