"""The local HTTP JSON API (Starlette), a thin adapter over HybridStorage.

Critical puts are acknowledged only after their journal line is fdatasync'd. The sync is group
committed on the event loop (GroupCommit): puts read in the same loop turns share one
fdatasync, the same model as Redis' `appendfsync always`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .errors import PreconditionFailed, Unavailable
from .etags import NONE, BadConditionHeader, Conditions, conditions_from_headers, format_etag
from .openapi import MAX_LIST_LIMIT, openapi_document
from .records import InvalidName, PersistenceClass, decode_name
from .storage import BadRequest, HybridStorage, StorageError, ValueTooLarge

log = logging.getLogger("spine.api")

JSON = "application/json"


class GroupCommit:
    """Resolve many writers' waits with one fdatasync.

    Like Redis' `appendfsync always`, which syncs once per loop turn before it sleeps, the flush
    waits until the requests the loop has already read have appended: it is scheduled two
    callbacks ahead, so it runs after the tasks created by the loop's next poll (one flush per
    turn took only the writers of the turn before). The answers of one group are then queued
    before the next group's fdatasync blocks the loop, not behind it. Measured with
    `python -m bench.put_ab`: +30-66% critical PUTs/s at 8 clients against one callback ahead.
    """

    def __init__(self, storage: HybridStorage) -> None:
        self.storage = storage
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False

    async def wait(self, seq: int) -> None:
        if seq <= self.storage.journal.synced_seq:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._defer, loop)
        await future

    def _defer(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        waiters, self._waiters = self._waiters, []
        try:
            self.storage.sync()
        except StorageError as exc:
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
            return
        for future in waiters:
            if not future.done():
                future.set_result(None)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


class StorageCollector(Collector):
    """Prometheus metrics read from storage status at scrape time (no per-request cost)."""

    def __init__(self, storage: HybridStorage) -> None:
        self.storage = storage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.storage.status()
        counters = self.storage.counters
        gauges = [
            (
                "spine_records",
                "Records held, by persistence class",
                "class",
                {c: v["records"] for c, v in status["classes"].items()},
            ),
            (
                "spine_records_in_memory",
                "Records resident in memory, by class",
                "class",
                {c: v["in_memory"] for c, v in status["classes"].items()},
            ),
            (
                "spine_dirty_records",
                "Records not yet written to a tier, by tier",
                "tier",
                {k: v for k, v in status["dirty"].items() if k != "unevictable_over_limit"},
            ),
        ]
        for name, doc, label, values in gauges:
            family = GaugeMetricFamily(name, doc, labels=[label])
            for key, value in values.items():
                family.add_metric([key], value)
            yield family
        memory = status["tiers"]["memory"]
        backup = status.get("backup", {})
        simple = {
            "spine_memory_bytes": ("Bytes charged to the memory tier", memory["bytes"]),
            "spine_memory_limit_bytes": ("Configured memory limit", memory["limit"]),
            "spine_memory_over_limit": (
                "1 when dirty records hold memory over the limit",
                int(memory["over_limit"]),
            ),
            "spine_journal_bytes": ("Bytes in the write-ahead journal", status["journal"]["bytes"]),
            "spine_push_failures": (
                "Consecutive failed pushes to the git remote",
                backup.get("push_failures", 0),
            ),
            "spine_remote_lag_seconds": (
                "Seconds the remote is behind the local backup",
                backup.get("remote_lag_s") or 0,
            ),
            "spine_puts_total": ("Puts accepted", counters.puts),
            "spine_gets_total": ("Gets served", counters.gets),
            "spine_put_errors_total": ("Puts refused by the disk", counters.put_errors),
            "spine_evictions_total": ("Records evicted for the memory limit", counters.evictions),
            "spine_backups_total": ("Git backup commits", counters.backups),
        }
        postgres = status["tiers"].get("postgres")
        if postgres is not None:
            simple["spine_postgres_backlog"] = (
                "Changes waiting to be shipped to PostgreSQL (async mode)",
                postgres["backlog"],
            )
            simple["spine_postgres_lag_seconds"] = (
                "Age of the oldest change not yet in PostgreSQL",
                postgres["lag_s"],
            )
            simple["spine_postgres_up"] = (
                "1 when the last PostgreSQL operation succeeded",
                int(postgres["last_error"] is None),
            )
        for name, (doc, value) in simple.items():
            yield GaugeMetricFamily(name, doc, value=value)


RECORD_PREFIX = "/v1/records/"
_JSON_HEADERS = [(b"content-type", b"application/json")]
RECORD_METHODS = b"GET, PUT, DELETE"


def _conditions(scope: Scope, method: str) -> Conditions:
    """If-Match / If-None-Match of a write; most requests carry neither (a quick scan)."""
    headers = scope["headers"]
    for name, _ in headers:
        if name == b"if-match" or name == b"if-none-match":
            return conditions_from_headers(headers, method)
    return NONE


def _strict_names(scope: Scope) -> tuple[str, str]:
    """uvicorn decodes %FF, %FE and %EF%BF%BD alike to U+FFFD; decode the raw path strictly so
    they cannot overwrite each other (and only invalid UTF-8 is refused)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    parts = raw.split(b"/", 3)  # b"", b"v1", b"records", b"collection/key"
    if len(parts) < 4:
        raise BadRequest("record path must be /v1/records/<collection>/<key>, unencoded slashes")
    collection, _, key = parts[3].partition(b"/")
    try:
        return decode_name("collection", collection), decode_name("key", key)
    except InvalidName as exc:
        raise BadRequest(str(exc)) from None


class RecordsEndpoint:
    """GET/PUT/DELETE /v1/records/{collection}/{key} as a bare ASGI handler.

    These carry nearly all the traffic. Starlette's middleware, router and Request/Response
    objects cost about a third of the server's CPU per request (profiled), so this path uses
    uvicorn's ASGI interface directly; errors keep the same JSON shape as everywhere else.
    """

    def __init__(self, storage: HybridStorage, group: GroupCommit) -> None:
        self.storage = storage
        self.group = group

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, collection: str, key: str
    ) -> None:
        method = scope["method"]
        headers = list(_JSON_HEADERS)
        etag: int | None = None
        try:
            if "\ufffd" in collection or "\ufffd" in key:
                collection, key = _strict_names(scope)
            if method == "GET":
                status, body, etag = self.get(collection, key)
            elif method == "PUT":
                conditions = _conditions(scope, method)
                status, body, etag = await self.put(scope, receive, collection, key, conditions)
            elif method == "DELETE":
                conditions = _conditions(scope, method)
                status, body = await self.delete(collection, key, conditions)
            else:
                status, body = 405, orjson.dumps({"error": f"method {method} not allowed"})
                headers.append((b"allow", RECORD_METHODS))
        except StorageError as exc:
            status, body = exc.status, orjson.dumps({"error": str(exc)})
        except BadConditionHeader as exc:
            status, body = 400, orjson.dumps({"error": str(exc)})
        except PreconditionFailed as exc:
            status = exc.status
            body = orjson.dumps({"error": str(exc), "current_version": exc.current_version})
            etag = exc.current_version
        except Unavailable as exc:
            status, body = exc.status, orjson.dumps({"error": str(exc)})
        except Exception as exc:  # one JSON line, never a traceback to the client
            log.exception("request failed", extra={"path": scope["path"]})
            status, body = 500, orjson.dumps({"error": f"internal error: {exc}"})
        if etag is not None:
            headers.append((b"etag", format_etag(etag)))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def get(self, collection: str, key: str) -> tuple[int, bytes, int | None]:
        self.storage.check_names(collection, key)
        found = self.storage.get_json_versioned(collection, key)
        if found is None:
            return 404, orjson.dumps({"error": f"no record {collection}/{key}"}), None
        return 200, found[0], found[1]

    async def put(
        self,
        scope: Scope,
        receive: Receive,
        collection: str,
        key: str,
        conditions: Conditions = NONE,
    ) -> tuple[int, bytes, int]:
        query = parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)
        pclass = self.storage.resolve_class(collection, query.get("class", [None])[-1])
        self.storage.check_names(collection, key)
        limit = self.storage.config.max_value_size
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise ValueTooLarge(f"value is {int(value)} bytes (max_value_size is {limit})")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ValueTooLarge(f"value is over {limit} bytes (max_value_size)")
            chunks.append(chunk)
            more = message.get("more_body", False)
        write = functools.partial(
            self.storage.put_json_versioned,
            collection,
            key,
            b"".join(chunks),
            pclass,
            wait=False,
            if_match=conditions.if_match,
            if_absent=conditions.if_absent,
        )
        if self.storage.blocks_on_a_tier(pclass, conditions.any):
            # PostgreSQL's round trip off the event loop: other requests (and the tier's
            # group commit, which needs several writers at once) go on meanwhile.
            seq, version = await asyncio.to_thread(write)
        else:
            seq, version = write()
        if pclass is PersistenceClass.CRITICAL:
            await self.group.wait(seq)
        body = {"ok": True, "collection": collection, "key": key, "class": pclass.value}
        return 200, orjson.dumps({**body, "version": version}), version

    async def delete(
        self, collection: str, key: str, conditions: Conditions = NONE
    ) -> tuple[int, bytes]:
        self.storage.check_names(collection, key)
        delete = functools.partial(
            self.storage.delete, collection, key, wait=False, if_match=conditions.if_match
        )
        cls = self.storage.resolve_class(collection, None)
        if self.storage.blocks_on_a_tier(cls, conditions.any):
            deleted = await asyncio.to_thread(delete)
        else:
            deleted = delete()
        if not deleted:
            return 404, orjson.dumps({"error": f"no record {collection}/{key}"})
        journal = self.storage.journal
        if journal.seq > journal.synced_seq:
            await self.group.wait(journal.seq)
        return 200, orjson.dumps({"ok": True, "deleted": f"{collection}/{key}"})


def build_app(
    storage: HybridStorage, on_tier: Callable[[], Any] | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app. Blocking maintenance (tier, backup, flush) runs in a worker thread."""
    group = GroupCommit(storage)
    registry = CollectorRegistry()
    registry.register(StorageCollector(storage))
    tier = on_tier or storage.tier

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def status(request: Request) -> Response:
        return _json(storage.status())

    async def list_records(request: Request) -> Response:
        collection = request.path_params["collection"]
        prefix = request.query_params.get("prefix", "")
        text = request.query_params.get("limit", "1000")
        if not text.isascii() or not text.isdigit() or len(text) > 6:
            return _error(400, f"limit {text[:20]!r} must be an integer from 1 to {MAX_LIST_LIMIT}")
        limit = int(text)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            return _error(400, f"limit {limit} must be an integer from 1 to {MAX_LIST_LIMIT}")
        records, truncated = storage.list_records(collection, prefix=prefix, limit=limit)
        return _json({"collection": collection, "records": records, "truncated": truncated})

    async def post_tier(request: Request) -> Response:
        report = await asyncio.to_thread(tier)
        return _json(getattr(report, "__dict__", {}))

    async def post_backup(request: Request) -> Response:
        result = await asyncio.to_thread(storage.backup_git)
        result["pushed"] = storage.status().get("backup", {}).get("remote_lag_commits") in (0, None)
        return _json(result)

    async def post_flush(request: Request) -> Response:
        """The shutdown and preemption hook, callable by hand."""
        result = await asyncio.to_thread(storage.flush)
        return _json(result)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    document = orjson.dumps(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    async def storage_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StorageError)
        return _error(exc.status, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = _error(exc.status_code, exc.detail)
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    routes = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/records/{collection}", list_records, methods=["GET"]),
        Route("/v1/tier", post_tier, methods=["POST"]),
        Route("/v1/backup", post_backup, methods=["POST"]),
        Route("/v1/flush", post_flush, methods=["POST"]),
        Route("/v1/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/metrics", metrics, methods=["GET"], include_in_schema=False),
    ]
    starlette_app = Starlette(
        routes=routes, exception_handlers={StorageError: storage_error, HTTPException: http_error}
    )
    records = RecordsEndpoint(storage, group)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """Record reads and writes take the fast path; everything else goes to Starlette."""
        if scope["type"] == "http" and scope["path"].startswith(RECORD_PREFIX):
            rest = scope["path"][len(RECORD_PREFIX) :]
            slash = rest.find("/")
            if slash >= 0:
                await records(scope, receive, send, rest[:slash], rest[slash + 1 :])
                return
        await starlette_app(scope, receive, send)

    return app
