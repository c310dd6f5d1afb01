"""LPIPS / DISTS (lua_core.metrics.perceptual, lua_core.metrics.fetch): safe loading, unavailability, and agreement with
the official ``lpips`` 0.1.4 and ``DISTS_pytorch`` 0.1 code (skipped until ``python -m lua_core.metrics.fetch``
has converted the weights; the official code is kept under ``<metrics dir>/reference/site``)."""
from __future__ import annotations

import importlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lua_core.metrics import backbones as bb
from lua_core.metrics.fetch import FetchError, _flax_conv, load_numpy_pickle
from lua_core.metrics.perceptual import DISTS, DISTS_FILE, FETCH_COMMAND, LPIPS, LPIPS_FILES, load_perceptual, metrics_dir


def test_missing_weights_are_reported_not_raised(tmp_path):
    ready, missing = load_perceptual("cpu", tmp_path)
    assert ready == {} and set(missing) == {"lpips", "dists"}
    for why in missing.values():
        assert why.startswith("unavailable") and FETCH_COMMAND in why


def test_numpy_only_unpickler():
    ok = pickle.dumps({"net": {"kernel": np.ones((2, 2), np.float32)}})
    assert load_numpy_pickle(ok)["net"]["kernel"].sum() == 4

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_numpy_pickle(pickle.dumps({"x": Evil()}))
    with pytest.raises(FetchError, match="float32"):
        load_numpy_pickle(pickle.dumps({"x": np.ones(3, np.float64)}))


def test_flax_kernel_layout_matches_cross_correlation():
    """A flax (kh, kw, in, out) kernel converted for torch gives the same cross-correlation as computed by hand."""
    g = np.random.default_rng(0)
    k = g.standard_normal((3, 2, 2, 4)).astype(np.float32)  # kh=3, kw=2, in=2, out=4
    x = g.standard_normal((1, 2, 5, 6)).astype(np.float32)
    got = F.conv2d(torch.from_numpy(x), _flax_conv(k)).numpy()
    want = np.zeros((1, 4, 3, 5), np.float32)
    for o in range(4):
        for i in range(3):
            for j in range(5):
                want[0, o, i, j] = np.einsum("chw,hwc->", x[0, :, i:i + 3, j:j + 2], k[..., o])
    assert np.allclose(got, want, atol=1e-5)


# --------------------------------------------------------------------------- against the official code
def _weights() -> Path:
    root = metrics_dir()
    if not all((root / f).is_file() for f in (*LPIPS_FILES.values(), DISTS_FILE)):
        pytest.skip(f"perceptual weights not converted in {root} (run `{FETCH_COMMAND}`)")
    return root


def _official(module: str):
    site = _weights() / "reference" / "site"
    if not (site / module).is_dir():
        pytest.skip(f"official {module} code not kept in {site} (run `{FETCH_COMMAND}` without --no-reference)")
    pytest.importorskip("torchvision")
    sys.path.insert(0, str(site))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(site))


def _uninitialised(builder):
    """A torchvision constructor that skips the (slow) random init and the ImageNet download: every
    parameter the tests use is overwritten with the converted weights."""

    def build(pretrained=False, **kw):
        with torch.device("meta"):
            model = builder(weights=None)
        return model.to_empty(device="cpu")

    return build


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Natural-looking test pairs: a smooth random field and blurred / noisy versions of it."""
    g = torch.Generator().manual_seed(0)
    base = F.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=(64, 64), mode="bicubic").clamp(0, 1)
    base = (base + 0.1 * torch.rand(2, 3, 64, 64, generator=g)).clamp(0, 1)
    blurred = F.avg_pool2d(base, 5, 1, 2, count_include_pad=False)
    noisy = (base + 0.08 * torch.randn(base.shape, generator=g)).clamp(0, 1)
    return torch.cat([base, base]), torch.cat([blurred, noisy])


@pytest.mark.parametrize("net", ["alex", pytest.param("vgg", marks=pytest.mark.slow)])
def test_lpips_matches_official(net, monkeypatch, one_torch_thread):
    root = _weights()
    lp = _official("lpips")
    tv = lp.pretrained_networks.tv
    for name in ("alexnet", "vgg16"):
        monkeypatch.setattr(tv, name, _uninitialised(getattr(tv, name)))
    mine = LPIPS(net, root)
    heads = Path(lp.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    ref = lp.LPIPS(pretrained=True, net=net, pnet_rand=True, model_path=str(heads), verbose=False).eval()
    trunk = {k[len("features."):]: v for k, v in mine.state_dict().items() if k.startswith("features.")}
    for s in range(1, 6):  # the official slices hold the torchvision modules under their original indices
        sl = getattr(ref.net, f"slice{s}")
        sl.load_state_dict({k: trunk[k] for k in sl.state_dict()}, strict=True)
    a, b = _pairs()
    with torch.no_grad():
        want = ref(a, b, normalize=True).flatten()
        got = mine(a, b)
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert float(mine(a, a).abs().max()) < 1e-6
    assert bool((got[2:] > 0).all())


@pytest.mark.slow
def test_dists_matches_official(monkeypatch, one_torch_thread):
    root = _weights()
    dp = _official("DISTS_pytorch")
    mod = sys.modules[dp.DISTS.__module__]
    # the official class asks torchvision for the ImageNet weights (a download): build an empty VGG16 instead
    monkeypatch.setattr(mod.models, "vgg16", _uninitialised(mod.models.vgg16))
    ref = dp.DISTS(load_weights=False).eval()
    mine = DISTS(root)
    ref.alpha.data.copy_(mine.alpha)
    ref.beta.data.copy_(mine.beta)
    trunk = LPIPS("vgg", root).state_dict()
    for name, p in ref.named_parameters():
        if name.startswith("stage"):
            p.data.copy_(trunk["features." + name.split(".", 1)[1]])
    a, b = _pairs()
    with torch.no_grad():
        want = ref(b, a)
        got = mine(b, a)
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert float(mine(a, a).abs().max()) < 1e-5


def test_perceptual_orders_degradations(one_torch_thread):
    root = _weights()
    ready, missing = load_perceptual("cpu", root)
    assert not missing
    a, b = _pairs()
    mild = (a + 0.02 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    with torch.no_grad():
        for name, net in ready.items():
            assert bool((net(mild, a) < net(b, a)).all()), name


def test_backbone_layouts_match_torchvision():
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"):
        pairs = ((bb.alexnet_features(), tv.models.alexnet(weights=None).features),
                 (bb.vgg16_features(), tv.models.vgg16(weights=None).features))
    for mine, theirs in pairs:
        assert {k: v.shape for k, v in mine.state_dict().items()} == \
               {k: v.shape for k, v in theirs.state_dict().items()}
        assert [type(m).__name__ for m in mine] == [type(m).__name__ for m in theirs]
