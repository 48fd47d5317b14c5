"""Training losses: adversarial (hinge / least squares / original), feature
matching, the VGG19 perceptual loss, and the colour-histogram style loss."""

import math

import jittor as jt
from jittor import nn

from models.vgg import VGG19Features


def weighted_mean(values, weights=None):
    """Mean of per-scale losses, weighted by ``weights`` (a fading-in scale has weight < 1)."""
    if weights is None:
        weights = [1.0] * len(values)
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


def gan_loss(predictions, target_is_real, for_discriminator, mode="hinge", weights=None):
    """Adversarial loss averaged over the discriminator scales (weighted by ``weights``).

    ``predictions`` is the discriminator output: a list of per-scale feature
    lists whose last entry is the patch prediction.
    """
    per_scale = []
    for scale in predictions:
        pred = scale[-1]
        if mode == "hinge":
            if for_discriminator:
                margin = pred - 1 if target_is_real else -pred - 1
                loss = -jt.minimum(margin, jt.zeros_like(margin)).mean()
            else:
                if not target_is_real:
                    raise ValueError("the generator's hinge loss is defined for real targets only")
                loss = -pred.mean()
        elif mode == "ls":
            target = 1.0 if target_is_real else 0.0
            loss = (pred - target).sqr().mean()
        elif mode == "original":
            target = jt.ones_like(pred) if target_is_real else jt.zeros_like(pred)
            loss = nn.binary_cross_entropy_with_logits(pred, target)
        else:
            raise ValueError(f"unknown gan_mode {mode!r}")
        per_scale.append(loss)
    return weighted_mean(per_scale, weights)


def feature_matching_loss(pred_fake, pred_real, weights=None):
    """L1 between the discriminator features of fake and real (real detached), averaged over scales."""
    per_scale = []
    for fake_scale, real_scale in zip(pred_fake, pred_real):
        total = 0.0
        for fake_feat, real_feat in zip(fake_scale[:-1], real_scale[:-1]):
            total = total + (fake_feat - real_feat.detach()).abs().mean()
        per_scale.append(total)
    return weighted_mean(per_scale, weights)


class VGGLoss(nn.Module):
    """Weighted L1 between VGG19 features (relu1_1..relu5_1) of fake and real images."""

    layer_weights = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

    def __init__(self, weights_path, input_mode="imagenet"):
        super().__init__()
        self.vgg = VGG19Features.from_file(weights_path, input_mode)

    def execute(self, fake, real):
        fake_feats = self.vgg(fake)
        real_feats = self.vgg(real)
        total = 0.0
        for w, f, r in zip(self.layer_weights, fake_feats, real_feats):
            total = total + w * (f - r.detach()).abs().mean()
        return total


STYLE_BINS = 32
STYLE_MAX_PIXELS = 128 * 96


def soft_colour_histogram(images, bins=STYLE_BINS, max_pixels=STYLE_MAX_PIXELS):
    """Differentiable per-channel colour histograms of images in [-1, 1]: [N, 3 * bins], each channel summing to 1.

    Each pixel value v in [0, 1] spreads over the two nearest of ``bins`` evenly
    spaced bin centres with triangular weights max(0, 1 - |v - c| * bins) (bins
    at the ends catch less than 1 for values beyond their centres). Images with
    more than ``max_pixels`` pixels are subsampled on a regular grid (every
    s-th row and column), which keeps the colour distribution, unlike
    averaging.
    """
    n, c, h, w = images.shape
    stride = max(1, int(math.floor(math.sqrt(h * w / max_pixels))))
    if stride > 1:
        images = images[:, :, ::stride, ::stride]
    values = ((images + 1) * 0.5).reshape(n, c, -1, 1)
    centres = (jt.arange(bins).float32() + 0.5).reshape(1, 1, 1, bins) / bins
    weights = nn.relu(1 - (values - centres).abs() * bins)
    hist = weights.sum(dim=2) / values.shape[2]
    return hist.reshape(n, c * bins)


def colour_style_loss(fake, style, bins=STYLE_BINS):
    """1 - Pearson correlation of the soft colour histograms of ``fake`` and ``style`` (detached), batch mean.

    The style track scores a generated image by the correlation of its RGB
    histograms with the reference photo's; this is that measure with soft bins,
    so it has a gradient. Zero when the histograms are equal (up to scale);
    images of different sizes compare directly.
    """
    h1 = soft_colour_histogram(fake, bins)
    h2 = soft_colour_histogram(style.detach(), bins)
    d1 = h1 - h1.mean(dim=1, keepdims=True)
    d2 = h2 - h2.mean(dim=1, keepdims=True)
    corr = (d1 * d2).sum(dim=1) / jt.sqrt((d1 * d1).sum(dim=1) * (d2 * d2).sum(dim=1) + 1e-12)
    return (1 - corr).mean()
