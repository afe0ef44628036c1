"""A loopback TCP proxy that takes a server down on cue, for transient-fault tests.

Put it between a client and a real server (moto's S3 server, for instance) and name
the requests that should find the server gone: when a client sends bytes containing
one of the patterns (an HTTP request line such as ``b"GET /bucket/in/data.csv"``),
that connection and every connection for the next ``seconds`` are cut without a
reply, the way a crashed or restarting endpoint looks to the client. Each outage
fires once. Nothing is mocked: the client's own retries and ours meet a real
refusal, then the real server.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Outage:
    """Cut the connection that sends ``pattern``, and all others for ``seconds``."""

    pattern: bytes
    seconds: float
    fired_at: float | None = None


@dataclass
class FaultyProxy:
    """A forwarding proxy on 127.0.0.1 that can be down on cue (see the module doc)."""

    upstream: tuple[str, int]
    outages: list[Outage] = field(default_factory=list)
    #: connections cut, upstream connections opened, HTTP requests seen from clients
    cut: int = 0
    forwarded: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fired(self) -> list[bytes]:
        with self._lock:
            return [o.pattern for o in self.outages if o.fired_at is not None]

    def __enter__(self) -> FaultyProxy:
        t = threading.Thread(target=self._accept, name="faulty-proxy", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._listener.close()

    # ------------------------------------------------------------------ internals
    def _down(self, data: bytes) -> bool:
        """Whether the server is down for a client that just sent ``data``."""
        with self._lock:
            now = time.monotonic()
            if now < self._down_until:
                return True
            for o in self.outages:
                if o.fired_at is None and o.pattern in data:
                    o.fired_at = now
                    self._down_until = now + o.seconds
                    return True
            return False

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client] + ([upstream] if upstream else []), [],
                                            [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        with self._lock:
                            self.requests += data.count(b" HTTP/1.1\r\n")
                        if self._down(data):
                            with self._lock:
                                self.cut += 1
                            return
                        if upstream is None:
                            upstream = socket.create_connection(self.upstream, timeout=30)
                            with self._lock:
                                self.forwarded += 1
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()


def pipeline_outages(bucket: str, seconds: float, data_key: str = "in/flights.csv",
                     model: str = "flights-binary") -> list[Outage]:
    """One outage of ``seconds`` in each S3 phase of the pipeline, on the stock layout
    (``conf/storage/s3``: the registry under ``prefab/registry``, predictions under
    ``prefab/predictions``): while ingest reads ``s3://bucket/data_key``, while register
    writes a version of ``model``, and while batch scoring writes its predictions."""
    return [
        Outage(f"GET /{bucket}/{data_key}".encode(), seconds),                      # ingest
        Outage(f"/{bucket}/prefab/registry/{model}/versions/".encode(), seconds),   # register
        Outage(f"PUT /{bucket}/prefab/predictions/".encode(), seconds),             # scoring
    ]

