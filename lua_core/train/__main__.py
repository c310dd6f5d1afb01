"""CLI: ``python -m lua_core.train --config configs/train/flux1_light.json [--resume] [--out DIR] [--max-steps N]``.

Several processes: ``torchrun --nproc_per_node=N -m lua_core.train --config ...``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lua_core.train", description="Train a LUA adapter (three-stage curriculum).")
    p.add_argument("--config", required=True, help="JSON training config (configs/train/*.json)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/state/latest.pt")
    p.add_argument("--out", help="output folder (default: checkpoint.out_dir or .cache/train_runs/<name>)")
    p.add_argument("--max-steps", type=int, help="stop after this many global steps (checkpointed; --resume continues)")
    p.add_argument("--device", help="override runtime.device (auto, cpu, cuda, mps)")
    p.add_argument("--threads", type=int, help="override runtime.threads (torch.set_num_threads)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--export-only", action="store_true", help="export the EMA of the latest state and exit")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a config value, e.g. --set data.num_samples=200 --set 'stages.0.steps=50'")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from . import Trainer
    from .config import apply_sets, config_from_dict

    data = json.loads(Path(args.config).read_text())
    data = apply_sets(data, args.set)
    if args.device:
        data.setdefault("runtime", {})["device"] = args.device
    if args.threads is not None:
        data.setdefault("runtime", {})["threads"] = args.threads
    if args.compile:
        data.setdefault("runtime", {})["compile"] = True
    cfg = config_from_dict(data)
    trainer = Trainer(cfg, out_dir=Path(args.out) if args.out else None, show_progress=not args.no_progress)
    try:
        if args.export_only:
            if not trainer.load_state():
                return 1
            trainer.prepare_validation()
            if trainer.is_main:
                trainer.validate("export")
                trainer.export()
            return 0
        summary = trainer.fit(resume=args.resume, max_steps=args.max_steps)
    finally:
        trainer.close()
    if trainer.is_main:
        short = {k: v for k, v in summary.items() if k not in ("losses", "val")}
        if summary["val"]:
            short["final_val"] = summary["val"][-1]
        print(json.dumps(short, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
