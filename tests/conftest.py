"""Shared test set-up: CPU Jittor (chosen before any import of it), tiny
option sets, and a tiny procedural dataset made once per session."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from util import device  # noqa: E402

device.setup("off")

# Tiny network settings shared by tests so Jittor compiles each op shape once.
TINY_NET_FLAGS = ["--ngf", "8", "--ndf", "8", "--spade_hidden", "16", "--num_D", "2", "--n_layers_D", "3",
                  "--crop_size", "128", "--num_upsampling_layers", "normal", "--no_vgg_loss", "--nThreads", "0"]


def tiny_train_opt(*extra, input_path="unused"):
    from options import train_options
    opt, _ = train_options.parse(["--input_path", input_path, *TINY_NET_FLAGS, *extra])
    return opt


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 12-train / 3-test demo dataset at 128x96 (DIR/train/{imgs,labels}, DIR/test/{imgs,labels})."""
    from data.demo import write_dataset
    root = str(tmp_path_factory.mktemp("demo"))
    write_dataset(root, num=12, width=128, height=96, seed=0, num_test=3)
    return root


def run_script(script, *args, cwd=ROOT, timeout=900):
    """Run a project script in a subprocess; returns CompletedProcess (text)."""
    import subprocess
    env = dict(os.environ, nvcc_path="", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *([script] if script.endswith(".py") else ["-m", script]), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
