"""Normalisation layers: spectral normalisation (real power iteration), the
parameter-free norms, the SPADE layer, and the factory that turns the
``norm_D`` / ``norm_E`` option strings into layers."""

import math

import jittor as jt
from jittor import nn

from models import convolution
from models.layout import D_DOWNSAMPLINGS, NORM_G_PATTERN, NORM_LAYER_PATTERN
from models.reductions import normalize


def _l2_normalize(x, eps):
    return x / (jt.sqrt((x * x).sum()) + eps)


def power_iteration(weight_mat, u, v, n_iterations, eps=1e-12):
    """Refine the singular vectors (u, v) of ``weight_mat`` [out, in] without gradient; returns (u, v)."""
    w = weight_mat.detach()
    for _ in range(n_iterations):
        v = _l2_normalize(jt.matmul(u.reshape(1, -1), w).reshape(-1), eps)  # W^T u without transposing W
        u = _l2_normalize(jt.matmul(w, v.reshape(-1, 1)).reshape(-1), eps)
    return u.detach(), v.detach()


class SpectralNormed(nn.Module):
    """Base of layers whose weight is divided by its largest singular value.

    Stores ``weight_orig`` (trained), ``weight_u`` [out] and ``weight_v`` [in*k*k]
    (power-iteration vectors kept between steps, as in PyTorch). In training
    mode each forward runs ``n_power_iterations`` steps and stores the new
    vectors; in eval mode the stored vectors are used as they are, so the
    weight in use is exactly the one the checkpoint describes.
    """

    n_power_iterations = 1
    eps = 1e-12

    def _init_spectral(self, weight):
        out_features = weight.shape[0]
        fan = int(weight.numel() // out_features)
        self.weight_orig = weight
        self.weight_u = _l2_normalize(jt.randn(out_features), self.eps).stop_grad()
        self.weight_v = _l2_normalize(jt.randn(fan), self.eps).stop_grad()

    def normalized_weight(self):
        w_mat = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        u, v = self.weight_u, self.weight_v
        if self.is_training():
            u, v = power_iteration(w_mat, u, v, self.n_power_iterations, self.eps)
            self.weight_u.update(u)
            self.weight_v.update(v)
        sigma = (u * jt.matmul(w_mat, v.reshape(-1, 1)).reshape(-1)).sum()
        return self.weight_orig / sigma


class SNConv2d(SpectralNormed):
    """A 2-D convolution with spectral normalisation (parameters weight_orig/weight_u/weight_v/bias)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        conv = convolution.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.stride, self.padding = stride, padding
        self._init_spectral(conv.weight)
        self.bias = conv.bias if bias else None

    def execute(self, x):
        return convolution.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)


class SNLinear(SpectralNormed):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        lin = nn.Linear(in_features, out_features, bias=bias)
        self._init_spectral(lin.weight)
        self.bias = lin.bias if bias else None

    def execute(self, x):
        y = nn.matmul_transpose(x, self.normalized_weight())
        return y + self.bias if self.bias is not None else y


def conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, spectral=False):
    """A plain or spectral-normalised convolution."""
    cls = SNConv2d if spectral else convolution.Conv2d
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)


class BatchNorm2d(nn.Module):
    """Batch normalisation of [N, C, H, W] maps (without affine parameters unless ``affine``).

    Training mode normalises with the batch's statistics (``sync``: of the
    whole batch over all MPI ranks) and keeps running statistics as PyTorch
    does (momentum 0.1, unbiased running variance); eval mode uses those.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, sync=False):
        super().__init__()
        self.num_features, self.eps, self.momentum, self.sync = num_features, eps, momentum, sync
        self.weight = jt.ones(num_features) if affine else None
        self.bias = jt.zeros(num_features) if affine else None
        self.running_mean = jt.zeros(num_features).stop_grad()
        self.running_var = jt.ones(num_features).stop_grad()

    def execute(self, x):
        if self.is_training():
            sync = self.sync and jt.in_mpi
            out, mean, var = normalize(x, False, self.eps, sync)
            count = x.shape[0] * x.shape[2] * x.shape[3] * (jt.world_size if sync else 1)
            unbiased = var.reshape(-1) * (count / max(count - 1, 1))
            self.running_mean.update((self.running_mean * (1 - self.momentum) + mean.reshape(-1) * self.momentum)
                                     .stop_grad())
            self.running_var.update((self.running_var * (1 - self.momentum) + unbiased * self.momentum).stop_grad())
        else:
            mean = self.running_mean.reshape(1, -1, 1, 1)
            var = self.running_var.reshape(1, -1, 1, 1)
            out = (x - mean.astype(x.dtype)) / jt.sqrt(var + self.eps).astype(x.dtype)
        if self.weight is not None:
            out = out * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        return out


class InstanceNorm2d(nn.Module):
    """Instance normalisation of [N, C, H, W] maps without affine parameters (each map to mean 0, variance 1)."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps

    def execute(self, x):
        return normalize(x, True, self.eps)[0]


def param_free_norm(kind, channels):
    """Normalisation without learned affine parameters: batch, syncbatch or instance."""
    if kind in ("batch", "syncbatch"):
        return BatchNorm2d(channels, sync=(kind == "syncbatch"))
    if kind == "instance":
        return InstanceNorm2d(channels)
    raise ValueError(f"unknown parameter-free norm {kind!r}")


def parse_norm_layer(norm_type):
    """'spectralinstance' -> (True, 'instance')."""
    m = NORM_LAYER_PATTERN.match(norm_type)
    if not m:
        raise ValueError(f"bad norm type {norm_type!r}")
    return bool(m.group(1)), m.group(2)


def parse_norm_G(norm_G):
    """'spectralspadesyncbatch3x3' -> (True, 'syncbatch', 3)."""
    m = NORM_G_PATTERN.match(norm_G)
    if not m:
        raise ValueError(f"bad norm_G {norm_G!r}")
    return bool(m.group(1)), m.group(2), int(m.group(3))


def normed_conv(norm_type, in_channels, out_channels, kernel_size, stride=1, padding=0):
    """A convolution followed by the norm named by ``norm_type`` (``[spectral]{instance,...,none}``).

    With a norm after it the convolution has no bias (the norm removes it).
    Returns ``Sequential(conv, norm)`` so parameters are named ``0.weight_orig`` etc.
    """
    spectral, kind = parse_norm_layer(norm_type)
    conv = conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=(kind == "none"), spectral=spectral)
    if kind == "none":
        return nn.Sequential(conv)
    return nn.Sequential(conv, param_free_norm(kind, out_channels))


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: param-free norm, then a per-pixel scale
    and shift predicted from the label map (resized with nearest neighbour).

    With ``seg_noise`` the input first receives Gaussian noise (one map per
    sample, shared by the channels) scaled per channel and per class: a 1x1
    convolution ``seg_noise_var`` of the one-hot label map, without bias.
    It starts at zero, so adding it to a trained model changes nothing until
    it is trained.
    """

    def __init__(self, norm_kind, kernel_size, norm_nc, label_nc, nhidden=128, seg_noise=False):
        super().__init__()
        pad = kernel_size // 2
        self.param_free_norm = param_free_norm(norm_kind, norm_nc)
        self.mlp_shared = nn.Sequential(convolution.Conv2d(label_nc, nhidden, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = convolution.Conv2d(nhidden, norm_nc, kernel_size, padding=pad)
        self.mlp_beta = convolution.Conv2d(nhidden, norm_nc, kernel_size, padding=pad)
        self.seg_noise_var = None
        if seg_noise:
            self.seg_noise_var = convolution.Conv2d(label_nc, norm_nc, 1, bias=False)
            self.seg_noise_var.weight.assign(jt.zeros(self.seg_noise_var.weight.shape))

    def execute(self, x, segmap):
        segmap = resize_label(segmap, x.shape[2:])
        if self.seg_noise_var is not None:
            noise = jt.randn((x.shape[0], 1, x.shape[2], x.shape[3]), dtype=x.dtype)
            x = x + noise * self.seg_noise_var(segmap)
        normalized = self.param_free_norm(x)
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


def resize_label(segmap, size):
    """Resize a one-hot label map with nearest neighbour (never blends classes); one already of ``size`` is
    returned as it is."""
    size = tuple(int(s) for s in size)
    if tuple(int(s) for s in segmap.shape[2:]) == size:
        return segmap
    return nn.interpolate(segmap, size=size, mode="nearest")


def downsample_image(image, factor):
    """Box-filter an image batch by an integer ``factor`` (exact average of factor x factor blocks).

    For ``factor`` 2 this is also bilinear halving with align_corners=False (every output pixel sits halfway
    between two rows and two columns of the input)."""
    if factor == 1:
        return image
    n, c, h, w = image.shape
    return image.reshape(n, c, h // factor, factor, w // factor, factor).mean(dims=(3, 5))


def _window_sum(x, kernel_size, stride, out_h, out_w):
    """Sum over kernel_size x kernel_size windows of an (already padded) map, by strided slices."""
    total = 0
    for di in range(kernel_size):
        for dj in range(kernel_size):
            total = total + x[:, :, di:di + stride * (out_h - 1) + 1:stride, dj:dj + stride * (out_w - 1) + 1:stride]
    return total


def avg_pool_exclude_pad(x, kernel_size=3, stride=2, padding=1):
    """Average pooling that ignores padded positions (count_include_pad=False).

    Jittor's AvgPool2d ignores that flag, so its padded average is divided by
    the padded average of a map of ones: the exact average over in-bounds
    values. Jittor's pool refuses maps no larger than the kernel; those (rare,
    tiny) maps are summed from strided slices of the zero-padded map instead.
    """
    h, w = int(x.shape[2]), int(x.shape[3])
    ones = jt.ones((1, 1, h, w), dtype=x.dtype)
    if min(h, w) > kernel_size:
        pool = nn.AvgPool2d(kernel_size, stride=stride, padding=padding)
        return pool(x) / pool(ones)
    pad = (padding, padding, padding, padding)
    out_h, out_w = output_size(h, kernel_size, stride, padding), output_size(w, kernel_size, stride, padding)
    return (_window_sum(nn.pad(x, pad), kernel_size, stride, out_h, out_w) /
            _window_sum(nn.pad(ones, pad), kernel_size, stride, out_h, out_w))


def avg_pool_zero_padded(x, kernel_size=3, stride=2, padding=1):
    """Average pooling that counts the zero padding in (count_include_pad=True): what Jittor's AvgPool2d
    computes whatever its count_include_pad says, so what APF-GAN's and COESAK's discriminators downsampled
    with (they ask for False); every border pixel is darkened. Small maps as in ``avg_pool_exclude_pad``."""
    h, w = int(x.shape[2]), int(x.shape[3])
    if min(h, w) > kernel_size:
        return nn.AvgPool2d(kernel_size, stride=stride, padding=padding)(x)
    pad = (padding, padding, padding, padding)
    out_h, out_w = output_size(h, kernel_size, stride, padding), output_size(w, kernel_size, stride, padding)
    return _window_sum(nn.pad(x, pad), kernel_size, stride, out_h, out_w) / (kernel_size * kernel_size)


# --d_downsample: how a discriminator halves its input between scales (3x3 average, stride 2, padding 1)
DOWNSAMPLINGS = dict(zip(D_DOWNSAMPLINGS, (avg_pool_exclude_pad, avg_pool_zero_padded)))


def output_size(size, kernel_size, stride, padding):
    return int(math.floor((size + 2 * padding - kernel_size) / stride)) + 1
