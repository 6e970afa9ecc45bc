// Bulk reads, bulk writes and transactions: the client's camelCase operations turned into the
// agent's wire form, and its answers back. Kept apart from client.ts so the request path stays
// one short method per endpoint; everything here is pure.

import { SpineError } from "./errors.js";
import type { components } from "./schema.js";

type Schemas = components["schemas"];
type PersistenceClass = NonNullable<Schemas["PutOperation"]["class"]>;

/** One record to read in a bulk read. */
export interface RecordName {
  collection: string;
  key: string;
}

/** A record of a bulk read: found with its value and version, or reported missing. */
export type BulkRecord<T = Schemas["Value"]> =
  | { collection: string; key: string; found: true; value: T; version: number }
  | { collection: string; key: string; found: false };

/** A bulk read's answer: every record in the order asked; `missing` counts the absent ones. */
export interface BulkRead<T = Schemas["Value"]> {
  records: BulkRecord<T>[];
  missing: number;
}

/** Store a value; `ttl` (seconds) only on session and cache records. */
export interface PutOp {
  op: "put";
  collection: string;
  key: string;
  value: unknown;
  class?: PersistenceClass;
  ttl?: number;
  /** Only if the record is still at this version. */
  ifMatch?: number;
  /** Only if the record does not exist. */
  ifAbsent?: boolean;
}

/** Delete a record; deleting an absent one is a 404 result in a bulk write, not an error. */
export interface DeleteOp {
  op: "delete";
  collection: string;
  key: string;
  ifMatch?: number;
}

/** A condition on a record a transaction does not write: at `ifMatch`, or absent. */
export interface CheckOp {
  op: "check";
  collection: string;
  key: string;
  ifMatch?: number;
  ifAbsent?: boolean;
}

/** What a bulk write takes. */
export type WriteOp = PutOp | DeleteOp;
/** What a transaction takes. */
export type TransactionOp = PutOp | DeleteOp | CheckOp;

/**
 * One operation's outcome: 200 done, 404 a delete of an absent record, 412 its condition
 * failed and it was not written (`currentVersion` is then the stored version, null if absent).
 * `version` is the record's version afterwards, null once deleted or absent.
 */
export interface OpResult {
  op: "put" | "delete" | "check";
  collection: string;
  key: string;
  status: 200 | 404 | 412;
  version: number | null;
  currentVersion?: number | null;
}

/** A bulk write's or transaction's answer; `ok` is false when any condition failed. */
export interface BatchResult {
  ok: boolean;
  failed: number;
  results: OpResult[];
}

type WireOp = Schemas["PutOperation"] | Schemas["DeleteOperation"] | Schemas["CheckOperation"];

function version(value: number, where: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${where} ${value} must be a non-negative integer (a version)`);
  }
  return value;
}

/** The body of POST /v1/bulk/get. */
export function readBody(names: readonly RecordName[]): string {
  const records: Schemas["RecordName"][] = names.map(({ collection, key }) => ({ collection, key }));
  return JSON.stringify({ records } satisfies Schemas["BulkGetRequest"]);
}

/** One operation in the wire form; a mistake the agent would refuse anyway throws TypeError. */
export function wireOp(op: TransactionOp, index: number): WireOp {
  const where = `operations[${index}]`;
  const wire: Record<string, unknown> = { op: op.op, collection: op.collection, key: op.key };
  if (op.op !== "delete" && op.ifAbsent) {
    if (op.ifMatch !== undefined) {
      throw new TypeError(`${where}: ifMatch and ifAbsent together: give one of them`);
    }
    wire.if_absent = true;
  }
  if (op.ifMatch !== undefined) wire.if_match = version(op.ifMatch, `${where}.ifMatch`);
  if (op.op === "put") {
    if (op.value === undefined || typeof op.value === "function" || typeof op.value === "symbol") {
      throw new TypeError(`${where}.value: a ${typeof op.value} is not a JSON value`);
    }
    wire.value = op.value;
    if (op.class !== undefined) wire.class = op.class;
    if (op.ttl !== undefined) wire.ttl = op.ttl;
  }
  return wire as WireOp;
}

/** The body of POST /v1/bulk/write and /v1/transaction. */
export function operationsBody(ops: readonly TransactionOp[]): string {
  return JSON.stringify({ operations: ops.map(wireOp) });
}

/** A bulk read's answer, as the client hands it on (the wire shape, found or not). */
export function bulkRead<T>(text: string): BulkRead<T> {
  const answer = JSON.parse(text) as Schemas["BulkGetResponse"];
  return answer as unknown as BulkRead<T>;
}

/** A batch answer with its results in camelCase (`current_version` → `currentVersion`). */
export function batchResult(text: string): BatchResult {
  const answer = JSON.parse(text) as Schemas["BatchResponse"];
  if (!Array.isArray(answer.results)) {
    throw new SpineError(`the agent sent a batch answer without results: ${text.slice(0, 200)}`);
  }
  const results = answer.results.map((r): OpResult => {
    const result: OpResult = {
      op: r.op,
      collection: r.collection,
      key: r.key,
      status: r.status,
      version: r.version,
    };
    if (r.status === 412) result.currentVersion = r.current_version ?? null;
    return result;
  });
  return { ok: answer.ok, failed: answer.failed, results };
}
