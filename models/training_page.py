"""What training shows a person: the loss log file, sample grids
(label colourised | generated | real) and an HTML page per experiment."""

import html
import os
import time

import numpy as np

from data.image_io import save_image
from data.labels import colorize
from util.core.files import atomic_write


def sample_grid(labels, fakes, reals, label_nc, max_rows=4):
    """Stack rows of [colourised label | generated | real] (HxWx3 uint8 each) into one picture."""
    rows = []
    for i in range(min(max_rows, len(fakes))):
        cells = [colorize(labels[i], label_nc), fakes[i]]
        if reals is not None:
            cells.append(reals[i])
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


class TrainingLog:
    """Appends loss lines to ``loss_log.txt`` and keeps ``web/index.html`` listing the sample grids."""

    def __init__(self, folder, name):
        self.folder = folder
        self.name = name
        self.web_dir = os.path.join(folder, "web")
        self.image_dir = os.path.join(self.web_dir, "images")
        os.makedirs(self.image_dir, exist_ok=True)
        self.log_path = os.path.join(folder, "loss_log.txt")
        with open(self.log_path, "a") as f:
            f.write(f"================ Training ({time.strftime('%Y-%m-%d %H:%M:%S')}) ================\n")

    def log_losses(self, epoch, iteration, losses, seconds_per_iter):
        text = f"(epoch: {epoch}, iters: {iteration}, time/iter: {seconds_per_iter:.3f}s) " + \
            " ".join(f"{k}: {v:.4f}" for k, v in losses.items())
        with open(self.log_path, "a") as f:
            f.write(text + "\n")
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
        images = sorted(os.listdir(self.image_dir), reverse=True)
        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.name)}</title>",
                 "<style>body{font-family:sans-serif} img{max-width:100%}</style></head><body>",
                 f"<h1>{html.escape(self.name)}</h1><p>Each row: label map | generated | real photo. Newest first.</p>"]
        for name in images:
            parts.append(f"<h3>{html.escape(name)}</h3><img src='images/{html.escape(name)}'>")
        parts.append("</body></html>")
        atomic_write(os.path.join(self.web_dir, "index.html"), "\n".join(parts))


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
