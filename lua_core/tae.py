"""Tiny autoencoders (TAESD family) from the shared ``vae`` folder: load, encode, decode.

The files (one per family: ``LatentFamily.tae_name`` in :mod:`lua_core.families`) are
small distilled stand-ins for each family's VAE.  Images are ``(B, 3, H, W)`` in
``[0, 1]``; latents are the *scaled* TAE latents (``family.raw_to_tae`` of the
raw ComfyUI latent, in the network's layout for FLUX.2: 32 ch at 1/8).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .families import FAMILIES, LatentFamily, family_of_tae, get_family
from .locations import shared_dir

TAE_NAMES = tuple(f.tae_name for f in FAMILIES.values() if f.tae_name)


def _conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride, 1, bias=bias)


class GroupNormBranch(nn.Sequential):
    """taef2's extra branch: 1x1 conv up, GroupNorm (image-wide statistics), ReLU, 1x1 conv down."""

    def __init__(self, n: int, groups: int = 4, mult: int = 4) -> None:
        super().__init__(nn.Conv2d(n, n * mult, 1, bias=False), nn.GroupNorm(groups, n * mult), nn.ReLU(),
                         nn.Conv2d(n * mult, n, 1, bias=False))


class TAEBlock(nn.Module):
    """conv-ReLU-conv-ReLU-conv plus identity skip, then ReLU; optional taef2 GroupNorm branch on the input."""

    def __init__(self, n: int, tae_groupnorm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(n, n), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, n))
        # "pool" is the tensor-key name in the taef2 files and the skip.* checkpoint tensors
        self.pool = GroupNormBranch(n) if tae_groupnorm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return F.relu(self.conv(x) + x)


class Clamp(nn.Module):
    """Soft clamp of latents to about [-3, 3] (``tanh(x / 3) * 3``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def build_encoder(latent_channels: int, tae_groupnorm: bool = False, width: int = 64) -> nn.Sequential:
    """conv(3->64), Block, 3 x [stride-2 conv, 3 Blocks], conv(64->C); taef2 has the branch in the last 3 Blocks."""
    layers: list[nn.Module] = [_conv(3, width), TAEBlock(width)]
    for level in range(3):
        layers.append(_conv(width, width, stride=2, bias=False))
        layers += [TAEBlock(width, tae_groupnorm and level == 2) for _ in range(3)]
    layers.append(_conv(width, latent_channels))
    return nn.Sequential(*layers)


class _Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")


def build_decoder(latent_channels: int, tae_groupnorm: bool = False, width: int = 64) -> nn.Sequential:
    """Clamp, conv(C->64), ReLU, 3 x [3 Blocks, upsample x2, conv], Block, conv(64->3); taef2: branch in the first 3 Blocks."""
    layers: list[nn.Module] = [Clamp(), _conv(latent_channels, width), nn.ReLU()]
    for level in range(3):
        layers += [TAEBlock(width, tae_groupnorm and level == 0) for _ in range(3)]
        layers += [_Upsample(), _conv(width, width, bias=False)]
    layers += [TAEBlock(width), _conv(width, 3)]
    return nn.Sequential(*layers)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path.name}: expected a plain dict of tensors")
    return obj


def tae_files(name: str, root: Optional[Union[str, Path]] = None) -> tuple[Path, Path]:
    """Paths of the encoder and decoder files of a tiny autoencoder (``.safetensors`` or ``.pth``)."""
    folder = Path(root) if root is not None else shared_dir() / "vae"
    found = []
    for part in ("encoder", "decoder"):
        for ext in (".safetensors", ".pth"):
            p = folder / f"{name}_{part}{ext}"
            if p.is_file():
                found.append(p)
                break
        else:
            raise FileNotFoundError(f"tiny autoencoder file {name}_{part}.(safetensors|pth) not found in {folder}")
    return found[0], found[1]


class TinyAutoencoder(nn.Module):
    """A frozen tiny autoencoder of one latent family.

    ``encode(img)``/``decode(lat)`` work on TAE (scaled) latents; ``encode_raw``/
    ``decode_raw`` on the raw latents the LUA network uses (model layout).
    """

    def __init__(self, name: str, family: Optional[LatentFamily] = None, root: Optional[Union[str, Path]] = None) -> None:
        super().__init__()
        layout = family_of_tae(name)  # its row in the family table: latent channels and the GroupNorm branch
        self.name = name
        self.family = family
        self.latent_channels = layout.model_channels
        self.encoder = build_encoder(layout.model_channels, layout.tae_groupnorm)
        self.decoder = build_decoder(layout.model_channels, layout.tae_groupnorm)
        enc_path, dec_path = tae_files(name, root)
        for module, path in ((self.encoder, enc_path), (self.decoder, dec_path)):
            state = {k: v.float() for k, v in _read_state(path).items()}
            missing, unexpected = module.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"{path.name}: does not match the {name} layout (missing {missing[:4]}, "
                                 f"unexpected {unexpected[:4]})")
        self.eval().requires_grad_(False)

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """Image ``[0, 1]`` (B, 3, H, W), H and W multiples of 8 -> TAE latent (B, C, H/8, W/8)."""
        return self.encoder(img)

    def decode(self, lat: torch.Tensor) -> torch.Tensor:
        """TAE latent -> image, about ``[0, 1]`` (not clamped, so gradients stay useful)."""
        return self.decoder(lat)

    def _fam(self) -> LatentFamily:
        if self.family is None:
            raise ValueError(f"{self.name} was loaded without a family; raw latents need one")
        return self.family

    def encode_raw(self, img: torch.Tensor) -> torch.Tensor:
        """Image -> raw latent in the network's layout (FLUX.2: 32 ch at 1/8)."""
        return self._fam().tae_to_raw(self.encode(img))

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latent in the network's layout -> image."""
        return self.decode(self._fam().raw_to_tae(raw))

    def decode_comfy(self, latent: torch.Tensor) -> torch.Tensor:
        """ComfyUI LATENT -> image in [0, 1] (the ``decode`` of :class:`~lua_core.engine.vae_teacher.LatentVAE`)."""
        return self.decode_raw(self._fam().to_model(latent)).clamp(0, 1)

    def encode_comfy(self, img: torch.Tensor) -> torch.Tensor:
        """Image -> ComfyUI LATENT (the ``encode`` of :class:`~lua_core.engine.vae_teacher.LatentVAE`)."""
        return self._fam().to_comfy(self.encode_raw(img))


class TinyVAE:
    """A tiny autoencoder as a :class:`~lua_core.engine.vae_teacher.LatentVAE` (ComfyUI LATENT convention)."""

    def __init__(self, tae: TinyAutoencoder) -> None:
        self.tae = tae

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.tae.decode_comfy(latent)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.tae.encode_comfy(images)


def load_tae(family: Union[str, LatentFamily], root: Optional[Union[str, Path]] = None,
             device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32) -> TinyAutoencoder:
    """Load the tiny autoencoder of a family (a name in :data:`~lua_core.families.FAMILIES`), frozen."""
    fam = family if isinstance(family, LatentFamily) else get_family(family)
    if fam.tae_name is None:
        raise ValueError(f"no tiny autoencoder is known for {fam.label}")
    return TinyAutoencoder(fam.tae_name, fam, root).to(device=device, dtype=dtype)
