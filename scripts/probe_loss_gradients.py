"""How much of the fine-tune's gradient each loss term carries, EAGLE included (issue 12, point 5).

For a teacher-skip checkpoint, draws the fine-tune's own batches (fresh crops of the training photographs, the
LR latent from the tiny encoder, a decoded window scored against the true pixels) and measures, per head, the
norm of each weighted term's gradient with respect to the trainable parameters, on its own and as a share of
the sum over terms. EAGLE is measured at the weight the staged recipes gave it and at the weight that would
give it the same gradient norm as the LPIPS term.

    python -m scripts.probe_loss_gradients --family sdxl --checkpoint weights/lua_light_sdxl.safetensors --batches 6
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Optional, Sequence

import torch

from lua_core.families import get_family
from lua_core.locations import expand_path, shared_dir
from lua_core.metrics.perceptual import LPIPS
from lua_core.tae import load_tae
from lua_core.toolkit.photo_sets import training_photos
from lua_core.train.crop_pool import PhotoPool
from lua_core.train.finetune import FinetuneConfig, decoded_window, term_weights, to_tae_skip
from lua_core.train.loss_registry import REGISTRY, HeadOutputs, term_values

RECIPE_EAGLE = 5e-5  # the weight of `eagle` in configs/train/*.json before it was dropped
RECIPE = tuple(term_weights(FinetuneConfig(family="", init=""), 4))  # the fine-tune's registry terms, in order


def grad_norm(loss: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def probe(checkpoint: Path, family: str, batches: int, photos: int, seed: int) -> dict[int, dict[str, list[float]]]:
    """Per head, per term: the gradient norms of the weighted terms over ``batches`` batches."""
    net, _ = to_tae_skip(checkpoint, family, FinetuneConfig.gain_init)
    fam = get_family(family)
    tae = load_tae(fam)
    tae.decoder.to(memory_format=torch.channels_last)
    assert net.skip is not None
    net.skip.requires_grad_(False)
    net.skip.gain.requires_grad_(True)
    params = [p for p in net.parameters() if p.requires_grad]
    cfg = FinetuneConfig(family=fam.name, init=str(checkpoint))
    pool = PhotoPool(training_photos(shared_dir() / "data" / "train")[:photos], cfg.min_zoom)
    lpips = LPIPS("alex")
    norms: dict[int, dict[str, list[float]]] = {}
    for step in range(batches * len(net.scales)):
        rng = random.Random(f"probe:{seed}:{step}")
        scale = net.scales[step % len(net.scales)]
        img, ref = decoded_window(net, tae, pool, cfg, rng, scale)
        weights = {**term_weights(cfg, scale), "eagle": 1.0}  # EAGLE at unit weight: scaled in the report
        values = term_values(weights, HeadOutputs(pred_img=img, target_img=ref, lpips_fn=lpips))
        terms = {k: weights[k] * v for k, v in values.items()}
        row = norms.setdefault(scale, {})
        for k, v in terms.items():
            row.setdefault(k, []).append(grad_norm(v, params))
    return norms


def report(norms: dict[int, dict[str, list[float]]]) -> str:
    """A markdown table per head: the recipe's terms (registry labels), EAGLE at the staged weight and its share."""
    labels = " | ".join(REGISTRY[k].label for k in RECIPE)
    lines = [f"| head | {labels} | EAGLE x 5e-5 | EAGLE share at 5e-5 | EAGLE weight matching LPIPS |",
             "|---|" + "---:|" * (len(RECIPE) + 3)]
    for scale, row in sorted(norms.items()):
        mean = {k: sum(v) / len(v) for k, v in row.items()}
        eagle = RECIPE_EAGLE * mean["eagle"]
        total = sum(mean[k] for k in RECIPE) + eagle
        lines.append(f"| x{scale} | " + " | ".join(f"{mean[k]:.4g}" for k in RECIPE) + f" | {eagle:.3g} | "
                     f"{100 * eagle / total:.2f} % | {mean['lpips'] / mean['eagle']:.3g} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", required=True)
    p.add_argument("--checkpoint", required=True, help="an adapter of that family (a bicubic-skip one is converted, "
                   "as the fine-tune's --init is)")
    p.add_argument("--batches", type=int, default=6, help="batches per head")
    p.add_argument("--photos", type=int, default=64, help="training photographs to draw crops from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("Gradient norm of each weighted term (fine-tune defaults: 10 L1, 1 FFT, 0.3 LPIPS), "
          f"mean over {args.batches} batches of 4 per head:\n")
    print(report(probe(expand_path(args.checkpoint), args.family, args.batches, args.photos, args.seed)))


if __name__ == "__main__":
    main()
