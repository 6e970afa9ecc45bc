"""The local HTTP JSON API (Starlette), a thin adapter over HybridStorage.

Critical puts are acknowledged only after their journal line is fdatasync'd. The sync is group
committed on the event loop: every put that arrives before the flush callback runs shares one
fdatasync, the same model as Redis' `appendfsync always`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from .records import PersistenceClass
from .storage import HybridStorage, StorageError

log = logging.getLogger("spine.api")

JSON = "application/json"


class GroupCommit:
    """Resolve many writers' waits with one fdatasync per event-loop turn."""

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
            loop.call_soon(self._flush)
        await future

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
                status["dirty"]
                and {"files": status["dirty"]["files"], "git": status["dirty"]["git"]},
            ),
        ]
        for name, doc, label, values in gauges:
            family = GaugeMetricFamily(name, doc, labels=[label])
            for key, value in values.items():
                family.add_metric([key], value)
            yield family
        memory = status["tiers"]["memory"]
        simple = {
            "spine_memory_bytes": ("Bytes charged to the memory tier", memory["bytes"]),
            "spine_memory_limit_bytes": ("Configured memory limit", memory["limit"]),
            "spine_memory_over_limit": (
                "1 when dirty records hold memory over the limit",
                int(memory["over_limit"]),
            ),
            "spine_journal_bytes": (
                "Bytes in the write-ahead journal",
                status["tiers"]["files"]["journal_bytes"],
            ),
            "spine_push_failures": (
                "Consecutive failed pushes to the git remote",
                status["backup"]["push_failures"],
            ),
            "spine_remote_lag_seconds": (
                "Seconds the remote is behind the local backup",
                status["backup"]["remote_lag_s"] or 0,
            ),
            "spine_puts_total": ("Puts accepted", counters.puts),
            "spine_gets_total": ("Gets served", counters.gets),
            "spine_put_errors_total": ("Puts refused by the disk", counters.put_errors),
            "spine_evictions_total": ("Records evicted for the memory limit", counters.evictions),
            "spine_backups_total": ("Git backup commits", counters.backups),
        }
        for name, (doc, value) in simple.items():
            yield GaugeMetricFamily(name, doc, value=value)


def build_app(storage: HybridStorage, on_tier: Callable[[], Any] | None = None) -> Starlette:
    """The ASGI app. Blocking maintenance (tier, backup, flush) runs in a worker thread."""
    group = GroupCommit(storage)
    registry = CollectorRegistry()
    registry.register(StorageCollector(storage))
    tier = on_tier or storage.tier

    async def health(request: Request) -> Response:
        """
        summary: Liveness; answers while the agent serves.
        responses:
          200: {description: "ok"}
        """
        return _json({"status": "ok"})

    async def status(request: Request) -> Response:
        """
        summary: Tiers, counts, bytes, dirty records, last backup, last push and remote lag.
        responses:
          200: {description: "status document"}
        """
        return _json(storage.status())

    async def get_record(request: Request) -> Response:
        """
        summary: Read one record's JSON value.
        responses:
          200: {description: "the value"}
          404: {description: "no such record"}
        """
        collection, key = request.path_params["collection"], request.path_params["key"]
        storage._check_names(collection, key)
        raw = storage.get_json(collection, key)
        if raw is None:
            return _error(404, f"no record {collection}/{key}")
        return Response(raw, media_type=JSON)

    async def put_record(request: Request) -> Response:
        """
        summary: Store a JSON value; critical records are durable when this answers.
        parameters:
          - name: class
            in: query
            required: false
            schema: {type: string, enum: [critical, session, cache]}
        responses:
          200: {description: "stored"}
          400: {description: "bad name, bad JSON or unknown class"}
          413: {description: "value over max_value_size"}
          507: {description: "the disk refused the write; nothing stored"}
        """
        collection, key = request.path_params["collection"], request.path_params["key"]
        cls_param = request.query_params.get("class")
        pclass = storage.resolve_class(collection, cls_param)
        storage._check_names(collection, key)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > storage.config.max_value_size:
            return _error(
                413, f"value is {length} bytes (max_value_size is {storage.config.max_value_size})"
            )
        body = await request.body()
        seq = storage.put_json(collection, key, body, pclass, wait=False)
        if pclass is PersistenceClass.CRITICAL:
            await group.wait(seq)
        return _json({"ok": True, "collection": collection, "key": key, "class": pclass.value})

    async def delete_record(request: Request) -> Response:
        """
        summary: Delete one record from every tier it travels to.
        responses:
          200: {description: "deleted"}
          404: {description: "no such record"}
        """
        collection, key = request.path_params["collection"], request.path_params["key"]
        storage._check_names(collection, key)
        coll_class = storage.config.class_of(collection)
        existed = storage.delete(collection, key, wait=False)
        if not existed:
            return _error(404, f"no record {collection}/{key}")
        if (
            coll_class is PersistenceClass.CRITICAL
            or storage.journal.seq > storage.journal.synced_seq
        ):
            await group.wait(storage.journal.seq)
        return _json({"ok": True, "deleted": f"{collection}/{key}"})

    async def list_records(request: Request) -> Response:
        """
        summary: Records of a collection, sorted by key (prefix and limit query parameters).
        responses:
          200: {description: "records"}
        """
        collection = request.path_params["collection"]
        prefix = request.query_params.get("prefix", "")
        try:
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= 100_000:
            return _error(400, "limit must be between 1 and 100000")
        records, truncated = storage.list_records(collection, prefix=prefix, limit=limit)
        return _json({"collection": collection, "records": records, "truncated": truncated})

    async def post_tier(request: Request) -> Response:
        """
        summary: Run a tiering pass now.
        responses:
          200: {description: "pass report"}
        """
        report = await asyncio.to_thread(tier)
        return _json(getattr(report, "__dict__", {}))

    async def post_backup(request: Request) -> Response:
        """
        summary: Commit critical changes to git and push now.
        responses:
          200: {description: "commit and push result"}
        """
        result = await asyncio.to_thread(storage.backup_git)
        result["pushed"] = storage.status()["backup"]["remote_lag_commits"] in (0, None)
        return _json(result)

    async def post_flush(request: Request) -> Response:
        """
        summary: Write everything to disk, commit and push (the shutdown and preemption hook).
        responses:
          200: {description: "flush result"}
        """
        result = await asyncio.to_thread(storage.flush)
        return _json(result)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    schemas = SchemaGenerator(
        {"openapi": "3.0.0", "info": {"title": "spine-agent", "version": "1"}}
    )

    async def openapi(request: Request) -> Response:
        # The docstring schemas use integer status codes as keys; OpenAPI wants them as strings.
        document = orjson.dumps(
            schemas.get_schema(routes=app.routes), option=orjson.OPT_NON_STR_KEYS
        )
        return Response(document, media_type=JSON)

    async def storage_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StorageError)
        return _error(exc.status, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail)

    routes = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/records/{collection}", list_records, methods=["GET"]),
        Route("/v1/records/{collection}/{key:path}", get_record, methods=["GET"]),
        Route("/v1/records/{collection}/{key:path}", put_record, methods=["PUT"]),
        Route("/v1/records/{collection}/{key:path}", delete_record, methods=["DELETE"]),
        Route("/v1/tier", post_tier, methods=["POST"]),
        Route("/v1/backup", post_backup, methods=["POST"]),
        Route("/v1/flush", post_flush, methods=["POST"]),
        Route("/v1/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/metrics", metrics, methods=["GET"], include_in_schema=False),
    ]
    app = Starlette(
        routes=routes, exception_handlers={StorageError: storage_error, HTTPException: http_error}
    )
    return app
