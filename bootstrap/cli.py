"""`spine-agent`: the daemon and a small client for its unix socket.

Every error is one line on stderr with a non-zero exit: 2 for bad config or usage, 1 for
a missing key (`get`) or a refused request, 3 when the agent cannot be reached, 4 when a
conditional write's precondition failed (`--if-match`, `--if-absent`): nothing was written.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sys
from typing import Any
from urllib.parse import urlencode

import orjson

from .client import JSON_HEADERS, ApiClient, Reply, condition_headers, record_path
from .config import AgentConfig, ConfigError, load_config
from .etags import BadConditionHeader, parse_version

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_PRECONDITION = 0, 1, 2, 3, 4


class AgentClient:
    """Calls the agent's API; raises AgentUnreachable or returns (status, parsed body)."""

    def __init__(self, config: AgentConfig, timeout: float = 60.0) -> None:
        self.config = config
        self.api = ApiClient(config.api.socket, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        status, parsed, _ = self.call_versioned(method, path, body, headers)
        return status, parsed

    def call_versioned(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, int | None]:
        """(status, parsed body, the ETag's version or None)."""
        sent = {**(JSON_HEADERS if body is not None else {}), **(headers or {})}
        try:
            reply: Reply = self.api.request(method, path, body=body, headers=sent)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnreachable(
                f"agent not reachable at {self.config.api.socket}: {exc.strerror}"
            ) from None
        except PermissionError:
            raise AgentUnreachable(
                f"no permission to use {self.config.api.socket} (join the agent's group)"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise AgentUnreachable(f"agent at {self.config.api.socket} failed: {exc}") from None
        try:
            parsed = orjson.loads(reply.body) if reply.body else None
        except orjson.JSONDecodeError:
            parsed = reply.body.decode(errors="replace")
        return reply.status, parsed, reply.version


class AgentUnreachable(RuntimeError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spine-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--config", help="agent YAML config (default: $SUPER_SPINE_CONFIG)")
        return cmd

    add("run", "run the agent daemon")
    add("status", "print the agent's status as JSON")
    cmd = add("get", "print a record's JSON value (exit 1 if absent)")
    cmd.add_argument("collection")
    cmd.add_argument("key")
    cmd.add_argument(
        "--etag", action="store_true", help="print the record's version first, on its own line"
    )
    cmd = add("put", "store a JSON value ('-' reads stdin); exits 0 once acknowledged")
    cmd.add_argument("collection")
    cmd.add_argument("key")
    cmd.add_argument("value")
    cmd.add_argument("--class", dest="cls", choices=["critical", "session", "cache"])
    condition = cmd.add_mutually_exclusive_group()
    condition.add_argument(
        "--if-match",
        metavar="VERSION",
        help="write only if the record is at this version (exit 4 if not)",
    )
    condition.add_argument(
        "--if-absent", action="store_true", help="create only: exit 4 if the record exists"
    )
    cmd.add_argument("--etag", action="store_true", help="print the new version")
    cmd = add("delete", "delete a record (exit 1 if absent)")
    cmd.add_argument("collection")
    cmd.add_argument("key")
    cmd.add_argument(
        "--if-match",
        metavar="VERSION",
        help="delete only if the record is at this version (exit 4 if not)",
    )
    cmd = add("list", "print a collection's records as JSON")
    cmd.add_argument("collection")
    cmd.add_argument("--prefix", default="")
    cmd.add_argument("--limit", type=int, default=1000)
    add("tier", "run a tiering pass now")
    add("backup", "commit critical changes to git and push now")
    add("flush", "write everything to disk, commit and push (shutdown hook)")
    add("restore", "restore into the storage path offline (agent must be stopped)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"spine-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return dispatch(args, config)
    except AgentUnreachable as exc:
        print(f"spine-agent: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace, config: AgentConfig) -> int:
    if args.command == "run":
        return _run(config)
    if args.command == "restore":
        return _restore(config)
    client = AgentClient(config)
    if args.command == "status":
        return _print(*client.call("GET", "/v1/status"))
    if args.command == "get":
        status, body, version = client.call_versioned("GET", record_path(args.collection, args.key))
        if status == 404:
            print(f"spine-agent: no record {args.collection}/{args.key}", file=sys.stderr)
            return EXIT_FAIL
        if args.etag and status == 200:
            sys.stdout.write(f"{version}\n")
        return _print(status, body)
    if args.command in ("put", "delete"):
        try:
            if_match = None if args.if_match is None else parse_version(args.if_match, "--if-match")
        except BadConditionHeader as exc:
            print(f"spine-agent: {exc}", file=sys.stderr)
            return EXIT_USAGE
        headers = condition_headers(if_match, getattr(args, "if_absent", False))
    if args.command == "put":
        raw = sys.stdin.buffer.read() if args.value == "-" else args.value.encode()
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            print(
                f"spine-agent: VALUE is not JSON ({exc}); quote strings, e.g. '\"text\"'",
                file=sys.stderr,
            )
            return EXIT_USAGE
        query = f"?{urlencode({'class': args.cls})}" if args.cls else ""
        path = record_path(args.collection, args.key) + query
        status, body, version = client.call_versioned("PUT", path, raw, headers)
        if args.etag and status == 200:
            sys.stdout.write(f"{version}\n")
        return _ack(status, body)
    if args.command == "delete":
        path = record_path(args.collection, args.key)
        status, body = client.call("DELETE", path, None, headers)
        return _ack(status, body)
    if args.command == "list":
        query = urlencode({"prefix": args.prefix, "limit": args.limit})
        return _print(*client.call("GET", f"{record_path(args.collection)}?{query}"))
    verb = {"tier": "/v1/tier", "backup": "/v1/backup", "flush": "/v1/flush"}[args.command]
    return _print(*client.call("POST", verb))


def _print(status: int, body: Any) -> int:
    if status >= 400:
        message = body.get("error") if isinstance(body, dict) else body
        print(f"spine-agent: {message}", file=sys.stderr)
        return EXIT_FAIL
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK


def _ack(status: int, body: Any) -> int:
    if status == 412:
        _print(status, body)
        return EXIT_PRECONDITION
    if status >= 400:
        return _print(status, body)
    return EXIT_OK


def _run(config: AgentConfig) -> int:
    from .daemon import run_daemon
    from .logs import setup_logging

    setup_logging(config.log_level)
    try:
        return run_daemon(config)
    except ConfigError as exc:  # found at start (a tier's server refused): fix the config
        print(f"spine-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # one line, then exit non-zero: systemd shows it in status
        print(f"spine-agent: {exc}", file=sys.stderr)
        return EXIT_FAIL


def _restore(config: AgentConfig) -> int:
    """Offline restore: load files/journal or the git backup, then write the warm files."""
    from .logs import setup_logging
    from .storage import HybridStorage, StorageError

    setup_logging(config.log_level)
    sock_path = config.api.socket
    if sock_path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(sock_path))
            print(
                f"spine-agent: the agent is running on {sock_path}; stop it before restore",
                file=sys.stderr,
            )
            return EXIT_FAIL
        except OSError:
            pass
        finally:
            probe.close()
    storage = HybridStorage(config)
    try:
        source = storage.initialize()
    except StorageError as exc:
        print(f"spine-agent: {exc}", file=sys.stderr)
        return EXIT_FAIL
    storage.tier_files_only()
    records = storage.record_count()
    storage.close(backup=False)
    print(orjson.dumps({"restored_from": source, "records": records}).decode())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
