"""Bundle an adapter from ``python -m lua_core.train.finetune``: weights/, model card, manifest entry.

    python -m scripts.release_finetuned --family sdxl --checkpoint .cache/ft/sdxl/best.safetensors \
        --eval-holdout docs/eval/sdxl/holdout/results.json --eval-val docs/eval/sdxl/val_native/results.json \
        --hardware "2-core AMD EPYC CPU, 1 thread"

Both evaluations must be of this file (sha256) and run the paths lua, pixel_route and vae_ceiling (and
lua_vae for an adapter trained on the VAE teacher).  The status is measured in the user's world, against
their free route (VAE Decode -> Upscale Image, ``pixel_route``): ``release`` when on both image sets, at x2
and x4, the judged path (``lua_vae`` for a VAE-teacher adapter, else ``lua``) has LPIPS at most the route's
and PSNR within 0.5 dB of it; else ``preview``.  Nothing is written when a check fails.

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
from pathlib import Path
from typing import Any, Optional

from lua_core.checkpoints.manifest import ManifestEntry
from lua_core.eval.report import crop_description
from lua_core.families import LatentFamily, get_family
from lua_core.locations import REPO_ROOT as REPO
from lua_core.train.finetune import recipe_formula, resumed_config
from scripts.release_adapter import family_note, open_adapter, with_entry, write_manifest

ROUTE = "pixel_route"  # the user's free route: full-VAE decode + Upscale Image (bicubic)
REQUIRED = ("lua", ROUTE)
SHOWN = ("lua_vae", "lua", ROUTE, "pixel_route_fsrcnn", "pixel_route_espcn", "pixel_bicubic", "latent_nearest",
         "latent_bicubic", "vae_ceiling")
METRICS = ("psnr", "ssim", "lpips", "dists", "latent_nmse")
PSNR_ALLOWANCE_DB = 0.5
AIM_LPIPS_RATIO = 0.85
SETS = {"holdout": "held-out clean photographs of `../shared/data/train` (SUN, ImageNet)",
        "val": "`../shared/data/val` (BSDS500, Urban100: dense texture)",
        "val_enlarged": "`../shared/data/val` (BSDS500, Urban100), images below the crop enlarged bicubic first "
                        "(the earlier protocol; not used for the status)"}


def judged_path(teacher: str) -> str:
    """The path an adapter is judged on: with the VAE input when it was trained for it."""
    return "lua_vae" if teacher == "vae" else "lua"


def figures(result: dict[str, Any]) -> dict[str, dict[str, Optional[float]]]:
    """Per scale: ``<path>_<metric>`` for the shown paths, plus the fraction of the gap between latent bicubic and
    the user's route that each LUA path closes."""
    out: dict[str, dict[str, Optional[float]]] = {}
    for key, rows in result["results"].items():
        row: dict[str, Optional[float]] = {}
        for path in SHOWN:
            for metric in METRICS:
                v = rows.get(path, {}).get(metric)
                row[f"{path}_{metric}"] = round(v, 4) if isinstance(v, (int, float)) else None
        for path in ("lua", "lua_vae"):
            for metric in ("psnr", "lpips"):
                lua, low, top = (row[f"{p}_{metric}"] for p in (path, "latent_bicubic", ROUTE))
                if None not in (lua, low, top) and top != low:
                    row[f"{path}_gap_closed_{metric}"] = round((lua - low) / (top - low), 3)  # type: ignore[operator]
        out[key] = row
    return out


def bar_misses(figs: dict[str, dict[str, Optional[float]]], path: str = "lua") -> list[str]:
    """What keeps ``path`` from the ship bar (empty: it is met): PSNR at least the user's route's less 0.5 dB
    and LPIPS at most the route's, at every scale."""
    misses = []
    for key, r in figs.items():
        lua_lpips, route_lpips = r.get(f"{path}_lpips"), r.get(f"{ROUTE}_lpips")
        lua_psnr, route_psnr = r.get(f"{path}_psnr"), r.get(f"{ROUTE}_psnr")
        if None in (lua_lpips, route_lpips, lua_psnr, route_psnr):
            misses.append(f"{key}: not measured")
            continue
        if lua_lpips > route_lpips:  # type: ignore[operator]
            misses.append(f"{key}: LPIPS {lua_lpips:.3f} vs the user's route {route_lpips:.3f}")
        if lua_psnr < route_psnr - PSNR_ALLOWANCE_DB:  # type: ignore[operator]
            misses.append(f"{key}: PSNR {lua_psnr:.2f} vs the user's route {route_psnr:.2f} dB")
    return misses


def aim_misses(figs: dict[str, dict[str, Optional[float]]], path: str) -> list[str]:
    """Where ``path`` falls short of the aim: LPIPS at most 0.85x the user's route's with PSNR at least its."""
    misses = []
    for key, r in figs.items():
        lua_lpips, route_lpips = r.get(f"{path}_lpips"), r.get(f"{ROUTE}_lpips")
        lua_psnr, route_psnr = r.get(f"{path}_psnr"), r.get(f"{ROUTE}_psnr")
        if None in (lua_lpips, route_lpips, lua_psnr, route_psnr):
            continue
        ratio = lua_lpips / route_lpips  # type: ignore[operator]
        if ratio > AIM_LPIPS_RATIO or lua_psnr < route_psnr:  # type: ignore[operator]
            misses.append(f"{key}: LPIPS {ratio:.2f}x, {lua_psnr - route_psnr:+.2f} dB")  # type: ignore[operator]
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
    shown = [p for p in SHOWN if any(r.get(f"{p}_psnr") is not None for r in figs.values())]
    lines = ["| scale | metric | " + " | ".join(PATH_LABELS[p] for p in shown) + " |",
             "|---|---|" + "---:|" * len(shown)]
    for key, r in figs.items():
        for metric, p in (("psnr", 2), ("lpips", 3), ("dists", 3), ("ssim", 3), ("latent_nmse", 3)):
            if all(r.get(f"{q}_{metric}") is None for q in shown):
                continue
            lines.append(f"| {key} | {METRIC_LABELS[metric]} | "
                         + " | ".join(_f(r.get(f"{q}_{metric}"), p) for q in shown) + " |")
    return lines


PATH_LABELS = {"lua_vae": "**LUA + VAE input**", "lua": "LUA, no VAE (tiny teacher)", ROUTE: "user's route (bicubic)",
               "pixel_route_fsrcnn": "user's route, FSRCNN", "pixel_route_espcn": "user's route, ESPCN",
               "pixel_bicubic": "bicubic of the tiny decode", "latent_nearest": "Upscale Latent (nearest)",
               "latent_bicubic": "latent bicubic", "vae_ceiling": "ceiling"}
METRIC_LABELS = {"psnr": "PSNR", "lpips": "LPIPS", "dists": "DISTS", "ssim": "SSIM", "latent_nmse": "latent NMSE"}


def verdict_text(entry: ManifestEntry, judged: str, misses: list[str], without_vae: list[str]) -> str:
    """The card's status line: the bar against the user's route, with and without the VAE input."""
    bar = "PSNR within 0.5 dB of the user's route and LPIPS at most its, on both image sets at x2 and x4"
    if judged == "lua_vae":
        head = (f"**{entry.status}** with the VAE input connected ({bar}"
                + (")" if not misses else "; misses: " + "; ".join(misses) + ")"))
        tail = ("**preview** without it: the tiny built-in teacher loses what the full VAE shows at base size, so "
                "VAE Decode -> Upscale Image gives a more faithful picture"
                + (" (" + "; ".join(without_vae) + ")" if without_vae else ""))
        return f"{head}; {tail}"
    return (f"**{entry.status}** ({bar}" + (")" if not misses else "; misses: " + "; ".join(misses) + ")"))


def model_card(entry: ManifestEntry, meta: dict[str, Any], judged: str, results: dict[str, dict],
               figs: dict[str, dict], misses: list[str], hardware: str, commands: dict[str, str], params: int) -> str:
    """The adapter's model card (markdown): status and use, training, learning curve, evaluation tables."""
    fam = get_family(entry.family)
    return "\n".join([*card_summary(entry, fam, meta, judged, figs, misses, params), *family_note(fam.name),
                      *card_training(fam, meta, judged, hardware), *card_curve(meta),
                      *card_evaluation(fam, results, figs, commands, judged)])


def card_summary(entry: ManifestEntry, fam: LatentFamily, meta: dict[str, Any], judged: str,
                 figs: dict[str, dict], misses: list[str], params: int) -> list[str]:
    """The card's title and first list: status against the bar and the aim, how the network is used, the file."""
    cfg = meta.get("config", {})
    without_vae = [f"{k} {m}" for k in ("holdout", "val") for m in bar_misses(figs[k], "lua")] if judged == "lua_vae" else []
    aims = [f"{k} {m}" for k in ("holdout", "val") for m in aim_misses(figs[k], judged)]
    teacher_line = (
        "- Use: connect the VAE you decode with to LUA Latent Upscale's `vae` input. The teacher is then "
        "`VAE.encode(bicubic(VAE.decode(z)))` (one decode at the input size, one encode at the output size) and the "
        f"network adds a learned gain ({meta.get('gain', 'n/a')}) times its residual. Without a VAE the file falls "
        f"back to the tiny autoencoder it holds (`{fam.tae_name}`, MIT-licensed weights by Ollin Boer Bohan)."
        if judged == "lua_vae" else
        f"- Network: the output is `encode(bicubic_up(decode(z)))` of the tiny autoencoder `{fam.tae_name}` held in "
        f"the file (MIT-licensed weights by Ollin Boer Bohan) plus a learned gain ({meta.get('gain', 'n/a')}) times "
        f"the network's residual.{encoder_text(cfg)}")
    return [f"# {entry.name}: LUA light adapter for {fam.label} latents", "",
            f"- Status: {verdict_text(entry, judged, misses, without_vae)}.",
            "- Aim (LPIPS at most 0.85x the user's route's with PSNR at least its): "
            + ("met everywhere." if not aims else "not yet: " + "; ".join(aims) + "."),
            teacher_line,
            f"- File: light trunk and x2/x4 heads, {params / 1e6:.2f} M parameters in all (the tiny autoencoder "
            f"included), fp16 safetensors, {entry.size:,} bytes, sha256 `{entry.sha256}`.",
            f"- Latents: {fam.label} ({fam.model_channels} channels); trained and evaluated with `{fam.tae_name}` "
            "(the stand-in in `../shared/vae`) as the decoder, and as the encoder of the VAE teacher's stand-in.",
            "- License: Apache-2.0 (our weights and code); the embedded tiny autoencoder is MIT.", ""]


def card_training(fam: LatentFamily, meta: dict[str, Any], judged: str, hardware: str) -> list[str]:
    """The card's training section: the command, the loss (from the loss registry), the data, steps and time."""
    cfg = meta.get("config", {})
    return ["## Training", "",
            f"- Recipe: `python -m lua_core.train.finetune --family {fam.name} --init <previous adapter> "
            f"--out .cache/ft/{fam.name} --seconds <budget>"
            + (" --set teacher='\"vae\"'" if judged == "lua_vae" else "")
            + "` (resume: the same command; state in `<out>/state.pt`; on a GPU: `scripts/train_device.sh`). "
            + origin_text(meta),
            f"- Loss: {recipe_formula(resumed_config(cfg, {}))} on a decoded latent window "
            f"({cfg.get('window')} latent px, {cfg.get('margin')} px margin left out) against the true pixels; "
            f"batch {cfg.get('batch')}, Adam lr {cfg.get('lr')}, EMA {cfg.get('ema_decay')}, heads alternate; "
            f"LR latents {cfg.get('lr_sizes_x2')} (x2) and {cfg.get('lr_sizes_x4')} (x4) px; fresh crops of the "
            "training photographs (never the held-out ones), random 0.5-1x zoom, flips and rotations."
            + (" The teacher in training is the VAE teacher's stand-in: the tiny encoder of the bicubic-upscaled "
               "true LR image." if judged == "lua_vae" else ""),
            f"- Steps: {meta.get('steps')}; compute time {round((meta.get('seconds') or 0) / 60, 1)} min of step time "
            f"(validation excluded). Hardware: {hardware}.", ""]


def card_curve(meta: dict[str, Any]) -> list[str]:
    """The card's learning-curve table (the in-run validations)."""
    sets = meta.get("curve_sets") or []
    lines = [f"### Learning curve (in-run validation: {validation_text(meta.get('config', {}))}; PSNR gain over the "
             "user's route and perceptual ratios to it)", "",
             "| step | minutes | score | " + " | ".join(f"{k} dPSNR / LPIPS (/ DISTS)" for k in sets) + " |",
             "|---:|---:|---:|" + "---|" * len(sets)]
    for h in meta.get("learning_curve_full", []):
        cells = [" / ".join([f"{r['d_psnr']:+.2f}"] + [f"{r[k]:.2f}" for k in ("lpips_ratio", "dists_ratio") if k in r])
                 for r in h["sets"].values()]
        lines.append(f"| {h['step']} | {h['seconds'] / 60:.1f} | {h['score']:.3f} | " + " | ".join(cells) + " |")
    return lines


def card_evaluation(fam: LatentFamily, results: dict[str, dict], figs: dict[str, dict], commands: dict[str, str],
                    judged: str) -> list[str]:
    """The card's evaluation section: the protocol, then per image set its command, environment and table."""
    lines = ["", "## Evaluation", "",
             "HR -> bicubic (anti-aliased) LR -> encode -> upscale -> decode, against the HR image; centre crops, "
             f"decoded with `{fam.tae_name}` at the target size. The user's route is VAE Decode -> Upscale Image "
             "with a near-lossless VAE (the true LR image, bicubic), passed once through the same tiny autoencoder "
             "at the target size so that only the upscale differs; LUA + VAE input gets the same stand-in. Gap "
             "closed: (LUA - latent bicubic) / (user's route - latent bicubic).", ""]
    for name, result in results.items():
        imgs = result["images"]
        env = result.get("environment", {})
        lines += [f"### {imgs['count']} {SETS[name]}, centre crops of {crop_description(imgs)}", "",
                  f"    {commands[name]}", "",
                  f"Measured on {env.get('device', '?')} (torch {env.get('torch', '?')}, {env.get('date', '?')})"
                  + ("; DISTS not measured there" if result["metrics"].get("dists") != "ok" else "")
                  + "".join(f"; {', '.join(m['paths'])} on {(m.get('environment') or {}).get('device', '?')} "
                            f"({(m.get('environment') or {}).get('date', '?')})" for m in result.get("merged_from", []))
                  + ".", ""]
        lines += eval_table(figs[name]) + [""]
        closed = [f"{k} PSNR {r.get(f'{judged}_gap_closed_psnr')}, LPIPS {r.get(f'{judged}_gap_closed_lpips')}"
                  for k, r in figs[name].items()]
        lines += ["Gap closed by " + PATH_LABELS[judged].strip("*") + ": " + "; ".join(closed) + ".", ""]
    return lines


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
            f"--crop {imgs['crop']}{' --native' if imgs.get('native') else ''} --paths {','.join(result['paths'])}"
            + (f" --device {result['environment']['device']}" if result.get("environment", {}).get("device", "cpu")
               != "cpu" else " --threads 1"))


def _crops(result: dict[str, Any]) -> list[int]:
    imgs = result["images"]
    return list(imgs.get("crops") or [imgs["crop"]] * imgs["count"])


def _stems(result: dict[str, Any]) -> list[str]:
    # a device kit carries each evaluation crop losslessly as <name>.webp
    return [str(Path(n).with_suffix("")) for n in result["images"]["names"]]


ADAPTER_PATHS = ("lua", "lua_vae")


def baseline_rows(result: dict[str, Any]) -> dict[str, Any]:
    """A report with its adapter's rows left out: what it measured without the adapter (the user's routes, latent
    upscalers, the ceiling) holds for any adapter evaluated on the same images."""
    out = dict(result)
    out["paths"] = [p for p in result["paths"] if p not in ADAPTER_PATHS]
    return out


def merged_reports(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The first report with the paths only the later ones have (each must be on the same images and crops; a
    device kit's lossless ``.webp`` copy of an image counts as that image)."""
    first = results[0]
    merged = json.loads(json.dumps(first))
    for other in results[1:]:
        if _stems(other) != _stems(first) or _crops(other) != _crops(first):
            raise ValueError("the reports were made on other images or crops and cannot be merged")
        if other["scales"] != first["scales"]:
            raise ValueError("the reports have other scales and cannot be merged")
        for p in other["paths"]:
            if p in merged["paths"]:
                continue
            merged["paths"].append(p)
            merged["labels"][p] = other["labels"][p]
            for key in merged["results"]:
                merged["results"][key][p] = other["results"][key][p]
        merged.setdefault("merged_from", []).append(
            {"paths": [p for p in other["paths"] if p not in first["paths"]],
             "environment": other.get("environment"), "metrics": other.get("metrics")})
    return merged


def _curve(path: Path) -> list[dict[str, Any]]:
    """The validation records of a fine-tune's metrics.jsonl."""
    return [json.loads(line)["val"] for line in path.read_text().splitlines() if '"val"' in line]


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--eval-holdout", required=True, type=Path, nargs="+",
                   help="report(s) of this file on the held-out photographs; a second report adds the paths the "
                        "first lacks (same images and crops)")
    p.add_argument("--eval-val", required=True, type=Path, nargs="+",
                   help="the val report(s) judged (use eval --native), as --eval-holdout")
    p.add_argument("--eval-val-enlarged", type=Path, help="optional: the val report with enlarged crops, shown only")
    p.add_argument("--hardware", required=True)
    p.add_argument("--prior-metrics", type=Path, help="metrics.jsonl of an earlier stint that this run continued "
                                                       "from its last validated step (its curve is shown first)")
    p.add_argument("--note", default="", help="markdown appended to the card (e.g. what the file replaces)")
    return p.parse_args(argv)


def load_report_set(paths: list[Path], digest: str, judged: str) -> dict[str, Any]:
    """One image set's evaluation: the reports of ``paths`` merged (the first must be of this file, sha256
    ``digest``; another file's report lends only its baseline rows), with the paths the bar needs."""
    loaded = []
    for i, path in enumerate(paths):
        report = json.loads(path.read_text())
        found = (report.get("checkpoint") or {}).get("sha256")
        if found != digest:
            if i == 0:
                raise SystemExit(f"{path} evaluated another file (sha256 {found}, this is {digest})")
            report = baseline_rows(report)
        loaded.append(report)
    try:
        result = merged_reports(loaded)
    except ValueError as exc:
        raise SystemExit(f"{', '.join(map(str, paths))}: {exc}") from None
    missing = [q for q in dict.fromkeys(REQUIRED + (judged,)) if q not in result["paths"]]
    if missing:
        raise SystemExit(f"{paths[0]} lacks the paths {missing}")
    return result


def set_misses(figs: dict[str, dict], path: str) -> list[str]:
    """The ship-bar misses of ``path`` on the judged sets (held-out and val), each prefixed by its set."""
    return [f"{k} {m}" for k in ("holdout", "val") for m in bar_misses(figs[k], path)]


def run_summary(model: Any, checkpoint: Path, prior_metrics: Optional[Path]) -> dict[str, Any]:
    """The checkpoint's training summary, its learned gain, and the full learning curve of its run folder
    (an earlier stint's first, its steps and time counted)."""
    meta = dict(model.training_summary or {})
    meta["gain"] = round(float(model.net.skip.gain), 4) if getattr(model.net, "skip", None) is not None else None
    run_metrics = checkpoint.parent / "metrics.jsonl"
    if not run_metrics.is_file():
        return meta
    full = [v for v in _curve(run_metrics) if v["step"] <= meta.get("steps", 10 ** 9)]
    if prior_metrics:
        prior = _curve(prior_metrics)
        step0, sec0 = prior[-1]["step"], prior[-1]["seconds"]
        full = prior + [{**v, "step": v["step"] + step0, "seconds": v["seconds"] + sec0} for v in full if v["step"]]
        meta["steps"] = (meta.get("steps") or 0) + step0
        meta["seconds"] = (meta.get("seconds") or 0) + sec0
    meta["learning_curve_full"] = full
    meta["curve_sets"] = list(full[0]["sets"]) if full else []
    return meta


def manifest_training(meta: dict[str, Any], fam: LatentFamily, model: Any, judged: str, hardware: str,
                      figs: dict[str, dict], commands: dict[str, str], misses: list[str]) -> dict[str, Any]:
    """The manifest entry's ``training`` record: recipe, steps, time, hardware, config, evaluation, bar misses."""
    evaluation = {"command": commands["holdout"], **figs["holdout"],
                  **{k: {"command": commands[k], **figs[k]} for k in figs if k != "holdout"}}
    training = {"recipe": ["python -m lua_core.train.finetune"], "steps": meta.get("steps"),
                "step_minutes": round((meta.get("seconds") or 0) / 60, 1), "hardware": hardware,
                "autoencoder": fam.tae_name, "config": meta.get("config"), "teacher": model.teacher,
                "evaluation": evaluation, "ship_bar_misses": misses}
    if judged == "lua_vae":
        without = set_misses(figs, "lua")
        training["without_vae"] = {"status": "preview" if without else "release", "ship_bar_misses": without}
    return training


def manifest_description(status: str, fam: LatentFamily, judged: str, figs: dict[str, dict], card_rel: str) -> str:
    """The manifest entry's one-paragraph description: status and the held-out figures against the user's route."""
    r2, r4 = figs["holdout"].get("x2", {}), figs["holdout"].get("x4", {})
    mode = " with the VAE input (without it: preview)" if judged == "lua_vae" else ""
    return (f"{status.upper()}{mode}: {fam.label} light adapter (x2/x4). Held-out photographs, 512 px, against the "
            f"user's route (VAE Decode + Upscale Image): x2 {r2.get(f'{judged}_psnr') or 0:.2f} dB / LPIPS "
            f"{r2.get(f'{judged}_lpips') or 0:.3f} vs {r2.get(f'{ROUTE}_psnr') or 0:.2f} / "
            f"{r2.get(f'{ROUTE}_lpips') or 0:.3f}; x4 {r4.get(f'{judged}_psnr') or 0:.2f} / "
            f"{r4.get(f'{judged}_lpips') or 0:.3f} vs {r4.get(f'{ROUTE}_psnr') or 0:.2f} / "
            f"{r4.get(f'{ROUTE}_lpips') or 0:.3f}. See {card_rel}.")


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    fam, name, model, digest = open_adapter(a.family, a.checkpoint)
    judged = judged_path(model.teacher)  # the one decision: the card and the manifest follow it
    reports = [("holdout", a.eval_holdout), ("val", a.eval_val)]
    reports += [("val_enlarged", [a.eval_val_enlarged])] if a.eval_val_enlarged else []
    results = {key: load_report_set(paths, digest, judged) for key, paths in reports}
    figs = {key: figures(result) for key, result in results.items()}
    commands = {key: eval_command(name, key, result) for key, result in results.items()}
    misses = set_misses(figs, judged)
    status = "release" if not misses else "preview"
    meta = run_summary(model, a.checkpoint, a.prior_metrics)

    dest = REPO / "weights" / name
    tmp = dest.with_suffix(".part")
    shutil.copyfile(a.checkpoint, tmp)
    card_rel = f"weights/{name[:-len('.safetensors')]}.md"
    entry = ManifestEntry(name=name, filename=name, family=fam.name, scales=tuple(sorted(model.scales)), config="light",
                          size=tmp.stat().st_size, sha256=digest, url=None, bundled=f"weights/{name}",
                          license="Apache-2.0", source=f"ComfyUI-LUA: python -m lua_core.train.finetune, {a.hardware}",
                          description=manifest_description(status, fam, judged, figs, card_rel), status=status,
                          training=manifest_training(meta, fam, model, judged, a.hardware, figs, commands, misses),
                          model_card=card_rel)
    card = model_card(entry, meta, judged, results, figs, misses, a.hardware, commands, model.net.num_parameters())
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
