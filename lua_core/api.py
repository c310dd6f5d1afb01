"""Public Python API: ``load_model`` and ``upscale``.

Latents go in and come out exactly as ComfyUI's LATENT carries them for the
model's family (raw values; ``[B, C, H, W]`` or video ``[B, C, T, H, W]``).
"""
from __future__ import annotations

import copy
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from einops import rearrange

from .checkpoints.formats import METADATA_PREFIX, RawCheckpoint, config_from_metadata, json_metadata, load_into, read_checkpoint
from .dtypes import DTYPES, dtype_from_name
from .engine.planning import TilePlan, check_tiling_options, make_tile_plan, plan_peak_bytes
from .engine.runner import CancelFn, ProgressFn, run_network
from .engine.vae_teacher import LatentVAE, vae_teacher
from .errors import CheckpointError
from .families import LatentFamily, get_family
from .model.config import LUAConfig
from .model.detect import check_build_cost, infer_config, inference_sources
from .model.network import LUANet

DTypeLike = Union[str, torch.dtype, None]


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: DTypeLike, device: torch.device) -> torch.dtype:
    """``auto``: fp32 on CPU (fastest there and exact), bf16 on CUDA when supported, else fp16."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; use fp32, bf16 or fp16")
        return dtype
    if dtype is None or str(dtype).lower() == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    try:
        return dtype_from_name(str(dtype))
    except ValueError:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, fp32, bf16 or fp16") from None


@dataclass
class LUAModel:
    """A loaded adapter: the network plus what the pack needs to know about it."""

    net: LUANet
    family: LatentFamily
    path: Optional[Path] = None
    metadata: dict[str, str] = field(default_factory=dict)
    _casts: dict[tuple[torch.device, torch.dtype], LUANet] = field(default_factory=dict, repr=False, compare=False)

    @property
    def config(self):
        return self.net.config

    @property
    def scales(self) -> tuple[int, ...]:
        return self.net.config.scales

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @property
    def training_summary(self) -> dict[str, Any]:
        return json_metadata(self.metadata, "training", {}) or {}

    @property
    def teacher(self) -> str:
        """What the residual was trained on: ``vae`` (the user's VAE teacher: pass ``vae=`` to :func:`upscale`),
        ``tae`` (its own tiny autoencoder), or the skip of a network without a teacher (``bicubic``, ``none``)."""
        if self.net.skip is None:
            return self.config.skip
        config = self.training_summary.get("config")
        return "vae" if isinstance(config, dict) and config.get("teacher") == "vae" else "tae"

    def to(self, device: Union[str, torch.device, None] = None, dtype: DTypeLike = None) -> "LUAModel":
        dev = torch.device(device) if device is not None else self.device
        self.net.to(device=dev, dtype=resolve_dtype(dtype, dev) if dtype is not None else self.dtype)
        self.drop_casts()
        return self

    def net_for(self, dtype: torch.dtype) -> LUANet:
        """The network computing in ``dtype`` on the model's device: the network itself in its own dtype, else
        a copy cast once and kept (the stored weights are never cast and back, which would round them)."""
        if dtype == self.dtype:
            return self.net
        key = (self.device, dtype)
        net = self._casts.get(key)
        if net is None:
            self.drop_casts()  # one cast copy at a time: its memory is outside any model manager's count
            net = self._casts[key] = copy.deepcopy(self.net).to(dtype=dtype)
        return net

    def drop_casts(self) -> None:
        """Free the cast copies of :meth:`net_for` (they are remade on demand)."""
        self._casts.clear()

    def describe(self) -> str:
        name = self.path.name if self.path else "in-memory model"
        return (f"{name}: LUA {self.family.label} adapter, heads {['x%d' % s for s in self.scales]}, "
                f"{self.net.num_parameters() / 1e6:.2f} M parameters")


def load_model(path: Union[str, os.PathLike], device: Union[str, torch.device, None] = "cpu",
               dtype: DTypeLike = "fp32", family: Optional[str] = None) -> LUAModel:
    """Load an official ``lua_flux.pth`` or one of our ``.safetensors`` adapters.

    ``family`` overrides the family for files without metadata (the official file
    is FLUX.1); a file's own family metadata cannot be contradicted.
    """
    raw = read_checkpoint(path)
    name = raw.path.name
    config = config_from_metadata(raw.metadata, name)
    inferred = config is None
    if inferred:
        try:
            config = infer_config(raw.tensors)
        except CheckpointError as exc:
            raise CheckpointError(f"{name}: {exc}") from exc
    try:
        net, fam = _build(raw, config, family)
    except CheckpointError as exc:
        if not inferred:
            raise
        # without metadata the architecture came from a few tensors' shapes: name them, one may be the culprit
        raise CheckpointError(f"{exc} (architecture inferred from {', '.join(inference_sources(raw.tensors))})") from exc
    net.eval().requires_grad_(False)
    dev = resolve_device(device)
    net.to(device=dev, dtype=resolve_dtype(dtype, dev))
    return LUAModel(net, fam, raw.path, raw.metadata)


def _build(raw: RawCheckpoint, config: LUAConfig, family: Optional[str]) -> tuple[LUANet, LatentFamily]:
    """Resolve the family, check the cost, build the network and load the tensors (CheckpointError naming the file)."""
    name = raw.path.name
    stored_family = raw.metadata.get(METADATA_PREFIX + "family")
    try:
        stored_fam = get_family(stored_family) if stored_family else None
    except ValueError as exc:
        raise CheckpointError(f"{name}: metadata field 'lua.family': {exc}") from exc
    if stored_fam and family and stored_fam.name != get_family(family).name:
        raise CheckpointError(f"{name}: checkpoint is for family {stored_family!r}, not {family!r}")
    fam_name = stored_family or family
    if fam_name is None:
        if config.in_chans != 16:
            raise CheckpointError(f"{name}: no family metadata; pass family= for a {config.in_chans}-channel model")
        fam_name = "flux1"  # metadata-less 16-channel files are the published LUA-FLUX layout
    fam = get_family(fam_name)
    if fam.model_channels != config.in_chans:
        raise CheckpointError(f"{name}: a {fam.label} adapter needs {fam.model_channels} latent channels, "
                              f"the weights have {config.in_chans}")
    check_build_cost(config, raw.tensors, name)  # before allocating: a crafted file cannot ask for gigabytes
    net = LUANet(config)
    load_into(net, raw.tensors, name)
    return net, fam


def validate_latent(model: LUAModel, latent: Any) -> torch.Tensor:
    """Check a LATENT tensor against the model; raise ValueError naming the problem."""
    if not isinstance(latent, torch.Tensor):
        raise ValueError(f"latent must be a torch.Tensor, got {type(latent).__name__}")
    if latent.ndim not in (4, 5):
        raise ValueError(f"latent must be 4-D [B,C,H,W] or 5-D [B,C,T,H,W], got shape {tuple(latent.shape)}")
    if not latent.is_floating_point():
        raise ValueError(f"latent must be a floating-point tensor, got {latent.dtype}")
    fam = model.family
    if latent.shape[1] != fam.comfy_channels:
        raise ValueError(f"latent has {latent.shape[1]} channels but this {fam.label} adapter expects "
                         f"{fam.comfy_channels} (is the latent from another model family?)")
    h, w = latent.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"latent is too small: {h}x{w} (height and width must be at least 1)")
    if latent.numel() and not torch.isfinite(latent).all():
        raise ValueError("latent contains NaN or Inf values")
    return latent


def target_size(height: int, width: int, scale: Optional[float], size: Optional[tuple[int, int]]) -> tuple[int, int]:
    """Exact output size in latent units from a scale factor or an explicit ``(height, width)``."""
    if size is not None:
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)):
            raise ValueError(f"size must be a (height, width) pair of integers in latent units, got {size!r}")
        th, tw = (int(v) for v in size)
    else:
        if scale is None or not math.isfinite(float(scale)) or float(scale) <= 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        th, tw = max(1, round(height * float(scale))), max(1, round(width * float(scale)))
    if th < height or tw < width:
        raise ValueError(f"target size {th}x{tw} is smaller than the latent {height}x{width}; LUA only upscales")
    return th, tw


def _area_on_cpu(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x.cpu(), size=size, mode="area").to(x.device)


def _device_kind(x: torch.Tensor) -> str:
    return x.device.type


def resize_area(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(mode="area")`` on every device.

    Area resizing is adaptive average pooling; MPS refuses it unless the input size is a multiple
    of the output size, and other back-ends may lack it. Those cases resize on the CPU and move
    the result back (a small tensor next to the network's cost).
    """
    h, w = x.shape[-2:]
    kind = _device_kind(x)
    if kind == "mps" and (h % size[0] or w % size[1]):
        return _area_on_cpu(x, size)
    try:
        return F.interpolate(x, size=size, mode="area")
    except (RuntimeError, NotImplementedError):
        if kind == "cpu":
            raise
        return _area_on_cpu(x, size)


def choose_head(scales: tuple[int, ...], ratio: float) -> int:
    for s in scales:
        if s >= ratio - 1e-9:
            return s
    raise ValueError(f"scale x{ratio:g} exceeds this model's largest head x{max(scales)}; "
                     f"chain two upscales for larger factors")


@dataclass(frozen=True)
class UpscalePlan:
    """One upscale, decided once before anything runs: the node sizes its model-manager request from it
    and runs it; :func:`upscale` plans and runs in one call.

    ``source`` and ``target`` are ``(height, width)`` in the latent's own units; ``head`` is the x2/x4
    head that runs (None when the size does not change); ``dtype`` the compute dtype; ``tiles`` how the
    network pass is split (None when no head runs or the batch is empty); ``memory_required`` the
    estimated peak bytes of that pass beside the weights, the figure the split was fitted to.
    """

    source: tuple[int, int]
    target: tuple[int, int]
    head: Optional[int]
    frames: int
    dtype: torch.dtype
    tiles: Optional[TilePlan]
    memory_required: int


def plan_upscale(model: LUAModel, latent: torch.Tensor, scale: Optional[float] = 2, *,
                 size: Optional[tuple[int, int]] = None, tile_size: int = 0,
                 tile_overlap: Optional[int] = None, dtype: DTypeLike = None,
                 memory_budget: Optional[int] = None) -> UpscalePlan:
    """Check the latent and the options against ``model`` and decide the head, size, dtype, tiling and memory.

    ``memory_budget`` (bytes) None: a share of the free memory of the model's device.  Raises ValueError
    naming the problem (wrong channels, NaN, a shrinking size, a factor above the largest head, a negative
    tile size ...).
    """
    validate_latent(model, latent)
    tile_size = check_tiling_options(tile_size, tile_overlap, memory_budget)
    h, w = latent.shape[-2:]
    th, tw = target_size(h, w, None if size is not None else scale, size)
    # the factor is checked even for an empty batch, so a call never passes or fails depending on the batch size
    head = choose_head(model.scales, max(th / h, tw / w)) if (th, tw) != (h, w) else None
    compute = resolve_dtype(dtype, model.device) if dtype is not None else model.dtype
    frames = int(latent.shape[2]) if latent.ndim == 5 else 1  # video latents run frame by frame as one batch
    batch = int(latent.shape[0]) * frames
    if head is None or batch == 0:
        return UpscalePlan((h, w), (th, tw), head, frames, compute, None, 0)
    mh, mw = h * model.family.pack, w * model.family.pack  # the network's (model-layout) size
    tiles = make_tile_plan(model.config, head, batch, mh, mw, compute, model.device, tile_size, tile_overlap,
                           memory_budget)
    need = plan_peak_bytes(model.config, head, tiles, mh, mw, compute)
    return UpscalePlan((h, w), (th, tw), head, frames, compute, tiles, need)


def plan_teacher(model: LUAModel, latent: torch.Tensor, plan: UpscalePlan, vae: LatentVAE) -> Optional[torch.Tensor]:
    """The VAE teacher of a plan (:mod:`lua_core.engine.vae_teacher`), for :func:`run_plan`'s ``teacher``: the
    node makes it before it loads the adapter, since the VAE's passes may make ComfyUI offload other models.
    None when the plan runs no head or the batch is empty."""
    if model.net.skip is None:
        raise ValueError(f"{model.describe()}: its residual sits on a {model.config.skip!r} skip, not on a VAE "
                         "teacher, so it cannot use a VAE; leave the vae input unconnected")
    x = rearrange(latent, "b c t h w -> (b t) c h w") if latent.ndim == 5 else latent
    if plan.head is None or x.shape[0] == 0:
        return None
    return vae_teacher(vae, x, plan.head, model.family)


def run_plan(model: LUAModel, latent: torch.Tensor, plan: UpscalePlan, *, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelFn] = None, vae: Optional[LatentVAE] = None,
             teacher: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Run a plan from :func:`plan_upscale` on the latent it was made for (``vae``: see :func:`upscale`;
    ``teacher``: one made by :func:`plan_teacher` beforehand)."""
    if tuple(latent.shape[-2:]) != plan.source:
        raise ValueError(f"this plan is for a {plan.source[0]}x{plan.source[1]} latent, "
                         f"got {latent.shape[-2]}x{latent.shape[-1]}")
    if vae is not None and teacher is None:
        teacher = plan_teacher(model, latent, plan, vae)
    video = latent.ndim == 5
    x = rearrange(latent, "b c t h w -> (b t) c h w") if video else latent
    th, tw = plan.target
    if x.shape[0] == 0 or plan.head is None:
        out = x.new_empty(x.shape[0], x.shape[1], th, tw) if x.shape[0] == 0 else x.clone()
    else:
        out = _run_head(model, x, plan, progress, cancel, teacher).to(latent.device, latent.dtype)
        if not torch.isfinite(out).all():
            # finite input, non-finite output: values beyond what the compute or the latent's dtype can hold
            raise ValueError(f"the upscaled latent contains NaN or Inf: the input's values (up to "
                             f"{float(latent.abs().max()):.3g}) are out of range for "
                             f"{str(plan.dtype).replace('torch.', '')} compute and a "
                             f"{str(latent.dtype).replace('torch.', '')} result (is this a raw latent? try fp32)")
    if video:
        out = rearrange(out, "(b t) c h w -> b c t h w", t=plan.frames)
    return out.contiguous()


def _run_head(model: LUAModel, x: torch.Tensor, plan: UpscalePlan, progress: Optional[ProgressFn],
              cancel: Optional[CancelFn], teacher: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The network pass of a plan on ``(B, C, H, W)`` ComfyUI latents, resized to the exact target."""
    fam = model.family
    assert plan.head is not None and plan.tiles is not None
    if teacher is not None:
        want = (x.shape[0], fam.model_channels, plan.source[0] * plan.head * fam.pack, plan.source[1] * plan.head * fam.pack)
        if tuple(teacher.shape) != want:
            raise ValueError(f"the teacher has shape {tuple(teacher.shape)}, this plan needs {want}")
        teacher = teacher.to(model.device, plan.dtype)
    z = fam.to_model(x.to(model.device, plan.dtype).contiguous())
    with torch.inference_mode():
        y = run_network(model.net_for(plan.dtype), z, plan.head, plan=plan.tiles, progress=progress, cancel=cancel,
                        teacher=teacher)
    mh, mw = plan.target[0] * fam.pack, plan.target[1] * fam.pack
    if y.shape[-2:] != (mh, mw):
        y = resize_area(y.float(), (mh, mw))
    return fam.to_comfy(y)


def upscale(model: LUAModel, latent: torch.Tensor, scale: float = 2, *, size: Optional[tuple[int, int]] = None,
            tile_size: int = 0, tile_overlap: Optional[int] = None, dtype: DTypeLike = None,
            memory_budget: Optional[int] = None, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelFn] = None, vae: Optional[LatentVAE] = None) -> torch.Tensor:
    """Upscale a ComfyUI-convention latent by ``scale`` (any factor in [1, max head]) or to ``size``.

    ``size`` is ``(height, width)`` in latent units of the input's convention.
    The x2/x4 head closest above the factor runs and its output is resized
    (area) to the exact target.  Returns a tensor of the input's dtype and device.
    Options: ``tile_size`` (0 = automatic, as in the node; a positive size gives tiles of
    that size), ``tile_overlap``, ``dtype`` (compute dtype: auto/fp32/bf16/fp16),
    ``memory_budget`` (bytes), ``progress(done, total)``, ``cancel()`` (return True or raise to stop),
    ``vae``: the family's full VAE (``decode(latent)`` -> images ``(B, 3, H, W)`` in [0, 1], ``encode(images)``
    -> latent, both in the ComfyUI LATENT convention) to make the teacher with instead of the adapter's tiny
    autoencoder (:mod:`lua_core.engine.vae_teacher`; one decode at base size and one encode at the head's size).
    """
    plan = plan_upscale(model, latent, scale, size=size, tile_size=tile_size, tile_overlap=tile_overlap, dtype=dtype,
                        memory_budget=memory_budget)
    return run_plan(model, latent, plan, progress=progress, cancel=cancel, vae=vae)
