"""Choosing CPU or GPU, before Jittor is imported.

Jittor probes for CUDA inside ``import jittor``: on a machine that has
``nvcc`` but no GPU runtime the import crashes. ``setup(mode)`` therefore
decides first (by asking the CUDA driver library directly through ctypes,
which needs no toolkit) and, when no GPU will be used, hides ``nvcc`` from
Jittor through the ``nvcc_path`` environment variable. Every entry point
calls ``setup`` once, before anything imports Jittor.
"""

import ctypes
import os
import sys

from util.core.errors import OptionError

GPU_MODES = ("auto", "on", "off")


def cuda_driver():
    """The CUDA driver library, initialised (cuInit), or None when there is no usable driver."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            return lib if lib.cuInit(0) == 0 else None
        except AttributeError:
            return None
    return None


def count_cuda_devices():
    """Number of CUDA devices the driver reports (0 when there is no usable driver)."""
    lib = cuda_driver()
    count = ctypes.c_int(0)
    if lib is None or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


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


_configured = None


def setup(mode="auto", quiet_logs=True):
    """Decide CPU/GPU for this process, import Jittor accordingly and return whether CUDA is used.

    Must run before the first ``import jittor``; calling it again with the same
    answer is harmless.
    """
    global _configured
    use_cuda = resolve_gpu_mode(mode, count_cuda_devices() if mode != "off" else 0)
    if _configured is not None:
        if _configured != use_cuda:
            raise OptionError("the device was already chosen for this process; cannot switch CPU/GPU.")
        return use_cuda
    if "jittor" in sys.modules and not use_cuda:
        raise RuntimeError("util.core.device.setup() must run before jittor is imported")
    if quiet_logs:
        os.environ.setdefault("log_silent", "1")
    if not use_cuda:
        os.environ["nvcc_path"] = ""
    else:
        os.environ.setdefault("use_cutlass", "0")
    import jittor as jt  # noqa: E402  (imported only after the decision above)
    jt.flags.use_cuda = 1 if use_cuda else 0
    _configured = use_cuda
    return use_cuda
