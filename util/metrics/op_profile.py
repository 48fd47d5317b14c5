"""Where a Jittor computation spends its time: Jittor's operator profiler run
over a few calls, its report grouped into kinds of work (convolutions forward
and backward, matrix products, reductions, fused element-wise kernels, ...)
per call, and the most expensive operators."""

# (kind, substrings of an operator's key that mark it), the first match wins
KINDS = (
    ("convolution, backward to the input", ("conv_backward_x", "convolution(landscape_conv::BACKWARD_DATA")),
    ("convolution, backward to the weights", ("conv_backward_w", "convolution(landscape_conv::BACKWARD_WEIGHTS")),
    ("convolution, forward", ("mkl_conv«", "cudnn_conv«", "cutlass_conv", "convolution(landscape_conv::FORWARD")),
    ("matrix product", ("matmul",)),
    ("reduction (fused)", ("reduce",)),
    ("re-indexing (resize, padding, slicing)", ("reindex", "getitem", "setitem")),
    ("transpose", ("transpose",)),
    ("custom code", ("code«",)),
)
ELEMENTWISE = "element-wise (fused)"


def op_kind(key):
    """The kind of work of one operator key of Jittor's profiler report."""
    for kind, marks in KINDS:
        if any(mark in key for mark in marks):
            return kind
    return ELEMENTWISE


def summarise(report, calls, top=10):
    """Jittor's ``jt.profiler.report()`` (a header row, then one row per operator key; times in ns) of ``calls``
    calls as {"per_call_seconds", "kinds": [(kind, seconds per call, share)], "top": [(seconds per call, count
    per call, key)]}, largest first."""
    header, rows = report[0], report[1:]
    name, total, count = 0, header.index("TotalTime"), header.index("Count")
    seconds = {}
    for row in rows:
        kind = op_kind(row[name])
        seconds[kind] = seconds.get(kind, 0.0) + float(row[total]) / 1e9 / calls
    overall = sum(seconds.values())
    kinds = sorted(((kind, s, s / overall if overall else 0.0) for kind, s in seconds.items()),
                   key=lambda item: -item[1])
    largest = sorted(rows, key=lambda row: -float(row[total]))[:top]
    return {"per_call_seconds": overall, "kinds": kinds,
            "top": [(float(row[total]) / 1e9 / calls, float(row[count]) / calls, row[name]) for row in largest]}


def profile(run, calls, top=10):
    """Run ``run()`` ``calls`` times under Jittor's profiler (each operator timed as it executes; ``run`` ends
    with a sync) and ``summarise`` the report."""
    import jittor as jt
    jt.profiler.start(0, 0)
    try:
        for _ in range(calls):
            run()
    finally:
        jt.profiler.stop()
    return summarise(jt.profiler.report(), calls, top)
