"""Baseline rows taken from an earlier report instead of scoring those paths again."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

from ..families import LatentFamily
from .pipeline import LUA


class BaselineReuse:
    """Baseline rows of an earlier report on the same images, crop, family and decoder.

    The baselines do not depend on the checkpoint, so a candidate's evaluation scores only its own path
    and takes the others' rows from the earlier report.  Each reused row is checked: the path's image is
    still made and its PSNR must match the stored one.
    """

    TOLERANCE_DB = 0.01

    def __init__(self, source: Union[str, Path]) -> None:
        self.source = Path(source)
        if self.source.is_dir():
            self.source = self.source / "results.json"
        if not self.source.is_file():
            raise FileNotFoundError(f"no earlier report to reuse baselines from: {self.source}")
        self.report = json.loads(self.source.read_text())
        self.per_image: dict[str, dict[str, dict[str, list]]] = self.report["per_image"]

    def check(self, fam: LatentFamily, decoder: str, folder: Path, files: Sequence[Path], crop: int, native: bool,
              scales: Sequence[int], metric_names: Sequence[str]) -> None:
        """Refuse a report made on other images, crop, scales, family, decoder or metrics."""
        old, names = self.report, [str(p.relative_to(folder)) for p in files]
        wanted = {"family": fam.name, "decoder": decoder, "crop": crop, "native crops": native, "image names": names}
        found = {"family": old["family"], "decoder": old["decoder"], "crop": old["images"]["crop"],
                 "native crops": old["images"].get("native", False), "image names": old["images"]["names"]}
        for key, value in wanted.items():
            if found[key] != value:
                shown = "" if key == "image names" else f" ({found[key]!r}; this run: {value!r})"
                raise ValueError(f"{self.source} was made with other {key}{shown}; baselines can only be reused "
                                 f"from a report on the same images and settings")
        missing = [f"x{s}" for s in scales if f"x{s}" not in self.per_image]
        unscored = [m for m in metric_names if old["metrics"].get(m) != "ok"]
        if missing or unscored:
            raise ValueError(f"{self.source} lacks {', '.join(missing + unscored)}; evaluate without reusing baselines")

    def paths(self) -> set[str]:
        """The paths whose rows can be reused (every path of the report but LUA)."""
        return {p for rows in self.per_image.values() for p in rows if p != LUA}

    def row(self, scale_key: str, path: str, index: int, psnr_now: float, image: str) -> dict[str, float]:
        """The stored row of one image, after checking its PSNR against the image made now."""
        stored = {k: v[index] for k, v in self.per_image[scale_key][path].items()}
        if abs(stored["psnr"] - psnr_now) > self.TOLERANCE_DB:
            raise ValueError(f"{path} {scale_key} on {image} measures {psnr_now:.3f} dB now and {stored['psnr']:.3f} dB "
                             f"in {self.source}; the baselines differ, so evaluate without reusing them")
        return stored
