"""Average the generation networks of several checkpoints of one experiment (weight averaging).

    python util/merge_ckpt.py CKPT_DIR 273 299 [more tags ...] [--out TAG] [--nets G,E,Es] [--force]

CKPT_DIR is the experiment folder (CHECKPOINTS_DIR/NAME, holding {tag}_net_G.pkl).
The result is written as a new tag, avg_<tags joined by _> unless --out is
given (e.g. avg_273_299_net_G.pkl, plus avg_273_299_net_E.pkl and
avg_273_299_net_Es.pkl when the checkpoints have a mask encoder E or a style
encoder Es), and is used like any other checkpoint:

    python test_phase.py --name NAME --which_epoch avg_273_299 --input_path LABELS --output_path OUT

Only the networks used for generation are averaged: G, E and the style
encoder Es (which encodes the reference photos of the style track), and the
EMA networks of a run trained with --ema_decay (G_ema, E_ema, Es_ema: each
averaged on its own, like the others) when every tag has them; generation
then uses the averaged EMA networks as it uses any checkpoint's. The
discriminator D is not needed to generate and is not merged; no training
state is written, so an averaged tag cannot be resumed from.

How each entry of a state dict is merged:
  * floating-point arrays (weights, biases, BatchNorm running mean/var,
    seg-noise convolutions): arithmetic mean over the checkpoints, computed in
    float64 and stored as float32;
  * spectral-norm layers (<prefix>.weight_orig / .weight_u / .weight_v):
    weight_orig is averaged like any weight; u and v are then re-estimated for
    the averaged weight by power iteration in float64 (v = normalize(W^T u),
    u = normalize(W v), eps 1e-12 as in the model), starting from the u of the
    last tag given, for --power_iterations steps, and stored as float32. In eval
    mode the model divides by sigma = u . (W v) with the stored u, v as they
    are, so they must be unit singular vectors of the averaged W: the mean of
    the u (or v) of different checkpoints is neither a unit vector nor an
    estimate for the averaged weight, and would scale the layer wrongly;
  * integer and boolean arrays (counters): a mean of counters means nothing,
    so they are copied from the last tag given; a note names those that differ
    between the checkpoints.

Refused: fewer than two tags, a missing generator file, checkpoints whose
architectures differ (other keys or shapes, E in some only; EMA networks in
some tags only are left out of the default set, with a note), a generator from
the middle of progressive pre-training, an output tag that is one of the
inputs or a training checkpoint, and existing output files without --force.
Pure NumPy: Jittor is not imported.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from util.core import checkpoint  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import CheckpointError, OptionError, few  # noqa: E402

POWER_ITERATIONS = 30
EPS = 1e-12  # as SpectralNormed.eps
MERGEABLE_NETS = ("G", "E", "Es", *(checkpoint.ema_name(n) for n in checkpoint.EMA_SOURCES))
SPECTRAL_SUFFIXES = (".weight_orig", ".weight_u", ".weight_v")


def l2_normalize(x, eps=EPS):
    return x / (np.sqrt(np.sum(x * x)) + eps)


def reestimate_singular_vectors(weight, u, v, iterations=POWER_ITERATIONS, eps=EPS):
    """Leading singular vectors (u, v) of ``weight`` reshaped to [out, -1], in float64.

    Power iteration as in the model, starting from ``u``; ``v`` is only returned
    unchanged when ``iterations`` is 0 (each step recomputes v from u first).
    """
    w = np.asarray(weight, np.float64).reshape(np.shape(weight)[0], -1)
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    for _ in range(iterations):
        v = l2_normalize(w.T @ u, eps)
        u = l2_normalize(w @ v, eps)
    return u, v


def spectral_prefixes(keys):
    """Prefixes of the spectral-norm layers: those with weight_orig, weight_u and weight_v."""
    keys = set(keys)
    suffix = SPECTRAL_SUFFIXES[0]
    return sorted(k[:-len(suffix)] for k in keys if k.endswith(suffix)
                  and all(k[:-len(suffix)] + s in keys for s in SPECTRAL_SUFFIXES))


def _is_float(array):
    return np.issubdtype(array.dtype, np.floating)


def check_same_architecture(states, labels):
    """Raise CheckpointError unless all state dicts have the same keys, shapes and kinds of values."""
    first, first_label = states[0], labels[0]
    for state, label in zip(states[1:], labels[1:]):
        only_first, only_this = sorted(set(first) - set(state)), sorted(set(state) - set(first))
        if only_first or only_this:
            parts = []
            if only_first:
                parts.append(f"missing in {label}: {few(only_first)}")
            if only_this:
                parts.append(f"missing in {first_label}: {few(only_this)}")
            raise CheckpointError(f"{first_label} and {label} have different architectures ({'; '.join(parts)}); "
                                  f"only checkpoints of the same model can be averaged.")
        for key in first:
            a, b = np.asarray(first[key]), np.asarray(state[key])
            if a.shape != b.shape:
                raise CheckpointError(f"{first_label} and {label} have different architectures: {key} has shape "
                                      f"{a.shape} in {first_label} and {b.shape} in {label}; only checkpoints of "
                                      f"the same model can be averaged.")
            if _is_float(a) != _is_float(b):
                raise CheckpointError(f"{key} is {a.dtype} in {first_label} but {b.dtype} in {label}; only "
                                      f"checkpoints of the same model can be averaged.")


def average_states(states, labels=None, iterations=POWER_ITERATIONS):
    """Merge state dicts of the same network; returns (merged state dict, report).

    ``labels`` name the states in error messages (default: their positions).
    The report has ``averaged`` (number of float arrays averaged, u and v not
    counted), ``spectral`` (prefixes of the layers whose u, v were re-estimated),
    ``copied`` (non-float keys taken from the last state) and ``differing``
    (those of them that are not equal in all states).
    """
    if len(states) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(states)}.")
    labels = [f"checkpoint {i + 1}" for i in range(len(states))] if labels is None else list(labels)
    states = [{k: np.asarray(v) for k, v in s.items()} for s in states]
    check_same_architecture(states, labels)
    last = states[-1]
    spectral = spectral_prefixes(last)
    vectors = {p + s for p in spectral for s in SPECTRAL_SUFFIXES[1:]}
    merged, copied, differing, averaged = {}, [], [], 0
    for key in last:
        if key in vectors:
            continue
        if _is_float(last[key]):
            merged[key] = np.mean([s[key].astype(np.float64) for s in states], axis=0).astype(np.float32)
            averaged += 1
        else:
            merged[key] = last[key].copy()
            copied.append(key)
            if any(not np.array_equal(s[key], last[key]) for s in states[:-1]):
                differing.append(key)
    for prefix in spectral:
        weight, u0, v0 = (last[prefix + s] for s in SPECTRAL_SUFFIXES)
        if u0.shape != (weight.shape[0],) or v0.shape != (weight.size // max(weight.shape[0], 1),):
            raise CheckpointError(f"{prefix}: spectral-norm vectors of shapes {u0.shape}, {v0.shape} do not fit "
                                  f"the weight of shape {weight.shape}.")
        u, v = reestimate_singular_vectors(merged[prefix + ".weight_orig"], u0, v0, iterations)
        merged[prefix + ".weight_u"], merged[prefix + ".weight_v"] = u.astype(np.float32), v.astype(np.float32)
    merged = {k: merged[k] for k in last}  # keep the checkpoint's key order
    return merged, {"averaged": averaged, "spectral": spectral, "copied": copied, "differing": differing}


def default_out_tag(tags):
    return "avg_" + "_".join(tags)


def parse_nets(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in MERGEABLE_NETS]
    if not names or bad:
        raise OptionError(f"--nets takes a comma-separated subset of {','.join(MERGEABLE_NETS)} (the networks used "
                          f"for generation), got {text!r}.")
    return list(dict.fromkeys(names))


OPTIONAL_NETS = {"E": "mask encoder", "Es": "style encoder"}
EMA_NETS = {checkpoint.ema_name(n): f"EMA {what}" for n, what in
            (("G", "generator"), ("E", "mask encoder"), ("Es", "style encoder"))}


def ema_to_merge(tags, present, networks):
    """(EMA networks every tag has, note or None): the EMA copies (G_ema, ...) of the networks in ``present``,
    when all tags have all of them (``networks``: {tag: ``util.core.checkpoint.networks_of``}); otherwise none, and
    a note why."""
    wanted = [checkpoint.ema_name(n) for n in present]
    having = {t for t in tags if all(n in networks[t] for n in wanted)}
    if len(having) == len(tags):
        return wanted, None
    if not any(n in networks[t] for t in tags for n in wanted):
        return [], None
    without = [t for t in tags if t not in having]
    return [], (f"note: the EMA networks ({', '.join(wanted)}) are not averaged: tag(s) {', '.join(without)} do not "
                f"have all of them; the average generates with {', '.join(present)}")


def nets_to_merge(folder, tags, requested, notes=None):
    """The network names to average: ``requested``, or G plus each encoder (E, Es) the checkpoints have,
    plus their EMA networks (``ema_to_merge``) when every tag has them. Notes go to ``notes`` (a list)."""
    for tag in tags:
        if not os.path.isfile(checkpoint.net_path(folder, tag, "G")):
            available = checkpoint.available_tags(folder)
            hint = f"available tags: {', '.join(available)}" if available else "no checkpoints there at all"
            raise CheckpointError(f"{checkpoint.net_path(folder, tag, 'G')}: no generator checkpoint for tag {tag} "
                                  f"({hint}).")
    present = ["G"]
    for name, what in OPTIONAL_NETS.items():
        having = [t for t in tags if os.path.isfile(checkpoint.net_path(folder, t, name))]
        if having and len(having) < len(tags):
            without = [t for t in tags if t not in having]
            raise CheckpointError(f"a {what} (_net_{name}.pkl) exists for tag(s) {', '.join(having)} but not for "
                                  f"{', '.join(without)}: these are not checkpoints of the same model.")
        if having:
            present.append(name)
    networks = {t: checkpoint.networks_of(folder, t) for t in tags}
    ema, note = ema_to_merge(tags, present, networks)
    if requested is None:
        if note and notes is not None:
            notes.append(note)
        return present + ema
    for name in requested:
        if name in EMA_NETS:
            without = [t for t in tags if name not in networks[t]]
            if without:
                raise CheckpointError(f"--nets asks for {name} but tag {without[0]} has no {EMA_NETS[name]} "
                                      f"({checkpoint.net_path(folder, without[0], name)}; it comes from training "
                                      f"with --ema_decay).")
        elif name not in present:
            raise CheckpointError(f"--nets asks for {name} but {checkpoint.net_path(folder, tags[0], name)} does "
                                  f"not exist (the model has no {OPTIONAL_NETS[name]}).")
    return requested


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="CKPT_DIR", help="experiment folder holding the checkpoints ({tag}_net_G.pkl)")
    p.add_argument("tags", nargs="+", metavar="TAG",
                   help="two or more checkpoint tags (epochs or names) to average; the last one gives the start of "
                        "the power iteration and the integer buffers")
    p.add_argument("--out", default=None, metavar="TAG", help="tag of the result (default: avg_<tags joined by _>)")
    p.add_argument("--nets", type=parse_nets, default=None, metavar="G,E,Es",
                   help="networks to average, a subset of G,E,Es,G_ema,E_ema,Es_ema (default: G, and the mask "
                        "encoder E and the style encoder Es when the checkpoints have them, and the EMA networks "
                        "of these when every tag has them); D is never merged, generation does not use it")
    p.add_argument("--power_iterations", type=int, default=POWER_ITERATIONS, metavar="N",
                   help="power-iteration steps that re-estimate the spectral-norm vectors u, v of each averaged "
                        "weight, in float64 from the last tag's u")
    p.add_argument("--force", action="store_true", help="overwrite the output files when they exist")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    folder, tags = args.folder, list(args.tags)
    if len(tags) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoint tags, got {len(tags)} ({tags[0]}); "
                              f"available in {folder}: {', '.join(checkpoint.available_tags(folder)) or 'none'}.")
    if len(set(tags)) < len(tags):
        raise CheckpointError(f"a tag is given twice ({' '.join(tags)}); give each checkpoint once.")
    if args.power_iterations < 1:
        raise OptionError(f"--power_iterations must be at least 1, got {args.power_iterations}.")
    out = args.out if args.out is not None else default_out_tag(tags)
    if out in tags:
        raise CheckpointError(f"the output tag {out} is one of the input tags; choose another --out.")
    if os.path.exists(checkpoint.state_path(folder, out)):
        raise CheckpointError(f"{checkpoint.state_path(folder, out)} exists: tag {out} is a training checkpoint and "
                              f"is never overwritten by an average; choose another --out.")
    notes = []
    names = nets_to_merge(folder, tags, args.nets, notes)
    existing = [path for path in (checkpoint.net_path(folder, out, n) for n in names) if os.path.exists(path)]
    if existing and not args.force:
        raise CheckpointError(f"{', '.join(existing)} already exist(s); pass --force to overwrite, or choose another "
                              f"--out.")

    merged, reports = {}, {}
    for name in names:
        states = [checkpoint.read_net(folder, tag, name) for tag in tags]
        if name in ("G", checkpoint.ema_name("G")):
            for tag, state in zip(tags, states):
                checkpoint.check_full_size_generator(state, checkpoint.net_path(folder, tag, name))
        labels = [checkpoint.net_path(folder, tag, name) for tag in tags]
        merged[name], reports[name] = average_states(states, labels, args.power_iterations)
    checkpoint.write_checkpoint(folder, out, merged)

    for name in names:
        report = reports[name]
        print(f"wrote {checkpoint.net_path(folder, out, name)}: {report['averaged']} tensors averaged, "
              f"{len(report['spectral'])} spectral-norm layers re-estimated ({args.power_iterations} power "
              f"iterations), {len(report['copied'])} integer/bool tensors copied from tag {tags[-1]}")
        if report["differing"]:
            print(f"note: {name}: {few(report['differing'])} differ between the checkpoints; copied from "
                  f"tag {tags[-1]}")
    for note in notes:
        print(note)
    print(f"use it with --which_epoch {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
