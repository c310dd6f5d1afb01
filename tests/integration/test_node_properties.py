"""Property-based tests (hypothesis) of the upscale nodes on arbitrary LATENT dicts and sizes, calling the
real ComfyUI node classes in-process (``LUA_SKIP_COMFY=1`` skips them).

Every input either gives a correct result of the expected shape or raises a ``ValueError`` naming the
problem. Example counts are bounded and derandomized as in ``tests/unit/test_properties.py`` (the
API-level properties); ``LUA_HYPOTHESIS_RANDOM=1`` explores fresh inputs and
``LUA_HYPOTHESIS_SCALE=<k>`` multiplies the counts.
"""
from __future__ import annotations

import math
import os
from typing import Any, Optional

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from tests.helpers import import_comfy_pack, tiny_config

_SCALE = float(os.environ.get("LUA_HYPOTHESIS_SCALE", "1"))
EXAMPLES = {name: max(1, int(n * _SCALE)) for name, n in {"node_dict": 40, "node_size": 25}.items()}


def _settings(name: str) -> settings:
    return settings(max_examples=EXAMPLES[name], deadline=None,
                    derandomize=os.environ.get("LUA_HYPOTHESIS_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def flux1_model(tmp_path_factory) -> lua_core.LUAModel:
    """A small random fp32 FLUX.1 adapter (saved and loaded like a real file)."""
    fam = lua_core.get_family("flux1")
    torch.manual_seed(0)
    cfg = tiny_config(fam.model_channels, in_scale=fam.scale_factor, in_shift=fam.shift_factor)
    path = save_checkpoint(lua_core.LUANet(cfg), tmp_path_factory.mktemp("prop_models") / "prop_flux1.safetensors",
                           "flux1", dtype=torch.float32)
    return lua_core.load_model(path)


@pytest.fixture(scope="module")
def managed(flux1_model):
    """The flux1 adapter wrapped for ComfyUI's model management (real ComfyUI modules, CPU)."""
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1")
    import_comfy_pack()
    from comfyui_lua.nodes.model_wrapper import ManagedLUAModel

    return ManagedLUAModel.wrap(flux1_model)


EXTRA_VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(0, 9), max_size=3),
                         st.builds(lambda n: torch.zeros(n), st.integers(0, 3)))
MASK_SHAPES = st.one_of(st.none(), st.none(), st.tuples(st.integers(1, 2), st.just(1), st.integers(1, 40),
                                                        st.integers(1, 40)),
                        st.tuples(st.integers(1, 40), st.integers(1, 40)),
                        st.lists(st.integers(0, 40), min_size=0, max_size=4).map(tuple))


_NODE_OK = dict(has_samples=True, samples_kind="tensor", ndim=4, batch=2, channels=16, h=6, w=5, nan=False,
                mask_shape=None, extra={}, scale=2.0)


@pytest.mark.slow
@_settings("node_dict")
@given(has_samples=st.sampled_from([True] * 12 + [False]),
       samples_kind=st.sampled_from(["tensor"] * 12 + ["list", "none"]),
       ndim=st.sampled_from([4] * 8 + [5] * 4 + [3, 2, 1, 0]), batch=st.sampled_from([1, 2] * 6 + [0]),
       channels=st.sampled_from([16] * 12 + [4]), h=st.sampled_from(list(range(1, 13)) + [0]),
       w=st.integers(1, 12), nan=st.sampled_from([False] * 12 + [True]),
       mask_shape=MASK_SHAPES, extra=st.dictionaries(st.sampled_from(["batch_index", "custom", "x", "type"]),
                                                      EXTRA_VALUES, max_size=3),
       scale=st.sampled_from([1.0, 1.5, 2.0, 4.0]))
@example(**{**_NODE_OK, "ndim": 1})
@example(**{**_NODE_OK, "ndim": 0})
@example(**{**_NODE_OK, "mask_shape": (5,)})
@example(**{**_NODE_OK, "mask_shape": ()})
@example(**{**_NODE_OK, "mask_shape": (1, 1, 0, 32)})
@example(**{**_NODE_OK, "mask_shape": (0, 1, 8, 8)})
@example(**{**_NODE_OK, "mask_shape": (2, 1, 24, 40), "extra": {"batch_index": [3, 4], "custom": "kept"}})
def test_node_latent_dicts(managed, has_samples, samples_kind, ndim, batch, channels, h, w, nan, mask_shape,
                           extra, scale):
    """LUA Latent Upscale on any LATENT dict: extra keys kept as they are, mask resized, or a named ValueError."""
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    shape = {4: (batch, channels, h, w), 5: (batch, channels, 2, h, w), 3: (channels, h, w), 2: (h, w), 1: (w,),
             0: ()}[ndim]
    x: Any = {"tensor": torch.randn(shape), "list": [1.0, 2.0], "none": None}[samples_kind]
    if nan and isinstance(x, torch.Tensor) and x.numel():
        x.view(-1)[0] = math.nan
    latent: Any = dict(extra)
    if has_samples:
        latent["samples"] = x
    if mask_shape is not None:
        latent["noise_mask"] = torch.rand(mask_shape)
    before = dict(latent)

    # the first problem, in the order the node checks them
    mask = latent.get("noise_mask")
    if not has_samples:
        expected_error = "no 'samples'"
    elif not isinstance(x, torch.Tensor):
        expected_error = "must be a tensor"
    elif ndim in (4, 5) and batch == 0:
        expected_error = "batch is empty"
    elif ndim == 5:
        expected_error = r"video latent \(5-D"  # no adapter was trained on video latents
    elif ndim not in (4, 5):
        expected_error = "4-D"
    elif channels != 16:
        expected_error = "4 channels but this FLUX.1 adapter expects 16"
    elif h == 0:
        expected_error = "too small"
    elif nan:
        expected_error = "NaN or Inf"
    elif mask is not None and (mask.ndim < 2 or mask.shape[-1] == 0 or mask.shape[-2] == 0):
        expected_error = "noise_mask"
    else:
        expected_error = None

    event(f"ValueError: {expected_error}" if expected_error else "result")
    if expected_error is not None:
        with pytest.raises(ValueError, match=expected_error):
            LUALatentUpscale().upscale(managed, latent, scale, 0, 8)
        return
    (out,) = LUALatentUpscale().upscale(managed, latent, scale, 0, 8)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    assert tuple(out["samples"].shape) == (*x.shape[:-2], th, tw)
    assert set(out) == set(latent)
    for key, value in latent.items():
        if key not in ("samples", "noise_mask"):
            assert out[key] is value  # passed through untouched
    if mask is not None:
        mh, mw = mask.shape[-2:]
        assert tuple(out["noise_mask"].shape) == (*mask.shape[:-2], max(1, round(mh * (th / h))),
                                                  max(1, round(mw * (tw / w))))
    assert set(latent) == set(before) and all(latent[k] is before[k] for k in before)  # input dict untouched


def _pixels(side: int) -> st.SearchStrategy[int]:
    """A pixel size for a latent side: mostly within the heads' range (x1-x4), sometimes outside, sometimes 0."""
    return st.one_of(st.integers(8 * side, 32 * side), st.integers(8 * side, 32 * side), st.integers(0, 8 * side),
                     st.integers(32 * side, 64 * side), st.just(0))


@_settings("node_size")
@given(h=st.shared(st.integers(1, 16), key="h"), w=st.shared(st.integers(1, 16), key="w"),
       width=st.shared(st.integers(1, 16), key="w").flatmap(_pixels),
       height=st.shared(st.integers(1, 16), key="h").flatmap(_pixels), video=st.booleans())
def test_node_to_size_gives_the_exact_size_or_a_clear_error(managed, h, w, width, height, video):
    """LUA Latent Upscale To Size: the requested size in latent units (aspect kept for a 0), or a named error."""
    from comfyui_lua.nodes.upscale_node import LUALatentUpscaleToSize

    x = torch.randn(1, 16, 2, h, w) if video else torch.randn(1, 16, h, w)
    node = LUALatentUpscaleToSize()
    if video:  # refused before anything else: no adapter was trained on video latents
        event("ValueError: video")
        with pytest.raises(ValueError, match=r"video latent \(5-D"):
            node.upscale(managed, {"samples": x}, width, height, 0, 8)
        return
    if width == 0 and height == 0:
        event("ValueError: both 0")
        with pytest.raises(ValueError, match="cannot both be 0"):
            node.upscale(managed, {"samples": x}, width, height, 0, 8)
        return
    th = height // 8 if height > 0 else round(h * (width // 8) / w)
    tw = width // 8 if width > 0 else round(w * (height // 8) / h)
    th, tw = max(th, 1), max(tw, 1)
    if th < h or tw < w:
        expected: Optional[str] = "smaller than the latent"
    elif max(th / h, tw / w) > 4:
        expected = "exceeds this model's largest head"
    else:
        expected = None
    event(f"ValueError: {expected}" if expected else "result")
    if expected:
        with pytest.raises(ValueError, match=expected):
            node.upscale(managed, {"samples": x}, width, height, 0, 8)
        return
    (out,) = node.upscale(managed, {"samples": x}, width, height, 0, 8)
    assert tuple(out["samples"].shape) == (*x.shape[:-2], th, tw)


@pytest.mark.parametrize("shape,width,height", [((1, 16, 4, 0), 256, 0), ((1, 16, 0, 4), 0, 256), ((16,), 0, 256)])
def test_node_to_size_on_degenerate_latents(managed, shape, width, height):
    """A zero-sized side or a 1-D LATENT is a named ValueError (was a ZeroDivisionError / unpacking error)."""
    from comfyui_lua.nodes.upscale_node import LUALatentUpscaleToSize

    with pytest.raises(ValueError, match="too small|4-D"):
        LUALatentUpscaleToSize().upscale(managed, {"samples": torch.randn(shape)}, width, height, 0, 8)
