"""Verified, atomic, lock-protected checkpoint downloads.

Entries hosted on the Hugging Face Hub (``https://huggingface.co/<repo>/resolve/<rev>/<file>``)
are fetched with ``huggingface_hub.hf_hub_download`` (in every ComfyUI environment through
transformers): resuming an interrupted transfer, ``HF_ENDPOINT`` mirrors, tokens
(``HF_TOKEN``, ``hf auth login``) and the shared Hugging Face cache come with it. The cached
file is then hard-linked (or, across file systems, copied) into the destination folder under
its manifest name, after its size and SHA-256 are checked: against the manifest when it
records them, otherwise against the Hub's LFS SHA-256 (the cached blob's name).

Other URLs are streamed with the standard library (``urllib``) into a hidden temporary file
next to the destination (``.{filename}.{random}.part``, never picked up by the loader), hashed
while they stream, checked against the expected size and SHA-256, fsynced, and only then
renamed into place with ``os.replace``. Any failure removes the temporary file and raises
:class:`DownloadError`, whose message names the URL and says where to place the file by hand.

Concurrent downloads of the same destination (threads or processes) serialise on an exclusive
lock file ``.{filename}.lock`` in the destination directory; whoever gets the lock second
finds the finished file and returns it without a request.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import secrets
import shutil
import socket
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union
from urllib.parse import unquote, urlsplit

from ..errors import DownloadError
from .manifest import ManifestEntry, check_file, file_sha256

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, Optional[int]], None]
CancelCallback = Callable[[], None]
PathLike = Union[str, os.PathLike]

USER_AGENT = "ComfyUI-LUA/1 (Python urllib)"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CHUNK_SIZE = 1 << 20
HUB_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")


def temp_name(filename: str) -> str:
    """A fresh hidden ``.part`` name for ``filename`` (random, so concurrent writers never collide)."""
    return f".{filename}.{secrets.token_hex(8)}.part"


def lock_path_for(dest_path: PathLike) -> Path:
    """The lock file guarding downloads to ``dest_path``."""
    p = Path(dest_path)
    return p.with_name(f".{p.name}.lock")


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face Hub, as ``hf_hub_download`` names it."""

    repo_id: str
    filename: str
    revision: str = "main"
    repo_type: str = "model"


def parse_hub_url(url: Optional[str]) -> Optional[HubFile]:
    """``https://huggingface.co/<owner>/<repo>/resolve/<revision>/<path>`` -> :class:`HubFile`; else ``None``."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "https" or (parts.hostname or "").lower() not in HUB_HOSTS or parts.query:
        return None
    segs = [unquote(s) for s in parts.path.split("/") if s]
    repo_type = "model"
    if segs and segs[0] in ("datasets", "spaces"):
        repo_type, segs = segs[0][:-1], segs[1:]
    if len(segs) < 5 or segs[2] != "resolve":
        return None
    return HubFile(f"{segs[0]}/{segs[1]}", "/".join(segs[4:]), segs[3], repo_type)


def download_entry(entry: ManifestEntry, dest_dir: PathLike, *, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelCallback] = None, timeout: float = DEFAULT_TIMEOUT,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, opener: Optional[urllib.request.OpenerDirector] = None,
                   hub_cache_dir: Optional[PathLike] = None, endpoint: Optional[str] = None) -> Path:
    """Fetch a manifest entry into ``dest_dir/entry.filename`` (or return it if already there and valid).

    Hub URLs go through :func:`download_from_hub` (``hub_cache_dir``/``endpoint`` are passed on;
    ``HF_ENDPOINT`` is honoured), other URLs through :func:`download_file`. ``cancel()`` is
    called while the transfer runs; whatever it raises (ComfyUI's interrupt) propagates unchanged.
    """
    dest = Path(dest_dir) / entry.filename
    if entry.url is None:
        if dest.is_file():
            _verify_existing(None, dest, entry.sha256, entry.size)
            return dest
        raise DownloadError(None, dest, f"no download URL is known for {entry.name!r} (source: {entry.source})")
    hub = parse_hub_url(entry.url)
    if hub is not None:
        if hub_available():
            return download_from_hub(hub, dest, sha256=entry.sha256, size=entry.size, progress=progress,
                                     cancel=cancel, cache_dir=hub_cache_dir, endpoint=endpoint)
        logger.warning("LUA: huggingface_hub is not installed; downloading %s with urllib (no resume, no cache)",
                       entry.url)

    def report(done: int, total: Optional[int]) -> None:
        if progress is not None:
            progress(done, total)
        if cancel is not None:
            cancel()

    return download_file(entry.url, dest, sha256=entry.sha256, size=entry.size,
                         progress=report if (progress or cancel) else None, timeout=timeout,
                         chunk_size=chunk_size, opener=opener)


def hub_available() -> bool:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True


def hub_url(hub: HubFile, endpoint: Optional[str] = None) -> str:
    """The URL ``hf_hub_download`` fetches (``endpoint``, else ``HF_ENDPOINT``, else huggingface.co)."""
    base = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[hub.repo_type]
    return f"{base}/{prefix}{hub.repo_id}/resolve/{hub.revision}/{hub.filename}"


def download_from_hub(hub: HubFile, dest_path: PathLike, *, sha256: Optional[str] = None,
                      size: Optional[int] = None, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelCallback] = None, cache_dir: Optional[PathLike] = None,
                      endpoint: Optional[str] = None, token: Union[str, bool, None] = None) -> Path:
    """Fetch a Hub file with ``hf_hub_download`` and place it at ``dest_path`` (hard link, else copy).

    The file lands in the Hugging Face cache first (``cache_dir``, default ``HF_HUB_CACHE``), so an
    interrupted transfer resumes, and a file another tool already downloaded is reused. Before it is
    placed it is checked against ``size`` and ``sha256`` when given, otherwise against the Hub's LFS
    SHA-256 when the cache names the blob by it. ``endpoint`` defaults to ``HF_ENDPOINT`` (read at
    call time); ``token`` to huggingface_hub's own (``HF_TOKEN``, ``hf auth login``).
    """
    dest = Path(dest_path)
    url = hub_url(hub, endpoint)
    if sha256 is not None:
        sha256 = sha256.lower()
    with _claim(url, dest, sha256, size) as needed:
        if needed:
            cached = _hub_fetch(hub, url, dest, progress=progress, cancel=cancel, cache_dir=cache_dir,
                                endpoint=endpoint, token=token)
            _check_hub_file(url, dest, cached, sha256=sha256, size=size)
            _place(url, cached, dest)
    logger.info("LUA: %s -> %s", url, dest)
    return dest


def _hub_fetch(hub: HubFile, url: str, dest: Path, *, progress: Optional[ProgressCallback],
               cancel: Optional[CancelCallback], cache_dir: Optional[PathLike], endpoint: Optional[str],
               token: Union[str, bool, None]) -> Path:
    """``hf_hub_download`` into the cache; our callbacks' exceptions propagate, the rest become DownloadError."""
    import inspect

    from huggingface_hub import hf_hub_download

    state: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"revision": hub.revision, "repo_type": hub.repo_type, "token": token,
                              "endpoint": endpoint or os.environ.get("HF_ENDPOINT") or None}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if (progress or cancel) and "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = _progress_class(progress, cancel, state)
    if cancel is not None:
        cancel()
    logger.info("LUA: downloading %s (huggingface_hub) -> %s", url, dest)
    try:
        return Path(hf_hub_download(hub.repo_id, hub.filename, **kwargs))
    except Exception as exc:
        if state.get("raised") is exc:
            raise  # the user's cancel (or a failing progress callback): not a download problem
        raise DownloadError(url, dest, _hub_reason(exc, kwargs["endpoint"]),
                            hint=f"Download {url} yourself and place it at {dest} (or set HF_ENDPOINT to a mirror "
                                 f"and retry)") from exc


def _progress_class(progress: Optional[ProgressCallback], cancel: Optional[CancelCallback],
                    state: dict[str, Any]) -> type:
    """A huggingface_hub tqdm that reports bytes to ``progress`` and calls ``cancel`` on every update."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class LUAProgress(hub_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._lua_total = kwargs.get("total")
            self._lua_done = int(kwargs.get("initial") or 0)
            self._lua_report()

        def update(self, n: Any = 1) -> Any:
            out = super().update(n)
            self._lua_done += int(n or 0)
            self._lua_report()
            return out

        def _lua_report(self) -> None:
            try:
                if progress is not None:
                    progress(self._lua_done, self._lua_total)
                if cancel is not None:
                    cancel()
            except BaseException as exc:
                state["raised"] = exc
                raise

    return LUAProgress


def _hub_reason(exc: BaseException, endpoint: Optional[str]) -> str:
    host = endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    name = type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = (str(exc).strip().splitlines() or [""])[0]
    if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        return f"cannot reach {host} (offline, or HF_HUB_OFFLINE is set) and the file is not in the Hugging Face cache"
    if name == "GatedRepoError" or status in (401, 403):
        return (f"HTTP {status or 403}: access refused; the repository may need a Hugging Face token "
                f"(set HF_TOKEN or run `hf auth login`)")
    if name in ("RepositoryNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError", "RevisionNotFoundError") \
            or status == 404:
        return f"HTTP 404: not found on {host} ({name})"
    if status is not None:
        return f"HTTP {status} from {host} ({name}: {first})"
    if isinstance(exc, OSError) and exc.strerror:
        return _os_reason(exc)
    return f"{name}: {first}" if first else name


def _check_hub_file(url: str, dest: Path, cached: Path, *, sha256: Optional[str], size: Optional[int]) -> None:
    """Size/SHA-256 against the manifest, else against the Hub's LFS hash (the blob's file name)."""
    blob = Path(os.path.realpath(cached))
    try:
        actual_size = blob.stat().st_size
        if size is not None and actual_size != size:
            raise DownloadError(url, dest, f"size mismatch: expected {size} bytes, the Hub sent {actual_size}")
        expected, source = sha256, "the weights manifest"
        if expected is None and _SHA256_NAME.fullmatch(blob.name):
            expected, source = blob.name, "the Hub's LFS sha256"
        if expected is None:
            logger.warning("LUA: no sha256 is known for %s; only the transfer's completeness was checked", url)
            return
        actual = file_sha256(blob)
    except OSError as exc:
        raise DownloadError(url, dest, f"cannot read the downloaded file {blob} ({_os_reason(exc)})") from exc
    if actual != expected:
        if source != "the weights manifest":
            try:  # a corrupt cache blob: remove it so a retry downloads again
                blob.unlink()
            except OSError:
                pass
        raise DownloadError(url, dest, f"sha256 mismatch against {source}: expected {expected}, actual {actual} "
                                       f"(cached at {blob})")
    logger.info("LUA: %s matches %s (sha256 %s)", blob.name, source, actual)


def _place(url: str, src: Path, dest: Path) -> None:
    """Hard-link (same file system) or copy the cached file to ``dest`` atomically."""
    blob = Path(os.path.realpath(src))
    tmp = dest.with_name(temp_name(dest.name))
    try:
        try:
            os.link(blob, tmp)
        except OSError:
            shutil.copyfile(blob, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise DownloadError(url, dest, f"cannot place the downloaded file in {dest.parent} ({_os_reason(exc)})") from exc
    _fsync_dir(dest.parent)


def download_file(url: str, dest_path: PathLike, *, sha256: Optional[str] = None, size: Optional[int] = None,
                  progress: Optional[ProgressCallback] = None, timeout: float = DEFAULT_TIMEOUT,
                  chunk_size: int = DEFAULT_CHUNK_SIZE,
                  opener: Optional[urllib.request.OpenerDirector] = None) -> Path:
    """Download ``url`` to ``dest_path`` atomically, verifying ``size`` and ``sha256`` when given.

    ``timeout`` bounds connecting and each read (not the whole transfer).
    ``progress(done, total)`` is called with 0 first, then after every chunk;
    ``total`` is the expected size (or the server's Content-Length, or ``None``).
    Exceptions raised by ``progress`` (e.g. a user interrupt) propagate unchanged
    after the temporary file is removed. Returns ``dest_path`` as a ``Path``.
    """
    dest = Path(dest_path)
    if sha256 is not None:
        sha256 = sha256.lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    if size is not None and size <= 0:
        raise ValueError(f"size must be a positive number of bytes, got {size}")

    with _claim(url, dest, sha256, size) as needed:
        if needed:
            _fetch(url, dest, sha256=sha256, size=size, progress=progress, timeout=timeout,
                   chunk_size=chunk_size, opener=opener)
    return dest


def _remove_stale_parts(dest: Path) -> None:
    """Delete ``.{name}.*.part`` files left by a download that died (killed, power loss).

    Only the lock holder writes temporary files for ``dest``, so while we hold the
    lock any that exist belong to no running download. Best effort.
    """
    pattern = re.compile(re.escape(f".{dest.name}.") + r"[0-9a-f]{16}\.part")  # exactly temp_name(dest.name)
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return
    for name in names:
        if pattern.fullmatch(name):
            try:
                os.unlink(dest.parent / name)
                logger.info("LUA: removed %s left by an interrupted download", name)
            except OSError as exc:
                logger.warning("LUA: could not remove the stale temporary file %s: %s", name, exc)


@contextmanager
def _claim(url: str, dest: Path, sha256: Optional[str], size: Optional[int]) -> Iterator[bool]:
    """Hold ``dest``'s download lock; yields False when a complete, verified file is already there.

    Makes the folder, re-checks under the lock (another process may have finished it) and clears
    stale partial files before yielding True.
    """
    if _verify_existing(url, dest, sha256, size):
        yield False
        return
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(url, dest, f"cannot create the directory {dest.parent} ({_os_reason(exc)})") from exc
    with ExitStack() as stack:
        try:
            stack.enter_context(_exclusive_lock(lock_path_for(dest)))
        except OSError as exc:
            raise DownloadError(url, dest, f"cannot write in {dest.parent} ({_os_reason(exc)})") from exc
        if _verify_existing(url, dest, sha256, size):
            logger.info("LUA: %s was completed by another download", dest)
            yield False
            return
        _remove_stale_parts(dest)
        yield True

def _verify_existing(url: Optional[str], dest: Path, sha256: Optional[str], size: Optional[int]) -> bool:
    """True if ``dest`` exists and matches; raise if it exists and does not; False if absent."""
    if not dest.exists():
        return False
    hint = "Delete it (or move it aside) and retry"
    if url:
        hint += f", or download {url} yourself and place it there"
    if not dest.is_file():
        raise DownloadError(url, dest, "the destination exists but is not a file", hint=hint)
    try:
        check_file(dest, sha256=sha256, size=size)
    except ValueError as exc:
        raise DownloadError(url, dest, f"a file already exists there but does not match ({exc})",
                            hint=hint) from exc
    except OSError as exc:
        raise DownloadError(url, dest, f"the existing file cannot be read ({_os_reason(exc)})",
                            hint=hint) from exc
    if sha256 is None:
        logger.debug("LUA: using %s without a checksum to verify it against", dest)
    return True


def _fetch(url: str, dest: Path, *, sha256: Optional[str], size: Optional[int],
           progress: Optional[ProgressCallback], timeout: float, chunk_size: int,
           opener: Optional[urllib.request.OpenerDirector]) -> None:
    """Stream ``url`` into a temporary file, verify it, and rename it to ``dest``. Caller holds the lock."""
    tmp = dest.with_name(temp_name(dest.name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except OSError as exc:
        raise DownloadError(url, dest, f"cannot create a temporary file in {dest.parent} ({_os_reason(exc)})") from exc

    renamed = False
    try:
        with os.fdopen(fd, "wb") as out:
            digest, done = _stream(url, dest, out, size=size, progress=progress, timeout=timeout,
                                   chunk_size=chunk_size, opener=opener)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise DownloadError(url, dest, f"cannot write {tmp} ({_os_reason(exc)})") from exc
        if sha256 is not None and digest != sha256:
            raise DownloadError(url, dest, f"sha256 mismatch: expected {sha256}, actual {digest} "
                                           f"({done} bytes received)")
        if sha256 is None:
            logger.warning("LUA: no sha256 is known for %s; only the transfer's completeness (%d bytes) "
                           "was checked. sha256 of the received file: %s", url, done, digest)
        try:
            os.replace(tmp, dest)
        except OSError as exc:
            raise DownloadError(url, dest, f"cannot move {tmp} into place ({_os_reason(exc)})") from exc
        renamed = True
        _fsync_dir(dest.parent)
        logger.info("LUA: downloaded %s -> %s (%d bytes)", url, dest, done)
    finally:
        if not renamed:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("LUA: could not remove the temporary file %s: %s", tmp, exc)


def _stream(url: str, dest: Path, out, *, size: Optional[int], progress: Optional[ProgressCallback],
            timeout: float, chunk_size: int, opener: Optional[urllib.request.OpenerDirector]) -> tuple[str, int]:
    """Copy the response body to ``out``; return (sha256 hex, byte count). Network failures -> DownloadError."""
    if urlsplit(url).scheme not in ("http", "https"):  # never file:, ftp: or a custom handler
        raise DownloadError(url, dest, "invalid URL (only http and https downloads are allowed)")
    # the scheme is checked just above (and weights-manifest URLs are validated as http(s) when the manifest loads)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,  # noqa: S310
                                                   "Accept-Encoding": "identity"})
    opener = opener or urllib.request.build_opener()
    hasher = hashlib.sha256()
    done = 0
    logger.info("LUA: downloading %s -> %s", url, dest)
    try:
        with opener.open(request, timeout=timeout) as response:
            announced = _content_length(response)
            if size is not None and announced is not None and announced != size:
                raise DownloadError(url, dest, f"the server announced {announced} bytes but {size} are expected")
            total = size if size is not None else announced
            if progress is not None:
                progress(0, total)
            while True:
                chunk = response.read(chunk_size)
                if not chunk:
                    break
                hasher.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DownloadError(url, dest, f"cannot write to {dest.parent} ({_os_reason(exc)})") from exc
                done += len(chunk)
                if total is not None and done > total:
                    raise DownloadError(url, dest, f"the server sent more than the expected {total} bytes")
                if progress is not None:
                    progress(done, total)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DownloadError(url, dest, f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(url, dest, _network_reason(exc.reason, timeout)) from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(url, dest, _network_reason(exc, timeout)) from exc
    except ValueError as exc:  # malformed URL, unknown scheme
        raise DownloadError(url, dest, f"invalid URL ({exc})") from exc

    if total is not None and done != total:
        raise DownloadError(url, dest, f"the transfer was cut short: received {done} of {total} bytes")
    if done == 0:
        raise DownloadError(url, dest, "the server sent an empty file")
    return hasher.hexdigest(), done


def _content_length(response) -> Optional[int]:
    value = response.headers.get("Content-Length")
    try:
        n = int(value) if value is not None else None
    except ValueError:
        return None
    return n if n is not None and n >= 0 else None


def _network_reason(exc: object, timeout: float) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out (no data for {timeout:g} s)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the connection was closed early ({len(exc.partial)} bytes of the last read received)"
    if isinstance(exc, (ConnectionError, http.client.HTTPException)):
        return f"the connection failed ({type(exc).__name__}: {exc})"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    return str(exc)


def _os_reason(exc: OSError) -> str:
    if exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def _fsync_dir(directory: Path) -> None:
    """Persist the rename (POSIX); best effort."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if needed; removed on release on POSIX).

    On POSIX, after ``flock`` succeeds the lock file is checked to still be the
    one on disk (a previous holder may have unlinked it), so removing it on
    release never lets two holders in at once.
    """
    if fcntl is None:
        with _windows_lock(lock_path):
            yield
        return
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("LUA: waiting for another download of %s to finish", lock_path.name[1:-5])
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                on_disk = os.stat(lock_path)
            except FileNotFoundError:
                on_disk = None
            held = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        os.close(fd)


@contextmanager
def _windows_lock(lock_path: Path) -> Iterator[None]:
    import msvcrt

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                if not waited:
                    logger.info("LUA: waiting for another download of %s to finish", lock_path.name[1:-5])
                    waited = True
                time.sleep(0.25)
        try:
            yield
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)


__all__ = ["DownloadError", "HubFile", "ProgressCallback", "download_entry", "download_file", "download_from_hub",
           "hub_url", "lock_path_for", "parse_hub_url", "temp_name"]
