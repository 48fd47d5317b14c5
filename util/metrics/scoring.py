"""The competition's scoring maths: colour-histogram style correlation and the
two track formulas. Pure NumPy, no files and no printing; ``util/score.py``
is the command line around it.

Style correlation
    ``colour_histogram(rgb)`` of an HxWx3 uint8 RGB image is three 256-bin
    histograms, one per channel (R, G, B; bin ``v`` counts the pixels whose
    channel value is ``v``), each divided by the pixel count so that it sums
    to 1, concatenated in the order R, G, B: 768 float64 values. Because of
    the normalisation, images of different sizes compare directly.
    ``histogram_correlation(h1, h2)`` is Pearson's correlation of the two
    768-value vectors, computed as OpenCV's ``compareHist(h1, h2,
    HISTCMP_CORREL)``: ``sum((h1 - m1)(h2 - m2)) / sqrt(sum((h1 - m1)^2)
    sum((h2 - m2)^2))``, and 1.0 when the denominator is below DBL_EPSILON
    (a constant histogram), as OpenCV does. The correlation ``style_corr``
    lies in [-1, 1]; ``style_similarity = (style_corr + 1) / 2`` in [0, 1].

Formulas (``mask_acc`` in [0, 1], ``aesthetic`` in [0, 10], ``fid`` >= 0,
``style`` the raw correlation in [-1, 1])
    main track:  ``mask_acc * (aesthetic / 10 * 0.5 + (100 - fid) / 100 * 0.5)``
    style track: ``mask_acc * (aesthetic * 0.2 + (style * 0.5 + 0.5) * 0.3
    + (100 - fid) / 100 * 0.5)``
    The style-track formula multiplies the aesthetic score by 0.2 without
    dividing it by 10, exactly as the competition writes it, so that term can
    reach 2.0 and outweighs the others; it is kept as written, not corrected.

``evaluate_formulas`` applies both to whichever terms are available and
names the missing ones. Its partial value counts each missing *additive* term
as contributing 0 (a missing FID adds nothing, it is not read as FID = 0);
without the mask accuracy, the common factor, there is no partial value.
"""

import numpy as np

HISTOGRAM_BINS = 256
DBL_EPSILON = float(np.finfo(np.float64).eps)

HISTOGRAM_NOTE = ("R, G, B 256-bin histograms of the uint8 pixels, each normalised to sum 1, concatenated (768 "
                  "values); Pearson correlation, as OpenCV compareHist HISTCMP_CORREL")
MAIN_TRACK = "mask_acc * (aesthetic/10*0.5 + (100-FID)/100*0.5)"
STYLE_TRACK = "mask_acc * (aesthetic*0.2 + (style*0.5+0.5)*0.3 + (100-FID)/100*0.5)"


def colour_histogram(rgb):
    """Concatenated per-channel 256-bin histograms (R, G, B) of a uint8 image, each summing to 1: (768,) float64."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"colour_histogram expects an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    pixels = rgb.reshape(-1, 3)
    if len(pixels) == 0:
        raise ValueError("colour_histogram needs an image with at least one pixel")
    hists = [np.bincount(pixels[:, c], minlength=HISTOGRAM_BINS).astype(np.float64) / len(pixels)
             for c in range(3)]
    return np.concatenate(hists)


def histogram_correlation(h1, h2):
    """Pearson correlation of two histograms, as OpenCV's HISTCMP_CORREL (1.0 if either is constant)."""
    h1, h2 = np.asarray(h1, np.float64).ravel(), np.asarray(h2, np.float64).ravel()
    if h1.shape != h2.shape or h1.size == 0:
        raise ValueError(f"histograms must be non-empty and of one size, got {h1.size} and {h2.size} values")
    d1, d2 = h1 - h1.mean(), h2 - h2.mean()
    denom2 = float((d1 * d1).sum() * (d2 * d2).sum())
    if abs(denom2) <= DBL_EPSILON:
        return 1.0
    return float(np.clip((d1 * d2).sum() / np.sqrt(denom2), -1.0, 1.0))


def style_correlation(generated, reference):
    """``style_corr`` of two HxWx3 uint8 RGB images (sizes may differ): in [-1, 1]."""
    return histogram_correlation(colour_histogram(generated), colour_histogram(reference))


def style_similarity(corr):
    """Map a correlation in [-1, 1] to [0, 1]: ``(corr + 1) / 2`` (the formula's ``style*0.5+0.5``)."""
    return (float(corr) + 1.0) / 2.0


def fid_term(fid):
    """``(100 - FID) / 100``: 1 for a perfect FID of 0, negative beyond 100."""
    return (100.0 - float(fid)) / 100.0


# Each formula as (name, text, factor term, [(term, contribution(value))]) so availability is data, not code paths.
_FORMULAS = (
    ("main_track", MAIN_TRACK, [("aesthetic", lambda a: a / 10.0 * 0.5), ("fid", lambda f: fid_term(f) * 0.5)]),
    ("style_track", STYLE_TRACK, [("aesthetic", lambda a: a * 0.2), ("style", lambda s: style_similarity(s) * 0.3),
                                  ("fid", lambda f: fid_term(f) * 0.5)]),
)


def evaluate_formulas(mask_acc=None, aesthetic=None, fid=None, style=None):
    """Both track scores from the terms given (None = unavailable).

    Returns ``{track: {"formula", "terms", "available", "missing", "value",
    "partial_value"}}``: ``value`` is the score when every term is there,
    else None; ``missing`` names the absent terms; ``partial_value`` counts
    missing additive terms as contributing 0 (None without ``mask_acc``).
    """
    given = {"mask_acc": mask_acc, "aesthetic": aesthetic, "fid": fid, "style": style}
    out = {}
    for name, text, parts in _FORMULAS:
        terms = ["mask_acc"] + [t for t, _ in parts]
        missing = [t for t in terms if given[t] is None]
        partial = None
        if mask_acc is not None:
            partial = float(mask_acc) * sum(f(float(given[t])) for t, f in parts if given[t] is not None)
        out[name] = {"formula": text, "terms": terms, "available": not missing, "missing": missing,
                     "value": None if missing else partial, "partial_value": partial}
    return out


def main_track_score(mask_acc, aesthetic, fid):
    """``mask_acc * (aesthetic/10*0.5 + (100-FID)/100*0.5)``."""
    return evaluate_formulas(mask_acc, aesthetic, fid)["main_track"]["value"]


def style_track_score(mask_acc, aesthetic, style, fid):
    """``mask_acc * (aesthetic*0.2 + (style*0.5+0.5)*0.3 + (100-FID)/100*0.5)``; ``style`` is the raw correlation."""
    return evaluate_formulas(mask_acc, aesthetic, fid, style)["style_track"]["value"]
