"""FID: parity with pytorch-fid, batching, and the reference-statistics cache.

The reference values in tests/data/fid_reference.npz were made with
pytorch-fid by tests/data/make_fid_reference.py from the same image files
(rebuilt here from NumPy seeds) and the same random Inception weights; for
the trace term's cases (features rebuilt from seeds), it also holds what
pytorch-fid raised or printed, and mpmath values computed by another route.
"""

import copy
import functools
import json
import os
import pickle

import numpy as np
import pytest

from conftest import load_data_module
from util.metrics import fid_stats
from util.core.errors import WeightsFileError

ref = load_data_module("make_fid_reference")


@pytest.fixture(scope="module")
def reference():
    with np.load(ref.FID_REFERENCE) as f:
        return dict(f)


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    return ref.write_image_sets(str(tmp_path_factory.mktemp("fidimages")))


@pytest.fixture(scope="module")
def extractor(fid_weights_file):
    """The random weights of conftest's fid_weights_file: those ref.random_fid_state() gave pytorch-fid."""
    return fid_stats.load_extractor(fid_weights_file, batch_size=4)


@pytest.fixture(scope="module")
def our_features(extractor, image_sets):
    return {name: fid_stats.folder_features(extractor, fid_stats.image_files(folder))
            for name, folder in image_sets.items()}


@pytest.mark.parametrize("case", ["full_rank", "singular"])
def test_frechet_distance_equals_pytorch_fid(reference, case):
    mu1, s1, mu2, s2 = ref.frechet_cases()[case]
    got = fid_stats.frechet_distance(fid_stats.Statistics(mu1, s1, 2), fid_stats.Statistics(mu2, s2, 2))
    assert got == pytest.approx(float(reference[f"case:{case}"]), rel=1e-9)


# -- the trace term tr(sqrtm(S1 S2)): pytorch-fid's way, its eps fallback, and the eigenproblem way -------------
# What pytorch-fid did with each of ref.TRACE_CASES is stored in the reference data (the tests check it):
GIVES_A_VALUE = ["full_rank", "full_rank_anisotropic", "near_singular_64", "near_singular_256", "eps_fallback"]
RAISES = ["imaginary", "imaginary_128"]  # "Imaginary component": large features, fewer images than dimensions
ACCURATE_SQRTM = ["full_rank", "full_rank_anisotropic", "near_singular_64", "near_singular_256",
                  "near_singular_2048"]  # pytorch-fid's plain sqrtm (no eps); 2048: eigen way only (sqrtm is slow)
WITH_EXACT = ["near_singular_64", "near_singular_256", "near_singular_2048", "eps_fallback", "imaginary",
              "imaginary_128"]
# The eigen way against the 40-digit mpmath value of the same features: what is left is float64 rounding of
# the covariances and of two eigendecompositions (measured: at most 1.7e-14 of the FID); 1e-11 leaves room for
# other LAPACK builds and is still far below the error of pytorch-fid's sqrtm on these cases (1.5e-8 to 1.0e-7:
# the rounding noise of the zero eigenvalues of S1 S2, square-rooted).
EXACT_REL = 1e-11
PYTORCH_FID_REL = 1e-6


@functools.lru_cache(maxsize=None)
def trace_case(name):
    """Statistics of the two feature sets of ref.TRACE_CASES[name], rebuilt from their seeds."""
    return tuple(fid_stats.statistics_of(x) for x in ref.trace_case_features(name))


def pytorch_fid_did(reference, name):
    """(value or NaN, the message it raised or '', what it printed) of pytorch-fid for the case."""
    return (float(reference[f"trace:{name}:pytorch_fid"]), str(reference[f"trace:{name}:error"]),
            str(reference[f"trace:{name}:printed"]))


def test_the_cases_are_what_pytorch_fid_did(reference):
    assert sorted(GIVES_A_VALUE + RAISES + ["near_singular_2048"]) == sorted(ref.TRACE_CASES)
    for name in ref.TRACE_CASES:
        value, error, printed = pytorch_fid_did(reference, name)
        assert (error == "") == (name not in RAISES) and np.isfinite(value) == (name not in RAISES), name
        assert error == "" or error.startswith("Imaginary component"), name
        assert ("adding 1e-06 to diagonal" in printed) == (name == "eps_fallback"), name
        assert np.isfinite(float(reference[f"trace:{name}:exact"])) == (name in WITH_EXACT), name


@pytest.mark.parametrize("name", GIVES_A_VALUE)
def test_distance_is_pytorch_fids_wherever_pytorch_fid_gives_one(reference, name):
    value, _, printed = pytorch_fid_did(reference, name)
    got = fid_stats.frechet_distance(*trace_case(name))
    assert isinstance(got, float) and got == pytest.approx(value, rel=PYTORCH_FID_REL)
    assert got.method == ("sqrtm+eps" if printed else "sqrtm")


@pytest.mark.parametrize("name", ACCURATE_SQRTM)
def test_eigen_way_equals_pytorch_fid_where_its_square_root_needs_no_eps(reference, name):
    value, _, _ = pytorch_fid_did(reference, name)
    got = fid_stats.frechet_distance(*trace_case(name), method="eigen")
    assert got.method == "eigen" and got == pytest.approx(value, rel=PYTORCH_FID_REL)


@pytest.mark.parametrize("name", WITH_EXACT)
def test_eigen_way_equals_an_independent_high_precision_value(reference, name):
    got = fid_stats.frechet_distance(*trace_case(name), method="eigen")
    assert got == pytest.approx(float(reference[f"trace:{name}:exact"]), rel=EXACT_REL)


@pytest.mark.parametrize("name", RAISES)
def test_where_pytorch_fid_raises_the_eigen_way_gives_the_value(reference, name):
    got = fid_stats.frechet_distance(*trace_case(name))
    assert got.method == "eigen" and "imaginary" in got.description
    assert got == pytest.approx(float(reference[f"trace:{name}:exact"]), rel=EXACT_REL)
    with pytest.raises(fid_stats.FIDError, match="imaginary component"):  # pytorch-fid's way only
        fid_stats.frechet_distance(*trace_case(name), method="sqrtm")


def test_eps_fallback_is_kept_because_pytorch_fids_value_differs(reference):
    """Why the eigen way is not used everywhere: pytorch-fid's eps fallback changes the covariances by
    1e-6 I, which moves its FID by far more than 1e-6 of itself; the eigen way gives the exact value."""
    value, _, _ = pytorch_fid_did(reference, "eps_fallback")
    exact = float(reference["trace:eps_fallback:exact"])
    eigen = fid_stats.frechet_distance(*trace_case("eps_fallback"), method="eigen")
    assert abs(value - exact) > 1e-4 * exact and eigen == pytest.approx(exact, rel=EXACT_REL)


def test_eigen_way_of_identical_or_constant_features():
    a, _ = trace_case("near_singular_64")  # 40 images, 64 dimensions: rank 39
    same = fid_stats.frechet_distance(a, a, method="eigen")
    assert abs(same) < 1e-12 * np.trace(a.sigma)  # the zero eigenvalues do not enter
    constant = fid_stats.Statistics(a.mu + 1, np.zeros_like(a.sigma), 5)  # five copies of one image
    want = a.mu.size + np.trace(a.sigma)
    assert fid_stats.frechet_distance(constant, a, method="eigen") == pytest.approx(want, rel=1e-12)
    assert fid_stats.frechet_distance(a, constant, method="eigen") == pytest.approx(want, rel=1e-12)


def test_frechet_distance_is_a_float_that_names_its_trace_method():
    a = fid_stats.statistics_of(np.random.RandomState(0).normal(size=(30, 4)))
    b = fid_stats.statistics_of(np.random.RandomState(1).normal(1, 1, size=(30, 4)))
    got = fid_stats.frechet_distance(a, b)
    assert got.method == "sqrtm" and got.description == fid_stats.TRACE_METHODS["sqrtm"]
    assert json.loads(json.dumps({"fid": got}))["fid"] == float(got) and f"{got:.3f}" == f"{float(got):.3f}"
    again = pickle.loads(pickle.dumps(got))
    assert again == got and again.method == "sqrtm" and copy.deepcopy(got).method == "sqrtm"
    assert fid_stats.frechet_distance(a, b, method="eigen") == pytest.approx(got, rel=1e-12)
    with pytest.raises(ValueError, match="method"):
        fid_stats.frechet_distance(a, b, method="other")
    with pytest.raises(fid_stats.FIDError, match="NaN"):
        fid_stats.frechet_distance(a, b._replace(mu=np.full(4, np.nan)))
    with pytest.raises(fid_stats.FIDError, match="different feature sizes"):
        fid_stats.frechet_distance(a, fid_stats.Statistics(np.zeros(3), np.eye(3), None))


def test_features_match_pytorch_fid(our_features, reference):
    for name, got in our_features.items():
        want = reference[f"{name}:features"]
        assert got.shape == want.shape == (len(ref.IMAGE_SETS[name]), 2048)
        assert got.dtype == np.float64
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 1e-3, f"{name}: max error {err:.2e} of the largest feature"
        assert np.abs(want - want.mean(0)).max() > 1e-2 * np.abs(want).max()  # images really differ


def test_jittor_pkl_weights_give_the_same_features(fid_weights_state, image_sets, our_features, tmp_path):
    import jittor as jt
    path = str(tmp_path / "pt_inception-converted.pkl")
    jt.save({k: np.asarray(v) for k, v in fid_weights_state.items()}, path)
    converted = fid_stats.load_extractor(path, batch_size=4)
    files = fid_stats.image_files(image_sets["set_a"])[:4]  # the first batch of our_features["set_a"]
    np.testing.assert_allclose(fid_stats.folder_features(converted, files), our_features["set_a"][:4], rtol=1e-6)


def test_fid_matches_pytorch_fid_within_a_tenth_of_a_percent(our_features, reference):
    a, b = (fid_stats.statistics_of(our_features[n]) for n in ("set_a", "set_b"))
    assert (a.count, b.count) == (6, 7)
    assert fid_stats.frechet_distance(a, b) == pytest.approx(float(reference["fid_ab"]), rel=1e-3)
    assert fid_stats.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6 * float(reference["fid_ab"]))


def test_statistics_are_pytorch_fids():
    x = np.random.RandomState(0).normal(size=(9, 5)).astype(np.float32)
    stats = fid_stats.statistics_of(x)
    assert stats.mu.dtype == np.float64 and stats.count == 9
    np.testing.assert_allclose(stats.mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)
    with pytest.raises(fid_stats.FIDError, match="at least 2 images"):
        fid_stats.statistics_of(x[:1])


def test_a_matrix_that_is_no_covariance_is_refused():
    bad = fid_stats.Statistics(np.zeros(2), np.diag([1.0, -4.0]), 3)
    good = fid_stats.Statistics(np.zeros(2), np.eye(2), 3)
    with pytest.raises(fid_stats.FIDError, match="imaginary component"):  # pytorch-fid's way only
        fid_stats.frechet_distance(bad, good, method="sqrtm")
    for pair in ((bad, good), (good, bad)):  # the eigen way, which "auto" falls back to, says what is wrong
        with pytest.raises(fid_stats.FIDError, match="not positive semi-definite"):
            fid_stats.frechet_distance(*pair)


def test_network_input_is_pytorch_fids_to_tensor_then_normalise():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14
    x = fid_stats.to_network_input([image])
    want = (image.astype(np.float32) / np.float32(255)) * 2 - 1
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], want.transpose(2, 0, 1))


class FakeNetwork:
    """Stands in for InceptionV3: pool_3 = the image's mean of each channel, repeated; counts batches."""

    def __init__(self):
        self.batches = []

    def __call__(self, x):
        import jittor as jt
        arr = x.numpy()
        self.batches.append(arr.shape)
        feat = np.tile(arr.mean(axis=(2, 3)), (1, 2048 // 3 + 1))[:, :2048]
        return {"pool_3": jt.array(feat.reshape(len(arr), 2048, 1, 1))}


def test_batches_keep_order_pad_the_last_batch_and_split_at_size_changes():
    rs = np.random.RandomState(0)
    images = [rs.randint(0, 255, (8, 10, 3), dtype=np.uint8) for _ in range(5)]
    images += [rs.randint(0, 255, (6, 6, 3), dtype=np.uint8) for _ in range(2)]
    net = FakeNetwork()
    feats = fid_stats.FeatureExtractor(net, "unused", batch_size=3).features(iter(images), total=len(images))
    assert feats.shape == (7, 2048)
    want = [fid_stats.to_network_input([im])[0].mean(axis=(1, 2)) for im in images]
    np.testing.assert_allclose(feats[:, :3], np.array(want), rtol=1e-5)
    # every batch has the full size (padded), a size change flushes a batch: 3 + (2+pad) | (2+pad)
    assert net.batches == [(3, 3, 8, 10), (3, 3, 8, 10), (3, 3, 6, 6)]
    small = FakeNetwork()
    fid_stats.FeatureExtractor(small, "unused", batch_size=50).features(iter(images[:2]), total=2)
    assert small.batches == [(2, 3, 8, 10)]  # a small set is not padded to a full batch


class CountingExtractor:
    """A FeatureExtractor stand-in: features = per-channel means (NumPy); counts the images it sees."""

    def __init__(self, digest="w1"):
        self.weights_digest = digest
        self.seen = 0

    def features(self, images, total=None, progress=None):
        out = []
        for im in images:
            self.seen += 1
            out.append(np.resize(np.asarray(im, np.float64).mean(axis=(0, 1)), 2048))
        return np.array(out)


def _write(folder, name, value, size=(8, 6)):
    from data.image_io import save_image
    image = np.full((size[1], size[0], 3), value, np.uint8)
    image[0, 0] = (value * 7) % 256
    save_image(os.path.join(folder, name), image)


def test_reference_statistics_are_cached_and_recomputed_when_anything_changes(tmp_path):
    folder, cache = str(tmp_path / "train"), str(tmp_path / "cache")
    os.makedirs(folder)
    for i in range(3):
        _write(folder, f"{i}.png", 40 * i + 10)
    ext = CountingExtractor()
    first, where = fid_stats.reference_statistics(ext, folder, cache)
    assert ext.seen == 3 and "computed" in where and first.count == 3
    again, where = fid_stats.reference_statistics(ext, folder, cache)
    assert ext.seen == 3 and "cached" in where and "computed" not in where
    np.testing.assert_array_equal(again.sigma, first.sigma)

    _write(folder, "3.png", 200)  # a new file
    fid_stats.reference_statistics(ext, folder, cache)
    assert ext.seen == 7
    os.utime(os.path.join(folder, "0.png"), ns=(1, 1))  # a changed file (same name and size)
    fid_stats.reference_statistics(ext, folder, cache)
    assert ext.seen == 11
    fid_stats.reference_statistics(ext, folder, cache, resize_to=(4, 3))  # another resolution
    assert ext.seen == 15
    fid_stats.reference_statistics(CountingExtractor("w2"), folder, cache)  # other weights
    fid_stats.reference_statistics(ext, folder, cache)  # the first key is still there
    assert ext.seen == 15
    os.remove(os.path.join(folder, "3.png"))  # a removed file
    fid_stats.reference_statistics(ext, folder, cache)
    assert ext.seen == 18


def test_resize_to_changes_the_images_fed_to_the_network(tmp_path):
    folder = str(tmp_path)
    _write(folder, "a.png", 90, size=(16, 12))
    assert fid_stats.load_image(os.path.join(folder, "a.png"), (8, 6)).shape == (6, 8, 3)
    assert fid_stats.parse_size("512x384") == (512, 384) and fid_stats.parse_size(None) is None
    with pytest.raises(fid_stats.UserError, match="WIDTHxHEIGHT"):
        fid_stats.parse_size("512")


def test_missing_weights_say_where_to_get_them(tmp_path):
    path = str(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(WeightsFileError) as err:
        fid_stats.load_extractor(path)
    assert path in str(err.value) and "pytorch-fid" in str(err.value) and "--inception_weights" in str(err.value)


def test_torchvision_weights_are_refused_for_fid(tmp_path):
    from torch_format import save_torch_state_dict
    manifest = ref.manifests.load_manifest(ref.manifests.TV_MANIFEST)
    path = str(tmp_path / "inception_v3_google.pth")
    save_torch_state_dict(path, ref.manifests.random_inception_state(manifest))
    with pytest.raises(WeightsFileError, match="torchvision"):
        fid_stats.load_extractor(path)
