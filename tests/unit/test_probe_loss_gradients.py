"""The loss-gradient probe behind the decision to drop EAGLE: its norms and the shares it reports."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scripts.probe_loss_gradients import RECIPE_EAGLE, grad_norm, report

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"


def test_grad_norm_is_the_norm_over_all_parameters():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(4))
    unused = torch.nn.Parameter(torch.ones(2))
    loss = (2.0 * a).sum() + (3.0 * b).sum()
    assert grad_norm(loss, [a, b, unused]) == pytest.approx((3 * 4 + 4 * 9) ** 0.5)
    assert grad_norm(loss, [a]) == pytest.approx(12 ** 0.5)  # the graph is kept for the next term


def test_report_shares_and_matching_weight():
    norms = {2: {"pix_l1": [0.2, 0.4], "pix_fft": [0.05, 0.05], "lpips": [0.1, 0.1], "eagle": [10.0, 30.0]},
             4: {"pix_l1": [1.0], "pix_fft": [0.0], "lpips": [0.5], "eagle": [5.0]}}
    rows = report(norms).splitlines()
    assert rows[0].startswith("| head | L1 | FFT-L1 | LPIPS(AlexNet) | EAGLE x 5e-5 |")  # the registry's labels
    assert len(rows) == 4 and rows[2].startswith("| x2 ") and rows[3].startswith("| x4 ")
    eagle2 = RECIPE_EAGLE * 20.0
    share2 = 100 * eagle2 / (0.3 + 0.05 + 0.1 + eagle2)
    cells = [c.strip() for c in rows[2].strip("|").split("|")]
    assert cells[5] == f"{share2:.2f} %"
    assert float(cells[6]) == pytest.approx(0.1 / 20.0, rel=1e-3)  # the EAGLE weight whose norm equals LPIPS's


def test_no_training_recipe_uses_eagle():
    for path in sorted(CONFIGS.glob("*.json")):
        cfg = json.loads(path.read_text())
        for stage in cfg.get("stages", []):
            assert not stage.get("weights", {}).get("eagle"), f"{path.name}: stage {stage.get('name')} weights EAGLE"
