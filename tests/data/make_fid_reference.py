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
  statistics, NumPy-made): ``case:<name>``;
* for each of ``TRACE_CASES`` (features rebuilt by ``trace_case_features``
  from NumPy seeds, so only results are stored): pytorch-fid's
  ``calculate_frechet_distance`` of their statistics,
  ``trace:<name>:pytorch_fid`` (NaN where it raised), ``trace:<name>:error``
  (the message it raised, '' where it did not) and ``trace:<name>:printed``
  (what it printed: its eps fallback announces itself); and, for the cases
  with at most ``EXACT_MAX_IMAGES`` images per set, ``trace:<name>:exact``,
  the FID of the same features computed with mpmath at 40 digits by another
  route than the project's (NaN elsewhere): the means and the centred
  features A1, A2 (all at 40 digits), tr(S) = |A|_F^2 / (n - 1), and
  tr(sqrtm(S1 S2)) as the sum of the singular values of
  A1 A2^T / sqrt((n1 - 1)(n2 - 1)) (the eigenvalues of S1 S2 are the squares
  of those singular values). The cases cover full-rank covariances, fewer
  images than dimensions where pytorch-fid still gives a value, a singular
  product that takes pytorch-fid's eps fallback, and large feature values
  where pytorch-fid raises "Imaginary component" (its absolute 1e-3 limit on
  the imaginary part is exceeded by rounding noise that grows with the
  features' size). Made with SciPy 1.17.1, NumPy 2.4.6 and mpmath 1.3.0.
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


# name: (kind, seed, dimensions, images of the first set, of the second, feature scale); see trace_case_features
TRACE_CASES = {
    "full_rank": ("mixed", 1, 64, 400, 500, 1.0),
    "full_rank_anisotropic": ("anisotropic", 2, 96, 300, 400, 1.0),  # feature scales over 4 decades
    "near_singular_64": ("mixed", 3, 64, 40, 40, 1.0),  # fewer images than dimensions
    "near_singular_256": ("mixed", 4, 256, 20, 30, 1.0),
    "near_singular_2048": ("mixed", 6, 2048, 40, 40, 1.0),  # Inception's size
    "eps_fallback": ("relu", 2, 32, 32, 2, 1.0),  # exact zeros: pytorch-fid's square root is not finite
    "imaginary": ("mixed", 0, 64, 40, 40, 1000.0),  # pytorch-fid raises "Imaginary component"
    "imaginary_128": ("mixed", 5, 128, 24, 40, 1000.0),
}
EXACT_MAX_IMAGES = 64  # mpmath's SVD of the n1 x n2 cross product is slow beyond


def trace_case_features(name):
    """The two (N, D) float64 feature sets of ``TRACE_CASES[name]`` (NumPy, from the case's seed).

    "mixed": |z W| with z ~ N(shift, 1) and a random mixing W (non-negative
    and correlated, like Inception's pool_3); "anisotropic": the same with the
    dimensions scaled from 1e-3 to 10; "relu": max(z, 0) (many exact zeros);
    the second set's z has mean 0.4, the first's 0.
    """
    kind, seed, dims, n1, n2, scale = TRACE_CASES[name]
    rs = np.random.RandomState(seed)
    out = []
    for n, shift in ((n1, 0.0), (n2, 0.4)):
        z = rs.normal(shift, 1.0, (n, dims))
        if kind == "relu":
            x = np.maximum(z, 0)
        else:
            x = np.abs(z @ rs.normal(0.0, 1.0 / np.sqrt(dims), (dims, dims)))
            if kind == "anisotropic":
                x = x * np.logspace(-3, 1, dims)
        out.append(x * scale)
    return out


def exact_fid(a, b, digits=40):
    """The FID of feature sets a, b in mpmath at ``digits`` digits, by the singular values of the centred
    cross product (not by a matrix square root nor a D x D eigenproblem)."""
    import mpmath
    mp = mpmath.mp
    mp.dps = digits
    n1, n2 = len(a), len(b)
    mean1 = [mp.fsum(mp.mpf(float(v)) for v in col) / n1 for col in a.T]
    mean2 = [mp.fsum(mp.mpf(float(v)) for v in col) / n2 for col in b.T]
    a1 = [[mp.mpf(float(v)) - m for v, m in zip(row, mean1)] for row in a]
    a2 = [[mp.mpf(float(v)) - m for v, m in zip(row, mean2)] for row in b]
    trace1 = mp.fsum(v * v for row in a1 for v in row) / (n1 - 1)
    trace2 = mp.fsum(v * v for row in a2 for v in row) / (n2 - 1)
    scale = mp.sqrt(mp.mpf((n1 - 1) * (n2 - 1)))
    cross = mp.matrix([[mp.fdot(r1, r2) / scale for r2 in a2] for r1 in a1])
    nuclear = mp.fsum(mpmath.svd_r(cross, compute_uv=False))
    diff = mp.fsum((m1 - m2) ** 2 for m1, m2 in zip(mean1, mean2))
    return diff + trace1 + trace2 - 2 * nuclear


def pytorch_fid_outcome(calculate_frechet_distance, mu1, s1, mu2, s2):
    """(value or NaN, error message or '', what it printed) of pytorch-fid's calculate_frechet_distance."""
    import contextlib
    import io
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            value, error = float(calculate_frechet_distance(mu1, s1, mu2, s2)), ""
    except ValueError as err:
        value, error = float("nan"), str(err)
    return value, error, printed.getvalue().strip()


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
    for name in TRACE_CASES:
        a, b = trace_case_features(name)
        value, error, printed = pytorch_fid_outcome(calculate_frechet_distance, a.mean(0), np.cov(a, rowvar=False),
                                                    b.mean(0), np.cov(b, rowvar=False))
        out[f"trace:{name}:pytorch_fid"] = np.array(value)
        out[f"trace:{name}:error"] = np.array(error)
        out[f"trace:{name}:printed"] = np.array(printed)
        exact = exact_fid(a, b) if max(len(a), len(b)) <= EXACT_MAX_IMAGES else float("nan")
        out[f"trace:{name}:exact"] = np.array(float(exact))
        print(name, value, error or printed, float(exact), flush=True)
    np.savez_compressed(FID_REFERENCE, **out)
    print({k: (v.shape if v.ndim else v.item()) for k, v in out.items()})


if __name__ == "__main__":
    main()
