// The agent's HTTP API as typed methods, over undici: a unix socket by default, loopback TCP
// with a bearer token as the option. Every method goes through call(), which owns retries and
// error mapping, so a new endpoint (bulk, transactions) is one short method.

import { Pool } from "undici";
import type { Dispatcher } from "undici";

import { errorFromAnswer, SpineError, Unavailable } from "./errors.js";
import {
  backoffMs,
  DEFAULT_RETRY,
  neverSent,
  retryableError,
  retryableStatus,
  sleep,
} from "./retry.js";
import type { RetryOptions, Safety } from "./retry.js";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
type RecordPath = paths["/v1/records/{collection}/{key}"];

/** Any JSON value the agent keeps (see the OpenAPI document for its limits). */
export type Value = Schemas["Value"];
export type Stored = Schemas["Stored"];
export type Deleted = Schemas["Deleted"];
export type RecordList<T = Value> = Omit<Schemas["RecordList"], "records"> & {
  records: Record<string, T>;
};
export type Status = Schemas["Status"];
export type Health = Schemas["Health"];
export type TierReport = Schemas["TierReport"];
export type Backup = Schemas["Backup"];
export type Flush = Schemas["Flush"];
/** critical, session or cache: how durable a put is (the collection's class when omitted). */
export type PersistenceClass = NonNullable<
  NonNullable<RecordPath["put"]["parameters"]["query"]>["class"]
>;
export type ListQuery = NonNullable<
  paths["/v1/records/{collection}"]["get"]["parameters"]["query"]
>;

/** A record's value with its version (the ETag, a strictly increasing integer). */
export interface Versioned<T = Value> {
  value: T;
  version: number;
}

export interface PutOptions {
  /** The persistence class; the collection's own class when omitted. */
  class?: PersistenceClass;
  /** Write only if the stored version is still this one (If-Match), else PreconditionFailed. */
  ifMatch?: number;
  /** Write only if the record does not exist (If-None-Match: *), else PreconditionFailed. */
  ifAbsent?: boolean;
}

export interface DeleteOptions {
  /** Delete only if the stored version is still this one, else PreconditionFailed. */
  ifMatch?: number;
}

export interface ClientOptions {
  /** The agent's unix socket (api.socket). Give this or `tcp`. */
  socketPath?: string;
  /** Loopback TCP (api.tcp_port) with the bearer token of api.token_file. */
  tcp?: { port: number; token: string; host?: string };
  /** Keep-alive connections kept open at most (concurrent requests beyond wait). */
  connections?: number;
  /** No answer within this many milliseconds fails the call. */
  timeoutMs?: number;
  /**
   * Idle connections are closed after this many milliseconds. Keep it below the agent's
   * api.idle_timeout (5 s by default), so this side closes first.
   */
  keepAliveTimeoutMs?: number;
  /** Retries with backoff, where a retry is safe (see retry.ts). */
  retry?: Partial<RetryOptions>;
}

export const DEFAULT_CONNECTIONS = 8;
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_KEEP_ALIVE_MS = 2_000;

const JSON_BODY = { "content-type": "application/json" };

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

interface CallOptions {
  body?: string;
  headers?: Record<string, string>;
  /** Statuses handed back to the caller instead of thrown (e.g. 404 for find()). */
  expect?: number;
}

/** The path of a collection or a record, each name escaped whole. */
export function recordPath(collection: string, key?: string): string {
  const base = `/v1/records/${encodeURIComponent(collection)}`;
  return key === undefined ? base : `${base}/${encodeURIComponent(key)}`;
}

/** The version in an ETag header: `"<decimal>"`. */
export function parseETag(header: string | string[] | undefined): number {
  const text = Array.isArray(header) ? header[0] : header;
  const match = text === undefined ? null : /^"(\d{1,19})"$/.exec(text);
  const version = match ? Number(match[1]) : NaN;
  if (!Number.isSafeInteger(version)) {
    throw new SpineError(
      `the agent sent ETag ${JSON.stringify(text ?? null)}; expected a quoted decimal version`,
    );
  }
  return version;
}

function formatETag(version: number): string {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new TypeError(`version ${version} must be a non-negative integer (an ETag)`);
  }
  return `"${version}"`;
}

function describe(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === "string" ? `${code}: ${message}` : message;
}

/** One agent, many concurrent calls over a small pool of keep-alive connections. */
export class SpineClient {
  private readonly pool: Pool;
  private readonly baseHeaders: Record<string, string>;
  private readonly retry: RetryOptions;
  /** Where the agent is: the socket path or host:port. */
  readonly address: string;

  constructor(options: ClientOptions) {
    if ((options.socketPath === undefined) === (options.tcp === undefined)) {
      throw new TypeError("give the agent's socketPath or tcp, not both");
    }
    const common = {
      connections: options.connections ?? DEFAULT_CONNECTIONS,
      headersTimeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      bodyTimeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_MS,
      keepAliveMaxTimeout: options.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_MS,
    };
    if (options.tcp !== undefined) {
      const host = options.tcp.host ?? "127.0.0.1";
      this.address = `${host}:${options.tcp.port}`;
      this.pool = new Pool(`http://${this.address}`, common);
      this.baseHeaders = { authorization: `Bearer ${options.tcp.token}` };
    } else {
      this.address = options.socketPath as string;
      this.pool = new Pool("http://localhost", { ...common, socketPath: options.socketPath });
      this.baseHeaders = {};
    }
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
  }

  // --- records -----------------------------------------------------------------------------

  /** A record's value; NotFound when there is none. */
  async get<T = Value>(collection: string, key: string): Promise<T> {
    const answer = await this.call("GET", recordPath(collection, key), "read");
    return JSON.parse(answer.text) as T;
  }

  /** A record's value, or undefined when there is none. */
  async find<T = Value>(collection: string, key: string): Promise<T | undefined> {
    const answer = await this.call("GET", recordPath(collection, key), "read", { expect: 404 });
    return answer.status === 404 ? undefined : (JSON.parse(answer.text) as T);
  }

  /** A record's value and version (its ETag); NotFound when there is none. */
  async getVersioned<T = Value>(collection: string, key: string): Promise<Versioned<T>> {
    const answer = await this.call("GET", recordPath(collection, key), "read");
    return { value: JSON.parse(answer.text) as T, version: parseETag(answer.headers.etag) };
  }

  /** Store a value; a critical record is durable when this resolves. */
  async put(
    collection: string,
    key: string,
    value: unknown,
    options: PutOptions = {},
  ): Promise<Stored> {
    let path = recordPath(collection, key);
    if (options.class !== undefined) path += `?class=${encodeURIComponent(options.class)}`;
    let headers: Record<string, string> = JSON_BODY;
    if (options.ifMatch !== undefined && options.ifAbsent) {
      throw new TypeError("ifMatch and ifAbsent together: give one of them");
    }
    if (options.ifMatch !== undefined) {
      headers = { ...JSON_BODY, "if-match": formatETag(options.ifMatch) };
    } else if (options.ifAbsent) {
      headers = { ...JSON_BODY, "if-none-match": "*" };
    }
    const body = JSON.stringify(value);
    if (body === undefined) throw new TypeError(`a ${typeof value} is not a JSON value`);
    const answer = await this.call("PUT", path, "write", { body, headers });
    return JSON.parse(answer.text) as Stored;
  }

  /** Store only if the record is still at `version`; PreconditionFailed otherwise. */
  putIfMatch(
    collection: string,
    key: string,
    value: unknown,
    version: number,
    options: Omit<PutOptions, "ifMatch" | "ifAbsent"> = {},
  ): Promise<Stored> {
    return this.put(collection, key, value, { ...options, ifMatch: version });
  }

  /** Create only: PreconditionFailed (currentVersion set) if the record exists. */
  putIfAbsent(
    collection: string,
    key: string,
    value: unknown,
    options: Omit<PutOptions, "ifMatch" | "ifAbsent"> = {},
  ): Promise<Stored> {
    return this.put(collection, key, value, { ...options, ifAbsent: true });
  }

  /** Delete a record from every tier; NotFound when there is none. */
  async delete(collection: string, key: string, options: DeleteOptions = {}): Promise<Deleted> {
    const headers =
      options.ifMatch === undefined ? undefined : { "if-match": formatETag(options.ifMatch) };
    const answer = await this.call("DELETE", recordPath(collection, key), "write", { headers });
    return JSON.parse(answer.text) as Deleted;
  }

  /** Delete only if the record is still at `version`; PreconditionFailed otherwise. */
  deleteIfMatch(collection: string, key: string, version: number): Promise<Deleted> {
    return this.delete(collection, key, { ifMatch: version });
  }

  /** Records of a collection sorted by key, at most `limit` (1000 by default). */
  async list<T = Value>(collection: string, query: ListQuery = {}): Promise<RecordList<T>> {
    const params = new URLSearchParams();
    if (query.prefix !== undefined) params.set("prefix", query.prefix);
    if (query.limit !== undefined) params.set("limit", String(query.limit));
    const search = params.size ? `?${params.toString()}` : "";
    const answer = await this.call("GET", recordPath(collection) + search, "read");
    return JSON.parse(answer.text) as RecordList<T>;
  }

  // --- the agent ---------------------------------------------------------------------------

  async health(): Promise<Health> {
    return JSON.parse((await this.call("GET", "/v1/health", "read")).text) as Health;
  }

  async status(): Promise<Status> {
    return JSON.parse((await this.call("GET", "/v1/status", "read")).text) as Status;
  }

  /** Run a tiering pass now. */
  async tier(): Promise<TierReport> {
    return JSON.parse((await this.call("POST", "/v1/tier", "write")).text) as TierReport;
  }

  /** Commit critical changes to git and push now. */
  async backup(): Promise<Backup> {
    return JSON.parse((await this.call("POST", "/v1/backup", "write")).text) as Backup;
  }

  /** Write everything to disk, commit and push. */
  async flush(): Promise<Flush> {
    return JSON.parse((await this.call("POST", "/v1/flush", "write")).text) as Flush;
  }

  /** Close the connections; calls after this fail. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  // --- the one request path ----------------------------------------------------------------

  private async call(
    method: Dispatcher.HttpMethod,
    path: string,
    safety: Safety,
    options: CallOptions = {},
  ): Promise<Answer> {
    const headers = options.headers
      ? { ...this.baseHeaders, ...options.headers }
      : this.baseHeaders;
    for (let attempt = 0; ; attempt++) {
      let answer: Answer;
      try {
        const response = await this.pool.request({ method, path, headers, body: options.body });
        answer = {
          status: response.statusCode,
          headers: response.headers,
          text: await response.body.text(),
        };
      } catch (error) {
        if (attempt < this.retry.retries && retryableError(safety, error)) {
          await sleep(backoffMs(this.retry, attempt + 1));
          continue;
        }
        throw new Unavailable(`${method} ${path} on ${this.address}: ${describe(error)}`, undefined, {
          cause: error,
          maybeApplied: safety === "write" && !neverSent(error),
        });
      }
      if (answer.status < 300 || answer.status === options.expect) return answer;
      if (attempt < this.retry.retries && retryableStatus(answer.status)) {
        await sleep(backoffMs(this.retry, attempt + 1));
        continue;
      }
      throw errorFromAnswer(answer.status, answer.text);
    }
  }
}
