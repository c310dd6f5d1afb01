"""The benchmark harness runs end to end on tiny models, and its decoder is the real architecture."""
from __future__ import annotations

import json
import time

import pytest
import torch

from lua_core.bench import cli, summary
from lua_core.bench.vae_decoder import DECODER_CONFIGS, KLDecoder, decoder_config


@pytest.mark.slow
def test_harness_end_to_end_on_tiny_models(tmp_path):
    t0 = time.perf_counter()
    rc = cli.main(["--preset", "quick", "--tiny", "--in-process", "--configs", "light",
                       "--groups", "pipelines,impl,tiling", "--out", str(tmp_path)])
    assert rc == 0
    assert time.perf_counter() - t0 < 60  # ~5-10 s on 2 busy cores; generous against load spikes
    report = json.loads((tmp_path / "bench.json").read_text())
    assert not [r for r in report["rows"] if r["errors"]]
    s = report["summary"]
    (pipe,) = s["pipelines"]
    for key in ("A", "B", "C", "D", "E_bicubic", "C_over_B", "B_over_D", "lua_share_of_target_decode"):
        assert pipe[key] is not None and pipe[key] > 0
    assert s["impl"][0]["max_abs_diff"] < 1e-4
    cases = {t["case"]: t for t in s["tiling"]}
    assert cases["untiled"]["tiles"] == 1 and cases["auto (fits: untiled)"]["tiles"] == 1
    # half the plain pass's estimate: one chunked pass (same numbers), or tiles if even that does not fit
    tight = cases["auto, budget 0.5x untiled"]
    assert tight["chunks"] is not None or tight["tiles"] > 1
    if tight["tiles"] == 1:
        assert tight["max_abs_diff_vs_untiled"] < 1e-5
    assert report["machine"]["torch"] == torch.__version__
    md = (tmp_path / "bench.md").read_text()
    assert "## Pipelines" in md and "## Tiling" in md and "straightforward" in md
    assert (tmp_path / "bench.svg").read_text().startswith("<svg")


@pytest.mark.slow
def test_a_case_runs_in_its_own_process():
    spec = dict(kind="impl", config="light", latent=8, scale=2, device="cpu", dtype="float32", threads=1,
                tiny=True, warmup=1, repeats=1)
    res = cli.run_in_child(spec, timeout=120)
    assert "error" not in res, res.get("error")
    assert res["peak_rss_mb"] > 0 and res["max_abs_diff"]["ours"] < 1e-4


@pytest.mark.slow
def test_multiply_add_counts_on_meta_tensors():
    (row,) = cli.count_macs("light", "flux1", sizes=((64, 2),), tiny=True)
    assert row["B"] == row["lua"] + row["D"] and row["C"] == row["A"] + row["pixel_sr"]
    assert row["D"] > row["A"] > 0 and 0 < row["lua_share_of_D"] < 1


def test_legacy_overhead_of_a_worked_example():
    assert summary.legacy_pixel_overhead(128, 64, 16) ** 2 == pytest.approx(2.25)


@pytest.mark.parametrize("family,params", [("sdxl", 49_490_199), ("flux1", 49_545_475)])
def test_decoder_is_the_kl_decoder_architecture(family, params):
    with torch.device("meta"):
        dec = KLDecoder(decoder_config(family))
        out = dec(torch.empty(1, decoder_config(family).latent_channels, 5, 7, device="meta"))
    assert dec.num_parameters() == params  # the published decoders' parameter counts
    assert tuple(out.shape) == (1, 3, 40, 56)
    assert set(DECODER_CONFIGS) >= {"sdxl", "sd3", "flux1"}


def test_resume_skips_the_cases_an_interrupted_run_finished(tmp_path, monkeypatch):
    args = ["--preset", "quick", "--tiny", "--in-process", "--configs", "light", "--groups", "impl",
            "--rounds", "2", "--out", str(tmp_path)]
    real = cli.run_spec
    calls = []

    def interrupted(spec):
        calls.append(spec)
        if len(calls) == 2:  # the second round's case: the run dies here
            raise KeyboardInterrupt
        return real(spec)

    monkeypatch.setattr(cli, "run_spec", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(args)
    assert (tmp_path / "bench.partial.json").exists() and not (tmp_path / "bench.json").exists()

    calls.clear()
    monkeypatch.setattr(cli, "run_spec", lambda spec: calls.append(spec) or real(spec))
    assert cli.main(args + ["--resume"]) == 0
    assert len(calls) == 1  # only the unfinished round ran again
    report = json.loads((tmp_path / "bench.json").read_text())
    (samples,) = report["raw"].values()
    assert len(samples) == 2 and not [r for r in report["rows"] if r["errors"]]
    assert not (tmp_path / "bench.partial.json").exists()
