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
    edges = {"lua_core.api": {"lua_core.eval.harness"}, "lua_core.eval.harness": {"lua_core.train.data"},
             "lua_core.train.data": {"lua_core.api"}}
    assert G.cycles(edges) == [sorted(edges)]
    assert ("lua_core.api", "lua_core.eval.harness") in G.upward(edges)
    assert ("lua_core.eval.harness", "lua_core.train.data") in G.upward(edges)
