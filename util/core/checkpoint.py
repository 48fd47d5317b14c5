"""The one checkpoint writer and reader.

Layout in the experiment folder: ``{tag}_net_{G,D,E,...}.pkl`` (plain state
dicts of NumPy arrays, in Jittor's ``.pkl`` format: pickle + SHA-1 + magic)
and ``{tag}_state.pkl`` (optimisers, epoch, iteration, RNG state, and the
SHA-1 of each network file of the same tag). Tags are epoch numbers or
``latest``. A run with ``--ema_decay`` also saves the exponential moving
averages of its generator networks as networks of their own, named by
``ema_name`` (``{tag}_net_G_ema.pkl``, ``_E_ema``, ``_Es_ema``).

Writing is atomic per checkpoint: every file is first written under a
temporary name; the files of the previous save of the tag are kept as
``*.prev`` hard links; then all new files are renamed into place, state
last, and the ``*.prev`` links are removed. A process killed at any moment
leaves a complete checkpoint: ``read_training_checkpoint`` takes the new set
when its digests agree and otherwise the ``*.prev`` set. ``write_file`` /
``read_file`` store a single other object (e.g. the pure-colour dictionary of
``data.pure_colour``) in the same encoding, atomically; ``write_text`` writes
a report or table atomically (both through ``util.core.files``). ``decode`` is
the one reader of Jittor's ``.pkl`` encoding, also of files Jittor itself
wrote (``util/import_ckpt.py``). ``describe_state_differences`` words what
``state_differences`` finds, for every loader's message. Pure Python/NumPy.
"""

import hashlib
import os
import pickle
import re
import shutil

import numpy as np

from util.core.errors import CheckpointError, few
from util.core.files import atomic_write, temp_name, write_temp

MAGIC = b"HCAJSLHD"  # Jittor's .pkl trailer: pickle, then the SHA-1 of the pickle, then MAGIC
DIGEST_SIZE = 20


def encode(obj):
    body = pickle.dumps(obj, 4)
    return body + hashlib.sha1(body).digest() + MAGIC


class DamagedFileError(CheckpointError):
    """A file in the checkpoint encoding that cannot be decoded. ``cause`` is None when its checksum does not
    match, else the exception unpickling raised (for callers that word the error their own way)."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


def decode(data, path):
    """The object in ``data`` (the bytes of ``path``): a pickle with or without Jittor's SHA-1 + MAGIC
    trailer, as ``encode`` and ``jt.save`` write it; DamagedFileError when it cannot be read."""
    if data.endswith(MAGIC):
        body, digest = data[:-DIGEST_SIZE - len(MAGIC)], data[-DIGEST_SIZE - len(MAGIC):-len(MAGIC)]
        if hashlib.sha1(body).digest() != digest:
            raise DamagedFileError(f"{path}: checksum mismatch; the file is truncated or corrupt.")
    else:
        body = data
    try:
        return pickle.loads(body)
    except Exception as err:
        raise DamagedFileError(f"{path}: not a readable checkpoint; the file is truncated or corrupt "
                               f"({err.__class__.__name__}: {err}).", err) from None


EMA_SOURCES = ("G", "E", "Es")  # the networks of which --ema_decay keeps a moving average
EMA_SUFFIX = "_ema"


def ema_name(net):
    """The checkpoint name of the EMA copy of network ``net``: G -> G_ema."""
    return net + EMA_SUFFIX


def experiment_dir(opt):
    """The experiment folder of parsed options: CHECKPOINTS_DIR/NAME."""
    return os.path.join(opt.checkpoints_dir, opt.name)


def net_path(folder, tag, net):
    return os.path.join(folder, f"{tag}_net_{net}.pkl")


def state_path(folder, tag):
    return os.path.join(folder, f"{tag}_state.pkl")


def _to_numpy(state_dict):
    out = {}
    for key, value in state_dict.items():
        out[key] = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return out


def write_checkpoint(folder, tag, nets, state=None):
    """Write ``nets`` ({name: state dict}) and optionally ``state`` (a dict) under ``tag``."""
    os.makedirs(folder, exist_ok=True)
    pending, digests = [], {}
    try:
        for name, sd in nets.items():
            data = encode(_to_numpy(sd))
            digests[name] = hashlib.sha1(data).hexdigest()
            pending.append(_write_temp(net_path(folder, tag, name), data))
        if state is not None:
            full_state = dict(state, net_digests=digests)
            pending.append(_write_temp(state_path(folder, tag), encode(full_state)))
    except BaseException:
        for tmp, _ in pending:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    backups = [_keep_previous(final) for _, final in pending]
    for tmp, final in pending:  # state file is last
        os.replace(tmp, final)
    for backup in backups:
        if backup and os.path.exists(backup):
            os.remove(backup)


PREVIOUS = ".prev"


def _keep_previous(final):
    """Hard-link the existing ``final`` to ``final.prev`` (atomically); returns the backup path or None."""
    if not os.path.exists(final):
        return None
    backup, tmp = final + PREVIOUS, temp_name(final + PREVIOUS)
    if os.path.exists(tmp):
        os.remove(tmp)
    try:
        os.link(final, tmp)
    except OSError:  # file systems without hard links
        shutil.copy2(final, tmp)
    os.replace(tmp, backup)
    return backup


def _write_temp(final, data):
    """(temporary file holding ``data``, ``final``): the first half of an atomic write."""
    return write_temp(final, data), final


def write_file(path, obj):
    """Write one object in the checkpoint encoding, atomically (temporary file, then rename)."""
    atomic_write(path, encode(obj))


def write_text(path, text):
    """Write a text file (a report, a table) atomically."""
    atomic_write(path, text)


def read_file(path, what="checkpoint"):
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: {what} file not found.")
    with open(path, "rb") as f:
        return decode(f.read(), path)


def read_net(folder, tag, name):
    """The state dict of network ``name`` at ``tag``."""
    sd = read_file(net_path(folder, tag, name), f"network {name}")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{net_path(folder, tag, name)}: expected a state dict, found {type(sd).__name__}.")
    return sd


def networks_of(folder, tag):
    """The names of the networks checkpoint ``tag`` has: its network files ({tag}_net_NAME.pkl) and, when the
    tag has a training state, only those that state records. A file left behind by an earlier save of the tag
    (e.g. latest_net_G_ema.pkl after a run was resumed without --ema_decay) does not count. Reads the state
    (optimiser moments included) once: ask once per checkpoint, not once per network."""
    if not os.path.isdir(folder):
        return set()
    prefix = f"{tag}_net_"
    names = {f[len(prefix):-len(".pkl")] for f in os.listdir(folder) if f.startswith(prefix) and f.endswith(".pkl")}
    spath = state_path(folder, tag)
    if not os.path.isfile(spath):
        return names  # a merged or copied tag: its files are all it has
    state = read_file(spath, "training-state")
    return names & set(state.get("net_digests", {}) if isinstance(state, dict) else {})


def recorded_nets(state, nets, optional=()):
    """``nets`` followed by those of ``optional`` whose files the training ``state`` records (by digest)."""
    digests = state.get("net_digests", {}) if isinstance(state, dict) else {}
    return list(nets) + [name for name in optional if name in digests and name not in nets]


def read_state(folder, tag, nets, suffix="", optional=()):
    """The training state at ``tag``, after checking it belongs to the network files ``nets`` and to those
    of ``optional`` that it records."""
    spath = state_path(folder, tag) + suffix
    state = read_file(spath, "training-state")
    for name in recorded_nets(state, nets, optional):
        path = net_path(folder, tag, name) + suffix
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: network file missing for training state {spath}.")
        with open(path, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()
        if state.get("net_digests", {}).get(name) != digest:
            raise CheckpointError(f"{path} does not belong to {spath} (written by different "
                                  f"saves); resume from another checkpoint with --which_epoch.")
    return state


def imported_format(folder, tag):
    """The source format ('spade', 'apf') when ``tag`` was written by util/import_ckpt.py, else None."""
    path = state_path(folder, tag)
    if not os.path.isfile(path):
        return None
    state = read_file(path, "training-state")
    return state.get("imported") if isinstance(state, dict) else None


def state_differences(own_shapes, state, may_be_new=None):
    """How a state dict differs from a model's {key: shape}: (new, missing, unused, wrong-shape) sorted keys.

    ``new``: keys the state lacks that ``may_be_new(key)`` allows; ``missing``: the other keys it lacks."""
    absent = set(own_shapes) - set(state)
    new = sorted(k for k in absent if may_be_new is not None and may_be_new(k))
    missing = sorted(absent - set(new))
    unused = sorted(set(state) - set(own_shapes))
    wrong = sorted(k for k in set(own_shapes) & set(state)
                   if tuple(own_shapes[k]) != tuple(state[k].shape))
    return new, missing, unused, wrong


def describe_state_differences(own_shapes, state, missing, unused, wrong, terms, shown=5):
    """The parts of a message saying how ``state`` differs from a model's {key: shape} ``own_shapes``, one a
    kind of difference found by ``state_differences``: '{term}: first names ... (N in all)'. ``terms`` names
    the kinds (missing keys, unused keys, shapes that differ); a shape difference reads 'key (state shape) vs
    (model shape)'. Empty when they agree."""
    missing_term, unused_term, wrong_term = terms
    parts = []
    if missing:
        parts.append(f"{missing_term}: {few(missing, shown)}")
    if unused:
        parts.append(f"{unused_term}: {few(unused, shown)}")
    if wrong:
        parts.append(f"{wrong_term}: " + few([f"{k} {tuple(state[k].shape)} vs {tuple(own_shapes[k])}"
                                               for k in wrong], shown))
    return parts


def read_training_checkpoint(folder, tag, nets, optional=()):
    """(state, {name: state dict}, used_previous) of a complete checkpoint at ``tag``.

    ``optional`` networks (e.g. the EMA copies) are read too when the checkpoint
    has them (its state records their digests) and left out otherwise.
    When the newest files do not form a complete set (a save was killed while
    renaming), the ``*.prev`` set of the save before is returned instead.
    """
    suffix = ""
    try:
        state = read_state(folder, tag, nets, optional=optional)
    except CheckpointError:
        if not os.path.exists(state_path(folder, tag) + PREVIOUS):
            raise
        suffix = PREVIOUS
        state = read_state(folder, tag, nets, suffix, optional)
    states = {}
    for name in recorded_nets(state, nets, optional):
        states[name] = read_file(net_path(folder, tag, name) + suffix, f"network {name}")
    return state, states, bool(suffix)


PROGRESSIVE_HEAD_PREFIX = "to_rgb_"


def check_full_size_generator(state, source):
    """Refuse a generator state dict that still has progressive to-RGB heads (a checkpoint from the
    middle of pre-training, whose full-size output is not trained yet)."""
    if any(str(key).startswith(PROGRESSIVE_HEAD_PREFIX) for key in state):
        raise CheckpointError(f"{source} is from the middle of progressive pre-training (the generator still has "
                              f"its lower-resolution to-RGB heads; its full-size output is not trained yet). Use a "
                              f"checkpoint from the last pre-training epoch (--pg_niter) or later, or resume that "
                              f"run with --continue_train.")


def available_tags(folder):
    """Tags with a generator file, numeric epochs sorted numerically, then the others."""
    if not os.path.isdir(folder):
        return []
    tags = [m.group(1) for f in os.listdir(folder) if (m := re.match(r"^(.+)_net_G\.pkl$", f))]
    numeric = sorted((t for t in tags if t.isdigit()), key=int)
    return numeric + sorted(t for t in tags if not t.isdigit())


def available_hint(folder, label="available"):
    """The part of a 'no checkpoint for this tag' message that says what ``folder`` has: 'available: 3, 4'
    (``label``, then ``available_tags``), or 'no checkpoints there at all'."""
    tags = available_tags(folder)
    return f"{label}: {', '.join(tags)}" if tags else "no checkpoints there at all"
