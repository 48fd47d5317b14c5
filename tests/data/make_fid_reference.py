"""Make the FID reference data of tests/test_fid.py with pytorch-fid.

Not run by the test suite (it needs PyTorch). Made with torch 2.14.1,
torchvision 0.29.1 and pytorch-fid 0.3.0 in a separate venv (see
make_inception_manifests.py):

    /tmp/torchenv/bin/python tests/data/make_fid_reference.py

It writes ``fid_reference.npz`` next to itself:

* the two image sets of ``write_image_sets`` (PNG files, rebuilt bit-for-bit
  by the test from the same NumPy seeds) run through pytorch-fid's own
  pipeline, ``pytorch_fid.fid_score.get_activations`` (Pillow, ToTensor,
  ``InceptionV3([3])`` with its input normalisation and resize), with the
  random Inception weights of make_inception_manifests.py (same seeds, same
  calibrated BN statistics): ``set_a:features`` / ``set_b:features``
  (float64, as pytorch-fid returns them) and ``fid_ab``, pytorch-fid's
  ``calculate_frechet_distance`` of their statistics;
* ``calculate_frechet_distance`` of ``frechet_cases()`` (random Gaussian
  statistics, NumPy-made): ``case:<name>``.
"""

import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FID_REFERENCE = os.path.join(HERE, "fid_reference.npz")
# (set name, [(width, height), ...]) - set_b mixes two sizes (pytorch-fid is run with batch size 1 there)
IMAGE_SETS = {"set_a": [(64, 48)] * 6, "set_b": [(64, 48)] * 4 + [(80, 60)] * 3}

_spec = importlib.util.spec_from_file_location("make_inception_manifests",
                                               os.path.join(HERE, "make_inception_manifests.py"))
manifests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(manifests)


def smooth_image(rs, width, height, tint):
    """A smooth random RGB image (upsampled 4x3 noise plus a little pixel noise), uint8."""
    from PIL import Image
    coarse = rs.uniform(0, 255, (3, 4, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), np.float64)
    image = image * 0.8 + np.asarray(tint) * 0.2 + rs.normal(0, 6, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_image_sets(root):
    """Write IMAGE_SETS as PNG files under root/<set>/; returns {set: folder}."""
    from PIL import Image
    folders = {}
    tints = {"set_a": (40, 120, 200), "set_b": (200, 150, 60)}
    for index, (name, sizes) in enumerate(sorted(IMAGE_SETS.items())):
        rs = np.random.RandomState(100 + index)
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(smooth_image(rs, w, h, tints[name])).save(os.path.join(folder, f"{i:03d}.png"))
        folders[name] = folder
    return folders


def frechet_cases():
    """{name: (mu1, sigma1, mu2, sigma2)}: full-rank and singular covariances."""
    rs = np.random.RandomState(11)
    cases = {}
    a, b = rs.normal(0, 1, (200, 16)), rs.normal(0.3, 1.2, (300, 16)) @ rs.normal(0, 0.5, (16, 16))
    cases["full_rank"] = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    a, b = rs.normal(0, 1, (5, 32)), rs.normal(0.5, 2, (7, 32))  # fewer samples than dimensions
    cases["singular"] = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    return cases


def random_fid_state():
    """make_inception_manifests' random FID weights with its calibrated BN statistics (float32 arrays)."""
    state = manifests.random_inception_state(manifests.load_manifest(manifests.FID_MANIFEST))
    with np.load(manifests.PARITY_FIXTURE) as f:
        for key in f.files:
            if key.startswith("stat:") and key[5:] in state:
                state[key[5:]] = f[key]
    return state


def main():
    import tempfile

    import torch
    from pytorch_fid import inception as fid
    from pytorch_fid.fid_score import calculate_frechet_distance, get_activations

    torch.set_grad_enabled(False)
    state = random_fid_state()

    def own_weights(url, *args, **kwargs):  # inside fid_inception_v3(): no download, our random weights
        net = sys._getframe(1).f_locals["inception"]
        own = net.state_dict()
        return {k: torch.from_numpy(state[k]) if k in state else v for k, v in own.items()}

    fid.load_state_dict_from_url = own_weights
    model = fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    out = {}
    with tempfile.TemporaryDirectory() as root:
        folders = write_image_sets(root)
        for name, folder in folders.items():
            files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
            batch = 1 if len(set(IMAGE_SETS[name])) > 1 else len(files)
            out[f"{name}:features"] = get_activations(files, model, batch_size=batch, dims=2048, device="cpu",
                                                      num_workers=0)
    stats = {n: (out[f"{n}:features"].mean(0), np.cov(out[f"{n}:features"], rowvar=False)) for n in IMAGE_SETS}
    out["fid_ab"] = np.array(calculate_frechet_distance(*stats["set_a"], *stats["set_b"]))
    for name, (mu1, s1, mu2, s2) in frechet_cases().items():
        out[f"case:{name}"] = np.array(calculate_frechet_distance(mu1, s1, mu2, s2))
    np.savez_compressed(FID_REFERENCE, **out)
    print({k: (v.shape if v.ndim else float(v)) for k, v in out.items()})


if __name__ == "__main__":
    main()
