"""Hostile and broken files, and downloads that go wrong.

Checkpoints: malicious pickles in many disguises (nothing runs, the message says why), crafted
tensor records, truncation at many cut points, random byte corruption (hypothesis), shapes that
do not match (the tensor is named), configs that would make the loader allocate gigabytes.
Downloads against a real local HTTP server (``tests/support/file_server.py``): killed mid-transfer,
retries after every kind of failure, time-outs before any byte, a real full disk (tmpfs) and a
really read-only folder (read-only bind mount, unprivileged user), and concurrent downloads of
one file from threads and processes. ``tests/unit/test_checkpoints.py`` and
``tests/unit/test_download.py`` hold the basic cases; nothing here repeats them. The manifest's
sha256 through the real loader node (in-process ComfyUI) is in ``tests/integration/test_loader_manifest_hash.py``.
"""
from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import lua_core
from lua_core import api
from lua_core.checkpoints.download import DownloadError, download_file, lock_path_for
from lua_core.checkpoints.export import save_checkpoint
from lua_core.checkpoints.formats import CheckpointError, read_checkpoint
from tests.helpers import tiny_config
from tests.support.file_server import FileServer, serve_files

REPO = Path(__file__).resolve().parents[2]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CORRUPTION_EXAMPLES = int(40 * float(os.environ.get("LUA_HYPOTHESIS_SCALE", "1")))


# ==================================================================================================
# checkpoint files
# ==================================================================================================

@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> dict[str, Path]:
    """A small valid adapter as our .safetensors (with metadata) and as a metadata-less official-style .pth."""
    folder = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    net = lua_core.LUANet(tiny_config(16))
    st_path = save_checkpoint(net, folder / "good.safetensors", "flux1", dtype=torch.float16)
    pth_path = folder / "good.pth"
    torch.save({"params_ema": load_file(st_path)}, pth_path)
    return {"safetensors": st_path, "pth": pth_path}


@pytest.fixture
def marker(tmp_path) -> Iterator[Path]:
    """A path that a payload would create if any code in a file ran; asserted absent afterwards."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload inside a checkpoint was executed"


# --- building malicious pickles -------------------------------------------------------------------

def _call(module: str, name: str, *args: Any) -> bytes:
    """A protocol-2 pickle that calls ``module.name(*args)`` (GLOBAL + REDUCE), as an attacker writes it."""
    body = pickle.dumps(args, protocol=2)[2:-1]  # the argument tuple without PROTO/STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + body + b"R."


def _stack_global(module: str, name: str, arg: str) -> bytes:
    """Protocol 4 STACK_GLOBAL form of a call."""
    def s(text: str) -> bytes:
        data = text.encode()
        return b"\x8c" + bytes([len(data)]) + data + b"\x94"
    return b"\x80\x04" + s(module) + s(name) + b"\x93" + s(arg) + b"\x85R."


def _inst(module: str, name: str, arg: str) -> bytes:
    """Protocol 0 INST form of a call."""
    return b"(" + f"S{json.dumps(arg)}\n".encode() + b"i" + f"{module}\n{name}\n".encode() + b"."


def _touch(marker: Path) -> str:
    return f"touch {marker}"


def _py(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


# name -> builder(marker) of a data.pkl payload put inside an otherwise valid torch zip archive
DATA_PKL_PAYLOADS: dict[str, Callable[[Path], bytes]] = {
    "os.system": lambda m: _call("os", "system", _touch(m)),
    "posix.system": lambda m: _call("posix", "system", _touch(m)),
    "builtins.exec": lambda m: _call("builtins", "exec", _py(m)),
    "builtins.eval": lambda m: _call("builtins", "eval", _py(m)),
    "subprocess.Popen": lambda m: _call("subprocess", "Popen", ["touch", str(m)]),
    "subprocess.check_output": lambda m: _call("subprocess", "check_output", ["touch", str(m)]),
    "runpy._run_code": lambda m: _call("runpy", "_run_code", _py(m), {}),
    "importlib.import_module": lambda m: _call("importlib", "import_module", "antigravity"),
    "builtins.getattr": lambda m: _call("builtins", "getattr", 1, "real"),
    "functools.partial": lambda m: _call("functools", "partial", print),
    "torch.load (nested)": lambda m: _call("torch", "load", str(m)),
    "torch.storage._load_from_bytes": lambda m: _call("torch.storage", "_load_from_bytes", pickle.dumps(0)),
    "__main__ class": lambda m: _call("__main__", "Exploit", _touch(m)),
    "numpy _reconstruct": lambda m: _call("numpy.core.multiarray", "_reconstruct", 1),
    "STACK_GLOBAL os.system": lambda m: _stack_global("os", "system", _touch(m)),
    "INST os.system": lambda m: _inst("os", "system", _touch(m)),
}


class _Exploit:
    """What an attacker pickles: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (_touch(self.marker),))


def _torch_zip(path: Path, data_pkl: bytes, records: Optional[dict[str, bytes]] = None) -> Path:
    """A PyTorch zip archive (the layout torch.save writes) with the given data.pkl and storage records."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for key, data in (records or {}).items():
            z.writestr(f"archive/data/{key}", data)
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("payload", sorted(DATA_PKL_PAYLOADS))
@pytest.mark.parametrize("suffix", [".pth", ".ckpt"])
def test_non_allowlisted_globals_in_data_pkl_are_refused(tmp_path, marker, payload, suffix):
    """A .pth/.ckpt whose data.pkl references anything but tensor-rebuilding globals is refused unrun."""
    path = _torch_zip(tmp_path / f"evil{suffix}", DATA_PKL_PAYLOADS[payload](marker))
    with pytest.raises(CheckpointError, match="refused to load: the file contains Python objects") as info:
        lua_core.load_model(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize("where", ["top level", "inside params_ema", "as a list item", "in a tuple key"])
def test_torch_saved_exploits_are_refused(tmp_path, marker, where):
    """torch.save of a reduce-to-os.system object, wherever it hides in the dict."""
    evil = _Exploit(marker)
    weights = {"conv_first.weight": torch.zeros(2)}
    obj = {"top level": {"params_ema": weights, "x": evil},
           "inside params_ema": {"params_ema": {**weights, "conv_first.bias": evil}},
           "as a list item": {"params_ema": weights, "history": [1, evil]},
           "in a tuple key": {"params_ema": weights, (1, evil): 2}}[where]
    path = tmp_path / "evil.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        lua_core.load_model(path)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt", ".bin"])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_legacy_raw_pickles_are_refused(tmp_path, marker, suffix, protocol):
    path = tmp_path / f"raw{suffix}"
    path.write_bytes(pickle.dumps({"params_ema": _Exploit(marker)}, protocol=protocol))
    with pytest.raises(CheckpointError, match="not a PyTorch zip checkpoint"):
        lua_core.load_model(path)


def test_legacy_non_zip_torch_file_is_refused(tmp_path):
    """Even a harmless legacy (pre-1.6) torch.save file: only zip archives are read."""
    path = tmp_path / "legacy.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1)}}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy/raw pickle"):
        lua_core.load_model(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".sft"])
@pytest.mark.parametrize("kind", ["raw pickle p0", "raw pickle p4", "torch zip"])
def test_pickles_named_safetensors_are_refused(tmp_path, marker, suffix, kind):
    """A pickle (or a torch zip) renamed to .safetensors goes to the safetensors parser and is refused."""
    path = tmp_path / f"evil{suffix}"
    if kind == "torch zip":
        torch.save({"params_ema": _Exploit(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Exploit(marker), protocol=0 if kind.endswith("p0") else 4))
    with pytest.raises(CheckpointError, match="not a readable .safetensors file"):
        lua_core.load_model(path)


@pytest.mark.parametrize("name,data_pkl", [
    ("empty", b""),
    ("garbage", b"\x80\x02\xff\xfe\xfd"),
    ("unbalanced marks", b"\x80\x02" + b"(" * 100_000 + b"."),  # raised IndexError out of the loader
    ("missing STOP", pickle.dumps({"a": 1}, protocol=2)[:-1]),
    ("memo index out of range", b"\x80\x02h\xff."),
    ("deep nesting", b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."),
])
def test_malformed_data_pkl_is_a_clear_error(tmp_path, name, data_pkl):
    path = _torch_zip(tmp_path / "bad.pth", data_pkl)
    with pytest.raises(CheckpointError) as info:
        lua_core.load_model(path)
    assert "bad.pth" in str(info.value)


# --- crafted tensor records -----------------------------------------------------------------------

class _Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles as torch's own tensor record: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: _Storage, size: tuple, stride: tuple, offset: int = 0) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _crafted_pth(path: Path, tensors: dict[str, _Tensor], records: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump({"params_ema": tensors})
    return _torch_zip(path, buf.getvalue(), records)


FOUR_FLOATS = b"\0" * 16


@pytest.mark.parametrize("name,tensor,message", [
    ("declared numel above the record", _Tensor(_Storage("0", 10**12), (2, 2), (2, 1)), "does not match expected size"),
    ("view beyond the storage", _Tensor(_Storage("0", 4), (10**6, 10**6), (1, 1)), "could not be read"),
    ("broadcast view of 10^12 elements", _Tensor(_Storage("0", 4), (10**6, 10**6), (0, 0)), "declare .* bytes"),
    ("negative offset", _Tensor(_Storage("0", 4), (2, 2), (2, 1), -8), "could not be read"),
    ("negative size", _Tensor(_Storage("0", 4), (-2, 2), (2, 1)), "could not be read"),
    ("storage key escaping the archive", _Tensor(_Storage("../../../etc/passwd", 4), (2, 2), (2, 1)),
     "could not be read"),
    ("missing storage record", _Tensor(_Storage("7", 4), (2, 2), (2, 1)), "could not be read"),
])
def test_crafted_tensor_records_are_refused(tmp_path, name, tensor, message):
    """Records that lie about their size or location; none may allocate what they declare."""
    path = _crafted_pth(tmp_path / "crafted.pth", {"conv_first.weight": tensor}, {"0": FOUR_FLOATS})
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_a_crafted_record_that_is_honest_loads(tmp_path):
    """The crafting itself is sound: an honest record reads back."""
    path = _crafted_pth(tmp_path / "honest.pth", {"w": _Tensor(_Storage("0", 4), (2, 2), (2, 1))}, {"0": FOUR_FLOATS})
    assert read_checkpoint(path).tensors["w"].shape == (2, 2)


# --- truncation and corruption --------------------------------------------------------------------

def _cut_points(path: Path, kind: str) -> list[int]:
    size = path.stat().st_size
    if kind == "safetensors":
        header_end = 8 + int.from_bytes(path.read_bytes()[:8], "little")
        points = [1, 7, 8, 9, 8 + (header_end - 8) // 2, header_end - 1, header_end, header_end + 1,
                  (header_end + size) // 2, size - 1]
    else:
        with zipfile.ZipFile(path) as z:
            data_offsets = [i.header_offset for i in z.infolist()]
        points = [1, 4, 30, 100, data_offsets[len(data_offsets) // 2], size // 2, size - 100, size - 22,
                  size - 10, size - 1]
    return sorted(set(p for p in points if 0 < p < size))


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_truncated_at_every_structural_cut_point(tmp_path, good_files, kind):
    """Header, header boundary, data, end-of-central-directory: every cut is a clear error, nothing loads."""
    src = good_files[kind]
    data = src.read_bytes()
    cuts = _cut_points(src, kind)
    assert len(cuts) >= 8
    for cut in cuts:
        bad = tmp_path / f"cut_{cut}.{kind}"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="corrupted|truncated|not a PyTorch zip") as info:
            lua_core.load_model(bad)
        assert bad.name in str(info.value), (cut, str(info.value))


@pytest.mark.slow
@settings(max_examples=CORRUPTION_EXAMPLES, deadline=None, derandomize=os.environ.get("LUA_HYPOTHESIS_RANDOM") != "1",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["safetensors", "pth"]), where=st.floats(0, 1, exclude_max=True),
       in_header=st.booleans(), flips=st.lists(st.integers(1, 255), min_size=1, max_size=8))
def test_random_corruption_is_refused_or_harmless(tmp_path, good_files, kind, where, in_header, flips):
    """XOR a few bytes anywhere (often in the header/zip structure): a CheckpointError, or a model that
    loads and then upscales to finite values or refuses with a ValueError. Never any other exception."""
    data = bytearray(good_files[kind].read_bytes())
    if kind == "safetensors":
        header_end = 8 + int.from_bytes(data[:8], "little")
        region = (0, header_end) if in_header else (header_end, len(data))
    else:
        region = (len(data) - 2000, len(data)) if in_header else (0, len(data))  # zip directory, or anywhere
    start = region[0] + int(where * (region[1] - region[0]))
    for i, value in enumerate(flips):
        if start + i < len(data):
            data[start + i] ^= value
    path = tmp_path / f"corrupt.{kind}"
    path.write_bytes(bytes(data))
    try:
        model = lua_core.load_model(path, family="flux1")
    except CheckpointError as exc:
        event(f"{kind}: refused ({'NaN weights' if 'NaN' in str(exc) else 'unreadable/inconsistent'})")
        return
    try:
        out = lua_core.upscale(model, torch.randn(1, 16, 6, 6), 2)
    except ValueError as exc:  # e.g. a flipped exponent bit: weights so large the output overflows
        event(f"{kind}: loaded, output overflow refused")
        assert "NaN or Inf" in str(exc)
    else:
        event(f"{kind}: loaded, finite output")
        assert out.shape == (1, 16, 12, 12) and torch.isfinite(out).all()


# --- shapes, names, dtypes ------------------------------------------------------------------------

def _metadata(path: Path) -> dict[str, str]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))["__metadata__"]


def _perturb(t: torch.Tensor, how: str) -> torch.Tensor:
    if how == "grow" and t.ndim:
        return torch.zeros(t.shape[0] + 1, *t.shape[1:], dtype=t.dtype)
    if how == "flatten":
        return t.reshape(-1)[: max(1, t.numel() - 1)].clone() if t.numel() > 1 else torch.zeros(2, dtype=t.dtype)
    return t.unsqueeze(0).clone()  # "extra dimension"


@pytest.fixture(scope="module")
def good_tensors(good_files) -> dict[str, torch.Tensor]:
    return load_file(good_files["safetensors"])


@pytest.mark.slow
@settings(max_examples=int(30 * float(os.environ.get("LUA_HYPOTHESIS_SCALE", "1"))), deadline=None,
          derandomize=os.environ.get("LUA_HYPOTHESIS_RANDOM") != "1",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, 10**6), how=st.sampled_from(["grow", "flatten", "extra dimension"]),
       fmt=st.sampled_from(["safetensors with metadata", "pth without metadata"]))
def test_a_mis_shaped_tensor_is_named(tmp_path, good_files, good_tensors, index, how, fmt):
    """Any one tensor with a wrong shape: the error names that tensor (for a metadata-less file, possibly as
    one the architecture was inferred from), or, without metadata, the shapes describe another valid network."""
    names = sorted(good_tensors)
    name = names[index % len(names)]
    tensors = dict(good_tensors)
    tensors[name] = _perturb(tensors[name], how)
    if fmt.startswith("safetensors"):
        path = tmp_path / "bad.safetensors"
        save_file(tensors, path, metadata=_metadata(good_files["safetensors"]))
    else:
        path = tmp_path / "bad.pth"
        torch.save({"params_ema": tensors}, path)
    try:
        lua_core.load_model(path, family="flux1")
    except CheckpointError as exc:
        event(f"{fmt}: refused naming the tensor")
        assert repr(name) in str(exc) or f"{name} (" in str(exc), (name, str(exc))
    else:
        event(f"{fmt}: describes another valid network")
        assert fmt.startswith("pth"), f"{name} ({how}) was accepted despite the metadata"


def test_unknown_and_missing_tensors_are_named(tmp_path, good_tensors, good_files):
    tensors = {k: v for k, v in good_tensors.items() if k != "layers.1.residual_group.blocks.1.mlp.fc2.bias"}
    tensors["layers.9.something.weight"] = torch.zeros(3)
    path = tmp_path / "names.safetensors"
    save_file(tensors, path, metadata=_metadata(good_files["safetensors"]))
    with pytest.raises(CheckpointError) as info:
        lua_core.load_model(path)
    assert "'layers.1.residual_group.blocks.1.mlp.fc2.bias'" in str(info.value)
    assert "'layers.9.something.weight'" in str(info.value)


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64])
def test_non_float_weights_are_named(tmp_path, good_tensors, dtype):
    tensors = dict(good_tensors)
    tensors["conv_after_body.weight"] = torch.ones_like(tensors["conv_after_body.weight"], dtype=dtype)
    path = tmp_path / "dtype.pth"
    torch.save({"params_ema": tensors}, path)
    with pytest.raises(CheckpointError, match="'conv_after_body.weight' has dtype"):
        lua_core.load_model(path)


def test_a_gap_in_the_blocks_is_named(tmp_path, good_tensors):
    """A lone 'blocks.999' tensor would make a metadata-less loader build 1000 blocks."""
    tensors = dict(good_tensors)
    tensors["layers.0.residual_group.blocks.999.norm1.weight"] = torch.zeros(24)
    path = tmp_path / "gap.pth"
    torch.save({"params_ema": tensors}, path)
    with pytest.raises(CheckpointError, match="block 999 but none for block 2"):
        lua_core.load_model(path)


# --- configs that would allocate gigabytes --------------------------------------------------------

@pytest.fixture
def no_network_built(monkeypatch):
    """Fail the test if load_model gets as far as building a network."""
    def refuse(config):
        raise AssertionError(f"a network was built for {config}")
    monkeypatch.setattr(api, "LUANet", refuse)


@pytest.mark.parametrize("change", [
    {"embed_dim": 24000}, {"depths": [2, 100_000]}, {"window_size": 1024}, {"head_num_feat": 100_000},
    {"mlp_ratio": 100_000.0},
])
def test_metadata_config_far_larger_than_the_file_is_refused_before_building(tmp_path, good_tensors, good_files,
                                                                           no_network_built, change):
    meta = _metadata(good_files["safetensors"])
    config = {**json.loads(meta["lua.config"]), **change}
    if "embed_dim" in change:
        config["num_heads"] = [3, 3]
    path = tmp_path / "huge.safetensors"
    save_file(good_tensors, path, metadata={**meta, "lua.config": json.dumps(config)})
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match="refused before building the network"):
        lua_core.load_model(path)
    assert time.monotonic() - t0 < 5


def test_metadataless_shapes_implying_a_huge_network_are_refused_before_building(tmp_path, no_network_built):
    """A 2.4 MB file whose conv_first says 4096 features (a ~1 GB network) is refused without allocating it."""
    first = "layers.0.residual_group.blocks.0."
    tensors = {"conv_first.weight": torch.zeros(4096, 16, 3, 3),
               first + "attn.relative_position_bias_table": torch.zeros(225, 8),
               first + "mlp.fc1.weight": torch.zeros(8192, 1),
               "heads.x2.conv_before.0.weight": torch.zeros(64, 1, 1, 1), "heads.x2.conv_last.weight": torch.zeros(1)}
    path = tmp_path / "inflated.pth"
    torch.save({"params_ema": tensors}, path)
    with pytest.raises(CheckpointError, match="refused before building the network"):
        lua_core.load_model(path)


@pytest.mark.parametrize("field,value,message", [
    ("lua.config", "{not json", "not valid JSON"),
    ("lua.config", "[]", "must be a JSON object"),
    ("lua.config", "null", "must be a JSON object"),
    ("in_chans", "16", "'in_chans' must be a positive integer"),
    ("depths", 2, "'depths' must be a list of positive integers"),
    ("embed_dim", 24.5, "'embed_dim' must be a positive integer"),
    ("window_size", True, "'window_size' must be a positive integer"),
    ("mlp_ratio", float("nan"), "'mlp_ratio' must be a finite number"),
    ("in_scale", float("inf"), "'in_scale' must be a finite number"),
    ("leaky_relu_slope", "x", "'leaky_relu_slope' must be a finite number"),
    ("qkv_bias", "no", "'qkv_bias' must be true or false"),
    ("skip", 3, "'skip' must be a string"),
    ("evil", 1, "unknown LUA config keys"),
    ("lua.family", "sd99", "metadata field 'lua.family': unknown latent family"),
])
def test_malformed_metadata_is_a_checkpoint_error_naming_the_field(tmp_path, good_tensors, good_files,
                                                                   field, value, message):
    """Type confusion in lua.config / lua.family: never a TypeError or a model that fails at run time."""
    meta = dict(_metadata(good_files["safetensors"]))
    if field.startswith("lua."):
        meta[field] = value
    else:
        meta["lua.config"] = json.dumps({**json.loads(meta["lua.config"]), field: value})
    path = tmp_path / "meta.safetensors"
    save_file(good_tensors, path, metadata=meta)
    with pytest.raises(CheckpointError, match=message) as info:
        lua_core.load_model(path)
    assert "meta.safetensors" in str(info.value)


@pytest.mark.parametrize("header", [
    struct.pack("<Q", 2**62) + b"{}",
    struct.pack("<Q", 5) + b"abcde",
    struct.pack("<Q", 60) + json.dumps({"x": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}
                                      ).encode()[:60],
    (lambda h: struct.pack("<Q", len(h)) + h + b"\0" * 4)(json.dumps(
        {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
         "y": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()),
    (lambda h: struct.pack("<Q", len(h)) + h + b"\0" * 4)(json.dumps(
        {"x": {"dtype": "F32", "shape": [1 << 62], "data_offsets": [0, 4]}}).encode()),
], ids=["header length 2^62", "header not JSON", "cut JSON", "overlapping tensors", "shape overflow"])
def test_crafted_safetensors_headers_are_refused(tmp_path, header):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(header)
    with pytest.raises(CheckpointError, match="crafted.safetensors: not a readable .safetensors file"):
        lua_core.load_model(path)


# ==================================================================================================
# downloads
# ==================================================================================================

@pytest.fixture
def server() -> Iterator[FileServer]:
    with serve_files() as srv:
        yield srv


PAYLOAD = os.urandom(200_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def hidden(folder: Path) -> list[str]:
    """Temporary (.part) and lock files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def visible(folder: Path) -> list[str]:
    """What the loader would list."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# a child process that imports only lua_core.checkpoints (no torch: fast start) and downloads
CHILD = r"""
import json, sys, time, types, urllib.request
pkg = types.ModuleType("lua_core"); pkg.__path__ = [sys.argv[1]]; sys.modules["lua_core"] = pkg
from lua_core.checkpoints.download import DownloadError, download_file
args = json.loads(sys.argv[2])
while args.get("go") and not __import__("os").path.exists(args["go"]):
    time.sleep(0.005)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
results = []
for attempt in args["attempts"]:
    if attempt.get("unlink"):
        __import__("os").unlink(attempt["unlink"])
    try:
        download_file(attempt["url"], args["dest"], sha256=args.get("sha256"), size=args.get("size"),
                      opener=opener, timeout=attempt.get("timeout", 10), chunk_size=16384)
        results.append({"ok": True})
    except DownloadError as exc:
        results.append({"ok": False, "msg": str(exc)})
    import os
    results[-1]["listing"] = sorted(os.listdir(os.path.dirname(args["dest"])))
print(json.dumps(results))
"""


def child_command(dest: Path, attempts: list[dict[str, Any]], **extra: Any) -> list[str]:
    args = {"dest": str(dest), "attempts": attempts, "sha256": PAYLOAD_SHA, "size": len(PAYLOAD), **extra}
    return [sys.executable, "-c", CHILD, str(REPO / "lua_core"), json.dumps(args)]


def run_child(cmd: list[str], timeout: float = 60) -> list[dict[str, Any]]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _namespace_works() -> bool:
    """Whether this machine lets us make a private mount namespace (root in a permissive container)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt && umount /mnt"],
                           capture_output=True, timeout=20)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _namespace_works(), reason="cannot create a private mount namespace here "
                                     "(needs root and mount permission); test_download covers EFBIG via RLIMIT_FSIZE")


@pytest.mark.slow
def test_a_download_killed_mid_transfer_is_restarted_cleanly(server, tmp_path):
    """SIGKILL while streaming: no file under the final name; the retry removes the orphaned .part,
    ignores the dead process's lock file and produces the verified file."""
    server.add("lua_kill.safetensors", PAYLOAD)
    server.slow_pause = 0.2
    dest_dir = tmp_path / "lua"
    dest_dir.mkdir()
    dest = dest_dir / "lua_kill.safetensors"
    proc = subprocess.Popen(child_command(dest, [{"url": server.url("slow", dest.name)}]), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = [p for p in dest_dir.iterdir() if p.name.endswith(".part")]
        if parts and parts[0].stat().st_size > 0:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert visible(dest_dir) == []
    orphans = hidden(dest_dir)
    assert any(n.endswith(".part") for n in orphans) and lock_path_for(dest).name in orphans
    server.slow_pause = 0.0
    assert download_file(server.url("ok", dest.name), dest, sha256=PAYLOAD_SHA, opener=NO_PROXY) == dest
    assert dest.read_bytes() == PAYLOAD
    assert hidden(dest_dir) == []


@pytest.mark.parametrize("failure,reason", [
    ("truncate", "cut short|closed early"), ("stall", "timed out"), ("noheaders", "timed out"),
    ("error500", "HTTP 500"), ("wrong", "sha256 mismatch"),
])
def test_retry_after_a_failure_starts_clean(server, tmp_path, failure, reason):
    """First attempt fails (each way a download can), second succeeds: nothing of the first is left or reused."""
    server.add("lua_retry.safetensors", PAYLOAD)
    dest = tmp_path / "lua" / "lua_retry.safetensors"
    url = server.url(f"flaky-{failure}", dest.name)
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=reason):
        download_file(url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), opener=NO_PROXY, timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert visible(dest.parent) == [] and hidden(dest.parent) == []
    assert download_file(url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), opener=NO_PROXY, timeout=5) == dest
    assert dest.read_bytes() == PAYLOAD and hidden(dest.parent) == []
    assert len(server.requests) == 2


@pytest.mark.slow
@needs_namespace
def test_disk_full_then_freed(server, tmp_path):
    """A real ENOSPC (a 256 KiB tmpfs with 128 KiB of ballast): clean failure; after freeing space the retry works."""
    server.add("lua_full.safetensors", PAYLOAD)
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    dest = mount / "lua_full.safetensors"
    ballast = mount / "ballast.bin"
    attempts = [{"url": server.url("ok", dest.name)}, {"url": server.url("ok", dest.name), "unlink": str(ballast)}]
    inner = child_command(dest, attempts)
    script = ('mount -t tmpfs -o size=256k tmpfs "$1" && head -c 131072 /dev/zero > "$1/ballast.bin" && '
              'shift && exec "$@"')
    first, second = run_child(["unshare", "-m", "sh", "-c", script, "sh", str(mount), *inner])
    assert not first["ok"] and "No space left on device" in first["msg"] and f"place it at {dest}" in first["msg"]
    assert first["listing"] == ["ballast.bin"]  # no .part, no lock, no half file
    assert second["ok"] and second["listing"] == ["lua_full.safetensors"]


@pytest.mark.slow
@needs_namespace
def test_read_only_filesystem(server, tmp_path):
    """A models folder on a read-only mount: a clear error and no request; a file already there is used as is."""
    server.add("lua_ro.safetensors", PAYLOAD)
    folder = tmp_path / "ro"
    folder.mkdir()
    dest = folder / "lua_ro.safetensors"
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    (result,) = run_child(["unshare", "-m", "sh", "-c", script, "sh", str(folder),
                           *child_command(dest, [{"url": server.url("ok", dest.name)}])])
    assert not result["ok"] and "Read-only file system" in result["msg"] and result["listing"] == []
    assert server.requests == []
    dest.write_bytes(PAYLOAD)
    (result,) = run_child(["unshare", "-m", "sh", "-c", script, "sh", str(folder),
                           *child_command(dest, [{"url": server.url("ok", dest.name)}])])
    assert result["ok"] and result["listing"] == ["lua_ro.safetensors"] and server.requests == []


def _stdlib_copy_of_the_downloader(root: Path) -> Path:
    """A world-readable copy of the modules the child imports (no torch, no third-party packages), so a child
    running as another user does not depend on whether that user may enter the checkout (a clone in /root,
    a ``mktemp -d`` folder)."""
    root.chmod(0o755)
    pkg = root / "lua_core" / "checkpoints"
    pkg.mkdir(parents=True)
    for d in (root / "lua_core", pkg):
        d.chmod(0o755)
    for name in ("__init__.py", "download.py", "manifest.py"):
        shutil.copyfile(REPO / "lua_core" / "checkpoints" / name, pkg / name)
        (pkg / name).chmod(0o644)
    for name in ("errors.py", "locations.py"):
        shutil.copyfile(REPO / "lua_core" / name, root / "lua_core" / name)
        (root / "lua_core" / name).chmod(0o644)
    return root / "lua_core"


def _python_for(prefix: list[str], cwd: Path) -> Optional[str]:
    """An interpreter the user of ``prefix`` may run (the venv's may sit in a folder it cannot enter)."""
    candidates = [sys.executable, os.path.realpath(sys.executable), getattr(sys, "_base_executable", None),
                  shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"]
    for cand in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run([*prefix, cand, "-I", "-c", "import hashlib, json, urllib.request"], cwd=cwd,
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cand
    return None


@pytest.mark.slow
def test_folder_without_write_permission(server):
    """As an unprivileged user (root ignores mode bits, so root drops to 'nobody' with setpriv)."""
    server.add("lua_perm.safetensors", PAYLOAD)
    folder = Path(tempfile.mkdtemp(prefix="lua_perm_"))
    code = Path(tempfile.mkdtemp(prefix="lua_perm_code_"))
    try:
        folder.chmod(0o555)
        dest = folder / "lua_perm.safetensors"
        prefix: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv")
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        python = _python_for(prefix, code)
        if python is None:
            pytest.skip("no Python interpreter that the unprivileged user may run")
        cmd = child_command(dest, [{"url": server.url("ok", dest.name)}])
        cmd[0], cmd[3] = python, str(_stdlib_copy_of_the_downloader(code))
        proc = subprocess.run([*prefix, cmd[0], "-I", *cmd[1:]], capture_output=True, text=True, timeout=60, cwd=code)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (result,) = json.loads(proc.stdout.strip().splitlines()[-1])
        assert not result["ok"] and "Permission denied" in result["msg"] and "cannot write in" in result["msg"]
        assert result["listing"] == [] and server.requests == []
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(code, ignore_errors=True)


@pytest.mark.slow
def test_concurrent_processes_and_threads_download_once(server, tmp_path):
    """Three processes and two threads start together: one GET, everyone gets the same verified file."""
    server.add("lua_race.safetensors", PAYLOAD)
    server.slow_pause = 0.01
    dest = tmp_path / "lua" / "lua_race.safetensors"
    go = tmp_path / "go"
    url = server.url("slow", dest.name)
    procs = [subprocess.Popen(child_command(dest, [{"url": url}], go=str(go)), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results: list[Any] = []

    def worker() -> None:
        while not go.exists():
            time.sleep(0.005)
        try:
            results.append(download_file(url, dest, sha256=PAYLOAD_SHA, opener=NO_PROXY))
        except BaseException as exc:  # noqa: BLE001
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # let the children import and reach the start line
    go.write_text("go")
    for t in threads:
        t.join(60)
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1])[0]["ok"])
    assert results.count(dest) == 2 and results.count(True) == 3, results
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [f"/slow/{dest.name}"]
    assert hidden(dest.parent) == []


def test_concurrent_downloads_when_the_first_one_fails(server, tmp_path):
    """The lock holder's transfer is cut; a waiter then downloads itself; nobody sees a broken file."""
    server.add("lua_flaky.safetensors", PAYLOAD)
    dest = tmp_path / "lua" / "lua_flaky.safetensors"
    url = server.url("flaky-truncate", dest.name)
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(download_file(url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), opener=NO_PROXY))
        except DownloadError as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    failures = [r for r in results if isinstance(r, DownloadError)]
    assert len(failures) == 1 and ("cut short" in str(failures[0]) or "closed early" in str(failures[0]))
    assert results.count(dest) == 3
    assert dest.read_bytes() == PAYLOAD and hidden(dest.parent) == []
    assert len(server.requests) == 2
