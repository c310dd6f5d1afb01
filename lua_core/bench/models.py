"""The networks a benchmark case builds: LUA/SR configs and the family's KL decoder."""
from __future__ import annotations

from ..families import get_family
from ..model import LUAConfig, preset
from .vae_decoder import DecoderConfig, KLDecoder, decoder_config


def lua_config(name: str, channels: int, tiny: bool = False) -> LUAConfig:
    """The ``light``/``paper`` preset for ``channels`` latent channels (``tiny``: a very small stand-in)."""
    cfg = preset(name).replace(in_chans=channels)
    if tiny:
        cfg = cfg.replace(embed_dim=24, depths=(2,), num_heads=(3,), head_num_feat=16,
                          window_size=min(cfg.window_size, 8))
    return cfg


def decoder_for(family: str, tiny: bool = False) -> KLDecoder:
    """The family's KL decoder (``tiny``: 16-wide blocks, for the harness's own test)."""
    cfg = decoder_config(family)
    if tiny:
        cfg = DecoderConfig(latent_channels=cfg.latent_channels, block_out_channels=(16, 16, 16, 16),
                            norm_groups=8, post_quant_conv=cfg.post_quant_conv)
    return KLDecoder(cfg).eval().requires_grad_(False)


def family_channels(family: str) -> int:
    """Latent channels the family's network sees."""
    return get_family(family).model_channels
