"""Convert a ComfyUI UI-format workflow (what the canvas saves) to the API prompt format.

Widget values are matched to input names with the server's ``/object_info``, the
way the front end does it: every required/optional input that is a widget
(a combo list or INT/FLOAT/STRING/BOOLEAN) takes the next value; seed-like INT
widgets carry an extra "control after generate" value and image-upload combos an
extra upload value.
"""
from __future__ import annotations

from typing import Any, Mapping

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _is_widget(spec: Any) -> bool:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _extra_values(name: str, spec: Any) -> int:
    options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    kind = spec[0] if isinstance(spec, (list, tuple)) else spec
    if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
        return 1
    if options.get("image_upload") or options.get("video_upload") or options.get("audio_upload"):
        return 1
    return 0


def widget_names(node_info: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``(input name, extra values after it)`` for every widget input of a node type, in UI order."""
    inputs = node_info.get("input", {})
    order = node_info.get("input_order") or {sec: list(inputs.get(sec, {})) for sec in ("required", "optional")}
    names = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = inputs.get(section, {}).get(name)
            if spec is not None and _is_widget(spec):
                names.append((name, _extra_values(name, spec)))
    return names


def workflow_to_api(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, Any]:
    """Return the API prompt for ``workflow``; raises ValueError for unknown node types or bad links."""
    links = {l[0]: l for l in workflow.get("links", [])}
    prompt: dict[str, Any] = {}
    for node in workflow.get("nodes", []):
        if node.get("mode", 0) in (2, 4):  # muted / bypassed
            continue
        ntype = node["type"]
        if ntype not in object_info:
            raise ValueError(f"node {node['id']}: type {ntype!r} is not installed on this server")
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):
            inputs.update(node["widgets_values"])
        else:
            i = 0
            for name, extra in widget_names(object_info[ntype]):
                if i >= len(values):
                    break
                inputs[name] = values[i]
                i += 1 + extra
        for inp in node.get("inputs", []):
            lid = inp.get("link")
            if lid is None:
                continue
            if lid not in links:
                raise ValueError(f"node {node['id']}: input {inp['name']!r} uses unknown link {lid}")
            _, src, slot, _, _, _ = links[lid]
            inputs[inp["name"]] = [str(src), int(slot)]
        entry: dict[str, Any] = {"class_type": ntype, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node["id"])] = entry
    return prompt
