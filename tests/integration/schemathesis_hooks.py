"""Schemathesis hooks for test_openapi_fuzz: the answers the OpenAPI document cannot express,
each accepted only in its documented form (its status, its path and its one error line).

- A time to live on a critical record is refused (400), on PUT and in a batch's put: a record's
  class depends on the agent's configuration (the collection's default class), which no JSON
  Schema can see, so a schema-valid `ttl` may meet a critical record.
- A bulk write or transaction naming one record twice is refused (400): JSON Schema's
  `uniqueItems` compares whole operations, not their (collection, key).
- A batch of more than api.max_batch_ops names or operations is 413 (Content Too Large), as the
  document says, while schemathesis expects a 400-family code of its own list for a request
  that breaks `maxItems`.
"""

from __future__ import annotations

from typing import Any

import schemathesis

TTL_ON_CRITICAL = "ttl is refused on critical records"
DUPLICATE = "one per record in a batch"
BATCH_PATHS = ("/v1/bulk/get", "/v1/bulk/write", "/v1/transaction")


def documented(method: str, path: str, status: int, body: str, query: dict[str, Any]) -> bool:
    """True for the three answers above."""
    if status == 400 and TTL_ON_CRITICAL in body:
        return (method == "PUT" and "ttl" in query) or path in BATCH_PATHS[1:]
    if path in BATCH_PATHS[1:] and status == 400 and DUPLICATE in body:
        return True
    return path in BATCH_PATHS and status == 413 and "api.max_batch_ops" in body


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but those of the three documented answers."""
    body = response.content.decode("utf-8", "replace")
    method, status = case.method.upper(), response.status_code
    return not documented(method, case.path, status, body, case.query or {})
