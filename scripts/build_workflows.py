"""Write the drag-and-drop workflows in ``workflows/`` (ComfyUI UI format, version 0.4).

    .venv/bin/python scripts/build_workflows.py [--object-info FILE] [--only NAME ...]

Node sockets (inputs, outputs and their types) and the order of widget values are
taken from a real ComfyUI's ``/object_info`` (a file, or a server started here with
``scripts/comfy_server.py``), so the files match ComfyUI 0.3.75 exactly; the
tests check them again against the running server. Widget values are given by
input name; "control after generate" and upload values are inserted where the
front end expects them.
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.workflow_api import _is_widget, widget_names  # noqa: E402

WORKFLOWS = REPO / "workflows"
FRONTEND_VERSION = "1.32.9"

# ---------------------------------------------------------------- model files
HF = "https://huggingface.co"
LUA_FLUX_OFFICIAL = {"name": "lua_flux.pth", "url": f"{HF}/vaskers5/LUA-FLUX/resolve/main/lua_flux.pth",
                     "directory": "lua"}
MODELS: dict[str, dict[str, str]] = {m["name"]: m for m in [
    {"name": "flux1-dev.safetensors", "url": f"{HF}/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors",
     "directory": "diffusion_models"},
    {"name": "clip_l.safetensors", "url": f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
     "directory": "text_encoders"},
    {"name": "t5xxl_fp16.safetensors",
     "url": f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
     "directory": "text_encoders"},
    {"name": "ae.safetensors",
     "url": f"{HF}/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
     "directory": "vae"},
    {"name": "sd3.5_large_fp8_scaled.safetensors",
     "url": f"{HF}/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/sd3.5_large_fp8_scaled.safetensors",
     "directory": "checkpoints"},
    {"name": "sd_xl_base_1.0.safetensors",
     "url": f"{HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
     "directory": "checkpoints"},
    {"name": "v1-5-pruned-emaonly-fp16.safetensors",
     "url": f"{HF}/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors",
     "directory": "checkpoints"},
    {"name": "flux2_dev_fp8mixed.safetensors",
     "url": f"{HF}/Comfy-Org/flux2-dev/resolve/main/split_files/diffusion_models/flux2_dev_fp8mixed.safetensors",
     "directory": "diffusion_models"},
    {"name": "mistral_3_small_flux2_bf16.safetensors",
     "url": f"{HF}/Comfy-Org/flux2-dev/resolve/main/split_files/text_encoders/mistral_3_small_flux2_bf16.safetensors",
     "directory": "text_encoders"},
    {"name": "flux2-vae.safetensors",
     "url": f"{HF}/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors",
     "directory": "vae"},
]}

# ComfyUI ships this picture in input/, so a first queue of the image-in workflows succeeds as is
EXAMPLE_IMAGE = "example.png"
PROMPT = ("a lighthouse on a rocky coast at golden hour, waves breaking on the rocks, detailed photograph, "
          "sharp focus, 35mm")
NEGATIVE = "blurry, low quality, watermark, text"
SEED = 20251113

# group colours (the front end's palette)
BLUE, GREEN, PURPLE, YELLOW = "#3f789e", "#8A8", "#a1309b", "#b58b2a"
NOTE_POS = (-440, 0)  # notes sit left of the graph, outside the groups


def lua_weight(family: str) -> str:
    """File name of the pack's bundled adapter for a latent family."""
    return f"lua_light_{family}.safetensors"


# -------------------------------------------------------------------- builder
@dataclass
class Node:
    """One node of a UI-format workflow under construction."""

    id: int
    type: str
    pos: tuple[float, float]
    size: tuple[float, float]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    widgets_values: list[Any]
    properties: dict[str, Any]
    title: Optional[str] = None
    color: Optional[str] = None
    bgcolor: Optional[str] = None

    def to_json(self, order: int) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type, "pos": list(self.pos), "size": list(self.size),
                             "flags": {}, "order": order, "mode": 0, "inputs": self.inputs, "outputs": self.outputs,
                             "properties": self.properties, "widgets_values": self.widgets_values}
        if self.title:
            d["title"] = self.title
        if self.color:
            d["color"], d["bgcolor"] = self.color, self.bgcolor
        return d


@dataclass
class Workflow:
    """Builds a UI-format workflow with sockets and widget order from ``/object_info``."""

    name: str
    object_info: Mapping[str, Any]
    nodes: list[Node] = field(default_factory=list)
    links: list[list[Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)

    def add(self, ntype: str, pos: Sequence[float], widgets: Optional[Mapping[str, Any]] = None, *,
            size: Sequence[float] = (320, 100), title: Optional[str] = None,
            models: Optional[list[dict[str, str]]] = None, node_id: Optional[int] = None) -> Node:
        """Add a backend node; ``widgets`` by input name (defaults from /object_info where left out)."""
        info = self.object_info[ntype]
        widgets = dict(widgets or {})
        values: list[Any] = []
        for name, extra in widget_names(info):
            spec = _spec(info, name)
            if name in widgets:
                value = widgets.pop(name)
            elif isinstance(spec[1] if len(spec) > 1 else None, dict) and "default" in spec[1]:
                value = spec[1]["default"]
            elif isinstance(spec[0], list) and spec[0]:
                value = spec[0][0]
            else:
                raise ValueError(f"{self.name}: {ntype}.{name} needs a value")
            values.append(value)
            if extra:
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                values.append("image" if opts.get("image_upload") else "fixed")
        if widgets:
            raise ValueError(f"{self.name}: {ntype} has no widget(s) {sorted(widgets)}")
        inputs = []
        order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
        for section in ("required", "optional"):
            for name in order.get(section, []):
                spec = info["input"][section][name]
                if not _is_widget(spec):
                    inputs.append({"name": name, "type": spec[0], "link": None})
        outputs = [{"name": oname, "type": otype, "links": [], "slot_index": i}
                   for i, (otype, oname) in enumerate(zip(info["output"], info["output_name"]))]
        props: dict[str, Any] = {"Node name for S&R": ntype}
        if models:
            props["models"] = models
        node = Node(node_id or self._next_id(), ntype, tuple(pos), tuple(size), inputs, outputs, values, props, title)
        self.nodes.append(node)
        return node

    def note(self, text: str, pos: Sequence[float], size: Sequence[float] = (420, 300)) -> Node:
        """A MarkdownNote (front-end-only node)."""
        node = Node(self._next_id(), "MarkdownNote", tuple(pos), tuple(size), [], [], [text], {},
                    color="#432", bgcolor="#653")
        self.nodes.append(node)
        return node

    def link(self, src: Node, output: Union[int, str], dst: Node, input_name: str) -> None:
        slot = output if isinstance(output, int) else [o["name"] for o in src.outputs].index(output)
        target = next((i for i, inp in enumerate(dst.inputs) if inp["name"] == input_name), None)
        if target is None:
            raise ValueError(f"{self.name}: {dst.type} has no socket input {input_name!r}")
        ltype = src.outputs[slot]["type"]
        want = dst.inputs[target]["type"]
        if want != ltype and "*" not in (want, ltype):
            raise ValueError(f"{self.name}: {src.type}[{slot}] gives {ltype}, {dst.type}.{input_name} wants {want}")
        lid = len(self.links) + 1
        self.links.append([lid, src.id, slot, dst.id, target, ltype])
        src.outputs[slot]["links"].append(lid)
        dst.inputs[target]["link"] = lid

    def group(self, title: str, members: Sequence[Node], color: str = BLUE, pad: float = 20) -> None:
        x0 = min(n.pos[0] for n in members) - pad
        y0 = min(n.pos[1] for n in members) - pad - 40
        x1 = max(n.pos[0] + n.size[0] for n in members) + pad
        y1 = max(n.pos[1] + n.size[1] for n in members) + pad
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                            "color": color, "font_size": 24, "flags": {}})

    def _next_id(self) -> int:
        return max((n.id for n in self.nodes), default=0) + 1

    def _order(self) -> dict[int, int]:
        """Topological execution order (the ``order`` field), notes first."""
        deps = {n.id: {self.links[i["link"] - 1][1] for i in n.inputs if i["link"]} for n in self.nodes}
        done: list[int] = []
        while len(done) < len(self.nodes):
            ready = sorted(nid for nid, d in deps.items() if nid not in done and d <= set(done))
            if not ready:
                raise ValueError(f"{self.name}: the graph has a cycle")
            done.extend(ready)
        return {nid: i for i, nid in enumerate(done)}

    def to_json(self, title: str) -> dict[str, Any]:
        order = self._order()
        for n in self.nodes:
            for o in n.outputs:
                if not o["links"]:
                    o["links"] = None
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-lua/{self.name}")),
            "revision": 0,
            "last_node_id": max(n.id for n in self.nodes),
            "last_link_id": len(self.links),
            "nodes": [n.to_json(order[n.id]) for n in sorted(self.nodes, key=lambda n: n.id)],
            "links": self.links,
            "groups": self.groups,
            "config": {},
            # no "ds" (saved view): the front end fits the whole graph into the window on load
            "extra": {"frontendVersion": FRONTEND_VERSION, "info": {"name": title}},
            "version": 0.4,
        }


def _spec(info: Mapping[str, Any], name: str) -> list[Any]:
    for section in ("required", "optional"):
        if name in info["input"].get(section, {}):
            return info["input"][section][name]
    raise KeyError(name)


# ------------------------------------------------------------------ workflows
def listed_choice(oi: Mapping[str, Any], name: str) -> str:
    """The Load LUA Model dropdown value of a file: the name itself, or the name with its status label
    (``lua_light_flux1.safetensors (preview)``) as the server lists it."""
    choices = _spec(oi["LUAModelLoader"], "model_name")[0]
    for choice in choices:
        if choice == name or choice.startswith(name + " ("):
            return choice
    raise ValueError(f"Load LUA Model does not list {name!r} (choices: {choices})")


def lua_loader(wf: Workflow, family: str, pos: Sequence[float], node_id: Optional[int] = None,
               model: Optional[Node] = None, model_slot: int = 0, choice: Optional[str] = None) -> Node:
    """Load LUA Model. With a diffusion ``model`` the node gets its MODEL (and ``auto`` unless ``choice`` is
    given); without one (image-in workflows) the family's bundled adapter is selected by name."""
    # no properties.models entry for lua_flux.pth: the loader downloads it itself (from the Hugging Face Hub, into
    # models/lua), and ComfyUI's Missing Models dialog would only refuse its .pth suffix
    if choice is None:
        choice = "auto" if model is not None else listed_choice(wf.object_info, lua_weight(family))
    node = wf.add("LUAModelLoader", pos, {"model_name": choice, "dtype": "auto"}, size=(360, 106),
                  node_id=node_id)
    if model is not None:
        wf.link(model, model_slot, node, "model")
    return node


def lua_branches(wf: Workflow, lua: Node, latent: Node, vae: Node, prefix: str, base_px: int,
                 x: float, y: float, tiled: bool = True, model: Optional[Node] = None) -> list[Node]:
    """LUA x2 and x4 from one latent, each decoded (tiled) and saved; ``model`` checks the adapter's family."""
    made: list[Node] = []
    for row, scale in enumerate((2, 4)):
        yy = y + row * 360
        up = wf.add("LUALatentUpscale", (x, yy), {"scale_by": float(scale), "tile_size": 0, "tile_overlap": 16},
                    size=(340, 130), title=f"LUA Latent Upscale x{scale} ({base_px * scale} px)")
        wf.link(lua, 0, up, "lua_model")
        wf.link(latent, 0, up, "samples")
        if model is not None:
            wf.link(model, 0, up, "model")
        if tiled:
            dec = wf.add("VAEDecodeTiled", (x + 380, yy),
                         {"tile_size": 1024, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8},
                         size=(300, 150))
        else:
            dec = wf.add("VAEDecode", (x + 380, yy), size=(210, 46))
        wf.link(up, 0, dec, "samples")
        wf.link(vae, 0 if vae.type != "CheckpointLoaderSimple" else 2, dec, "vae")
        save = wf.add("SaveImage", (x + 720, yy), {"filename_prefix": f"LUA/{prefix}_x{scale}_{base_px * scale}"},
                      size=(320, 300))
        wf.link(dec, 0, save, "images")
        made += [up, dec, save]
    return made


def t2i_note(family_label: str, models: list[str], lua_family: str, extra: str = "") -> str:
    lines = [f"## {family_label} → LUA x2 / x4",
             "",
             "Generates at 1024 px, then **LUA Latent Upscale** turns the latent into 2048 px (x2) and 4096 px (x4) "
             "before one tiled VAE decode: no second diffusion pass, no pixel upscaler.",
             "",
             "**Model files** (ComfyUI offers the download when they are missing):",
             *[f"- `models/{MODELS[m]['directory']}/{m}` ([link]({MODELS[m]['url']}))" for m in models],
             ]
    if lua_family == "flux1":
        lines += [f"- the paper's `lua_flux.pth` ([link]({LUA_FLUX_OFFICIAL['url']})), selected in **Load LUA "
                  "Model**: downloaded from the Hugging Face Hub to `models/lua/` on first use. Offline, put the "
                  "file there yourself, or pick `auto` to fall back to the bundled preview adapter "
                  f"`{lua_weight(lua_family)}`."]
    else:
        lines += [f"- **Load LUA Model** is on `auto`: it reads the connected model's latent family and picks the "
                  f"best adapter on disk, today the bundled `{lua_weight(lua_family)}` (a **preview**: trained "
                  "briefly on a CPU; decode + a pixel upscaler still gives a cleaner image)."]
    lines += ["", "The MODEL wires let LUA refuse an adapter of another latent family (channel counts cannot tell "
              "SD1.5 from SDXL or SD3 from FLUX.1).", extra]
    return "\n".join(lines).rstrip() + "\n"


def build_flux1(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    wf = Workflow("lua_flux1_t2i_x2_x4", oi)
    unet = wf.add("UNETLoader", (0, 0), {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"},
                  size=(320, 82), models=[MODELS["flux1-dev.safetensors"]])
    clip = wf.add("DualCLIPLoader", (0, 130), {"clip_name1": "clip_l.safetensors",
                                              "clip_name2": "t5xxl_fp16.safetensors", "type": "flux",
                                              "device": "default"},
                  size=(320, 130), models=[MODELS["clip_l.safetensors"], MODELS["t5xxl_fp16.safetensors"]])
    vae = wf.add("VAELoader", (0, 310), {"vae_name": "ae.safetensors"}, size=(320, 58),
                 models=[MODELS["ae.safetensors"]])
    pos = wf.add("CLIPTextEncode", (360, 0), {"text": PROMPT}, size=(400, 160), title="CLIP Text Encode (Prompt)")
    wf.link(clip, 0, pos, "clip")
    guide = wf.add("FluxGuidance", (360, 200), {"guidance": 3.5}, size=(300, 58))
    wf.link(pos, 0, guide, "conditioning")
    neg = wf.add("ConditioningZeroOut", (360, 300), size=(300, 26))
    wf.link(pos, 0, neg, "conditioning")
    empty = wf.add("EmptySD3LatentImage", (360, 370), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=(300, 106))
    ks = wf.add("KSampler", (800, 0), {"seed": SEED, "steps": 20, "cfg": 1.0, "sampler_name": "euler",
                                       "scheduler": "simple", "denoise": 1.0}, size=(320, 262))
    wf.link(unet, 0, ks, "model")
    wf.link(guide, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(empty, 0, ks, "latent_image")
    dec = wf.add("VAEDecode", (800, 320), size=(210, 46), title="VAE Decode (1024 px)")
    wf.link(ks, 0, dec, "samples")
    wf.link(vae, 0, dec, "vae")
    prev = wf.add("PreviewImage", (800, 410), size=(320, 300), title="Preview (1024 px)")
    wf.link(dec, 0, prev, "images")
    lua = lua_loader(wf, "flux1", (1160, 0), model=unet, choice="lua_flux.pth")
    ups = lua_branches(wf, lua, ks, vae, "flux1", 1024, 1160, 120, model=unet)
    wf.group("1. FLUX.1 [dev] text to image, 1024 px", [unet, clip, vae, pos, guide, neg, empty, ks, dec, prev])
    wf.group("2. LUA: latent x2 → 2048 px, x4 → 4096 px", [lua, *ups], GREEN)
    wf.note(t2i_note("FLUX.1 [dev]", ["flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors",
                                      "ae.safetensors"], "flux1",
                     "FLUX needs CFG 1.0 (the negative prompt is zeroed); FluxGuidance sets the distilled guidance."),
            NOTE_POS, (380, 420))
    return wf, "LUA: FLUX.1 [dev] 1024 px → 2048 / 4096 px"


def build_sd35(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    wf = Workflow("lua_sd35_t2i_x2_x4", oi)
    ckpt = wf.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd3.5_large_fp8_scaled.safetensors"},
                  size=(320, 98), models=[MODELS["sd3.5_large_fp8_scaled.safetensors"]])
    pos = wf.add("CLIPTextEncode", (360, 0), {"text": PROMPT}, size=(400, 160), title="CLIP Text Encode (Prompt)")
    neg = wf.add("CLIPTextEncode", (360, 200), {"text": NEGATIVE}, size=(400, 120), title="CLIP Text Encode (Negative)")
    wf.link(ckpt, 1, pos, "clip")
    wf.link(ckpt, 1, neg, "clip")
    empty = wf.add("EmptySD3LatentImage", (360, 360), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=(300, 106))
    ks = wf.add("KSampler", (800, 0), {"seed": SEED, "steps": 28, "cfg": 4.5, "sampler_name": "euler",
                                       "scheduler": "sgm_uniform", "denoise": 1.0}, size=(320, 262))
    wf.link(ckpt, 0, ks, "model")
    wf.link(pos, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(empty, 0, ks, "latent_image")
    dec = wf.add("VAEDecode", (800, 320), size=(210, 46), title="VAE Decode (1024 px)")
    wf.link(ks, 0, dec, "samples")
    wf.link(ckpt, 2, dec, "vae")
    prev = wf.add("PreviewImage", (800, 410), size=(320, 300), title="Preview (1024 px)")
    wf.link(dec, 0, prev, "images")
    lua = lua_loader(wf, "sd3", (1160, 0), model=ckpt)
    ups = lua_branches(wf, lua, ks, ckpt, "sd35", 1024, 1160, 120, model=ckpt)
    wf.group("1. SD3.5 Large text to image, 1024 px", [ckpt, pos, neg, empty, ks, dec, prev])
    wf.group("2. LUA: latent x2 → 2048 px, x4 → 4096 px", [lua, *ups], GREEN)
    wf.note(t2i_note("SD3.5 Large", ["sd3.5_large_fp8_scaled.safetensors"], "sd3",
                     "The SD3 adapter also works with SD3.5 Medium and other SD3-family checkpoints (same VAE)."),
            NOTE_POS, (380, 420))
    return wf, "LUA: SD3.5 1024 px → 2048 / 4096 px"


def build_sdxl(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    wf = Workflow("lua_sdxl_t2i_x2_x4", oi)
    ckpt = wf.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_base_1.0.safetensors"},
                  size=(320, 98), models=[MODELS["sd_xl_base_1.0.safetensors"]])
    pos = wf.add("CLIPTextEncode", (360, 0), {"text": PROMPT}, size=(400, 160), title="CLIP Text Encode (Prompt)")
    neg = wf.add("CLIPTextEncode", (360, 200), {"text": NEGATIVE}, size=(400, 120), title="CLIP Text Encode (Negative)")
    wf.link(ckpt, 1, pos, "clip")
    wf.link(ckpt, 1, neg, "clip")
    empty = wf.add("EmptyLatentImage", (360, 360), {"width": 1024, "height": 1024, "batch_size": 1}, size=(300, 106))
    ks = wf.add("KSampler", (800, 0), {"seed": SEED, "steps": 25, "cfg": 7.0, "sampler_name": "dpmpp_2m",
                                       "scheduler": "karras", "denoise": 1.0}, size=(320, 262))
    wf.link(ckpt, 0, ks, "model")
    wf.link(pos, 0, ks, "positive")
    wf.link(neg, 0, ks, "negative")
    wf.link(empty, 0, ks, "latent_image")
    dec = wf.add("VAEDecode", (800, 320), size=(210, 46), title="VAE Decode (1024 px)")
    wf.link(ks, 0, dec, "samples")
    wf.link(ckpt, 2, dec, "vae")
    prev = wf.add("PreviewImage", (800, 410), size=(320, 300), title="Preview (1024 px)")
    wf.link(dec, 0, prev, "images")
    lua = lua_loader(wf, "sdxl", (1160, 0), model=ckpt)
    ups = lua_branches(wf, lua, ks, ckpt, "sdxl", 1024, 1160, 120, model=ckpt)
    wf.group("1. SDXL text to image, 1024 px", [ckpt, pos, neg, empty, ks, dec, prev])
    wf.group("2. LUA: latent x2 → 2048 px, x4 → 4096 px", [lua, *ups], GREEN)
    wf.note(t2i_note("SDXL", ["sd_xl_base_1.0.safetensors"], "sdxl",
                     "Any SDXL-based checkpoint works (same VAE latent space); the SD1.5 adapter does not."),
            NOTE_POS, (380, 420))
    return wf, "LUA: SDXL 1024 px → 2048 / 4096 px"


def build_sd15_hires(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    wf = Workflow("lua_sd15_hires_fix", oi)
    ckpt = wf.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
                  size=(320, 98), models=[MODELS["v1-5-pruned-emaonly-fp16.safetensors"]])
    pos = wf.add("CLIPTextEncode", (360, 0), {"text": PROMPT}, size=(400, 160), title="CLIP Text Encode (Prompt)")
    neg = wf.add("CLIPTextEncode", (360, 200), {"text": NEGATIVE}, size=(400, 120), title="CLIP Text Encode (Negative)")
    wf.link(ckpt, 1, pos, "clip")
    wf.link(ckpt, 1, neg, "clip")
    empty = wf.add("EmptyLatentImage", (360, 360), {"width": 512, "height": 512, "batch_size": 1}, size=(300, 106))
    ks1 = wf.add("KSampler", (800, 0), {"seed": SEED, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
                                        "scheduler": "normal", "denoise": 1.0}, size=(320, 262),
                 title="KSampler (512 px)")
    wf.link(ckpt, 0, ks1, "model")
    wf.link(pos, 0, ks1, "positive")
    wf.link(neg, 0, ks1, "negative")
    wf.link(empty, 0, ks1, "latent_image")
    dec1 = wf.add("VAEDecode", (800, 320), size=(210, 46), title="VAE Decode (512 px)")
    wf.link(ks1, 0, dec1, "samples")
    wf.link(ckpt, 2, dec1, "vae")
    prev1 = wf.add("PreviewImage", (800, 410), size=(320, 300), title="Preview (512 px)")
    wf.link(dec1, 0, prev1, "images")
    lua = lua_loader(wf, "sd15", (1160, 0), model=ckpt)
    up = wf.add("LUALatentUpscale", (1160, 120), {"scale_by": 2.0, "tile_size": 0, "tile_overlap": 16},
                size=(340, 130), title="LUA Latent Upscale x2 (1024 px)")
    wf.link(lua, 0, up, "lua_model")
    wf.link(ks1, 0, up, "samples")
    wf.link(ckpt, 0, up, "model")
    dec_lua = wf.add("VAEDecode", (1160, 300), size=(210, 46), title="VAE Decode (LUA only)")
    wf.link(up, 0, dec_lua, "samples")
    wf.link(ckpt, 2, dec_lua, "vae")
    prev_lua = wf.add("PreviewImage", (1160, 390), size=(320, 300), title="Preview: LUA x2, no second pass")
    wf.link(dec_lua, 0, prev_lua, "images")
    ks2 = wf.add("KSampler", (1600, 0), {"seed": SEED, "steps": 15, "cfg": 7.0, "sampler_name": "euler",
                                         "scheduler": "normal", "denoise": 0.4}, size=(320, 262),
                 title="KSampler (hires pass, denoise 0.4)")
    wf.link(ckpt, 0, ks2, "model")
    wf.link(pos, 0, ks2, "positive")
    wf.link(neg, 0, ks2, "negative")
    wf.link(up, 0, ks2, "latent_image")
    dec2 = wf.add("VAEDecode", (1600, 320), size=(210, 46), title="VAE Decode (1024 px)")
    wf.link(ks2, 0, dec2, "samples")
    wf.link(ckpt, 2, dec2, "vae")
    save = wf.add("SaveImage", (1600, 410), {"filename_prefix": "LUA/sd15_hires_fix_1024"}, size=(320, 300))
    wf.link(dec2, 0, save, "images")
    wf.group("1. SD1.5 text to image, 512 px", [ckpt, pos, neg, empty, ks1, dec1, prev1])
    wf.group("2. LUA x2 (not Upscale Latent)", [lua, up, dec_lua, prev_lua], GREEN)
    wf.group("3. second pass, denoise 0.4", [ks2, dec2, save], PURPLE)
    wf.note("\n".join([
        "## SD1.5 hires fix with LUA",
        "",
        "The classic two-pass *hires fix* upscales the latent with **Upscale Latent** (nearest/bilinear), which "
        "blurs it, so the second KSampler needs a high denoise (0.5–0.6) and re-invents detail. "
        "**LUA Latent Upscale** gives a learned 2x latent instead, so a second pass at denoise **0.3–0.5** "
        "(0.4 here) is meant to be enough and stays closer to the first image. The bundled SD1.5 adapter is a "
        "**preview** (trained briefly on a CPU): its latent is still soft, so compare with your usual denoise. "
        "The preview in group 2 shows LUA alone.",
        "",
        "**Model files:**",
        f"- `models/checkpoints/v1-5-pruned-emaonly-fp16.safetensors` "
        f"([link]({MODELS['v1-5-pruned-emaonly-fp16.safetensors']['url']}))",
        f"- `{lua_weight('sd15')}` ships with ComfyUI-LUA; **Load LUA Model** is on `auto` and picks it from the "
        "connected model's latent family.",
        "",
        "Any SD1.5-based checkpoint works with the SD1.5 adapter.",
    ]) + "\n", NOTE_POS, (380, 420))
    return wf, "LUA: SD1.5 hires fix (LUA x2 + second pass)"


def build_flux2(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    wf = Workflow("lua_flux2_t2i_x2_x4", oi)
    unet = wf.add("UNETLoader", (0, 0), {"unet_name": "flux2_dev_fp8mixed.safetensors", "weight_dtype": "default"},
                  size=(320, 82), models=[MODELS["flux2_dev_fp8mixed.safetensors"]])
    clip = wf.add("CLIPLoader", (0, 130), {"clip_name": "mistral_3_small_flux2_bf16.safetensors", "type": "flux2",
                                          "device": "default"},
                  size=(320, 106), models=[MODELS["mistral_3_small_flux2_bf16.safetensors"]])
    vae = wf.add("VAELoader", (0, 290), {"vae_name": "flux2-vae.safetensors"}, size=(320, 58),
                 models=[MODELS["flux2-vae.safetensors"]])
    pos = wf.add("CLIPTextEncode", (360, 0), {"text": PROMPT}, size=(400, 160), title="CLIP Text Encode (Prompt)")
    wf.link(clip, 0, pos, "clip")
    guide = wf.add("FluxGuidance", (360, 200), {"guidance": 4.0}, size=(300, 58))
    wf.link(pos, 0, guide, "conditioning")
    guider = wf.add("BasicGuider", (360, 300), size=(240, 46))
    wf.link(unet, 0, guider, "model")
    wf.link(guide, 0, guider, "conditioning")
    noise = wf.add("RandomNoise", (360, 390), {"noise_seed": SEED}, size=(300, 82))
    sampler = wf.add("KSamplerSelect", (360, 510), {"sampler_name": "euler"}, size=(300, 58))
    sched = wf.add("Flux2Scheduler", (360, 610), {"steps": 20, "width": 1024, "height": 1024}, size=(300, 106))
    empty = wf.add("EmptyFlux2LatentImage", (360, 760), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=(300, 106))
    sca = wf.add("SamplerCustomAdvanced", (800, 0), size=(300, 330))
    wf.link(noise, 0, sca, "noise")
    wf.link(guider, 0, sca, "guider")
    wf.link(sampler, 0, sca, "sampler")
    wf.link(sched, 0, sca, "sigmas")
    wf.link(empty, 0, sca, "latent_image")
    dec = wf.add("VAEDecode", (800, 380), size=(210, 46), title="VAE Decode (1024 px)")
    wf.link(sca, 0, dec, "samples")
    wf.link(vae, 0, dec, "vae")
    prev = wf.add("PreviewImage", (800, 470), size=(320, 300), title="Preview (1024 px)")
    wf.link(dec, 0, prev, "images")
    lua = lua_loader(wf, "flux2", (1160, 0), model=unet)
    ups = lua_branches(wf, lua, sca, vae, "flux2", 1024, 1160, 120, model=unet)
    wf.group("1. FLUX.2 [dev] text to image, 1024 px", [unet, clip, vae, pos, guide, guider, noise, sampler, sched,
                                                        empty, sca, dec, prev])
    wf.group("2. LUA: latent x2 → 2048 px, x4 → 4096 px", [lua, *ups], GREEN)
    wf.note(t2i_note("FLUX.2 [dev]", ["flux2_dev_fp8mixed.safetensors", "mistral_3_small_flux2_bf16.safetensors",
                                      "flux2-vae.safetensors"], "flux2",
                     "FLUX.2 latents are 128 channels at 1/16 (2x2 packed 32-channel latents); the adapter unpacks, "
                     "upscales and packs them again, so LUA sits between the sampler and VAE Decode as usual."),
            NOTE_POS, (380, 460))
    return wf, "LUA: FLUX.2 [dev] 1024 px → 2048 / 4096 px"


def build_image_in(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    """The image-in workflow; node ids kept from the first version (scripts/run_demo.py reads it)."""
    wf = Workflow("lua_image_upscale_x2_x4", oi)
    load = wf.add("LoadImage", (0, 0), {"image": EXAMPLE_IMAGE}, size=(320, 360), node_id=1)
    scale = wf.add("ImageScale", (360, 0), {"upscale_method": "lanczos", "width": 512, "height": 512,
                                            "crop": "center"}, size=(300, 130), node_id=2)
    vae = wf.add("VAELoader", (360, 200), {"vae_name": "taef1"}, size=(300, 58), node_id=3)
    enc = wf.add("VAEEncode", (700, 0), size=(210, 46), node_id=4)
    lua = lua_loader(wf, "flux1", (700, 200), node_id=5)
    wf.link(load, 0, scale, "image")
    wf.link(scale, 0, enc, "pixels")
    wf.link(vae, 0, enc, "vae")
    made = []
    for nid, scale_by, y in ((6, 2.0, 0), (7, 4.0, 360)):
        up = wf.add("LUALatentUpscale", (1100, y), {"scale_by": scale_by, "tile_size": 0, "tile_overlap": 16},
                    size=(340, 130), title=f"LUA Latent Upscale x{int(scale_by)}", node_id=nid)
        wf.link(lua, 0, up, "lua_model")
        wf.link(enc, 0, up, "samples")
        made.append(up)
    saves = []
    for nid, up, y in ((8, made[0], 0), (9, made[1], 360)):
        dec = wf.add("VAEDecode", (1480, y), size=(210, 46), node_id=nid)
        wf.link(up, 0, dec, "samples")
        wf.link(vae, 0, dec, "vae")
        saves.append(dec)
    for nid, dec, y, name in ((10, saves[0], 0, "LUA/x2"), (11, saves[1], 360, "LUA/x4")):
        save = wf.add("SaveImage", (1730, y), {"filename_prefix": name}, size=(320, 300), node_id=nid)
        wf.link(dec, 0, save, "images")
        saves.append(save)
    wf.group("1. image → latent (FLUX.1 tiny autoencoder)", [load, scale, vae, enc])
    wf.group("2. LUA x2 / x4 → one decode each", [lua, *made, *saves], GREEN)
    wf.note("\n".join([
        "## Image in: LUA without a diffusion model",
        "",
        "Encodes a photo into a FLUX.1 latent with the tiny autoencoder **taef1**, upscales the latent x2 and x4 "
        "with LUA and decodes once. It needs no diffusion model, so it is the quickest way to see LUA work.",
        "",
        "**Files:**",
        "- `models/vae_approx/taef1_encoder.safetensors` and `taef1_decoder.safetensors` (TAESD family by Ollin "
        "Boer Bohan, MIT; see github.com/madebyollin/taesd). With the full FLUX.1 VAE (`ae.safetensors` in "
        "`models/vae`) the result is sharper.",
        f"- `{lua_weight('flux1')}` ships with ComfyUI-LUA (a **preview** adapter: trained briefly on a CPU, "
        "ahead of latent interpolation but still behind decode + a pixel upscaler); the paper's `lua_flux.pth` "
        "works too.",
        "",
        "It starts on ComfyUI's own `example.png`: put your photo in **Load Image** instead; **Upscale Image** sets "
        "the working size (512 px here).",
    ]) + "\n", NOTE_POS, (380, 360))
    return wf, "LUA: image in → latent x2 / x4 (tiny autoencoder)"


def build_compare(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    wf = Workflow("lua_compare_upscalers", oi)
    load = wf.add("LoadImage", (0, 0), {"image": EXAMPLE_IMAGE}, size=(320, 360))
    scale = wf.add("ImageScale", (360, 0), {"upscale_method": "lanczos", "width": 512, "height": 512,
                                            "crop": "center"}, size=(300, 130))
    vae = wf.add("VAELoader", (360, 200), {"vae_name": "taef1"}, size=(300, 58))
    enc = wf.add("VAEEncode", (360, 300), size=(210, 46))
    wf.link(load, 0, scale, "image")
    wf.link(scale, 0, enc, "pixels")
    wf.link(vae, 0, enc, "vae")
    lua = lua_loader(wf, "flux1", (700, 0))
    up = wf.add("LUALatentUpscale", (700, 120), {"scale_by": 2.0, "tile_size": 0, "tile_overlap": 16},
                size=(340, 130), title="LUA Latent Upscale x2")
    wf.link(lua, 0, up, "lua_model")
    wf.link(enc, 0, up, "samples")
    dec_a = wf.add("VAEDecode", (1080, 120), size=(210, 46))
    wf.link(up, 0, dec_a, "samples")
    wf.link(vae, 0, dec_a, "vae")
    save_a = wf.add("SaveImage", (1330, 0), {"filename_prefix": "LUA/compare_1_lua_x2"}, size=(320, 300),
                    title="1. LUA x2")
    wf.link(dec_a, 0, save_a, "images")
    bis = wf.add("LatentUpscaleBy", (700, 480), {"upscale_method": "bislerp", "scale_by": 2.0}, size=(340, 82),
                 title="Upscale Latent By x2 (bislerp)")
    wf.link(enc, 0, bis, "samples")
    dec_b = wf.add("VAEDecode", (1080, 480), size=(210, 46))
    wf.link(bis, 0, dec_b, "samples")
    wf.link(vae, 0, dec_b, "vae")
    save_b = wf.add("SaveImage", (1330, 420), {"filename_prefix": "LUA/compare_2_bislerp_x2"}, size=(320, 300),
                    title="2. Upscale Latent By (bislerp) x2")
    wf.link(dec_b, 0, save_b, "images")
    dec_c = wf.add("VAEDecode", (700, 900), size=(210, 46), title="VAE Decode (512 px)")
    wf.link(enc, 0, dec_c, "samples")
    wf.link(vae, 0, dec_c, "vae")
    pix = wf.add("ImageScaleBy", (1000, 900), {"upscale_method": "lanczos", "scale_by": 2.0}, size=(300, 82),
                 title="Upscale Image By x2 (lanczos)")
    wf.link(dec_c, 0, pix, "image")
    save_c = wf.add("SaveImage", (1330, 840), {"filename_prefix": "LUA/compare_3_pixel_lanczos_x2"},
                    size=(320, 300), title="3. decode → Upscale Image By (lanczos) x2")
    wf.link(pix, 0, save_c, "images")
    wf.group("input → latent", [load, scale, vae, enc])
    wf.group("1. LUA (latent, learned)", [lua, up, dec_a, save_a], GREEN)
    wf.group("2. ComfyUI latent upscale (bislerp)", [bis, dec_b, save_b], YELLOW)
    wf.group("3. decode, then pixel upscale", [dec_c, pix, save_c], PURPLE)
    wf.note("\n".join([
        "## LUA vs the two usual routes, all at x2",
        "",
        "1. **LUA Latent Upscale**: a learned x2 in latent space, then one decode.",
        "2. **Upscale Latent By (bislerp)**: ComfyUI's interpolation in latent space; decoding an interpolated latent "
        "gives soft, smeared detail, which is why a hires-fix second pass is usually needed.",
        "3. **VAE Decode → Upscale Image By (lanczos)**: decode at the small size, then resize pixels: no new "
        "detail.",
        "",
        "Runs with the FLUX.1 tiny autoencoder (taef1) and no diffusion model; all three outputs are 1024 px from "
        "the same 512 px latent. Open them side by side (or in an image-compare node) to judge.",
    ]) + "\n", NOTE_POS, (380, 380))
    return wf, "LUA vs Upscale Latent By (bislerp) vs pixel upscale"


BUILDERS = {f.__name__: f for f in (build_flux1, build_sd35, build_sdxl, build_sd15_hires, build_flux2,
                                    build_image_in, build_compare)}


def build_all(object_info: Mapping[str, Any], only: Optional[Sequence[str]] = None,
              out_dir: Path = WORKFLOWS) -> list[Path]:
    """Build every workflow (or those whose file stem is in ``only``) and write them; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for builder in BUILDERS.values():
        wf, title = builder(object_info)
        if only and wf.name not in only:
            continue
        path = out_dir / f"{wf.name}.json"
        path.write_text(json.dumps(wf.to_json(title), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _object_info(path: Optional[Path]) -> dict[str, Any]:
    if path is not None:
        return json.loads(path.read_text())
    from scripts.comfy_server import ComfyServer

    with ComfyServer() as server:
        return server.object_info()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--object-info", type=Path, default=None, help="saved /object_info JSON (else a server runs)")
    parser.add_argument("--only", nargs="*", default=None, help="workflow file stems to write")
    args = parser.parse_args(argv)
    for path in build_all(_object_info(args.object_info), args.only):
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
