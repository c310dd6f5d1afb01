#!/usr/bin/env python
"""Bundle a trained adapter: copy it into weights/, write its model card, update weights_manifest.json.

    python -m scripts.release_adapter --family sd15 \
        --checkpoint .cache/train_runs/sd15_light_cpu/lua_light_sd15.safetensors \
        --eval docs/eval/sd15/results.json --recipe configs/train/sd15_light_cpu.json \
        --run-dir .cache/train_runs/sd15_light_cpu --hardware "2-core AMD EPYC CPU, 1 thread, shared"

The status is measured, not declared: ``release`` when x2 and x4 both beat decode + pixel bicubic in
PSNR and in LPIPS (the first ship bar), else ``preview``.  The evaluation must be of the same file (sha256).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from lua_core.checkpoints.manifest import DEFAULT_MANIFEST_PATH, Manifest, ManifestEntry, file_sha256
from lua_core.families import FAMILIES, get_family

REPO = Path(__file__).resolve().parents[1]

AIM_DB = {2: 1.5, 4: 0.8}  # the first aim above pixel bicubic, in dB


def figures(result: dict[str, Any]) -> dict[str, dict[str, Optional[float]]]:
    """Per scale: LUA, the baselines it is judged against, and the ceiling (PSNR, SSIM, LPIPS, DISTS)."""
    out = {}
    for key, rows in result["results"].items():
        row = {}
        for path in ("lua", "pixel_bicubic", "latent_bicubic", "vae_ceiling"):
            for metric in ("psnr", "ssim", "lpips", "dists"):
                v = rows.get(path, {}).get(metric)
                row[f"{path}_{metric}"] = round(v, 4) if isinstance(v, (int, float)) else None
        out[key] = row
    return out


def meets_bar(figs: dict[str, dict[str, Optional[float]]]) -> bool:
    for row in figs.values():
        if row["lua_psnr"] is None or row["lua_psnr"] <= row["pixel_bicubic_psnr"]:
            return False
        if row["lua_lpips"] is None or row["pixel_bicubic_lpips"] is None or row["lua_lpips"] >= row["pixel_bicubic_lpips"]:
            return False
    return True


def run_minutes(run_dir: Path, export: Path) -> Optional[float]:
    """Wall time of the run: its config.json (written at start) to the export (latent encoding included)."""
    start = run_dir / "config.json"
    if not start.is_file() or not export.is_file():
        return None
    return round((export.stat().st_mtime - start.stat().st_mtime) / 60, 1)


def open_adapter(family: str, checkpoint: Path) -> tuple[Any, str, Any, str]:
    """``(family, bundled file name, loaded model, sha256)`` of an adapter to release; exits if it is another family's."""
    import lua_core

    fam = get_family(family)
    model = lua_core.load_model(checkpoint)
    if model.family.name != fam.name:
        raise SystemExit(f"{checkpoint} is a {model.family.label} adapter, not {fam.label}")
    return fam, f"lua_light_{fam.name}.safetensors", model, file_sha256(checkpoint)


def family_note(family: str) -> list[str]:
    """Model-card lines about a batch-normalised family's latent convention (FLUX.2's estimated statistics)."""
    fam = get_family(family)
    if not fam.batch_norm:
        return []
    p, label, tae = fam.pack, fam.label, fam.tae_name
    return [f"> {label} convention: ComfyUI's {label} LATENT is packed {p}x{p} into {fam.comfy_channels} channels and "
            f"batch-norm normalised with the full VAE's running statistics. This adapter works on un-normalised, "
            f"unpacked {tae} latents; the pack converts at its boundary (`lua_core/families.py`: "
            f"`(z - mean) / sqrt(var + 1e-4)` per packed channel and back) with statistics **estimated** from {tae} "
            f"latents of 512 random crops of our training photographs (`lua_core/latent_stats.json`, "
            f"`python -m scripts.estimate_latent_stats`), because the real VAE's statistics cannot be downloaded "
            f"here. They bring {tae} latents of unseen photographs to about zero mean and unit variance per channel "
            f"(`tests/unit/test_families.py`); on a real {label} latent the mismatch with the VAE's own statistics "
            f"cancels to first order, since the same affine map is undone after the network.", ""]


def model_card(entry: ManifestEntry, meta: dict[str, Any], result: dict[str, Any], figs: dict, minutes: Optional[float],
               hardware: str, recipes: list[str], eval_json: str, eval_cmd: str, note: str = "") -> str:
    fam = get_family(entry.family)
    stages = meta.get("stages") or []
    data = meta.get("data") or {}
    lines = [f"# {entry.name}: LUA light adapter for {fam.label} latents", ""]
    verdict = ("**release**: x2 and x4 beat decode + pixel bicubic in PSNR and LPIPS" if entry.status == "release" else
               "**preview**: better than every latent upscaler, below decode + pixel bicubic (the bar to ship); "
               "a longer (GPU) run of the full recipe replaces it")
    lines += [f"- Status: {verdict}.",
              f"- Network: light config, 1.49 M parameters, heads x2 and x4, fp16 safetensors, {entry.size:,} bytes, "
              f"sha256 `{entry.sha256}`.",
              f"- Latents: {fam.label} ({fam.model_channels} channels"
              + (f", ComfyUI packs them 2x2 into {fam.comfy_channels}" if fam.pack > 1 else "") + "), "
              f"trained and evaluated with `{meta.get('tae')}` (the stand-in tiny autoencoder in `../shared/vae`).",
              "- License: Apache-2.0 (weights and code).", ""]
    lines += family_note(entry.family)
    lines += ["## Training", "",
              "- Recipe: " + ", then ".join(f"`python -m lua_core.train --config {r} --threads 1`" for r in recipes) + ".",
              *([f"- {note}"] if note else []),
              f"- Data: {data.get('num_samples')} random {data.get('crop')} px crops (flips/rotations) of the "
              f"{data.get('num_images')} photographs in `../shared/data/train`; validation on `../shared/data/val`.",
              "- Curriculum of the " + ("last run" if len(recipes) > 1 else "run") + " (steps x batch @ crop, loss weights):"]
    for s in stages:
        lines.append(f"  - {s['name']}: {s['steps']} x {s['batch_size']} @ {s['crop']} px, {json.dumps(s['weights'])}")
    lines += [f"- Global steps: {meta.get('global_steps')}; EMA decay {meta.get('ema', {}).get('decay')}.",
              f"- Hardware: {hardware}."
              + (f" Wall time {minutes} min, latent encoding included." if minutes is not None else ""), ""]
    imgs = result["images"]
    lines += ["## Evaluation", "",
              f"{imgs['count']} images of `../shared/data/val`, centre crops of {imgs['crop']} px, decoded with "
              f"{result['decoder']}. HR → bicubic (anti-aliased) LR → encode → upscale → decode. Reproduce with:", "",
              f"    {eval_cmd}", "",
              f"(full tables, timings and crops: [`{eval_json}`](../{eval_json}))", "",
              "| scale | LUA PSNR | pixel bicubic | latent bicubic | ceiling | LUA LPIPS | pixel bicubic LPIPS | vs aim |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in figs.items():
        s = int(key[1:])
        gap = r["lua_psnr"] - r["pixel_bicubic_psnr"]
        fmt = lambda v, p=2: "n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
        lines.append(f"| {key} | {fmt(r['lua_psnr'])} | {fmt(r['pixel_bicubic_psnr'])} | {fmt(r['latent_bicubic_psnr'])} "
                     f"| {fmt(r['vae_ceiling_psnr'])} | {fmt(r['lua_lpips'], 3)} | {fmt(r['pixel_bicubic_lpips'], 3)} "
                     f"| {gap - AIM_DB[s]:+.2f} dB |")
    lines += ["", "PSNR in dB (mean over images). *vs aim*: LUA minus pixel bicubic minus the aim "
              "(+1.5 dB at x2, +0.8 dB at x4); positive means the aim is met.", ""]
    return "\n".join(lines)


def with_entry(entry: ManifestEntry) -> dict[str, Any]:
    """The manifest with ``entry`` added or replacing the one of its name (family order kept), validated."""
    manifest = json.loads(DEFAULT_MANIFEST_PATH.read_text())
    models = [m for m in manifest["models"] if m["name"] != entry.name]
    models.append(entry.to_dict())
    # the manifest's own family order, then families new to it in the family table's order
    families = list(dict.fromkeys([m["family"] for m in manifest["models"]] + list(FAMILIES)))
    order = {f: i for i, f in enumerate(families)}
    models.sort(key=lambda m: (order.get(m["family"], len(order)), m["config"] != "paper", m["name"]))
    manifest["models"] = models
    Manifest.from_dict(manifest)
    return manifest


def write_manifest(manifest: dict[str, Any]) -> None:
    tmp = DEFAULT_MANIFEST_PATH.with_suffix(".part")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, DEFAULT_MANIFEST_PATH)


def summary_table() -> str:
    """Markdown table of every bundled adapter's held-out figures against the user's route (for the README)."""
    rows = ["| adapter | status | x2 PSNR: LUA + VAE / LUA alone / user's route / latent bicubic | x2 LPIPS: LUA + VAE / "
            "LUA alone / user's route | x4 PSNR: LUA + VAE / LUA alone / user's route / latent bicubic | x4 LPIPS: "
            "LUA + VAE / LUA alone / user's route | card |",
            "|---|---|---|---|---|---|---|"]
    f = lambda v, p=2: "n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
    for e in Manifest.load():
        training = e.training or {}
        ev = training.get("evaluation")
        if e.bundled is None or not ev:
            continue
        status = e.status or ""
        if training.get("without_vae"):
            status += f" with the VAE input ({training['without_vae']['status']} without)"
        cells = []
        for key in ("x2", "x4"):
            r = ev.get(key, {})
            cells.append(f"{f(r.get('lua_vae_psnr'))} / {f(r.get('lua_psnr'))} / {f(r.get('pixel_route_psnr'))} / "
                         f"{f(r.get('latent_bicubic_psnr'))} dB")
            cells.append(f"{f(r.get('lua_vae_lpips'), 3)} / {f(r.get('lua_lpips'), 3)} / "
                         f"{f(r.get('pixel_route_lpips'), 3)}")
        rows.append(f"| `{e.name}` | {status} | " + " | ".join(cells) + f" | [{Path(e.model_card).name}]({e.model_card}) |")
    return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> int:
    if argv is None and sys.argv[1:] == ["--table"] or argv == ["--table"]:
        print(summary_table())
        return 0
    p = argparse.ArgumentParser(description=__doc__ + "\n    python -m scripts.release_adapter --table   # README table",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--eval", required=True, type=Path, help="results.json of python -m lua_core.eval on this file")
    p.add_argument("--recipe", required=True, nargs="+", help="the config(s) the run went through, in order")
    p.add_argument("--note", default="", help="a sentence for the card's training section (e.g. earlier stages)")
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--hardware", required=True)
    p.add_argument("--eval-command", default=None)
    a = p.parse_args(argv)

    fam, name, model, digest = open_adapter(a.family, a.checkpoint)
    result = json.loads(a.eval.read_text())
    if result["checkpoint"].get("sha256") != digest:
        raise SystemExit(f"{a.eval} evaluated another file (sha256 {result['checkpoint'].get('sha256')}, this is {digest})")
    figs = figures(result)
    status = "release" if meets_bar(figs) else "preview"
    dest = REPO / "weights" / name
    tmp = dest.with_suffix(".part")
    shutil.copyfile(a.checkpoint, tmp)
    os.replace(tmp, dest)
    meta = model.training_summary or {}
    minutes = run_minutes(a.run_dir, a.checkpoint) if a.run_dir else None
    eval_json = str(a.eval.resolve().relative_to(REPO))
    eval_cmd = a.eval_command or (f"python -m lua_core.eval --checkpoint {name} --images-count {result['images']['count']} "
                                  f"--crop {result['images']['crop']} --threads 1")
    card_rel = f"weights/{name[:-len('.safetensors')]}.md"
    training = {"recipe": a.recipe, "note": a.note or None, "global_steps": meta.get("global_steps"),
                "steps_per_stage": meta.get("steps_per_stage"), "hardware": a.hardware, "wall_minutes": minutes,
                "data": meta.get("data"), "autoencoder": meta.get("tae"), "evaluation": {"command": eval_cmd, **figs}}
    r2 = figs.get("x2", {})
    r4 = figs.get("x4", {})
    desc = (f"{status.upper()} {fam.label} light adapter (1.49 M params, x2/x4). {result['images']['count']} val crops, "
            f"{result['decoder']}: x2 {r2.get('lua_psnr', 0):.2f} dB / x4 {r4.get('lua_psnr', 0):.2f} dB vs pixel bicubic "
            f"{r2.get('pixel_bicubic_psnr', 0):.2f} / {r4.get('pixel_bicubic_psnr', 0):.2f} and latent bicubic "
            f"{r2.get('latent_bicubic_psnr', 0):.2f} / {r4.get('latent_bicubic_psnr', 0):.2f}. See {card_rel}.")
    entry = ManifestEntry(name=name, filename=name, family=fam.name, scales=tuple(sorted(model.scales)), config="light",
                          size=dest.stat().st_size, sha256=digest, url=None, bundled=f"weights/{name}",
                          license="Apache-2.0", source=f"ComfyUI-LUA: {' then '.join(a.recipe)}, {a.hardware}", description=desc,
                          status=status, training=training, model_card=card_rel)
    (REPO / card_rel).write_text(model_card(entry, meta, result, figs, minutes, a.hardware, a.recipe, eval_json, eval_cmd,
                                            a.note))
    write_manifest(with_entry(entry))
    print(f"{name}: {status}, {entry.size:,} bytes, sha256 {digest[:12]}…, card {card_rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
