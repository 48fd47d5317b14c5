"""Deterministic inputs and weights shared by the reference runners and the tests that read their outputs.

NumPy only, so that the runners (run with the reference code, in PyTorch or
in APF-GAN-jittor's Jittor) and the tests (run with this project) build the
same numbers without storing them:

* ``generated_tensor(seed, key, shape)``: the start value of every tensor of a
  reference network, from its name alone;
* ``split_state`` / ``rebuild_state``: a runner stores only the small tensors
  of the state it ran with (power-iteration vectors, batch-norm statistics,
  biases, the output convolution it rescaled); the large ones (convolution
  weights) are regenerated from their names, and the runner checks that the
  reference left them at their generated values;
* ``label_map``: label maps of random rectangular regions, with small regions
  of every size, so that every class channel and nearest resizing matter;
* ``noise(shape)``: the seg-noise draw for a shape, identical in every
  implementation whatever the order in which its layers draw.
"""

import zlib

import numpy as np

SMALL = 4096  # tensors with at most this many values are stored; larger ones are regenerated


def _rng(*parts):
    return np.random.RandomState(zlib.crc32(":".join(str(p) for p in parts).encode()) & 0x7FFFFFFF)


def generated_tensor(seed, key, shape, gain=1.0):
    """Start value of tensor ``key``: weights N(0, gain^2 / fan_in), biases N(0, 0.1^2), seg-noise amplitudes
    N(0, 0.3^2), unit power-iteration vectors, batch-norm statistics 0 / 1, counters 0."""
    shape = tuple(int(s) for s in shape)
    rng = _rng(seed, key)
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, np.int64)
    if key.endswith("running_mean"):
        return np.zeros(shape, np.float32)
    if key.endswith("running_var"):
        return np.ones(shape, np.float32)
    if key.endswith(("weight_u", "weight_v")):
        v = rng.normal(size=shape)
        return (v / np.linalg.norm(v)).astype(np.float32)
    if ".seg_noise_var." in key:
        return rng.normal(0.0, 0.3, shape).astype(np.float32)
    if key.endswith(("weight", "weight_orig")) and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return rng.normal(0.0, gain / np.sqrt(fan_in), shape).astype(np.float32)
    return rng.normal(0.0, 0.1, shape).astype(np.float32)


def generated_state(seed, shapes, gain=1.0):
    """{key: generated_tensor} for {key: shape}."""
    return {k: generated_tensor(seed, k, s, gain) for k, s in shapes.items()}


def split_state(state, seed, gain=1.0):
    """(stored {key: array} of the small tensors, {key: shape} of all) of a state the reference ran with.

    Raises AssertionError when a large tensor is not its generated value (it could not be rebuilt)."""
    stored, shapes = {}, {}
    for key, value in state.items():
        value = np.asarray(value)
        shapes[key] = tuple(value.shape)
        if value.size <= SMALL:
            stored[key] = value
        else:
            expected = generated_tensor(seed, key, value.shape, gain)
            assert np.array_equal(value, expected), f"{key}: a large tensor changed; it cannot be regenerated"
    return stored, shapes


def rebuild_state(stored, shapes, seed, gain=1.0):
    """The full state of ``split_state``'s output."""
    return {k: stored[k] if k in stored else generated_tensor(seed, k, s, gain) for k, s in shapes.items()}


def pack(prefix, stored, shapes):
    """npz entries {prefix/key: array} and {prefix/__shapes__: JSON} for a split state."""
    import json
    out = {f"{prefix}/{k}": v for k, v in stored.items()}
    out[f"{prefix}/__shapes__"] = np.array(json.dumps({k: list(s) for k, s in shapes.items()}))
    return out


def unpack(npz, prefix):
    """(stored, shapes) of ``pack``'s entries in a loaded npz."""
    import json
    shapes = {k: tuple(s) for k, s in json.loads(str(npz[f"{prefix}/__shapes__"])).items()}
    stored = {k: npz[f"{prefix}/{k}"] for k in shapes if f"{prefix}/{k}" in npz.files}
    return stored, shapes


def label_map(seed, n, h, w, num_classes, regions=24):
    """[n, h, w] int class ids: a coarse random grid overlaid with random rectangles of every size."""
    rng = _rng("labels", seed, n, h, w, num_classes)
    out = np.empty((n, h, w), np.int64)
    for i in range(n):
        coarse = rng.randint(0, num_classes, (3, 4))
        rows = np.minimum(np.arange(h) * 3 // h, 2)
        cols = np.minimum(np.arange(w) * 4 // w, 3)
        m = coarse[rows][:, cols]
        for _ in range(regions):
            rh, rw = rng.randint(1, max(2, h // 3)), rng.randint(1, max(2, w // 3))
            top, left = rng.randint(0, h - rh + 1), rng.randint(0, w - rw + 1)
            m[top:top + rh, left:left + rw] = rng.randint(0, num_classes)
        out[i] = m
    return out


def photos(seed, n, h, w):
    """[n, 3, h, w] float32 smooth random photos in [-1, 1]."""
    rng = _rng("photos", seed, n, h, w)
    coarse = rng.uniform(-1, 1, (n, 3, 4, 4))
    rows = np.arange(h) * 4 // h
    cols = np.arange(w) * 4 // w
    return np.clip(coarse[:, :, rows][:, :, :, cols] * 0.8 + rng.normal(0, 0.1, (n, 3, h, w)), -1, 1).astype(
        np.float32)


def photo_bytes(seed, n, h, w):
    """[n, h, w, 3] uint8 RGB photos: ``photos`` on the 0..255 scale, rounded."""
    return np.round((photos(seed, n, h, w).transpose(0, 2, 3, 1) + 1) * 127.5).astype(np.uint8)


def noise(shape):
    """The N(0, 1) seg-noise draw of ``shape``: a function of the shape only."""
    return _rng("noise", *shape).normal(size=tuple(int(s) for s in shape)).astype(np.float32)


def _projections(size, count):
    return _rng("fingerprint", size).normal(size=(count, size))


def fingerprint(array, count=8):
    """[count] fixed random projections of ``array`` (float64): a compact check of a large tensor."""
    flat = np.asarray(array, np.float64).ravel()
    return _projections(flat.size, count) @ flat


def fingerprint_noise(array, count=8):
    """[count] bounds on the float64 round-off of ``fingerprint(array)``: a dot product of n terms is off by at
    most n u / (1 - n u) * sum |r_i x_i| (u = 2**-53), whatever the order of the sum. Machines sum in different
    orders (BLAS kernels by instruction set), so the same array's fingerprints differ between them by up to
    twice this."""
    flat = np.abs(np.asarray(array, np.float64).ravel())
    nu = flat.size * 2.0 ** -53
    return nu / (1 - nu) * (np.abs(_projections(flat.size, count)) @ flat)

