// Generated from the agent's OpenAPI document by `npm run gen` (scripts/gen.mjs).
// Do not edit: test/schema.test.ts fails when this file is stale.

export type JsonValue = boolean | string | number | null | JsonValue[] | { [key: string]: JsonValue };

export interface paths {
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Prometheus metrics. */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description Prometheus text format 0.0.4 */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "text/plain": string;
                    };
                };
                /** @description bad input (on TCP also: a Host header that is not a loopback name) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/backup": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Commit critical changes to git and push now. */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description commit and push result */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Backup"];
                    };
                };
                /** @description bad input (on TCP also: a Host header that is not a loopback name) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the disk refused the write; nothing changed */
                507: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/bulk/get": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Read many records of one or several collections; a missing one is listed with found: false, not an error. */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["BulkGetRequest"];
                };
            };
            responses: {
                /** @description the records, in the order asked */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["BulkGetResponse"];
                    };
                };
                /** @description bad body: not the documented shape, a bad name, value, ttl or condition, or one record named twice (the message names the operation and field); nothing written */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description not POST */
                405: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_batch_ops operations, a body over api.max_batch_bytes, or a value over max_value_size; nothing written */
                413: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/bulk/write": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Apply many puts and deletes, each decided on its own: a failed condition is that operation's status 412 and the others are written. One journal write and one fdatasync for all of them; durable when this answers. */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["BulkWriteRequest"];
                };
            };
            responses: {
                /** @description one result per operation, in order */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["BatchResponse"];
                    };
                };
                /** @description bad body: not the documented shape, a bad name, value, ttl or condition, or one record named twice (the message names the operation and field); nothing written; a ttl on a critical record */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description not POST */
                405: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_batch_ops operations, a body over api.max_batch_bytes, or a value over max_value_size; nothing written */
                413: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections (the connection is closed), or the store that decides a conditional write is unreachable (nothing written) */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the disk refused the write; nothing changed */
                507: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/flush": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Write everything to disk, commit and push (the shutdown and preemption hook). */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description flush result */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Flush"];
                    };
                };
                /** @description bad input (on TCP also: a Host header that is not a loopback name) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the disk refused the write; nothing changed */
                507: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/health": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Liveness; answers while the agent serves. */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description ok */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Health"];
                    };
                };
                /** @description bad input (on TCP also: a Host header that is not a loopback name) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/openapi.json": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** This document. */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OpenAPI 3.0 */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": Record<string, unknown>;
                    };
                };
                /** @description bad input (on TCP also: a Host header that is not a loopback name) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/records/{collection}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Records of a collection, sorted by key. */
        get: {
            parameters: {
                query?: {
                    prefix?: string;
                    limit?: number;
                };
                header?: never;
                path: {
                    collection: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description records */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["RecordList"];
                    };
                };
                /** @description bad collection name, or limit not an integer in range */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/records/{collection}/{key}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                collection: string;
                key: string;
            };
            cookie?: never;
        };
        /** Read one record's JSON value; the ETag header carries its version. */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    collection: string;
                    key: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description the value */
                200: {
                    headers: {
                        /** @description The record's version as a strong ETag: a quoted decimal, e.g. "17" */
                        ETag?: string;
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Value"];
                    };
                };
                /** @description bad collection or key name (also: not valid UTF-8) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description no such record */
                404: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        /** Store a JSON value; critical records are durable when this answers. With If-Match or If-None-Match: * the write is conditional. */
        put: {
            parameters: {
                query?: {
                    class?: "critical" | "session" | "cache";
                    /** @description seconds to live: the record is gone from reads once they pass, and from every tier by the next pass; refused (400) on a critical record */
                    ttl?: number;
                };
                header?: {
                    /** @description Write only if the stored version is this one: one strong ETag, e.g. "17" (the quotes may be left out). Else 412, nothing written (also when the record is absent). */
                    "If-Match"?: string;
                    /** @description `*`: create only; 412 if the record exists (with If-Match too: 412 always). */
                    "If-None-Match"?: "*";
                };
                path: {
                    collection: string;
                    key: string;
                };
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["Value"];
                };
            };
            responses: {
                /** @description stored */
                200: {
                    headers: {
                        /** @description The record's version as a strong ETag: a quoted decimal, e.g. "17" */
                        ETag?: string;
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Stored"];
                    };
                };
                /** @description bad name, bad JSON, a value it cannot keep exactly, bad class, or a malformed If-Match or If-None-Match (the message names the header) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the condition failed, nothing written; current_version is the stored version (null: absent), also in the ETag header when the record exists */
                412: {
                    headers: {
                        /** @description The record's version as a strong ETag: a quoted decimal, e.g. "17" */
                        ETag?: string;
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["PreconditionFailed"];
                    };
                };
                /** @description value over max_value_size */
                413: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections (the connection is closed), or the store that decides a conditional write is unreachable (nothing written) */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the disk refused the write; nothing changed */
                507: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        post?: never;
        /** Delete one record from every tier it travels to; with If-Match, only that version. */
        delete: {
            parameters: {
                query?: never;
                header?: {
                    /** @description Write only if the stored version is this one: one strong ETag, e.g. "17" (the quotes may be left out). Else 412, nothing written (also when the record is absent). */
                    "If-Match"?: string;
                };
                path: {
                    collection: string;
                    key: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description deleted */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Deleted"];
                    };
                };
                /** @description bad collection or key name, or a malformed If-Match or If-None-Match (the message names the header) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description no such record */
                404: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the condition failed, nothing written; current_version is the stored version (null: absent), also in the ETag header when the record exists */
                412: {
                    headers: {
                        /** @description The record's version as a strong ETag: a quoted decimal, e.g. "17" */
                        ETag?: string;
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["PreconditionFailed"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections (the connection is closed), or the store that decides a conditional write is unreachable (nothing written) */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the disk refused the write; nothing changed */
                507: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/status": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Tiers, counts, bytes, dirty records, last backup, last push and remote lag. */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description status document */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Status"];
                    };
                };
                /** @description bad input (on TCP also: a Host header that is not a loopback name) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/tier": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Run a tiering pass now. */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description pass report */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["TierReport"];
                    };
                };
                /** @description bad input (on TCP also: a Host header that is not a loopback name) */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections; the connection is closed */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the disk refused the write; nothing changed */
                507: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/transaction": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Apply puts, deletes and checks all or nothing. If a condition fails, nothing is written and the 412 names the first failing record. Durable when this answers. */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["TransactionRequest"];
                };
            };
            responses: {
                /** @description one result per operation, in order */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["BatchResponse"];
                    };
                };
                /** @description bad body: not the documented shape, a bad name, value, ttl or condition, or one record named twice (the message names the operation and field); nothing written; a ttl on a critical record */
                400: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description on TCP only: the bearer token is missing or wrong */
                401: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description not POST */
                405: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description a condition failed, nothing written: the first failing record */
                412: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["TransactionFailed"];
                    };
                };
                /** @description over api.max_batch_ops operations, a body over api.max_batch_bytes, or a value over max_value_size; nothing written */
                413: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the request head is over api.max_header_bytes */
                431: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description over api.max_connections (the connection is closed), or the store that decides a conditional write is unreachable (nothing written) */
                503: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
                /** @description the disk refused the write; nothing changed */
                507: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Error"];
                    };
                };
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        Backup: {
            changes: number;
            commit: string | null;
            pushed?: boolean;
        };
        BatchResponse: {
            failed: number;
            ok: boolean;
            results: components["schemas"]["OperationResult"][];
        };
        BulkGetRequest: {
            /** @description at most api.max_batch_ops names, each once */
            records: components["schemas"]["RecordName"][];
        };
        BulkGetResponse: {
            missing: number;
            records: components["schemas"]["BulkRecord"][];
        };
        BulkRecord: {
            collection: string;
            found: boolean;
            key: string;
            value?: components["schemas"]["Value"];
            version?: number;
        };
        BulkWriteRequest: {
            operations: (components["schemas"]["PutOperation"] | components["schemas"]["DeleteOperation"])[];
        };
        CheckIfAbsent: {
            collection: string;
            /** @enum {unknown} */
            if_absent: true;
            if_match?: number;
            key: string;
            /** @enum {unknown} */
            op: "check";
        };
        CheckIfMatch: {
            collection: string;
            if_absent?: boolean;
            if_match: number;
            key: string;
            /** @enum {unknown} */
            op: "check";
        };
        /** @description a condition only (transactions): if_match a version, or if_absent */
        CheckOperation: components["schemas"]["CheckIfMatch"] | components["schemas"]["CheckIfAbsent"];
        DeleteOperation: {
            collection: string;
            if_match?: number;
            key: string;
            /** @enum {unknown} */
            op: "delete";
        };
        Deleted: {
            deleted: string;
            ok: boolean;
        };
        Error: {
            error: string;
        };
        Flush: {
            changes?: number;
            commit?: string | null;
            files_written: number;
        };
        Health: {
            /** @enum {unknown} */
            status: "ok";
        };
        OperationResult: {
            collection: string;
            current_version?: number | null;
            key: string;
            /** @enum {unknown} */
            op: "put" | "delete" | "check";
            /** @enum {integer} */
            status: 200 | 404 | 412;
            version: number | null;
        };
        PreconditionFailed: {
            current_version: number | null;
            error: string;
        };
        PutOperation: {
            /** @enum {string} */
            class?: "critical" | "session" | "cache";
            collection: string;
            if_absent?: boolean;
            if_match?: number;
            key: string;
            /** @enum {unknown} */
            op: "put";
            /** @description seconds to live; refused (400) on a critical record */
            ttl?: number;
            value: components["schemas"]["Value"];
        };
        RecordList: {
            collection: string;
            records: {
                [key: string]: components["schemas"]["Value"];
            };
            truncated: boolean;
        };
        RecordName: {
            collection: string;
            key: string;
        };
        Status: {
            backup?: Record<string, unknown>;
            classes: Record<string, unknown>;
            collections: {
                [key: string]: number;
            };
            dirty: Record<string, unknown>;
            host: string;
            journal: {
                bytes: number;
            };
            records: number;
            restored_from: string | null;
            routes: Record<string, unknown>;
            storage_path: string;
            tiers: Record<string, unknown>;
            uptime_s: number;
        };
        Stored: {
            /** @enum {unknown} */
            class: "critical" | "session" | "cache";
            collection: string;
            key: string;
            ok: boolean;
            version: number;
        };
        TierReport: {
            evicted?: number;
            expired?: number;
            expired_cache?: number;
            files_written?: number;
            journal_segments_dropped?: number;
            records_written?: number;
            seconds?: number;
        };
        TransactionFailed: {
            collection: string;
            current_version: number | null;
            error: string;
            index: number;
            key: string;
        };
        TransactionRequest: {
            operations: (components["schemas"]["PutOperation"] | components["schemas"]["DeleteOperation"] | components["schemas"]["CheckOperation"])[];
        };
        /** @description Any JSON value: nested at most 128 levels, integers within -9223372036854775808..18446744073709551615 (others are refused with 400, not rounded), numbers with a fraction or exponent read as IEEE-754 doubles, at most max_value_size bytes. It reads back in compact form. */
        Value: JsonValue;
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export type operations = Record<string, never>;
