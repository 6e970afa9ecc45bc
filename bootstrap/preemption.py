"""Watch GCE's metadata server for Spot preemption and flush the moment it is announced.

SIGTERM and the shutdown script also flush, but the metadata server says `preempted=TRUE` at
the start of the ~30 s notice, before the guest's shutdown sequence begins; flushing then buys
the push more of that window. Follows GoogleCloudPlatform's metadata watcher: an etag
long-poll (`wait_for_change`), retries with backoff, and an injected logger.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
DMI_PRODUCT = Path("/sys/class/dmi/id/product_name")
POLL_TIMEOUT_S = 60
MAX_BACKOFF_S = 60.0


def running_on_gce(product_file: Path = DMI_PRODUCT) -> bool:
    try:
        return "Google Compute Engine" in product_file.read_text()
    except OSError:
        return False


class PreemptionWatcher:
    """Long-polls `instance/preempted`; calls `on_preempted` once when it turns TRUE."""

    def __init__(
        self,
        on_preempted: Callable[[], object],
        metadata_url: str = DEFAULT_METADATA_URL,
        logger: logging.Logger | None = None,
        poll_timeout: int = POLL_TIMEOUT_S,
    ) -> None:
        self.on_preempted = on_preempted
        parts = urlsplit(metadata_url)
        self.host = parts.hostname or "metadata.google.internal"
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/") + "/instance/preempted"
        self.log = logger or logging.getLogger("spine.preemption")
        self.poll_timeout = poll_timeout
        self.preempted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spine-preemption", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def is_alive(self) -> bool:
        """True while the watch thread runs (it survives an unreachable metadata server)."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Wait for the watch thread to end: after a preemption, once its flush is done."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        etag = "0"
        backoff = 1.0
        failing = False
        while not self._stop.is_set():
            try:
                value, etag = self._poll(etag)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if not failing:
                    self.log.warning(
                        "metadata server unreachable; retrying", extra={"error": str(exc)}
                    )
                failing = True
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            failing, backoff = False, 1.0
            if value.strip().upper() == "TRUE":
                self.log.warning("preemption announced; flushing now")
                self.preempted.set()
                try:
                    self.on_preempted()
                except Exception as exc:  # SIGTERM will try again
                    self.log.error("flush on preemption failed", extra={"error": str(exc)})
                return

    def _poll(self, etag: str) -> tuple[str, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.poll_timeout + 5)
        try:
            conn.request(
                "GET",
                f"{self.path}?wait_for_change=true&last_etag={etag}"
                f"&timeout_sec={self.poll_timeout}",
                headers={"Metadata-Flavor": "Google"},
            )
            response = conn.getresponse()
            body = response.read().decode()
            if response.status != 200:
                raise ValueError(f"metadata server answered {response.status}")
            return body, response.getheader("ETag", etag)
        finally:
            conn.close()
