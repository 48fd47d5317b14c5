"""The GPU check before Jittor is imported (util/core/cuda_check.py, used by util/core/device.py).

``cuda_problem`` is pure: it is fed made-up facts for each case Jittor 1.3.11 cannot handle (a CUDA 13
toolkit, cuDNN 9 only, a GPU newer than sm_90, a driver older than CUDA 12.2) and for the working ones.
The probes run against a fake CUDA toolkit in a temporary folder, and ``setup`` against monkeypatched
probes, so none of this needs a GPU; Jittor itself is never re-imported (conftest.py set it up for the CPU).
"""

import dataclasses
import os
import shutil
import signal
import stat

import pytest

from util.core import cuda_check, device
from util.core.cuda_check import CudaFacts, choose_nvcc, cuda_problem, parse_nvcc_version
from util.core.errors import CudaSetupError, OptionError

INSTALL = "python -m jittor_utils.install_cuda"
BUNDLE_NVCC = "/home/user/.cache/jittor/jtcuda/cuda12.2_cudnn8_linux/bin/nvcc"
# What works: an H100/H200-class GPU, a driver for CUDA 13.0, Jittor's CUDA 12.2 bundle installed.
GOOD = CudaFacts(driver_version=13000, capabilities=((9, 0),), nvcc=BUNDLE_NVCC, nvcc_source="bundle",
                 nvcc_version=(12, 2), bundle_installed=True, bundle_nvcc=BUNDLE_NVCC)
# A system CUDA 12.4 toolkit with cuDNN 8, as Jittor would find it.
TOOLKIT_12 = dataclasses.replace(
    GOOD, nvcc="/usr/local/cuda/bin/nvcc", nvcc_source="system", nvcc_version=(12, 4, 131),
    bundle_installed=False, cudart="/usr/local/cuda/lib64/libcudart.so", cudnn_needed=True,
    cudnn_header="/usr/local/cuda/include/cudnn.h", cudnn_header_major=8,
    cudnn_library="/usr/local/cuda/lib64/libcudnn.so", cudnn_library_major=8)
# `nvcc --version` of the CUDA 13.0 toolkit (/usr/local/cuda/bin/nvcc on the development machine).
NVCC_13_OUTPUT = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Wed_Aug_20_01:58:59_PM_PDT_2025
Cuda compilation tools, release 13.0, V13.0.88
Build cuda_13.0.r13.0/compiler.36424714_0
"""


def flat(text):
    return " ".join(text.split())


# -- the decision -------------------------------------------------------------------------------------------

def test_working_setups_are_ok():
    assert cuda_problem(GOOD) is None
    assert cuda_problem(TOOLKIT_12) is None
    # not installed yet: Jittor downloads its bundle on the first import (the driver and nvidia-smi allow it)
    assert cuda_problem(dataclasses.replace(GOOD, nvcc=None, nvcc_source="download", bundle_installed=False)) is None


def test_cuda_13_toolkit_without_bundle_names_the_fix():
    facts = dataclasses.replace(TOOLKIT_12, nvcc_version=(13, 0, 88), cudnn_header_major=9, cudnn_library_major=9)
    problem = cuda_problem(facts)
    assert problem and "CUDA 13.0" in problem and "/usr/local/cuda/bin/nvcc" in problem
    assert f"`{INSTALL}`" in problem
    assert "cuDNN 9" not in problem  # the bundle replaces the whole toolkit: one reason, one fix


def test_cuda_13_toolkit_with_bundle_installed_is_ok():
    """Jittor takes its installed bundle before any system nvcc, so the CUDA 13 one on PATH does not matter."""
    nvcc, source = choose_nvcc(None, BUNDLE_NVCC, "/usr/local/cuda/bin/nvcc")
    assert (nvcc, source) == (BUNDLE_NVCC, "bundle")
    assert cuda_problem(dataclasses.replace(GOOD, nvcc=nvcc, nvcc_source=source)) is None


def test_cuda_13_through_nvcc_path_says_to_unset_it():
    problem = cuda_problem(dataclasses.replace(TOOLKIT_12, nvcc_source="nvcc_path", nvcc_version=(13, 0, 88),
                                               bundle_installed=True))
    assert problem and "nvcc_path" in problem and "Unset nvcc_path" in problem


def test_bundle_installed_but_not_taken_without_nvidia_smi():
    problem = cuda_problem(dataclasses.replace(TOOLKIT_12, nvcc_version=(13, 0, 88), bundle_installed=True,
                                               bundle_nvcc=BUNDLE_NVCC, nvidia_smi=False))
    assert problem and "nvidia-smi" in problem and f"nvcc_path={BUNDLE_NVCC}" in problem


def test_choose_nvcc_follows_jittors_order():
    assert choose_nvcc("/opt/c/bin/nvcc", BUNDLE_NVCC, "/usr/bin/nvcc") == ("/opt/c/bin/nvcc", "nvcc_path")
    assert choose_nvcc("", BUNDLE_NVCC, "/usr/bin/nvcc") == ("", "nvcc_path")
    assert choose_nvcc(None, None, "/usr/bin/nvcc") == ("/usr/bin/nvcc", "system")
    assert choose_nvcc(None, None, None) == (None, "download")


def test_empty_nvcc_path_is_a_problem():
    problem = cuda_problem(dataclasses.replace(GOOD, nvcc="", nvcc_source="nvcc_path", nvcc_version=None))
    assert problem and "Unset nvcc_path" in problem


def test_cudnn_9_only_is_a_problem():
    facts = dataclasses.replace(TOOLKIT_12, cudnn_header_major=9, cudnn_library_major=9, cudnn8_parts=False,
                                cudnn_library="/usr/local/cuda/lib64/libcudnn.so")
    problem = cuda_problem(facts)
    assert problem and "cuDNN 9" in problem and "cuDNN 8" in problem and INSTALL in problem
    # conv_opt=1 (no cuDNN loaded) or Jittor's bundle: nothing to check
    assert cuda_problem(dataclasses.replace(facts, cudnn_needed=False)) is None


def test_missing_cudnn_8_libraries_are_a_problem():
    problem = cuda_problem(dataclasses.replace(TOOLKIT_12, cudnn8_parts=False,
                                               cudnn_library_folders=("/usr/local/cuda/lib64", "/usr/lib")))
    assert problem and "libcudnn_cnn_infer.so" in problem and "/usr/local/cuda/lib64" in problem
    problem = cuda_problem(dataclasses.replace(TOOLKIT_12, cudnn_header=None, cudnn_header_major=None))
    assert problem and "cudnn.h" in problem


def test_runtime_missing_beside_nvcc_is_a_problem():
    """A wrapper script such as /usr/local/bin/nvcc: Jittor looks for libcudart.so in /usr/local/lib64."""
    problem = cuda_problem(dataclasses.replace(TOOLKIT_12, nvcc="/usr/local/bin/nvcc",
                                               cudart="/usr/local/lib64/libcudart.so", cudart_found=False))
    assert problem and "/usr/local/lib64/libcudart.so" in problem and "/usr/local/cuda/bin/nvcc" in problem


@pytest.mark.parametrize("capability", [(10, 0), (12, 0)])
def test_gpu_newer_than_sm_90_is_a_problem(capability):
    problem = cuda_problem(dataclasses.replace(GOOD, capabilities=((9, 0), capability)))
    arch = f"sm_{capability[0]}{capability[1]}"
    assert problem and arch in problem and "sm_90" in problem and "GPU 1" in problem


@pytest.mark.parametrize("capability", [(9, 0), (8, 9), (8, 0), (7, 5)])
def test_gpus_up_to_sm_90_are_ok(capability):
    assert cuda_problem(dataclasses.replace(GOOD, capabilities=(capability,))) is None


def test_old_toolkit_limits_the_architecture():
    """CUDA 11.4: Jittor builds sm_86 code at most, which runs on sm_89 but not on sm_90."""
    old = dataclasses.replace(TOOLKIT_12, nvcc_version=(11, 4, 48), driver_version=11040)
    assert cuda_problem(dataclasses.replace(old, capabilities=((8, 9),))) is None
    problem = cuda_problem(dataclasses.replace(old, capabilities=((9, 0),)))
    assert problem and "sm_86" in problem and "CUDA 11.8" in problem


def test_old_driver_is_a_problem():
    problem = cuda_problem(dataclasses.replace(GOOD, driver_version=11080))
    assert problem and "CUDA up to 11.8" in problem and "Update the NVIDIA driver" in problem
    problem = cuda_problem(dataclasses.replace(GOOD, nvcc=None, nvcc_source="download", driver_version=12010))
    assert problem and "12.2" in problem
    # the driver is older than the user's own toolkit
    problem = cuda_problem(dataclasses.replace(TOOLKIT_12, driver_version=11080))
    assert problem and "Update the NVIDIA driver" in problem
    # a user's CUDA 11.8 toolkit with a driver for it is what Jittor supports too
    assert cuda_problem(dataclasses.replace(TOOLKIT_12, nvcc_version=(11, 8, 89), driver_version=11080)) is None


def test_problems_are_one_paragraph():
    facts = dataclasses.replace(TOOLKIT_12, driver_version=11080, capabilities=((10, 0),), cudnn_library_major=9)
    problem = cuda_problem(facts)
    assert "\n" not in problem and problem.count("Update the NVIDIA driver") == 1


# -- the probes ---------------------------------------------------------------------------------------------

def test_parse_nvcc_version_of_real_output():
    assert parse_nvcc_version(NVCC_13_OUTPUT) == (13, 0, 88)
    assert parse_nvcc_version("nvcc: command not found") is None


def test_nvcc_version_of_the_installed_toolkit():
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not os.path.exists(nvcc):
        pytest.skip("no CUDA toolkit on this machine")
    version = cuda_check.nvcc_version(nvcc)
    assert version is not None and len(version) == 3 and version[0] >= 10
    assert cuda_check.nvcc_version("/nonexistent/bin/nvcc") is None


def test_bundle_follows_the_driver():
    assert cuda_check.bundle_name((13, 0)) == "cuda12.2_cudnn8_linux"
    assert cuda_check.bundle_name((12, 1)) == "cuda11.2_cudnn8_linux"
    assert cuda_check.bundle_name((9, 2)) is None
    assert cuda_check.bundle_cuda_version("cuda12.2_cudnn8_linux") == (12, 2)


def fake_toolkit(root, version, cudnn):
    """ROOT/bin/nvcc printing ``version``, include/ and lib64/ with libcudart.so and cuDNN ``cudnn`` (8 or 9)."""
    for sub in ("bin", "include", "lib64"):
        os.makedirs(os.path.join(root, sub))
    nvcc = os.path.join(root, "bin", "nvcc")
    with open(nvcc, "w") as f:
        f.write(f"#!/bin/sh\necho 'Cuda compilation tools, release {version}, V{version}.1'\n")
    os.chmod(nvcc, os.stat(nvcc).st_mode | stat.S_IXUSR)
    lib = os.path.join(root, "lib64")
    names = ["libcudart.so", f"libcudnn.so.{cudnn}.1.0"]
    names += [f"libcudnn_{part}.so.8" for part in ("ops_infer", "ops_train", "cnn_infer", "cnn_train")] \
        if cudnn == 8 else ["libcudnn_ops.so.9", "libcudnn_cnn.so.9"]
    for name in names:
        open(os.path.join(lib, name), "w").close()
    os.symlink(f"libcudnn.so.{cudnn}.1.0", os.path.join(lib, "libcudnn.so"))
    if cudnn == 8:
        for part in ("ops_infer", "ops_train", "cnn_infer", "cnn_train"):
            os.symlink(f"libcudnn_{part}.so.8", os.path.join(lib, f"libcudnn_{part}.so"))
    with open(os.path.join(root, "include", "cudnn.h"), "w") as f:
        f.write('#include "cudnn_version.h"\n')
    with open(os.path.join(root, "include", "cudnn_version.h"), "w") as f:
        f.write(f"#define CUDNN_MAJOR {cudnn}\n#define CUDNN_MINOR 1\n")
    return nvcc


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """One H100-class GPU and a driver for CUDA 13.0, Jittor's home in a temporary folder (no bundle)."""
    monkeypatch.setattr(cuda_check, "driver_version", lambda: 13000)
    monkeypatch.setattr(cuda_check, "gpu_capabilities", lambda: ((9, 0),))
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("conv_opt", raising=False)
    monkeypatch.delenv("JTCUDA_VERSION", raising=False)
    return tmp_path


@pytest.mark.parametrize("cudnn", [8, 9])
def test_probe_reads_a_toolkit_like_jittor(machine, monkeypatch, cudnn):
    nvcc = fake_toolkit(str(machine / "cuda"), "12.4", cudnn)
    monkeypatch.setenv("nvcc_path", nvcc)
    facts = cuda_check.probe_cuda_facts()
    assert (facts.nvcc, facts.nvcc_source, facts.nvcc_version) == (nvcc, "nvcc_path", (12, 4, 1))
    assert facts.cudart_found and facts.cudnn_needed
    assert facts.cudnn_header == str(machine / "cuda" / "include" / "cudnn.h")
    assert (facts.cudnn_header_major, facts.cudnn_library_major, facts.cudnn8_parts) == (cudnn, cudnn, cudnn == 8)
    problem = cuda_problem(facts)
    if cudnn == 8:
        assert problem is None
    else:
        assert problem and "cuDNN 9" in problem


def test_probe_takes_an_installed_bundle(machine, monkeypatch):
    os.makedirs(machine / "home" / ".cache" / "jittor" / "jtcuda")
    monkeypatch.delenv("nvcc_path", raising=False)
    monkeypatch.setattr(cuda_check.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    facts = cuda_check.probe_cuda_facts()
    assert facts.nvcc_source == "bundle" and facts.nvcc_version == (12, 2)
    assert facts.nvcc == str(machine / "home" / ".cache" / "jittor" / "jtcuda" / "cuda12.2_cudnn8_linux" / "bin"
                             / "nvcc")
    assert cuda_problem(facts) is None


# -- setup --------------------------------------------------------------------------------------------------

CUDA_13 = dataclasses.replace(TOOLKIT_12, nvcc_version=(13, 0, 88))


@pytest.fixture
def fresh_setup(monkeypatch):
    """``setup`` as in a new process with one GPU; records the choice instead of importing Jittor again."""
    started = []
    monkeypatch.setattr(device, "_configured", None)
    monkeypatch.setattr(device, "_problem", None)
    monkeypatch.setattr(device, "_start_jittor", lambda use_cuda, quiet_logs: started.append(use_cuda))
    monkeypatch.setattr(cuda_check, "count_cuda_devices", lambda: 1)
    monkeypatch.setattr(cuda_check, "jittor_version", lambda: (1, 3, 11, 0))
    monkeypatch.delenv(cuda_check.SKIP_CHECK_VARIABLE, raising=False)
    return started


def test_setup_auto_warns_once_and_uses_the_cpu(fresh_setup, monkeypatch, capsys):
    monkeypatch.setattr(cuda_check, "probe_cuda_facts", lambda: CUDA_13)
    assert device.setup("auto") is False
    assert device.setup("auto") is False
    err = flat(capsys.readouterr().err)
    assert err.startswith("warning: --gpu auto: Jittor 1.3.11 cannot use the GPU here")
    assert err.count("warning:") == 1 and INSTALL in err and "Using the CPU instead" in err
    assert fresh_setup == [False]


def test_setup_on_is_an_error(fresh_setup, monkeypatch, capsys):
    monkeypatch.setattr(cuda_check, "probe_cuda_facts", lambda: CUDA_13)
    with pytest.raises(CudaSetupError) as info:
        device.setup("on")
    assert isinstance(info.value, OptionError)
    assert str(info.value).startswith("--gpu on: Jittor 1.3.11 cannot use the GPU here") and INSTALL in str(info.value)
    assert fresh_setup == [] and capsys.readouterr().err == ""


def test_setup_uses_a_usable_gpu(fresh_setup, monkeypatch, capsys):
    monkeypatch.setattr(cuda_check, "probe_cuda_facts", lambda: GOOD)
    assert device.setup("on") is True
    assert fresh_setup == [True] and capsys.readouterr().err == ""


def test_setup_check_can_be_skipped(fresh_setup, monkeypatch):
    monkeypatch.setattr(cuda_check, "probe_cuda_facts", lambda: CUDA_13)
    monkeypatch.setenv(cuda_check.SKIP_CHECK_VARIABLE, "1")
    assert device.setup("on") is True


def test_setup_does_not_check_a_newer_jittor(fresh_setup, monkeypatch):
    monkeypatch.setattr(cuda_check, "probe_cuda_facts", lambda: CUDA_13)
    monkeypatch.setattr(cuda_check, "jittor_version", lambda: (1, 3, 12, 0))
    assert device.setup("on") is True


def broken_probe():
    raise AssertionError("probed")


def test_setup_without_gpu_or_off_probes_nothing(fresh_setup, monkeypatch, capsys):
    monkeypatch.setattr(cuda_check, "probe_cuda_facts", broken_probe)
    monkeypatch.setattr(cuda_check, "count_cuda_devices", lambda: 0)
    with pytest.raises(OptionError) as info:
        device.setup("on")
    assert "no usable CUDA GPU" in str(info.value) and not isinstance(info.value, CudaSetupError)
    assert device.setup("auto") is False
    monkeypatch.setattr(cuda_check, "count_cuda_devices", broken_probe)
    assert device.setup("off") is False
    assert capsys.readouterr().err == ""


def test_a_crash_in_another_thread_ends_the_process_instead_of_hanging(tmp_path):
    """Jittor's SIGSEGV handler calls exit() in the crashing thread (which can deadlock when that thread is one
    of its compiler threads); after device.setup the process dies of the signal, with the stacks printed."""
    script = ("import ctypes, threading, time\n"
              "from util.core import device\n"
              "device.setup('off')\n"
              "import jittor\n"
              "threading.Thread(target=lambda: ctypes.string_at(0)).start()\n"
              "time.sleep(30)\n")
    (tmp_path / "crash.py").write_text(script)
    import subprocess
    import sys

    from conftest import ROOT
    env = {k: v for k, v in os.environ.items() if k != "nvcc_path"}
    result = subprocess.run([sys.executable, str(tmp_path / "crash.py")], cwd=ROOT, env={**env, "PYTHONPATH": ROOT},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGSEGV, (result.returncode, result.stderr[-2000:])
    assert "Fatal Python error: Segmentation fault" in result.stderr


def test_kernels_compile_one_at_a_time_on_the_cpu_unless_asked_otherwise():
    """Jittor's parallel kernel compiler crashes now and then with a cold cache (docs/jittor-defects.md)."""
    assert device.kernel_compile_threads(False, {}) == 0
    assert device.kernel_compile_threads(False, {"use_parallel_op_compiler": "4"}) is None
    assert device.kernel_compile_threads(True, {}) is None
    import jittor as jt
    if "use_parallel_op_compiler" not in os.environ:
        assert jt.flags.use_parallel_op_compiler == 0  # conftest ran device.setup("off")
