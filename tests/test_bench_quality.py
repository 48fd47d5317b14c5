"""The quality benchmark: its plan and report (util/metrics/quality_report.py) and, at tiny scale, the
command (util/bench_quality.py) end to end with a resume."""

import json
import os

import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, run_script
from util.core.errors import OptionError
from util.metrics import comparison
from util.metrics import quality_report as report
from util.metrics.quality import METRICS, PER_IMAGE


def test_variants_are_a_name_and_train_flags():
    assert report.parse_variant("reuse=--d_fake reuse") == report.Variant("reuse", "demo", ("--d_fake", "reuse"))
    assert report.parse_variant("imp=--recipe improved --niter 3") == report.Variant("imp", "improved",
                                                                                    ("--niter", "3"))
    assert report.parse_variant("demo=") == report.Variant("demo", "demo", ())
    for bad in ("no_equals", "=--x 1", "two words=--x", "r=--recipe", "q=--x 'open"):
        with pytest.raises(OptionError, match="--variant"):
            report.parse_variant(bad)
    with pytest.raises(OptionError, match="must differ"):
        report.check_variants([report.parse_variant("a="), report.parse_variant("a=--x 1")])


def test_a_run_is_cached_under_everything_that_decides_it():
    v = report.parse_variant("a=--lambda_l1 2")
    settings = {"data": [240, 200, 128, 96, 0], "train_flags": []}
    rid = report.run_id(v, 0, settings)
    assert rid.startswith("a-seed0-") and rid == report.run_id(v, 0, json.loads(json.dumps(settings)))
    assert rid != report.run_id(v, 1, settings)
    assert rid != report.run_id(report.parse_variant("a=--lambda_l1 3"), 0, settings)
    assert rid != report.run_id(v, 0, {**settings, "data": [240, 200, 128, 96, 1]})


def _fake_results(variants, seeds, shift, rng):
    """Per-image scores: a seed effect shared by the variants, image noise, and ``shift[name]`` on masks."""
    results = {}
    seed_effect = {s: rng.normal(0, 0.03) for s in seeds}
    for v in variants:
        results[v.name] = {}
        for s in seeds:
            base = 0.8 + seed_effect[s] + shift.get(v.name, 0.0)
            results[v.name][s] = {"mask_accuracy": list(base + rng.normal(0, 0.05, 40)),
                                  "style_similarity": list(0.6 + seed_effect[s] + rng.normal(0, 0.05, 40)),
                                  "sharpness_ratio": list(0.5 + rng.normal(0, 0.1, 40)),
                                  "colour_texture_fd": 20.0 + 10 * seed_effect[s]}
    return results


def test_summary_gives_intervals_and_verdicts_against_the_first_variant():
    variants = [report.parse_variant(t) for t in ("base=", "same=--x 1", "broken=--x 2")]
    seeds = [0, 1, 2, 3]
    results = _fake_results(variants, seeds, {"broken": -0.2}, np.random.default_rng(0))
    summary = report.summarise(results, variants, seeds)
    assert summary["baseline"] == "base"
    rows = summary["variants"]["base"]["metrics"]
    assert set(rows) == set(METRICS) and all("images" in rows[m] for m in PER_IMAGE)
    assert rows["mask_accuracy"]["per_seed"] == pytest.approx([np.mean(results["base"][s]["mask_accuracy"])
                                                               for s in seeds])
    assert rows["mask_accuracy"]["seeds"]["low"] < rows["mask_accuracy"]["seeds"]["mean"]
    assert summary["variants"]["broken"]["against_baseline"]["mask_accuracy"]["verdict"] == comparison.WORSE
    assert summary["variants"]["same"]["against_baseline"]["colour_texture_fd"]["verdict"] == comparison.SAME
    assert "against_baseline" not in summary["variants"]["base"]
    text = report.markdown(summary, "# t")
    assert "| broken |" in text and comparison.WORSE in text and "not FID" in text
    plot = report.interval_plot(summary)
    assert plot.shape == (report.PANEL[1], report.PANEL[0] * len(METRICS), 3) and plot.min() < 255
    grid = report.sample_grid([("photo", [np.zeros((24, 32, 3), np.uint8)] * 3),
                               ("base", [np.full((48, 64, 3), 200, np.uint8)] * 2)])
    assert grid.shape == (48, 110 + 3 * 32, 3)


def test_the_benchmark_runs_and_resumes(tmp_path):
    out = str(tmp_path / "bench")
    tiny = " ".join(TINY_NET_FLAGS)
    args = ["--out", out, "--seeds", "2", "--num_train", "8", "--num_heldout", "3", "--samples", "2",
            "--no_progress", "--variant", "base=", "--train_flags",
            f"{tiny} --batchSize 4 --phases pretrain --pretrain_args '--niter 1 --pg_niter 0'"]
    first = run_script("util/bench_quality.py", *args, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "0 of 2 runs already done" in first.stderr and "| base |" in first.stdout
    summary = json.load(open(os.path.join(out, "report.json")))
    masks = summary["variants"]["base"]["metrics"]["mask_accuracy"]
    assert masks["seeds"]["n"] == 2 and masks["images"]["n"] == 3 and 0 <= masks["seeds"]["mean"] <= 1
    for name in ("report.md", "intervals.png", "samples.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    again = run_script("util/bench_quality.py", *args, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 of 2 runs already done" in again.stderr
    assert json.load(open(os.path.join(out, "report.json")))["variants"] == summary["variants"]
