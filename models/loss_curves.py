"""Curves of a training run, for the experiment page: the loss history read back from ``loss_log.txt``,
the FID per checkpoint from ``fid_ranking.json``, their smoothing, and line charts drawn as SVG text.
Pure Python: no Jittor, no files written."""

import html
import math
import re

LOSS_LINE = re.compile(r"^\(epoch: (\d+), iters: (\d+), total: (\d+), [^)]*\) (.*)$")
TERM = re.compile(r"([A-Za-z_][\w/.-]*): (\S+)")
SMOOTHING = 0.8  # weight of the running average in the smoothed curve (TensorBoard's kind of smoothing)
MAX_POINTS = 1000  # points drawn per raw curve; longer histories are thinned evenly
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def loss_line_prefix(epoch, iteration, total_iters, seconds_per_iter):
    """The start of a loss-log line; ``parse_loss_log`` reads it back."""
    return f"(epoch: {epoch}, iters: {iteration}, total: {total_iters}, time/iter: {seconds_per_iter:.3f}s) "


def parse_loss_log(text):
    """``{term: [(total_iters, value), ...]}`` from the text of a loss log, in iteration order.

    A run resumed from an earlier checkpoint logs iterations again that an interrupted run had logged
    already: the later lines replace the earlier ones from that iteration on. Lines of other kinds
    (headers, schedule notes, lines without the total iteration count) are skipped.
    """
    curves = {}
    for line in text.splitlines():
        match = LOSS_LINE.match(line.strip())
        if match is None:
            continue
        step = int(match.group(3))
        for name, value in TERM.findall(match.group(4)):
            try:
                number = float(value)
            except ValueError:
                continue
            points = curves.setdefault(name, [])
            while points and points[-1][0] >= step:
                points.pop()
            points.append((step, number))
    return curves


def smooth(values, weight=SMOOTHING):
    """Exponential moving average of ``values`` with the start-up bias removed (the first values are not
    pulled towards zero); non-finite values are passed through and do not enter the average."""
    out, average, norm = [], 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        average = weight * average + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(average / norm)
    return out


def thin(points, limit=MAX_POINTS):
    """At most ``limit`` points of ``points``, evenly spaced, keeping the first and the last."""
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def fid_points(ranking):
    """From a ``fid_ranking.json`` record: ``([(epoch, fid), ...] sorted by epoch, [(tag, fid), ...])`` -
    the checkpoints named by an epoch, and the others (averages, 'latest') by tag."""
    by_epoch, others = [], []
    for result in ranking.get("results", []):
        tag, fid = str(result.get("tag", "")), result.get("fid")
        if not isinstance(fid, (int, float)) or not math.isfinite(fid):
            continue
        (by_epoch.append((int(tag), float(fid))) if tag.isdigit() else others.append((tag, float(fid))))
    return sorted(by_epoch), sorted(others, key=lambda item: item[1])


def nice_ticks(low, high, count=5):
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def tick_text(value):
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3g}"


def line_chart_svg(title, series, width=420, height=220, x_label="iteration"):
    """An SVG line chart. ``series``: ``[(label, [(x, y), ...], colour, stroke width, opacity)]``, drawn in
    order; non-finite points are left out. Returns the SVG element as text."""
    left, right, top, bottom = 52, 20, 24, 34
    xs = [x for _, pts, *_ in series for x, y in pts if math.isfinite(y)]
    ys = [y for _, pts, *_ in series for x, y in pts if math.isfinite(y)]
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}'>",
             f"<text x='{left}' y='15' class='title'>{html.escape(title)}</text>"]
    if not xs:
        parts.append(f"<text x='{left}' y='{height // 2}'>no values yet</text></svg>")
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y):
        return top + (y1 - y) / (y1 - y0) * plot_h

    parts.append(f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' class='frame'/>")
    for y in nice_ticks(y0, y1):
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{py(y):.1f}' y2='{py(y):.1f}' class='grid'/>"
                     f"<text x='{left - 4}' y='{py(y) + 4:.1f}' class='ytick'>{tick_text(y)}</text>")
    for x in nice_ticks(x0, x1):
        parts.append(f"<text x='{px(x):.1f}' y='{top + plot_h + 14}' class='xtick'>{tick_text(x)}</text>")
    parts.append(f"<text x='{left + plot_w}' y='{height - 4}' class='xlabel'>{html.escape(x_label)}</text>")
    for label, pts, colour, stroke, opacity in series:
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts if math.isfinite(y))
        if not coords:
            continue
        shape = "polyline" if " " in coords else "circle"
        if shape == "circle":
            cx, cy = coords.split(",")
            parts.append(f"<circle cx='{cx}' cy='{cy}' r='3' fill='{colour}'><title>{html.escape(label)}</title>"
                         f"</circle>")
        else:
            parts.append(f"<polyline points='{coords}' fill='none' stroke='{colour}' stroke-width='{stroke}' "
                         f"stroke-opacity='{opacity}'><title>{html.escape(label)}</title></polyline>")
    parts.append("</svg>")
    return "".join(parts)


def loss_charts(curves, weight=SMOOTHING):
    """One SVG chart per loss term: the raw values (thin, light) and their smoothing (bold)."""
    charts = []
    for k, (name, points) in enumerate(curves.items()):
        colour = PALETTE[k % len(PALETTE)]
        smoothed = list(zip([x for x, _ in points], smooth([y for _, y in points], weight)))
        charts.append(line_chart_svg(name, [(f"{name} (raw)", thin(points), colour, 1, 0.35),
                                            (f"{name} (smoothed {weight})", thin(smoothed), colour, 2, 1.0)]))
    return charts


def fid_chart(by_epoch):
    """The chart of FID per epoch checkpoint."""
    return line_chart_svg("FID per checkpoint (lower is better)",
                          [("FID", by_epoch, PALETTE[0], 2, 1.0)], x_label="epoch")
