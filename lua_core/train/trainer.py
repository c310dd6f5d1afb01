"""The training loop: curriculum stages, EMA, checkpoints, exact resume, DDP, validation and export."""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..api import resolve_device
from ..checkpoints.export import save_checkpoint
from ..dtypes import dtype_from_name
from ..locations import expand_path
from ..model.network import LUANet
from ..toolkit.images import bicubic_down, list_images
from ..toolkit.photo_sets import pick_val_images
from ..vae_backends import VAEBackend, load_vae
from . import ddp
from .config import StageConfig, TrainConfig
from .data import LatentCache, PairMaker, SampleSource, batch_indices, progress_bar, rank_slice, sample_generator, subcrop
from .ema import EMA
from .loss_registry import HeadOutputs, weighted_loss
from .run_log import MetricsLog, plot_losses
from .schedule import choose_heads, make_optimizer
from .teacher import cached_teacher_latents, teacher_latents
from .validate import Validator
from .warm_start import transfer_init

STATE_VERSION = 1


class Heads(nn.Module):
    """Runs the requested heads on one trunk pass (the module DDP wraps)."""

    def __init__(self, net: LUANet) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, heads: tuple[int, ...]) -> dict[int, torch.Tensor]:
        if tuple(heads) == tuple(self.net.scales):
            return self.net.forward_all(z)
        return {s: self.net(z, s) for s in heads}


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _print(msg: str) -> None:
    print(msg, flush=True)


def _autocast(device: torch.device, amp: str):
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class _Interval:
    """The losses and samples of the steps since the last train record."""

    def __init__(self) -> None:
        self.reset(time.perf_counter())

    def reset(self, now: float) -> None:
        self.loss_sum, self.steps, self.samples, self.start = 0.0, 0, 0, now

    def add(self, loss: float, samples: int) -> None:
        self.loss_sum, self.steps, self.samples = self.loss_sum + loss, self.steps + 1, self.samples + samples

    def mean_loss(self) -> float:
        return self.loss_sum / self.steps

    def samples_per_s(self, now: float) -> float:
        return self.samples / max(1e-9, now - self.start)


class Trainer:
    """One training run (a process of it, under DDP) for a :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig, out_dir: Optional[Path] = None, log: Callable[[str], None] = _print,
                 show_progress: bool = True) -> None:
        self.cfg = cfg
        self.out = Path(out_dir) if out_dir else cfg.out_dir()
        rt = cfg.runtime
        if rt.threads:
            torch.set_num_threads(rt.threads)
        dev = resolve_device(rt.device)
        self.dist = ddp.setup(dev.type)
        if dev.type == "cuda" and self.dist.enabled:
            dev = torch.device("cuda", self.dist.local_rank)
        self.device = dev
        self.is_main = self.dist.is_main
        self._log = log
        self.show_progress = show_progress and self.is_main
        self.fam = cfg.fam
        self.mcfg = cfg.model_config()
        self.scales = self.mcfg.scales
        torch.manual_seed(cfg.seed)
        self.net = LUANet(self.mcfg).to(self.device)
        self.transfer: Optional[dict[str, Any]] = None
        if cfg.init_from:
            self.transfer = transfer_init(self.net, expand_path(cfg.init_from))
            self.log(f"initialised from {self.transfer['from']}: {self.transfer['loaded']} tensors, "
                     f"re-initialised {self.transfer['replaced']}")
        self.net.train()
        self.ema = EMA(self.net, cfg.optim.ema_decay, cfg.optim.ema_warmup)
        # the frozen autoencoder (tiny autoencoder, or the family's full VAE via ComfyUI / diffusers)
        self.vae: VAEBackend = load_vae(self.fam, cfg.data.vae, device=self.device)
        self.tae = self.vae  # the name earlier code used
        if cfg.data.vae is not None and not cfg.data.vae.is_default:
            self.log(f"autoencoder: {self.vae.describe()}")
        self.heads = Heads(self.net)
        module: nn.Module = torch.compile(self.heads) if rt.compile else self.heads
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # one head per step late in a stage leaves the other unused; the buffers are constants
            module = DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True,
                                             broadcast_buffers=False)
        self.model = module
        self.autocast = lambda: _autocast(self.device, rt.amp)
        self.metrics = MetricsLog(self.out / "metrics.jsonl", enabled=self.is_main)
        self.source: Optional[SampleSource] = None
        self.validator: Optional[Validator] = None
        self.stage_idx = 0
        self.stage_step = 0
        self.global_step = 0
        self.pending_opt: Optional[dict] = None
        self.throughput: dict[str, dict[str, float]] = {}
        self.history: list[dict[str, Any]] = []
        self.val_history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ helpers
    def log(self, msg: str) -> None:
        if self.is_main:
            self._log(msg)

    def loss_units(self, z: torch.Tensor) -> torch.Tensor:
        """A raw latent in the units the latent losses compare: raw, or the network's (``LUANet.normalise``)."""
        return z if self.cfg.loss.latent_space == "raw" else self.net.normalise(z)

    @property
    def store_pixels(self) -> bool:
        sp = self.cfg.data.store_pixels
        return bool(sp) if sp is not None else any(s.needs_pixels for s in self.cfg.stages)

    # ------------------------------------------------------------------ data
    def cache_key(self, images: list[Path], root: Path) -> dict[str, Any]:
        """What defines the cached samples.  The autoencoder's identity (file, size, mtime or sha256) is
        included unless it is the default tiny autoencoder.  The sample count is not: sample ``i`` never
        depends on it, so a larger run extends the cache and a smaller one reads a prefix."""
        d = self.cfg.data
        key = {"version": 2, "family": self.fam.name, "tae": self.vae.name, "crop": d.crop, "scales": list(self.scales),
               "seed": self.cfg.seed, "augment": d.augment, "shard_size": d.shard_size, "pixels": self.store_pixels,
               "root": str(root), "images": [str(p.relative_to(root)) for p in images]}
        ident = self.vae.identity()
        if ident is not None:
            key["vae"] = ident
        return key

    def prepare_data(self) -> None:
        """Build (this rank's share of) the latent cache, wait for the others, load it."""
        d = self.cfg.data
        images = list_images(expand_path(d.train_dir), d.max_images)
        root = expand_path(d.train_dir)
        maker = PairMaker(images, self.vae, d.crop, self.scales, self.cfg.seed, d.augment, self.store_pixels)
        cache_data = None
        if d.cache:
            key = self.cache_key(images, root)
            cache = LatentCache(expand_path(d.cache_dir), key, d.num_samples, d.shard_size)
            missing = cache.missing_shards()
            mine = [k for k in missing if k % self.dist.world_size == self.dist.rank]
            if missing:
                self.log(f"latent cache: encoding {len(missing)} shard(s) of {d.shard_size} samples into {cache.dir}")
            t0 = time.perf_counter()
            cache.build(maker, mine, batch=d.encode_batch, show_progress=self.show_progress)
            if mine:
                self.throughput["cache_build"] = {"samples": float(sum(
                    min(d.shard_size, d.num_samples - k * d.shard_size) for k in mine)), "seconds": time.perf_counter() - t0}
            ddp.barrier(self.dist)
            cache_data = cache.load()
            self.cache_dir = cache.dir
            if any(st.needs_teacher for st in self.cfg.stages):
                if self.is_main:
                    t0 = time.perf_counter()
                    cached_teacher_latents(self.vae, cache.dir, cache_data["lr"], self.scales)
                    self.log(f"teacher latents ready ({time.perf_counter() - t0:.1f} s)")
                ddp.barrier(self.dist)
                cache_data.update(cached_teacher_latents(self.vae, cache.dir, cache_data["lr"], self.scales))
        self.num_images = len(images)
        self.source = SampleSource(maker, cache_data)
        self.prepare_validation()

    def prepare_validation(self) -> None:
        """Validation crops and baselines (rank 0 only)."""
        d = self.cfg.data
        if self.is_main and d.val_images > 0 and self.validator is None:
            vals = pick_val_images(expand_path(d.val_dir), d.val_images)
            self.validator = Validator(vals, self.vae, self.scales, d.val_crop, self.loss_units, self.device)

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.out / "state" / "latest.pt"

    def state_dict(self, opt=None, sched=None) -> dict[str, Any]:
        return {"version": STATE_VERSION, "fingerprint": self.cfg.fingerprint(), "stage_idx": self.stage_idx,
                "stage_step": self.stage_step, "global_step": self.global_step, "net": self.net.state_dict(),
                "ema": self.ema.state_dict(), "opt": opt.state_dict() if opt is not None else None,
                "sched": sched.state_dict() if sched is not None else None, "throughput": self.throughput,
                "val_history": self.val_history}

    def save_state(self, opt=None, sched=None, extra_name: Optional[str] = None) -> None:
        if not self.is_main:
            return
        st = self.state_dict(opt, sched)
        _save_atomic(st, self.state_path)
        if extra_name:
            _save_atomic(st, self.out / "state" / extra_name)

    def load_state(self, path: Optional[Path] = None) -> bool:
        path = path or self.state_path
        if not path.is_file():
            self.log(f"no training state at {path}; starting from scratch")
            return False
        st = torch.load(path, map_location="cpu", weights_only=True)
        if st.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: unsupported training-state version {st.get('version')}")
        if st.get("fingerprint") != self.cfg.fingerprint():
            self.log("warning: the config differs from the one the checkpoint was written with")
        self.net.load_state_dict(st["net"])
        self.ema.load_state_dict(st["ema"])
        self.stage_idx, self.stage_step, self.global_step = st["stage_idx"], st["stage_step"], st["global_step"]
        self.pending_opt = {"opt": st["opt"], "sched": st["sched"]} if st["opt"] is not None else None
        self.throughput = dict(st.get("throughput") or {})
        self.val_history = list(st.get("val_history") or [])
        self.log(f"resumed at global step {self.global_step} (stage {self.stage_idx}, step {self.stage_step})")
        return True

    # ------------------------------------------------------------------ steps
    def validate(self, tag: str) -> Optional[dict[str, Any]]:
        if self.validator is None:
            return None
        t0 = time.perf_counter()
        res = self.validator.run(self.ema.model)
        rec = {"kind": "val", "step": self.global_step, "tag": tag, **{k: round(v, 5) for k, v in res.items()},
               "seconds": round(time.perf_counter() - t0, 2)}
        self.metrics.write(rec)
        self.val_history.append(rec)
        figs = ", ".join(f"x{s}: {res[f'x{s}/psnr']:.2f} dB (latent bicubic {res[f'x{s}/psnr_latent_bicubic']:.2f}, "
                         f"pixel bicubic {res[f'x{s}/psnr_pixel_bicubic']:.2f})" for s in self.scales)
        self.log(f"[val {tag} @ {self.global_step}] {figs}")
        return rec

    def lpips_network(self) -> nn.Module:
        """The frozen AlexNet LPIPS for the ``lpips`` loss term (weights from ``lua_core.metrics.fetch``), built once."""
        if getattr(self, "_lpips", None) is None:
            from ..metrics.perceptual import LPIPS, MetricUnavailable

            try:
                self._lpips = LPIPS("alex").to(self.device)
            except MetricUnavailable as exc:
                raise ValueError(f"the lpips loss term needs the LPIPS weights: {exc}") from exc
        return self._lpips

    def train_step(self, si: int, opt, sched) -> tuple[float, dict[str, float], tuple[int, ...]]:
        st = self.cfg.stages[si]
        cfg = self.cfg
        idx = batch_indices(cfg.seed, si, self.stage_step, st.batch_size, cfg.data.num_samples)
        idx = rank_slice(idx, self.dist.rank, self.dist.world_size)
        batch = self.source.batch(idx)
        crop = st.crop or cfg.data.crop
        batch = subcrop(batch, crop, cfg.data.crop, self.scales, sample_generator(cfg.seed, 5, si, self.stage_step))
        heads = choose_heads(cfg.seed, si, self.stage_step, st, self.scales)
        z = batch["lr"].to(self.device)
        if st.needs_teacher and f"b{heads[0]}" not in batch:  # no cache: teacher latents on the fly
            batch.update(teacher_latents(self.vae, z, heads))
        with self.autocast():
            preds = self.model(z, heads)
        total = torch.zeros((), device=self.device)
        terms: dict[str, float] = {}
        m = max(self.scales)
        for s in heads:
            pred = preds[s].float()
            tgt = batch[f"t{s}"].to(self.device)
            img = hr = None
            if st.needs_pixels:
                with self.autocast():
                    img = self.vae.decode_raw(pred)  # differentiable through the frozen decoder
                img = img.float()
                hr = bicubic_down(batch["pix"].to(self.device).float() / 255, m // s)
            outputs = HeadOutputs(
                pred_lat=self.loss_units(pred), target_lat=self.loss_units(tgt), pred_img=img, target_img=hr,
                teacher_lat=self.loss_units(batch[f"b{s}"].to(self.device)) if st.needs_teacher else None,
                lpips_fn=self.lpips_network() if st.weights.get("lpips") else None)
            loss_s, values = weighted_loss(st.weights, outputs, cfg.loss.term_options(s))
            total = total + loss_s / len(heads)
            for k, v in values.items():
                terms[f"term/x{s}/{k}"] = float(v.detach())
        opt.zero_grad(set_to_none=True)
        total.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.optim.grad_clip) if cfg.optim.grad_clip > 0 else None
        opt.step()
        sched.step()
        self.ema.update(self.net)
        if gnorm is not None:
            terms["grad_norm"] = float(gnorm)
        return float(total.detach()), terms, heads

    # ------------------------------------------------------------------ main loop
    def fit(self, resume: bool = False, max_steps: Optional[int] = None) -> dict[str, Any]:
        """Run (or continue) the curriculum; returns a summary (losses of this invocation, validation, export path)."""
        resumed = self.load_state() if resume else False
        self.open_run_folder(resumed)
        self.prepare_data()
        if not resumed and self.global_step == 0:
            self.validate("init")
        losses: list[tuple[int, float]] = []
        stopped = False
        while self.stage_idx < len(self.cfg.stages) and not stopped:
            stopped = self.run_stage(self.stage_idx, losses, max_steps)
        summary: dict[str, Any] = {"losses": losses, "global_step": self.global_step, "finished": not stopped,
                                   "throughput": self.throughput_summary(), "val": self.val_history}
        if not stopped and self.is_main:
            summary["export"] = str(self.export())
        plots = self.plot() if self.is_main else None
        if plots is not None:
            summary["plots"] = plots
        ddp.barrier(self.dist)
        return summary

    def open_run_folder(self, resumed: bool) -> None:
        """Write the config; keep the log up to the resumed step, or start it afresh."""
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1, default=str))
        if resumed:
            self.metrics.truncate_after(self.global_step)
        elif self.metrics.path.exists():
            self.metrics.path.unlink()

    def stage_optimizer(self, st: StageConfig) -> tuple[Any, Any]:
        """A stage's optimizer and schedule, with the resumed state when there is one."""
        opt, sched = make_optimizer(self.net.parameters(), st)
        if self.pending_opt is not None:
            opt.load_state_dict(self.pending_opt["opt"])
            sched.load_state_dict(self.pending_opt["sched"])
            self.pending_opt = None
        return opt, sched

    def run_stage(self, si: int, losses: list[tuple[int, float]], max_steps: Optional[int]) -> bool:
        """Train stage ``si`` from ``stage_step`` to its end (then validate and save) or until ``max_steps``
        global steps (then save to resume); appends each step's loss to ``losses``; returns whether it stopped."""
        cfg, st = self.cfg, self.cfg.stages[si]
        opt, sched = self.stage_optimizer(st)
        if self.stage_step == 0:
            self.log(f"stage {si + 1}/{len(cfg.stages)} '{st.name}': {st.steps} steps, batch {st.batch_size}, "
                     f"crop {st.crop or cfg.data.crop}, weights {st.weights}")
        bar = progress_bar(st.steps, f"stage {st.name}", initial=self.stage_step) if self.show_progress and st.steps else None
        tp = self.throughput.setdefault(st.name, {"samples": 0.0, "seconds": 0.0})
        interval = _Interval()
        stopped = False
        while self.stage_step < st.steps:
            if max_steps is not None and self.global_step >= max_steps:
                stopped = True
                break
            loss, terms, heads = self.counted_step(si, opt, sched, tp)
            losses.append((self.global_step, loss))
            interval.add(loss, st.batch_size)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {self.global_step} (stage {st.name})")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            if self.stage_step % max(1, cfg.checkpoint.log_every) == 0 or self.stage_step == st.steps:
                self.log_train(si, loss, terms, heads, opt, interval)
            self.mid_stage_checkpoints(st, opt, sched)
        if bar is not None:
            bar.close()
        if stopped:
            self.save_state(opt, sched)
            self.log(f"stopped at global step {self.global_step} (--max-steps); continue with --resume")
            return True
        # stage finished: the state points at the start of the next stage (a fresh optimizer)
        self.stage_idx, self.stage_step = si + 1, 0
        self.validate(f"end:{st.name}")
        self.save_state(None, None, extra_name=f"stage{si + 1}_{st.name}.pt")
        return False

    def counted_step(self, si: int, opt, sched, tp: dict[str, float]) -> tuple[float, dict[str, float], tuple[int, ...]]:
        """One training step, counted: the step counters and the stage's throughput ``tp`` (samples, seconds)."""
        st = self.cfg.stages[si]
        t0 = time.perf_counter()
        out = self.train_step(si, opt, sched)
        tp["samples"] += st.batch_size
        tp["seconds"] += time.perf_counter() - t0
        self.stage_step += 1
        self.global_step += 1
        return out

    def log_train(self, si: int, loss: float, terms: dict[str, float], heads: tuple[int, ...], opt,
                  interval: _Interval) -> None:
        """Write a train record: the interval's mean loss (over ranks), the last step's terms, the throughput."""
        st = self.cfg.stages[si]
        now = time.perf_counter()
        rec = {"kind": "train", "step": self.global_step, "stage": si, "stage_name": st.name,
               "stage_step": self.stage_step, "loss": ddp.mean_scalar(interval.mean_loss(), self.dist),
               "last_loss": loss, "lr": opt.param_groups[0]["lr"], "heads": list(heads),
               "samples_per_s": interval.samples_per_s(now), **terms}
        self.metrics.write(rec)
        interval.reset(now)

    def mid_stage_checkpoints(self, st: StageConfig, opt, sched) -> None:
        """Validate and save the training state on their periods (a stage's end does both anyway)."""
        ck = self.cfg.checkpoint
        if ck.val_every and self.global_step % ck.val_every == 0 and self.stage_step < st.steps:
            self.validate(f"{st.name}@{self.stage_step}")
        if ck.every and self.global_step % ck.every == 0 and self.stage_step < st.steps:
            self.save_state(opt, sched)

    def plot(self) -> Optional[list[str]]:
        """The loss plots of the run; ``None`` when plotting failed (a plot must never fail a run: it is logged)."""
        try:
            plots = [str(p) for p in plot_losses(self.metrics.records(), self.out / "losses")]
        except Exception as exc:
            self.log(f"loss plot skipped: {exc}")
            return None
        if not any(p.endswith(".png") for p in plots):
            self.log("matplotlib not installed: wrote the SVG loss plot only")
        return plots

    def throughput_summary(self) -> dict[str, float]:
        return {k: round(v["samples"] / v["seconds"], 3) for k, v in self.throughput.items() if v.get("seconds")}

    def export(self, path: Optional[Path] = None) -> Path:
        """Save the EMA network as the pack's ``.safetensors`` with training metadata."""
        cfg = self.cfg
        d = cfg.data
        last_val = next((v for v in reversed(self.val_history)), None)
        done = [s for i, s in enumerate(cfg.stages) if i < self.stage_idx]
        training = {
            "config": cfg.name, "seed": cfg.seed, "tae": self.vae.name,
            "vae": {k: v for k, v in self.vae.describe().items() if k != "path"},  # no local paths in the file
            "world_size": self.dist.world_size,
            "global_steps": self.global_step,
            "data": {"train_dir": str(d.train_dir), "num_images": getattr(self, "num_images", None),
                     "num_samples": d.num_samples, "crop": d.crop, "augment": d.augment},
            "steps_per_stage": {s.name: s.steps for s in done},
            "stages": [{"name": s.name, "steps": s.steps, "batch_size": s.batch_size, "crop": s.crop or d.crop,
                        "lr": s.lr, "betas": list(s.betas), "weights": s.weights} for s in done],
            "loss": {"latent_space": cfg.loss.latent_space, "fft_norm": cfg.loss.fft_norm},
            "ema": {"decay": cfg.optim.ema_decay, "warmup": cfg.optim.ema_warmup},
            "validation": {k: v for k, v in (last_val or {}).items() if k not in ("kind",)},
            "throughput_samples_per_s": self.throughput_summary(),
        }
        if self.transfer:
            training["init_from"] = {k: self.transfer[k] for k in ("from", "family", "replaced")}
        name = cfg.checkpoint.export or f"{cfg.name}.safetensors"
        path = Path(path) if path else self.out / name
        out = save_checkpoint(self.ema.model, path, self.fam.name, training=training,
                              dtype=dtype_from_name(cfg.checkpoint.export_dtype))
        self.log(f"exported EMA weights to {out}")
        return out

    def close(self) -> None:
        ddp.cleanup()
