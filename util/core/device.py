"""Choosing CPU or GPU, before Jittor is imported.

Jittor probes for CUDA inside ``import jittor``: on a machine that has
``nvcc`` but no GPU runtime the import crashes. ``setup(mode)`` therefore
decides first (by asking the CUDA driver library directly through ctypes,
which needs no toolkit) and, when no GPU will be used, hides ``nvcc`` from
Jittor through the ``nvcc_path`` environment variable. Every entry point
calls ``setup`` once, before anything imports Jittor.

When there is a GPU, ``setup`` also asks ``util.core.cuda_check`` whether
Jittor 1.3.11 can build for it: with ``--gpu on`` a problem is an error, with
``--gpu auto`` a warning, and the CPU is used.

On the CPU, ``setup`` compiles Jittor's kernels one at a time
(``use_parallel_op_compiler`` 0, unless that environment variable is set):
Jittor's parallel kernel compiler races when two of its threads tune kernels
that read the same variable (the matmul and convolution tuners rewire the
graph from the compiler threads) and now and then crashes a process whose
kernel cache is cold (docs/jittor-defects.md). The cost is paid once per
kernel cache. On a GPU Jittor's parallel compiler stays (nvcc one kernel at a
time would take many minutes).

After the import, ``setup`` gives the crash signals (SIGSEGV, SIGBUS, SIGFPE,
SIGILL) their default action back, with Python's fault handler printing the
threads' stacks first: Jittor's own handler calls ``exit()`` in the crashing
thread, and when that thread is one of Jittor's parallel kernel-compiler
threads, exit's clean-up waits for that very thread and the process hangs
forever instead of ending.
"""

import faulthandler
import os
import signal
import sys
import textwrap

from util.core import cuda_check, kernel_pch
from util.core.errors import CudaSetupError, OptionError

GPU_MODES = ("auto", "on", "off")
# How CPU convolutions run (models.convolution): oneDNN with Winograd where it pays, oneDNN direct
# only, or Jittor's own oneDNN call.
CPU_CONV_MODES = ("winograd", "direct", "jittor")
DEFAULT_CPU_CONV = "winograd"


def resolve_gpu_mode(mode, device_count):
    """Pure decision: return True to use the GPU for ``mode`` given ``device_count``."""
    if mode not in GPU_MODES:
        raise OptionError(f"--gpu must be one of {', '.join(GPU_MODES)}, got {mode!r}.")
    if mode == "off":
        return False
    if mode == "on" and device_count == 0:
        raise OptionError("--gpu on was given but no usable CUDA GPU was found (the CUDA driver "
                          "library libcuda.so.1 is missing or reports no device). Use --gpu auto or off.")
    return device_count > 0


# -- the choice for this process ------------------------------------------------------------------------------

_configured = None
_problem = None


CRASH_SIGNALS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL")
# Jittor's flag (and environment variable) for the number of kernel-compiler threads; 0 compiles in the
# thread that runs the graph.
PARALLEL_COMPILE_VARIABLE = "use_parallel_op_compiler"


def kernel_compile_threads(use_cuda, environ):
    """The value for Jittor's ``use_parallel_op_compiler`` (see the module docstring), or None to keep
    Jittor's: one thread on the CPU unless ``environ`` sets it."""
    if use_cuda or PARALLEL_COMPILE_VARIABLE in environ:
        return None
    return 0


def crash_instead_of_hanging():
    """Replace Jittor's handlers of the crash signals by their default action (the process ends), after Python's
    fault handler has printed every thread's stack (see the module docstring). Main thread only."""
    for name in CRASH_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    faulthandler.enable(all_threads=True)


def _start_jittor(use_cuda, quiet_logs):
    """Set Jittor's environment for the choice, import it and switch CUDA on or off."""
    if "jittor" in sys.modules and not use_cuda:
        raise RuntimeError("util.core.device.setup() must run before jittor is imported")
    if quiet_logs:
        os.environ.setdefault("log_silent", "1")
    if not use_cuda:
        os.environ["nvcc_path"] = ""
    else:
        os.environ.setdefault("use_cutlass", "0")
    import jittor as jt  # noqa: E402  (imported only after the decision above)
    crash_instead_of_hanging()
    jt.flags.use_cuda = 1 if use_cuda else 0
    threads = kernel_compile_threads(use_cuda, os.environ)
    if threads is not None:
        jt.flags.use_parallel_op_compiler = threads
    if not use_cuda:
        kernel_pch.enable(jt)


def setup(mode="auto", quiet_logs=True):
    """Decide CPU/GPU for this process, import Jittor accordingly and return whether CUDA is used.

    Must run before the first ``import jittor``; calling it again with the same
    answer is harmless. A GPU that Jittor cannot use (``cuda_problem``) is an
    error with ``--gpu on``; with ``--gpu auto`` a warning, and the CPU is used.
    """
    global _configured, _problem
    use_cuda = resolve_gpu_mode(mode, cuda_check.count_cuda_devices() if mode != "off" else 0)
    if use_cuda:
        if _configured is None:
            _problem = cuda_check.jittor_cuda_problem()
            if _problem and mode == "auto":
                text = f"--gpu auto: {_problem} Using the CPU instead (--gpu off skips this check)."
                print("warning: " + textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False),
                      file=sys.stderr)
        if _problem:
            if mode == "on":
                raise CudaSetupError(f"--gpu on: {_problem} (--gpu auto falls back to the CPU, --gpu off uses it.)")
            use_cuda = False
    if _configured is not None:
        if _configured != use_cuda:
            raise OptionError("the device was already chosen for this process; cannot switch CPU/GPU.")
        return use_cuda
    _start_jittor(use_cuda, quiet_logs)
    _configured = use_cuda
    return use_cuda
