"""How well can a model learn the teacher latent from a cached training set, and does it generalise?

Fits ``z_lr -> encode(bicubic_up(decode(z_lr), 2))`` (the x2 teacher of ``lua_core.train.teacher``) on
the first samples of a latent cache and scores the last 48 held-out ones: mean absolute error in units
of the LR latent's standard deviation, and the PSNR of the decoded prediction against the HR crop.
``linear`` is a closed-form ridge fit on 5x5 LR neighbourhoods; ``swin`` the light LUA network (x2
head); ``conv`` a plain residual conv net of similar size.  Used to find what limits the CPU adapters
(``lua_core/train/README.md``).

    python -m scripts.probe_data_limit .cache/latents/flux1_<key> --model swin --seconds 420 --train-samples 112
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lua_core.metrics.pixel import psnr
from lua_core.model.config import preset
from lua_core.model.network import LUANet
from lua_core.tae import load_tae
from lua_core.toolkit.images import bicubic_down

HELD_OUT = 48


class _Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.gelu(self.a(x)))


def load_cache(cache: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    from safetensors.torch import load_file

    parts: dict[str, list[torch.Tensor]] = {}
    for shard in sorted(cache.glob("shard_*.safetensors")):
        for k, v in load_file(str(shard)).items():
            parts.setdefault(k, []).append(v)
    teacher = cache / "teacher.safetensors"
    if not teacher.is_file():
        raise SystemExit(f"{cache} has no teacher.safetensors: train a teacher recipe on it first")
    return {k: torch.cat(v) for k, v in parts.items()}, load_file(str(teacher))["b2"]


def fit_linear(lr: torch.Tensor, tgt: torch.Tensor, k: int = 5) -> torch.nn.Module:
    c = lr.shape[1]

    def feats(z: torch.Tensor) -> torch.Tensor:
        u = F.unfold(F.pad(z, (k // 2,) * 4, mode="replicate"), k).transpose(1, 2)
        u = u.reshape(-1, u.shape[-1])
        return torch.cat([u, torch.ones(len(u), 1)], 1)

    x = feats(lr)
    y = F.pixel_unshuffle(tgt, 2).permute(0, 2, 3, 1).reshape(-1, 4 * c)
    w = torch.linalg.solve(x.T @ x + 1e-3 * len(x) * torch.eye(x.shape[1]), x.T @ y)

    class Linear(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            b, _, h, wd = z.shape
            return F.pixel_shuffle((feats(z) @ w).reshape(b, h, wd, 4 * c).permute(0, 3, 1, 2), 2)

    return Linear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cache", type=Path, help="a latent cache folder with teacher.safetensors")
    ap.add_argument("--model", choices=("linear", "swin", "conv"), default="swin")
    ap.add_argument("--train-samples", type=int, default=0, help="train on this many (default: all but the held-out 48)")
    ap.add_argument("--seconds", type=float, default=420.0)
    ap.add_argument("--family", help="default: from the cache folder's name")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data, teacher = load_cache(args.cache)
    lr = data["lr"]
    n_train = len(lr) - HELD_OUT
    used = args.train_samples or n_train
    if not 0 < used <= n_train:
        raise SystemExit(f"--train-samples must be in 1..{n_train}")
    mu, sd = lr.mean().item(), lr.std().item()
    c = lr.shape[1]
    if args.model == "linear":
        model = fit_linear(lr[:used], teacher[:used])
        fwd, steps, train_err = model, 0, float("nan")
    else:
        if args.model == "swin":
            net = LUANet(preset("light", in_chans=c, scales=(2,)))
            body = lambda x: net(x, 2)  # noqa: E731  (the light preset adds its own bicubic skip)
        else:
            net = nn.Sequential(nn.Conv2d(c, 96, 3, 1, 1), *[_Res(96) for _ in range(8)],
                                nn.Conv2d(96, 4 * c, 3, 1, 1), nn.PixelShuffle(2))
            body = lambda x: net(x) + F.interpolate(x, scale_factor=2, mode="bicubic")  # noqa: E731
        fwd = lambda z: body((z - mu) / sd) * sd + mu  # noqa: E731
        opt = torch.optim.Adam(net.parameters(), 4e-4)
        t0, steps, recent = time.time(), 0, []
        while time.time() - t0 < args.seconds:
            idx = torch.randint(0, used, (16,))
            loss = (fwd(lr[idx]) - teacher[idx]).abs().mean() / sd
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            recent = (recent + [loss.item()])[-50:]
        train_err = sum(recent) / len(recent)
    vae = load_tae(args.family or args.cache.name.split("_")[0])
    with torch.no_grad():
        pred = fwd(lr[n_train:])
        err = (pred - teacher[n_train:]).abs().mean().item() / sd
        hr = bicubic_down(data["pix"][n_train:].float() / 255, 2)
        print(f"{args.model}: {used} training samples, {steps} steps; error / sd(lr): train {train_err:.3f}, "
              f"held-out {err:.3f}; held-out PSNR {psnr(vae.decode_raw(pred), hr):.2f} dB "
              f"(exact teacher {psnr(vae.decode_raw(teacher[n_train:]), hr):.2f}, pixel bicubic "
              f"{psnr(F.interpolate(vae.decode_raw(lr[n_train:]).clamp(0, 1), scale_factor=2, mode='bicubic'), hr):.2f})")


if __name__ == "__main__":
    main()
