"""Decoder-in-the-loop fine-tuning of a light adapter against the true image (the shipped recipe).

Each step draws fresh crops from the training photographs, makes the LR latent with the
family's tiny autoencoder, upscales it with one head (x2 and x4 alternate), decodes a random
window of the prediction with the frozen decoder (a margin around the scored centre keeps the
border effects of a window out of the loss) and compares it with the true pixels:
``l1 x L1 + fft x FFT-L1 + lpips x LPIPS(AlexNet)``, the registry's ``pix_l1``, ``pix_fft`` and ``lpips`` terms
(:mod:`.loss_registry`, :data:`CONFIG_WEIGHTS`).  The residual sits on the network's own teacher
(``teacher="tae"``) or on the stand-in of the user's VAE teacher (``teacher="vae"``: the tiny encoder of the
bicubic-upscaled true LR image; LUA Latent Upscale's ``vae`` input).  The EMA of the weights is validated
every ``val_every`` steps (PSNR, LPIPS, DISTS against the user's route on fixed crops) and the best is
exported.  The run is resumable: ``<out>/state.pt`` holds everything, every draw is a function of
``(seed, step)``, and a time budget (``--seconds``) stops it cleanly between steps.

A bicubic-skip checkpoint given as ``--init`` is converted to the teacher skip (``skip="tae"``,
the family's tiny autoencoder inside the network, residual gain 0.1).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..checkpoints.export import save_checkpoint
from ..checkpoints.formats import config_from_metadata, load_into, read_checkpoint
from ..families import get_family
from ..locations import shared_dir
from ..metrics.perceptual import LPIPS
from ..metrics.pixel import psnr
from ..model.detect import infer_config
from ..model.network import LUANet
from ..tae import load_tae
from ..toolkit.images import bicubic_down, center_crop, list_images, load_image, native_crop_side
from ..toolkit.photo_sets import holdout_photos, pick_val_images, spread, training_photos
from ..toolkit.standin_vae import standin_teacher
from ..vae_backends import load_vae
from .config import apply_sets
from .crop_pool import PhotoPool
from .ema import EMA
from .loss_registry import HeadOutputs, loss_formula, weighted_loss
from .warm_start import transfer_init


@dataclass
class FinetuneConfig:
    """Settings of a fine-tune run (stored in its state and in the exported checkpoint)."""

    family: str
    init: str
    batch: int = 4
    lr: float = 2e-4
    l1: float = 10.0
    fft: float = 1.0
    lpips: float = 0.3
    lpips_x2: Optional[float] = None  # LPIPS weight of the x2 head when it differs from ``lpips``
    encoder_lr: float = 0.0  # > 0: the teacher's tiny encoder is trained too, at this rate (0: frozen)
    # "tae": the residual sits on the network's own teacher (its tiny autoencoder's encode(bicubic(decode(z))));
    # "vae": on the user's VAE teacher (LUA Latent Upscale's vae input), whose near-lossless stand-in here is
    # the family's tiny encoder of the bicubic-upscaled *true* low-res image
    teacher: str = "tae"
    # the autoencoder of the loss, the LR latents, the VAE teacher's stand-in and the validation: empty for the
    # family's tiny autoencoder, else a full VAE (a ComfyUI VAE file or a diffusers AutoencoderKL; lua_core.vae_backends)
    vae: str = ""
    vae_backend: str = "comfy"
    gain_init: float = 0.1
    lr_sizes_x2: tuple[int, ...] = (16, 20)
    lr_sizes_x4: tuple[int, ...] = (8, 10)
    window: int = 20  # decoded latent window (side)
    margin: int = 2  # latent px of the window left out of the loss on each side
    min_zoom: float = 0.5
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    val_every: int = 200
    val_crop: int = 384
    val_images: int = 4  # per set (held-out clean photographs, validation textures)
    val_native: bool = True  # smaller val images keep their own pixels (a smaller crop), as in ``eval --native``
    seed: int = 0
    train_dir: str = ""
    val_dir: str = ""
    holdout_dir: str = ""  # held-out photographs in a folder of their own; ``train_dir`` then trains whole


def photo_split(cfg: FinetuneConfig, train_dir: Path) -> tuple[list[Path], list[Path]]:
    """(training photographs, held-out photographs validated on): the fixed held-out set of ``train_dir``,
    or, with ``cfg.holdout_dir`` (a device kit, where the held-out crops travel apart), that folder."""
    if cfg.holdout_dir:
        return list_images(train_dir), list_images(cfg.holdout_dir)
    return training_photos(train_dir), holdout_photos(train_dir)


def lpips_weight(cfg: FinetuneConfig, scale: int) -> float:
    """The LPIPS weight of one head: ``lpips_x2`` for the x2 head when set, else ``lpips``."""
    if scale == 2 and cfg.lpips_x2 is not None:
        return cfg.lpips_x2
    return cfg.lpips


# the config fields that weigh the recipe's terms, and the loss_registry term each weighs
CONFIG_WEIGHTS = {"l1": "pix_l1", "fft": "pix_fft", "lpips": "lpips"}


def term_weights(cfg: FinetuneConfig, scale: int) -> dict[str, float]:
    """The weight of each registry term of the recipe for one head (``lpips_x2`` applied)."""
    return {term: lpips_weight(cfg, scale) if field == "lpips" else getattr(cfg, field)
            for field, term in CONFIG_WEIGHTS.items()}


def recipe_formula(cfg: FinetuneConfig, scales: Sequence[int] = (2, 4)) -> str:
    """The recipe's loss as a model card writes it (from the registry), e.g. ``10.0 x L1 + 1.0 x FFT-L1 + ...``."""
    return loss_formula({s: term_weights(cfg, s) for s in scales})


def to_tae_skip(path: str | Path, family: str, gain: float) -> tuple[LUANet, dict[str, Any]]:
    """Load a light checkpoint as a ``skip="tae"`` network (converting a bicubic-skip one)."""
    raw = read_checkpoint(path)
    cfg = config_from_metadata(raw.metadata, str(path)) or infer_config(raw.tensors)
    fam = get_family(family)
    if cfg.in_chans != fam.model_channels:
        raise ValueError(f"{Path(path).name} has {cfg.in_chans} latent channels; {fam.label} needs {fam.model_channels}")
    if cfg.skip == "tae":
        net = LUANet(cfg)
        load_into(net, raw.tensors, str(path))
        return net, {"from": Path(path).name, "converted": False}
    net = LUANet(cfg.replace(skip="tae", tae_groupnorm=fam.tae_groupnorm,
                             in_scale=fam.scale_factor, in_shift=fam.shift_factor))
    loaded = transfer_init(net, path)["loaded"]
    tae = load_tae(fam)
    assert net.skip is not None
    net.skip.encoder.load_state_dict(tae.encoder.state_dict())
    net.skip.decoder.load_state_dict(tae.decoder.state_dict())
    with torch.no_grad():
        net.skip.gain.fill_(gain)
    return net, {"from": Path(path).name, "converted": True, "loaded": loaded}


TEACHERS = ("tae", "vae")
PSNR_SLACK_DB = 0.3  # validation: dB below the user's route allowed before the hinge
PSNR_HINGE = 1.0  # score per dB beyond the slack


def vae_standin_teacher(tae, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The teacher a near-lossless VAE gives (``encode(bicubic(decode(z)))`` with ``decode(z)`` = the true LR
    image): the family's tiny encoder of the bicubic-upscaled LR image, a raw model-layout latent."""
    return standin_teacher(tae, lr, scale)


def decoded_window(net: LUANet, tae, pool: PhotoPool, cfg: FinetuneConfig, rng: random.Random,
                   scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch of a head: fresh crops, their LR latent (original tiny encoder), the network's output
    (on its own teacher or, with ``cfg.teacher == "vae"``, on the VAE teacher's stand-in), a random ``cfg.window``
    latent window of it decoded, and the scored centre with the matching true pixels."""
    size = rng.choice(cfg.lr_sizes_x2 if scale == 2 else cfg.lr_sizes_x4)
    hr = pool.crops(rng, cfg.batch, size * 8 * scale).to(next(net.parameters()).device)
    with torch.no_grad():
        lr = bicubic_down(hr, scale)
        z = tae.encode_raw(lr)
        teacher = vae_standin_teacher(tae, lr, scale) if cfg.teacher == "vae" else None
    pred = net(z, scale, teacher=teacher)
    side, win, m = pred.shape[-1], min(cfg.window, pred.shape[-1]), cfg.margin
    top, left = rng.randrange(side - win + 1), rng.randrange(side - win + 1)
    img = tae.decode_raw(pred[..., top:top + win, left:left + win].contiguous(memory_format=torch.channels_last))
    img = img[..., 8 * m:8 * (win - m), 8 * m:8 * (win - m)]
    ref = hr[..., 8 * (top + m):8 * (top + win - m), 8 * (left + m):8 * (left + win - m)]
    return img, ref


class Validator:
    """Fixed centre crops of two image sets; the user's route (decode + bicubic, through the tiny autoencoder at
    the target size) computed once as the baseline.  The score (lower is better) is the mean perceptual ratio
    to the baseline, less 0.1 per dB of PSNR gained, plus a steep hinge beyond ``PSNR_SLACK_DB`` below it.

    With ``native`` an image whose short side is below ``crop`` is cropped to its short side, rounded down to
    ``unit`` (the family's ``LatentFamily.crop_unit``), instead of being enlarged: an enlarged crop's "truth" is
    itself a bicubic interpolation, which favours pixel bicubic.
    """

    def __init__(self, tae, sets: dict[str, Sequence[Path]], crop: int, scales: Sequence[int],
                 native: bool = False, unit: Optional[int] = None, device: str | torch.device = "cpu",
                 teacher: str = "tae") -> None:
        from ..metrics.perceptual import load_perceptual

        if native and not unit:
            raise ValueError("native validation crops need the family's crop unit")
        self.tae, self.scales, self.teacher = tae, tuple(scales), teacher
        self.metrics, _ = load_perceptual(device)
        self.items: list[tuple[str, int, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]] = []
        self.crops: dict[str, int] = {}
        for name, paths in sets.items():
            for p in paths:
                side = native_crop_side(p, crop, unit) if native else crop
                self.crops[p.name] = side
                hr = center_crop(load_image(p, 0 if native else crop), side).unsqueeze(0).to(device)
                with torch.no_grad():
                    refs = {k: m.reference(hr) for k, m in self.metrics.items()}
                    for s in self.scales:
                        lr = bicubic_down(hr, s)
                        self.items.append((name, s, hr, tae.encode_raw(lr), vae_standin_teacher(tae, lr, s), refs))
        # the user's free route with a near-lossless VAE (decode + Upscale Image By, bicubic), judged through
        # the same tiny decoder at the target size: the decode of the VAE teacher's stand-in
        self.baseline = self._score(lambda z, t, s: tae.decode_raw(t).clamp(0, 1))

    @torch.no_grad()
    def _score(self, upscale) -> dict[str, dict[str, float]]:
        sums: dict[str, dict[str, list[float]]] = {}
        for name, s, hr, z, t, refs in self.items:
            img = upscale(z, t, s)
            row = {"psnr": psnr(img, hr)}
            for k, m in self.metrics.items():
                row[k] = float(m.distance(img.clamp(0, 1), refs[k]).mean())
            bucket = sums.setdefault(f"{name}_x{s}", {})
            for k, v in row.items():
                bucket.setdefault(k, []).append(v)
        return {key: {k: sum(v) / len(v) for k, v in b.items()} for key, b in sums.items()}

    def run(self, net: LUANet) -> dict[str, Any]:
        vae = self.teacher == "vae"
        scores = self._score(lambda z, t, s: self.tae.decode_raw(net(z, s, teacher=t if vae else None)).clamp(0, 1))
        rel = []
        for key, row in scores.items():
            base = self.baseline[key]
            row["d_psnr"] = row["psnr"] - base["psnr"]
            for k in self.metrics:
                row[f"{k}_ratio"] = row[k] / max(base[k], 1e-8)
            ratios = [row[f"{k}_ratio"] for k in self.metrics]
            # the ship bar allows 0.5 dB below the user's route: losing more than PSNR_SLACK_DB costs steeply
            shortfall = max(0.0, -row["d_psnr"] - PSNR_SLACK_DB)
            rel.append(sum(ratios) / max(len(ratios), 1) - 0.1 * row["d_psnr"] + PSNR_HINGE * shortfall)
        return {"sets": scores, "score": sum(rel) / len(rel)}


class Finetuner:
    """One resumable fine-tune run in ``out``, on ``device`` (a run saved on one device resumes on another)."""

    def __init__(self, cfg: FinetuneConfig, out: Path, threads: Optional[int] = None,
                 state: Optional[dict[str, Any]] = None, device: str | torch.device = "cpu") -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = training_device(device)
        self.cfg, self.out = cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.fam = get_family(cfg.family)
        self.tae = training_autoencoder(cfg, self.device)
        train_dir = Path(cfg.train_dir or shared_dir() / "data" / "train")
        val_dir = Path(cfg.val_dir or shared_dir() / "data" / "val")
        state_path = self.out / "state.pt"
        if state is None and state_path.is_file():
            state = torch.load(state_path, map_location="cpu", weights_only=False)
        self.state = state
        if self.state is not None:
            from ..model.config import LUAConfig

            self.net = LUANet(LUAConfig.from_dict(self.state["net_config"]))
            self.net.load_state_dict(self.state["net"])
            self.info = self.state["init_info"]
        else:
            self.net, self.info = to_tae_skip(cfg.init, cfg.family, cfg.gain_init)
        assert self.net.skip is not None
        self.net.to(self.device)
        self.net.skip.encoder.requires_grad_(cfg.encoder_lr > 0)
        self.net.skip.decoder.requires_grad_(False)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.param_groups(), betas=(0.9, 0.99))
        self.ema = EMA(self.net, cfg.ema_decay, warmup=False)
        self.step, self.best, self.history, self.seconds = 0, math.inf, [], 0.0
        if self.state is not None:
            saved_groups = len(self.state["opt"]["param_groups"])
            if saved_groups != len(self.opt.param_groups):
                raise ValueError(f"{self.out / 'state.pt'} was saved with the teacher's encoder "
                                 f"{'trained' if saved_groups > 1 else 'frozen'}; encoder_lr={cfg.encoder_lr} "
                                 "changes that, so start a new run (another --out, --init a checkpoint of this one)")
            self.opt.load_state_dict(self.state["opt"])
            for group, fresh in zip(self.opt.param_groups, self.param_groups()):
                group["lr"] = fresh["lr"]  # the saved groups carry the old rates; --set must win
            self.ema.load_state_dict(self.state["ema"])
            self.step, self.best = self.state["step"], self.state["best"]
            self.history, self.seconds = self.state["history"], self.state["seconds"]
        train, held = photo_split(cfg, train_dir)
        self.pool = PhotoPool(train, cfg.min_zoom)
        val_sets = {"holdout": spread(held, cfg.val_images),
                    "val": pick_val_images(val_dir, cfg.val_images)}
        if cfg.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {cfg.teacher!r}")
        self.validator = Validator(self.tae, val_sets, cfg.val_crop, self.net.scales, cfg.val_native,
                                   self.fam.crop_unit(self.net.scales), self.device, cfg.teacher)
        self.lpips = LPIPS("alex").to(self.device) if cfg.lpips or cfg.lpips_x2 else None
        self._stop = False

    def param_groups(self) -> list[dict[str, Any]]:
        """The network's trainable weights at ``lr``; the teacher's encoder at ``encoder_lr`` when it is trained."""
        assert self.net.skip is not None
        encoder = {id(p) for p in self.net.skip.encoder.parameters()}
        groups = [{"params": [p for p in self.params if id(p) not in encoder], "lr": self.cfg.lr}]
        if self.cfg.encoder_lr > 0:
            groups.append({"params": list(self.net.skip.encoder.parameters()), "lr": self.cfg.encoder_lr})
        return groups

    def log(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    def loss_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:{step}")
        scale = self.net.scales[step % len(self.net.scales)]
        img, ref = decoded_window(self.net, self.tae, self.pool, cfg, rng, scale)
        loss, terms = weighted_loss(term_weights(cfg, scale), HeadOutputs(pred_img=img, target_img=ref,
                                                                          lpips_fn=self.lpips))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        self.ema.update(self.net)
        return {"scale": scale, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    def save(self) -> None:
        state = {"net_config": self.net.config.to_dict(), "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                 "ema": self.ema.state_dict(), "step": self.step, "best": self.best, "history": self.history,
                 "seconds": self.seconds, "init_info": self.info, "config": asdict(self.cfg)}
        tmp = self.out / "state.pt.part"
        torch.save(state, tmp)
        tmp.replace(self.out / "state.pt")

    def export(self, name: str, val: dict[str, Any]) -> Path:
        training = {"recipe": "finetune", "config": asdict(self.cfg), "steps": self.step,
                    "seconds": round(self.seconds), "init": self.info, "validation": val,
                    "learning_curve": [{k: h[k] for k in ("step", "seconds", "score")} for h in self.history]}
        return save_checkpoint(self.ema.model, self.out / name, self.fam.name, training=training)

    def validate(self) -> None:
        val = self.validator.run(self.ema.model)
        record = {"step": self.step, "seconds": round(self.seconds), "score": val["score"], "sets": val["sets"],
                  "gain": float(self.ema.model.skip.gain)}
        self.history.append(record)
        self.log({"val": record})
        self.export("latest.safetensors", val)
        self.export(f"step_{self.step:05d}.safetensors", val)  # every validated step stays selectable
        if val["score"] < self.best:
            self.best = val["score"]
            self.export("best.safetensors", val)

    def run(self, seconds: float, max_steps: Optional[int] = None, log_every: int = 25,
            validate_at_end: bool = False) -> None:
        """Train until ``seconds`` pass, ``max_steps`` is reached or SIGTERM; ``validate_at_end`` validates and
        exports the last steps too (a run that will not be resumed, e.g. on a borrowed accelerator)."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        if self.step == 0 and not self.history:
            self.log({"start": True, "init": self.info, "baseline": self.validator.baseline})
            self.validate()
            self.save()
        start, mark = time.time(), time.time()
        acc: dict[str, list[float]] = {}
        while not self._stop and time.time() - start < seconds and (max_steps is None or self.step < max_steps):
            t0 = time.time()
            rec = self.loss_step(self.step)
            self.step += 1
            self.seconds += time.time() - t0
            for k, v in rec.items():
                acc.setdefault(f"{k}_x{rec['scale']}" if k != "scale" else k, []).append(v)
            if self.step % log_every == 0:
                self.log({"step": self.step, "s_per_step": round((time.time() - mark) / log_every, 3),
                          **{k: round(sum(v) / len(v), 4) for k, v in acc.items() if k != "scale"}})
                acc, mark = {}, time.time()
            if self.step % self.cfg.val_every == 0:
                self.validate()
            if self.step % 50 == 0:
                self.save()
        if validate_at_end and self.history and self.history[-1]["step"] != self.step:
            self.validate()
        self.save()


def training_autoencoder(cfg: FinetuneConfig, device: torch.device) -> Any:
    """The frozen autoencoder of a run (``encode_raw``/``decode_raw``): the family's tiny one, or ``cfg.vae``."""
    if not cfg.vae:
        tae = load_tae(cfg.family, device=device)
        tae.decoder.to(memory_format=torch.channels_last)
        return tae
    return load_vae(cfg.family, {"backend": cfg.vae_backend, "path": cfg.vae}, device=device)


def training_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device (``auto``: CUDA, then MPS, then the CPU); a clear error when it is absent."""
    from ..api import resolve_device

    dev = resolve_device(str(device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this PyTorch build sees no CUDA device; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: no MPS device here; use --device cpu")
    return dev


def resumed_config(saved: dict[str, Any], fields: dict[str, Any]) -> FinetuneConfig:
    """The config of a resumed run: the saved one with ``fields`` (``--set``) applied.

    A run saved before ``val_native`` existed keeps validating on enlarged crops, so its curve stays comparable.
    """
    merged = {"val_native": False, **saved, **fields}
    return FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()})


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lua_core.train.finetune", description=__doc__.split("\n")[0])
    p.add_argument("--family", required=True)
    p.add_argument("--init", help="starting checkpoint (needed for a new run; ignored when <out>/state.pt exists)")
    p.add_argument("--out", required=True, help="run folder (state.pt, metrics.jsonl, best/latest/step_N.safetensors)")
    p.add_argument("--seconds", type=float, default=3600, help="wall-time budget of this stint")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--validate-at-end", action="store_true",
                   help="validate and export the steps after the last validation when the stint ends")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default %(default)s)")
    p.add_argument("--vae", default=None, metavar="PATH",
                   help="a full VAE as the decoder in the loss, the encoder of the VAE teacher and the judge: a ComfyUI "
                        "VAE file (or, with --vae-backend diffusers, a diffusers AutoencoderKL file or folder)")
    p.add_argument("--vae-backend", default=None, choices=("comfy", "diffusers"), help="how --vae is loaded (comfy)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a FinetuneConfig field")
    args = p.parse_args(argv)
    fields = apply_sets({}, args.set)
    if args.vae:
        fields["vae"] = args.vae
    if args.vae_backend:
        fields["vae_backend"] = args.vae_backend
    state_path = Path(args.out) / "state.pt"
    state = torch.load(state_path, map_location="cpu", weights_only=False) if state_path.is_file() else None
    if state is not None:
        cfg = resumed_config(state["config"], fields)
    else:
        if not args.init:
            raise SystemExit("--init is required to start a new run")
        cfg = FinetuneConfig(family=args.family, init=args.init, **fields)
    try:
        tuner = Finetuner(cfg, Path(args.out), args.threads, state, args.device)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise SystemExit(f"error: {exc}") from None
    tuner.run(args.seconds, args.max_steps, validate_at_end=args.validate_at_end)


if __name__ == "__main__":
    main()
