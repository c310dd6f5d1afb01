"""Write the drag-and-drop workflows in ``workflows/`` (ComfyUI UI format, version 0.4).

    .venv/bin/python -m scripts.build_workflows [--object-info FILE] [--only NAME ...]

Node sockets (inputs, outputs and their types) and the order of widget values are
taken from a real ComfyUI's ``/object_info`` (a file, or a server started here with
``tests/support/comfy_server.py``), so the files match ComfyUI 0.3.75 exactly; the
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
from typing import Any, Literal, Mapping, Optional, Sequence, Union

from lua_core.families import channel_twins, get_family
from tests.support.workflow_api import _is_widget, widget_names

REPO = Path(__file__).resolve().parent.parent
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


def adapter_status(family: str) -> str:
    """How the workflow text describes the bundled adapter, from its manifest status."""
    from lua_core.checkpoints.manifest import Manifest

    entry = Manifest.load().by_filename(lua_weight(family))
    if entry is not None and entry.status == "release":
        return ("trained on a CPU; it meets the pack's ship bar against decode + a pixel upscaler, see its model "
                "card")
    return "a **preview**: trained briefly on a CPU; decode + a pixel upscaler still gives a cleaner image"


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
        wf.link(vae, 0 if vae.type != "CheckpointLoaderSimple" else 2, up, "vae")  # the teacher: the VAE we decode with
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


def decode_out(wf: Workflow, samples: Node, vae: tuple[Node, int], dec_pos: Sequence[float],
               out_pos: Sequence[float], prefix: Optional[str] = None, *, dec_title: Optional[str] = None,
               out_title: Optional[str] = None) -> list[Node]:
    """VAE Decode of ``samples`` into a Save Image (with ``prefix``) or else a Preview Image: [decode, output]."""
    dec = wf.add("VAEDecode", dec_pos, size=(210, 46), title=dec_title)
    wf.link(samples, 0, dec, "samples")
    wf.link(*vae, dec, "vae")
    if prefix is None:
        out = wf.add("PreviewImage", out_pos, size=(320, 300), title=out_title)
    else:
        out = wf.add("SaveImage", out_pos, {"filename_prefix": prefix}, size=(320, 300), title=out_title)
    wf.link(dec, 0, out, "images")
    return [dec, out]


def markdown(*lines: str) -> str:
    """A note's Markdown text: the lines, each ended by a newline."""
    return "".join(f"{line}\n" for line in lines)


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
                  "file there yourself, or pick `auto` to fall back to the bundled adapter "
                  f"`{lua_weight(lua_family)}` ({adapter_status(lua_family)})."]
    else:
        lines += [f"- **Load LUA Model** is on `auto`: it reads the connected model's latent family and picks the "
                  f"best adapter on disk, today the bundled `{lua_weight(lua_family)}` ({adapter_status(lua_family)})."]
    twins = " or ".join(" from ".join(f.label for f in group) for group in channel_twins())
    lines += ["", f"The MODEL wires let LUA refuse an adapter of another latent family (channel counts cannot tell "
              f"{twins}).", extra]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------- text to image, per family
@dataclass(frozen=True)
class Loader:
    """A model loader in the graph's first column; the ``MODELS`` files among its widgets go into the note."""

    type: str
    y: float
    size: tuple[float, float]
    widgets: Mapping[str, Any]

    @property
    def files(self) -> list[str]:
        """The model files it loads."""
        return [v for v in self.widgets.values() if isinstance(v, str) and v in MODELS]


@dataclass(frozen=True)
class Sampling:
    """KSampler settings, or with ``sigmas`` (a scheduler node type) SamplerCustomAdvanced with a BasicGuider."""

    steps: int
    cfg: float = 1.0
    sampler_name: str = "euler"
    scheduler: str = "normal"
    sigmas: Optional[str] = None


@dataclass(frozen=True)
class Family:
    """What the text-to-image graph of one model family differs in."""

    prefix: str  # workflow file stem lua_<prefix>_t2i_x2_x4 and SaveImage prefix
    label: str  # group and note heading
    lua_family: str
    loaders: tuple[Loader, ...]
    latent: str  # empty latent node type
    sampling: Sampling
    negative: Literal["prompt", "zero"] = "prompt"  # KSampler's: the negative prompt, or the prompt zeroed out
    guidance: Optional[float] = None  # FluxGuidance on the prompt
    px: int = 1024
    sampler_title: Optional[str] = None
    short_label: str = ""  # in the workflow title, when shorter than ``label``
    lua_choice: Optional[str] = None  # Load LUA Model value instead of auto
    note: str = ""
    note_size: tuple[float, float] = (380, 420)

    @property
    def files(self) -> list[str]:
        """The model files of all its loaders, in order."""
        return [f for loader in self.loaders for f in loader.files]


@dataclass
class T2I:
    """The base text-to-image graph's nodes that later stages connect to."""

    model: Node
    vae: tuple[Node, int]
    positive: Node
    negative: Optional[Node]
    samples: Node


def checkpoint(ckpt_name: str) -> tuple[Loader, ...]:
    """A single Load Checkpoint (MODEL, CLIP and VAE)."""
    return (Loader("CheckpointLoaderSimple", 0, (320, 98), {"ckpt_name": ckpt_name}),)


def _output(nodes: Sequence[Node], otype: str) -> tuple[Node, int]:
    """The first output of type ``otype`` among ``nodes``, as (node, slot)."""
    for node in nodes:
        for slot, out in enumerate(node.outputs):
            if out["type"] == otype:
                return node, slot
    raise ValueError(f"no {otype} output among {[n.type for n in nodes]}")


def t2i_base(wf: Workflow, fam: Family) -> T2I:
    """Loaders, prompt conditioning, empty latent, sampler, decode and preview, in group 1."""
    first = len(wf.nodes)
    loaders = [wf.add(ld.type, (0, ld.y), ld.widgets, size=ld.size, models=[MODELS[f] for f in ld.files])
               for ld in fam.loaders]
    model, clip, vae = (_output(loaders, t) for t in ("MODEL", "CLIP", "VAE"))
    pos = wf.add("CLIPTextEncode", (360, 0), {"text": PROMPT}, size=(400, 160), title="CLIP Text Encode (Prompt)")
    wf.link(*clip, pos, "clip")
    cond = pos
    if fam.guidance is not None:
        cond = wf.add("FluxGuidance", (360, 200), {"guidance": fam.guidance}, size=(300, 58))
        wf.link(pos, 0, cond, "conditioning")
    s, neg = fam.sampling, None
    if s.sigmas:
        guider = wf.add("BasicGuider", (360, 300), size=(240, 46))
        wf.link(*model, guider, "model")
        wf.link(cond, 0, guider, "conditioning")
        noise = wf.add("RandomNoise", (360, 390), {"noise_seed": SEED}, size=(300, 82))
        select = wf.add("KSamplerSelect", (360, 510), {"sampler_name": s.sampler_name}, size=(300, 58))
        sigmas = wf.add(s.sigmas, (360, 610), {"steps": s.steps, "width": fam.px, "height": fam.px},
                        size=(300, 106))
        sampler_type, widgets, size, latent_y, decode_y = "SamplerCustomAdvanced", {}, (300, 330), 760, 380
        sources = {"noise": (noise, 0), "guider": (guider, 0), "sampler": (select, 0), "sigmas": (sigmas, 0)}
    else:
        if fam.negative == "zero":
            neg = wf.add("ConditioningZeroOut", (360, 300), size=(300, 26))
            wf.link(pos, 0, neg, "conditioning")
            latent_y = 370
        else:
            neg = wf.add("CLIPTextEncode", (360, 200), {"text": NEGATIVE}, size=(400, 120),
                         title="CLIP Text Encode (Negative)")
            wf.link(*clip, neg, "clip")
            latent_y = 360
        sampler_type, size, decode_y = "KSampler", (320, 262), 320
        widgets = {"seed": SEED, "steps": s.steps, "cfg": s.cfg, "sampler_name": s.sampler_name,
                   "scheduler": s.scheduler, "denoise": 1.0}
        sources = {"model": model, "positive": (cond, 0), "negative": (neg, 0)}
    empty = wf.add(fam.latent, (360, latent_y), {"width": fam.px, "height": fam.px, "batch_size": 1},
                   size=(300, 106))
    sources["latent_image"] = (empty, 0)
    sampler = wf.add(sampler_type, (800, 0), widgets, size=size, title=fam.sampler_title)
    for name, (src, slot) in sources.items():
        wf.link(src, slot, sampler, name)
    decode_out(wf, sampler, vae, (800, decode_y), (800, decode_y + 90), dec_title=f"VAE Decode ({fam.px} px)",
               out_title=f"Preview ({fam.px} px)")
    wf.group(f"1. {fam.label} text to image, {fam.px} px", wf.nodes[first:])
    return T2I(model[0], vae, cond, neg, sampler)


def build_t2i(oi: Mapping[str, Any], fam: Family) -> tuple[Workflow, str]:
    """The family's base graph, then LUA x2 and x4 from its latent, each decoded and saved."""
    wf = Workflow(f"lua_{fam.prefix}_t2i_x2_x4", oi)
    base = t2i_base(wf, fam)
    lua = lua_loader(wf, fam.lua_family, (1160, 0), model=base.model, choice=fam.lua_choice)
    ups = lua_branches(wf, lua, base.samples, base.vae[0], fam.prefix, fam.px, 1160, 120, model=base.model)
    wf.group(f"2. LUA: latent x2 → {fam.px * 2} px, x4 → {fam.px * 4} px", [lua, *ups], GREEN)
    wf.note(t2i_note(fam.label, fam.files, fam.lua_family, fam.note), NOTE_POS, fam.note_size)
    return wf, f"LUA: {fam.short_label or fam.label} {fam.px} px → {fam.px * 2} / {fam.px * 4} px"


FLUX1 = Family(
    "flux1", "FLUX.1 [dev]", "flux1",
    (Loader("UNETLoader", 0, (320, 82), {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}),
     Loader("DualCLIPLoader", 130, (320, 130), {"clip_name1": "clip_l.safetensors",
                                                "clip_name2": "t5xxl_fp16.safetensors", "type": "flux",
                                                "device": "default"}),
     Loader("VAELoader", 310, (320, 58), {"vae_name": "ae.safetensors"})),
    "EmptySD3LatentImage", Sampling(20, 1.0, scheduler="simple"), negative="zero", guidance=3.5,
    lua_choice="lua_flux.pth",
    note="FLUX needs CFG 1.0 (the negative prompt is zeroed); FluxGuidance sets the distilled guidance.")
SD35 = Family(
    "sd35", "SD3.5 Large", "sd3", checkpoint("sd3.5_large_fp8_scaled.safetensors"), "EmptySD3LatentImage",
    Sampling(28, 4.5, scheduler="sgm_uniform"), short_label="SD3.5",
    note="The SD3 adapter also works with SD3.5 Medium and other SD3-family checkpoints (same VAE).")
SDXL = Family(
    "sdxl", "SDXL", "sdxl", checkpoint("sd_xl_base_1.0.safetensors"), "EmptyLatentImage",
    Sampling(25, 7.0, "dpmpp_2m", "karras"),
    note="Any SDXL-based checkpoint works (same VAE latent space); the SD1.5 adapter does not.")
SD15 = Family(
    "sd15", "SD1.5", "sd15", checkpoint("v1-5-pruned-emaonly-fp16.safetensors"), "EmptyLatentImage",
    Sampling(20, 7.0), px=512, sampler_title="KSampler (512 px)")
FLUX2 = Family(
    "flux2", "FLUX.2 [dev]", "flux2",
    (Loader("UNETLoader", 0, (320, 82), {"unet_name": "flux2_dev_fp8mixed.safetensors", "weight_dtype": "default"}),
     Loader("CLIPLoader", 130, (320, 106), {"clip_name": "mistral_3_small_flux2_bf16.safetensors", "type": "flux2",
                                            "device": "default"}),
     Loader("VAELoader", 290, (320, 58), {"vae_name": "flux2-vae.safetensors"})),
    "EmptyFlux2LatentImage", Sampling(20, sigmas="Flux2Scheduler"), guidance=4.0,
    note="FLUX.2 latents are 128 channels at 1/16 (2x2 packed 32-channel latents); the adapter unpacks, "
         "upscales and packs them again, so LUA sits between the sampler and VAE Decode as usual.",
    note_size=(380, 460))


def build_flux1(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    """FLUX.1 [dev] at 1024 px, then LUA x2 / x4."""
    return build_t2i(oi, FLUX1)


def build_sd35(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    """SD3.5 Large at 1024 px, then LUA x2 / x4."""
    return build_t2i(oi, SD35)


def build_sdxl(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    """SDXL at 1024 px, then LUA x2 / x4."""
    return build_t2i(oi, SDXL)


def build_flux2(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    """FLUX.2 [dev] at 1024 px, then LUA x2 / x4."""
    return build_t2i(oi, FLUX2)


def build_sd15_hires(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    """SD1.5 at 512 px, LUA x2, then a second KSampler pass at low denoise."""
    wf = Workflow("lua_sd15_hires_fix", oi)
    base = t2i_base(wf, SD15)
    ckpt, pos, neg, ks1 = base.model, base.positive, base.negative, base.samples
    lua = lua_loader(wf, SD15.lua_family, (1160, 0), model=ckpt)
    up = wf.add("LUALatentUpscale", (1160, 120), {"scale_by": 2.0, "tile_size": 0, "tile_overlap": 16},
                size=(340, 130), title="LUA Latent Upscale x2 (1024 px)")
    wf.link(lua, 0, up, "lua_model")
    wf.link(ks1, 0, up, "samples")
    wf.link(ckpt, 0, up, "model")
    wf.link(*base.vae, up, "vae")
    lua_only = decode_out(wf, up, base.vae, (1160, 300), (1160, 390), dec_title="VAE Decode (LUA only)",
                          out_title="Preview: LUA x2, no second pass")
    ks2 = wf.add("KSampler", (1600, 0), {"seed": SEED, "steps": 15, "cfg": 7.0, "sampler_name": "euler",
                                         "scheduler": "normal", "denoise": 0.4}, size=(320, 262),
                 title="KSampler (hires pass, denoise 0.4)")
    wf.link(ckpt, 0, ks2, "model")
    wf.link(pos, 0, ks2, "positive")
    wf.link(neg, 0, ks2, "negative")
    wf.link(up, 0, ks2, "latent_image")
    hires = decode_out(wf, ks2, base.vae, (1600, 320), (1600, 410), "LUA/sd15_hires_fix_1024",
                       dec_title="VAE Decode (1024 px)")
    wf.group("2. LUA x2 (not Upscale Latent)", [lua, up, *lua_only], GREEN)
    wf.group("3. second pass, denoise 0.4", [ks2, *hires], PURPLE)
    wf.note(markdown(
        "## SD1.5 hires fix with LUA",
        "",
        "The classic two-pass *hires fix* upscales the latent with **Upscale Latent** (nearest/bilinear), which "
        "blurs it, so the second KSampler needs a high denoise (0.5–0.6) and re-invents detail. "
        "**LUA Latent Upscale** gives a learned 2x latent instead, so a second pass at denoise **0.3–0.5** "
        "(0.4 here) is meant to be enough and stays closer to the first image. The bundled SD1.5 adapter is "
        f"{adapter_status('sd15')}; compare with your usual denoise. The preview in group 2 shows LUA alone.",
        "",
        "**Model files:**",
        f"- `models/checkpoints/v1-5-pruned-emaonly-fp16.safetensors` "
        f"([link]({MODELS['v1-5-pruned-emaonly-fp16.safetensors']['url']}))",
        f"- `{lua_weight('sd15')}` ships with ComfyUI-LUA; **Load LUA Model** is on `auto` and picks it from the "
        "connected model's latent family.",
        "",
        "Any SD1.5-based checkpoint works with the SD1.5 adapter.",
    ), NOTE_POS, (380, 420))
    return wf, "LUA: SD1.5 hires fix (LUA x2 + second pass)"


def encode_example(wf: Workflow, enc_pos: Sequence[float],
                   node_ids: Sequence[Optional[int]] = (None,) * 4) -> list[Node]:
    """Load Image (``example.png``), Upscale Image to 512 px and VAE Encode with taef1:
    [load, scale, vae, encode]."""
    load = wf.add("LoadImage", (0, 0), {"image": EXAMPLE_IMAGE}, size=(320, 360), node_id=node_ids[0])
    scale = wf.add("ImageScale", (360, 0), {"upscale_method": "lanczos", "width": 512, "height": 512,
                                            "crop": "center"}, size=(300, 130), node_id=node_ids[1])
    vae = wf.add("VAELoader", (360, 200), {"vae_name": get_family("flux1").tae_name}, size=(300, 58),
                  node_id=node_ids[2])
    enc = wf.add("VAEEncode", enc_pos, size=(210, 46), node_id=node_ids[3])
    wf.link(load, 0, scale, "image")
    wf.link(scale, 0, enc, "pixels")
    wf.link(vae, 0, enc, "vae")
    return [load, scale, vae, enc]


def build_image_in(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    """The image-in workflow; node ids kept from the first version (scripts/run_demo.py reads it)."""
    wf = Workflow("lua_image_upscale_x2_x4", oi)
    encode = encode_example(wf, (700, 0), node_ids=(1, 2, 3, 4))
    vae, enc = encode[2], encode[3]
    lua = lua_loader(wf, "flux1", (700, 200), node_id=5)
    made = []
    for nid, scale_by, y in ((6, 2.0, 0), (7, 4.0, 360)):
        up = wf.add("LUALatentUpscale", (1100, y), {"scale_by": scale_by, "tile_size": 0, "tile_overlap": 16},
                    size=(340, 130), title=f"LUA Latent Upscale x{int(scale_by)}", node_id=nid)
        wf.link(lua, 0, up, "lua_model")
        wf.link(enc, 0, up, "samples")
        wf.link(vae, 0, up, "vae")
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
    wf.group("1. image → latent (FLUX.1 tiny autoencoder)", encode)
    wf.group("2. LUA x2 / x4 → one decode each", [lua, *made, *saves], GREEN)
    wf.note(markdown(
        "## Image in: LUA without a diffusion model",
        "",
        "Encodes a photo into a FLUX.1 latent with the tiny autoencoder **taef1**, upscales the latent x2 and x4 "
        "with LUA and decodes once. It needs no diffusion model, so it is the quickest way to see LUA work.",
        "",
        "**Files:**",
        "- `models/vae_approx/taef1_encoder.safetensors` and `taef1_decoder.safetensors` (TAESD family by Ollin "
        "Boer Bohan, MIT; see github.com/madebyollin/taesd). With the full FLUX.1 VAE (`ae.safetensors` in "
        "`models/vae`) the result is sharper.",
        f"- `{lua_weight('flux1')}` ships with ComfyUI-LUA ({adapter_status('flux1')}); the paper's `lua_flux.pth` "
        "works too.",
        "",
        "It starts on ComfyUI's own `example.png`: put your photo in **Load Image** instead; **Upscale Image** sets "
        "the working size (512 px here).",
    ), NOTE_POS, (380, 360))
    return wf, "LUA: image in → latent x2 / x4 (tiny autoencoder)"


def build_compare(oi: Mapping[str, Any]) -> tuple[Workflow, str]:
    wf = Workflow("lua_compare_upscalers", oi)
    encode = encode_example(wf, (360, 300))
    vae, enc = encode[2], encode[3]
    lua = lua_loader(wf, "flux1", (700, 0))
    up = wf.add("LUALatentUpscale", (700, 120), {"scale_by": 2.0, "tile_size": 0, "tile_overlap": 16},
                size=(340, 130), title="LUA Latent Upscale x2")
    wf.link(lua, 0, up, "lua_model")
    wf.link(enc, 0, up, "samples")
    wf.link(vae, 0, up, "vae")
    out_a = decode_out(wf, up, (vae, 0), (1080, 120), (1330, 0), "LUA/compare_1_lua_x2", out_title="1. LUA x2")
    bis = wf.add("LatentUpscaleBy", (700, 480), {"upscale_method": "bislerp", "scale_by": 2.0}, size=(340, 82),
                 title="Upscale Latent By x2 (bislerp)")
    wf.link(enc, 0, bis, "samples")
    out_b = decode_out(wf, bis, (vae, 0), (1080, 480), (1330, 420), "LUA/compare_2_bislerp_x2",
                       out_title="2. Upscale Latent By (bislerp) x2")
    dec_c = wf.add("VAEDecode", (700, 900), size=(210, 46), title="VAE Decode (512 px)")
    wf.link(enc, 0, dec_c, "samples")
    wf.link(vae, 0, dec_c, "vae")
    pix = wf.add("ImageScaleBy", (1000, 900), {"upscale_method": "lanczos", "scale_by": 2.0}, size=(300, 82),
                 title="Upscale Image By x2 (lanczos)")
    wf.link(dec_c, 0, pix, "image")
    save_c = wf.add("SaveImage", (1330, 840), {"filename_prefix": "LUA/compare_3_pixel_lanczos_x2"},
                    size=(320, 300), title="3. decode → Upscale Image By (lanczos) x2")
    wf.link(pix, 0, save_c, "images")
    wf.group("input → latent", encode)
    wf.group("1. LUA (latent, learned)", [lua, up, *out_a], GREEN)
    wf.group("2. ComfyUI latent upscale (bislerp)", [bis, *out_b], YELLOW)
    wf.group("3. decode, then pixel upscale", [dec_c, pix, save_c], PURPLE)
    wf.note(markdown(
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
    ), NOTE_POS, (380, 380))
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
    from tests.support.comfy_server import ComfyServer

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
