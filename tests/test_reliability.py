"""Bad input gives a clean, one-paragraph error naming the file and the problem.

Unit-level checks call the functions that raise; the subprocess checks run the
real entry points (train_phase.py / test_phase.py) and require a non-zero exit
and no Python traceback. Every subprocess case fails during validation or on
the very first batch, before any training step.
"""

import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_NET_FLAGS, run_script
from data import folders
from data.datasets import EpochSampler, LabelFolderDataset, PairedDataset, raise_batch_errors
from data.image_io import read_image, read_label, save_label
from util.core.cli import run_main
from util.core.device import resolve_gpu_mode
from util.core.errors import (DatasetError, ImageFileError, LabelMapError, OptionError, UserError)

W, H = 128, 96
LABEL_NC = 29


# -- helpers ------------------------------------------------------------------------------------

def copy_train(tiny_dataset, tmp_path, name="train"):
    dst = tmp_path / name
    shutil.copytree(os.path.join(tiny_dataset, "train"), dst)
    return dst


def truncate(path, fraction=0.5):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * fraction)])


def first_stem(root, seed=0, epoch=1):
    """Stem of the pair the training loop loads first (epoch 1 of train_phase)."""
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(root / "imgs"))
    return stems[EpochSampler(len(stems), seed).order(epoch)[0]]


def flat(text):
    """Error text with the 100-column wrapping undone."""
    return " ".join(text.split())


def assert_clean_failure(proc, *needles):
    """Non-zero exit, no traceback, one 'error:' paragraph containing every needle."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    assert proc.stderr.count("error:") == 1, proc.stderr
    message = proc.stderr[proc.stderr.index("error:"):]
    # a progress bar may be redrawn after the message when it is closed at exit
    paragraph = re.split(r"\r|\n?(?:epoch \d+/\d+:|generating:)", message)[0].strip()
    assert paragraph and "\n\n" not in paragraph, message
    for needle in needles:
        assert flat(str(needle)) in flat(paragraph), f"{needle!r} not in {paragraph!r}"
    return paragraph


def train(root, tmp_path, *extra):
    return run_script("train_phase.py", "--input_path", str(root), "--name", "bad",
                      "--checkpoints_dir", str(tmp_path / "ck"), *TINY_NET_FLAGS, "--niter", "1", *extra,
                      timeout=300)


def assert_no_training(tmp_path, proc):
    """The run stopped before the first training step: no loss printed, no checkpoint written."""
    assert "G_GAN" not in proc.stdout + proc.stderr
    ck = tmp_path / "ck" / "bad"
    assert not (ck.is_dir() and any(f.endswith(".pkl") for f in os.listdir(ck)))


def write_rgb_label(path, rgb):
    Image.fromarray(np.asarray(rgb, np.uint8)).save(path)


# -- label maps ---------------------------------------------------------------------------------

def test_label_values_at_or_above_label_nc_are_refused(tmp_path):
    label = np.zeros((H, W), np.uint8)
    label[:5, :7] = LABEL_NC          # first invalid id
    label[10, 10] = 200
    path = tmp_path / "bad.png"
    save_label(str(path), label)
    with pytest.raises(LabelMapError) as info:
        read_label(str(path), LABEL_NC)
    msg = str(info.value)
    assert str(path) in msg
    assert f"{LABEL_NC} (35 px)" in msg and "200 (1 px)" in msg
    assert f"0..{LABEL_NC - 1}" in msg and "--label_nc" in msg
    # the largest valid id is accepted, and the same file is fine with a larger label_nc
    label[label > 0] = LABEL_NC - 1
    save_label(str(path), label)
    assert read_label(str(path), LABEL_NC).max() == LABEL_NC - 1
    label[10, 10] = 200
    save_label(str(path), label)
    assert read_label(str(path), 201).max() == 200


def test_rgb_label_with_differing_channels_is_refused(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 3
    rgb[..., 1] = 3
    rgb[..., 2] = 3
    rgb[40, 50, 2] = 4                 # a single differing pixel is enough
    path = tmp_path / "colour.png"
    write_rgb_label(path, rgb)
    with pytest.raises(LabelMapError) as info:
        read_label(str(path), LABEL_NC)
    assert str(path) in str(info.value) and "channels differ" in str(info.value)


def test_rgb_label_with_equal_channels_is_accepted(tmp_path):
    ids = (np.arange(H * W).reshape(H, W) % LABEL_NC).astype(np.uint8)
    path = tmp_path / "grey_as_rgb.png"
    write_rgb_label(path, np.stack([ids] * 3, axis=-1))
    assert Image.open(path).mode == "RGB"
    out = read_label(str(path), LABEL_NC)
    assert out.shape == (H, W) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ids)


def test_bad_label_map_in_generation_folder_is_raised_by_batch(tmp_path, tiny_dataset):
    folder = tmp_path / "labels"
    shutil.copytree(os.path.join(tiny_dataset, "test", "labels"), folder)
    bad = folder / sorted(os.listdir(folder))[1]
    save_label(str(bad), np.full((H, W), 77, np.uint8))
    dataset = LabelFolderDataset(str(folder), LABEL_NC, W, H, batch_size=1)
    messages = []
    for batch in dataset:
        try:
            raise_batch_errors(batch)
        except DatasetError as err:
            messages.append(str(err))
    assert len(messages) == 1
    assert str(bad) in messages[0] and "77" in messages[0]


# -- pairing and sizes --------------------------------------------------------------------------

def test_photo_without_label_is_named(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    os.remove(root / "labels" / "demo_00004.png")
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(root))
    msg = str(info.value)
    assert "demo_00004.jpg" in msg and "no label map" in msg and str(root / "imgs") in msg
    assert "have no photo" not in msg


def test_label_without_photo_is_named(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    os.remove(root / "imgs" / "demo_00007.jpg")
    shutil.copy(root / "labels" / "demo_00001.png", root / "labels" / "extra.png")
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(root))
    msg = str(info.value)
    assert "2 label map(s)" in msg and "demo_00007.png" in msg and "extra.png" in msg
    assert str(root / "labels") in msg


def test_size_mismatch_names_both_files_and_sizes(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    save_label(str(root / "labels" / "demo_00002.png"), np.zeros((H, W + 2), np.uint8))
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(root))
    msg = str(info.value)
    assert f"demo_00002.jpg is {W}x{H}" in msg and f"demo_00002.png is {W + 2}x{H}" in msg


def test_size_mismatch_is_checked_only_within_max_dataset_size(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    save_label(str(root / "labels" / "demo_00011.png"), np.zeros((H + 1, W), np.uint8))
    assert len(folders.training_pairs(str(root), max_size=4)) == 4
    with pytest.raises(DatasetError):
        folders.training_pairs(str(root))


# -- broken files -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_truncated_photo_is_reported(tiny_dataset, tmp_path, kind):
    src = os.path.join(tiny_dataset, "train", "imgs", "demo_00000.jpg")
    path = tmp_path / f"photo.{kind}"
    Image.open(src).save(path)
    read_image(str(path))  # intact file reads
    truncate(path)
    with pytest.raises(ImageFileError) as info:
        read_image(str(path))
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_truncated_label_map_is_reported(tiny_dataset, tmp_path):
    path = tmp_path / "label.png"
    shutil.copy(os.path.join(tiny_dataset, "train", "labels", "demo_00000.png"), path)
    truncate(path)
    with pytest.raises(LabelMapError) as info:
        read_label(str(path), LABEL_NC)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_every_cut_of_a_photo_gives_a_user_error(tiny_dataset, tmp_path):
    with open(os.path.join(tiny_dataset, "train", "imgs", "demo_00003.jpg"), "rb") as f:
        data = f.read()
    path = tmp_path / "cut.jpg"
    for n in range(0, len(data) - 2, max(1, len(data) // 40)):
        path.write_bytes(data[:n])
        with pytest.raises(ImageFileError):
            read_image(str(path))
        try:
            folders.header_size(str(path))
        except DatasetError:
            pass


def test_non_image_file_with_image_extension(tiny_dataset, tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageFileError) as info:
        read_image(str(path))
    assert str(path) in str(info.value) and "not an image" in str(info.value)
    with pytest.raises(LabelMapError):
        read_label(str(path), LABEL_NC)

    root = copy_train(tiny_dataset, tmp_path)
    (root / "imgs" / "demo_00005.jpg").write_text("<html>not a photo</html>")
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(root))
    assert "demo_00005.jpg" in str(info.value) and "not a readable image" in str(info.value)


def test_dataset_carries_load_errors_to_the_main_process(tiny_dataset, tmp_path):
    """Label values and truncated files are found when the sample is loaded; the batch carries
    the message and raise_batch_errors turns it into a DatasetError naming the file."""
    root = copy_train(tiny_dataset, tmp_path)
    save_label(str(root / "labels" / "demo_00003.png"), np.full((H, W), 40, np.uint8))
    truncate(root / "imgs" / "demo_00006.jpg")
    rgb = np.stack([np.zeros((H, W), np.uint8)] * 3, axis=-1)
    rgb[0, 0, 1] = 1
    write_rgb_label(root / "labels" / "demo_00009.png", rgb)

    dataset = PairedDataset(str(root), LABEL_NC, W, H, W, seed=0, batch_size=1, shuffle=False)
    failures = {}
    good = 0
    for i, batch in enumerate(dataset):
        try:
            raise_batch_errors(batch)
            good += 1
            assert tuple(batch["image"].shape) == (1, 3, H, W)
        except DatasetError as err:
            failures[i] = str(err)
    assert good == 9
    assert sorted(failures) == [3, 6, 9]
    assert "demo_00003.png" in failures[3] and "40" in failures[3]
    assert "demo_00006.jpg" in failures[6] and "truncated" in failures[6]
    assert "demo_00009.png" in failures[9] and "channels differ" in failures[9]


def test_raise_batch_errors_counts_further_failures():
    raise_batch_errors({"error": ["", ""]})
    with pytest.raises(DatasetError) as info:
        raise_batch_errors({"error": ["", "a.png: bad", "b.png: bad"]})
    assert str(info.value).startswith("a.png: bad") and "1 more file(s)" in str(info.value)


# -- folder layout ------------------------------------------------------------------------------

def test_empty_imgs_folder(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    for f in os.listdir(root / "imgs"):
        os.remove(root / "imgs" / f)
    (root / "imgs" / "readme.txt").write_text("no photos here")
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(root))
    assert str(root / "imgs") in str(info.value) and "no photos" in str(info.value)


def test_missing_folders(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    shutil.rmtree(root / "labels")
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(root))
    assert "labels/" in str(info.value) and str(root) in str(info.value)
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(tmp_path / "nowhere"))
    assert "nowhere" in str(info.value)
    shutil.rmtree(root / "imgs")
    with pytest.raises(DatasetError) as info:
        folders.training_pairs(str(root))
    assert "imgs/" in str(info.value)


def test_lables_spelling_is_accepted(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    os.rename(root / "labels", root / "lables")
    pairs = folders.training_pairs(str(root))
    assert len(pairs) == 12
    assert all(os.path.dirname(lbl) == str(root / "lables") for _, lbl in pairs)
    dataset = PairedDataset(str(root), LABEL_NC, W, H, W, batch_size=1)
    sample = dataset[0]
    assert sample["error"] == ""
    assert sample["label"].shape == (H, W)


def test_generation_label_folder_errors(tmp_path):
    with pytest.raises(DatasetError) as info:
        folders.test_labels(str(tmp_path / "missing"))
    assert "missing" in str(info.value) and "not found" in str(info.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "photo.jpg").write_bytes(b"")  # not a label extension
    with pytest.raises(DatasetError) as info:
        folders.test_labels(str(tmp_path / "empty"))
    assert "empty" in str(info.value) and "no label maps" in str(info.value)


# -- device and CLI plumbing --------------------------------------------------------------------

def test_gpu_mode_decision():
    with pytest.raises(OptionError) as info:
        resolve_gpu_mode("on", 0)
    assert "--gpu on" in str(info.value)
    assert resolve_gpu_mode("auto", 0) is False
    assert resolve_gpu_mode("off", 3) is False
    assert resolve_gpu_mode("on", 1) is True
    with pytest.raises(OptionError):
        resolve_gpu_mode("yes", 1)


def test_run_main_turns_user_errors_into_messages(capsys):
    def bad(argv):
        raise DatasetError("x.png: something is wrong")

    with pytest.raises(SystemExit) as info:
        run_main(bad, [])
    assert info.value.code == UserError.exit_code != 0
    assert capsys.readouterr().err == "error: x.png: something is wrong\n"

    def bug(argv):
        raise ValueError("a real bug")

    with pytest.raises(ValueError):  # not a user error: keeps its traceback
        run_main(bug, [])


# -- through the entry points -------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["photo_only", "label_only"])
def test_train_phase_unpaired_files(tiny_dataset, tmp_path, direction):
    root = copy_train(tiny_dataset, tmp_path)
    if direction == "photo_only":
        os.remove(root / "labels" / "demo_00008.png")
        needles = ("demo_00008.jpg", "no label map", str(root / "imgs"))
    else:
        os.remove(root / "imgs" / "demo_00008.jpg")
        needles = ("demo_00008.png", "no photo", str(root / "labels"))
    proc = train(root, tmp_path)
    assert_clean_failure(proc, "do not pair up", *needles)
    assert_no_training(tmp_path, proc)


def test_train_phase_size_mismatch(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    Image.open(root / "imgs" / "demo_00001.jpg").resize((W // 2, H // 2)).save(root / "imgs" / "demo_00001.jpg")
    proc = train(root, tmp_path)
    assert_clean_failure(proc, f"demo_00001.jpg is {W // 2}x{H // 2}", f"demo_00001.png is {W}x{H}")
    assert_no_training(tmp_path, proc)


def test_train_phase_non_image_file(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    (root / "labels" / "demo_00010.png").write_text("not a png")
    proc = train(root, tmp_path)
    assert_clean_failure(proc, str(root / "labels" / "demo_00010.png"), "not a readable image")
    assert_no_training(tmp_path, proc)


def test_train_phase_empty_imgs_and_missing_labels(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    shutil.rmtree(root / "labels")
    proc = train(root, tmp_path)
    assert_clean_failure(proc, str(root), "no label folder")
    shutil.rmtree(root / "imgs")
    os.makedirs(root / "imgs")
    os.makedirs(root / "labels")
    proc = train(root, tmp_path)
    assert_clean_failure(proc, str(root / "imgs"), "no photos found")
    assert_no_training(tmp_path, proc)


def test_train_phase_truncated_photo_fails_on_first_batch(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    bad = root / "imgs" / f"{first_stem(root)}.jpg"
    truncate(bad)
    proc = train(root, tmp_path)
    assert_clean_failure(proc, str(bad), "truncated")
    assert_no_training(tmp_path, proc)


def test_train_phase_label_values_fail_on_first_batch(tiny_dataset, tmp_path):
    root = copy_train(tiny_dataset, tmp_path)
    bad = root / "labels" / f"{first_stem(root)}.png"
    label = read_label(str(bad), LABEL_NC)
    label[label == label.max()] = 31
    save_label(str(bad), label)
    proc = train(root, tmp_path)
    assert_clean_failure(proc, str(bad), "31 (", "--label_nc (29)")
    assert_no_training(tmp_path, proc)


def test_train_phase_gpu_on_without_gpu(tiny_dataset, tmp_path):
    from util.core.cuda_check import count_cuda_devices
    if count_cuda_devices() > 0:
        pytest.skip("this machine has a CUDA GPU")
    proc = train(os.path.join(tiny_dataset, "train"), tmp_path, "--gpu", "on")
    assert_clean_failure(proc, "--gpu on", "no usable CUDA GPU")
    assert_no_training(tmp_path, proc)


@pytest.fixture
def experiment(tmp_path):
    """A checkpoints folder with a saved tiny architecture and generator files for some tags
    (their contents are never read: generation stops before loading)."""
    from options import base_options, train_options
    opt, parser = train_options.parse(["--input_path", "unused", *TINY_NET_FLAGS])
    folder = tmp_path / "ck" / "exp"
    base_options.save_options(opt, parser, str(folder))
    return folder


def generate(tmp_path, input_path, *extra):
    return run_script("test_phase.py", "--input_path", str(input_path), "--output_path", str(tmp_path / "out"),
                      "--name", "exp", "--checkpoints_dir", str(tmp_path / "ck"), "--nThreads", "0", *extra,
                      timeout=300)


def test_test_phase_missing_checkpoint_lists_available_tags(tiny_dataset, tmp_path, experiment):
    for tag in ("10", "2", "latest"):
        (experiment / f"{tag}_net_G.pkl").write_bytes(b"")
    proc = generate(tmp_path, os.path.join(tiny_dataset, "test", "labels"), "--which_epoch", "5")
    assert_clean_failure(proc, str(experiment / "5_net_G.pkl"), "--which_epoch 5", "available: 2, 10, latest")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_test_phase_no_checkpoint_at_all(tiny_dataset, tmp_path, experiment):
    proc = generate(tmp_path, os.path.join(tiny_dataset, "test", "labels"))
    assert_clean_failure(proc, str(experiment / "latest_net_G.pkl"), "no checkpoints there at all")


def test_test_phase_empty_label_folder(tmp_path, experiment):
    (experiment / "latest_net_G.pkl").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    proc = generate(tmp_path, tmp_path / "empty")
    assert_clean_failure(proc, str(tmp_path / "empty"), "no label maps found")


def test_test_phase_gpu_on_without_gpu(tiny_dataset, tmp_path, experiment):
    from util.core.cuda_check import count_cuda_devices
    if count_cuda_devices() > 0:
        pytest.skip("this machine has a CUDA GPU")
    proc = generate(tmp_path, os.path.join(tiny_dataset, "test", "labels"), "--gpu", "on")
    assert_clean_failure(proc, "--gpu on")



def test_format_error_keeps_long_paths_whole():
    """Wrapping a long message must not split a path (at its hyphens or anywhere else)."""
    from util.core.cli import format_error
    path = "/tmp/pytest-of-some-user/pytest-12/a-long-folder-name-with-many-hyphens/" + "x" * 120 + "/demo-1.png"
    text = format_error(DatasetError(f"{path}: label map holds class ids outside 0..28: 31 (5 px). " * 2))
    lines = text.split("\n")
    assert text.startswith("error: ") and len(lines) > 1
    assert sum(path in line for line in lines) == 2
    assert all(len(line) <= 100 for line in lines if path not in line)
