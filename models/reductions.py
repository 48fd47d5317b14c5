"""Per-channel sums of [N, C, H, W] maps, and the normalisation of batch and
instance norm built on them, with its gradient written out.

Jittor's CPU reduction kernels run on one core and sum a map several times
slower than its matrix product does (3.8x for a 2x128x96x128 map,
``python -m util.bench_ops``; docs/performance.md): here a sum over the
pixels is a product with a vector of ones, and the backward passes, which
autograd would build from broadcasts (each one a reduction), use the same
products. The results equal the plain formulas up to float32 round-off.
"""

import jittor as jt


def pixel_sums(x):
    """[N, C] sums over the pixels of each map of ``x`` [N, C, H, W] (float32 for lower precisions)."""
    n, c, h, w = x.shape
    if x.dtype != "float32":
        x = x.float32()
    return jt.matmul(x.reshape(n * c, h * w), jt.ones((h * w, 1), dtype=x.dtype)).reshape(n, c)


def channel_means(x, per_sample):
    """Means over the pixels [N, C] (``per_sample``) or over the batch and the pixels [1, C], float32."""
    n, _, h, w = x.shape
    sums = pixel_sums(x)
    if per_sample:
        return sums / (h * w)
    return sums.sum(0, keepdims=True) / (n * h * w)


def _expand(stats):
    """[N or 1, C] statistics as [N or 1, C, 1, 1], to broadcast over maps."""
    return stats.reshape(stats.shape[0], stats.shape[1], 1, 1)


def _mean_over_ranks(stats, sync):
    return stats.mpi_all_reduce("mean") if sync else stats


class Normalize(jt.Function):
    """(x - mean) / sqrt(var + eps) over each map (``per_sample``, instance norm) or each channel of the batch
    (batch norm; ``sync``: of the batch over all MPI ranks, equal batches), with the biased variance of the
    deviations from the mean (Jittor's own norms take E[x^2] - E[x]^2, which loses most of its digits when a
    channel's mean is large against its spread: docs/jittor-defects.md). Returns (normalised x, mean, var),
    the statistics [N or 1, C] float32 and without gradient."""

    def execute(self, x, per_sample, eps, sync):
        stats = x if x.dtype == "float32" else x.float32()
        mean = _mean_over_ranks(channel_means(stats, per_sample), sync)
        centred = stats - _expand(mean)
        var = _mean_over_ranks(channel_means(centred * centred, per_sample), sync)
        rstd = 1.0 / jt.sqrt(var + eps)
        y = (centred * _expand(rstd)).astype(x.dtype)
        self.saved = (y, rstd, per_sample, sync)
        return y, mean.stop_grad(), var.stop_grad()

    def grad(self, dy, dmean=None, dvar=None):
        y, rstd, per_sample, sync = self.saved
        self.saved = None
        if dy is None:
            return None
        dy_mean = _mean_over_ranks(channel_means(dy, per_sample), sync)
        dy_y_mean = _mean_over_ranks(channel_means(dy * y, per_sample), sync)
        return ((dy - _expand(dy_mean) - y * _expand(dy_y_mean)) * _expand(rstd)).astype(dy.dtype)


def normalize(x, per_sample, eps, sync=False):
    """``Normalize`` applied to ``x`` [N, C, H, W]: (normalised x, mean [N or 1, C], biased var [N or 1, C])."""
    return Normalize.apply(x, per_sample, eps, sync)
