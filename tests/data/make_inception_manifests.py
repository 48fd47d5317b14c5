"""Make the InceptionV3 reference data of tests/test_inception.py with PyTorch and pytorch-fid.

Not run by the test suite (it needs PyTorch; keep PyTorch out of the project's
environment). Made with torch 2.14.1, torchvision 0.29.1, pytorch-fid 0.3.0 in
a separate venv:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid
    /tmp/torchenv/bin/python tests/data/make_inception_manifests.py

It writes, next to itself:

* ``fid_inception_manifest.json``: {key: shape} of
  ``pytorch_fid.inception.fid_inception_v3().state_dict()``, the keys of
  ``pt_inception-2015-12-05-6726825d.pth``. pytorch-fid downloads those
  weights inside ``fid_inception_v3``; its ``load_state_dict_from_url`` is
  replaced here (nothing is downloaded).
* ``torchvision_inception_manifest.json``: the same for
  ``torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)``.
* ``inception_parity.npz``: outputs of pytorch-fid's ``InceptionV3`` wrapper
  (output blocks 0-3, normalize_input=False) and of torchvision's
  ``Inception3`` for random weights. The weights are made by
  ``random_inception_state`` (NumPy only, one RandomState per key, so the test
  rebuilds them bit-for-bit without PyTorch); only the batch-norm running
  statistics, calibrated on random images with PyTorch (with default
  statistics a random Inception is degenerate), are stored (``stat:<key>``).
  Cases: ``fid299`` (input 1x3x96x128, resized to 299 by pytorch-fid; the
  three big maps are stored as per-channel means plus values at stored flat
  indices ``idx_<layer>``, pool_3 in full), ``fid75`` and ``tv75`` (1x3x75x75,
  no resize, all maps in full: the tiny-map code paths).
"""

import json
import os
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FID_MANIFEST = os.path.join(HERE, "fid_inception_manifest.json")
TV_MANIFEST = os.path.join(HERE, "torchvision_inception_manifest.json")
PARITY_FIXTURE = os.path.join(HERE, "inception_parity.npz")
LAYERS = ("pool_1", "pool_2", "mixed_6e", "pool_3")
SAMPLED = ("pool_1", "pool_2", "mixed_6e")
NUM_SAMPLES = 4096


def random_inception_state(shapes, seed=0):
    """Deterministic float32 weights for {key: shape}; one RandomState per key (crc32 of the key).

    Convolutions: He-normal; BN weight U(0.5, 1.5), bias N(0, 0.1); running
    mean 0 / var 1 (placeholders for calibrated statistics); fc / biases
    N(0, 0.01). ``num_batches_tracked`` keys are left out.
    """
    state = {}
    for key, shape in shapes.items():
        shape = tuple(shape)
        if key.endswith("num_batches_tracked"):
            continue
        rs = np.random.RandomState((zlib.crc32(key.encode()) + seed) % (2 ** 32))
        if key.endswith("running_mean"):
            value = np.zeros(shape)
        elif key.endswith("running_var"):
            value = np.ones(shape)
        elif key.endswith("bn.weight"):
            value = rs.uniform(0.5, 1.5, shape)
        elif key.endswith("bn.bias"):
            value = rs.normal(0.0, 0.1, shape)
        elif len(shape) == 4:
            value = rs.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        else:
            value = rs.normal(0.0, 0.01, shape)
        state[key] = value.astype(np.float32)
    return state


def parity_inputs():
    """The fixed inputs in [-1, 1]: 'x299' (1x3x96x128, resized) and 'x75' (1x3x75x75, not resized)."""
    return {"x299": np.random.RandomState(1).uniform(-1, 1, (1, 3, 96, 128)).astype(np.float32),
            "x75": np.random.RandomState(2).uniform(-1, 1, (1, 3, 75, 75)).astype(np.float32)}


def load_manifest(path):
    with open(path) as f:
        return json.load(f)


def main():
    import torch
    import torchvision
    import pytorch_fid
    from pytorch_fid import inception as fid

    torch.set_grad_enabled(False)
    captured = {}

    def own_weights(url, *args, **kwargs):
        # Called inside fid_inception_v3() as `load_state_dict_from_url(FID_WEIGHTS_URL)`: hand back the
        # caller's own (random) weights instead of downloading, and keep the network for later.
        net = sys._getframe(1).f_locals["inception"]
        captured["net"] = net
        own, state = net.state_dict(), captured.get("state", {})
        return {k: torch.from_numpy(state[k]) if k in state else v for k, v in own.items()}

    fid.load_state_dict_from_url = own_weights
    fid_shapes = {k: list(v.shape) for k, v in fid.fid_inception_v3().state_dict().items()}
    tv_net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    tv_shapes = {k: list(v.shape) for k, v in tv_net.state_dict().items()}
    for path, shapes in ((FID_MANIFEST, fid_shapes), (TV_MANIFEST, tv_shapes)):
        with open(path, "w") as f:
            json.dump(shapes, f, indent=0)

    # pytorch-fid's own wrapper, with the random weights, BN statistics calibrated on random images.
    captured["state"] = random_inception_state(fid_shapes)
    wrapper = fid.InceptionV3(output_blocks=[0, 1, 2, 3], resize_input=True, normalize_input=False)
    inner = captured["net"]
    bns = [m for m in inner.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    wrapper.train()
    rs = np.random.RandomState(5)
    for _ in range(3):
        wrapper(torch.from_numpy(rs.uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)))
    wrapper.eval()
    calibrated = {k: v.numpy().copy() for k, v in inner.state_dict().items()}

    out = {"versions": np.array(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                                f"pytorch-fid {pytorch_fid.__version__}")}
    for k, v in calibrated.items():
        if k.endswith(("running_mean", "running_var")):
            out[f"stat:{k}"] = v.astype(np.float32)
    inputs = parity_inputs()

    feats = wrapper(torch.from_numpy(inputs["x299"]))
    sample_rs = np.random.RandomState(3)
    for name, f in zip(LAYERS, feats):
        f = f.numpy()
        if name in SAMPLED:
            idx = np.sort(sample_rs.choice(f.size, NUM_SAMPLES, replace=False)).astype(np.int64)
            out[f"fid299/idx_{name}"] = idx
            out[f"fid299/{name}:values"] = f.reshape(-1)[idx]
            out[f"fid299/{name}:channel_mean"] = f.mean(axis=(0, 2, 3))
            out[f"fid299/{name}:shape"] = np.array(f.shape)
        else:
            out[f"fid299/{name}"] = f

    wrapper.resize_input = False
    for name, f in zip(LAYERS, wrapper(torch.from_numpy(inputs["x75"]))):
        out[f"fid75/{name}"] = f.numpy()

    tv_state = random_inception_state(tv_shapes)
    tv_state.update({k: v for k, v in calibrated.items() if k in tv_state and not k.startswith("fc.")})
    tv_net.load_state_dict({k: torch.from_numpy(v) for k, v in tv_state.items()}, strict=False)
    x = torch.from_numpy(inputs["x75"])
    x = tv_net.maxpool1(tv_net.Conv2d_2b_3x3(tv_net.Conv2d_2a_3x3(tv_net.Conv2d_1a_3x3(x))))
    out["tv75/pool_1"] = x.numpy()
    x = tv_net.maxpool2(tv_net.Conv2d_4a_3x3(tv_net.Conv2d_3b_1x1(x)))
    out["tv75/pool_2"] = x.numpy()
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = getattr(tv_net, name)(x)
    out["tv75/mixed_6e"] = x.numpy()
    x = tv_net.avgpool(tv_net.Mixed_7c(tv_net.Mixed_7b(tv_net.Mixed_7a(x))))
    out["tv75/pool_3"] = x.numpy()

    np.savez_compressed(PARITY_FIXTURE, **out)
    print(f"wrote {FID_MANIFEST} ({len(fid_shapes)} keys), {TV_MANIFEST} ({len(tv_shapes)} keys), "
          f"{PARITY_FIXTURE} ({os.path.getsize(PARITY_FIXTURE)} bytes)")


if __name__ == "__main__":
    main()
