#!/usr/bin/env python
"""Bundle an adapter from ``python -m lua_core.train.finetune``: weights/, model card, manifest entry.

    python scripts/release_finetuned.py --family sdxl --checkpoint .cache/ft/sdxl/best.safetensors \
        --eval-holdout docs/eval/sdxl/holdout/results.json --eval-val docs/eval/sdxl/val_native/results.json \
        --hardware "2-core AMD EPYC CPU, 1 thread"

Both evaluations must be of this file (sha256) and run the paths lua, pixel_bicubic, pixel_lanczos,
latent_bicubic and vae_ceiling.  The status is measured: ``release`` when on both image sets, at x2 and
x4, LUA's LPIPS is below pixel bicubic's and pixel Lanczos's and its PSNR within 0.5 dB of pixel
bicubic's; else ``preview``.  Nothing is written when a check fails.

Most of ``../shared/data/val`` (BSDS500, 481 x 321) is smaller than a 512 px crop.  Judge it with an
``eval --native`` report (no enlargement): an enlarged crop's ground truth is itself a bicubic
interpolation, which favours pixel bicubic by construction.  ``--eval-val-enlarged`` adds the enlarged
report to the card as a second table (shown with its misses, not used for the status).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lua_core.checkpoints.manifest import ManifestEntry  # noqa: E402
from lua_core.eval.report import crop_description  # noqa: E402
from lua_core.families import get_family  # noqa: E402
from scripts.release_adapter import family_note, open_adapter, with_entry, write_manifest  # noqa: E402

PATHS = ("lua", "pixel_bicubic", "pixel_lanczos", "latent_bicubic", "vae_ceiling")
METRICS = ("psnr", "ssim", "lpips", "dists")
PSNR_ALLOWANCE_DB = 0.5
SETS = {"holdout": "held-out clean photographs of `../shared/data/train` (SUN, ImageNet)",
        "val": "`../shared/data/val` (BSDS500, Urban100: dense texture)",
        "val_enlarged": "`../shared/data/val` (BSDS500, Urban100), images below the crop enlarged bicubic first "
                        "(the earlier protocol; not used for the status)"}


def figures(result: dict[str, Any]) -> dict[str, dict[str, Optional[float]]]:
    """Per scale: ``<path>_<metric>`` for the judged paths, plus the fraction of the ceiling gap closed."""
    out: dict[str, dict[str, Optional[float]]] = {}
    for key, rows in result["results"].items():
        row: dict[str, Optional[float]] = {}
        for path in PATHS:
            for metric in METRICS:
                v = rows.get(path, {}).get(metric)
                row[f"{path}_{metric}"] = round(v, 4) if isinstance(v, (int, float)) else None
        for metric in ("psnr", "lpips"):
            lua, bic, top = (row[f"{p}_{metric}"] for p in ("lua", "pixel_bicubic", "vae_ceiling"))
            if None not in (lua, bic, top) and top != bic:
                row[f"gap_closed_{metric}"] = round((lua - bic) / (top - bic), 3)  # type: ignore[operator]
        out[key] = row
    return out


def bar_misses(figs: dict[str, dict[str, Optional[float]]]) -> list[str]:
    """What keeps these figures from the ship bar (empty: it is met)."""
    misses = []
    for key, r in figs.items():
        if r["lua_lpips"] is None or r["pixel_bicubic_lpips"] is None or r["pixel_lanczos_lpips"] is None:
            misses.append(f"{key}: no LPIPS")
            continue
        if r["lua_lpips"] >= min(r["pixel_bicubic_lpips"], r["pixel_lanczos_lpips"]):
            misses.append(f"{key}: LPIPS {r['lua_lpips']:.3f} vs pixel bicubic {r['pixel_bicubic_lpips']:.3f} / "
                          f"Lanczos {r['pixel_lanczos_lpips']:.3f}")
        if r["lua_psnr"] < r["pixel_bicubic_psnr"] - PSNR_ALLOWANCE_DB:
            misses.append(f"{key}: PSNR {r['lua_psnr']:.2f} vs pixel bicubic {r['pixel_bicubic_psnr']:.2f} dB")
    return misses


def encoder_trained(cfg: dict[str, Any]) -> bool:
    """Whether the run trained the teacher's embedded encoder (``encoder_lr`` > 0)."""
    return (cfg.get("encoder_lr") or 0) > 0


def encoder_text(cfg: dict[str, Any]) -> str:
    """What the card says about the embedded tiny encoder: original, or trained with the adapter."""
    if not encoder_trained(cfg):
        return ""
    return (f" The embedded encoder was trained with the adapter (Adam lr {cfg['encoder_lr']:g}); the decoder is the "
            "original, so the adapter's output is still decoded by the family's own VAE.")


def origin_text(meta: dict[str, Any]) -> str:
    """Where the run started: a converted bicubic-skip adapter or an earlier teacher-skip one."""
    init = meta.get("init") or {}
    source = f"`{init['from']}`" if init.get("from") else "the previous adapter"
    if init.get("converted", True):
        return f"Started from the bicubic-skip adapter of the earlier CPU recipe ({source}), converted."
    return f"Started from the teacher-skip adapter {source} (the run history below says which)."


def _f(v: Optional[float], p: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{p}f}"


def eval_table(figs: dict[str, dict[str, Optional[float]]]) -> list[str]:
    lines = ["| scale | metric | LUA | pixel bicubic | pixel Lanczos | latent bicubic | ceiling | gap closed |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, r in figs.items():
        for metric, p in (("psnr", 2), ("lpips", 3), ("dists", 3), ("ssim", 3)):
            closed = r.get(f"gap_closed_{metric}")
            lines.append(f"| {key} | {metric.upper()} | {_f(r[f'lua_{metric}'], p)} | {_f(r[f'pixel_bicubic_{metric}'], p)} "
                         f"| {_f(r[f'pixel_lanczos_{metric}'], p)} | {_f(r[f'latent_bicubic_{metric}'], p)} "
                         f"| {_f(r[f'vae_ceiling_{metric}'], p)} | {_f(closed, 2) if closed is not None else ''} |")
    return lines


def model_card(entry: ManifestEntry, meta: dict[str, Any], results: dict[str, dict], figs: dict[str, dict],
               misses: list[str], hardware: str, commands: dict[str, str], params: int) -> str:
    fam = get_family(entry.family)
    cfg = meta.get("config", {})
    verdict = ("**release**: meets the ship bar on both image sets at x2 and x4 (LPIPS below decode + pixel bicubic "
               "and Lanczos, PSNR within 0.5 dB of pixel bicubic)" if entry.status == "release" else
               "**preview**: below the ship bar, so for this family decode + Upscale Image (bicubic/Lanczos) is "
               "currently as good or better where it misses: " + "; ".join(misses))
    enlarged_misses = bar_misses(figs["val_enlarged"]) if "val_enlarged" in figs else []
    if enlarged_misses:
        verdict += " (val judged at native resolution; with enlarged crops it misses: " + "; ".join(enlarged_misses) + ")"
    lines = [f"# {entry.name}: LUA light adapter for {fam.label} latents", "",
             f"- Status: {verdict}.",
             f"- Network: light trunk and x2/x4 heads with the teacher skip (`skip=\"tae\"`): the output is "
             f"`encode(bicubic_up(decode(z)))` of the family's tiny autoencoder `{fam.tae_name}` (held in the file, "
             f"MIT-licensed weights by Ollin Boer Bohan) plus a learned gain ({meta.get('gain', 'n/a')}) times the "
             f"network's residual.{encoder_text(cfg)} {params / 1e6:.2f} M parameters in all, fp16 safetensors, "
             f"{entry.size:,} bytes, "
             f"sha256 `{entry.sha256}`.",
             f"- Latents: {fam.label} ({fam.model_channels} channels), trained and evaluated with `{fam.tae_name}` "
             "(the stand-in decoder in `../shared/vae`).",
             "- License: Apache-2.0 (our weights and code); the embedded tiny autoencoder is MIT"
             + (" (its encoder fine-tuned here)." if encoder_trained(cfg) else "."), "",
             *family_note(fam.name),
             "## Training", "",
             f"- Recipe: `python -m lua_core.train.finetune --family {fam.name} --init <previous adapter> "
             f"--out .cache/ft/{fam.name} --seconds <budget> --threads 1` (resume: the same command; state in "
             f"`<out>/state.pt`). {origin_text(meta)}"
             + (f" The teacher's encoder trains too: `--set encoder_lr={cfg['encoder_lr']:g}`."
                if encoder_trained(cfg) else ""),
             f"- Loss: {cfg.get('l1')} x L1 + {cfg.get('fft')} x FFT-L1 + LPIPS(AlexNet) (weight {cfg.get('lpips')}"
             + (f", x2 head {cfg['lpips_x2']}" if cfg.get("lpips_x2") is not None else "")
             + "; the run history below says when weights changed) on a decoded latent window "
             f"({cfg.get('window')} latent px, {cfg.get('margin')} px margin left out) against the true pixels; "
             f"batch {cfg.get('batch')}, Adam lr {cfg.get('lr')}, EMA {cfg.get('ema_decay')}, heads alternate; "
             f"LR latents {cfg.get('lr_sizes_x2')} (x2) and {cfg.get('lr_sizes_x4')} (x4) px; fresh crops of every "
             "training photograph but the held-out ones, random 0.5-1x zoom, flips and rotations.",
             f"- Steps: {meta.get('steps')}; compute time {round((meta.get('seconds') or 0) / 60)} min of step time "
             f"(validation excluded). Hardware: {hardware}.", "",
             f"### Learning curve (in-run validation: {validation_text(cfg)}; PSNR gain over pixel "
             "bicubic, LPIPS and DISTS as ratios to it)", "",
             "| step | minutes | score | " + " | ".join(f"{k} dPSNR / LPIPS / DISTS" for k in
                                                       (meta.get("curve_sets") or [])) + " |",
             "|---:|---:|---:|" + "---|" * len(meta.get("curve_sets") or []) ]
    for h in meta.get("learning_curve_full", []):
        cells = [f"{r['d_psnr']:+.2f} / {r['lpips_ratio']:.2f} / {r['dists_ratio']:.2f}" if "lpips_ratio" in r
                 else f"{r['d_psnr']:+.2f}" for r in h["sets"].values()]
        lines.append(f"| {h['step']} | {round(h['seconds'] / 60)} | {h['score']:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "## Evaluation", "",
              "HR → bicubic (anti-aliased) LR → encode → upscale → decode, against the HR image; centre crops, "
              f"decoded with `{fam.tae_name}`. Gap closed: (LUA − pixel bicubic) / (ceiling − pixel bicubic).", ""]
    for name, result in results.items():
        imgs = result["images"]
        lines += [f"### {imgs['count']} {SETS[name]}, centre crops of {crop_description(imgs)}", "",
                  f"    {commands[name]}", ""]
        lines += eval_table(figs[name]) + [""]
        if name == "val_enlarged":
            lines += ["Misses on this protocol: " + ("; ".join(enlarged_misses) or "none") + ".", ""]
    return "\n".join(lines)


def validation_text(cfg: dict[str, Any]) -> str:
    """The in-run validation crops of a fine-tune config."""
    n = cfg.get("val_images", 4)
    return (f"{n} held-out + {n} val crops of {cfg.get('val_crop', 384)} px"
            + (" at native resolution" if cfg.get("val_native") else ", small val images enlarged"))


def eval_command(name: str, key: str, result: dict[str, Any]) -> str:
    """The command that reproduces one report."""
    imgs = result["images"]
    images = "holdout" if key == "holdout" else "${shared}/data/val"
    return (f"python -m lua_core.eval --checkpoint {name} --images {images} --images-count {imgs['count']} "
            f"--crop {imgs['crop']}{' --native' if imgs.get('native') else ''} --paths {','.join(PATHS)} --threads 1")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--eval-holdout", required=True, type=Path)
    p.add_argument("--eval-val", required=True, type=Path, help="the val report judged (use eval --native)")
    p.add_argument("--eval-val-enlarged", type=Path, help="optional: the val report with enlarged crops, shown only")
    p.add_argument("--hardware", required=True)
    p.add_argument("--note", default="", help="markdown appended to the card (e.g. what the file replaces)")
    a = p.parse_args(argv)

    fam, name, model, digest = open_adapter(a.family, a.checkpoint)
    results, figs, commands = {}, {}, {}
    reports = [("holdout", a.eval_holdout), ("val", a.eval_val)]
    reports += [("val_enlarged", a.eval_val_enlarged)] if a.eval_val_enlarged else []
    for key, path in reports:
        result = json.loads(path.read_text())
        if result["checkpoint"].get("sha256") != digest:
            raise SystemExit(f"{path} evaluated another file (sha256 {result['checkpoint'].get('sha256')}, this is {digest})")
        missing = [q for q in PATHS if q not in result["paths"]]
        if missing:
            raise SystemExit(f"{path} lacks the paths {missing}")
        results[key], figs[key] = result, figures(result)
        commands[key] = eval_command(name, key, result)
    misses = [f"{k} {m}" for k in ("holdout", "val") for m in bar_misses(figs[k])]
    status = "release" if not misses else "preview"
    meta = dict(model.training_summary or {})
    meta["gain"] = round(float(model.net.skip.gain), 4) if getattr(model.net, "skip", None) is not None else None
    run_metrics = a.checkpoint.parent / "metrics.jsonl"
    if run_metrics.is_file():
        full = [json.loads(line)["val"] for line in run_metrics.read_text().splitlines() if '"val"' in line]
        meta["learning_curve_full"] = [v for v in full if v["step"] <= meta.get("steps", 10 ** 9)]
        meta["curve_sets"] = list(full[0]["sets"]) if full else []
    dest = REPO / "weights" / name
    tmp = dest.with_suffix(".part")
    shutil.copyfile(a.checkpoint, tmp)
    card_rel = f"weights/{name[:-len('.safetensors')]}.md"
    evaluation = {"command": commands["holdout"], **figs["holdout"],
                  **{k: {"command": commands[k], **figs[k]} for k in figs if k != "holdout"}}
    training = {"recipe": ["python -m lua_core.train.finetune"], "steps": meta.get("steps"),
                "step_minutes": round((meta.get("seconds") or 0) / 60, 1), "hardware": a.hardware,
                "autoencoder": fam.tae_name, "config": meta.get("config"), "evaluation": evaluation,
                "ship_bar_misses": misses}
    r2, r4 = figs["holdout"].get("x2", {}), figs["holdout"].get("x4", {})
    desc = (f"{status.upper()} {fam.label} light adapter with the teacher skip (x2/x4). Held-out photographs, 512 px: "
            f"x2 {r2.get('lua_psnr') or 0:.2f} dB / LPIPS {r2.get('lua_lpips') or 0:.3f} vs pixel bicubic "
            f"{r2.get('pixel_bicubic_psnr') or 0:.2f} / {r2.get('pixel_bicubic_lpips') or 0:.3f}; x4 "
            f"{r4.get('lua_psnr') or 0:.2f} / {r4.get('lua_lpips') or 0:.3f} vs {r4.get('pixel_bicubic_psnr') or 0:.2f} / "
            f"{r4.get('pixel_bicubic_lpips') or 0:.3f}. See {card_rel}.")
    entry = ManifestEntry(name=name, filename=name, family=fam.name, scales=tuple(sorted(model.scales)), config="light",
                          size=tmp.stat().st_size, sha256=digest, url=None, bundled=f"weights/{name}",
                          license="Apache-2.0", source=f"ComfyUI-LUA: python -m lua_core.train.finetune, {a.hardware}",
                          description=desc, status=status, training=training, model_card=card_rel)
    card = model_card(entry, meta, results, figs, misses, a.hardware, commands, model.net.num_parameters())
    if a.note:
        card += "\n" + a.note.strip() + "\n"
    manifest = with_entry(entry)  # validated before anything is written
    os.replace(tmp, dest)
    (REPO / card_rel).write_text(card)
    write_manifest(manifest)
    print(f"{name}: {status}, {entry.size:,} bytes, sha256 {digest[:12]}…, card {card_rel}")
    for m in misses:
        print(f"  misses: {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
