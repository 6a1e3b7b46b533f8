"""Several servers that serve the same model, used as one: `--url a:8001,b:8001`.

Each call goes to the endpoint with the fewest of this client's calls in flight (the one used
longest ago among equals). A call that fails with UNAVAILABLE (the server refused it, or the
connection was lost or could not be made) is sent again to another endpoint, and the endpoint that
failed rests a few seconds: it is picked only when no other is left, so a replica that is gone (or
overloaded) costs one retry, not one per image, and a restarted replica comes back. A single URL,
a server or a load balancer in front of several, works as before: nothing to retry on.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from typing import Callable, TypeVar

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client.connection import Connection, ServerUnavailable, connect, lost_server, unavailable

T = TypeVar("T")
REST_S = 5.0


def split_urls(url: str) -> list[str]:
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ServerUnavailable(f"no server address in {url!r}")
    return urls


class Endpoints:
    """The servers of a comma-separated URL list, with per-call failover (thread-safe)."""

    def __init__(self, conn: Connection):
        self.conns = [replace(conn, url=u) for u in split_urls(conn.url)]
        self.clients: list[grpcclient.InferenceServerClient] = []
        self._in_flight = [0] * len(self.conns)
        self._rest_until = [0.0] * len(self.conns)
        self._picked = [0] * len(self.conns)   # when each was last picked (a call counter)
        self._calls = 0
        self._lock = threading.Lock()
        self.retries = 0   # calls sent again to another endpoint

    @classmethod
    def connect(cls, conn: Connection, model: str) -> Endpoints:
        """Clients for every endpoint; those not ready yet rest (warned about). ServerUnavailable
        (each endpoint's reason) when none has `model` ready."""
        self = cls(conn)
        # Every endpoint asked once at once; only when none is ready, each waited for in turn
        # within one deadline (an endpoint that is down must not hold up a ready one).
        reasons = self._connect_all(model, deadline=None)
        if len(reasons) == len(self.conns) and conn.wait_ready_s > 0:
            for c in self.clients:
                c.close()
            self.clients = []
            reasons = self._connect_all(model, deadline=time.monotonic() + conn.wait_ready_s)
        if len(reasons) == len(self.conns):
            self.close()
            raise ServerUnavailable("; ".join(reasons))
        for reason in reasons:
            print(f"warning: {reason}; using the other endpoints", file=sys.stderr)
        return self

    def _connect_all(self, model: str, deadline: float | None) -> list[str]:
        """A client per endpoint (one check each without a deadline, else waiting for each in turn
        until it); those not ready rest. Returns their reasons."""
        reasons = []
        for i, c in enumerate(self.conns):
            wait = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self.clients.append(connect(replace(c, wait_ready_s=wait), model))
            except ServerUnavailable as err:
                reasons.append(str(err))
                self.clients.append(c.client())
                self._rest_until[i] = time.monotonic() + REST_S
        return reasons

    def client(self) -> grpcclient.InferenceServerClient:
        """A client of an endpoint not resting (for metadata and config calls)."""
        now = time.monotonic()
        return next((c for c, until in zip(self.clients, self._rest_until) if until <= now),
                    self.clients[0])

    def call(self, fn: Callable[[grpcclient.InferenceServerClient], T]) -> T:
        """fn(client) on the least busy endpoint; on UNAVAILABLE, again on another one (each
        endpoint at most once). Raises the last error when every endpoint failed."""
        tried: set[int] = set()
        while True:
            i = self._take(tried)
            try:
                return fn(self.clients[i])
            except InferenceServerException as err:
                if not unavailable(err):
                    raise
                tried.add(i)
                with self._lock:
                    self._rest_until[i] = time.monotonic() + REST_S
                    if len(tried) < len(self.clients):
                        self.retries += 1
                if len(tried) == len(self.clients):
                    raise
            finally:
                with self._lock:
                    self._in_flight[i] -= 1

    def _take(self, tried: set[int]) -> int:
        with self._lock:
            now = time.monotonic()

            def order(i):   # not resting first: fewest in flight, then used longest ago;
                resting = self._rest_until[i] > now   # then the one whose rest ends first
                return (resting, self._rest_until[i]) if resting else (
                    resting, self._in_flight[i], self._picked[i])
            i = min((i for i in range(len(self.clients)) if i not in tried), key=order)
            self._calls += 1
            self._picked[i] = self._calls
            self._in_flight[i] += 1
            return i

    def lost(self, err: Exception) -> bool:
        """Whether `err` means every server is gone (UNAVAILABLE and none of them live)."""
        return all(lost_server(err, c) for c in self.clients)

    def close(self) -> None:
        for c in self.clients:
            c.close()
