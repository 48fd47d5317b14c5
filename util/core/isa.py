"""The CPU's instruction set: what this machine has, what a process computes with, and how to compute as a CPU
with less.

Results of the same float32 program differ between CPU kinds: oneDNN picks its kernels by instruction set
(AVX-512 or AVX2, which changes the order of the sums), Jittor compiles its kernels with ``-march=native``,
and NumPy's OpenBLAS, NumPy's own loops and OpenCV dispatch by CPU too. ``emulation_env(isa)`` is the
environment in which a process on an AVX-512 machine computes as an AVX2-only machine would: oneDNN capped at
AVX2, Jittor's kernels compiled for ``x86-64-v3`` in a Jittor cache of their own, OpenBLAS's Haswell kernels,
NumPy's and OpenCV's AVX-512 loops off. ``describe()`` says which instruction set the process computes with,
for the headers of training, generation and the benchmarks. Pure Python; never imports Jittor.
"""

import ctypes
import os
import shlex

# The variable an emulated process carries, so that it can name what it emulates.
EMULATION_VARIABLE = "LANDSCAPE_ISA"

# isa -> what emulating it changes. The first entry of ISA_NAMES that a CPU has all flags of is its own.
ISA_NAMES = ("avx512", "avx2")
_REQUIRED_FLAGS = {"avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"), "avx2": ("avx2", "fma")}
EMULATIONS = {
    "avx2": {
        "onednn": "AVX2",            # DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA
        "march": "x86-64-v3",        # appended to Jittor's kernel flags after its -march=native (the last wins)
        "openblas": "Haswell",       # OPENBLAS_CORETYPE
        "numpy_off": "AVX512",       # NumPy's dispatched loops whose feature name starts with this
        "opencv_off": "AVX512-SKX,AVX512-KNL,AVX512-KNM,AVX512-CNL,AVX512-CLX,AVX512-ICL",
    },
}

# oneDNN 2.2's dnnl_cpu_isa_t values (oneapi/dnnl/dnnl_types.h) -> names
_ONEDNN_ISAS = {0x0: "all", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni", 0xF: "avx512_mic",
                0x1F: "avx512_mic_4ops", 0x27: "avx512_core", 0x67: "avx512_core_vnni",
                0xE7: "avx512_core_bf16", 0x3E7: "avx512_core_amx"}


class IsaError(ValueError):
    """An instruction set this machine cannot emulate."""


def read_cpuinfo(path="/proc/cpuinfo"):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _first_field(cpuinfo, name):
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def cpu_flags(cpuinfo):
    """The set of the first processor's flags in ``cpuinfo`` (the text of /proc/cpuinfo)."""
    return set(_first_field(cpuinfo, "flags").split())


def cpu_model(cpuinfo):
    return _first_field(cpuinfo, "model name") or "unknown CPU"


def native_isa(flags):
    """The widest of ISA_NAMES that a CPU with ``flags`` has all of, or 'other'."""
    for isa in ISA_NAMES:
        if all(flag in flags for flag in _REQUIRED_FLAGS[isa]):
            return isa
    return "other"


def can_emulate(isa, flags):
    """Whether a CPU with ``flags`` can compute as ``isa``: ``isa`` is one of EMULATIONS and the CPU has more."""
    native = native_isa(flags)
    return isa in EMULATIONS and native in ISA_NAMES and ISA_NAMES.index(native) < ISA_NAMES.index(isa)


def emulation_env(isa, flags, numpy_features, environ):
    """The variables to add to ``environ`` so that a process computes as a CPU with only ``isa`` would, on a
    CPU with ``flags`` whose NumPy reports ``numpy_features`` ({name: available}). Jittor's kernels go to a
    cache of their own (``cache_name``): Jittor would otherwise recompile every kernel at each switch."""
    if not can_emulate(isa, flags):
        raise IsaError(f"cannot emulate {isa!r} on a CPU with {native_isa(flags)}: emulation needs a CPU with "
                       f"more than the target ({', '.join(EMULATIONS)} on an AVX-512 CPU)")
    e = EMULATIONS[isa]
    numpy_off = sorted(k for k, on in numpy_features.items() if on and k.startswith(e["numpy_off"]))
    cache, cc_flags = environ.get("cache_name", ""), environ.get("cc_flags", "")
    if environ.get(EMULATION_VARIABLE) != isa:  # (in a process that emulates it already, they are set)
        cache = f"{cache}-isa-{isa}" if cache else f"isa-{isa}"
        cc_flags = f"{cc_flags} -march={e['march']}".strip()
    return {
        EMULATION_VARIABLE: isa,
        "DNNL_MAX_CPU_ISA": e["onednn"],
        "ONEDNN_MAX_CPU_ISA": e["onednn"],
        "cc_flags": cc_flags,
        "cache_name": cache,
        "OPENBLAS_CORETYPE": e["openblas"],
        "NPY_DISABLE_CPU_FEATURES": " ".join(numpy_off),
        "OPENCV_CPU_DISABLE": e["opencv_off"],
    }


def kernel_march(cc_flags):
    """The -march that Jittor's kernels are compiled with (the last one of ``cc_flags``), or ''."""
    marches = [a[len("-march="):] for a in shlex.split(cc_flags or "") if a.startswith("-march=")]
    return marches[-1] if marches else ""


def onednn_isa():
    """The instruction set oneDNN runs with in this process (its own answer), or '' when it is not loaded."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libdnnl.so" in line or "libmkldnn.so" in line}
    except OSError:
        return ""
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            return _ONEDNN_ISAS.get(int(lib.dnnl_get_effective_cpu_isa()), "unknown")
        except (OSError, AttributeError):
            continue
    return ""


def describe(cpuinfo, environ, cc_flags=None, onednn=None):
    """One line naming the instruction set a process computes with: the CPU, what it has, what is emulated,
    oneDNN's ISA and the -march of Jittor's kernels (where known)."""
    flags = cpu_flags(cpuinfo)
    parts = [f"CPU {cpu_model(cpuinfo)} ({native_isa(flags)})"]
    emulated = environ.get(EMULATION_VARIABLE)
    if emulated:
        parts.append(f"computing as {emulated} (emulated)")
    if onednn:
        parts.append(f"oneDNN {onednn}")
    march = kernel_march(cc_flags)
    if march:
        parts.append(f"Jittor kernels -march={march}")
    return ", ".join(parts)


def process_description():
    """``describe`` for this process; Jittor's flags only when Jittor is already imported."""
    import sys
    jt = sys.modules.get("jittor")
    cc_flags = jt.flags.cc_flags if jt is not None else None
    return describe(read_cpuinfo(), os.environ, cc_flags, onednn_isa() if jt is not None else None)
