"""Frozen autoencoders for training: the tiny autoencoder, a ComfyUI VAE file, or a diffusers VAE.

Every backend has the same small interface, in the convention the nodes use
(ComfyUI's LATENT holds *raw* VAE latents; the network sees them in its layout,
FLUX.2 unpacked to 32 channels at 1/8):

* ``encode_raw(img)``: pixels ``(B, 3, H, W)`` in ``[0, 1]`` -> raw latent, network layout (float32);
* ``decode_raw(raw)``: raw latent, network layout -> pixels, about ``[0, 1]`` (float32, *not*
  clamped, and differentiable: the pixel losses back-propagate through the frozen decoder);
* ``identity()``: what makes its latents what they are (``None`` for the default tiny
  autoencoder, so existing latent caches keep their key), part of the cache key;
* ``describe()``: a short JSON-able summary for logs and export metadata.

Backends (``data.vae`` in a training config, see :class:`VAEConfig`):

``tae``
    the family's tiny autoencoder from ``${shared}/vae`` (or ``path``, a folder of
    ``<name>_{encoder,decoder}.{safetensors,pth}``), through :mod:`lua_core.tae`.
``comfy``
    a VAE file (``.safetensors``/``.pt``/``.ckpt``; also a full checkpoint with a
    ``first_stage_model.``/``vae.`` prefix, or a diffusers-format VAE file) loaded by
    ComfyUI's own code (``comfy.utils.load_torch_file`` + ``comfy.sd.VAE``), encoded/decoded
    through its ``first_stage_model``.  ComfyUI must be importable: run from its environment
    (``scripts/setup_comfyui.sh`` provisions one at ``.cache/comfyui/ComfyUI``).
``diffusers``
    ``diffusers.AutoencoderKL`` (``AutoencoderKLFlux2`` for FLUX.2) from a local diffusers
    folder (``from_pretrained``; a pipeline folder uses its ``vae`` subfolder) or a single
    file (``from_single_file``), when ``diffusers`` is installed.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
import types
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Union

import torch
from torch import nn

from .checkpoints.manifest import file_sha256
from .dtypes import DTYPES, dtype_name
from .errors import ComfyUINotFound
from .families import LatentFamily, get_family
from .locations import expand_path, shared_dir
from .tae import TinyAutoencoder, load_tae, tae_files

VAE_BACKENDS = ("tae", "comfy", "diffusers")
HASH_MODES = ("stat", "sha256")



@dataclass
class VAEConfig:
    """``data.vae`` of a training config.

    ``backend``: ``tae`` (default), ``comfy`` or ``diffusers``.  ``path``: the VAE file or
    folder (``${shared}``/``${repo}``/``~`` expanded); required except for ``tae``, where it is
    an optional folder of tiny-autoencoder files.  ``dtype``: the frozen VAE's weights
    (``fp32``/``fp16``/``bf16``).  ``hash``: how the file enters the latent-cache key:
    ``stat`` (absolute path, size, mtime; cheap) or ``sha256`` (content, independent of
    where the file lies).  ``subfolder``: diffusers only (e.g. ``vae`` of a pipeline folder;
    found automatically when omitted).
    """

    backend: str = "tae"
    path: Optional[str] = None
    dtype: str = "fp32"
    hash: str = "stat"
    subfolder: Optional[str] = None

    def __post_init__(self) -> None:
        self.backend = str(self.backend).strip().lower()
        if self.backend not in VAE_BACKENDS:
            raise ValueError(f"data.vae.backend {self.backend!r} unknown; known: {list(VAE_BACKENDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"data.vae.dtype {self.dtype!r} unknown; known: {list(DTYPES)}")
        if self.hash not in HASH_MODES:
            raise ValueError(f"data.vae.hash {self.hash!r} unknown; known: {list(HASH_MODES)}")
        if self.backend != "tae" and not self.path:
            raise ValueError(f"data.vae.backend {self.backend!r} needs data.vae.path (the VAE file or folder)")
        if self.subfolder is not None and self.backend != "diffusers":
            raise ValueError("data.vae.subfolder is for the diffusers backend only")

    @classmethod
    def from_value(cls, value: Union[None, "VAEConfig", Mapping[str, Any], str]) -> Optional["VAEConfig"]:
        """``None``, a :class:`VAEConfig`, a dict (keys checked) or a backend name."""
        if value is None or isinstance(value, VAEConfig):
            return value
        if isinstance(value, str):
            return cls(backend=value)
        if not isinstance(value, Mapping):
            raise ValueError('data.vae must be an object such as {"backend": "comfy", "path": ...}, '
                             f"got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"data.vae: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**dict(value))

    @property
    def is_default(self) -> bool:
        """The plain tiny autoencoder of ``${shared}/vae`` in fp32 (what configs without ``data.vae`` use)."""
        return self == VAEConfig()


def file_identity(path: Union[str, Path], mode: str = "stat") -> dict[str, Any]:
    """What identifies a VAE file (or every file of a folder) for the latent-cache key.

    ``stat``: absolute path, size and mtime (ns); ``sha256``: file name(s) and content hash.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        return {"dir": str(p) if mode == "stat" else p.name,
                "files": [dict(file_identity(q, mode), file=str(q.relative_to(p))) for q in files]}
    if not p.is_file():
        raise FileNotFoundError(f"VAE file not found: {p}")
    if mode == "sha256":
        return {"file": p.name, "sha256": file_sha256(p)}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# --------------------------------------------------------------------------- common base
class VAEBackend(nn.Module):
    """A frozen autoencoder working on raw latents in the network's layout (see the module doc)."""

    backend = ""

    def __init__(self, family: LatentFamily, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.family = family
        self.dtype = dtype
        self.name = ""

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def train(self, mode: bool = True) -> "VAEBackend":  # always frozen, always eval
        return super().train(False)

    def _freeze(self) -> None:
        self.eval()
        self.requires_grad_(False)

    def encode_raw(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def identity(self) -> Optional[dict[str, Any]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "name": self.name, "dtype": dtype_name(self.dtype)}

    def _check_pixels(self, img: torch.Tensor, multiple: int) -> None:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images (B, 3, H, W), got {tuple(img.shape)}")
        h, w = img.shape[-2:]
        if h % multiple or w % multiple:
            raise ValueError(f"{self.name}: image size {h}x{w} must be a multiple of {multiple} px "
                             f"for the {self.family.label} VAE")


# --------------------------------------------------------------------------- tae
class TAEBackend(VAEBackend):
    """The family's tiny autoencoder (:mod:`lua_core.tae`): exactly what training used before backends existed."""

    backend = "tae"

    def __init__(self, family: LatentFamily, root: Optional[Union[str, Path]] = None,
                 device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                 hash_mode: str = "stat") -> None:
        super().__init__(family, dtype)
        self.tae: TinyAutoencoder = load_tae(family, root=root, device=device, dtype=dtype)
        self.name = self.tae.name
        self.root = None if root is None else Path(root).expanduser().resolve()
        if self.root is not None and self.root == (shared_dir() / "vae").resolve():
            self.root = None  # the default folder, spelled out
        self.hash_mode = hash_mode
        self._freeze()

    def encode_raw(self, img: torch.Tensor) -> torch.Tensor:
        if self.dtype != torch.float32:
            img = img.to(self.dtype)
        return self.tae.encode_raw(img).float()

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        if self.dtype != torch.float32:
            raw = raw.to(self.dtype)
        return self.tae.decode_raw(raw).float()

    def identity(self) -> Optional[dict[str, Any]]:
        if self.root is None and self.dtype == torch.float32:
            return None  # the legacy key: {"tae": <name>} alone identifies it
        ident: dict[str, Any] = {"backend": "tae", "name": self.name, "dtype": dtype_name(self.dtype)}
        if self.root is not None:
            ident["files"] = [file_identity(p, self.hash_mode) for p in tae_files(self.name, self.root)]
        return ident

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.root is not None:
            d["path"] = str(self.root)
        return d


# --------------------------------------------------------------------------- comfy
def _accelerator_available() -> bool:
    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def import_comfy() -> types.SimpleNamespace:
    """ComfyUI's ``comfy.utils``, ``comfy.sd`` and ``comfy.model_management``, from the environment.

    The comfy backend runs where ComfyUI itself is importable (ComfyUI's own Python, with its folder
    on ``PYTHONPATH`` or as the working directory); nothing here adds to ``sys.path``.  Without a GPU
    ComfyUI's CPU mode is selected before ``comfy.model_management`` first probes the device.
    """
    if "comfy.sd" not in sys.modules:
        try:
            found = importlib.util.find_spec("comfy") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ComfyUINotFound(
                "the comfy VAE backend uses ComfyUI's own `comfy` package, which is not importable here: run "
                "training from ComfyUI's environment (e.g. PYTHONPATH=/path/to/ComfyUI python -m lua_core.train "
                "...; scripts/setup_comfyui.sh provisions one at .cache/comfyui/ComfyUI)")
        import comfy.cli_args

        if "comfy.model_management" not in sys.modules and not _accelerator_available():
            comfy.cli_args.args.cpu = True
    import comfy.model_management
    import comfy.sd
    import comfy.utils

    return types.SimpleNamespace(model_management=comfy.model_management, utils=comfy.utils, sd=comfy.sd)


_VAE_MARKERS = ("decoder.conv_in.weight", "decoder.conv_in.conv.weight", "taesd_decoder.1.weight",
                "decoder.up_blocks.0.resnets.0.norm1.weight")


def extract_vae_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE part of a state dict: as is, or the ``first_stage_model.``/``vae.`` part of a full checkpoint."""
    if any(k in sd for k in _VAE_MARKERS):
        return sd
    for prefix in ("first_stage_model.", "vae."):
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if any(k in sub for k in _VAE_MARKERS):
            return sub
    return sd


@contextlib.contextmanager
def _capture_warnings() -> Iterator[list[str]]:
    """Collect root-logger warnings (ComfyUI reports missing VAE keys and unknown files that way)."""
    records: list[str] = []

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    handler = _Handler(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


class ComfyVAEBackend(VAEBackend):
    """A VAE file loaded by ComfyUI (``comfy.sd.VAE``), run through its ``first_stage_model``.

    ComfyUI's ``VAE.encode``/``VAE.decode`` take/return BHWC images, run without gradients and
    clamp; here ``process_input`` (``2x - 1``) and ``process_output`` (``(x + 1) / 2``, unclamped)
    are applied around ``first_stage_model.encode``/``decode`` directly, so decoding is
    differentiable.  Its latents are ComfyUI's LATENT (FLUX.2: 128-channel packed, batch-norm
    normalised), converted to the network layout with ``family.to_model``.
    """

    backend = "comfy"

    def __init__(self, family: LatentFamily, path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 dtype: torch.dtype = torch.float32, hash_mode: str = "stat") -> None:
        super().__init__(family, dtype)
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"VAE file not found: {self.path}")
        self.name = f"comfy:{self.path.name}"
        self.hash_mode = hash_mode
        self._identity = {"backend": "comfy", "dtype": dtype_name(dtype), **file_identity(self.path, hash_mode)}
        comfy = import_comfy()
        device = torch.device(device)
        sd, metadata = comfy.utils.load_torch_file(str(self.path), safe_load=True, return_metadata=True)
        sd = extract_vae_state(sd)
        with _capture_warnings() as warnings:
            vae = comfy.sd.VAE(sd=sd, device=device, dtype=dtype, metadata=metadata)
        del sd
        model = getattr(vae, "first_stage_model", None)
        if model is None:
            raise ValueError(f"{self.path.name}: ComfyUI found no VAE weights in this file")
        missing = [w for w in warnings if w.startswith("Missing VAE keys")]
        if missing:
            raise ValueError(f"{self.path.name}: ComfyUI loaded an incomplete VAE ({missing[0][:300]})")
        if getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "output_channels", 3) != 3:
            raise ValueError(f"{self.path.name}: not an image VAE (ComfyUI sees latent_dim={vae.latent_dim}, "
                             f"output_channels={vae.output_channels})")
        probe = torch.tensor([0.0, 0.5, 1.0])
        if not (torch.allclose(vae.process_input(probe), probe * 2 - 1)
                and torch.allclose(vae.process_output(probe * 2 - 1), probe)):
            raise ValueError(f"{self.path.name}: ComfyUI's pixel convention for this VAE is not [-1, 1]")
        channels, down = int(vae.latent_channels), int(vae.spacial_compression_encode())
        if channels != family.comfy_channels or down != family.comfy_downscale:
            raise ValueError(f"{self.path.name}: a {channels}-channel 1/{down} VAE; {family.label} latents are "
                             f"{family.comfy_channels}-channel 1/{family.comfy_downscale} (wrong family?)")
        self.comfy_vae = vae  # a plain attribute: ComfyUI's wrapper (and its ModelPatcher), not a submodule
        self.model = model.to(device=device, dtype=dtype)
        self._freeze()

    def encode_raw(self, img: torch.Tensor) -> torch.Tensor:
        self._check_pixels(img, self.family.comfy_downscale)
        x = img.to(device=self.device, dtype=self.dtype) * 2.0 - 1.0
        z = self.model.encode(x)
        if isinstance(z, tuple):
            z = z[0]
        return self.family.to_model(z.float())

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        z = self.family.to_comfy(raw.to(self.device)).to(self.dtype)
        x = self.model.decode(z)
        return (x.float() + 1.0) / 2.0

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path)}


# --------------------------------------------------------------------------- diffusers
def _diffusers_dir(path: Path, subfolder: Optional[str]) -> tuple[Path, Optional[str]]:
    if subfolder is None and not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
        subfolder = "vae"  # a pipeline folder
    return path, subfolder


class DiffusersVAEBackend(VAEBackend):
    """``diffusers.AutoencoderKL`` (``AutoencoderKLFlux2`` for FLUX.2), local files only.

    Raw latents are the posterior mode (what ComfyUI's VAE encode returns; diffusers'
    ``scaling_factor``/``shift_factor`` belong to the diffusion model's input, not to the raw
    latent).  For FLUX.2 the latent is packed 2x2 and normalised by the VAE's batch-norm
    statistics (as ComfyUI and the diffusers pipeline do), then unpacked to the network layout.
    """

    backend = "diffusers"

    def __init__(self, family: LatentFamily, path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 dtype: torch.dtype = torch.float32, subfolder: Optional[str] = None, hash_mode: str = "stat") -> None:
        super().__init__(family, dtype)
        try:
            import diffusers
        except ImportError as exc:
            raise ImportError("the diffusers VAE backend needs `diffusers` (pip install diffusers); "
                              "or use backend \"comfy\" with the VAE file") from exc
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise FileNotFoundError(f"VAE not found: {self.path}")
        cls_name = "AutoencoderKLFlux2" if family.packed else "AutoencoderKL"
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            version = getattr(diffusers, "__version__", "?")
            raise ImportError(f"diffusers {version} has no {cls_name}; upgrade diffusers")
        if self.path.is_dir():
            folder, subfolder = _diffusers_dir(self.path, subfolder)
            kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": True}
            if subfolder:
                kwargs["subfolder"] = subfolder
            model = cls.from_pretrained(str(folder), **kwargs)
            ident_path = self.path / subfolder if subfolder else self.path
        else:
            if not hasattr(cls, "from_single_file"):
                raise ValueError(f"{cls_name} cannot load a single file in this diffusers; give a diffusers folder")
            model = cls.from_single_file(str(self.path), torch_dtype=dtype)
            ident_path = self.path
        self.subfolder = subfolder
        self.name = f"diffusers:{self.path.name}" + (f"/{subfolder}" if subfolder else "")
        self._identity = {"backend": "diffusers", "class": cls_name, "dtype": dtype_name(dtype),
                          **file_identity(ident_path, hash_mode)}
        cfg = model.config
        channels = int(cfg.latent_channels)
        down = 2 ** (len(cfg.block_out_channels) - 1)
        if channels != family.model_channels or down != family.model_downscale:
            raise ValueError(f"{self.path.name}: a {channels}-channel 1/{down} VAE; {family.label} needs "
                             f"{family.model_channels}-channel 1/{family.model_downscale} (wrong family?)")
        self.model = model.to(device=torch.device(device))  # loaded in `dtype` already
        if family.packed:
            bn = getattr(model, "bn", None)
            if bn is None or getattr(bn, "running_var", None) is None:
                raise ValueError(f"{self.path.name}: a {family.label} VAE needs its batch-norm statistics (bn)")
            eps = float(getattr(cfg, "batch_norm_eps", getattr(bn, "eps", 1e-4)))
            self.register_buffer("bn_mean", bn.running_mean.detach().float().view(1, -1, 1, 1).clone())
            self.register_buffer("bn_std", torch.sqrt(bn.running_var.detach().float() + eps).view(1, -1, 1, 1))
            if self.bn_mean.shape[1] != family.comfy_channels:
                raise ValueError(f"{self.path.name}: batch-norm over {self.bn_mean.shape[1]} channels, "
                                 f"expected {family.comfy_channels}")
        self._freeze()

    def encode_raw(self, img: torch.Tensor) -> torch.Tensor:
        fam = self.family
        self._check_pixels(img, fam.comfy_downscale)
        x = img.to(device=self.device, dtype=self.dtype) * 2.0 - 1.0
        posterior = self.model.encode(x, return_dict=False)[0]
        z = posterior.mode().float()
        if fam.packed:
            z = fam.to_model((fam.to_comfy(z) - self.bn_mean) / self.bn_std)
        return z

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        fam = self.family
        z = raw.to(self.device)
        if fam.packed:
            z = fam.to_model(fam.to_comfy(z.float()) * self.bn_std + self.bn_mean)
        x = self.model.decode(z.to(self.dtype), return_dict=False)[0]
        return (x.float() + 1.0) / 2.0

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "path": str(self.path)}
        if self.subfolder:
            d["subfolder"] = self.subfolder
        return d


# --------------------------------------------------------------------------- factory
def load_vae(family: Union[str, LatentFamily], config: Union[None, VAEConfig, Mapping[str, Any], str] = None,
             device: Union[str, torch.device] = "cpu") -> VAEBackend:
    """The frozen autoencoder a training config asks for (default: the family's tiny autoencoder)."""

    fam = family if isinstance(family, LatentFamily) else get_family(family)
    cfg = VAEConfig.from_value(config) or VAEConfig()
    dtype = DTYPES[cfg.dtype]
    path = expand_path(cfg.path)
    if cfg.backend == "tae":
        return TAEBackend(fam, path, device=device, dtype=dtype, hash_mode=cfg.hash)
    if cfg.backend == "comfy":
        return ComfyVAEBackend(fam, path, device=device, dtype=dtype, hash_mode=cfg.hash)
    return DiffusersVAEBackend(fam, path, device=device, dtype=dtype, subfolder=cfg.subfolder, hash_mode=cfg.hash)
