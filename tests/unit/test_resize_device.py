"""The exact-size area resize on devices that cannot do it (MPS: only when the sizes divide evenly).

The machine running the tests has no MPS device, so the device kind is stood in for: the code takes the
same branch it takes on a Mac, on real CPU tensors, and the result must equal the plain CPU resize."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lua_core
from lua_core import api


@pytest.fixture
def spy(monkeypatch):
    calls = []
    real = api._area_on_cpu

    def recording(x, size):
        calls.append((tuple(x.shape[-2:]), tuple(size)))
        return real(x, size)

    monkeypatch.setattr(api, "_area_on_cpu", recording)
    return calls


def test_mps_uneven_sizes_resize_on_the_cpu(monkeypatch, spy):
    monkeypatch.setattr(api, "_device_kind", lambda x: "mps")
    x = torch.randn(1, 16, 24, 24)
    out = api.resize_area(x, (18, 18))  # 24 is not a multiple of 18: MPS would refuse
    assert spy == [((24, 24), (18, 18))]
    assert torch.equal(out, F.interpolate(x, size=(18, 18), mode="area"))
    spy.clear()
    api.resize_area(x, (12, 12))  # even division: stays on the device
    assert spy == []


def test_a_device_without_area_resize_falls_back_to_the_cpu(monkeypatch, spy):
    monkeypatch.setattr(api, "_device_kind", lambda x: "xpu")
    real = F.interpolate
    refused = []

    def picky(x, size=None, mode="nearest", **kw):
        if mode == "area" and not refused:
            refused.append(True)
            raise RuntimeError("area interpolation is not implemented for this device")
        return real(x, size=size, mode=mode, **kw)

    monkeypatch.setattr(api.F, "interpolate", picky)
    x = torch.randn(2, 4, 20, 30)
    out = api.resize_area(x, (15, 21))
    assert refused and spy == [((20, 30), (15, 21))]
    assert torch.equal(out, real(x, size=(15, 21), mode="area"))


def test_on_the_cpu_a_real_error_is_not_hidden(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(api.F, "interpolate", broken)
    with pytest.raises(RuntimeError, match="boom"):
        api.resize_area(torch.randn(1, 4, 8, 8), (6, 6))


def test_upscale_by_a_non_integer_factor_takes_the_fallback(monkeypatch, spy, tiny_model_factory):
    model = tiny_model_factory("flux1")
    latent = torch.randn(1, 16, 12, 12)
    reference = lua_core.upscale(model, latent, 1.5)
    assert spy == []
    monkeypatch.setattr(api, "_device_kind", lambda x: "mps")
    out = lua_core.upscale(model, latent, 1.5)
    assert spy == [((24, 24), (18, 18))]  # the x2 head's output, area-resized to 1.5x on the CPU
    assert out.shape == (1, 16, 18, 18) and torch.equal(out, reference)
