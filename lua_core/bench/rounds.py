"""Interleaved rounds over all cases, saved after every case so an interrupted run can resume."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .specs import case_key


@dataclass
class Progress:
    """Results so far of a run and which (round, case) pairs are done; mirrored to ``path``."""

    path: Path
    load_start: Optional[list[float]]
    t_start: float = field(default_factory=time.time)
    results: dict[str, list[dict]] = field(default_factory=dict)
    done: set[tuple[int, str]] = field(default_factory=set)

    @classmethod
    def resume(cls, path: Path) -> Progress:
        """The progress an interrupted run saved at ``path``, its elapsed time carried over."""
        state = json.loads(path.read_text())
        return cls(path, state["load_start"], time.time() - state["elapsed_s"], state["results"],
                   {(int(r), k) for r, k in state["done"]})

    def save(self) -> None:
        """Write the state :meth:`resume` reads."""
        self.path.write_text(json.dumps({"results": self.results, "done": sorted(self.done),
                                         "load_start": self.load_start, "elapsed_s": time.time() - self.t_start}))


def run_rounds(cases: list[dict], rounds: int, run: Callable[[dict], dict], progress: Progress) -> None:
    """Run every case not yet done, ``rounds`` times, alternating the order between rounds."""
    for r in range(rounds):
        order = cases if r % 2 == 0 else list(reversed(cases))
        for i, spec in enumerate(order):
            key = case_key(spec)
            if (r, key) in progress.done:
                continue
            t0 = time.time()
            res = run(spec)
            progress.results.setdefault(key, []).append(res)
            progress.done.add((r, key))
            status = res.get("error", "ok")[:200]
            print(f"[round {r + 1}/{rounds} case {i + 1}/{len(order)}] {key}: {time.time() - t0:.1f} s {status}",
                  file=sys.stderr, flush=True)
            progress.save()
