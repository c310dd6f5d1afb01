"""Downloads through huggingface_hub against a local server on 127.0.0.1 that answers like the Hub.

The "hub" server answers ``HEAD/GET /<repo>/resolve/<revision>/<file>`` the way huggingface.co does for an
LFS file: a 302 to a storage host (a second local server, so another origin) carrying ``X-Repo-Commit``,
``X-Linked-Etag`` (the file's sha256) and ``X-Linked-Size``. The "storage" server serves the bytes with
``Range`` support, and can cut the first transfer short so huggingface_hub has to resume it. The Hub
endpoint is given the way users give it, through ``HF_ENDPOINT``.
"""
from __future__ import annotations

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Optional

import pytest

pytest.importorskip("huggingface_hub")

from lua_core.checkpoints.download import (  # noqa: E402
    DownloadError,
    HubFile,
    download_entry,
    download_from_hub,
    hub_url,
    lock_path_for,
    parse_hub_url,
)
from lua_core.checkpoints.manifest import ManifestEntry  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "lua-test/LUA-FLUX"
PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _log(self) -> None:
        with self.server.state["lock"]:
            self.server.state["log"].append((self.server.role, self.command, self.path,
                                             self.headers.get("Range"), self.headers.get("Authorization")))

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        self._log()
        st = self.server.state
        if self.server.role == "hub":
            prefix = f"/{REPO_ID}/resolve/main/"
            name = self.path[len(prefix):] if self.path.startswith(prefix) else None
            if name is None or name not in st["files"]:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = st["files"][name]
            etag = st.get("etag") or hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"{st['storage_url']}/blobs/{name}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", '"W/not-the-file-hash"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = self.path.split("/blobs/", 1)[-1]
        data = st["files"].get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        with st["lock"]:
            cut = st["cut_first"] and not st["cut_done"]
            st["cut_done"] = st["cut_done"] or cut
        if cut:  # announce the whole body, send a third, drop the connection
            self.wfile.write(data[start:start + len(data) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        try:
            for i in range(start, len(data), 32 * 1024):
                self.wfile.write(data[i:i + 32 * 1024])
                self.wfile.flush()
                if st.get("pause"):
                    st["pause"].wait(0.02)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, role: str, state: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.role = role
        self.state = state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def hub(monkeypatch) -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"files": {"lua_flux.pth": PAYLOAD}, "log": [], "lock": threading.Lock(),
                             "cut_first": False, "cut_done": False}
    servers = [_Server("hub", state), _Server("storage", state)]
    state["storage_url"] = servers[1].url
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
               for s in servers]
    for t in threads:
        t.start()
    monkeypatch.setenv("HF_ENDPOINT", servers[0].url)
    state["endpoint"] = servers[0].url
    try:
        yield state
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def _gets(state: dict[str, Any]) -> list[tuple]:
    return [e for e in state["log"] if e[0] == "storage" and e[1] == "GET"]


HUB_FILE = HubFile(REPO_ID, "lua_flux.pth")


def test_hub_urls_are_recognised():
    assert parse_hub_url("https://huggingface.co/vaskers5/LUA-FLUX/resolve/main/lua_flux.pth") == \
        HubFile("vaskers5/LUA-FLUX", "lua_flux.pth", "main", "model")
    assert parse_hub_url("https://huggingface.co/datasets/a/b/resolve/v1/sub/x.pth") == \
        HubFile("a/b", "sub/x.pth", "v1", "dataset")
    assert parse_hub_url("http://127.0.0.1:9/x.pth") is None
    assert parse_hub_url("https://example.com/a/b/resolve/main/x.pth") is None
    assert hub_url(HUB_FILE, "http://mirror.example/") == f"http://mirror.example/{REPO_ID}/resolve/main/lua_flux.pth"


def test_download_places_a_verified_hard_link_and_reuses_the_cache(hub, tmp_path):
    cache, dest = tmp_path / "hf_cache", tmp_path / "models" / "lua" / "lua_flux.pth"
    seen: list[tuple[int, Optional[int]]] = []
    out = download_from_hub(HUB_FILE, dest, cache_dir=cache, progress=lambda d, t: seen.append((d, t)))
    assert out == dest and dest.read_bytes() == PAYLOAD
    blobs = list(cache.rglob(f"blobs/{PAYLOAD_SHA}"))
    assert len(blobs) == 1 and os.stat(blobs[0]).st_ino == os.stat(dest).st_ino  # linked, not copied
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["lua_flux.pth"]  # no .part, no lock
    assert len(_gets(hub)) == 1
    # gone from models/lua but still in the Hugging Face cache: placed again without a transfer
    dest.unlink()
    assert download_from_hub(HUB_FILE, dest, cache_dir=cache) == dest and dest.read_bytes() == PAYLOAD
    assert len(_gets(hub)) == 1
    # already in place: no request at all
    n = len(hub["log"])
    assert download_from_hub(HUB_FILE, dest, cache_dir=cache) == dest and len(hub["log"]) == n


def test_an_interrupted_transfer_resumes(hub, tmp_path, monkeypatch):
    """The storage host drops the connection after a third of the body; huggingface_hub asks for the rest
    with a Range request instead of starting again (its chunks shrunk to 16 KiB so a 300 kB file spans many)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    hub["cut_first"] = True
    dest = tmp_path / "lua" / "lua_flux.pth"
    seen: list[int] = []
    assert download_from_hub(HUB_FILE, dest, cache_dir=tmp_path / "cache", progress=lambda d, t: seen.append(d)) == dest
    assert dest.read_bytes() == PAYLOAD
    gets = _gets(hub)
    assert len(gets) == 2 and gets[0][3] is None, gets
    resumed_at = int(gets[1][3].removeprefix("bytes=").rstrip("-"))
    assert len(PAYLOAD) // 3 - 16 * 1024 < resumed_at <= len(PAYLOAD) // 3, gets  # from the last whole chunk
    assert seen[-1] == len(PAYLOAD)


def test_manifest_entry_with_a_hub_url_goes_through_the_hub(hub, tmp_path, monkeypatch):
    entry = ManifestEntry(name="lua_flux.pth", filename="lua_flux.pth", family="flux1", scales=(2, 4),
                          config="paper", size=len(PAYLOAD), sha256=PAYLOAD_SHA,
                          url=f"https://huggingface.co/{REPO_ID}/resolve/main/lua_flux.pth", bundled=None,
                          license="Apache-2.0", source="test", description="")
    out = download_entry(entry, tmp_path / "lua", hub_cache_dir=tmp_path / "cache")
    assert out.read_bytes() == PAYLOAD
    hosts = [e[0] for e in hub["log"]]
    # the endpoint came from HF_ENDPOINT (huggingface_hub may repeat a metadata request when a loaded machine is slow)
    assert hosts[0] == "hub" and hosts[-1] == "storage" and set(hosts) == {"hub", "storage"}, hosts


def test_token_is_sent_to_the_hub(hub, tmp_path):
    download_from_hub(HUB_FILE, tmp_path / "lua" / "lua_flux.pth", cache_dir=tmp_path / "cache", token="hf_test123")
    heads = [e for e in hub["log"] if e[0] == "hub"]
    assert heads and heads[0][4] == "Bearer hf_test123"


def test_manifest_sha256_mismatch_is_refused(hub, tmp_path):
    dest = tmp_path / "lua" / "lua_flux.pth"
    wrong = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(DownloadError, match=f"sha256 mismatch against the weights manifest: expected {wrong}"):
        download_from_hub(HUB_FILE, dest, sha256=wrong, cache_dir=tmp_path / "cache")
    assert list(dest.parent.iterdir()) == []


def test_corrupt_transfer_is_caught_by_the_hub_lfs_hash(hub, tmp_path):
    """No sha256 in the manifest: the Hub's X-Linked-Etag (the LFS sha256) is the reference."""
    hub["etag"] = hashlib.sha256(b"what the hub says").hexdigest()
    dest = tmp_path / "lua" / "lua_flux.pth"
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="sha256 mismatch against the Hub's LFS sha256"):
        download_from_hub(HUB_FILE, dest, cache_dir=cache)
    assert list(dest.parent.iterdir()) == []
    assert not list(cache.rglob(f"blobs/{hub['etag']}"))  # the bad blob is not kept for the next try


def test_missing_file_names_the_url_and_the_place(hub, tmp_path):
    dest = tmp_path / "lua" / "nope.pth"
    with pytest.raises(DownloadError) as info:
        download_from_hub(HubFile(REPO_ID, "nope.pth"), dest, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert "HTTP 404" in msg and f"{hub['endpoint']}/{REPO_ID}/resolve/main/nope.pth" in msg
    assert f"place it at {dest}" in msg


@pytest.mark.slow
def test_offline_names_the_url_and_the_folder(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    dest = tmp_path / "models" / "lua" / "lua_flux.pth"
    with pytest.raises(DownloadError) as info:
        download_from_hub(HUB_FILE, dest, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert f"http://127.0.0.1:{port}/{REPO_ID}/resolve/main/lua_flux.pth" in msg
    assert "not in the Hugging Face cache" in msg and f"place it at {dest}" in msg
    assert list(dest.parent.iterdir()) == []


class _Stop(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


def test_cancel_stops_the_transfer_and_a_retry_completes(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    hub["pause"] = threading.Event()  # 20 ms per 32 KiB: the cancel lands mid-transfer
    dest = tmp_path / "lua" / "lua_flux.pth"
    cache = tmp_path / "cache"
    progress: list[int] = []

    def cancel() -> None:
        if progress and progress[-1] > 64 * 1024:
            raise _Stop()

    with pytest.raises(_Stop):  # propagates unchanged, not wrapped in DownloadError
        download_from_hub(HUB_FILE, dest, cache_dir=cache, progress=lambda d, t: progress.append(d), cancel=cancel)
    assert 0 < progress[-1] < len(PAYLOAD)
    assert list(dest.parent.iterdir()) == [] and not lock_path_for(dest).exists()
    hub["pause"] = None
    assert download_from_hub(HUB_FILE, dest, cache_dir=cache) == dest and dest.read_bytes() == PAYLOAD


def test_a_file_already_in_place_that_differs_is_refused(hub, tmp_path):
    dest = tmp_path / "lua" / "lua_flux.pth"
    dest.parent.mkdir()
    dest.write_bytes(b"not the adapter")
    with pytest.raises(DownloadError, match="already exists there but does not match"):
        download_from_hub(HUB_FILE, dest, sha256=PAYLOAD_SHA, cache_dir=tmp_path / "cache")
    assert hub["log"] == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.pth"])
def test_only_http_urls_are_fetched(tmp_path, url):
    from lua_core.checkpoints.download import download_file

    with pytest.raises(DownloadError, match="only http and https"):
        download_file(url, tmp_path / "x.pth")
    assert list(tmp_path.iterdir()) == []
