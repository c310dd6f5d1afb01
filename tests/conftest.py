"""Shared fixtures: repository paths, small models, official-layout checkpoints."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lua_core  # noqa: E402
from lua_core.checkpoints.export import save_checkpoint  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402

SHARED = Path(os.environ.get("LUA_SHARED_DIR", REPO.parent / "shared"))
SPEC_PATH = SHARED / "spec" / "lua_flux_official_layout.json"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"shared folder not found at {SHARED} (set LUA_SHARED_DIR)"
    return SHARED


@pytest.fixture(scope="session")
def official_spec() -> dict:
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture
def tiny_model_factory(tmp_path):
    """Build, save and load a small random adapter for a family."""

    def make(family: str = "flux1", seed: int = 0, **overrides) -> lua_core.LUAModel:
        fam = lua_core.get_family(family)
        torch.manual_seed(seed)
        cfg = tiny_config(fam.model_channels, in_scale=fam.scale_factor, in_shift=fam.shift_factor, **overrides)
        net = lua_core.LUANet(cfg)
        path = save_checkpoint(net, tmp_path / f"tiny_{family}_{seed}.safetensors", family, dtype=torch.float32)
        return lua_core.load_model(path)

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP with 2 threads can be 10-100x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
