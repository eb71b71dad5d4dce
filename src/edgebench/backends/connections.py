"""Counting the TCP connections an HTTP client opens, so that a timed request that paid for a new connection inside
its TTFT says so (`new_connection`). A pooled connection that went away is reconnected inside urllib3 (the same
connection object, a new socket), which a pool's own counters do not show: the count is taken in connect()."""

from __future__ import annotations

import requests
import urllib3
import urllib3.connection


class ConnectionCounter:
    """TCP connections opened by the sessions it is installed on (one counter per client, so that clients running
    side by side in a concurrency sweep do not see each other's connections)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self, session: requests.Session) -> None:
        """Makes every adapter of `session` build its connections through this counter."""
        counter = self

        class HTTPConnection(urllib3.connection.HTTPConnection):
            def connect(self) -> None:
                counter.count += 1
                super().connect()

        class HTTPSConnection(urllib3.connection.HTTPSConnection):
            def connect(self) -> None:
                counter.count += 1
                super().connect()

        class HTTPPool(urllib3.HTTPConnectionPool):
            ConnectionCls = HTTPConnection

        class HTTPSPool(urllib3.HTTPSConnectionPool):
            ConnectionCls = HTTPSConnection

        for adapter in session.adapters.values():
            adapter.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
