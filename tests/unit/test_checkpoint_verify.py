"""lua_core.checkpoints.verify: a file on disk against its manifest entry (size, sha256) and a loaded
network against its entry's preset layout and family."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from lua_core.checkpoints import manifest as manifest_mod
from lua_core.checkpoints import verify
from lua_core.checkpoints.manifest import ManifestEntry
from lua_core.model.config import LIGHT_CONFIG, PAPER_CONFIG

DATA = b"the published adapter"


def _entry(**overrides) -> ManifestEntry:
    fields = {"name": "lua_test.safetensors", "filename": "lua_test.safetensors", "family": "flux1",
              "scales": [2, 4], "config": "paper", "size": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest(),
              "url": None, "bundled": None, "license": "Apache-2.0", "source": "unit test", "description": ""}
    fields.update(overrides)
    return ManifestEntry.from_dict(fields)


@pytest.fixture
def hashed(monkeypatch) -> list[Path]:
    """Counts the files :func:`check_file` hashes, and starts from an empty hash-once cache."""
    calls: list[Path] = []
    real = manifest_mod.file_sha256
    monkeypatch.setattr(manifest_mod, "file_sha256", lambda path, *a, **k: calls.append(Path(path)) or real(path))
    monkeypatch.setattr(verify, "_VERIFIED", set())
    return calls


@pytest.fixture
def adapter(tmp_path) -> Path:
    p = tmp_path / "lua_test.safetensors"
    p.write_bytes(DATA)
    return p


def test_a_file_whose_sha256_differs_is_refused_with_the_message(adapter, hashed):
    other = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ValueError) as info:
        verify.verify_against_manifest(_entry(sha256=other), adapter)
    actual = hashlib.sha256(DATA).hexdigest()
    assert str(info.value) == (
        f"LUA model 'lua_test.safetensors' at {adapter} does not match the weights manifest ({adapter}: sha256 "
        f"mismatch: expected {other}, actual {actual}). Delete it so it is downloaded again, or rename it to use it "
        f"as your own checkpoint")
    # a refused file is not remembered: asking again hashes again, and refuses again
    with pytest.raises(ValueError):
        verify.verify_against_manifest(_entry(sha256=other), adapter)
    assert len(hashed) == 2


def test_a_file_whose_size_differs_is_refused_without_hashing(adapter, hashed):
    with pytest.raises(ValueError, match=re.escape(f"({adapter}: size mismatch: expected 123 bytes, actual "
                                                   f"{len(DATA)} bytes)")):
        verify.verify_against_manifest(_entry(size=123), adapter)
    assert hashed == []


def test_a_matching_file_is_hashed_once(adapter, hashed):
    for _ in range(3):
        verify.verify_against_manifest(_entry(), adapter)
    assert hashed == [adapter]
    # another entry for the same file (another expected hash) is a new check
    with pytest.raises(ValueError, match="sha256 mismatch"):
        verify.verify_against_manifest(_entry(sha256="b" * 64), adapter)
    assert len(hashed) == 2


def test_a_changed_file_is_hashed_again(adapter, hashed):
    verify.verify_against_manifest(_entry(), adapter)
    st = adapter.stat()
    os.utime(adapter, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    verify.verify_against_manifest(_entry(), adapter)
    assert len(hashed) == 2
    # other bytes of the same size, written later: checked again, and refused
    adapter.write_bytes(DATA.upper())
    os.utime(adapter, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        verify.verify_against_manifest(_entry(), adapter)
    assert len(hashed) == 3


def test_files_without_an_entry_or_without_size_and_sha256_are_not_checked(tmp_path, hashed):
    missing = tmp_path / "not_even_there.safetensors"
    verify.verify_against_manifest(None, missing)
    verify.verify_against_manifest(_entry(size=None, sha256=None), missing)
    assert hashed == []


def test_layout_differences_lists_each_differing_field_and_the_family():
    entry = _entry(sha256=None, size=None)
    assert verify.layout_differences(entry, PAPER_CONFIG, "flux1") == []
    # lists and tuples of the same items are the same layout (configs read from JSON carry lists)
    as_lists = PAPER_CONFIG.replace(depths=list(PAPER_CONFIG.depths), scales=list(PAPER_CONFIG.scales))
    assert verify.layout_differences(entry, as_lists, "flux1") == []
    got = PAPER_CONFIG.replace(embed_dim=24, depths=(2, 2), num_heads=(12, 12), in_scale=0.5)  # in_scale: no layout
    assert verify.layout_differences(entry, got, "sd3") == [
        "embed_dim 24 (expected 360)", "depths (2, 2) (expected (6, 6, 6, 6, 6, 6))",
        "num_heads (12, 12) (expected (12, 12, 12, 12, 12, 12))", "family sd3 (expected flux1)"]
    light = _entry(sha256=None, size=None, config="light")
    assert verify.layout_differences(light, LIGHT_CONFIG, "flux1") == []
    assert "embed_dim 360" in verify.layout_differences(light, PAPER_CONFIG, "flux1")[0]


def test_verify_layout_refuses_another_layout_for_an_entry_without_sha256(adapter):
    entry = _entry(sha256=None, size=None)
    verify.verify_layout(entry, PAPER_CONFIG, "flux1", adapter)
    with pytest.raises(ValueError) as info:
        verify.verify_layout(entry, PAPER_CONFIG.replace(embed_dim=24), "sd3", adapter)
    assert str(info.value) == (
        f"LUA model 'lua_test.safetensors' at {adapter} is not the published paper-config checkpoint: embed_dim 24 "
        f"(expected 360); family sd3 (expected flux1). Delete it so it is downloaded again, or rename it to use it as "
        f"your own checkpoint")
    # entries with a sha256 are pinned by their hash, and files without an entry are the user's own
    verify.verify_layout(_entry(), PAPER_CONFIG.replace(embed_dim=24), "sd3", adapter)
    verify.verify_layout(None, PAPER_CONFIG.replace(embed_dim=24), "sd3", adapter)
