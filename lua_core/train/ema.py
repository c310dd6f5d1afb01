"""Exponential moving average of the network's weights (evaluated and exported)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = d * ema + (1 - d) * w`` after every optimizer step; buffers are copied.

    With ``warmup`` the decay is ``min(decay, (1 + t) / (10 + t))`` so that a short
    run's average is not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        t = self.num_updates
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        src = dict(model.named_parameters())
        for name, p in self.model.named_parameters():
            p.lerp_(src[name].detach().to(p.dtype), 1 - d)
        src_b = dict(model.named_buffers())
        for name, b in self.model.named_buffers():
            b.copy_(src_b[name])
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.model.load_state_dict(state["model"])
