"""weights_manifest.json: the shipped file, strict validation, lookups and file verification."""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lua_core.checkpoints.manifest import (
    DEFAULT_MANIFEST_PATH,
    REPO_ROOT,
    Manifest,
    ManifestEntry,
    check_file,
    file_sha256,
    load_cached,
    verify_file,
)

SHA_A = "a" * 64


def valid_entry(**overrides) -> dict:
    entry = {
        "name": "lua_test.safetensors",
        "filename": "lua_test.safetensors",
        "family": "sdxl",
        "scales": [2],
        "config": "light",
        "size": 1234,
        "sha256": SHA_A,
        "url": "https://example.org/lua_test.safetensors",
        "bundled": None,
        "license": "Apache-2.0",
        "source": "unit test",
        "description": "",
    }
    entry.update(overrides)
    return entry


def manifest_dict(*entries: dict) -> dict:
    return {"format_version": 1, "models": list(entries)}


def write_manifest(directory: Path, data) -> Path:
    p = directory / "weights_manifest.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


# --- the shipped manifest ---------------------------------------------------------------------

def test_default_manifest_is_at_repo_root():
    assert REPO_ROOT == Path(__file__).resolve().parents[2]
    assert DEFAULT_MANIFEST_PATH == REPO_ROOT / "weights_manifest.json"
    assert DEFAULT_MANIFEST_PATH.is_file()


def test_shipped_manifest_loads_and_bundled_files_exist():
    m = Manifest.load()
    assert len(m) >= 1
    for entry in m.entries:
        assert entry.name == entry.filename
        if entry.bundled is not None:
            p = m.bundled_path(entry)
            assert p is not None and p.is_file(), f"{entry.name}: bundled file {entry.bundled} is missing"
            verify_file(entry, p)
        assert entry.url is not None or entry.bundled is not None, f"{entry.name}: neither url nor bundled"


def test_shipped_manifest_official_flux_entry():
    e = Manifest.load().get("lua_flux.pth")
    assert e.filename == "lua_flux.pth"
    assert e.family == "flux1"
    assert e.scales == (2, 4)
    assert e.config == "paper"
    assert e.url == "https://huggingface.co/vaskers5/LUA-FLUX/resolve/main/lua_flux.pth"
    assert e.license == "Apache-2.0"
    assert "vaskers5/LUA-FLUX" in e.source and "2511.10629" in e.source
    assert e.size is None and e.sha256 is None
    assert e.bundled is None
    assert e.status == "official"  # so `auto` prefers it on disk over the released light adapter


# --- validation -------------------------------------------------------------------------------

BAD_FIELDS = [
    ("family", "sd2", "family"),
    ("family", None, "family"),
    ("scales", [3], "scales"),
    ("scales", [2, 6], "scales"),
    ("scales", [1], "scales"),
    ("scales", [], "scales"),
    ("scales", [2, 2], "scales"),
    ("scales", [True], "scales"),
    ("scales", [2.0], "scales"),
    ("scales", 2, "scales"),
    ("config", "huge", "config"),
    ("size", -1, "size"),
    ("size", 0, "size"),
    ("size", "12", "size"),
    ("size", True, "size"),
    ("sha256", "abc", "sha256"),
    ("sha256", "g" * 64, "sha256"),
    ("sha256", "a" * 63, "sha256"),
    ("url", "ftp://example.org/x", "url"),
    ("url", "not a url", "url"),
    ("url", 5, "url"),
    ("bundled", "/abs/lua_test.safetensors", "bundled"),
    ("bundled", "../lua_test.safetensors", "bundled"),
    ("bundled", "weights/other.safetensors", "bundled"),
    ("bundled", "weights\\lua_test.safetensors", "bundled"),
    ("license", "", "license"),
    ("source", None, "source"),
    ("description", None, "description"),
    ("name", "other.safetensors", "name"),
]


@pytest.mark.parametrize("field,value,named", BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_bad_field_value_is_rejected_naming_entry_and_field(tmp_path, field, value, named):
    p = write_manifest(tmp_path, manifest_dict(valid_entry(name="ok.pth", filename="ok.pth"),
                                               valid_entry(**{field: value})))
    with pytest.raises(ValueError) as info:
        Manifest.load(p)
    msg = str(info.value)
    assert f"'{named}'" in msg
    assert "entry #1" in msg
    assert str(p) in msg


@pytest.mark.parametrize("filename", ["sub/x.pth", ".hidden.pth", "x.ckpt", "x.bin", ".."])
def test_bad_filename_is_rejected(tmp_path, filename):
    with pytest.raises(ValueError, match="'filename'"):
        Manifest.load(write_manifest(tmp_path, manifest_dict(valid_entry(name=filename, filename=filename))))


@pytest.mark.parametrize("field", ["name", "sha256", "bundled", "description"])
def test_missing_field_is_rejected(tmp_path, field):
    entry = valid_entry()
    del entry[field]
    with pytest.raises(ValueError) as info:
        Manifest.load(write_manifest(tmp_path, manifest_dict(entry)))
    assert "missing" in str(info.value) and f"'{field}'" in str(info.value)


def test_unknown_field_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown field.*'sha1'"):
        Manifest.load(write_manifest(tmp_path, manifest_dict(valid_entry(sha1="x"))))


def test_duplicate_name_is_rejected(tmp_path):
    with pytest.raises(ValueError) as info:
        Manifest.load(write_manifest(tmp_path, manifest_dict(valid_entry(), valid_entry())))
    msg = str(info.value)
    assert "duplicate" in msg and "'name'" in msg and "lua_test.safetensors" in msg and "#1" in msg


@pytest.mark.parametrize("data,needle", [
    ("{not json", "invalid JSON"),
    ("[]", "top level"),
    ({"format_version": 2, "models": []}, "'format_version'"),
    ({"format_version": True, "models": []}, "'format_version'"),
    ({"models": []}, "'format_version'"),
    ({"format_version": 1}, "'models'"),
    ({"format_version": 1, "models": {}}, "'models'"),
    ({"format_version": 1, "models": [], "extra": 1}, "'extra'"),
    ({"format_version": 1, "models": ["x"]}, "entry #0"),
])
def test_bad_top_level_is_rejected(tmp_path, data, needle):
    p = write_manifest(tmp_path, data)
    with pytest.raises(ValueError) as info:
        Manifest.load(p)
    assert needle in str(info.value) and str(p) in str(info.value)


def test_missing_manifest_file_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        Manifest.load(tmp_path / "nope.json")


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """Counts the manifests validated (every :meth:`Manifest.load` goes through ``from_dict``)."""
    calls: list[str] = []
    real = Manifest.from_dict
    monkeypatch.setattr(Manifest, "from_dict",
                        staticmethod(lambda data, **kw: calls.append(str(kw.get("path"))) or real(data, **kw)))
    return calls


def test_load_cached_parses_once_and_again_when_the_file_changes(tmp_path, parses):
    p = write_manifest(tmp_path, manifest_dict(valid_entry()))
    first = load_cached(p)
    assert load_cached(p) is first and load_cached(str(p)) is first
    assert first.names() == ["lua_test.safetensors"] and len(parses) == 1
    # a link to the same file shares the parse
    link = tmp_path / "link.json"
    link.symlink_to(p)
    assert load_cached(link) is first and len(parses) == 1
    # another entry, and the mtime moved on: read again
    st = p.stat()
    write_manifest(tmp_path, manifest_dict(valid_entry(), valid_entry(name="b.pth", filename="b.pth")))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = load_cached(p)
    assert second.names() == ["lua_test.safetensors", "b.pth"] and len(parses) == 2
    assert load_cached(p) is second and len(parses) == 2
    # same size, only the mtime changed (an edit of one character): read again
    write_manifest(tmp_path, manifest_dict(valid_entry(), valid_entry(name="c.pth", filename="c.pth")))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert load_cached(p).names() == ["lua_test.safetensors", "c.pth"] and len(parses) == 3


def test_load_cached_defaults_to_the_shipped_manifest(parses):
    assert load_cached().names() == Manifest.load().names()
    assert load_cached() is load_cached()


def test_load_cached_raises_like_load_every_time(tmp_path, parses):
    with pytest.raises(ValueError, match="cannot read weights manifest"):
        load_cached(tmp_path / "nope.json")
    p = write_manifest(tmp_path, "{not json")
    for _ in range(2):  # a broken file is not remembered as broken, nor as anything else
        with pytest.raises(ValueError, match="invalid JSON"):
            load_cached(p)
    write_manifest(tmp_path, manifest_dict(valid_entry(family="nope")))
    os.utime(p, ns=(0, 10**18))
    with pytest.raises(ValueError, match="field 'family' must be one of"):
        load_cached(p)
    write_manifest(tmp_path, manifest_dict())
    os.utime(p, ns=(0, 2 * 10**18))
    assert len(load_cached(p)) == 0


def test_empty_models_list_is_valid(tmp_path):
    assert len(Manifest.load(write_manifest(tmp_path, manifest_dict()))) == 0


def test_normalisation_and_roundtrip(tmp_path):
    raw = valid_entry(sha256="ABCDEF" + "0" * 58, scales=[4, 2])
    e = Manifest.load(write_manifest(tmp_path, manifest_dict(raw))).entries[0]
    assert e.sha256 == "abcdef" + "0" * 58
    assert e.scales == (2, 4)
    assert ManifestEntry.from_dict(e.to_dict()) == e


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-4, max_value=1 << 12))
def test_scales_accept_exactly_powers_of_two(scale):
    ok = scale >= 2 and (scale & (scale - 1)) == 0
    entry = valid_entry(scales=[scale])
    if ok:
        assert ManifestEntry.from_dict(entry).scales == (scale,)
    else:
        with pytest.raises(ValueError, match="'scales'"):
            ManifestEntry.from_dict(entry)


# --- lookups ----------------------------------------------------------------------------------

def test_get_by_filename_contains(tmp_path):
    m = Manifest.load(write_manifest(tmp_path, manifest_dict(valid_entry(), valid_entry(
        name="b.pth", filename="b.pth", url=None, sha256=None, size=None))))
    assert m.get("b.pth").filename == "b.pth"
    assert "b.pth" in m and "c.pth" not in m
    assert m.by_filename("lua_test.safetensors").name == "lua_test.safetensors"
    assert m.by_filename("/some/models/lua/b.pth").name == "b.pth"
    assert m.by_filename("c.pth") is None
    assert m.names() == ["lua_test.safetensors", "b.pth"]
    with pytest.raises(KeyError, match="c.pth.*known: lua_test.safetensors, b.pth"):
        m.get("c.pth")


def test_bundled_path_is_absolute_and_only_when_present(tmp_path):
    entry = valid_entry(bundled="weights/lua_test.safetensors", size=None, sha256=None)
    m = Manifest.load(write_manifest(tmp_path, manifest_dict(entry)))
    e = m.entries[0]
    assert m.root == tmp_path.resolve()
    assert m.bundled_path(e) is None
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "lua_test.safetensors").write_bytes(b"x")
    p = m.bundled_path(e)
    assert p is not None and p.is_absolute() and p == (tmp_path / "weights" / "lua_test.safetensors").resolve()
    assert m.bundled_path(ManifestEntry.from_dict(valid_entry())) is None


# --- file verification ------------------------------------------------------------------------

def test_verify_file(tmp_path):
    data = b"lua weights" * 100
    f = tmp_path / "lua_test.safetensors"
    f.write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    assert file_sha256(f) == good

    verify_file(ManifestEntry.from_dict(valid_entry(size=len(data), sha256=good)), f)
    Manifest.verify_file(ManifestEntry.from_dict(valid_entry(size=None, sha256=good)), f)
    verify_file(ManifestEntry.from_dict(valid_entry(size=len(data), sha256=None)), f)
    verify_file(ManifestEntry.from_dict(valid_entry(size=None, sha256=None)), f)

    with pytest.raises(ValueError) as info:
        verify_file(ManifestEntry.from_dict(valid_entry(size=len(data) + 1, sha256=good)), f)
    msg = str(info.value)
    assert str(f) in msg and "size" in msg and str(len(data) + 1) in msg and str(len(data)) in msg

    with pytest.raises(ValueError) as info:
        verify_file(ManifestEntry.from_dict(valid_entry(size=len(data), sha256=SHA_A)), f)
    msg = str(info.value)
    assert str(f) in msg and "sha256" in msg and SHA_A in msg and good in msg

    with pytest.raises(FileNotFoundError):
        check_file(tmp_path / "missing.pth", size=1)


def test_entries_are_immutable():
    e = ManifestEntry.from_dict(valid_entry())
    with pytest.raises(Exception):
        e.name = "x"  # type: ignore[misc]
    assert copy.deepcopy(e) == e


def test_optional_status_training_and_model_card_fields():
    plain = ManifestEntry.from_dict(valid_entry())
    assert plain.status is None and plain.training is None and plain.model_card is None
    assert "status" not in plain.to_dict()  # absent stays absent
    full = ManifestEntry.from_dict(valid_entry(status="preview", training={"steps": 2000},
                                               model_card="weights/lua_test.md"))
    assert ManifestEntry.from_dict(full.to_dict()) == full
    for field, value, problem in [("status", "great", "one of"), ("training", [1], "JSON object"),
                                  ("model_card", "../card.md", "relative POSIX path"),
                                  ("model_card", "weights/card.txt", "Markdown")]:
        with pytest.raises(ValueError, match=f"field '{field}' must .*{problem}"):
            ManifestEntry.from_dict(valid_entry(**{field: value}))


def test_shipped_entries_have_cards_and_training_summaries():
    for entry in Manifest.load():
        if entry.bundled is None:
            continue
        assert entry.status in ("release", "preview"), entry.name
        assert entry.model_card and (REPO_ROOT / entry.model_card).is_file(), entry.name
        assert {"recipe", "hardware", "evaluation"} <= set(entry.training or {}), entry.name
