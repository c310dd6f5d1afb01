"""Reports of an evaluation: ``results.json``, ``results.md`` (tables) and ``crops.jpg`` (picture grid)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import torch

JSON_NAME = "results.json"
MD_NAME = "results.md"
PNG_NAME = "crops.jpg"  # JPEG q92: a third of the PNG size, artefacts far below the differences shown
METRIC_HEADERS = (("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 4), ("lpips", "LPIPS ↓", 4), ("dists", "DISTS ↓", 4),
                  ("latent_nmse", "latent NMSE ↓", 3))
COLUMN_LABELS = {"base": "base decode", "latent_bicubic": "latent bicubic", "pixel_bicubic": "pixel bicubic",
                 "pixel_route": "user's route", "lua": "LUA", "lua_vae": "LUA + VAE", "hr": "ground truth"}


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(result: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    return path


def _fmt(v: Optional[float], digits: int) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}"


def crop_description(images: dict[str, Any]) -> str:
    """How a report cropped its images, e.g. ``512 px at native resolution (nothing enlarged; ...)``."""
    if not images.get("native"):
        return f"{images['crop']} px"
    small = [c for c in images["crops"] if c < images["crop"]]
    return (f"{images['crop']} px at native resolution (nothing enlarged"
            + (f"; {len(small)} smaller images cropped to {', '.join(map(str, sorted(set(small))))} px" if small else "")
            + ")")


METHOD_NOTE = ("HR crop → LR (bicubic, anti-aliased, ÷s) → encode → upscale → decode, compared with the HR crop. "
               "The user's routes stand for a full VAE's decode with the true LR image and pass their upscaled "
               "image once through the same tiny autoencoder at the target size, as LUA's latent is decoded by it; "
               "LUA with the VAE input gets the same stand-in (decode = the true LR image, encode = the tiny "
               "encoder). Metrics are means over the images, times medians per image (ms; encode = the LR image, "
               "for the ceiling the HR image, for the user's routes the target-size encode; the tiny-decode pixel "
               "paths decode at base size).")
METRIC_NOTE = ("Metrics: PSNR (dB) and SSIM (Gaussian 11×11, σ 1.5, valid positions, mean over R, G, B) on RGB in "
               "[0, 1]; LPIPS v0.1 with AlexNet; DISTS (`DISTS_pytorch` 0.1); Laplacian variance: variance of the "
               "3×3 Laplacian of the luma (BT.601, 0–255), as `cv2.Laplacian(gray).var()`: above the ground "
               "truth's value means added noise or ringing, below means blur; latent NMSE: mean squared difference "
               "of the path's latent at the target size (for pixel routes, the encode of its image) to the latent "
               "of the true HR image, divided by that latent's variance.")
TIME_COLUMNS = ("encode", "upscale", "decode", "total")


def _run_facts(result: dict[str, Any]) -> list[str]:
    """The bullet list under the title: checkpoint, decoder, images, run, reused rows, what is missing."""
    ck, img, env, status = result.get("checkpoint"), result["images"], result["environment"], result["metrics"]
    lines = [f"- checkpoint: {ck['description'] if ck else 'none (baselines only)'}"
             + (f" · sha256 `{ck['sha256'][:12]}…`" if ck and ck.get("sha256") else ""),
             f"- decoder: {result['decoder']}",
             f"- images: {img['count']} from `{img['dir']}`, centre crops of {crop_description(img)} "
             f"(HR Laplacian variance {_fmt(result.get('hr_lapvar'), 1)})",
             f"- run: torch {env['torch']}, {env['device']}, {env['threads']} thread(s), "
             f"{env['date']}, {result['wall_time_s']:.0f} s in all"]
    reused = result.get("baselines_reused_from")
    if reused:
        lines.append(f"- rows of {', '.join(reused['paths'])}: reused from `{reused['report']}` ({reused['date']}), "
                     "each checked by its PSNR; their times are from that run")
    lines += [f"- {k.upper()}: {status[k]}" for k, _, _ in METRIC_HEADERS if status.get(k, "ok") != "ok"]
    lines += [f"- {p}: not run ({why})" for p, why in result.get("unavailable_paths", {}).items()]
    return lines


def _scale_table(result: dict[str, Any], scale: int, shown: list[tuple[str, str, int]]) -> list[str]:
    """One scale's section: its heading and one row per path (metrics, sharpness, stage times)."""
    img, key = result["images"], f"x{scale}"
    upto = "up to " if img.get("native") else ""
    head = ["path"] + [h for _, h, _ in shown] + ["Laplacian var."] + [f"{st} ms" for st in TIME_COLUMNS]
    lines = [f"## x{scale} ({upto}{img['crop'] // scale} px → {upto}{img['crop']} px)", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for p in result["paths"]:
        r = result["results"][key][p]
        label = result["labels"][p]
        cells = [f"**{label}**" if p == "lua" else label]
        cells += [_fmt(r.get(k), d) for k, _, d in shown] + [_fmt(r.get("lapvar"), 1)]
        cells += [_fmt(r["time_ms"].get(st), 1) for st in TIME_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _picture_note(result: dict[str, Any], picture: str) -> list[str]:
    pic = result.get("picture", {})
    return [f"![crops]({picture})", "",
            f"Crops of `{pic.get('image', '')}` (the most detailed image of the set): "
            + ", ".join(COLUMN_LABELS[c] for c in pic.get("columns", [])) + "; one row per scale.", ""]


def markdown(result: dict[str, Any], picture: Optional[str] = PNG_NAME) -> str:
    """The Markdown report: one table per scale, metric availability and definitions."""
    shown = [(k, h, d) for k, h, d in METRIC_HEADERS if result["metrics"].get(k) == "ok"]
    lines = [f"# LUA evaluation: {result['family_label']} (`{result['family']}`)", ""]
    lines += _run_facts(result) + ["", METHOD_NOTE, ""]
    for s in result["scales"]:
        lines += _scale_table(result, s, shown)
    lines += [METRIC_NOTE, ""]
    if picture:
        lines += _picture_note(result, picture)
    return "\n".join(lines)


def write_markdown(result: dict[str, Any], path: Path, picture: Optional[str] = PNG_NAME) -> Path:
    path.write_text(markdown(result, picture))
    return path


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def write_picture(rows: dict[int, dict[str, torch.Tensor]], columns: list[str], path: Path,
                  title: str = "") -> Optional[Path]:
    """A grid of uint8 ``(3, H, W)`` tiles: one row per scale, one labelled column per path."""
    if not rows:
        return None
    from PIL import Image, ImageDraw

    scales = sorted(rows)
    tile_h, tile_w = next(iter(rows[scales[0]].values())).shape[-2:]
    zoom = max(1, math.ceil(192 / max(tile_h, tile_w)))  # small crops are enlarged (nearest) to be visible
    th, tw = tile_h * zoom, tile_w * zoom
    gap, head, left = 4, 22, 36
    top = head + (20 if title else 0)
    width = left + len(columns) * (tw + gap)
    height = top + len(scales) * (th + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    for j, col in enumerate(columns):
        draw.text((left + j * (tw + gap) + 2, top - head + 3), COLUMN_LABELS.get(col, col), fill=(0, 0, 0), font=font)
    for i, s in enumerate(scales):
        y = top + i * (th + gap)
        draw.text((4, y + th // 2 - 8), f"x{s}", fill=(0, 0, 0), font=font)
        for j, col in enumerate(columns):
            tile = rows[s].get(col)
            if tile is None:
                continue
            im = Image.fromarray(tile.permute(1, 2, 0).numpy())
            if zoom > 1:
                im = im.resize((tw, th), Image.Resampling.NEAREST)
            canvas.paste(im, (left + j * (tw + gap), y))
    canvas.save(path, quality=92, optimize=True)
    return path


def write_reports(result: dict[str, Any], out_dir: Path, rows: dict[int, dict[str, torch.Tensor]]) -> list[Path]:
    """Write JSON, Markdown and the picture into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{result['family_label']}: " + (result["checkpoint"]["name"] if result.get("checkpoint") else "baselines")
    png = write_picture(rows, result["picture"]["columns"], out_dir / PNG_NAME, title)
    written = [write_json(result, out_dir / JSON_NAME),
               write_markdown(result, out_dir / MD_NAME, PNG_NAME if png else None)]
    return written + ([png] if png else [])
