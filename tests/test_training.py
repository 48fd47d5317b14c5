"""End-to-end training and generation on the tiny demo dataset: exact resume,
Ctrl-C handling, NaN stop, and the generated files."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY_NET_FLAGS, run_script

TRAIN_FLAGS = [*TINY_NET_FLAGS, "--batchSize", "4", "--lambda_l1", "1", "--print_freq", "1", "--display_freq", "2",
               "--save_epoch_freq", "1"]


def train(data, ckpt, name, *extra):
    result = run_script("train_phase.py", "--input_path", os.path.join(data, "train"), "--name", name,
                        "--checkpoints_dir", ckpt, *TRAIN_FLAGS, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load_net(ckpt, name, tag, net="G"):
    from util.core.checkpoint import read_net
    return read_net(os.path.join(ckpt, name), tag, net)


def max_abs_diff(a, b):
    assert set(a) == set(b)
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0 for k in a)


@pytest.fixture(scope="module")
def straight_run(tiny_dataset, tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("ckpt"))
    train(tiny_dataset, ckpt, "straight", "--niter", "2")
    return ckpt


def test_resume_after_one_epoch_matches_straight_training(tiny_dataset, straight_run, tmp_path):
    ckpt = str(tmp_path)
    train(tiny_dataset, ckpt, "resumed", "--niter", "1")
    out = train(tiny_dataset, ckpt, "resumed", "--niter", "2", "--continue_train")
    assert "resumed from latest: epoch 2" in out.stdout
    for net in ("G", "D"):
        assert max_abs_diff(load_net(straight_run, "straight", "2", net), load_net(ckpt, "resumed", "2", net)) < 1e-5
    from util.core.checkpoint import read_file
    state = read_file(os.path.join(ckpt, "resumed", "2_state.pkl"))
    assert state["total_iters"] == 6 and state["next_epoch"] == 3


def test_loader_workers_do_not_change_training(tiny_dataset, straight_run, tmp_path):
    train(tiny_dataset, str(tmp_path), "workers", "--niter", "2", "--nThreads", "2")
    assert max_abs_diff(load_net(straight_run, "straight", "2"), load_net(str(tmp_path), "workers", "2")) == 0.0


def test_ctrl_c_saves_latest_and_resume_is_exact(tiny_dataset, straight_run, tmp_path):
    ckpt = str(tmp_path)
    cmd = [sys.executable, "train_phase.py", "--input_path", os.path.join(tiny_dataset, "train"), "--name", "int",
           "--checkpoints_dir", ckpt, *TRAIN_FLAGS, "--niter", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, nvcc_path=""), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = os.path.join(ckpt, "int", "loss_log.txt")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log) and open(log).read().count("(epoch: 1, iters: 1,") == 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    from util.core.checkpoint import read_file
    state = read_file(os.path.join(ckpt, "int", "latest_state.pkl"))
    assert (state["next_epoch"], state["next_iter"]) < (3, 0)  # stopped before the end
    train(tiny_dataset, ckpt, "int", "--niter", "2", "--continue_train")
    assert max_abs_diff(load_net(straight_run, "straight", "2"), load_net(ckpt, "int", "2")) < 1e-5


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_dataset, tmp_path, monkeypatch, capsys):
    import train_phase
    from models.trainer import SPADETrainer
    from util.core.checkpoint import read_state
    from util.core.errors import TrainingDivergedError
    ckpt = str(tmp_path)
    args = ["--input_path", os.path.join(tiny_dataset, "train"), "--name", "nan", "--checkpoints_dir", ckpt,
            *TRAIN_FLAGS, "--niter", "3", "--gpu", "off"]
    original = SPADETrainer.generator_step
    calls = {"n": 0}

    def poisoned(self, label, real, stage=None, edge=None):
        calls["n"] += 1
        if calls["n"] == 5:  # second iteration of epoch 2
            real = real * float("nan")
        return original(self, label, real, stage, edge)

    monkeypatch.setattr(SPADETrainer, "generator_step", poisoned)
    with pytest.raises(TrainingDivergedError) as err:
        train_phase.main(args)
    assert "non-finite" in str(err.value)
    folder = os.path.join(ckpt, "nan")
    state = read_state(folder, "latest", ["G", "D"])
    assert (state["next_epoch"], state["next_iter"]) == (2, 0)
    g = load_net(ckpt, "nan", "latest")
    assert all(np.isfinite(v).all() for v in g.values())
    assert not os.path.exists(os.path.join(folder, "2_net_G.pkl"))


def test_generation_names_sizes_and_determinism(tiny_dataset, straight_run, tmp_path):
    labels = os.path.join(tiny_dataset, "test", "labels")
    # a label map of another size is generated at its own size
    odd = Image.open(os.path.join(labels, sorted(os.listdir(labels))[0])).resize((100, 70), Image.NEAREST)
    odd_dir = tmp_path / "labels"
    odd_dir.mkdir()
    for f in os.listdir(labels):
        Image.open(os.path.join(labels, f)).save(odd_dir / f)
    odd.save(odd_dir / "odd_size.png")

    def generate(out, *extra):
        r = run_script("test_phase.py", "--input_path", str(odd_dir), "--output_path", str(out), "--name", "straight",
                       "--checkpoints_dir", straight_run, "--which_epoch", "2", "--nThreads", "0", *extra)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    r = generate(tmp_path / "a", "--seed", "3")
    assert "architecture from opt.json" in r.stdout
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(os.path.splitext(f)[0] + ".jpg" for f in os.listdir(odd_dir))
    assert Image.open(tmp_path / "a" / "odd_size.jpg").size == (100, 70)
    first = sorted(os.listdir(labels))[0]
    assert Image.open(tmp_path / "a" / (os.path.splitext(first)[0] + ".jpg")).size == (128, 96)
    generate(tmp_path / "b", "--seed", "3", "--image_format", "png")
    png = np.asarray(Image.open(tmp_path / "b" / "odd_size.png"))
    generate(tmp_path / "c", "--seed", "3", "--image_format", "png", "--batchSize", "2")
    np.testing.assert_array_equal(png, np.asarray(Image.open(tmp_path / "c" / "odd_size.png")))
    jpg = np.asarray(Image.open(tmp_path / "a" / "odd_size.jpg")).astype(int)
    assert np.abs(jpg - png.astype(int)).mean() < 3  # same image, JPEG quality 95


def test_training_writes_samples_html_and_options(straight_run):
    folder = os.path.join(straight_run, "straight")
    for f in ("opt.txt", "opt.json", "loss_log.txt", "latest_net_G.pkl", "latest_net_D.pkl", "1_net_G.pkl",
              "2_state.pkl", os.path.join("web", "index.html")):
        assert os.path.exists(os.path.join(folder, f)), f
    images = os.listdir(os.path.join(folder, "web", "images"))
    assert images and all(f.endswith(".jpg") for f in images)
    grid = Image.open(os.path.join(folder, "web", "images", sorted(images)[0]))
    assert grid.size[0] == 3 * 128  # label | generated | real
    assert "G_GAN" in open(os.path.join(folder, "loss_log.txt")).read()
