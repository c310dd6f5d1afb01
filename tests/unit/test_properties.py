"""Property-based tests (hypothesis): the API on arbitrary inputs.

Every input either gives a correct result of the expected shape or raises a ``ValueError``
naming the problem; nothing crashes and no output silently has the wrong shape.

Example counts are bounded (``EXAMPLES``) and derandomized so the file is reproducible and runs
in well under a minute on two shared cores; ``LUA_HYPOTHESIS_RANDOM=1`` explores fresh inputs and
``LUA_HYPOTHESIS_SCALE=<k>`` multiplies the counts. The node-level properties (the real ComfyUI node
classes, in-process) are in ``tests/integration/test_node_properties.py``.
"""
from __future__ import annotations

import math
import os
from typing import Any, Optional

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from lua_core.engine import run_network
from tests.helpers import tiny_config

_SCALE = float(os.environ.get("LUA_HYPOTHESIS_SCALE", "1"))
EXAMPLES = {name: max(1, int(n * _SCALE)) for name, n in {
    "upscale": 60, "range": 20, "nonfinite": 30, "rank_dtype": 25, "options": 30, "tiling": 12,
}.items()}


def _settings(name: str) -> settings:
    return settings(max_examples=EXAMPLES[name], deadline=None,
                    derandomize=os.environ.get("LUA_HYPOTHESIS_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FAMILIES = ("flux1", "sd15", "flux2")
LAYOUTS = ("contiguous", "transposed", "strided", "channels_last", "expanded")

# Tiled vs untiled (tiny random network, tiles of 2-7 windows, overlap >= 1 window, inputs ~N(0, 3^2);
# measured worst over 96 random cases: max 0.25, mean 0.021, on outputs of mean magnitude 0.14 (no skip)
# to 2.1 (bicubic skip)). Stated tolerance, absolute, away from the bottom/right band that the
# untiled pass pads (see test_tiled_edges_match_the_untiled_padding):
TILE_MAX_TOL = 0.35
TILE_MEAN_TOL = 0.03


class _Models(dict):
    """family -> adapter, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"<tiny adapters: {', '.join(self)}>"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, lua_core.LUAModel]:
    """One small random fp32 adapter per family (saved and loaded like a real file)."""
    folder = tmp_path_factory.mktemp("prop_models")
    out = _Models()
    for i, family in enumerate(FAMILIES):
        fam = lua_core.get_family(family)
        torch.manual_seed(i)
        cfg = tiny_config(fam.model_channels, in_scale=fam.scale_factor, in_shift=fam.shift_factor)
        path = save_checkpoint(lua_core.LUANet(cfg), folder / f"prop_{family}.safetensors", family,
                               dtype=torch.float32)
        out[family] = lua_core.load_model(path)
    return out


# --- building inputs ------------------------------------------------------------------------------

def make_latent(shape: tuple[int, ...], dtype: torch.dtype, layout: str, seed: int,
                magnitude: float = 3.0) -> torch.Tensor:
    """A random latent of exactly ``shape`` and ``dtype``, laid out in memory as ``layout`` asks."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*s: int) -> torch.Tensor:
        return (torch.randn(*s, generator=gen) * magnitude).to(dtype)

    if layout == "transposed" and len(shape) >= 2:
        return rand(*shape[:-2], shape[-1], shape[-2]).transpose(-1, -2)
    if layout == "strided":
        return rand(*shape[:-1], shape[-1] * 2)[..., ::2]
    if layout == "channels_last" and len(shape) == 4:
        return rand(*shape).contiguous(memory_format=torch.channels_last)
    if layout == "expanded" and len(shape) >= 1 and shape[0] >= 1:
        return rand(1, *shape[1:]).expand(*shape)
    return rand(*shape)


@st.composite
def latent_specs(draw, max_side: int = 40) -> dict[str, Any]:
    """Shape pieces, dtype, memory layout and seed of a latent (channels are chosen by the test)."""
    ndim = draw(st.sampled_from([4, 5]))
    return {
        "ndim": ndim,
        "batch": draw(st.sampled_from([1, 2, 3, 1, 2, 0])),  # empty batches included, not dominant
        "frames": draw(st.sampled_from([1, 2, 1, 2, 0])) if ndim == 5 else None,
        "h": draw(st.integers(1, max_side)),
        "w": draw(st.integers(1, max_side)),
        "dtype": draw(st.sampled_from(sorted(DTYPES))),
        "layout": draw(st.sampled_from(LAYOUTS)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def spec_shape(spec: dict[str, Any], channels: int) -> tuple[int, ...]:
    if spec["ndim"] == 5:
        return (spec["batch"], channels, spec["frames"], spec["h"], spec["w"])
    return (spec["batch"], channels, spec["h"], spec["w"])


def expected_hw(h: int, w: int, scale: Optional[float], size: Optional[tuple[int, int]]) -> tuple[int, int]:
    if size is not None:
        return size
    return max(1, round(h * scale)), max(1, round(w * scale))


def reference_upscale(model: lua_core.LUAModel, latent: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """Independent re-derivation: one image at a time, unpack, the head just above the ratio, no tiling,
    area-resize to the target, pack, and back to the input's dtype and layout."""
    fam = model.family
    x = latent.float()
    frames = x.shape[2] if x.ndim == 5 else None
    images = x.permute(0, 2, 1, 3, 4) if frames is not None else x.unsqueeze(1)  # (B, T, C, H, W)
    h, w = x.shape[-2:]
    head = next(s for s in model.scales if s >= max(th / h, tw / w) - 1e-9)
    outs = []
    with torch.inference_mode():
        for b in range(images.shape[0]):
            row = []
            for t in range(images.shape[1]):
                img = images[b, t][None]
                if (th, tw) != (h, w):
                    y = model.net(fam.to_model(img), head)
                    if y.shape[-2:] != (th * fam.pack, tw * fam.pack):
                        y = F.interpolate(y, size=(th * fam.pack, tw * fam.pack), mode="area")
                    img = fam.to_comfy(y)
                row.append(img[0])
            outs.append(torch.stack(row))
    out = torch.stack(outs)  # (B, T, C, th, tw)
    out = out.permute(0, 2, 1, 3, 4) if frames is not None else out[:, 0]
    return out.to(latent.dtype)


def assert_close_in_dtype(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal up to rounding in the output's dtype (batching changes fp32 summation order)."""
    eps = {torch.float32: 1e-4, torch.float16: 2 ** -9, torch.bfloat16: 2 ** -6}[out.dtype]
    scale = max(1.0, float(ref.float().abs().max()))
    torch.testing.assert_close(out.float(), ref.float(), atol=eps * scale * 4, rtol=eps * 4)


# --- the API ------------------------------------------------------------------------------------

TARGETS = st.one_of(
    st.tuples(st.sampled_from([1, 1.25, 1.5, 2, 2.5, 3, 4]), st.none()),
    st.tuples(st.none(), st.tuples(st.integers(0, 60), st.integers(0, 60))),  # added to the latent's size
)


@pytest.mark.slow
@_settings("upscale")
@given(family=st.sampled_from(FAMILIES), spec=latent_specs(), target=TARGETS,
       wrong_channels=st.sampled_from([None] * 8 + [1, 4, 16, 32, 128]))
@example(family="flux1", spec={"ndim": 4, "batch": 1, "frames": None, "h": 1, "w": 1, "dtype": "fp32",
                               "layout": "contiguous", "seed": 0}, target=(4, None), wrong_channels=None)
@example(family="sd15", spec={"ndim": 4, "batch": 1, "frames": None, "h": 72, "w": 96, "dtype": "fp32",
                              "layout": "contiguous", "seed": 1}, target=(2, None), wrong_channels=None)
@example(family="sd15", spec={"ndim": 4, "batch": 2, "frames": None, "h": 9, "w": 13, "dtype": "fp16",
                              "layout": "transposed", "seed": 3}, target=(3, None), wrong_channels=None)
@example(family="flux2", spec={"ndim": 5, "batch": 1, "frames": 2, "h": 11, "w": 5, "dtype": "bf16",
                               "layout": "strided", "seed": 2}, target=(1.5, None), wrong_channels=None)
def test_upscale_result_or_clear_error(models, family, spec, target, wrong_channels):
    """Any shape/dtype/layout/batch: the exact expected shape and the reference values, or a named error."""
    model = models[family]
    expected_c = model.family.comfy_channels
    channels = expected_c if wrong_channels in (None, expected_c) else wrong_channels
    latent = make_latent(spec_shape(spec, channels), DTYPES[spec["dtype"]], spec["layout"], spec["seed"])
    scale, extra = target
    size = None if extra is None else (spec["h"] + extra[0], spec["w"] + extra[1])
    th, tw = expected_hw(spec["h"], spec["w"], scale, size)
    ratio = max(th / spec["h"], tw / spec["w"])
    if channels != expected_c:
        event("ValueError: channels")
        with pytest.raises(ValueError, match=f"{channels} channels but this .* adapter expects {expected_c}"):
            lua_core.upscale(model, latent, scale, size=size)
        return
    if ratio > max(model.scales):
        event("ValueError: factor above the largest head")
        with pytest.raises(ValueError, match="exceeds this model's largest head"):
            lua_core.upscale(model, latent, scale, size=size)
        return
    event("result, empty batch/frames" if latent.numel() == 0 else f"result, {spec['ndim']}-D {spec['dtype']}")
    # automatic tiling (tile_size 0, the default) with a fixed budget: the plan must not depend on this machine's free memory
    out = lua_core.upscale(model, latent, scale, size=size, memory_budget=1 << 34)
    shape = list(latent.shape)
    shape[-2:] = [th, tw]
    assert tuple(out.shape) == tuple(shape)
    assert out.dtype == latent.dtype and out.is_contiguous()
    if out.numel():
        assert torch.isfinite(out).all()
        assert_close_in_dtype(out, reference_upscale(model, latent, th, tw))


@_settings("range")
@given(h=st.integers(1, 24), w=st.integers(1, 24),
       factor=st.one_of(st.floats(3.5, 64), st.floats(0.01, 1.2), st.sampled_from([0.0, -2.0, math.nan, math.inf])),
       as_size=st.booleans())
def test_factors_give_the_rounded_size_or_a_clear_error(models, h, w, factor, as_size):
    """Around and beyond the heads' range: exactly the rounded size, or (downscaling, a non-positive or
    non-finite factor, above x4) a ValueError naming the problem."""
    model = models["flux1"]
    latent = torch.randn(1, 16, h, w)
    if not (math.isfinite(factor) and factor > 0):
        event("ValueError: positive number")
        with pytest.raises(ValueError, match="positive number"):
            lua_core.upscale(model, latent, factor)
        return
    th, tw = max(1, round(h * factor)), max(1, round(w * factor))
    kwargs: dict[str, Any] = {"size": (th, tw)} if as_size else {"scale": factor}
    if th < h or tw < w:
        expected: Optional[str] = "smaller than the latent"
    elif (th, tw) != (h, w) and max(th / h, tw / w) > 4:
        expected = "exceeds this model's largest head x4"
    else:
        expected = None
    event(f"ValueError: {expected}" if expected else "result")
    if expected:
        with pytest.raises(ValueError, match=expected):
            lua_core.upscale(model, latent, **kwargs)
        return
    out = lua_core.upscale(model, latent, **kwargs)
    assert out.shape == (1, 16, th, tw) and torch.isfinite(out).all()
    if (th, tw) == (h, w):
        assert torch.equal(out, latent)


@_settings("nonfinite")
@given(family=st.sampled_from(FAMILIES), spec=latent_specs(max_side=16),
       bad=st.sampled_from([math.nan, math.inf, -math.inf]), where=st.floats(0, 1, exclude_max=True))
def test_nan_or_inf_anywhere_is_refused(models, family, spec, bad, where):
    """One non-finite value anywhere, in any dtype/layout, is refused before any computation."""
    model = models[family]
    spec = {**spec, "batch": max(spec["batch"], 1), "frames": max(spec["frames"] or 1, 1),
            "layout": "contiguous" if spec["layout"] == "expanded" else spec["layout"]}
    latent = make_latent(spec_shape(spec, model.family.comfy_channels), DTYPES[spec["dtype"]],
                         spec["layout"], spec["seed"])
    flat_index = int(where * latent.numel())
    latent[tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), latent.shape))] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        lua_core.upscale(model, latent, 2)


@_settings("rank_dtype")
@given(ndim=st.sampled_from([0, 1, 2, 3, 4, 6]), dtype=st.sampled_from(
    [torch.float32, torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]),
    side=st.integers(1, 6))
def test_wrong_rank_or_dtype_is_refused(models, ndim, dtype, side):
    """Ranks other than 4/5 and non-float dtypes are ValueErrors naming the problem."""
    model = models["flux1"]
    shape = [1, 16, side, side, 1, side][:ndim] if ndim != 6 else [1, 16, 1, 1, side, side]
    latent = torch.zeros(shape, dtype=dtype)
    if ndim == 4 and dtype == torch.float32:
        assert lua_core.upscale(model, latent, 2).shape == (1, 16, 2 * side, 2 * side)
        return
    message = "4-D \\[B,C,H,W\\] or 5-D" if ndim != 4 else "floating-point"
    with pytest.raises(ValueError, match=message):
        lua_core.upscale(model, latent, 2)


_VALID_OPTION = st.one_of(st.none(), st.integers(0, 80))
_BAD_OPTION = st.one_of(st.integers(-20, -1), st.booleans(), st.floats(-5, 50), st.sampled_from(["8", "auto", [8], object()]))
# one_of flattens and weighs its branches equally: pick valid values 5 times in 6 explicitly
OPTION_VALUES = st.integers(0, 5).flatmap(lambda i: _BAD_OPTION if i == 0 else _VALID_OPTION)


@pytest.mark.slow
@_settings("options")
@given(tile_size=OPTION_VALUES, tile_overlap=OPTION_VALUES, memory_budget=OPTION_VALUES,
       dtype=st.sampled_from([None, "auto", "fp32", "bf16", "fp16"] * 2 + ["fp8", "int8", torch.float64]))
def test_options_give_a_result_or_name_the_option(models, tile_size, tile_overlap, memory_budget, dtype):
    """Any option value: a result of the right shape, or a ValueError naming the option."""
    model = models["flux1"]
    latent = torch.randn(1, 16, 20, 18)
    kwargs = dict(tile_size=tile_size, tile_overlap=tile_overlap, memory_budget=memory_budget, dtype=dtype)

    def valid(name: str, v: Any) -> bool:
        # None is each option's default, except tile_size, whose one "automatic" value is 0
        return (v is None and name != "tile_size") or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)

    problems = [k for k in ("tile_size", "tile_overlap", "memory_budget") if not valid(k, kwargs[k])]
    dtype_ok = dtype in (None, "auto", "fp32", "bf16", "fp16")
    event("ValueError" if problems or not dtype_ok else "result")
    if problems or not dtype_ok:
        with pytest.raises(ValueError) as info:
            lua_core.upscale(model, latent, 2, **kwargs)
        names = problems + ([] if dtype_ok else ["dtype"])
        assert any(n in str(info.value) for n in names), str(info.value)
        return
    out = lua_core.upscale(model, latent, 2, **kwargs)
    assert out.shape == (1, 16, 40, 36) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert model.dtype == torch.float32  # a per-call dtype leaves the loaded model as it was


# --- tiling ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiling_nets() -> dict[str, lua_core.LUANet]:
    out = {}
    for skip in ("none", "bicubic"):
        torch.manual_seed(7)
        out[skip] = lua_core.LUANet(tiny_config(16, skip=skip)).eval()
    return out


def _interior(t: torch.Tensor, h: int, w: int, scale: int, window: int) -> torch.Tensor:
    """Drop the bottom/right band of one window that an untiled pass fills with reflect padding."""
    rows = (h - window) * scale if h % window and h > window else None
    cols = (w - window) * scale if w % window and w > window else None
    return t[..., :rows, :cols]


@pytest.mark.slow
@_settings("tiling")
@given(skip=st.sampled_from(["none", "bicubic"]), h=st.integers(9, 64), w=st.integers(9, 64),
       tile=st.integers(16, 56), overlap=st.integers(8, 16), scale=st.sampled_from([2, 4]),
       seed=st.integers(0, 2**31 - 1))
def test_tiled_output_does_not_depend_on_the_tile_size(tiling_nets, skip, h, w, tile, overlap, scale, seed):
    """Any tile size (rounded up to the window) and overlap: within the stated tolerance of one pass."""
    net = tiling_nets[skip]
    z = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(seed)) * 3
    with torch.inference_mode():
        full = net(z, scale)
        tiled = run_network(net, z, scale, tile_size=tile, tile_overlap=overlap)
    assert tiled.shape == full.shape and torch.isfinite(tiled).all()
    diff = _interior((tiled - full).abs(), h, w, scale, net.config.window_size)
    assert diff.max() <= TILE_MAX_TOL and diff.mean() <= TILE_MEAN_TOL, (float(diff.max()), float(diff.mean()))


@pytest.mark.slow
def test_tiled_edges_match_the_untiled_padding(tiling_nets):
    """Tiles see the same far-edge reflection padding as the single pass (latent not a window multiple)."""
    net = tiling_nets["bicubic"]
    z = torch.randn(1, 16, 50, 45, generator=torch.Generator().manual_seed(0)) * 3
    with torch.inference_mode():
        full = net(z, 2)
        tiled = run_network(net, z, 2, tile_size=32, tile_overlap=8)
    assert (tiled - full).abs().max() <= TILE_MAX_TOL
