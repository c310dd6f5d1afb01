"""A local HTTP file server with failure modes, for the download tests (loopback only, no proxy).

``FileServer.add(name, data)`` serves ``data`` at ``/<mode>/<name>``; the mode chooses how the transfer
goes: ``ok``, ``slow`` (pauses between 16 KiB chunks), ``stall`` (stops after the first chunk),
``truncate`` (closes after a third), ``noheaders`` (never answers), ``error500``, ``wrong`` (corrupts the
first 64 bytes), and ``flaky-<mode>`` (``<mode>`` on the first request for a name, ``ok`` after).
Every request path is recorded in ``FileServer.requests``.
"""
from __future__ import annotations

import hashlib
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator


class FileRequestHandler(BaseHTTPRequestHandler):
    """``/<mode>/<name>``; a ``flaky-<mode>`` behaves as <mode> on its first request and as ``ok`` after."""

    server: "FileServer"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        _, mode, name = (self.path.split("/", 2) + ["", ""])[:3]
        with srv.lock:
            srv.requests.append(self.path)
            if mode.startswith("flaky-"):
                first = name not in srv.seen
                srv.seen.add(name)
                mode = mode[len("flaky-"):] if first else "ok"
        data = srv.files.get(name)
        if data is None:
            self.send_error(404)
            return
        if mode == "noheaders":
            srv.stop.wait(10)
            return
        if mode == "error500":
            self.send_error(500, "Internal Server Error")
            return
        if mode == "wrong":
            data = bytes(b ^ 0x5A for b in data[:64]) + data[64:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.close_connection = True
        chunk = 16 * 1024
        if mode == "truncate":
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        for i in range(0, len(data), chunk):
            if mode == "stall" and i >= chunk:
                srv.stop.wait(10)
                return
            try:
                self.wfile.write(data[i:i + chunk])
                self.wfile.flush()
            except OSError:
                return
            if mode == "slow":
                time.sleep(srv.slow_pause)


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FileRequestHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.slow_pause = 0.02

    def url(self, mode: str, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}/{name}"

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return hashlib.sha256(data).hexdigest()


@contextmanager
def serve_files() -> Iterator[FileServer]:
    """A running ``FileServer`` on a free loopback port, stopped (stalled transfers released) on exit."""
    with running(FileServer()) as srv:
        yield srv


@contextmanager
def running(srv: Any) -> Iterator[Any]:
    """Serve ``srv`` (an HTTP server with a ``stop`` event) on a thread; stop, close and join it on exit."""
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)
