"""The experiment page: loss curves read back from the loss log, their smoothing, the FID chart after a
ranking, and the page a training run keeps current. Pure Python (no Jittor)."""

import json
import math
import os
import re
import shutil
import subprocess

import pytest

from models.loss_curves import (fid_points, line_chart_svg, loss_line_prefix, parse_loss_log, smooth, thin)
from models.training_page import TrainingLog, write_experiment_page


def log_text(points):
    """A loss log with a header, a schedule note and one line per (epoch, iters, total, {term: value})."""
    lines = ["================ Training (2026-01-01 00:00:00) ================"]
    for epoch, iters, total, terms in points:
        lines.append(loss_line_prefix(epoch, iters, total, 0.5) + " ".join(f"{k}: {v:.4f}" for k, v in terms.items()))
        if total == 2:
            lines.append("epoch 1, iteration 2: training 64x48")
    return "\n".join(lines) + "\n"


def polylines(svg):
    """[(stroke width, [(x, y), ...])] of the polylines of an SVG chart."""
    return [(float(width), [tuple(map(float, p.split(","))) for p in coords.split()])
            for coords, width in re.findall(r"<polyline points='([^']*)'[^>]*?stroke-width='([\d.]+)'", svg)]


def test_parse_loss_log_reads_every_term_by_total_iteration():
    text = log_text([(1, 2, 2, {"G_GAN": 1.0, "D_real": 0.5}), (1, 4, 4, {"G_GAN": 0.8, "D_real": 0.25}),
                     (2, 2, 6, {"G_GAN": 0.6, "D_real": 0.125, "G_VGG": 3.0})])
    curves = parse_loss_log(text)
    assert curves == {"G_GAN": [(2, 1.0), (4, 0.8), (6, 0.6)], "D_real": [(2, 0.5), (4, 0.25), (6, 0.125)],
                      "G_VGG": [(6, 3.0)]}


def test_parse_loss_log_replaces_iterations_logged_again_after_a_resume():
    # a run logged up to iteration 8, was resumed from its checkpoint at iteration 4 and logged 6 and 8 again
    first = log_text([(1, k, k, {"G_GAN": float(k)}) for k in (2, 4, 6, 8)])
    resumed = log_text([(2, k - 4, k, {"G_GAN": 10.0 + k}) for k in (6, 8, 10)])
    assert parse_loss_log(first + resumed)["G_GAN"] == [(2, 2.0), (4, 4.0), (6, 16.0), (8, 18.0), (10, 20.0)]


def test_parse_loss_log_skips_lines_of_the_older_format_and_non_numbers():
    text = ("(epoch: 1, iters: 2, time/iter: 0.100s) G_GAN: 1.0000\n"
            + log_text([(1, 4, 4, {"G_GAN": 2.0})]).replace("2.0000", "2.0000 note: n/a"))
    assert parse_loss_log(text) == {"G_GAN": [(4, 2.0)]}


def test_smooth_starts_at_the_first_value_and_follows_a_step():
    values = [1.0] * 5 + [3.0] * 40
    out = smooth(values, 0.8)
    assert out[:5] == pytest.approx([1.0] * 5)  # no pull towards zero at the start
    assert 1.0 < out[5] < 3.0 and out[-1] == pytest.approx(3.0, abs=1e-3)
    assert all(a <= b for a, b in zip(out[5:], out[6:]))  # rises monotonically to the new level
    assert smooth([2.0, float("nan"), 2.0], 0.8)[1] != smooth([2.0, float("nan"), 2.0], 0.8)[1]  # NaN kept


def test_thin_keeps_the_ends_and_the_limit():
    points = [(i, float(i)) for i in range(5000)]
    thinned = thin(points, 100)
    assert len(thinned) == 100 and thinned[0] == points[0] and thinned[-1] == points[-1]
    assert thin(points[:10], 100) == points[:10]


def test_line_chart_maps_values_into_the_plot_area():
    svg = line_chart_svg("loss", [("raw", [(0, 0.0), (10, 1.0), (20, 4.0)], "#000", 1, 0.4)], width=400, height=200)
    (width, pts), = polylines(svg)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    assert xs == sorted(xs) and xs[0] < xs[-1] <= 400
    assert ys[0] > ys[1] > ys[2] >= 0  # larger values higher up (smaller SVG y)
    # equal steps in x are equal steps on the page; y is linear in the value
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.15)
    assert (ys[0] - ys[1]) * 3 == pytest.approx(ys[1] - ys[2], abs=0.5)
    assert "no values yet" in line_chart_svg("empty", [("raw", [], "#000", 1, 1)])


def test_fid_points_split_epochs_from_other_tags():
    ranking = {"results": [{"tag": "10", "fid": 50.0}, {"tag": "2", "fid": 80.0}, {"tag": "avg_2_10", "fid": 45.0},
                           {"tag": "latest", "fid": float("nan")}]}
    assert fid_points(ranking) == ([(2, 80.0), (10, 50.0)], [("avg_2_10", 45.0)])
    assert fid_points({}) == ([], [])


def test_training_log_keeps_the_page_current(tmp_path):
    log = TrainingLog(str(tmp_path), "run<1>")
    for total in range(1, 31):
        log.log_losses(1 + total // 10, total % 10 + 1, total, {"G_GAN": 1.0 / total, "D_fake": 0.5 + 0.01 * total},
                       0.25)
    page = open(tmp_path / "web" / "index.html").read()
    assert "run&lt;1&gt;" in page and "<h2>Losses</h2>" in page and "<h2>FID</h2>" not in page
    charts = re.findall(r"<svg.*?</svg>", page)
    assert [re.search(r"class='title'>([^<]*)<", c).group(1) for c in charts] == ["G_GAN", "D_fake"]
    lines = polylines(charts[0])
    assert sorted(w for w, _ in lines) == [1.0, 2.0]  # raw and smoothed
    raw = next(pts for w, pts in lines if w == 1.0)
    assert len(raw) == 30 and raw[0][1] < raw[-1][1]  # G_GAN falls: the curve goes down the page

    # a ranking written afterwards adds the FID chart and table, and the next log line keeps them
    with open(tmp_path / "fid_ranking.json", "w") as f:
        json.dump({"results": [{"tag": "1", "fid": 90.0}, {"tag": "2", "fid": 70.0},
                               {"tag": "avg_1_2", "fid": 65.5}]}, f)
    log.log_losses(4, 1, 31, {"G_GAN": 0.03, "D_fake": 0.8}, 0.25)
    page = open(tmp_path / "web" / "index.html").read()
    assert "<h2>FID</h2>" in page and "avg_1_2</td><td>65.500" in page
    assert len(polylines(re.findall(r"<svg.*?</svg>", page)[-1])) == 1  # the FID chart: two epochs, one line


def test_page_of_a_folder_without_a_log(tmp_path):
    path = write_experiment_page(str(tmp_path))
    page = open(path).read()
    assert "<h2>Losses</h2>" not in page and "<h2>Samples</h2>" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_page_renders_its_curves_in_chromium(tmp_path):
    """The page as a browser draws it: the chart area holds pixels of the curves' colour."""
    from PIL import Image
    log = TrainingLog(str(tmp_path), "render")
    for total in range(1, 101):
        log.log_losses(1, total, total, {"G_GAN": 2.0 + math.sin(total / 7.0)}, 0.1)
    shot = tmp_path / "shot.png"
    page = os.path.join(str(tmp_path), "web", "index.html")
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=800,600", "file://" + page], check=True, capture_output=True, timeout=120)
    pixels = Image.open(shot).convert("RGB")
    blue = sum(1 for r, g, b in pixels.getdata() if b > 150 and r < 90 and 90 < g < 160)  # #1f77b4 and its blends
    assert blue > 300
