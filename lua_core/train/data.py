"""Training pairs: random HR crops, bicubic anti-aliased LR, both through the frozen encoder.

The encoder is the family's tiny autoencoder or a full VAE (``vae_backends``): anything with
``encode_raw(img) -> raw latent`` (network layout) and parameters on its device.

Sample ``i`` of a data set is a pure function of ``(seed, i)`` (which image,
where to crop, which flip/rotation), so the on-disk cache, on-the-fly encoding
and every DDP rank agree on it.  For scales ``S = (2, 4)`` and crop ``c`` a
sample holds the input latent of the ``c/4`` image, the target latents of the
``c/2`` (x2) and ``c`` (x4) images, and optionally the ``c`` px image (uint8).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from ..tae import TinyAutoencoder
from ..toolkit.images import bicubic_down, load_image
from ..vae_backends import VAEBackend


def sample_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and integer keys (stable across runs and ranks)."""
    digest = hashlib.sha256(json.dumps([int(seed), *map(int, keys)]).encode()).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


@dataclass
class CropSpec:
    """Where sample ``i`` comes from."""

    image: int
    top: int
    left: int
    flip: bool
    rot: int


class PairMaker:
    """Makes samples ``i`` (crop -> augment -> LR pyramid -> raw latents of the frozen encoder)."""

    def __init__(self, images: Sequence[Path], tae: TinyAutoencoder | VAEBackend, crop: int, scales: Sequence[int],
                 seed: int, augment: bool = True, store_pixels: bool = True) -> None:
        self.images = list(images)
        self.tae = tae
        self.crop = crop
        self.scales = tuple(sorted(scales))
        self.seed = seed
        self.augment = augment
        self.store_pixels = store_pixels
        self._sizes: dict[int, tuple[int, int]] = {}

    @property
    def max_scale(self) -> int:
        return self.scales[-1]

    def _size(self, idx: int) -> tuple[int, int]:
        if idx not in self._sizes:
            from PIL import Image

            with Image.open(self.images[idx]) as im:
                w, h = im.size
            if min(w, h) < self.crop:
                f = self.crop / min(w, h)
                w, h = max(self.crop, round(w * f)), max(self.crop, round(h * f))
            self._sizes[idx] = (h, w)
        return self._sizes[idx]

    def spec(self, i: int) -> CropSpec:
        g = sample_generator(self.seed, 1, i)
        n = len(self.images)
        # every image is used once per round of n samples, in a per-round shuffled order
        perm = torch.randperm(n, generator=sample_generator(self.seed, 2, i // n))
        image = int(perm[i % n])
        h, w = self._size(image)
        top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
        left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
        flip = bool(torch.randint(0, 2, (1,), generator=g)) if self.augment else False
        rot = int(torch.randint(0, 4, (1,), generator=g)) if self.augment else 0
        return CropSpec(image, top, left, flip, rot)

    def crop_image(self, i: int) -> torch.Tensor:
        """The augmented HR crop of sample ``i``: ``(3, crop, crop)`` in [0, 1]."""
        s = self.spec(i)
        img = load_image(self.images[s.image], self.crop)
        x = img[:, s.top: s.top + self.crop, s.left: s.left + self.crop]
        if s.flip:
            x = x.flip(-1)
        if s.rot:
            x = torch.rot90(x, s.rot, dims=(-2, -1))
        return x.contiguous()

    @torch.no_grad()
    def encode(self, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        """HR crops ``(B, 3, c, c)`` -> ``{"lr": input latent, "t<s>": target latents, ["pix": uint8]}`` (raw latents)."""
        m = self.max_scale
        dev = self.tae.device if isinstance(self.tae, VAEBackend) else next(self.tae.parameters()).device
        hr = hr.to(dev)
        out = {"lr": self.tae.encode_raw(bicubic_down(hr, m)).float().cpu()}
        for s in self.scales:
            out[f"t{s}"] = self.tae.encode_raw(bicubic_down(hr, m // s)).float().cpu()
        if self.store_pixels:
            out["pix"] = (hr * 255).round_().clamp_(0, 255).to(torch.uint8).cpu()
        return out

    def make(self, indices: Iterable[int]) -> dict[str, torch.Tensor]:
        hr = torch.stack([self.crop_image(i) for i in indices])
        return self.encode(hr)


def progress_bar(total: int, desc: str, disable: bool = False, initial: int = 0):
    """tqdm when installed, else a minimal line printer."""
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True, initial=initial)
    except ImportError:  # pragma: no cover - tqdm is in requirements-train.txt
        class _Bar:
            def __init__(self) -> None:
                self.n = initial

            def update(self, k: int = 1) -> None:
                self.n += k
                if not disable and (self.n == total or self.n % max(1, total // 20) == 0):
                    print(f"{desc}: {self.n}/{total}", flush=True)

            def set_postfix(self, **_: object) -> None:
                pass

            def close(self) -> None:
                pass

        return _Bar()


class LatentCache:
    """Samples ``0..n-1`` stored as safetensors shards under ``root/<key>/``, loaded into memory.

    Sample ``i`` depends only on the seed and ``i`` (never on how many samples there are), so the
    key leaves the sample count out: a run that asks for more samples reuses the shards already
    encoded and encodes only the rest; a run that asks for fewer reads a prefix.  Each shard records
    how many samples it holds; a short last shard is re-encoded when more are needed.
    """

    def __init__(self, root: Path, key_fields: dict, num_samples: int, shard_size: int) -> None:
        if num_samples < 1 or shard_size < 1:
            raise ValueError(f"latent cache needs num_samples >= 1 and shard_size >= 1, got {num_samples}, {shard_size}")
        key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.dir = Path(root) / f"{key_fields.get('family', 'latents')}_{key}"
        self.key_fields = key_fields
        self.num_samples = num_samples
        self.shard_size = shard_size
        self.data: dict[str, torch.Tensor] = {}

    @property
    def num_shards(self) -> int:
        return (self.num_samples + self.shard_size - 1) // self.shard_size

    def shard_path(self, k: int) -> Path:
        return self.dir / f"shard_{k:05d}.safetensors"

    def shard_count(self, k: int) -> int:
        """How many samples shard ``k`` holds on disk (0 when it is missing or unreadable)."""
        from safetensors import safe_open

        path = self.shard_path(k)
        if not path.is_file():
            return 0
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if "count" in meta:
                    return int(meta["count"])
                return int(f.get_slice("lr").get_shape()[0])
        except Exception:  # a torn or foreign file is re-encoded, not trusted
            return 0

    def _needed(self, k: int) -> int:
        return min(self.shard_size, self.num_samples - k * self.shard_size)

    def missing_shards(self) -> list[int]:
        """Shards that are absent or hold fewer samples than this cache needs from them."""
        return [k for k in range(self.num_shards) if self.shard_count(k) < self._needed(k)]

    def build(self, maker: PairMaker, shards: Optional[Sequence[int]] = None, batch: int = 8,
              show_progress: bool = True) -> None:
        """Encode and write the given shards (default: all missing ones), with a progress bar."""
        from safetensors.torch import save_file

        todo = list(self.missing_shards() if shards is None else shards)
        if not todo:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "key.json").write_text(json.dumps(self.key_fields, indent=1, sort_keys=True, default=str))
        total = sum(self._needed(k) for k in todo)
        bar = progress_bar(total, f"encoding latents ({self.dir.name})", disable=not show_progress)
        for k in todo:
            lo, hi = k * self.shard_size, min(self.num_samples, (k + 1) * self.shard_size)
            parts: dict[str, list[torch.Tensor]] = {}
            for start in range(lo, hi, batch):
                idx = list(range(start, min(hi, start + batch)))
                for name, t in maker.make(idx).items():
                    parts.setdefault(name, []).append(t)
                bar.update(len(idx))
            tensors = {n: torch.cat(v).contiguous() for n, v in parts.items()}
            tmp = self.shard_path(k).with_suffix(".part")
            save_file(tensors, str(tmp), metadata={"first": str(lo), "count": str(hi - lo)})
            os.replace(tmp, self.shard_path(k))
        bar.close()

    def load(self) -> dict[str, torch.Tensor]:
        """Read the first ``num_samples`` samples into memory (latents float32, pixels uint8)."""
        from safetensors.torch import load_file

        missing = self.missing_shards()
        if missing:
            raise FileNotFoundError(f"latent cache {self.dir} lacks shards {missing[:5]}")
        parts: dict[str, list[torch.Tensor]] = {}
        for k in range(self.num_shards):
            need = self._needed(k)
            for n, t in load_file(str(self.shard_path(k))).items():
                parts.setdefault(n, []).append(t[:need])
        self.data = {n: torch.cat(v) for n, v in parts.items()}
        if len(self.data["lr"]) != self.num_samples:
            raise ValueError(f"latent cache {self.dir} holds {len(self.data['lr'])} samples, expected {self.num_samples}")
        return self.data


class SampleSource:
    """Batches by sample index, from the in-memory cache or encoded on the fly."""

    def __init__(self, maker: PairMaker, cache: Optional[dict[str, torch.Tensor]] = None) -> None:
        self.maker = maker
        self.cache = cache

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            idx = torch.as_tensor(list(indices), dtype=torch.long)
            return {k: v.index_select(0, idx) for k, v in self.cache.items()}
        return self.maker.make(indices)


def subcrop(batch: dict[str, torch.Tensor], crop: int, full: int, scales: Sequence[int], gen: torch.Generator
            ) -> dict[str, torch.Tensor]:
    """A random latent-aligned window of ``crop`` px (HR) out of ``full`` px samples, the same for the batch."""
    if crop >= full:
        return batch
    m = max(scales)
    unit = 8 * m
    n_lr, n_full = crop // unit, full // unit
    oy = int(torch.randint(0, n_full - n_lr + 1, (1,), generator=gen))
    ox = int(torch.randint(0, n_full - n_lr + 1, (1,), generator=gen))
    out = {"lr": batch["lr"][..., oy: oy + n_lr, ox: ox + n_lr]}
    for s in scales:
        for name in (f"t{s}", f"b{s}"):
            if name in batch:
                out[name] = batch[name][..., oy * s: (oy + n_lr) * s, ox * s: (ox + n_lr) * s]
    if "pix" in batch:
        out["pix"] = batch["pix"][..., oy * unit: (oy + n_lr) * unit, ox * unit: (ox + n_lr) * unit]
    return out


def batch_indices(seed: int, stage: int, step: int, batch_size: int, num_samples: int) -> list[int]:
    """Global batch of a step: consecutive slices of per-epoch permutations (resumable by construction)."""
    out = []
    for j in range(batch_size):
        pos = step * batch_size + j
        epoch, off = divmod(pos, num_samples)
        perm = _perm(seed, stage, epoch, num_samples)
        out.append(int(perm[off]))
    return out


_PERM_CACHE: dict[tuple[int, int, int, int], torch.Tensor] = {}


def _perm(seed: int, stage: int, epoch: int, n: int) -> torch.Tensor:
    key = (seed, stage, epoch, n)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 8:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = torch.randperm(n, generator=sample_generator(seed, 3, stage, epoch))
    return _PERM_CACHE[key]


def rank_slice(indices: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's contiguous share of a global batch (the batch must divide evenly)."""
    if len(indices) % world:
        raise ValueError(f"global batch {len(indices)} does not split over {world} ranks")
    k = len(indices) // world
    return list(indices[rank * k: (rank + 1) * k])

