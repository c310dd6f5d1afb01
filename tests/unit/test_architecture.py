"""The import graph reads one way: no cycle, no upward import, a runtime free of ComfyUI and tooling."""
from __future__ import annotations

from scripts import import_graph as G


def test_every_module_sits_on_a_floor():
    assert G.unplaced(G.graph()) == []


def test_no_import_cycle():
    assert G.cycles(G.graph()) == []


def test_no_upward_import_and_train_eval_side_by_side():
    assert G.upward(G.graph()) == []


def test_runtime_imports_neither_comfyui_nor_tooling():
    assert G.external(G.RUNTIME) == {}


def test_the_checks_can_fail():
    """The analysis itself finds a cycle, an upward edge and a train<->eval edge when they are there."""
    edges = {"lua_core.api": {"lua_core.eval.evaluation"}, "lua_core.eval.evaluation": {"lua_core.train.data"},
             "lua_core.train.data": {"lua_core.api"}}
    assert G.cycles(edges) == [sorted(edges)]
    assert ("lua_core.api", "lua_core.eval.evaluation") in G.upward(edges)
    assert ("lua_core.eval.evaluation", "lua_core.train.data") in G.upward(edges)


def test_the_toolkit_sits_above_the_runtime_and_below_train_eval_bench():
    """The tooling-only modules are not shipped: the runtime may not import them, train/eval/bench may."""
    assert not [m for m in G.RUNTIME if m.startswith("lua_core.toolkit")] and "lua_core.toolkit" in G.RUNTIME_MUST_NOT_IMPORT
    toolkit = G.layer_of("lua_core.toolkit.images")
    assert max(G.layer_of(m) for m in G.RUNTIME) < toolkit
    assert toolkit <= G.layer_of("lua_core.vae_backends") < G.layer_of("lua_core.train.finetune")
    assert G.layer_of("lua_core.eval.pipeline") < G.layer_of("lua_core.bench.pipelines")
    assert ("lua_core.api", "lua_core.toolkit.images") in G.upward({"lua_core.api": {"lua_core.toolkit.images"}})
