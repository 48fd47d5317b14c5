"""A precompiled header for Jittor's CPU kernels, which makes compiling a new kernel about 3x faster.

Jittor compiles each new operator kernel on first use: g++ turns the generated
source into assembly (with ``-g``, for Jittor's assembly tuner), then into a
shared library. Most of the compile time goes to parsing the same Jittor
headers again for every kernel (about 1.4 s of a kernel's 1.7 s on a 2-core
machine). ``enable()`` builds, once per Jittor cache, a g++ precompiled header
of those headers with exactly the flags Jittor compiles kernels with, and adds
``-include`` of it to Jittor's kernel flags: g++ then loads the parsed headers
(about 0.5 s) and generates the same code.

Safe by construction: the header defines only ``JIT`` (which every kernel
source defines first) and includes headers with include guards, so a kernel
compiled with it sees what it would have seen without it. Where g++ cannot use
the precompiled file (other flags), it reads the plain header instead: same
code, no gain. Only for g++ on the CPU; ``SKIP_KERNEL_PCH=1`` switches it off.
"""

import hashlib
import os
import shlex
import subprocess
import sys

from util.core.files import atomic_write, temp_name

SKIP_VARIABLE = "SKIP_KERNEL_PCH"

# The headers Jittor's generated CPU kernel sources include most (counted over the kernels of training, FID
# and the test suite); each has an include guard.
HEADER_TEXT = """\
#define JIT 1
#include <cmath>
#include <algorithm>
#include <assert.h>
#include <limits>
#include "var.h"
#include "ops/op_register.h"
#include "ops/broadcast_to_op.h"
#include "ops/binary_op.h"
#include "ops/array_op.h"
#include "ops/unary_op.h"
#include "ops/ternary_op.h"
#include "ops/reduce_op.h"
#include "ops/reindex_op.h"
#include "ops/reindex_reduce_op.h"
#include "ops/index_op.h"
#include "fused_op.h"
#include "misc/cpu_math.h"
#include "executor.h"
"""

# Flags of a kernel's link step, which the compile-to-assembly step drops (as Jittor's asm_tuner does).
_LINK_ONLY = ("-l", "-L", "-Wl,", "-shared")


def header_build_args(cc_flags):
    """The g++ arguments (after the compiler) that build the precompiled header for kernels compiled with
    ``cc_flags``: the kernels' compile flags, link flags dropped, ``-g`` as Jittor's asm tuner adds it."""
    args = [a for a in shlex.split(cc_flags) if not a.startswith(_LINK_ONLY)]
    return [*args, "-g", "-x", "c++-header"]


def header_key(cc_path, cc_flags):
    """A short hash naming the precompiled header for this compiler, its flags and the header text (the
    compiler's version is in Jittor's cache path, which the flags name)."""
    text = "\n".join([cc_path, cc_flags, HEADER_TEXT])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def include_flag(header_path):
    return f' -include "{header_path}"'


def _build(cc_path, cc_flags, header):
    """Write ``header`` and compile it to ``header.gch`` (atomically); return an error text or None."""
    atomic_write(header, HEADER_TEXT)
    gch = header + ".gch"
    tmp = temp_name(gch)
    cmd = [cc_path, header, *header_build_args(cc_flags), "-o", tmp]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.exists(tmp):
        if os.path.exists(tmp):
            os.remove(tmp)
        return (done.stderr or done.stdout).strip()[-2000:] or f"{cc_path} exited with {done.returncode}"
    os.replace(tmp, gch)
    return None


def enable(jt):
    """Build the precompiled header for this Jittor (once per cache) and make Jittor's CPU kernels use it.

    Returns the header's path, or None where it is not used (not g++, switched off, or the build failed:
    Jittor then compiles as it always does).
    """
    if os.environ.get(SKIP_VARIABLE, "0") not in ("", "0"):
        return None
    flags = jt.flags
    if flags.cc_type != "g++" or "-include" in flags.cc_flags:
        return None
    cc_flags = flags.cc_flags
    folder = os.path.join(flags.cache_path, "kernel_pch", header_key(flags.cc_path, cc_flags))
    header = os.path.join(folder, "kernel_pch.h")
    failed = os.path.join(folder, "FAILED")
    if os.path.exists(failed):
        return None
    if not os.path.exists(header + ".gch"):
        print("Precompiling Jittor's kernel headers (once per Jittor cache)...", file=sys.stderr, flush=True)
        try:
            error = _build(flags.cc_path, cc_flags, header)
        except OSError as exc:
            error = str(exc)
        if error:
            atomic_write(failed, error + "\n")
            print(f"  not used: the compiler failed ({failed}); kernels compile as usual.", file=sys.stderr)
            return None
    flags.cc_flags = cc_flags + include_flag(header)
    return header
