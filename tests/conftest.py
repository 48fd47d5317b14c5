"""Shared test set-up: CPU Jittor (chosen before any import of it), tiny
option sets, a tiny procedural dataset and random FID Inception weights, each
made once per session."""

import os
import signal
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from util.core import device  # noqa: E402

device.setup("off")
# No test fetches weights from the internet (tests/test_download.py serves its own files on 127.0.0.1);
# scripts run by run_script inherit this.
os.environ["LANDSCAPE_NO_DOWNLOAD"] = "1"

# Importing Jittor installs C signal handlers that end the whole process at once (quick_exit(1), no report)
# when a child process dies from a signal or SIGINT arrives. In the test process such an event must fail a
# test visibly instead of ending the run without a summary: back to Python's own handling.
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)

def pytest_sessionfinish(session, exitstatus):
    from parity_margins import write_if_asked
    write_if_asked()


def pytest_report_header(config):
    from util.core import isa
    return f"instruction set: {isa.process_description()}"


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


REFERENCE_MANIFESTS = os.path.join(ROOT, "tests", "data", "reference_checkpoints")


def reference_manifest(name):
    """Key/shape manifest of released reference checkpoints (tests/data/reference_checkpoints/NAME)."""
    import json
    with open(os.path.join(REFERENCE_MANIFESTS, name)) as f:
        return json.load(f)


def load_module(path, name):
    """The Python file ``path`` (relative to the repository root) imported as module ``name``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_data_module(name):
    """A generator script of tests/data (NumPy-only at import time) as a module."""
    return load_module(os.path.join("tests", "data", name + ".py"), name)


@pytest.fixture(scope="session")
def fid_weights_state():
    """Random weights in pytorch-fid's FID Inception layout, as a real .pth holds them: the random
    weights and calibrated BN statistics of tests/data/make_inception_manifests.py (the ones the
    pytorch-fid reference data were made with), fc 1008 classes, num_batches_tracked int64 zeros.
    Shared by the session: do not modify it (copy it first)."""
    import numpy as np
    ref = load_data_module("make_fid_reference")
    state = ref.random_fid_state()
    state.update({k: np.array(0, np.int64) for k in ref.manifests.load_manifest(ref.manifests.FID_MANIFEST)
                  if k.endswith("num_batches_tracked")})
    return state


@pytest.fixture(scope="session")
def fid_weights_file(tmp_path_factory, fid_weights_state):
    """``fid_weights_state`` written as a PyTorch .pth file (as pytorch-fid's weights are shipped)."""
    from torch_format import save_torch_state_dict
    path = str(tmp_path_factory.mktemp("fidweights") / "pt_inception-random.pth")
    save_torch_state_dict(path, fid_weights_state)
    return path


# Runs a script (or module) the way a user does, except that importing Jittor before
# util.core.device.setup has chosen the device fails. Unguarded, that import crashes on machines
# with the CUDA compiler but no GPU (Jittor probes CUDA when imported).
JITTOR_GUARD = """
import os, runpy, sys
class JittorGuard:
    def find_spec(self, name, path=None, target=None):
        if name == "jittor" and "nvcc_path" not in os.environ:
            raise ImportError("jittor imported before util.core.device.setup chose the device")
sys.meta_path.insert(0, JittorGuard())
target, sys.argv = sys.argv[1], sys.argv[1:]
if target.endswith(".py"):
    sys.path[0] = os.path.dirname(os.path.abspath(target))
    runpy.run_path(target, run_name="__main__")
else:
    sys.path[0] = os.getcwd()
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def run_script(script, *args, cwd=ROOT, timeout=900, launcher=(), extra_env=None):
    """Run a project script (``x.py``) or module (``a.b``) in a subprocess; returns CompletedProcess (text).

    The environment is the user's (no ``nvcc_path``) plus ``extra_env``, with JITTOR_GUARD watching the
    import order; ``launcher`` goes before the Python command (e.g. mpirun and its flags).
    """
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "nvcc_path"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra_env or {})
    return subprocess.run([*launcher, sys.executable, "-c", JITTOR_GUARD, script, *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=["fused", "op_by_op"])
def fusion(request):
    """Runs a test twice: as Jittor normally runs it (lazily, operators fused into kernels) and with each
    operator executed on its own (lazy_execution=0). A NumPy comparison must hold both ways: Jittor's fused
    CPU kernels have computed different values from the same expression run op by op
    (docs/jittor-defects.md)."""
    import jittor as jt
    if request.param == "fused":
        yield request.param
    else:
        with jt.flag_scope(lazy_execution=0):
            yield request.param


@pytest.fixture(autouse=True)
def default_cpu_convolutions():
    """Each test starts and ends with the default CPU convolution kernels (building networks sets them
    from --cpu_conv, e.g. the APF-GAN parity cases' 'jittor')."""
    yield
    convolution = sys.modules.get("models.convolution")
    if convolution is not None:
        convolution.set_cpu_conv(device.DEFAULT_CPU_CONV)
