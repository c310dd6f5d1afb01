"""The chunking benchmark's pieces run on a small case and its report renders."""
from __future__ import annotations

from lua_core.bench import chunking


def test_timing_child_compares_every_mode_with_the_plain_pass(one_torch_thread):
    modes = [{"kind": "plain"}, {"kind": "auto", "budget": 0.5}, {"kind": "tiles", "budget": 0.5}]
    res = chunking.child_timing({"config": "light", "size": 48, "scale": 2, "modes": modes, "rounds": 1})
    assert [len(s) for s in res["samples"]] == [1, 1, 1]
    plain, auto, tiles = res["max_abs_diff"]
    assert plain == 0 and auto <= 1e-5 and tiles > 0  # chunked: the plain numbers; tiles: blended seams


def test_memory_child_reports_the_plan_and_peaks(one_torch_thread):
    res = chunking.child_memory({"config": "light", "size": 48, "scale": 2, "mode": {"kind": "auto", "budget": 0.5}})
    assert res["chunks"] is not None and res["tiles"] == 1 and res["budget_mb"] > 0
    assert res["peak_rss_mb"] > 0 and res["rss_before_mb"] > 0  # (statm and getrusage round differently)


def test_markdown_has_the_summary_and_a_row_per_mode():
    row = {"tiles": 1, "tile": 0, "overlap": 0, "pixel_overhead": 0.0, "chunks": None, "budget_mb": 0.0,
           "peak_rss_mb": 700.0, "activation_mb": 200.0, "live_activation_mb": 130.0, "seconds": 1.0,
           "time_overhead": 0.0, "max_abs_diff": 0.0}
    rows = [dict(row, mode=chunking.mode_name({"kind": "plain"})),
            dict(row, mode=chunking.mode_name({"kind": "auto", "budget": 0.5}), budget_mb=70.0,
                 chunks={"trunk_px": 4096, "head_rows": 8}, live_activation_mb=50.0, time_overhead=-0.02),
            dict(row, mode=chunking.mode_name({"kind": "tiles", "budget": 0.5}), budget_mb=70.0, tiles=3,
                 tile=[128, 64], overlap=8, pixel_overhead=0.125, time_overhead=0.1, max_abs_diff=0.04)]
    report = {"torch": "x", "threads": 1, "rounds": 1, "load_start": [1.0, 1.0, 1.0], "load_end": [1.0, 1.0, 1.0],
              "wall_s": 1.0, "results": [{"config": "light", "size": 128, "scale": 4, "rows": rows}]}
    md = chunking.markdown(report, "cmd")
    assert "| light 128² x4 | 0.5x | -2.0 % | 50 (130) | +10.0 % | 130 | 0 |" in md
    assert md.count("| auto (chunked), budget 0.5x |") == 1 and "3 tiles [128, 64] / 8, +12.5 % px" in md
