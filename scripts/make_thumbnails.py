"""Make the same-name .jpg thumbnails of the workflows in ``workflows/`` from real runs.

    .venv/bin/python -m scripts.make_thumbnails [--image PATH]

Everything runs on the CPU in a headless ComfyUI 0.3.75 (``tests/support/comfy_server.py``)
with the tiny autoencoders, because the diffusion models cannot be downloaded here:

* image-in and comparison workflows: the workflow itself runs; the thumbnail shows
  crops of its outputs.
* text-to-image workflows (FLUX.1, SD3.5, SDXL, SD1.5 hires fix): the image-in
  workflow runs with that family's tiny autoencoder and adapter (x2 branch), and the
  thumbnail says so ("stand-in: photo → taesdxl → LUA x2"), since the real picture
  needs the diffusion model.
* FLUX.2: ComfyUI 0.3.75's VAELoader does not offer taef2, so the same chain runs
  through ``lua_core`` in Python (taef2 encode → LUA x2 on the packed latent → decode),
  and the thumbnail says that.

The adapters are the bundled ``weights/lua_light_<family>.safetensors``. Where one is
not there yet, a small random adapter stands in and the thumbnail carries a red
"PLACEHOLDER: untrained adapter" band; rerun this script once the trained weights
are bundled. Each JPEG's comment field records how it was made.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from lua_core.tae import TinyVAE, load_tae
from tests.support.comfy_server import ComfyServer
from tests.support.workflow_api import workflow_to_api

REPO = Path(__file__).resolve().parent.parent

WORKFLOWS = REPO / "workflows"
WEIGHTS = REPO / "weights"
SHARED = Path(os.environ.get("LUA_SHARED_DIR", REPO.parent / "shared"))
INPUT_NAME = "lua_demo_input.png"
SIZE = 512  # thumbnails are SIZE x SIZE
# the tiny autoencoders ComfyUI 0.3.75's VAELoader offers (a fact about ComfyUI); other families run in Python
VAELOADER_TAES = frozenset({"taesd", "taesdxl", "taesd3", "taef1"})
T2I = {"lua_flux1_t2i_x2_x4": ("flux1", "FLUX.1 → LUA x2 / x4"),
       "lua_sd35_t2i_x2_x4": ("sd3", "SD3.5 → LUA x2 / x4"),
       "lua_sdxl_t2i_x2_x4": ("sdxl", "SDXL → LUA x2 / x4"),
       "lua_sd15_hires_fix": ("sd15", "SD1.5 hires fix with LUA"),
       "lua_flux2_t2i_x2_x4": ("flux2", "FLUX.2 → LUA x2 / x4")}


@dataclass
class Weights:
    name: str
    placeholder: bool


def font(size: int) -> ImageFont.ImageFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                 "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        if os.path.isfile(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def prepare_weights(families: list[str], folder: Path) -> dict[str, Weights]:
    """The bundled adapter per family, or a labelled random stand-in written to ``folder``."""
    out = {}
    for fam_name in families:
        name = f"lua_light_{fam_name}.safetensors"
        if (WEIGHTS / name).is_file():
            out[fam_name] = Weights(name, False)
            continue
        fam = lua_core.get_family(fam_name)
        torch.manual_seed(0)
        cfg = lua_core.LIGHT_CONFIG.replace(in_chans=fam.model_channels, in_scale=fam.scale_factor,
                                            in_shift=fam.shift_factor, embed_dim=24, depths=(2, 2),
                                            num_heads=(3, 3), head_num_feat=16)
        save_checkpoint(lua_core.LUANet(cfg), folder / name, fam_name)
        out[fam_name] = Weights(name, True)
    return out


def detail_box(img: Image.Image, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side`` x ``side`` window with the most detail (gradient energy)."""
    g = np.asarray(img.convert("L"), dtype=np.float32)
    energy = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    best, pos = -1.0, (0, 0)
    step = max(8, side // 4)
    for y in range(0, g.shape[0] - side, step):
        for x in range(0, g.shape[1] - side, step):
            e = float(energy[y:y + side - 1, x:x + side - 1].mean())
            if e > best:
                best, pos = e, (x, y)
    return pos


def label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int = 18) -> None:
    f = font(size)
    x, y = xy
    l, t, r, b = draw.textbbox((x, y), text, font=f)
    draw.rectangle((l - 5, t - 4, r + 5, b + 4), fill=(0, 0, 0, 170))
    draw.text((x, y), text, font=f, fill=(255, 255, 255, 255))


def finish(body: Image.Image, title: str, footer: str, placeholder: bool) -> Image.Image:
    """Title band on top, provenance at the bottom, and the placeholder band where it applies."""
    canvas = body.convert("RGBA")
    over = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    d.rectangle((0, 0, SIZE, 44), fill=(20, 20, 24, 215))
    d.text((12, 9), title, font=font(22), fill=(255, 255, 255, 255))
    d.rectangle((0, SIZE - 26, SIZE, SIZE), fill=(20, 20, 24, 200))
    d.text((8, SIZE - 22), footer, font=font(13), fill=(220, 220, 220, 255))
    if placeholder:
        d.rectangle((0, SIZE // 2 - 24, SIZE, SIZE // 2 + 24), fill=(170, 20, 20, 220))
        d.text((SIZE // 2, SIZE // 2), "PLACEHOLDER: untrained adapter", font=font(22), anchor="mm",
               fill=(255, 255, 255, 255))
    return Image.alpha_composite(canvas, over).convert("RGB")


def split_view(before: Image.Image, after: Image.Image, scale: int, left: str, right: str) -> Image.Image:
    """Left half: a crop of ``before`` (the working-size image, resized); right half: the same spot of ``after``."""
    side = SIZE // scale
    x, y = detail_box(before, side)
    a = before.crop((x, y, x + side, y + side)).resize((SIZE, SIZE), Image.BICUBIC)
    b = after.crop((x * scale, y * scale, (x + side) * scale, (y + side) * scale)).resize((SIZE, SIZE), Image.LANCZOS)
    body = Image.new("RGB", (SIZE, SIZE))
    body.paste(a.crop((0, 0, SIZE // 2, SIZE)), (0, 0))
    body.paste(b.crop((SIZE // 2, 0, SIZE, SIZE)), (SIZE // 2, 0))
    d = ImageDraw.Draw(body, "RGBA")
    d.line((SIZE // 2, 0, SIZE // 2, SIZE), fill=(255, 255, 255, 230), width=3)
    label(d, (10, 54), left, 16)
    label(d, (SIZE // 2 + 10, 54), right, 16)
    return body


def strips(images: list[Image.Image], names: list[str], scale: int, source: Image.Image) -> Image.Image:
    """The same narrow spot of several same-size outputs, side by side (1:1 pixels)."""
    w = SIZE // len(images)
    x, y = detail_box(source, SIZE // scale)
    x0, y0 = x * scale + (SIZE - w) // 2, y * scale
    body = Image.new("RGB", (SIZE, SIZE))
    d = ImageDraw.Draw(body, "RGBA")
    for i, im in enumerate(images):
        body.paste(im.crop((x0, y0, x0 + w, y0 + SIZE)), (i * w, 0))
        if i:
            d.line((i * w, 0, i * w, SIZE), fill=(255, 255, 255, 230), width=3)
    for i, name in enumerate(names):
        label(d, (i * w + 8, 54), name, 15)
    return body


def save_thumb(img: Image.Image, stem: str, note: str) -> Path:
    path = WORKFLOWS / f"{stem}.jpg"
    img.save(path, "JPEG", quality=85, optimize=True, comment=note.encode())
    return path


def run(server: ComfyServer, workflow: dict[str, Any]) -> tuple[dict[str, Image.Image], float]:
    """Run a UI-format workflow; returns {SaveImage filename_prefix: image} and the seconds it took."""
    prompt = workflow_to_api(workflow, server.object_info(refresh=True))
    t0 = time.perf_counter()
    result = server.run_prompt(prompt, timeout=1800)
    seconds = time.perf_counter() - t0
    if not result.ok:
        raise RuntimeError(f"workflow failed: {result.error}\n{server.log_tail()}")
    out = {}
    for node in workflow["nodes"]:
        if node["type"] == "SaveImage" and node.get("mode", 0) == 0:
            (path,) = server.image_paths(result, str(node["id"]))
            out[node["widgets_values"][0]] = Image.open(path).convert("RGB")
    return out, seconds


def use_input(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow loading the thumbnail photo instead of ComfyUI's example.png (which it ships with)."""
    for node in workflow["nodes"]:
        if node["type"] == "LoadImage":
            node["widgets_values"][0] = INPUT_NAME
    return workflow


def family_variant(image_in: dict[str, Any], family: str, weights: str) -> dict[str, Any]:
    """The image-in workflow with another family's tiny autoencoder and adapter, x4 branch muted."""
    wf = json.loads(json.dumps(image_in))
    for node in wf["nodes"]:
        if node["type"] == "VAELoader":
            node["widgets_values"] = [lua_core.get_family(family).tae_name]
        elif node["type"] == "LUAModelLoader":
            node["widgets_values"][0] = weights
        elif node["id"] in (7, 9, 11):  # LUA x4, its decode and save
            node["mode"] = 2
    return wf


def python_stand_in(photo: Image.Image, family: str, weights: Path) -> tuple[Image.Image, float]:
    """Tiny-autoencoder encode → LUA x2 on the ComfyUI LATENT (packed for FLUX.2) → decode, with lua_core
    (no ComfyUI)."""
    fam = lua_core.get_family(family)
    t0 = time.perf_counter()
    with torch.inference_mode():
        tae = load_tae(fam)
        x = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        packed = fam.to_comfy(tae.encode_raw(x))
        model = lua_core.load_model(weights)
        up = lua_core.upscale(model, packed, 2, vae=TinyVAE(tae))  # the workflows wire their VAE into LUA
        img = tae.decode_raw(fam.to_model(up)).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return Image.fromarray((img * 255 + 0.5).astype(np.uint8)), time.perf_counter() - t0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None, help="photo (default: first urban100 val image)")
    args = parser.parse_args(argv)
    photo_path = args.image or sorted((SHARED / "data" / "val" / "urban100").glob("*"))[0]
    image_in = use_input(json.loads((WORKFLOWS / "lua_image_upscale_x2_x4.json").read_text()))
    compare = use_input(json.loads((WORKFLOWS / "lua_compare_upscalers.json").read_text()))
    timings: dict[str, float] = {}
    with ComfyServer() as server:
        weights = prepare_weights(list(lua_core.FAMILIES), Path(server.lua_models_dir))
        with Image.open(photo_path) as im:
            im.convert("RGB").save(server.input_dir / INPUT_NAME)
        # the working-size input the workflows encode (ImageScale lanczos 512 x 512, center crop)
        src = Image.open(server.input_dir / INPUT_NAME)
        s = min(src.size)
        small = src.crop(((src.width - s) // 2, (src.height - s) // 2, (src.width + s) // 2,
                          (src.height + s) // 2)).resize((512, 512), Image.LANCZOS)

        out, timings["lua_image_upscale_x2_x4"] = run(server, image_in)
        w = weights["flux1"]
        note = f"image-in workflow run, taef1 + {w.name}" + (" (random stand-in)" if w.placeholder else "")
        save_thumb(finish(split_view(small, out["LUA/x4"], 4, "512 px input", "LUA x4 (2048 px)"),
                          "Image in → LUA x2 / x4", "real run: photo → taef1 → LUA x4 → decode", w.placeholder),
                   "lua_image_upscale_x2_x4", note)
        lua_x4_flux1 = out

        out, timings["lua_compare_upscalers"] = run(server, compare)
        save_thumb(finish(strips([out["LUA/compare_1_lua_x2"], out["LUA/compare_2_bislerp_x2"],
                                  out["LUA/compare_3_pixel_lanczos_x2"]], ["LUA", "bislerp", "lanczos"], 2, small),
                          "LUA vs latent vs pixel upscale", "real run: taef1, all x2 (1024 px)", w.placeholder),
                   "lua_compare_upscalers", f"comparison workflow run, taef1 + {w.name}"
                   + (" (random stand-in)" if w.placeholder else ""))

        for stem, (family, title) in T2I.items():
            w, tae_name = weights[family], lua_core.get_family(family).tae_name
            if tae_name not in VAELOADER_TAES:
                x2, timings[f"{stem} (stand-in, python)"] = python_stand_in(
                    small, family, Path(server.lua_models_dir) / w.name if w.placeholder else WEIGHTS / w.name)
                footer = f"stand-in: photo → {tae_name} → LUA x2 (lua_core, no diffusion model)"
            elif family == "flux1":  # the image-in workflow's own run (taef1) already has its x2
                x2 = lua_x4_flux1["LUA/x2"]
                footer = f"stand-in: photo → {tae_name} → LUA x2 (no diffusion model)"
            else:
                out, timings[f"{stem} (stand-in)"] = run(server, family_variant(image_in, family, w.name))
                x2 = out["LUA/x2"]
                footer = f"stand-in: photo → {tae_name} → LUA x2 (no diffusion model)"
            note = f"{footer}; adapter {w.name}" + (" (random stand-in)" if w.placeholder else "")
            save_thumb(finish(split_view(small, x2, 2, "512 px", "LUA x2"), title, footer, w.placeholder), stem, note)
    for key, sec in timings.items():
        print(f"{key}: {sec:.1f} s")
    for fam, w in weights.items():
        print(f"{fam}: {w.name} ({'random stand-in: PLACEHOLDER thumbnails' if w.placeholder else 'bundled'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
