"""The instruction-set facts (util/core/isa.py) and computing as another CPU kind (util/cpu_isa.py).

On a CPU with AVX-512, ``make test`` runs this module a second time under ``python -m util.cpu_isa --as avx2``:
the test of the running process then checks that everything that picks code by instruction set really runs
its AVX2 code."""

import os

import numpy as np
import pytest

from conftest import run_script
from util.core import isa

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512cd
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512cd
"""
EPYC_AVX2 = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
"""
OLD = """model name\t: Old CPU
flags\t\t: fpu sse sse2 avx
"""
NUMPY_FEATURES = {"AVX2": True, "FMA3": True, "AVX512F": True, "AVX512_SKX": True, "AVX512_ICL": False}


def test_the_cpus_instruction_set_is_read_from_its_flags():
    assert isa.cpu_model(XEON) == "Intel(R) Xeon(R) Processor"
    assert isa.native_isa(isa.cpu_flags(XEON)) == "avx512"
    assert isa.native_isa(isa.cpu_flags(EPYC_AVX2)) == "avx2"
    assert isa.native_isa(isa.cpu_flags(OLD)) == "other"
    assert isa.cpu_model("") == "unknown CPU" and isa.cpu_flags("") == set()
    assert isa.can_emulate("avx2", isa.cpu_flags(XEON))
    assert not isa.can_emulate("avx2", isa.cpu_flags(EPYC_AVX2))  # it is one already
    assert not isa.can_emulate("avx2", isa.cpu_flags(OLD))
    assert not isa.can_emulate("avx512", isa.cpu_flags(XEON))  # nothing to emulate it with


def test_the_emulation_caps_every_library_that_picks_code_by_instruction_set():
    env = isa.emulation_env("avx2", isa.cpu_flags(XEON), NUMPY_FEATURES, {"cc_flags": "-DX=1"})
    assert env["DNNL_MAX_CPU_ISA"] == env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    # after the user's own flags, so that it is the last -march (after Jittor's -march=native) and wins
    assert env["cc_flags"] == "-DX=1 -march=x86-64-v3"
    assert isa.kernel_march("-O2 -march=native -DX=1 " + env["cc_flags"]) == "x86-64-v3"
    assert env["cache_name"] == "isa-avx2"
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["NPY_DISABLE_CPU_FEATURES"].split() == ["AVX512F", "AVX512_SKX"]  # only what NumPy has on
    assert "AVX512-SKX" in env["OPENCV_CPU_DISABLE"].split(",")
    assert env[isa.EMULATION_VARIABLE] == "avx2"
    assert isa.emulation_env("avx2", isa.cpu_flags(XEON), {}, {"cache_name": "ci"})["cache_name"] == "ci-isa-avx2"
    again = isa.emulation_env("avx2", isa.cpu_flags(XEON), NUMPY_FEATURES, {**env, "cc_flags": env["cc_flags"]})
    assert again == env  # emulating inside an emulated process changes nothing
    with pytest.raises(isa.IsaError, match="cannot emulate 'avx2' on a CPU with avx2"):
        isa.emulation_env("avx2", isa.cpu_flags(EPYC_AVX2), NUMPY_FEATURES, {})


def test_the_description_names_the_cpu_the_emulation_onednn_and_the_kernels():
    line = isa.describe(XEON, {isa.EMULATION_VARIABLE: "avx2"}, "-march=native -march=x86-64-v3", "avx2")
    assert line == ("CPU Intel(R) Xeon(R) Processor (avx512), computing as avx2 (emulated), oneDNN avx2, "
                    "Jittor kernels -march=x86-64-v3")
    assert isa.describe(EPYC_AVX2, {}) == "CPU AMD EPYC 7B13 (avx2)"
    assert isa.kernel_march("-O2") == ""


def test_this_process_computes_with_the_instruction_set_it_names():
    """In make test's first pass the CPU's own instruction set; in its second pass (on an AVX-512 CPU, under
    util.cpu_isa --as avx2) AVX2 in oneDNN, Jittor's kernels, NumPy and OpenCV."""
    import cv2
    import jittor as jt
    from numpy.core._multiarray_umath import __cpu_features__

    from models import convolution
    cpuinfo = isa.read_cpuinfo()
    native = isa.native_isa(isa.cpu_flags(cpuinfo))
    described = isa.process_description()
    if os.environ.get(isa.EMULATION_VARIABLE) == "avx2":
        assert isa.onednn_isa() == "avx2"
        assert isa.kernel_march(jt.flags.cc_flags) == "x86-64-v3"
        assert not __cpu_features__["AVX512F"]
        assert not cv2.checkHardwareSupport(256)  # cv2.CPU_AVX512_SKX
        assert not convolution.winograd_available()
        assert "computing as avx2 (emulated), oneDNN avx2, Jittor kernels -march=x86-64-v3" in described
    else:
        assert isa.kernel_march(jt.flags.cc_flags) == "native"
        assert isa.onednn_isa().startswith({"avx512": "avx512", "avx2": "avx2"}.get(native, ""))
        assert convolution.winograd_available() == (native == "avx512")
        assert described.startswith(f"CPU {isa.cpu_model(cpuinfo)} ({native})")
    jt.sync_all()
    assert np.isfinite(jt.array([1.0, 2.0]).sum().numpy()).all()


def test_the_command_describes_the_machine_and_runs_a_command_as_avx2():
    result = run_script("util/cpu_isa.py")
    assert result.returncode == 0, result.stderr
    flags = isa.cpu_flags(isa.read_cpuinfo())
    assert result.stdout.startswith(f"CPU {isa.cpu_model(isa.read_cpuinfo())} ({isa.native_isa(flags)})")
    probe = ["python3", "-c", "import os; print('cap', os.environ.get('DNNL_MAX_CPU_ISA'))"]
    result = run_script("util/cpu_isa.py", "--as", "avx2", "--or_skip", "--", *probe)
    assert result.returncode == 0, result.stderr
    if isa.can_emulate("avx2", flags):
        assert result.stdout.splitlines()[0].startswith("computing as avx2 on ")
        assert "cap AVX2" in result.stdout
        failing = run_script("util/cpu_isa.py", "--as", "avx2", "--", "python3", "-c", "raise SystemExit(3)")
        assert failing.returncode == 3  # the command's exit code
    else:
        assert "not run as avx2" in result.stdout and "cap" not in result.stdout
        refused = run_script("util/cpu_isa.py", "--as", "avx2", "--", *probe)
        assert refused.returncode == 2 and "cannot emulate" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("args, message", [
    (["--as", "avx2"], "--as needs a command after --"),
    (["--", "ls"], "a command was given without --as"),
    (["--as", "sse2", "--", "ls"], "invalid choice"),
])
def test_the_command_refuses_bad_arguments(args, message):
    result = run_script("util/cpu_isa.py", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("cpuinfo, runs", [(XEON, True), (EPYC_AVX2, False)])
def test_or_skip_runs_the_command_only_where_there_is_more_to_switch_off(monkeypatch, capsys, cpuinfo, runs):
    """make test's second pass: run on an AVX-512 CPU, a message and exit 0 on an AVX2-only one."""
    from util import cpu_isa
    monkeypatch.setattr(isa, "read_cpuinfo", lambda path="/proc/cpuinfo": cpuinfo)
    called = []
    monkeypatch.setattr(cpu_isa.subprocess, "call", lambda command, env: called.append((command, env)) or 5)
    code = cpu_isa.main(["--as", "avx2", "--or_skip", "--", "python3", "-V"])
    out = capsys.readouterr().out
    if runs:
        assert code == 5 and called[0][0] == ["python3", "-V"] and called[0][1]["DNNL_MAX_CPU_ISA"] == "AVX2"
        assert out.startswith("computing as avx2 on Intel(R) Xeon(R) Processor (avx512): ")
    else:
        assert code == 0 and not called
        assert out == "not run as avx2: this CPU (AMD EPYC 7B13) has avx2, nothing more to switch off\n"
