"""Training losses: adversarial (hinge / least squares / original), feature
matching, and the VGG19 perceptual loss."""

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

    def __init__(self, weights_path):
        super().__init__()
        self.vgg = VGG19Features.from_file(weights_path)

    def execute(self, fake, real):
        fake_feats = self.vgg(fake)
        real_feats = self.vgg(real)
        total = 0.0
        for w, f, r in zip(self.layer_weights, fake_feats, real_feats):
            total = total + w * (f - r.detach()).abs().mean()
        return total
