"""Training of LUA adapters: the paper's three-stage curriculum on any latent family.

Entry point: ``python -m lua_core.train --config configs/train/<file>.json``.
"""
from .config import StageConfig, TrainConfig, config_from_dict, load_config
from .trainer import Trainer
from .warm_start import transfer_init

__all__ = ["TrainConfig", "StageConfig", "load_config", "config_from_dict", "Trainer", "transfer_init", "train"]


def train(cfg: TrainConfig, *, resume: bool = False, max_steps=None, out_dir=None, show_progress: bool = True,
          log=None) -> dict:
    """Run a configured training (one process of it under ``torchrun``) and return its summary."""
    kwargs = {"log": log} if log is not None else {}
    trainer = Trainer(cfg, out_dir=out_dir, show_progress=show_progress, **kwargs)
    try:
        return trainer.fit(resume=resume, max_steps=max_steps)
    finally:
        trainer.close()
