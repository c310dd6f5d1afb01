"""Benchmarks (speed, memory, tiling accuracy); run as ``python -m lua_core.bench.<name>``."""
