"""Convert a ComfyUI UI-format workflow (what the canvas saves) to the API prompt format.

Widget values are matched to input names with the server's ``/object_info``, the
way the front end does it: every required/optional input that is a widget
(a combo list or INT/FLOAT/STRING/BOOLEAN) takes the next value; seed-like INT
widgets carry an extra "control after generate" value and image-upload combos an
extra upload value.

Front-end-only nodes are handled like the front end's graphToPrompt: notes
(``Note``, ``MarkdownNote``) and ``PrimitiveNode`` (whose value is already stored in
its targets' widgets) are dropped, ``Reroute`` nodes are followed to their source,
and bypassed nodes (mode 4) pass each input through to the output of the same type.
Muted nodes (mode 2) are dropped.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# node types that exist only in the front end (never in /object_info)
FRONTEND_ONLY_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASSED = 2, 4
# a link from a PrimitiveNode: the value already sits in the target's widgets_values
KEEP_WIDGET = (-1, -1)


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


def widget_values(node: Mapping[str, Any], node_info: Mapping[str, Any]) -> dict[str, Any]:
    """The node's widget values by input name (extra control/upload values skipped)."""
    raw = node.get("widgets_values")
    if isinstance(raw, dict):
        return dict(raw)
    values = list(raw or [])
    named: dict[str, Any] = {}
    i = 0
    for name, extra in widget_names(node_info):
        if i >= len(values):
            break
        named[name] = values[i]
        i += 1 + extra
    return named


class _Resolver:
    """Follows links through Reroute and bypassed nodes to the real source ``(node id, slot)``."""

    def __init__(self, workflow: Mapping[str, Any]) -> None:
        self.links = {l[0]: l for l in workflow.get("links", [])}
        self.nodes = {n["id"]: n for n in workflow.get("nodes", [])}

    def source(self, link_id: int, seen: Optional[set] = None) -> Optional[tuple[int, int]]:
        seen = seen or set()
        if link_id in seen:
            raise ValueError(f"link {link_id} is part of a cycle of Reroute/bypassed nodes")
        seen.add(link_id)
        if link_id not in self.links:
            raise ValueError(f"unknown link {link_id}")
        _, src, slot, _, _, ltype = self.links[link_id][:6]
        node = self.nodes.get(src)
        if node is None:
            raise ValueError(f"link {link_id} starts at missing node {src}")
        if node["type"] == "PrimitiveNode":
            return KEEP_WIDGET
        if node["type"] == "Reroute":
            upstream = (node.get("inputs") or [{}])[0].get("link")
            return None if upstream is None else self.source(upstream, seen)
        if node.get("mode", 0) == MODE_BYPASSED:
            outputs = node.get("outputs") or []
            out_type = outputs[slot].get("type", ltype) if slot < len(outputs) else ltype
            for inp in node.get("inputs") or []:
                if inp.get("link") is not None and inp.get("type") == out_type:
                    return self.source(inp["link"], seen)
            return None
        if node.get("mode", 0) == MODE_MUTED:
            return None
        return src, int(slot)


def workflow_to_api(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, Any]:
    """Return the API prompt for ``workflow``; raises ValueError for unknown node types or bad links."""
    resolver = _Resolver(workflow)
    prompt: dict[str, Any] = {}
    for node in workflow.get("nodes", []):
        ntype = node["type"]
        if node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED) or ntype in FRONTEND_ONLY_TYPES:
            continue
        if ntype not in object_info:
            raise ValueError(f"node {node['id']}: type {ntype!r} is not installed on this server")
        inputs: dict[str, Any] = widget_values(node, object_info[ntype])
        for inp in node.get("inputs", []):
            lid = inp.get("link")
            if lid is None:
                continue
            try:
                src = resolver.source(lid)
            except ValueError as exc:
                raise ValueError(f"node {node['id']}: input {inp['name']!r}: {exc}") from None
            if src == KEEP_WIDGET:
                continue
            if src is None:
                inputs.pop(inp["name"], None)
                continue
            inputs[inp["name"]] = [str(src[0]), src[1]]
        entry: dict[str, Any] = {"class_type": ntype, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node["id"])] = entry
    return prompt
