"""Training configuration: JSON files in ``configs/train`` parsed into dataclasses.

Every loss weight, schedule figure and data setting is a config value.  Paths may
use ``${shared}`` (``$LUA_SHARED_DIR`` or ``<repo>/../shared``) and ``${repo}``.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..families import LatentFamily, get_family
from ..locations import cache_dir, expand_path
from ..model.config import LUAConfig, preset
from ..vae_backends import VAEConfig
from .loss_registry import PIXELS, REGISTRY, TEACHER, TermOptions, terms_needing, unknown_terms


@dataclass
class StageConfig:
    """One curriculum stage (paper: I latent, II joint latent-pixel, III pixel/edge)."""

    name: str
    steps: int
    batch_size: int = 4                      # global batch (split over DDP ranks)
    crop: Optional[int] = None               # HR sub-crop in px (multiple of 8*max scale); None = data.crop
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.995)
    weight_decay: float = 0.0
    milestones: tuple[float, ...] = (0.5, 0.75, 0.9)   # fractions of the stage
    gamma: float = 0.5
    both_heads_frac: float = 0.75           # supervise every head for this fraction of the stage, then one at random
    weights: dict[str, float] = field(default_factory=lambda: {"latent_l1": 1.0, "latent_fft": 0.1})  # loss_registry terms

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.milestones = tuple(float(m) for m in self.milestones)
        unknown = unknown_terms(self.weights)
        if unknown:
            raise ValueError(f"stage {self.name!r}: unknown loss terms {unknown}; known: {list(REGISTRY)}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"stage {self.name!r}: steps must be >= 0 and batch_size >= 1")

    @property
    def needs_pixels(self) -> bool:
        return any(self.weights.get(k, 0.0) for k in terms_needing(PIXELS))

    @property
    def needs_teacher(self) -> bool:
        return any(self.weights.get(k, 0.0) for k in terms_needing(TEACHER))


@dataclass
class DataConfig:
    train_dir: str = "${shared}/data/train"
    val_dir: str = "${shared}/data/val"
    crop: int = 256                 # HR crop (px) of the largest scale
    num_samples: int = 1000         # cached crops (each a random image, crop, flip/rotation)
    augment: bool = True
    cache: bool = True              # False: encode every batch on the fly (same samples)
    cache_dir: str = "${repo}/.cache/latents"
    shard_size: int = 128
    store_pixels: Optional[bool] = None   # None: when a stage has pixel terms
    encode_batch: int = 8
    val_images: int = 4
    val_crop: int = 256
    max_images: Optional[int] = None
    # the frozen autoencoder: None = the family's tiny autoencoder; else {"backend": "tae" | "comfy" |
    # "diffusers", "path": ..., "dtype": "fp32", "hash": "stat" | "sha256", ...} (see vae_backends.VAEConfig)
    vae: Optional[VAEConfig] = None

    def __post_init__(self) -> None:
        self.vae = VAEConfig.from_value(self.vae)


@dataclass
class LossConfig:
    latent_space: str = "normalized"  # "normalized": (raw - shift) * scale (TAE units), or "raw"
    fft_norm: str = "ortho"
    hf_sigma: float = 1.0
    hf_kernel: int = 5
    down_factor: Optional[dict[str, int]] = None  # per scale; None: d = scale
    eagle_patch: int = 3
    eagle_cutoff: float = 0.5

    def down_for(self, scale: int) -> int:
        if self.down_factor and str(scale) in self.down_factor:
            return int(self.down_factor[str(scale)])
        return int(scale)

    def term_options(self, scale: int) -> TermOptions:
        """The loss terms' settings for the head ``scale``."""
        return TermOptions(fft_norm=self.fft_norm, hf_sigma=self.hf_sigma, hf_kernel=self.hf_kernel,
                           down_factor=self.down_for(scale), eagle_patch=self.eagle_patch,
                           eagle_cutoff=self.eagle_cutoff)


@dataclass
class OptimConfig:
    grad_clip: float = 0.4
    ema_decay: float = 0.999
    ema_warmup: bool = True   # decay_t = min(decay, (1 + t) / (10 + t)) so short runs are not all init


@dataclass
class RuntimeConfig:
    device: str = "auto"
    amp: str = "auto"          # auto: bf16 autocast on CUDA, off elsewhere; "bf16" / "none"
    compile: bool = False
    threads: int = 0           # torch.set_num_threads; 0 leaves the default


@dataclass
class CheckpointConfig:
    out_dir: Optional[str] = None     # default ${repo}/.cache/train_runs/<name>
    every: int = 200                  # global steps between training-state checkpoints
    val_every: int = 0                # 0: only at stage ends
    log_every: int = 10
    export: Optional[str] = None      # exported .safetensors name (in out_dir); default <name>.safetensors
    export_dtype: str = "fp16"


@dataclass
class TrainConfig:
    name: str
    family: str
    stages: list[StageConfig]
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "light"})
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    init_from: Optional[str] = None   # cross-VAE transfer / fine-tune start (a LUA checkpoint)

    @property
    def fam(self) -> LatentFamily:
        return get_family(self.family)

    def model_config(self) -> LUAConfig:
        """The preset with the family's width and normalisation (scale/shift), plus overrides."""
        fam = self.fam
        base = preset(self.model.get("preset", "light"))
        overrides = dict(self.model.get("overrides", {}))
        cfg = base.replace(in_chans=fam.model_channels, in_scale=fam.scale_factor, in_shift=fam.shift_factor)
        return cfg.replace(**overrides) if overrides else cfg

    def out_dir(self) -> Path:
        return expand_path(self.checkpoint.out_dir) or cache_dir() / "train_runs" / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of what defines the training result (not runtime/checkpoint settings such as threads)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("runtime", "checkpoint", "name")}
        if self.data.vae is None or self.data.vae.is_default:
            d["data"].pop("vae", None)  # configs without data.vae keep the fingerprint they always had
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**dict(data))


def config_from_dict(data: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a dict (as read from JSON), checking every key."""
    data = copy.deepcopy(dict(data))
    if overrides:
        data = _merge(data, overrides)
    for key in ("name", "family", "stages"):
        if key not in data:
            raise ValueError(f"training config needs {key!r}")
    data.pop("comment", None)
    stages = [_build(StageConfig, s, f"stage {i}") for i, s in enumerate(data.pop("stages"))]
    parts = {
        "data": DataConfig, "loss": LossConfig, "optim": OptimConfig, "runtime": RuntimeConfig,
        "checkpoint": CheckpointConfig,
    }
    for key, cls in parts.items():
        if key in data:
            data[key] = _build(cls, data[key], key)
    cfg = _build(TrainConfig, {**data, "stages": stages}, "config")
    get_family(cfg.family)
    mc = cfg.model_config()
    unit = 8 * max(mc.scales)
    crops = [cfg.data.crop] + [s.crop for s in stages if s.crop]
    for c in crops:
        if c % unit or c > cfg.data.crop:
            raise ValueError(f"crop {c} must be a multiple of {unit} (8 x largest scale) and <= data.crop {cfg.data.crop}")
    if cfg.data.val_crop % unit:
        raise ValueError(f"data.val_crop {cfg.data.val_crop} must be a multiple of {unit}")
    vae = cfg.data.vae
    fam = cfg.fam
    if vae is not None and vae.backend != "tae" and fam.pack > 1:
        # the full VAE encodes/decodes ComfyUI's packed latent: every LR image a whole number of packed cells
        punit = unit * fam.pack
        for what, c in (("data.crop", cfg.data.crop), ("data.val_crop", cfg.data.val_crop)):
            if c % punit:
                raise ValueError(f"{what} {c} must be a multiple of {punit} with the {fam.label} {vae.backend} VAE "
                                 f"(its latent is packed {fam.pack}x{fam.pack} at 1/{fam.comfy_downscale})")
    return cfg


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path, overrides: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """Read a JSON training config."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON: {exc}") from exc
    return config_from_dict(data, overrides)


def apply_sets(data: dict, sets: Sequence[str]) -> dict:
    """Apply ``a.b.0.c=<json>`` overrides to a config dict (list indices allowed)."""
    for item in sets:
        key, _, value = item.partition("=")
        try:
            val = json.loads(value)
        except json.JSONDecodeError:
            val = value
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = val
        else:
            node[last] = val
    return data
