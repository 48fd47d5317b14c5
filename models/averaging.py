"""Weight averaging: the generation networks of several checkpoints of one experiment, merged into a new tag.

``average_tags`` averages the given tags of an experiment folder and writes the
result under a new tag (``default_out_tag``: avg_<tags joined by _>), used like
any other checkpoint; ``util/merge_ckpt.py`` is its command and ``util/fid.py``
averages the best checkpoints with it. ``average_states`` merges state dicts of
one network.

Only the networks used for generation are averaged (``nets_to_merge``): G, E
and the style encoder Es, and the EMA networks of a run trained with
--ema_decay (G_ema, E_ema, Es_ema: each averaged on its own, like the others)
when every tag has them (``ema_to_merge``). The discriminator D is not needed
to generate and is not merged; no training state is written, so an averaged
tag cannot be resumed from.

Floating-point entries are averaged in float64 (stored as float32); the
vectors u, v of a spectral-norm layer are re-estimated for the averaged
weight by power iteration (``reestimate_singular_vectors``), since the mean
of unit singular vectors of different weights is neither; integer entries
(counters) are copied from the last tag. The rules in full are the help
text of util/merge_ckpt.py.

Pure NumPy: Jittor is not imported.
"""

import os

import numpy as np

from util.core import checkpoint
from util.core.errors import CheckpointError, OptionError, few

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
            raise CheckpointError(f"{checkpoint.net_path(folder, tag, 'G')}: no generator checkpoint for tag {tag} "
                                  f"({checkpoint.available_hint(folder, 'available tags')}).")
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


def average_tags(folder, tags, out=None, nets=None, iterations=POWER_ITERATIONS, force=False):
    """Average checkpoints ``tags`` of the experiment folder ``folder`` and write the result as tag ``out``
    (default: ``default_out_tag(tags)``); returns the report lines (what util/merge_ckpt.py prints).

    ``nets``: the network names to average (default: ``nets_to_merge``'s choice); ``iterations``: power-iteration
    steps per spectral-norm layer; ``force``: overwrite existing output files. Refused (CheckpointError,
    OptionError, before anything is written): fewer than two tags or a tag given twice, a missing generator file,
    checkpoints whose architectures differ, a generator from the middle of progressive pre-training, an output
    tag that is one of the inputs or a training checkpoint, and existing output files without ``force``.
    """
    tags = list(tags)
    if len(tags) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoint tags, got {len(tags)} "
                              f"({', '.join(tags) or 'none'}); in {folder}: "
                              f"{checkpoint.available_hint(folder, 'available tags')}.")
    if len(set(tags)) < len(tags):
        raise CheckpointError(f"a tag is given twice ({' '.join(tags)}); give each checkpoint once.")
    if iterations < 1:
        raise OptionError(f"--power_iterations must be at least 1, got {iterations}.")
    out = out if out is not None else default_out_tag(tags)
    if out in tags:
        raise CheckpointError(f"the output tag {out} is one of the input tags; choose another --out.")
    if os.path.exists(checkpoint.state_path(folder, out)):
        raise CheckpointError(f"{checkpoint.state_path(folder, out)} exists: tag {out} is a training checkpoint and "
                              f"is never overwritten by an average; choose another --out.")
    notes = []
    names = nets_to_merge(folder, tags, nets, notes)
    existing = [path for path in (checkpoint.net_path(folder, out, n) for n in names) if os.path.exists(path)]
    if existing and not force:
        raise CheckpointError(f"{', '.join(existing)} already exist(s); pass --force to overwrite, or choose another "
                              f"--out.")

    merged, reports = {}, {}
    for name in names:
        states = [checkpoint.read_net(folder, tag, name) for tag in tags]
        if name in ("G", checkpoint.ema_name("G")):
            for tag, state in zip(tags, states):
                checkpoint.check_full_size_generator(state, checkpoint.net_path(folder, tag, name))
        labels = [checkpoint.net_path(folder, tag, name) for tag in tags]
        merged[name], reports[name] = average_states(states, labels, iterations)
    checkpoint.write_checkpoint(folder, out, merged)

    lines = []
    for name in names:
        report = reports[name]
        lines.append(f"wrote {checkpoint.net_path(folder, out, name)}: {report['averaged']} tensors averaged, "
                     f"{len(report['spectral'])} spectral-norm layers re-estimated ({iterations} power "
                     f"iterations), {len(report['copied'])} integer/bool tensors copied from tag {tags[-1]}")
        if report["differing"]:
            lines.append(f"note: {name}: {few(report['differing'])} differ between the checkpoints; copied from "
                         f"tag {tags[-1]}")
    lines += notes
    lines.append(f"use it with --which_epoch {out}")
    return lines
