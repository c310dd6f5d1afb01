"""Benchmarks (speed, memory, tiling accuracy).

``python -m lua_core.bench`` runs the full harness (:mod:`.cli`); the smaller tools
run as ``python -m lua_core.bench.memory`` and ``python -m lua_core.bench.tile_seams``.
"""
