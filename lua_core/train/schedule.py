"""Curriculum schedule: per-stage optimizer/LR schedule and which heads are supervised at a step."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from .config import StageConfig
from .data import sample_generator


def milestones(stage: StageConfig) -> list[int]:
    """MultiStepLR milestones in steps (paper: halve at 50/75/90 % of the stage)."""
    out = sorted({max(1, round(f * stage.steps)) for f in stage.milestones if 0 < f < 1})
    return [m for m in out if m < stage.steps] if stage.steps > 1 else []


def make_optimizer(params: Iterable[torch.nn.Parameter], stage: StageConfig):
    """Adam with the stage's lr/betas (no weight decay by default) and its MultiStepLR."""
    opt = torch.optim.Adam(list(params), lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(stage), gamma=stage.gamma)
    return opt, sched


def choose_heads(seed: int, stage_idx: int, step: int, stage: StageConfig, scales: Sequence[int]) -> tuple[int, ...]:
    """Every head for the first ``both_heads_frac`` of a stage, then one head uniformly at random.

    The draw depends only on ``(seed, stage, step)``: identical on every DDP rank and after a resume.
    """
    scales = tuple(sorted(scales))
    if len(scales) == 1 or step < stage.both_heads_frac * stage.steps:
        return scales
    g = sample_generator(seed, 4, stage_idx, step)
    return (scales[int(torch.randint(0, len(scales), (1,), generator=g))],)
