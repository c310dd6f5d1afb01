"""Checkpoint downloads against a real local HTTP server (no mocks of urllib).

Server routes (``/<mode>/<name>`` serves the file ``<name>`` from the served dir):
``ok`` normal, ``slow`` chunks with pauses, ``redirect`` 302 to ``ok``, ``nolength`` no
Content-Length, ``wrong`` same length but different bytes, ``truncate`` full
Content-Length then half the body and a closed socket, ``stall`` headers plus 1 KiB
then silence, anything else 404.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from lua_core.checkpoints.download import (
    DownloadError,
    download_entry,
    download_file,
    lock_path_for,
    temp_name,
)
from lua_core.checkpoints.manifest import ManifestEntry
from tests.support.file_server import running

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        with srv.count_lock:
            srv.requests.append(self.path)
        _, mode, name = (self.path.split("/", 2) + ["", ""])[:3]
        path = srv.root / name
        if not name or not path.is_file():
            mode = "missing"
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/ok/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode not in ("ok", "slow", "nolength", "wrong", "truncate", "stall"):
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        if mode == "wrong":
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode != "nolength":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.close_connection = True
        if mode == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "stall":
            self.wfile.write(data[:1024])
            self.wfile.flush()
            srv.stop.wait(10)
            return
        for i in range(0, len(data), CHUNK):
            self.wfile.write(data[i:i + CHUNK])
            self.wfile.flush()
            if mode == "slow":
                time.sleep(0.02)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[str] = []
        self.count_lock = threading.Lock()
        self.stop = threading.Event()

    def url(self, mode: str, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}/{name}"

    def add(self, name: str, data: bytes) -> tuple[bytes, str]:
        (self.root / name).write_bytes(data)
        return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path) -> Iterator[_Server]:
    root = tmp_path / "served"
    root.mkdir()
    with running(_Server(root)) as srv:
        yield srv


@pytest.fixture
def dest_dir(tmp_path) -> Path:
    d = tmp_path / "models" / "lua"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def payload(server) -> tuple[bytes, str]:
    return server.add("lua_test.safetensors", os.urandom(3 * CHUNK + 123))


def leftovers(directory: Path) -> list[str]:
    """Hidden files (temporary .part files, lock files) left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def assert_clean_failure(dest: Path) -> None:
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def get(server, mode, dest, **kw) -> Path:
    kw.setdefault("opener", NO_PROXY)
    return download_file(server.url(mode, dest.name), dest, **kw)


# --- success ----------------------------------------------------------------------------------

def test_download_with_sha256_reports_monotonic_progress(server, dest_dir, payload):
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    calls: list[tuple[int, int | None]] = []
    parts_seen: list[list[str]] = []

    def progress(done: int, total: int | None) -> None:
        calls.append((done, total))
        parts_seen.append([n for n in os.listdir(dest_dir) if n.endswith(".part")])

    out = get(server, "ok", dest, sha256=sha, size=len(data), progress=progress, chunk_size=CHUNK)
    assert out == dest and dest.read_bytes() == data
    assert calls[0] == (0, len(data))
    assert calls[-1] == (len(data), len(data))
    assert all(t == len(data) for _, t in calls)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert len(calls) >= 4
    # while streaming, the bytes live in a hidden .part file, never under the final name
    assert all(len(p) == 1 and p[0].startswith(".lua_test.safetensors.") for p in parts_seen)
    assert leftovers(dest_dir) == []
    assert server.requests == ["/ok/lua_test.safetensors"]


def test_redirect_is_followed(server, dest_dir, payload):
    data, sha = payload
    dest = get(server, "redirect", dest_dir / "lua_test.safetensors", sha256=sha)
    assert dest.read_bytes() == data
    assert server.requests == ["/redirect/lua_test.safetensors", "/ok/lua_test.safetensors"]


def test_unknown_hash_downloads_with_a_warning(server, dest_dir, payload, caplog):
    data, _ = payload
    calls = []
    with caplog.at_level(logging.WARNING, logger="lua_core.checkpoints.download"):
        dest = get(server, "nolength", dest_dir / "lua_test.safetensors",
                   progress=lambda d, t: calls.append((d, t)))
    assert dest.read_bytes() == data
    assert calls[0] == (0, None) and calls[-1] == (len(data), None)
    assert any("no sha256" in r.getMessage() for r in caplog.records)


def test_download_entry_creates_dir_and_uses_filename(server, tmp_path, payload):
    data, sha = payload
    entry = ManifestEntry.from_dict({
        "name": "lua_test.safetensors", "filename": "lua_test.safetensors", "family": "flux1",
        "scales": [2, 4], "config": "paper", "size": len(data), "sha256": sha,
        "url": server.url("ok", "lua_test.safetensors"), "bundled": None,
        "license": "Apache-2.0", "source": "test", "description": "",
    })
    target = tmp_path / "new" / "lua"
    out = download_entry(entry, target, opener=NO_PROXY)
    assert out == target / "lua_test.safetensors" and out.read_bytes() == data


def test_helpers_name_hidden_files():
    name = temp_name("lua_flux.pth")
    assert name.startswith(".lua_flux.pth.") and name.endswith(".part") and name != temp_name("lua_flux.pth")
    assert lock_path_for("/m/lua/lua_flux.pth") == Path("/m/lua/.lua_flux.pth.lock")


# --- failures leave nothing behind ------------------------------------------------------------

def test_hash_mismatch(server, dest_dir, payload):
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    with pytest.raises(DownloadError) as info:
        get(server, "wrong", dest, sha256=sha, size=len(data))
    msg = str(info.value)
    assert "sha256 mismatch" in msg and sha in msg
    assert f"place it at {dest}" in msg
    assert_clean_failure(dest)


def test_announced_size_mismatch(server, dest_dir, payload):
    data, _ = payload
    dest = dest_dir / "lua_test.safetensors"
    with pytest.raises(DownloadError, match=f"announced {len(data)} bytes but {len(data) + 1}"):
        get(server, "ok", dest, size=len(data) + 1)
    assert_clean_failure(dest)


def test_more_bytes_than_expected_without_content_length(server, dest_dir, payload):
    data, _ = payload
    dest = dest_dir / "lua_test.safetensors"
    with pytest.raises(DownloadError, match="more than the expected"):
        get(server, "nolength", dest, size=len(data) - 10)
    assert_clean_failure(dest)


@pytest.mark.parametrize("known", [True, False], ids=["size+sha256", "nothing-known"])
def test_truncated_transfer(server, dest_dir, payload, known):
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    kw = {"sha256": sha, "size": len(data)} if known else {}
    with pytest.raises(DownloadError) as info:
        get(server, "truncate", dest, **kw)
    assert "cut short" in str(info.value) or "closed early" in str(info.value)
    assert_clean_failure(dest)


def test_stalled_transfer_times_out(server, dest_dir, payload):
    dest = dest_dir / "lua_test.safetensors"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        get(server, "stall", dest, timeout=0.5)
    assert time.monotonic() - start < 3
    assert_clean_failure(dest)


def test_404_names_url_and_manual_path(server, dest_dir):
    dest = dest_dir / "lua_missing.pth"
    url = server.url("ok", "lua_missing.pth")
    with pytest.raises(DownloadError) as info:
        download_file(url, dest, opener=NO_PROXY)
    msg = str(info.value)
    assert "HTTP 404" in msg and url in msg
    assert f"Download {url} yourself and place it at {dest}" in msg
    assert info.value.url == url and info.value.dest_path == dest
    assert_clean_failure(dest)


def test_connection_refused(dest_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = dest_dir / "x.pth"
    with pytest.raises(DownloadError, match="connection refused"):
        download_file(f"http://127.0.0.1:{port}/x.pth", dest, opener=NO_PROXY, timeout=2)
    assert_clean_failure(dest)


def test_progress_exception_propagates_unchanged_and_cleans_up(server, dest_dir, payload):
    class Interrupted(Exception):
        pass

    def progress(done: int, total: int | None) -> None:
        if done > 0:
            raise Interrupted()

    dest = dest_dir / "lua_test.safetensors"
    with pytest.raises(Interrupted):
        get(server, "ok", dest, progress=progress, chunk_size=CHUNK)
    assert_clean_failure(dest)


def test_entry_without_url_says_where_to_put_the_file(dest_dir):
    entry = ManifestEntry.from_dict({
        "name": "lua_local.pth", "filename": "lua_local.pth", "family": "sdxl", "scales": [2],
        "config": "light", "size": 3, "sha256": None, "url": None, "bundled": None,
        "license": "Apache-2.0", "source": "trained in-house", "description": "",
    })
    with pytest.raises(DownloadError) as info:
        download_entry(entry, dest_dir)
    assert f"Place the file at {dest_dir / 'lua_local.pth'} yourself" in str(info.value)
    (dest_dir / "lua_local.pth").write_bytes(b"abc")
    assert download_entry(entry, dest_dir) == dest_dir / "lua_local.pth"


# --- unwritable destinations ------------------------------------------------------------------

def test_destination_under_a_regular_file(server, tmp_path, payload):
    blocker = tmp_path / "not_a_dir"
    blocker.write_bytes(b"")
    dest = blocker / "lua" / "lua_test.safetensors"
    with pytest.raises(DownloadError) as info:
        get(server, "ok", dest)
    assert "cannot create the directory" in str(info.value) and f"place it at {dest}" in str(info.value)
    assert server.requests == []


def test_read_only_directory(server, dest_dir, payload):
    dest_dir.chmod(0o500)
    try:
        probe = dest_dir / ".probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root (os.access and open ignore mode 0o500); "
                        "covered by test_destination_under_a_regular_file and test_disk_full")
        dest = dest_dir / "lua_test.safetensors"
        with pytest.raises(DownloadError, match="cannot write in"):
            get(server, "ok", dest)
        assert server.requests == []
        assert_clean_failure(dest)
    finally:
        dest_dir.chmod(0o755)


@pytest.mark.slow
def test_disk_full_while_writing(server, dest_dir, payload):
    """A write OSError mid-stream (EFBIG via RLIMIT_FSIZE, in a child process) fails cleanly.

    The child imports only lua_core.checkpoints (not lua_core/__init__), which also shows
    the download code needs neither torch nor requests.
    """
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    script = (
        "import json, resource, signal, sys, types, urllib.request\n"
        "pkg = types.ModuleType('lua_core'); pkg.__path__ = [sys.argv[4]]; sys.modules['lua_core'] = pkg\n"
        "from lua_core.checkpoints.download import DownloadError, download_file\n"
        "assert 'torch' not in sys.modules and 'requests' not in sys.modules\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "try:\n"
        "    download_file(sys.argv[1], sys.argv[2], sha256=sys.argv[3], opener=opener)\n"
        "    print(json.dumps({'ok': True}))\n"
        "except DownloadError as exc:\n"
        "    print(json.dumps({'ok': False, 'msg': str(exc)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, server.url("ok", dest.name), str(dest), sha,
                           str(REPO / "lua_core")],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is False
    assert "File too large" in result["msg"] and f"place it at {dest}" in result["msg"]
    assert_clean_failure(dest)


# --- existing files ---------------------------------------------------------------------------

def test_existing_verified_file_needs_no_network(server, dest_dir, payload):
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    dest.write_bytes(data)
    assert get(server, "ok", dest, sha256=sha, size=len(data)) == dest
    assert get(server, "ok", dest) == dest
    assert server.requests == []


def test_existing_mismatching_file_is_left_alone(server, dest_dir, payload):
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    dest.write_bytes(b"user's own file")
    with pytest.raises(DownloadError) as info:
        get(server, "ok", dest, sha256=sha)
    msg = str(info.value)
    assert "does not match" in msg and "Delete it" in msg and str(dest) in msg
    assert dest.read_bytes() == b"user's own file"
    assert server.requests == []


# --- concurrency ------------------------------------------------------------------------------

def test_two_threads_download_once(server, dest_dir, payload):
    """Both threads get the same verified file; the lock makes the loser reuse it: exactly one GET."""
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    barrier = threading.Barrier(2)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(get(server, "slow", dest, sha256=sha, size=len(data), chunk_size=CHUNK))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert results == [dest, dest]
    assert dest.read_bytes() == data
    assert server.requests == ["/slow/lua_test.safetensors"]
    assert leftovers(dest_dir) == []


def test_waits_for_a_lock_held_elsewhere_then_reuses_the_file(server, dest_dir, payload):
    """Another process holds the lock: no request until it is released, then the finished file is used."""
    data, sha = payload
    dest = dest_dir / "lua_test.safetensors"
    with open(lock_path_for(dest), "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        results: list[Path] = []
        t = threading.Thread(target=lambda: results.append(get(server, "ok", dest, sha256=sha)))
        t.start()
        time.sleep(0.3)
        assert t.is_alive() and server.requests == []
        dest.write_bytes(data)
    t.join(5)
    assert results == [dest]
    assert server.requests == []
    assert leftovers(dest_dir) == []
