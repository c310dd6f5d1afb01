"""The drag-and-drop workflows in workflows/: structure, node definitions, widget values, model entries,
validation by the real ComfyUI 0.3.75, and real runs of the ones that need no diffusion model."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import pytest
from PIL import Image

from lua_core.checkpoints.manifest import Manifest
from lua_core.families import get_family
from tests.browser.workflow_support import (
    FAMILY,
    INPUT_IMAGE,
    LUA_LIGHT_RE,
    RUNNABLE,
    downloadable_entries,
    ensure_lua_weights,
    load_workflow,
    lua_file_name,
    lua_model_names,
    prepare_input_image,
    record_timing,
    save_prefix,
    selected_models,
    workflow_paths,
)
from tests.support.comfy_server import ComfyServer, PromptValidationError
from tests.support.workflow_api import FRONTEND_ONLY_TYPES, _extra_values, _is_widget, widget_names, workflow_to_api

REPO = Path(__file__).resolve().parents[2]
PATHS = workflow_paths()
IDS = [p.stem for p in PATHS]
EXPECTED = set(FAMILY)
# widget inputs that name a model file
MODEL_INPUTS = {"ckpt_name", "unet_name", "clip_name", "clip_name1", "clip_name2", "vae_name", "model_name"}
# tiny autoencoders ComfyUI lists in VAELoader when their files are in models/vae_approx
TAE_NAMES = {"taesd", "taesdxl", "taesd3", "taef1"}
# the front end only offers downloads from these hosts and with these suffixes (MissingModelsWarning.vue)
DOWNLOAD_HOSTS = ("https://huggingface.co/", "https://civitai.com/")
DOWNLOAD_SUFFIXES = (".safetensors", ".sft")


def _spec(info: Mapping[str, Any], name: str) -> list:
    for section in ("required", "optional"):
        if name in info["input"].get(section, {}):
            return info["input"][section][name]
    raise KeyError(name)


def _combo_options(spec: list) -> list | None:
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1:
        return list(spec[1].get("options", []))
    return None


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    return {p.stem: load_workflow(p) for p in PATHS}


@pytest.fixture(scope="module")
def prepared(comfy_server: ComfyServer, workflows) -> dict[str, str]:
    """LUA adapters the workflows name (bundled or random stand-ins) and ComfyUI's example.png, on the test server."""
    used = ensure_lua_weights(lua_model_names(workflows.values()), Path(comfy_server.lua_models_dir))
    prepare_input_image(Path(comfy_server.input_dir), Path(comfy_server.comfy_dir))
    return used


# ------------------------------------------------------------------ no server
def test_every_listed_workflow_is_shipped():
    assert set(IDS) == EXPECTED, "workflows/ and tests/browser/workflow_support.FAMILY disagree"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_workflow_structure(path: Path):
    wf = load_workflow(path)
    assert wf["version"] == 0.4
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]), "duplicate node ids"
    assert wf["last_node_id"] >= max(nodes)
    links = {l[0]: l for l in wf["links"]}
    assert len(links) == len(wf["links"]), "duplicate link ids"
    assert wf["last_link_id"] >= max(links)
    for lid, src, slot, dst, tslot, ltype in wf["links"]:
        assert src in nodes and dst in nodes, f"link {lid} joins missing nodes"
        out = nodes[src]["outputs"][slot]
        inp = nodes[dst]["inputs"][tslot]
        assert lid in (out.get("links") or []), f"link {lid} not listed on node {src} output {slot}"
        assert inp["link"] == lid, f"node {dst} input {tslot} does not point back at link {lid}"
        assert out["type"] == ltype == inp["type"], f"link {lid}: {out['type']} -> {ltype} -> {inp['type']}"
    for node in wf["nodes"]:
        for inp in node.get("inputs", []):
            assert inp.get("link") is None or inp["link"] in links, f"node {node['id']}: dangling {inp}"
        for out in node.get("outputs", []):
            for lid in out.get("links") or []:
                assert links[lid][1] == node["id"], f"node {node['id']}: output lists foreign link {lid}"
        if node["type"] in ("SaveImage", "PreviewImage"):
            assert node["inputs"][0]["link"] is not None, f"node {node['id']} {node['type']} has no image input"
    for group in wf.get("groups", []):
        assert len(group["bounding"]) == 4 and group["title"]


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_thumbnail_is_a_same_name_jpeg(path: Path):
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{thumb.name} missing"
    with Image.open(thumb) as im:
        assert im.format == "JPEG"
        assert 256 <= min(im.size) and max(im.size) <= 1024


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_model_files_are_listed_for_download(path: Path):
    """Every model file a loader selects is either offered via properties.models or ships with the pack."""
    wf = load_workflow(path)
    family = FAMILY[path.stem]
    for node in wf["nodes"]:
        entries = (node.get("properties") or {}).get("models", [])
        for m in entries:
            assert set(m) >= {"name", "url", "directory"}, m
            assert m["url"].startswith(DOWNLOAD_HOSTS) and m["url"].split("?")[0].endswith("/" + m["name"]), m
            if m["name"] != "lua_flux.pth":  # our loader downloads that one itself
                assert m["name"].endswith(DOWNLOAD_SUFFIXES), m
        names = {m["name"] for m in entries}
        for value in node.get("widgets_values") or []:
            if node["type"] == "LUAModelLoader" and isinstance(value, str):
                value = lua_file_name(value)
            if not isinstance(value, str) or not value.endswith((".safetensors", ".sft", ".pth", ".ckpt")):
                continue
            if node["type"] == "LUAModelLoader":
                match = LUA_LIGHT_RE.match(value)
                assert match or value in downloadable_entries(), f"{value}: neither bundled nor downloadable"
                if match:
                    assert match.group(1) == family, f"{path.stem} is {family} but selects {value}"
            else:
                assert value in names, f"node {node['id']} {node['type']}: {value} has no properties.models entry"
        if node["type"] == "VAELoader" and node["widgets_values"][0] in TAE_NAMES:
            assert node["widgets_values"][0] == lua_tae(family)


def lua_tae(family: str) -> str:
    return get_family(family).tae_name


def test_official_checkpoint_is_fetched_by_the_loader():
    """The FLUX.1 text-to-image workflow selects lua_flux.pth; the loader downloads it from the manifest's Hub URL,
    so no workflow offers it to ComfyUI's Missing Models dialog (which refuses a .pth download)."""
    entry = Manifest.load().get("lua_flux.pth")
    assert entry.family == "flux1" and entry.url.startswith("https://huggingface.co/")
    selected = []
    for path in PATHS:
        for node in load_workflow(path)["nodes"]:
            assert all(m["name"] != "lua_flux.pth" for m in (node.get("properties") or {}).get("models", []))
            if node["type"] == "LUAModelLoader" and node["widgets_values"][0] == "lua_flux.pth":
                selected.append(path.stem)
    assert selected == ["lua_flux1_t2i_x2_x4"]


# --------------------------------------------------------------- real server
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_node_types_exist_on_the_server(comfy_server: ComfyServer, path: Path):
    info = comfy_server.object_info()
    for node in load_workflow(path)["nodes"]:
        assert node["type"] in info or node["type"] in FRONTEND_ONLY_TYPES, \
            f"node {node['id']}: {node['type']} is not in /object_info"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_sockets_and_links_match_node_definitions(comfy_server: ComfyServer, path: Path):
    info = comfy_server.object_info()
    wf = load_workflow(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    for node in wf["nodes"]:
        if node["type"] in FRONTEND_ONLY_TYPES:
            continue
        d = info[node["type"]]
        outputs = [(o["name"], o["type"]) for o in node["outputs"]]
        assert outputs == list(zip(d["output_name"], d["output"])), f"node {node['id']} {node['type']} outputs"
        for inp in node["inputs"]:
            spec = _spec(d, inp["name"])
            if "widget" not in inp:
                assert not _is_widget(spec), f"node {node['id']}: {inp['name']} is a widget, not a socket"
            want = spec[0] if not isinstance(spec[0], list) else "COMBO"
            assert inp["type"] == want, f"node {node['id']} {node['type']}.{inp['name']}: {inp['type']} != {want}"
        required_sockets = [n for n, s in d["input"].get("required", {}).items() if not _is_widget(s)]
        linked = {i["name"] for i in node["inputs"] if i.get("link") is not None}
        missing = [n for n in required_sockets if n not in linked]
        assert not missing, f"node {node['id']} {node['type']}: required inputs not connected: {missing}"
    for lid, src, slot, dst, tslot, ltype in wf["links"]:
        s, t = nodes[src], nodes[dst]
        if s["type"] in FRONTEND_ONLY_TYPES or t["type"] in FRONTEND_ONLY_TYPES:
            continue
        assert info[s["type"]]["output"][slot] == ltype
        spec = _spec(info[t["type"]], t["inputs"][tslot]["name"])
        assert spec[0] in (ltype, "*"), f"link {lid}: {ltype} into {t['type']}.{t['inputs'][tslot]['name']}"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_widget_values_are_accepted_by_the_inputs(comfy_server: ComfyServer, prepared, path: Path):
    """Count, order, types, ranges and combo choices of every widget value, against /object_info."""
    info = comfy_server.object_info(refresh=True)  # fresh model lists (the adapters were just written)
    wf = load_workflow(path)
    for node in wf["nodes"]:
        if node["type"] in FRONTEND_ONLY_TYPES:
            if node["type"] in ("Note", "MarkdownNote"):
                assert len(node["widgets_values"]) == 1 and isinstance(node["widgets_values"][0], str)
            continue
        d = info[node["type"]]
        names = widget_names(d)
        values = node["widgets_values"]
        assert len(values) == sum(1 + extra for _, extra in names), \
            f"node {node['id']} {node['type']}: {len(values)} widget values for {names}"
        listed = {m["name"] for m in (node.get("properties") or {}).get("models", [])}
        i = 0
        for name, extra in names:
            spec, value = _spec(d, name), values[i]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            where = f"node {node['id']} {node['type']}.{name}={value!r}"
            choices = _combo_options(spec)
            if choices is not None:
                if name in MODEL_INPUTS and value in listed:
                    pass  # a model file the user downloads (checked by the server test below)
                else:
                    assert value in choices, f"{where} not among {choices[:20]}"
            elif spec[0] == "INT":
                assert isinstance(value, int) and not isinstance(value, bool), where
                assert opts.get("min", value) <= value <= opts.get("max", value), where
                if "step" in opts and opts.get("min") is not None and name not in ("seed", "noise_seed"):
                    assert (value - opts["min"]) % opts["step"] == 0, f"{where} off the step {opts['step']}"
            elif spec[0] == "FLOAT":
                assert isinstance(value, (int, float)) and not isinstance(value, bool), where
                assert opts.get("min", value) <= value <= opts.get("max", value), where
            elif spec[0] == "STRING":
                assert isinstance(value, str), where
            elif spec[0] == "BOOLEAN":
                assert isinstance(value, bool), where
            if extra:
                assert values[i + 1] in ("fixed", "increment", "decrement", "randomize", "image"), \
                    f"{where}: extra value {values[i + 1]!r}"
                assert _extra_values(name, spec) == extra
            i += 1 + extra


@pytest.mark.parametrize("path", [p for p in PATHS if p.stem not in RUNNABLE],
                         ids=[p.stem for p in PATHS if p.stem not in RUNNABLE])
def test_server_rejects_only_the_missing_model_files(comfy_server: ComfyServer, prepared, path: Path):
    """POST /prompt validates every node; with no diffusion models installed the only errors may be
    'value not in list' on a model-file input whose file the workflow offers for download."""
    wf = load_workflow(path)
    offered = {m["name"] for n in wf["nodes"] for m in selected_models(n)}
    prompt = workflow_to_api(wf, comfy_server.object_info(refresh=True))
    with pytest.raises(PromptValidationError) as exc:
        comfy_server.queue_prompt(prompt)
    body = exc.value.response
    assert body["error"]["type"] == "prompt_outputs_failed_validation", body["error"]
    reported = set()
    for nid, err in body["node_errors"].items():
        for e in err["errors"]:
            extra = e.get("extra_info", {})
            assert e["type"] == "value_not_in_list", f"node {nid} {err['class_type']}: {e}"
            assert extra.get("input_name") in MODEL_INPUTS, f"node {nid}: {e}"
            assert extra.get("received_value") in offered, f"node {nid}: {extra.get('received_value')} not offered"
            reported.add(extra["received_value"])
    present = {m for m in offered if m in set(comfy_server.get_json("/models/" + _directory(wf, m)))}
    assert reported == offered - present


def _directory(wf: Mapping[str, Any], name: str) -> str:
    return next(m["directory"] for n in wf["nodes"] for m in selected_models(n) if m["name"] == name)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("stem", sorted(RUNNABLE))
def test_runnable_workflow_runs_and_writes_its_images(comfy_server: ComfyServer, prepared, workflows, stem: str):
    wf = workflows[stem]
    prompt = workflow_to_api(wf, comfy_server.object_info(refresh=True))
    prefixes = {str(n["id"]): save_prefix(n) for n in wf["nodes"] if n["type"] == "SaveImage"}
    t0 = time.perf_counter()
    result = comfy_server.run_prompt(prompt, timeout=1100)
    seconds = time.perf_counter() - t0
    assert result.ok, result.error
    weights = ", ".join(f"{k}: {v}" for k, v in sorted(prepared.items()) if k in lua_model_names([wf]))
    record_timing(stem, seconds, f"ComfyUI 0.3.75 --cpu test server; LUA weights {weights}")
    print(f"[workflow] {stem} ran in {seconds:.1f}s ({weights})")
    sizes = {}
    for nid, prefix in prefixes.items():
        paths = comfy_server.image_paths(result, nid)
        assert len(paths) == 1, f"SaveImage {nid} ({prefix}) wrote {paths}"
        with Image.open(paths[0]) as im:
            sizes[prefix] = im.size
            assert im.getextrema() != ((0, 0), (0, 0), (0, 0)), f"{prefix} is black"
    assert sizes == RUNNABLE[stem]


@pytest.mark.parametrize("stem", sorted(RUNNABLE))
def test_image_in_workflows_load_comfyuis_example_picture(stem: str):
    """ComfyUI ships input/example.png, so a user's first queue of these workflows succeeds as is
    (scripts/run_demo.py swaps in its own photo)."""
    wf = load_workflow(REPO / "workflows" / f"{stem}.json")
    loads = [n for n in wf["nodes"] if n["type"] == "LoadImage"]
    assert [n["widgets_values"][0] for n in loads] == [INPUT_IMAGE] == ["example.png"]
    assert sum(n["type"] == "LUAModelLoader" for n in wf["nodes"]) == 1


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_lua_nodes_get_the_diffusion_model(path: Path):
    """Text-to-image workflows wire the diffusion model's MODEL into Load LUA Model and every LUA upscale (family
    check, auto); FLUX.1 uses the official adapter, the others auto. The image-in workflows have no MODEL and keep
    the bundled adapter by name (they must run with the tiny autoencoders alone)."""
    wf = load_workflow(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}
    lua_nodes = [n for n in wf["nodes"] if n["type"] in ("LUAModelLoader", "LUALatentUpscale", "LUALatentUpscaleToSize")]
    assert lua_nodes
    for node in lua_nodes:
        model_in = next(i for i in node["inputs"] if i["name"] == "model")
        if path.stem in RUNNABLE:
            assert model_in["link"] is None
            continue
        assert model_in["link"] is not None, f"node {node['id']} {node['type']}: model not connected"
        src = nodes[links[model_in["link"]][1]]
        assert src["type"] in ("UNETLoader", "CheckpointLoaderSimple"), src["type"]
    choice = next(n for n in lua_nodes if n["type"] == "LUAModelLoader")["widgets_values"][0]
    if path.stem in RUNNABLE:
        assert LUA_LIGHT_RE.match(lua_file_name(choice)), choice
    elif FAMILY[path.stem] == "flux1":
        assert choice == "lua_flux.pth"
    else:
        assert choice == "auto"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_lua_upscales_get_the_vae_the_workflow_decodes_with(path: Path):
    """The bundled adapters are trained on the teacher made with the user's VAE: every LUA upscale node's vae
    input is wired to the VAE output that the workflow's decoders use."""
    wf = load_workflow(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}

    def vae_source(node: dict) -> tuple[int, int]:
        link = next(i for i in node["inputs"] if i["name"] == "vae")["link"]
        assert link is not None, f"node {node['id']} {node['type']}: vae not connected"
        return links[link][1], links[link][2]

    ups = [n for n in wf["nodes"] if n["type"] in ("LUALatentUpscale", "LUALatentUpscaleToSize")]
    decoders = {vae_source(n) for n in wf["nodes"] if n["type"] in ("VAEDecode", "VAEDecodeTiled")}
    assert ups and len(decoders) == 1
    for node in ups:
        assert vae_source(node) in decoders
        assert nodes[vae_source(node)[0]]["type"] in ("VAELoader", "CheckpointLoaderSimple")


# ---------------------------------------------------------------- packaging


def test_pyproject_has_registry_metadata():
    """The [project] and [tool.comfy] fields the Comfy Registry (comfy node validate / publish) reads."""
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    project, comfy = data["project"], data["tool"]["comfy"]
    name = project["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*", name), name
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert (REPO / project["license"]["file"]).is_file()
    assert project["description"]
    assert project["urls"]["Repository"].startswith("https://github.com/")
    runtime = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert project["dependencies"] == runtime, "pyproject dependencies and requirements.txt differ"
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert comfy[key], key
    assert "web" not in comfy, "WEB_DIRECTORY in __init__.py serves web/; a tool.comfy.web would register it twice"
    icon_url = comfy["Icon"]
    assert icon_url.startswith("https://raw.githubusercontent.com/") and "/main/" in icon_url
    with Image.open(REPO / icon_url.split("/main/", 1)[1]) as icon:
        assert icon.size[0] == icon.size[1] <= 400


def test_comfyui_parses_the_pack_metadata(comfy_server: ComfyServer):
    """ComfyUI reads pyproject.toml when it loads the pack (comfy_config); it must parse, and the pack must load."""
    code = ("import json, sys; from comfy_config import config_parser as c; "
            "p = c.extract_node_configuration(sys.argv[1]); "
            "print(json.dumps({'name': p.project.name, 'os': p.project.supported_os, "
            "'acc': p.project.supported_accelerators, 'publisher': p.tool_comfy.publisher_id, "
            "'icon': p.tool_comfy.icon}))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], cwd=str(comfy_server.comfy_dir),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    assert parsed["name"] == "comfyui-lua" and parsed["publisher"] and parsed["icon"]
    assert parsed["os"] and parsed["acc"], "classifiers not accepted by ComfyUI's parser"
    log = comfy_server.log_text()
    assert "Unable to parse pyproject.toml" not in log
    assert comfy_server.import_failures() == []
