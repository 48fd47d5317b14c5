"""Encoders: the VAE image (style) encoder and the mask encoder.

Both are stacks of stride-2 3x3 convolutions normalised by ``norm_E``.
``ImageEncoder`` maps a photo (resized to 256x256) to (mu, logvar) of a
style code; ``MaskEncoder`` maps the one-hot label map to the generator's
start feature map (16*ngf channels at the start size), as APF-GAN's
``encode_mask``.
"""

import jittor as jt
from jittor import nn

from models.generator import num_upsamplings
from models.normalization import normed_conv
from models.layout import semantic_nc


class ImageEncoder(nn.Module):
    def __init__(self, opt, in_channels=3):
        super().__init__()
        ndf = opt.ngf
        widths = [ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8, ndf * 8]
        prev = in_channels
        for i, width in enumerate(widths):
            setattr(self, f"layer{i + 1}", normed_conv(opt.norm_E, prev, width, 3, stride=2, padding=1))
            prev = width
        self.fc_mu = nn.Linear(ndf * 8 * 4 * 4, opt.z_dim)
        self.fc_var = nn.Linear(ndf * 8 * 4 * 4, opt.z_dim)

    def execute(self, image):
        if tuple(image.shape[2:]) != (256, 256):
            image = nn.interpolate(image, size=(256, 256), mode="bilinear", align_corners=False)
        x = image
        for i in range(6):
            x = getattr(self, f"layer{i + 1}")(x if i == 0 else nn.leaky_relu(x, 0.2))
        x = nn.leaky_relu(x, 0.2).reshape(x.shape[0], -1)
        return self.fc_mu(x), self.fc_var(x)


class MaskEncoder(nn.Module):
    def __init__(self, opt):
        super().__init__()
        ngf = opt.ngf
        n = num_upsamplings(opt.num_upsampling_layers)
        widths = [min(ngf * 2 ** i, ngf * 8) for i in range(n - 1)] + [ngf * 16]
        prev = semantic_nc(opt)
        self.num_layers = n
        for i, width in enumerate(widths):
            setattr(self, f"layer{i + 1}", normed_conv(opt.norm_E, prev, width, 3, stride=2, padding=1))
            prev = width

    def execute(self, seg):
        x = seg
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x if i == 0 else nn.leaky_relu(x, 0.2))
        return nn.leaky_relu(x, 0.2)


def reparameterize(mu, logvar):
    std = jt.exp(0.5 * logvar)
    return jt.randn(mu.shape) * std + mu


def kld_loss(mu, logvar):
    """KL divergence of N(mu, exp(logvar)) from N(0, 1), summed over code and batch."""
    return -0.5 * jt.sum(1 + logvar - mu.sqr() - logvar.exp())
