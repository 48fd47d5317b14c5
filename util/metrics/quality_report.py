"""The quality benchmark's plan and report: variants as recipe + flags, the command lines of one training
run and of its generation, and the summary of finished runs (intervals over seeds and images, verdicts
against the baseline) as a dict, markdown, an interval plot and a sample grid. No training here and no
printing: ``util/bench_quality.py`` runs the plan and writes what this module renders.
"""

import hashlib
import json
import shlex
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from util.core.errors import OptionError
from util.metrics import comparison
from util.metrics.quality import METRICS, PER_IMAGE


class Variant(NamedTuple):
    name: str
    recipe: str
    flags: tuple


def parse_variant(text):
    """``NAME=--recipe R FLAGS...`` (or ``NAME=FLAGS`` for the demo recipe) -> ``Variant``."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise OptionError(f"--variant {text!r}: expected NAME=FLAGS, e.g. reuse='--d_fake reuse', NAME made of "
                          f"letters, digits, - and _.")
    try:
        words = shlex.split(rest)
    except ValueError as err:
        raise OptionError(f"--variant {text!r}: {err}") from None
    recipe = "demo"
    if "--recipe" in words:
        i = words.index("--recipe")
        if i + 1 >= len(words):
            raise OptionError(f"--variant {text!r}: --recipe needs a value.")
        recipe = words[i + 1]
        words = words[:i] + words[i + 2:]
    return Variant(name, recipe, tuple(words))


def check_variants(variants):
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise OptionError(f"variant names must differ: {', '.join(names)}")
    if len(variants) < 1:
        raise OptionError("give at least one --variant (the first is the baseline)")


def run_id(variant, seed, settings):
    """The cache folder name of one training run: the variant's name, its seed and a hash of everything that
    decides its result (recipe, flags, the benchmark's data and training settings)."""
    text = json.dumps([variant.recipe, list(variant.flags), seed, settings], sort_keys=True)
    return f"{variant.name}-seed{seed}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def train_argv(variant, seed, train_dir, checkpoints_dir, name, settings):
    """``train.py`` arguments (after the script) of one run."""
    return ["--recipe", variant.recipe, "--input_path", train_dir, "--name", name,
            "--checkpoints_dir", checkpoints_dir, "--seed", str(seed), "--no_pure_dictionary",
            *settings.get("train_flags", ()), *variant.flags]


def generate_argv(checkpoints_dir, name, labels_dir, photos_dir, ref_json, output_dir):
    """``test_phase.py`` arguments of the held-out generation: each label map in the style of its reference
    photo's mean code, no colour transfer."""
    return ["--name", name, "--checkpoints_dir", checkpoints_dir, "--input_path", labels_dir,
            "--img_path", photos_dir, "--ref_json", ref_json, "--output_path", output_dir,
            "--image_format", "png", "--nThreads", "0"]


# -- the summary -------------------------------------------------------------------------------------------------

def _interval_dict(interval):
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "n": interval.n}


def summarise(results, variants, seeds):
    """``results[variant][seed]`` = a run's scores (lists of per-image values for ``PER_IMAGE``, a number for
    the set metrics) -> per variant and metric the interval over seeds and the bootstrap over images, and
    per non-baseline variant and metric the paired verdict against the first variant."""
    summary = {"seeds": list(seeds), "baseline": variants[0].name, "variants": {}}
    per_seed = {}
    for v in variants:
        rows, per_seed[v.name] = {}, {}
        for metric in METRICS:
            values = [results[v.name][s][metric] for s in seeds]
            means = [float(np.nanmean(x)) if metric in PER_IMAGE else float(x) for x in values]
            per_seed[v.name][metric] = means
            row = {"per_seed": means, "seeds": _interval_dict(comparison.seed_interval(means))}
            if metric in PER_IMAGE:
                row["images"] = _interval_dict(comparison.bootstrap_interval(np.array(values, dtype=np.float64)))
            rows[metric] = row
        summary["variants"][v.name] = {"recipe": v.recipe, "flags": list(v.flags), "metrics": rows}
    base = variants[0].name
    for v in variants[1:]:
        verdicts = {}
        for metric, higher_is_better in METRICS.items():
            verdict = comparison.paired_verdict(per_seed[base][metric], per_seed[v.name][metric], higher_is_better)
            verdicts[metric] = {"difference": _interval_dict(verdict.difference), "verdict": verdict.verdict}
        summary["variants"][v.name]["against_baseline"] = verdicts
    return summary


def _fmt(row):
    text = f"{row['mean']:.4f}"
    if row["n"] > 1 and np.isfinite(row["low"]):
        text += f" [{row['low']:.4f}, {row['high']:.4f}]"
    return text


def markdown(summary, header=""):
    """The summary as markdown tables: scores per variant, then differences to the baseline."""
    lines = [header, ""] if header else []
    names = list(summary["variants"])
    lines += [f"Mean over {len(summary['seeds'])} training seeds ({', '.join(map(str, summary['seeds']))}) "
              f"with the 95% Student-t interval over seeds; per-image scores also with the 95% bootstrap "
              f"interval over the held-out images.", "",
              "| variant | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name in names:
        cells = []
        for metric in METRICS:
            row = summary["variants"][name]["metrics"][metric]
            cell = _fmt(row["seeds"])
            if "images" in row:
                cell += f"<br>images {_fmt(row['images'])}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if len(names) > 1:
        lines += ["", f"Paired differences against `{summary['baseline']}` (variant - baseline, per seed):", "",
                  "| variant | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for name in names[1:]:
            against = summary["variants"][name]["against_baseline"]
            lines.append(f"| {name} | " + " | ".join(
                f"{_fmt(against[m]['difference'])}: {against[m]['verdict']}" for m in METRICS) + " |")
    lines += ["", "sharpness_ratio: a generated image's variance of the Laplacian over its photo's (1 = as sharp); "
              "colour_texture_fd: the Frechet distance of a 43-value colour-texture descriptor "
              "(util/metrics/image_statistics.py), not FID. The verdict on sharpness_ratio reads higher as "
              "better (the generated images are blurrier than the photos)."]
    return "\n".join(lines) + "\n"


# -- pictures ----------------------------------------------------------------------------------------------------

PANEL = (260, 150)


def interval_plot(summary):
    """An RGB image: per metric a panel with each variant's mean and interval over seeds."""
    names = list(summary["variants"])
    metrics = list(METRICS)
    w, h = PANEL
    image = Image.new("RGB", (w * len(metrics), h), "white")
    draw = ImageDraw.Draw(image)
    for k, metric in enumerate(metrics):
        x0 = k * w
        rows = [summary["variants"][n]["metrics"][metric]["seeds"] for n in names]
        values = [v for r in rows for v in (r["mean"], r["low"], r["high"]) if np.isfinite(v)]
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
        draw.text((x0 + 6, 4), metric, fill="black")
        draw.rectangle([x0 + 4, 20, x0 + w - 4, h - 24], outline="grey")
        for i, (name, r) in enumerate(zip(names, rows)):
            x = x0 + 20 + (w - 40) * (i + 0.5) / len(names)

            def y(v):
                return 20 + (h - 44) * (hi - v) / (hi - lo)
            if np.isfinite(r["low"]):
                draw.line([x, y(r["high"]), x, y(r["low"])], fill="steelblue", width=2)
            draw.ellipse([x - 3, y(r["mean"]) - 3, x + 3, y(r["mean"]) + 3], fill="navy")
            draw.text((x - 20, h - 20), name[:8], fill="black")
        draw.text((x0 + 6, h - 34), f"{lo:.3g} .. {hi:.3g}", fill="grey")
    return np.asarray(image)


def sample_grid(rows):
    """``rows``: [(title, [HxWx3 uint8 images of one size])] -> one RGB image, a row each, titles on the left."""
    if not rows or not rows[0][1]:
        raise ValueError("no images for the grid")
    h, w = rows[0][1][0].shape[:2]
    title_w = 110
    cols = max(len(images) for _, images in rows)
    grid = Image.new("RGB", (title_w + cols * w, len(rows) * h), "white")
    draw = ImageDraw.Draw(grid)
    for r, (title, images) in enumerate(rows):
        draw.text((4, r * h + h // 2 - 6), title[:16], fill="black")
        for c, image in enumerate(images):
            grid.paste(Image.fromarray(np.asarray(image)).resize((w, h)), (title_w + c * w, r * h))
    return np.asarray(grid)
