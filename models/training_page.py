"""What training shows a person: the loss log file, sample grids
(label colourised | generated | real) and an HTML page per experiment with
the loss curves, the FID per checkpoint (after a ranking) and the grids."""

import html
import json
import os
import time

import numpy as np

from data.image_io import save_image
from data.labels import colorize
from models.loss_curves import fid_chart, fid_points, loss_charts, loss_line_prefix, parse_loss_log
from util.core.files import atomic_write

LOSS_LOG = "loss_log.txt"
RANKING_NAME = "fid_ranking"  # util/fid.py writes RANKING_NAME.json and .csv in the experiment folder
PAGE_STYLE = ("body{font-family:sans-serif} img{max-width:100%} .charts{display:flex;flex-wrap:wrap;gap:8px} "
              ".chart{background:#fff;border:1px solid #ddd} .chart .title{font-weight:bold;font-size:13px} "
              ".chart text{font-size:11px;fill:#333} .chart .ytick{text-anchor:end} "
              ".chart .xtick{text-anchor:middle} .chart .xlabel{text-anchor:end} "
              ".chart .frame{fill:none;stroke:#999} .chart .grid{stroke:#eee} td,th{padding:2px 8px}")
REFRESH_SECONDS = 60


def sample_grid(labels, fakes, reals, label_nc, max_rows=4):
    """Stack rows of [colourised label | generated | real] (HxWx3 uint8 each) into one picture."""
    rows = []
    for i in range(min(max_rows, len(fakes))):
        cells = [colorize(labels[i], label_nc), fakes[i]]
        if reals is not None:
            cells.append(reals[i])
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def read_text(path):
    """The text of ``path``, or '' when it is absent or unreadable."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def read_ranking(folder):
    """The record of FOLDER/fid_ranking.json, or {} when it is absent or unreadable."""
    try:
        with open(os.path.join(folder, RANKING_NAME + ".json")) as f:
            record = json.load(f)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def experiment_page(name, curves, ranking, images):
    """The HTML of an experiment page: loss curves, FID per checkpoint (when ``ranking`` has results) and
    the sample grids ``images`` (file names under images/, shown in the given order)."""
    title = html.escape(name)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta http-equiv='refresh' "
             f"content='{REFRESH_SECONDS}'><title>{title}</title><style>{PAGE_STYLE}</style></head><body>",
             f"<h1>{title}</h1>"]
    if curves:
        parts.append(f"<h2>Losses</h2><p>Every logged term over the iterations: thin line the logged values, "
                     f"bold line their moving average. The page reloads every {REFRESH_SECONDS} s.</p>")
        parts.append("<div class='charts'>" + "".join(loss_charts(curves)) + "</div>")
    by_epoch, others = fid_points(ranking)
    if by_epoch or others:
        parts.append("<h2>FID</h2>")
        if by_epoch:
            parts.append("<div class='charts'>" + fid_chart(by_epoch) + "</div>")
        rows = sorted([(str(e), f) for e, f in by_epoch] + others, key=lambda row: row[1])
        parts.append("<table><tr><th>checkpoint</th><th>FID</th></tr>" + "".join(
            f"<tr><td>{html.escape(tag)}</td><td>{fid:.3f}</td></tr>" for tag, fid in rows) + "</table>")
    parts.append("<h2>Samples</h2><p>Each row: label map | generated | real photo. Newest first.</p>")
    for image in images:
        parts.append(f"<h3>{html.escape(image)}</h3><img src='images/{html.escape(image)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_experiment_page(folder, name=None):
    """(Re)write FOLDER/web/index.html from what the folder holds: loss_log.txt, fid_ranking.json and the
    sample grids in web/images. Returns the page's path."""
    image_dir = os.path.join(folder, "web", "images")
    images = sorted(os.listdir(image_dir), reverse=True) if os.path.isdir(image_dir) else []
    page = experiment_page(name or os.path.basename(os.path.abspath(folder)),
                           parse_loss_log(read_text(os.path.join(folder, LOSS_LOG))), read_ranking(folder), images)
    return atomic_write(os.path.join(folder, "web", "index.html"), page)


class TrainingLog:
    """Appends loss lines to ``loss_log.txt`` and keeps ``web/index.html`` (curves and sample grids) current."""

    def __init__(self, folder, name):
        self.folder = folder
        self.name = name
        self.web_dir = os.path.join(folder, "web")
        self.image_dir = os.path.join(self.web_dir, "images")
        os.makedirs(self.image_dir, exist_ok=True)
        self.log_path = os.path.join(folder, LOSS_LOG)
        with open(self.log_path, "a") as f:
            f.write(f"================ Training ({time.strftime('%Y-%m-%d %H:%M:%S')}) ================\n")

    def log_losses(self, epoch, iteration, total_iters, losses, seconds_per_iter):
        """Append a loss line (``iteration`` within the epoch, ``total_iters`` since the start) and redraw
        the page's curves; returns the line."""
        text = loss_line_prefix(epoch, iteration, total_iters, seconds_per_iter) + \
            " ".join(f"{k}: {v:.4f}" for k, v in losses.items())
        with open(self.log_path, "a") as f:
            f.write(text + "\n")
        self.write_html()
        return text

    def note(self, text):
        with open(self.log_path, "a") as f:
            f.write(text + "\n")

    def save_samples(self, epoch, iteration, grid):
        filename = f"epoch{epoch:03d}_iter{iteration:07d}.jpg"
        save_image(os.path.join(self.image_dir, filename), grid)
        self.write_html()
        return filename

    def write_html(self):
        write_experiment_page(self.folder, self.name)


def comparison_page(path, title, rows, columns):
    """Write an HTML table: one row per item, ``columns`` headings, cells are image paths relative to the page."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif} td img{width:320px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><table><tr><th>name</th>",
             "".join(f"<th>{html.escape(c)}</th>" for c in columns), "</tr>"]
    for name, cells in rows:
        parts.append(f"<tr><td>{html.escape(name)}</td>" +
                     "".join(f"<td><img src='{html.escape(c)}'></td>" for c in cells) + "</tr>")
    parts.append("</table></body></html>")
    atomic_write(path, "\n".join(parts))
