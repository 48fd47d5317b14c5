"""The precompiled header for Jittor's CPU kernels (util/core/kernel_pch.py).

The test process runs with it (conftest.py's ``device.setup("off")`` enabled it), so every Jittor test
compiles its kernels through it; these tests check that g++ really uses it with Jittor's own kernel flags
(otherwise it would silently cost time instead of saving it), that a kernel compiled with it computes what
it computes without, and that a failed build or ``SKIP_KERNEL_PCH=1`` leaves Jittor's flags as they were.
"""

import os
import subprocess
import types

import numpy as np
import pytest

from conftest import run_script
from util.core import kernel_pch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_args_drop_link_flags_and_add_debug_info():
    flags = ('-Wall -std=c++14 -fPIC -march=native -lstdc++ -ldl -shared -I"/opt/jittor dir/src" '
             '-L"/cache" -l"jittor_core" -Wl,-rpath,/x -fopenmp -Ofast')
    assert kernel_pch.header_build_args(flags) == [
        "-Wall", "-std=c++14", "-fPIC", "-march=native", "-I/opt/jittor dir/src", "-fopenmp", "-Ofast",
        "-g", "-x", "c++-header"]


def test_key_follows_compiler_and_flags():
    key = kernel_pch.header_key("/usr/bin/g++", "-O2 -I/cache/g++12.2.0")
    assert key == kernel_pch.header_key("/usr/bin/g++", "-O2 -I/cache/g++12.2.0")
    assert len({key, kernel_pch.header_key("/usr/bin/g++", "-O3 -I/cache/g++12.2.0"),
                kernel_pch.header_key("/usr/bin/g++", "-O2 -I/cache/g++13.1.0"),
                kernel_pch.header_key("/usr/bin/clang++", "-O2 -I/cache/g++12.2.0")}) == 4


def test_header_defines_only_what_every_kernel_defines():
    lines = [line for line in kernel_pch.HEADER_TEXT.splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("#include")] == ["#define JIT 1"]


def jittor_flags():
    import jittor as jt
    return jt.flags


def included_header(flags):
    return flags.cc_flags.split(" -include ")[1].strip().strip('"')


def test_the_test_process_compiles_kernels_with_it():
    flags = jittor_flags()
    assert flags.cc_type == "g++"
    assert flags.cc_flags.count(" -include ") == 1
    header = included_header(flags)
    assert header.startswith(os.path.join(flags.cache_path, "kernel_pch"))
    assert os.path.isfile(header + ".gch")


def test_gcc_uses_the_precompiled_header_with_jittors_kernel_flags(tmp_path):
    """Compile a kernel-like source as Jittor's asm tuner does (-S -g, link flags dropped), with g++ told to
    fail where it cannot use the precompiled file; -H marks a precompiled header it used with '!'."""
    flags = jittor_flags()
    header = included_header(flags)
    source = tmp_path / "probe_op.cc"
    source.write_text('#define JIT 1\n#define JIT_cpu 1\n#include "var.h"\n#include "fused_op.h"\n'
                      "int probe() { return sizeof(jittor::Var); }\n")
    args = [a for a in kernel_pch.header_build_args(flags.cc_flags) if a not in ("-x", "c++-header")]
    done = subprocess.run([flags.cc_path, str(source), *args, "-S", "-Winvalid-pch", "-Werror=invalid-pch", "-H",
                           "-o", str(tmp_path / "probe.s")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.splitlines()[0] == f"! {header}.gch", done.stderr[-2000:]


KERNELS = """
import sys
import numpy as np
from util.core import device
device.setup("off")
import jittor as jt
rng = np.random.default_rng(0)
x = jt.array(rng.standard_normal((2, 3, 9, 7)).astype("float32"))
w = jt.array(rng.standard_normal((4, 3, 3, 3)).astype("float32"))
y = jt.nn.conv2d(x, w, padding=1)
z = (jt.tanh(y * 1.3) + jt.exp(-y * y) * jt.sigmoid(y) - (y * y + 1).sqrt()).mean(dims=(2, 3))
gx, gw = jt.grad((z * z).sum(), [x, w])
np.savez(sys.argv[1], z=z.numpy(), gx=gx.numpy(), gw=gw.numpy())
print("with" if " -include " in jt.flags.cc_flags else "without")
"""


def test_kernels_compiled_with_it_compute_the_same_bits(tmp_path):
    """The same kernels compiled without and with it (Jittor recompiles a kernel whose compile command
    changed) give bit-identical results: forward and gradients of a convolution and a fused chain."""
    script = tmp_path / "kernels.py"
    script.write_text(KERNELS)
    results = {}
    for skip in ("1", "0"):
        out = tmp_path / f"skip{skip}.npz"
        done = run_script(str(script), str(out), timeout=600,
                          extra_env={"PYTHONPATH": ROOT, kernel_pch.SKIP_VARIABLE: skip})
        assert done.returncode == 0, done.stderr[-2000:]
        results[done.stdout.split()[-1]] = np.load(out)
    assert set(results) == {"with", "without"}
    for name in ("z", "gx", "gw"):
        assert np.array_equal(results["with"][name], results["without"][name]), name


def fake_jittor(tmp_path, cc_path):
    return types.SimpleNamespace(flags=types.SimpleNamespace(cc_type="g++", cc_path=cc_path, cc_flags="-O2 -fPIC",
                                                 cache_path=str(tmp_path)))


def test_a_failed_build_leaves_the_flags_and_is_not_retried(tmp_path, capsys):
    compiler = tmp_path / "broken-g++"
    compiler.write_text("#!/bin/sh\necho 'internal compiler error' >&2; exit 1\n")
    compiler.chmod(0o755)
    jt = fake_jittor(tmp_path, str(compiler))
    assert kernel_pch.enable(jt) is None
    assert jt.flags.cc_flags == "-O2 -fPIC"
    assert "kernels compile as usual" in capsys.readouterr().err
    [failed] = list(tmp_path.glob("kernel_pch/*/FAILED"))
    assert "internal compiler error" in failed.read_text()
    compiler.write_text("#!/bin/sh\necho called >> " + str(tmp_path / "calls") + "\nexit 1\n")
    assert kernel_pch.enable(jt) is None
    assert not (tmp_path / "calls").exists()


@pytest.mark.parametrize("case", ["skip", "clang", "already"])
def test_left_alone(tmp_path, monkeypatch, case):
    jt = fake_jittor(tmp_path, "/nonexistent/g++")
    if case == "skip":
        monkeypatch.setenv(kernel_pch.SKIP_VARIABLE, "1")
    elif case == "clang":
        jt.flags.cc_type = "clang"
    else:
        jt.flags.cc_flags += ' -include "/x/kernel_pch.h"'
    before = jt.flags.cc_flags
    assert kernel_pch.enable(jt) is None
    assert jt.flags.cc_flags == before
    assert not (tmp_path / "kernel_pch").exists()
