"""util/fid_folders.py: the FID of two folders or .npz statistics files, --save_stats, and its errors.

The folders are tests/data/make_fid_reference.py's two image sets, scored with
the random Inception weights pytorch-fid was given for fid_reference.npz, so
the command's FID is compared with pytorch-fid's own value for the same files.
"""

import contextlib
import io
import os

import numpy as np
import pytest

from conftest import load_data_module, run_script
from util import fid_folders
from util.core.cli import run_main
from util.metrics import fid_stats

ref = load_data_module("make_fid_reference")
FLAGS = ["--gpu", "off", "--batch_size", "4"]  # test_fid's batch: the same compiled shapes


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    return ref.write_image_sets(str(tmp_path_factory.mktemp("fidfolders")))


@pytest.fixture(scope="module")
def pytorch_fid_ab():
    with np.load(ref.FID_REFERENCE) as f:
        return float(f["fid_ab"])


def call(argv):
    """fid_folders.main(argv) in-process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fid_folders.main(argv)
    return code, out.getvalue()


def fid_of(output):
    line = next(line for line in output.splitlines() if line.startswith("FID:"))
    return float(line.split()[1])


def fails(argv, capsys):
    """run_main(fid_folders.main, argv) for a bad input: (exit code, the stderr message on one line)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(fid_folders.main, argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    return exit_info.value.code, " ".join(err.split())  # run_main wraps long messages


@pytest.fixture(scope="module")
def saved_stats(image_sets, fid_weights_file, tmp_path_factory):
    """--save_stats of set_a, run as a user runs the command (a subprocess watching that Jittor is imported
    only after the device is chosen)."""
    out = str(tmp_path_factory.mktemp("fidstats") / "set_a.npz")
    result = run_script("util/fid_folders.py", "--save_stats", image_sets["set_a"], out,
                        "--inception_weights", fid_weights_file, *FLAGS)
    assert result.returncode == 0, result.stderr
    assert f"statistics of 6 images in {image_sets['set_a']} written to {out}" in result.stdout
    return out


@pytest.fixture(scope="module")
def folders_output(image_sets, fid_weights_file):
    """The output of the command on the two folders."""
    code, out = call([image_sets["set_a"], image_sets["set_b"], "--inception_weights", fid_weights_file, *FLAGS])
    assert code == 0
    return out


def test_fid_of_two_folders_is_pytorch_fids(folders_output, image_sets, pytorch_fid_ab):
    out = folders_output
    assert fid_of(out) == pytest.approx(pytorch_fid_ab, rel=1e-3)  # as test_fid: float32 features
    assert f"A: 6 images in {image_sets['set_a']}" in out and f"B: 7 images in {image_sets['set_b']}" in out
    assert "6 images for 2048 feature dimensions" in out  # the singular-covariance note
    assert "trace term: sqrtm (" in out and "Inception features on CPU" in out


def test_save_stats_writes_pytorch_fids_format(saved_stats, image_sets, fid_weights_file):
    with np.load(saved_stats) as f:
        assert sorted(f.files) == ["mu", "sigma"]  # what `python -m pytorch_fid --save-stats` writes
        mu, sigma = f["mu"], f["sigma"]
    assert mu.dtype == sigma.dtype == np.float64 and mu.shape == (2048,) and sigma.shape == (2048, 2048)
    extractor = fid_stats.load_extractor(fid_weights_file, batch_size=4)
    want = fid_stats.statistics_of(fid_stats.folder_features(extractor, fid_stats.image_files(image_sets["set_a"])))
    np.testing.assert_allclose(mu, want.mu, rtol=1e-6, atol=1e-6 * np.abs(want.mu).max())
    np.testing.assert_allclose(sigma, want.sigma, rtol=1e-5, atol=1e-5 * np.abs(want.sigma).max())
    stats = fid_stats.read_statistics(saved_stats)
    assert stats.count is None and np.array_equal(stats.mu, mu)


def test_npz_in_place_of_a_folder(saved_stats, folders_output, image_sets, fid_weights_file):
    folders = folders_output
    code, out = call([saved_stats, image_sets["set_b"], "--inception_weights", fid_weights_file, *FLAGS])
    assert code == 0 and f"A: statistics in {saved_stats} (number of images not stored)" in out
    assert fid_of(out) == pytest.approx(fid_of(folders), rel=1e-9)


def test_trace_term_way_is_printed_when_pytorch_fid_would_fail(tmp_path):
    a, b = ref.trace_case_features("imaginary")  # pytorch-fid raises "Imaginary component" here
    paths = []
    for name, features in (("a", a), ("b", b)):
        path = str(tmp_path / f"{name}.npz")
        stats = fid_stats.statistics_of(features)
        np.savez(path, mu=stats.mu, sigma=stats.sigma, count=stats.count)  # as the statistics cache stores it
        paths.append(path)
    code, out = call([*paths, "--inception_weights", "absent.pth"])  # two .npz: the weights are not read
    assert code == 0 and "trace term: eigen (" in out and f"statistics of {len(a)} images in {paths[0]}" in out
    assert "Inception" not in out
    with np.load(ref.FID_REFERENCE) as f:
        assert fid_of(out) == pytest.approx(float(f["trace:imaginary:exact"]), rel=1e-11)  # see test_fid


def test_help_explains_every_flag():
    text = fid_folders.build_parser().format_help()
    for action in fid_folders.build_parser()._actions:
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in text
    assert "--save_stats" in text and "pytorch-fid" in text and ".npz" in text


def test_bad_inputs_are_clear_errors(tmp_path, image_sets, saved_stats, capsys):
    missing = str(tmp_path / "absent")
    assert fails([missing, image_sets["set_b"]], capsys) == (2, f"error: {missing}: image folder not found.")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = fails([image_sets["set_a"], str(empty)], capsys)
    assert code == 2 and "no images found" in err
    no_mu = str(tmp_path / "no_mu.npz")
    np.savez(no_mu, sigma=np.eye(3))
    code, err = fails([no_mu, image_sets["set_a"]], capsys)
    assert "no mu" in err and "sigma" in err
    small = str(tmp_path / "small.npz")
    np.savez(small, mu=np.zeros(64), sigma=np.eye(64))
    code, err = fails([small, image_sets["set_a"]], capsys)  # refused before any feature is computed
    assert code == 2 and "64 feature dimensions" in err and "2048" in err
    other = str(tmp_path / "other.npz")
    np.savez(other, mu=np.zeros(32), sigma=np.eye(32))
    assert "different feature sizes" in fails([small, other], capsys)[1]
    bad_shape = str(tmp_path / "bad_shape.npz")
    np.savez(bad_shape, mu=np.zeros(4), sigma=np.eye(3))
    assert "expected (D,) and (D, D)" in fails([bad_shape, bad_shape], capsys)[1]
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("not an archive")
    assert "not a readable .npz" in fails([str(not_npz), saved_stats], capsys)[1]
    assert "statistics file not found" in fails([str(tmp_path / "absent.npz"), saved_stats], capsys)[1]
    image = os.path.join(image_sets["set_a"], "000.png")
    assert "neither a folder of images nor a .npz" in fails([image, saved_stats], capsys)[1]
    # --save_stats: an image folder first, a new .npz second
    assert "exists" in fails(["--save_stats", image_sets["set_a"], saved_stats], capsys)[1]
    assert "must end with .npz" in fails(["--save_stats", image_sets["set_a"], str(tmp_path / "out")], capsys)[1]
    assert "image folder first" in fails(["--save_stats", saved_stats, str(tmp_path / "o.npz")], capsys)[1]
    assert not os.path.exists(str(tmp_path / "o.npz"))


def test_a_bad_input_exits_without_a_traceback_from_the_command_line(tmp_path):
    result = run_script("util/fid_folders.py", str(tmp_path / "absent"), str(tmp_path), "--gpu", "off")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "image folder not found" in result.stderr
