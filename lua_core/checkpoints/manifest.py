"""The weights manifest (``weights_manifest.json`` at the repository root).

The manifest lists every checkpoint the pack knows how to fetch or ships with:
where it comes from, which latent family and scales it serves, and (when known)
its exact size and SHA-256 so downloads and bundled files can be verified.

Format (``format_version`` 1)::

    {"format_version": 1,
     "models": [{"name": "lua_flux.pth", "filename": "lua_flux.pth", "family": "flux1",
                 "scales": [2, 4], "config": "paper", "size": null, "sha256": null,
                 "url": "https://...", "bundled": null, "license": "Apache-2.0",
                 "source": "...", "description": "..."}]}

Every field above is required (``null`` where allowed); unknown fields are rejected.  Optional:
``status`` (``official``, ``release``: meets the quality bar of its model card, ``preview``: trained
but below that bar), ``training`` (a JSON object: recipe, steps, hardware, time, evaluation figures)
and ``model_card`` (relative path of the Markdown model card).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

from ..locations import REPO_ROOT

FORMAT_VERSION = 1
MANIFEST_FILENAME = "weights_manifest.json"
DEFAULT_MANIFEST_PATH = REPO_ROOT / MANIFEST_FILENAME

KNOWN_STATUSES: tuple[str, ...] = ("official", "release", "preview")
OPTIONAL_FIELDS: tuple[str, ...] = ("status", "training", "model_card")
WEIGHT_EXTENSIONS: tuple[str, ...] = (".pth", ".safetensors")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class ManifestEntry:
    """One checkpoint listed in the manifest. ``scales`` is stored sorted, ``sha256`` lowercase."""

    name: str
    filename: str
    family: str
    scales: tuple[int, ...]
    config: str
    size: Optional[int]
    sha256: Optional[str]
    url: Optional[str]
    bundled: Optional[str]
    license: str
    source: str
    description: str
    status: Optional[str] = None
    training: Optional[dict] = None
    model_card: Optional[str] = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, label: str = "entry") -> "ManifestEntry":
        """Validate ``data`` strictly and build an entry; errors are ``ValueError``s naming ``label`` and the field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{label}: must be a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data and n not in OPTIONAL_FIELDS]
        if missing:
            raise ValueError(f"{label}: missing field(s) {', '.join(repr(m) for m in missing)}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"{label}: unknown field(s) {', '.join(repr(u) for u in unknown)}")
        r = _FieldReader(data, label)
        name, filename = _read_names(r)
        families, presets = _known_names()
        family = r.one_of("family", families)
        scales = _read_scales(r)
        config = r.one_of("config", presets)
        size = data["size"]
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise r.fail("size", "must be a positive integer (bytes) or null")
        sha256, url = _read_source(r)
        bundled = r.rel_path("bundled")
        if bundled is not None and PurePosixPath(bundled).name != filename:
            raise r.fail("bundled", f"must point at a file named {filename!r}")
        status = r.text("status", nullable=True) if "status" in data else None
        if status is not None and status not in KNOWN_STATUSES:
            raise r.fail("status", f"must be one of {', '.join(KNOWN_STATUSES)} or null")
        training = data.get("training")
        if training is not None and not isinstance(training, dict):
            raise r.fail("training", "must be a JSON object or null")
        model_card = r.rel_path("model_card") if "model_card" in data else None
        if model_card is not None and not model_card.endswith(".md"):
            raise r.fail("model_card", "must be a Markdown (.md) file")
        return cls(name=name, filename=filename, family=family, scales=scales, config=config, size=size,
                   sha256=sha256, url=url, bundled=bundled, license=r.text("license"), source=r.text("source"),
                   description=r.text("description", allow_empty=True), status=status, training=training,
                   model_card=model_card)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this entry (inverse of :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in OPTIONAL_FIELDS or getattr(self, f.name) is not None}
        out["scales"] = list(self.scales)
        return out



def _known_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The latent families and network presets an entry may name."""
    # imported here: the downloader imports this module in a child process that has no torch
    from ..families import FAMILIES
    from ..model.config import PRESETS

    return tuple(FAMILIES), tuple(PRESETS)


class _FieldReader:
    """Typed reads of one manifest entry's fields; errors name the entry, the field and the value."""

    def __init__(self, data: Mapping[str, Any], label: str) -> None:
        self.data, self.label = data, label

    def fail(self, field: str, problem: str) -> ValueError:
        return ValueError(f"{self.label}: field {field!r} {problem} (got {self.data[field]!r})")

    def text(self, field: str, *, nullable: bool = False, allow_empty: bool = False) -> Optional[str]:
        value = self.data[field]
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(field, "must be a string" + (" or null" if nullable else ""))
        if not allow_empty and not value.strip():
            raise self.fail(field, "must not be empty")
        return value

    def one_of(self, field: str, choices: Sequence[str]) -> str:
        value = self.text(field)
        if value not in choices:
            raise self.fail(field, f"must be one of {', '.join(choices)}")
        return value

    def rel_path(self, field: str) -> Optional[str]:
        value = self.text(field, nullable=True)
        if value is not None:
            rel = PurePosixPath(value)
            if "\\" in value or rel.is_absolute() or ".." in rel.parts or re.match(r"^[A-Za-z]:", value):
                raise self.fail(field, "must be a relative POSIX path inside the repository")
        return value


def _read_names(r: _FieldReader) -> tuple[str, str]:
    """``name`` and ``filename``: a bare, visible weight file name, and the same string."""
    name, filename = r.text("name"), r.text("filename")
    assert name is not None and filename is not None  # text() only returns None for nullable fields
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        raise r.fail("filename", "must be a bare file name without directories")
    if filename.startswith("."):
        raise r.fail("filename", "must not start with '.' (hidden files are ignored by the loader)")
    if not filename.endswith(WEIGHT_EXTENSIONS):
        raise r.fail("filename", f"must end with one of {', '.join(WEIGHT_EXTENSIONS)}")
    if name != filename:
        raise r.fail("name", f"must equal the file name {filename!r}")
    return name, filename


def _read_scales(r: _FieldReader) -> tuple[int, ...]:
    raw = r.data["scales"]
    if not isinstance(raw, list) or not raw:
        raise r.fail("scales", "must be a non-empty list of integers")
    for s in raw:
        if isinstance(s, bool) or not isinstance(s, int):
            raise r.fail("scales", "must contain integers only")
        if s < 2 or s & (s - 1):
            raise r.fail("scales", f"must contain powers of two >= 2, {s} is not")
    if len(set(raw)) != len(raw):
        raise r.fail("scales", "must not repeat a scale")
    return tuple(sorted(raw))


def _read_source(r: _FieldReader) -> tuple[Optional[str], Optional[str]]:
    """``sha256`` (lowercased) and ``url``, each optional."""
    sha256 = r.text("sha256", nullable=True)
    if sha256 is not None:
        sha256 = sha256.lower()
        if not _SHA256_RE.match(sha256):
            raise r.fail("sha256", "must be 64 hexadecimal digits or null")
    url = r.text("url", nullable=True)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise r.fail("url", "must be an http(s) URL or null")
    return sha256, url


class Manifest:
    """A validated set of :class:`ManifestEntry`, with bundled paths resolved against ``root``."""

    def __init__(self, entries: Iterable[ManifestEntry], *, root: Optional[PathLike] = None,
                 path: Optional[PathLike] = None) -> None:
        self._entries = tuple(entries)
        self.root = Path(root) if root is not None else REPO_ROOT
        self.path = Path(path) if path is not None else None
        self._by_name: dict[str, ManifestEntry] = {}
        self._by_filename: dict[str, ManifestEntry] = {}
        where = str(self.path) if self.path is not None else "manifest"
        for i, entry in enumerate(self._entries):
            if entry.name in self._by_name:
                raise ValueError(f"{where}: entry #{i} ({entry.name!r}): field 'name' is a duplicate")
            if entry.filename in self._by_filename:
                raise ValueError(f"{where}: entry #{i} ({entry.name!r}): field 'filename' is a duplicate")
            self._by_name[entry.name] = entry
            self._by_filename[entry.filename] = entry

    @classmethod
    def load(cls, path: Optional[PathLike] = None) -> "Manifest":
        """Read and validate a manifest file (default: the repository's ``weights_manifest.json``).

        Bundled paths are resolved relative to the directory holding the manifest.
        """
        p = Path(path) if path is not None else DEFAULT_MANIFEST_PATH
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{p}: cannot read weights manifest: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: invalid JSON: {exc}") from exc
        return cls.from_dict(data, path=p)

    @classmethod
    def from_dict(cls, data: Any, *, path: Optional[PathLike] = None,
                  root: Optional[PathLike] = None) -> "Manifest":
        """Validate parsed manifest JSON. ``root`` defaults to the manifest's directory (or the repo root)."""
        where = str(path) if path is not None else "manifest"
        if not isinstance(data, dict):
            raise ValueError(f"{where}: top level must be a JSON object")
        extra = sorted(set(data) - {"format_version", "models"})
        if extra:
            raise ValueError(f"{where}: unknown top-level field(s) {', '.join(repr(e) for e in extra)}")
        version = data.get("format_version")
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise ValueError(f"{where}: field 'format_version' must be {FORMAT_VERSION} (got {version!r})")
        models = data.get("models")
        if not isinstance(models, list):
            raise ValueError(f"{where}: field 'models' must be a list (got {type(models).__name__})")
        entries = []
        for i, item in enumerate(models):
            name = item.get("name") if isinstance(item, dict) else None
            label = f"{where}: entry #{i}" + (f" ({name!r})" if isinstance(name, str) else "")
            entries.append(ManifestEntry.from_dict(item, label=label))
        if root is None:
            root = Path(path).resolve().parent if path is not None else REPO_ROOT
        return cls(entries, root=root, path=path)

    @property
    def entries(self) -> tuple[ManifestEntry, ...]:
        return self._entries

    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    def get(self, name: str) -> ManifestEntry:
        """The entry called ``name``; ``KeyError`` listing the known names otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name) or "none"
            raise KeyError(f"no weights manifest entry named {name!r} (known: {known})") from None

    def by_filename(self, filename: str) -> Optional[ManifestEntry]:
        """The entry whose ``filename`` is ``filename`` (a bare name or a path), or ``None``."""
        return self._by_filename.get(Path(filename).name)

    def bundled_path(self, entry: ManifestEntry) -> Optional[Path]:
        """Absolute path of the entry's bundled file, or ``None`` if it has none or the file is absent."""
        if entry.bundled is None:
            return None
        p = (self.root / entry.bundled).resolve()
        return p if p.is_file() else None

    @staticmethod
    def verify_file(entry: ManifestEntry, path: PathLike) -> None:
        """See :func:`verify_file`."""
        verify_file(entry, path)

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


# realpath -> ((mtime_ns, size), the manifest parsed from that version of the file)
_PARSED: dict[str, tuple[tuple[int, int], Manifest]] = {}


def load_cached(path: Optional[PathLike] = None) -> Manifest:
    """:meth:`Manifest.load`, parsed once per process and again only when the file's mtime or size changes.

    A missing or invalid manifest raises the same ``ValueError`` as :meth:`Manifest.load`, on every call
    (failures are not remembered). The returned manifest is shared: treat it as read-only.
    """
    p = Path(path) if path is not None else DEFAULT_MANIFEST_PATH
    real = os.path.realpath(p)
    try:
        st = os.stat(real)
    except OSError:
        return Manifest.load(p)  # raises the usual "cannot read weights manifest"
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _PARSED.get(real)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    manifest = Manifest.load(p)
    _PARSED[real] = (stamp, manifest)
    return manifest


def file_sha256(path: PathLike, chunk_size: int = _HASH_CHUNK) -> str:
    """Lowercase hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: PathLike, *, sha256: Optional[str] = None, size: Optional[int] = None) -> None:
    """Raise ``ValueError`` naming the file and expected/actual values if ``path`` does not match.

    Checks that are ``None`` are skipped; the size is compared first so a wrong
    file is rejected without hashing it. A missing file raises ``FileNotFoundError``.
    """
    p = Path(path)
    actual_size = p.stat().st_size
    if size is not None and actual_size != size:
        raise ValueError(f"{p}: size mismatch: expected {size} bytes, actual {actual_size} bytes")
    if sha256 is not None:
        actual = file_sha256(p)
        if actual != sha256.lower():
            raise ValueError(f"{p}: sha256 mismatch: expected {sha256.lower()}, actual {actual}")


def verify_file(entry: ManifestEntry, path: PathLike) -> None:
    """Check ``path`` against the entry's ``size`` and ``sha256`` (skipping those that are null)."""
    check_file(path, sha256=entry.sha256, size=entry.size)
