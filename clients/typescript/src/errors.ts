// Typed errors: one class per answer a caller acts on differently. Every error the client
// throws is a SpineError, so `catch (e) { if (e instanceof SpineError) ... }` sees them all.

import type { components } from "./schema.js";

/** An error body: `{"error": ...}`, and on 412 also `current_version`. */
type ErrorBody = Partial<components["schemas"]["Error"] & components["schemas"]["PreconditionFailed"]>;

/** Any failure of a call to the agent. `status` is the HTTP status, absent when no answer came. */
export class SpineError extends Error {
  readonly status: number | undefined;

  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.status = status;
  }
}

/** 400, 413, 431 and other refusals of the request itself: fix the call, do not retry it. */
export class BadRequest extends SpineError {}

/** 401 on TCP: the bearer token is missing or wrong. */
export class Unauthorized extends SpineError {}

/** 404: no such record. */
export class NotFound extends SpineError {}

/**
 * 412: a conditional write lost (If-Match / If-None-Match). Nothing was written.
 * `currentVersion` is the version stored now, or null when the record is absent.
 */
export class PreconditionFailed extends SpineError {
  readonly currentVersion: number | null;

  constructor(message: string, currentVersion: number | null) {
    super(message, 412);
    this.currentVersion = currentVersion;
  }
}

/**
 * The agent could not do it now, and said or showed that nothing was written: 503 (over its
 * connection limit, or the PostgreSQL tier unreachable for a conditional write), 507 (disk
 * full), or no connection at all (socket missing, connection refused) after the retries.
 * A write that may have reached the agent before its connection broke is also reported here,
 * with `maybeApplied` true: read the record back before repeating it.
 */
export class Unavailable extends SpineError {
  readonly maybeApplied: boolean;

  constructor(
    message: string,
    status?: number,
    options?: { cause?: unknown; maybeApplied?: boolean },
  ) {
    super(message, status, options);
    this.maybeApplied = options?.maybeApplied ?? false;
  }
}

/** The error for an HTTP answer that is not a success. */
export function errorFromAnswer(status: number, body: string): SpineError {
  let message = `HTTP ${status}`;
  let currentVersion: number | null = null;
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed !== null && typeof parsed === "object") {
      const fields = parsed as ErrorBody;
      if (typeof fields.error === "string") message = fields.error;
      if (typeof fields.current_version === "number") currentVersion = fields.current_version;
    }
  } catch {
    if (body) message = `HTTP ${status}: ${body.slice(0, 200)}`;
  }
  switch (status) {
    case 401:
      return new Unauthorized(message, status);
    case 404:
      return new NotFound(message, status);
    case 412:
      return new PreconditionFailed(message, currentVersion);
    case 503:
    case 507:
      return new Unavailable(message, status);
    default:
      return status >= 400 && status < 500
        ? new BadRequest(message, status)
        : new SpineError(message, status);
  }
}
