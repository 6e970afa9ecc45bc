"""The API's OpenAPI document, written out whole: every parameter, body, status code and schema
the agent really answers with. Schemathesis checks it against a live agent (tests/integration/
test_openapi_fuzz.py), and the TypeScript client will be generated from it."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from .batch import MAX_TTL
from .config import DEFAULTS
from .etags import MAX_VERSION
from .records import (
    MAX_COLLECTION_LENGTH,
    MAX_EXACT_INT,
    MAX_KEY_LENGTH,
    MAX_VALUE_DEPTH,
    MIN_EXACT_INT,
    PersistenceClass,
)

JSON = "application/json"
MAX_LIST_LIMIT = 100_000

# The name rules of records.check_collection / check_key, as JSON Schema.
COLLECTION_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_COLLECTION_LENGTH,
    "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]*$",
}
KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_KEY_LENGTH,
    "pattern": "^(?!.*\\.\\.)[^/\\x00]+$",
}
VALUE_DESCRIPTION = (
    f"Any JSON value: nested at most {MAX_VALUE_DEPTH} levels, integers within "
    f"{MIN_EXACT_INT}..{MAX_EXACT_INT} (others are refused with 400, not rounded), numbers with "
    "a fraction or exponent read as IEEE-754 doubles, at most max_value_size bytes. It reads back "
    "in compact form."
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema or _ref("Error")}}}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }


_INT = {"type": "integer"}
_NUM = {"type": "number"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NULLABLE_STR = {"type": "string", "nullable": True}
_NULLABLE_NUM = {"type": "number", "nullable": True}
_CLASS_NAMES = [c.value for c in PersistenceClass]
_VERSION = {"type": "integer", "minimum": 0, "maximum": MAX_VERSION}

SCHEMAS: dict[str, Any] = {
    "Error": {**_obj({"error": _STR}), "additionalProperties": False},
    "Value": {
        "description": VALUE_DESCRIPTION,
        "nullable": True,
        "anyOf": [
            _BOOL,
            _STR,
            {"type": "integer", "minimum": MIN_EXACT_INT, "maximum": MAX_EXACT_INT},
            {"type": "number", "format": "double"},
            {"type": "array", "items": _ref("Value")},
            {"type": "object", "additionalProperties": _ref("Value")},
        ],
    },
    "Stored": _obj(
        {
            "ok": _BOOL,
            "collection": _STR,
            "key": _STR,
            "class": {"enum": _CLASS_NAMES},
            "version": _VERSION,
        }
    ),
    "PreconditionFailed": {
        **_obj({"error": _STR, "current_version": {**_VERSION, "nullable": True}}),
        "additionalProperties": False,
    },
    "Deleted": _obj({"ok": _BOOL, "deleted": _STR}),
    "RecordList": _obj(
        {
            "collection": _STR,
            "records": {"type": "object", "additionalProperties": _ref("Value")},
            "truncated": _BOOL,
        }
    ),
    "Health": _obj({"status": {"enum": ["ok"]}}),
    "Status": _obj(
        {
            "host": _STR,
            "storage_path": _STR,
            "restored_from": _NULLABLE_STR,
            "uptime_s": _NUM,
            "records": _INT,
            "collections": {"type": "object", "additionalProperties": _INT},
            "classes": {"type": "object"},
            "routes": {"type": "object"},
            "journal": _obj({"bytes": _INT}),
            "tiers": {"type": "object"},
            "dirty": {"type": "object"},
            "backup": {"type": "object"},  # only with the git tier
        },
        required=[
            "host",
            "storage_path",
            "restored_from",
            "uptime_s",
            "records",
            "collections",
            "classes",
            "routes",
            "journal",
            "tiers",
            "dirty",
        ],
    ),
    "TierReport": _obj(
        {
            "files_written": _INT,
            "records_written": _INT,
            "evicted": _INT,
            "expired_cache": _INT,
            "expired": _INT,
            "journal_segments_dropped": _INT,
            "seconds": _NUM,
        },
        required=[],
    ),
    "Backup": _obj(
        {"commit": _NULLABLE_STR, "changes": _INT, "pushed": _BOOL}, required=["commit", "changes"]
    ),
    "Flush": _obj(
        {"files_written": _INT, "commit": _NULLABLE_STR, "changes": _INT}, ["files_written"]
    ),
}

_COLLECTION_FIELD = {**COLLECTION_SCHEMA, "description": "the record's collection"}
_TTL = {"type": "integer", "minimum": 1, "maximum": MAX_TTL}
_NAMES = {"collection": COLLECTION_SCHEMA, "key": KEY_SCHEMA}
_MAX_OPS = DEFAULTS["api.max_batch_ops"]


def _strict(properties: dict[str, Any], required: list[str], **extra: Any) -> dict[str, Any]:
    return {**_obj(properties, required), "additionalProperties": False, **extra}


SCHEMAS.update(
    {
        "RecordName": _strict(_NAMES, ["collection", "key"]),
        "BulkGetRequest": _strict(
            {
                "records": {
                    "type": "array",
                    "items": _ref("RecordName"),
                    "minItems": 1,
                    "maxItems": _MAX_OPS,
                    "uniqueItems": True,
                    "description": "at most api.max_batch_ops names, each once",
                }
            },
            ["records"],
        ),
        "BulkRecord": _obj(
            {**_NAMES, "found": _BOOL, "version": _VERSION, "value": _ref("Value")},
            ["collection", "key", "found"],
        ),
        "BulkGetResponse": _obj(
            {"records": {"type": "array", "items": _ref("BulkRecord")}, "missing": _INT}
        ),
        "PutOperation": _strict(
            {
                "op": {"enum": ["put"]},
                **_NAMES,
                "value": _ref("Value"),
                "class": {"type": "string", "enum": _CLASS_NAMES},
                "ttl": {
                    **_TTL,
                    "description": "seconds to live; refused (400) on a critical record",
                },
                "if_match": _VERSION,
                "if_absent": _BOOL,
            },
            ["op", "collection", "key", "value"],
        ),
        "DeleteOperation": _strict(
            {"op": {"enum": ["delete"]}, **_NAMES, "if_match": _VERSION},
            ["op", "collection", "key"],
        ),
        # A condition only (transactions): one of the two conditions is required (a check of
        # nothing is refused, 400), so a check is one of two shapes.
        "CheckOperation": {
            "anyOf": [_ref("CheckIfMatch"), _ref("CheckIfAbsent")],
            "description": "a condition only (transactions): if_match a version, or if_absent",
        },
        "CheckIfMatch": _strict(
            {"op": {"enum": ["check"]}, **_NAMES, "if_match": _VERSION, "if_absent": _BOOL},
            ["op", "collection", "key", "if_match"],
        ),
        "CheckIfAbsent": _strict(
            {
                "op": {"enum": ["check"]},
                **_NAMES,
                "if_match": _VERSION,
                "if_absent": {"enum": [True]},
            },
            ["op", "collection", "key", "if_absent"],
        ),
        "BulkWriteRequest": _strict(
            {
                "operations": {
                    "type": "array",
                    "items": {"oneOf": [_ref("PutOperation"), _ref("DeleteOperation")]},
                    "minItems": 1,
                    "maxItems": _MAX_OPS,
                }
            },
            ["operations"],
        ),
        "TransactionRequest": _strict(
            {
                "operations": {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            _ref("PutOperation"),
                            _ref("DeleteOperation"),
                            _ref("CheckOperation"),
                        ]
                    },
                    "minItems": 1,
                    "maxItems": _MAX_OPS,
                }
            },
            ["operations"],
        ),
        "OperationResult": _obj(
            {
                "op": {"enum": ["put", "delete", "check"]},
                **_NAMES,
                "status": {"type": "integer", "enum": [200, 404, 412]},
                "version": {**_VERSION, "nullable": True},
                "current_version": {**_VERSION, "nullable": True},
            },
            ["op", "collection", "key", "status", "version"],
        ),
        "BatchResponse": _obj(
            {
                "ok": _BOOL,
                "failed": _INT,
                "results": {"type": "array", "items": _ref("OperationResult")},
            }
        ),
        "TransactionFailed": _strict(
            {
                "error": _STR,
                "current_version": {**_VERSION, "nullable": True},
                "index": _INT,
                **_NAMES,
            },
            ["error", "current_version", "index", "collection", "key"],
        ),
    }
)

# Answers any operation can get before it runs: they come from the TCP guard and the HTTP limits.
COMMON = {
    "400": _answer("bad input (on TCP also: a Host header that is not a loopback name)"),
    "401": _answer("on TCP only: the bearer token is missing or wrong"),
    "431": _answer("the request head is over api.max_header_bytes"),
    "503": _answer("over api.max_connections; the connection is closed"),
}
BAD_NAME = _answer("bad collection or key name (also: not valid UTF-8)")
NO_RECORD = _answer("no such record")
DISK_FULL = _answer("the disk refused the write; nothing changed")

COLLECTION = {"name": "collection", "in": "path", "required": True, "schema": COLLECTION_SCHEMA}
ETAG = {
    "ETag": {
        "description": 'The record\'s version as a strong ETag: a quoted decimal, e.g. "17"',
        "schema": _STR,
    }
}


def decimal_at_most(limit: int) -> str:
    """A regular expression for the decimals from 0 to `limit` (leading zeros allowed, as the
    parser allows them): shorter numbers freely, and numbers as long as `limit` digit by digit
    below it. JSON Schema cannot compare a string's number, and a looser pattern let the API
    fuzzer send If-Match versions past 2**63-1 that the agent rightly refuses."""
    digits = str(limit)
    below = [
        f"{digits[:i]}[0-{int(d) - 1}][0-9]{{{len(digits) - i - 1}}}"
        for i, d in enumerate(digits)
        if d != "0"
    ]
    shorter = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    return "(" + "|".join([*shorter, *below, digits]) + ")"


# If-Match: one version, quoted or not (etags.parse_if_match).
VERSION_HEADER_PATTERN = '^("{0}"|{0})$'.format(decimal_at_most(MAX_VERSION))
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Write only if the stored version is this one: one strong ETag, e.g. "17" '
    "(the quotes may be left out). Else 412, nothing written (also when the record is absent).",
    "schema": {"type": "string", "maxLength": 64, "pattern": VERSION_HEADER_PATTERN},
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "`*`: create only; 412 if the record exists (with If-Match too: 412 always).",
    "schema": {"type": "string", "enum": ["*"]},
}
PRECONDITION_FAILED = {
    **_answer(
        "the condition failed, nothing written; current_version is the stored version (null: "
        "absent), also in the ETag header when the record exists",
        _ref("PreconditionFailed"),
    ),
    "headers": ETAG,
}
UNAVAILABLE = (
    "over api.max_connections (the connection is closed), or the store that decides a "
    "conditional write is unreachable (nothing written)"
)
BAD_CONDITION = "a malformed If-Match or If-None-Match (the message names the header)"
KEY = {"name": "key", "in": "path", "required": True, "schema": KEY_SCHEMA}


BAD_BATCH = (
    "bad body: not the documented shape, a bad name, value, ttl or condition, or one record "
    "named twice (the message names the operation and field); nothing written"
)
BATCH_TOO_LARGE = (
    "over api.max_batch_ops operations, a body over api.max_batch_bytes, or a value over "
    "max_value_size; nothing written"
)


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema)}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**COMMON, **responses}, **extra}


PATHS: dict[str, Any] = {
    "/v1/health": {
        "get": _op(
            "Liveness; answers while the agent serves.", {"200": _answer("ok", _ref("Health"))}
        )
    },
    "/v1/openapi.json": {
        "get": _op("This document.", {"200": _answer("OpenAPI 3.0", {"type": "object"})})
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics.",
            {
                "200": {
                    "description": "Prometheus text format 0.0.4",
                    "content": {"text/plain": {"schema": _STR}},
                }
            },
        )
    },
    "/v1/status": {
        "get": _op(
            "Tiers, counts, bytes, dirty records, last backup, last push and remote lag.",
            {"200": _answer("status document", _ref("Status"))},
        )
    },
    "/v1/records/{collection}": {
        "get": _op(
            "Records of a collection, sorted by key.",
            {
                "200": _answer("records", _ref("RecordList")),
                "400": _answer("bad collection name, or limit not an integer in range"),
            },
            parameters=[
                COLLECTION,
                {"name": "prefix", "in": "query", "required": False, "schema": _STR},
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
                },
            ],
        )
    },
    "/v1/records/{collection}/{key}": {
        "parameters": [COLLECTION, KEY],
        "get": _op(
            "Read one record's JSON value; the ETag header carries its version.",
            {
                "200": {**_answer("the value", _ref("Value")), "headers": ETAG},
                "400": BAD_NAME,
                "404": NO_RECORD,
            },
        ),
        "put": _op(
            "Store a JSON value; critical records are durable when this answers. With If-Match "
            "or If-None-Match: * the write is conditional.",
            {
                "200": {**_answer("stored", _ref("Stored")), "headers": ETAG},
                "400": _answer(
                    "bad name, bad JSON, a value it cannot keep exactly, bad class, or "
                    + BAD_CONDITION
                ),
                "412": PRECONDITION_FAILED,
                "413": _answer("value over max_value_size"),
                "503": _answer(UNAVAILABLE),
                "507": DISK_FULL,
            },
            parameters=[
                IF_MATCH,
                IF_NONE_MATCH,
                {
                    "name": "class",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": _CLASS_NAMES},
                },
                {
                    "name": "ttl",
                    "in": "query",
                    "required": False,
                    "description": "seconds to live: the record is gone from reads once they "
                    "pass, and from every tier by the next pass; refused (400) on a critical "
                    "record",
                    "schema": _TTL,
                },
            ],
            requestBody={"required": True, "content": {JSON: {"schema": _ref("Value")}}},
        ),
        "delete": _op(
            "Delete one record from every tier it travels to; with If-Match, only that version.",
            {
                "200": _answer("deleted", _ref("Deleted")),
                "400": _answer("bad collection or key name, or " + BAD_CONDITION),
                "404": NO_RECORD,
                "412": PRECONDITION_FAILED,
                "503": _answer(UNAVAILABLE),
                "507": DISK_FULL,
            },
            parameters=[IF_MATCH],
        ),
    },
    "/v1/bulk/get": {
        "post": _op(
            "Read many records of one or several collections; a missing one is listed with "
            "found: false, not an error.",
            {
                "200": _answer("the records, in the order asked", _ref("BulkGetResponse")),
                "400": _answer(BAD_BATCH),
                "405": _answer("not POST"),
                "413": _answer(BATCH_TOO_LARGE),
            },
            requestBody=_body("BulkGetRequest"),
        )
    },
    "/v1/bulk/write": {
        "post": _op(
            "Apply many puts and deletes, each decided on its own: a failed condition is that "
            "operation's status 412 and the others are written. One journal write and one "
            "fdatasync for all of them; durable when this answers.",
            {
                "200": _answer("one result per operation, in order", _ref("BatchResponse")),
                "400": _answer(BAD_BATCH + "; a ttl on a critical record"),
                "405": _answer("not POST"),
                "413": _answer(BATCH_TOO_LARGE),
                "503": _answer(UNAVAILABLE),
                "507": DISK_FULL,
            },
            requestBody=_body("BulkWriteRequest"),
        )
    },
    "/v1/transaction": {
        "post": _op(
            "Apply puts, deletes and checks all or nothing. If a condition fails, nothing is "
            "written and the 412 names the first failing record. Durable when this answers.",
            {
                "200": _answer("one result per operation, in order", _ref("BatchResponse")),
                "400": _answer(BAD_BATCH + "; a ttl on a critical record"),
                "405": _answer("not POST"),
                "412": _answer(
                    "a condition failed, nothing written: the first failing record",
                    _ref("TransactionFailed"),
                ),
                "413": _answer(BATCH_TOO_LARGE),
                "503": _answer(UNAVAILABLE),
                "507": DISK_FULL,
            },
            requestBody=_body("TransactionRequest"),
        )
    },
    "/v1/tier": {
        "post": _op(
            "Run a tiering pass now.",
            {"200": _answer("pass report", _ref("TierReport")), "507": DISK_FULL},
        )
    },
    "/v1/backup": {
        "post": _op(
            "Commit critical changes to git and push now.",
            {"200": _answer("commit and push result", _ref("Backup")), "507": DISK_FULL},
        )
    },
    "/v1/flush": {
        "post": _op(
            "Write everything to disk, commit and push (the shutdown and preemption hook).",
            {"200": _answer("flush result", _ref("Flush")), "507": DISK_FULL},
        )
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "spine-agent",
            "version": "1",
            "description": "The storage agent's local API (unix socket; optionally loopback "
            "TCP, which needs the bearer token and a loopback Host header).",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # Checked on TCP only: on the unix socket, the socket's file mode is the access control.
        "security": [{"bearer": []}],
    }


def main() -> None:
    """`python -m bootstrap.openapi` prints the document: the TypeScript client's types are
    generated from it (clients/typescript, `npm run gen`), and its test fails when they differ."""
    sys.stdout.buffer.write(
        orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


if __name__ == "__main__":
    main()
