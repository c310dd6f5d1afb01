"""Main job: run the image-in example workflow in a headless ComfyUI and write its images.

    bash scripts/run_demo.sh [--image PATH] [--out DIR]

Starts the real ComfyUI provisioned by scripts/setup_comfyui.sh on 127.0.0.1,
loads ``workflows/lua_image_upscale_x2_x4.json`` (converted to the API format
with the server's /object_info), runs it, and copies the x2/x4 images to
``output/demo/``.  It prints which LUA weights it ran with.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

from tests.support.comfy_server import ComfyServer
from tests.support.workflow_api import workflow_to_api

REPO = Path(__file__).resolve().parent.parent

WORKFLOW = REPO / "workflows" / "lua_image_upscale_x2_x4.json"
SHARED = Path(os.environ.get("LUA_SHARED_DIR", REPO.parent / "shared"))


def default_image() -> Path:
    candidates = sorted((SHARED / "data" / "val" / "urban100").glob("*"))
    if not candidates:
        raise SystemExit(f"no demo image found under {SHARED}/data/val/urban100; pass --image")
    return candidates[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None, help="input photo (default: first urban100 val image)")
    parser.add_argument("--out", type=Path, default=REPO / "output" / "demo", help="where the images are copied")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)

    image = args.image or default_image()
    workflow = json.loads(WORKFLOW.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    with ComfyServer() as server:
        print(f"ComfyUI started in {server.startup_seconds:.1f} s at {server.base_url}")
        with Image.open(image) as im:
            im.convert("RGB").save(server.input_dir / "lua_demo_input.png")
        prompt = workflow_to_api(workflow, server.object_info())
        for node in prompt.values():  # the workflow ships with ComfyUI's example.png; the demo uses its photo
            if node["class_type"] == "LoadImage":
                node["inputs"]["image"] = "lua_demo_input.png"
        loader = next(n for n in prompt.values() if n["class_type"] == "LUAModelLoader")
        weights = loader["inputs"]["model_name"]
        t0 = time.perf_counter()
        result = server.run_prompt(prompt, timeout=args.timeout)
        elapsed = time.perf_counter() - t0
        if not result.ok:
            print(f"workflow failed: {result.error}\n--- server log ---\n{server.log_tail()}", file=sys.stderr)
            return 1
        written = []
        for path in server.image_paths(result):
            dest = args.out / path.name
            shutil.copy(path, dest)
            written.append(dest)
    print(f"input: {image}")
    print(f"LUA weights: {weights} ({describe_weights(weights)})")
    print(f"workflow ran in {elapsed:.1f} s")
    for dest in written:
        with Image.open(dest) as im:
            print(f"wrote {dest} ({im.width}x{im.height})")
    return 0


def describe_weights(name: str) -> str:
    from lua_core.checkpoints.manifest import Manifest

    try:
        entry = Manifest.load().get(name)
    except KeyError:
        return "not in the weights manifest"
    return entry.description


if __name__ == "__main__":
    sys.exit(main())
