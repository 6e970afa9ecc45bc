// @super-spine-kit/agent-client: a typed client for spine-agent's local HTTP API.
export { SpineClient, recordPath, parseETag } from "./client.js";
export type {
  Backup,
  ClientOptions,
  DeleteOptions,
  Deleted,
  Flush,
  Health,
  ListQuery,
  PersistenceClass,
  PutOptions,
  RecordList,
  Status,
  Stored,
  TierReport,
  Value,
  Versioned,
} from "./client.js";
export {
  BadRequest,
  NotFound,
  PreconditionFailed,
  SpineError,
  Unauthorized,
  Unavailable,
} from "./errors.js";
export { DEFAULT_RETRY } from "./retry.js";
export type { RetryOptions } from "./retry.js";
export type { components, paths } from "./schema.js";
