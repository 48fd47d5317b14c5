"""Micro-benchmark of the Jittor operations the training step's speed rests on, each against an alternative.

    python -m util.bench_ops [--gpu auto|on|off] [--repeats 5] [--json OUT.json]

* per-channel sum of a 2x128x96x128 map over the batch and the pixels:
  Jittor's reduction (``x.sum(dims=[0, 2, 3])``) against the matrix product
  with a vector of ones that models/reductions.py uses;
* batch and instance norm, forward and backward, at 2x64x96x128,
  2x128x48x64 and 2x512x12x16: autograd of the plain formula (mean, variance
  of the deviations, (x - mean) / sqrt(var + eps)) against
  models.reductions.normalize (matrix-product sums, gradient written out);
* on the CPU, convolutions forward and backward (gradients to the input,
  the weights and the bias) at shapes of the SPADE comparison's networks:
  Jittor's oneDNN call (``--cpu_conv jittor``) against models.convolution's
  with the direct algorithm (``--cpu_conv direct``) and with Winograd where
  it applies (``--cpu_conv winograd``, the default).

Each case runs both variants alternately: per round, 2 untimed calls then
--calls timed ones of each, --repeats rounds; the median milliseconds per call
and the ratio are printed. Every call ends with a sync of its outputs.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np

from options.base_options import HelpFormatter, positive_int
from util.core import device, isa
from util.core.cli import run_main

NORM_SHAPES = ((2, 64, 96, 128), (2, 128, 48, 64), (2, 512, 12, 16))
# (input shape, output channels, kernel, stride, padding): SPADE blocks' convolutions at 128x96 and below
# (the label map's 29 channels into the shared layer), a PatchGAN layer, small maps where Winograd stays off
CONV_CASES = (((2, 128, 96, 128), 64, 3, 1, 1), ((2, 29, 96, 128), 128, 3, 1, 1), ((2, 128, 48, 64), 128, 3, 1, 1),
              ((2, 64, 48, 64), 128, 4, 2, 2), ((2, 256, 24, 32), 256, 3, 1, 1), ((2, 512, 12, 16), 512, 3, 1, 1))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m util.bench_ops", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--gpu", choices=device.GPU_MODES, default="auto", help="auto, on or off (CPU)")
    p.add_argument("--repeats", type=positive_int, default=5, help="alternating rounds per case (median reported)")
    p.add_argument("--calls", type=positive_int, default=5, help="timed calls per variant and round")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON%(default).0s")
    return p


def time_call(jt, run, calls):
    """Milliseconds per call of ``run`` (returns the Vars to sync), after 2 untimed calls."""
    for _ in range(2):
        jt.sync(run())
    start = time.perf_counter()
    for _ in range(calls):
        jt.sync(run())
    return (time.perf_counter() - start) / calls * 1000


def compare(jt, name, variants, repeats, calls):
    """{case, variants: {label: median ms}, ratio: first / second} of two variants timed alternately."""
    times = {label: [] for label, _ in variants}
    for _ in range(repeats):
        for label, run in variants:
            times[label].append(time_call(jt, run, calls))
    medians = {label: statistics.median(values) for label, values in times.items()}
    (first, a), (second, b) = medians.items()
    print(f"  {name:<46} {first} {a:8.2f} ms   {second} {b:8.2f} ms   ratio {a / b:5.2f}", flush=True)
    return {"case": name, "ms": medians, "all_ms": times, "ratio": a / b}


def plain_normalize(jt, x, per_sample, eps):
    dims = [2, 3] if per_sample else [0, 2, 3]
    mean = x.mean(dims=dims, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(dims=dims, keepdims=True)
    return centred / jt.sqrt(var + eps)


def main(argv=None):
    args = build_parser().parse_args(argv)
    use_cuda = device.setup(args.gpu)
    import jittor as jt

    from models.reductions import normalize, pixel_sums
    rng = np.random.RandomState(0)

    def array(*shape):
        return jt.array(rng.standard_normal(shape).astype(np.float32))

    results = []
    print(f"Jittor operations on the {'GPU' if use_cuda else isa.process_description()} ({os.cpu_count()} logical "
          f"cores), median "
          f"of {args.repeats} rounds of {args.calls} calls", flush=True)
    x = array(2, 128, 96, 128)
    results.append(compare(jt, "channel sums 2x128x96x128", [
        ("reduce", lambda: [x.sum(dims=[0, 2, 3])]),
        ("matmul", lambda: [pixel_sums(x).sum(0)])], args.repeats, args.calls))
    for shape in NORM_SHAPES:
        xs, w = array(*shape), array(*shape)
        for per_sample, kind in ((False, "batch"), (True, "instance")):
            def plain(xs=xs, w=w, per_sample=per_sample):
                y = plain_normalize(jt, xs, per_sample, 1e-5)
                return [y, jt.grad((y * w).sum(), xs)]

            def written(xs=xs, w=w, per_sample=per_sample):
                y = normalize(xs, per_sample, 1e-5)[0]
                return [y, jt.grad((y * w).sum(), xs)]
            results.append(compare(jt, f"{kind} norm fwd+bwd {'x'.join(map(str, shape))}",
                                   [("plain", plain), ("sums ", written)], args.repeats, args.calls))
    if not use_cuda:
        from models import convolution
        for shape, out_channels, k, stride, padding in CONV_CASES:
            xs, weight, bias = array(*shape), array(out_channels, shape[1], k, k), array(out_channels)

            def conv(mode, xs=xs, weight=weight, bias=bias, stride=stride, padding=padding):
                def run():
                    convolution.set_cpu_conv(mode)
                    y = convolution.conv2d(xs, weight, bias, stride, padding)
                    return [y, *jt.grad(y.sum(), [xs, weight, bias])]
                return run
            name = f"conv {k}x{k}/{stride} {'x'.join(map(str, shape))}->{out_channels} fwd+bwd"
            for mode in ("direct", "winograd"):
                results.append(compare(jt, name, [("jittor", conv("jittor")), (f"{mode:<8}", conv(mode))],
                                       args.repeats, args.calls))
    if args.json:
        from util.core.checkpoint import write_text
        write_text(args.json, json.dumps({"gpu": use_cuda, "cases": results}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
