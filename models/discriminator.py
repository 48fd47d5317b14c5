"""The discriminators (``--netD``). Both are stacks of PatchGAN sub-discriminators;
each sees the label map and the image concatenated and returns its
intermediate features (for feature matching) with the patch prediction last.

``multiscale`` (SPADE's): identical sub-discriminators; scale k sees the
input downsampled k times (3x3 average pool, stride 2; ``--d_downsample``:
the padding excluded, or counted in as APF-GAN's and COESAK's Jittor code did).
During progressive pre-training only the scales whose resolution is active
take part: the input then arrives at a lower resolution and enters at the
scale that sees that resolution in the full model. A scale that becomes
active is initialised once from the next coarser scale; while its level
fades in, the trainer weights its losses by alpha (``scale_weights``).

``apf_progressive`` (APF-GAN's): sub-discriminator L belongs to resolution
level L and has L more stride-2 layers than sub-discriminator 0, each with
its own stride-1 input convolution (``from_rgb_n``, ndf / 2**n channels)
per depth n it can be entered at. At level L, sub-discriminator L sees the
image and L-1 .. 0 its successive downsamplings. While level L fades in,
sub-discriminator L blends inside itself: alpha times its new path over
(1 - alpha) times the half-size image entered one layer deeper. When level
L first becomes active it takes every weight it shares with
sub-discriminator L-1. After pre-training the order turns round, as in
APF-GAN: sub-discriminator 0 (trained on the smallest images) sees the
full-size image and sub-discriminator k its k-th downsampling.

Both take ``stage`` (a progressive.Stage, or None once pre-training is over)
and offer ``grow(level)`` and ``scale_weights(stage)`` to the trainer."""

import jittor as jt
from jittor import nn

from models.convolution import Conv2d
from models.normalization import DOWNSAMPLINGS, downsample_image, normed_conv
from models.layout import semantic_nc

KERNEL, PADDING = 4, 2
MAX_CHANNELS = 512


def _copy_shared(source, target):
    """Overwrite every tensor of ``target`` that ``source`` has under the same name."""
    source_state = source.state_dict()
    for key, var in target.state_dict().items():
        if key in source_state:
            var.assign(jt.array(source_state[key].numpy()))


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf, n_layers, norm_D):
        super().__init__()
        nf = ndf
        layers = [nn.Sequential(Conv2d(input_nc, nf, KERNEL, stride=2, padding=PADDING), nn.LeakyReLU(0.2))]
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, MAX_CHANNELS)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(nn.Sequential(normed_conv(norm_D, nf_prev, nf, KERNEL, stride, PADDING), nn.LeakyReLU(0.2)))
        layers.append(nn.Sequential(Conv2d(nf, 1, KERNEL, stride=1, padding=PADDING)))
        self.num_layers = len(layers)
        for i, layer in enumerate(layers):
            setattr(self, f"model{i}", layer)

    def execute(self, x):
        features = []
        for i in range(self.num_layers):
            x = getattr(self, f"model{i}")(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, opt):
        super().__init__()
        self.num_D = opt.num_D
        self.downsample = DOWNSAMPLINGS[opt.d_downsample]
        for i in range(opt.num_D):
            setattr(self, f"discriminator_{i}",
                    NLayerDiscriminator(semantic_nc(opt) + 3, opt.ndf, opt.n_layers_D, opt.norm_D))

    def scale(self, index):
        return getattr(self, f"discriminator_{index}")

    def first_scale(self, stage):
        return 0 if stage is None else self.num_D - 1 - stage.level

    def grow(self, level):
        """Initialise the scale of resolution ``level`` from the scale of the level below."""
        target = self.num_D - 1 - level
        _copy_shared(self.scale(target + 1), self.scale(target))

    def scale_weights(self, stage):
        """Per-scale loss weights of the active scales (None: all 1); the one fading in gets alpha."""
        if stage is None or stage.alpha >= 1:
            return None
        return [stage.alpha] + [1.0] * (self.num_D - 1 - self.first_scale(stage))

    def execute(self, seg, image, stage=None):
        """Returns a list (one per active scale, finest first) of feature lists, prediction last."""
        x = jt.concat([seg, image], dim=1)
        results = []
        for i in range(self.first_scale(stage), self.num_D):
            results.append(self.scale(i)(x))
            if i + 1 < self.num_D:
                x = self.downsample(x)
        return results


class LevelDiscriminator(nn.Module):
    """APF-GAN's sub-discriminator of resolution level ``level``: input convolutions ``from_rgb_n``
    (n = level .. 0), stride-2 layers ``down_n`` (n = level .. 1; ndf / 2**n -> ndf / 2**(n-1) channels),
    then ``model0`` .. ``model{n_layers}`` (ndf -> 2 ndf .., the last two stride 1, the prediction last).
    Every convolution after an input convolution carries the norm but the prediction."""

    def __init__(self, input_nc, ndf, n_layers, norm_D, level):
        super().__init__()
        self.level = level
        self.num_layers = n_layers + 1
        for n in range(level, -1, -1):
            setattr(self, f"from_rgb_{n}", nn.Sequential(
                Conv2d(input_nc, self.channels(ndf, n), KERNEL, stride=1, padding=PADDING), nn.LeakyReLU(0.2)))
        for n in range(level, 0, -1):
            setattr(self, f"down_{n}", nn.Sequential(
                normed_conv(norm_D, self.channels(ndf, n), self.channels(ndf, n - 1), KERNEL, 2, PADDING),
                nn.LeakyReLU(0.2)))
        nf = ndf
        for j in range(n_layers):
            nf_prev, nf = nf, min(nf * 2, MAX_CHANNELS)
            stride = 1 if j == n_layers - 1 else 2
            setattr(self, f"model{j}", nn.Sequential(normed_conv(norm_D, nf_prev, nf, KERNEL, stride, PADDING),
                                                     nn.LeakyReLU(0.2)))
        setattr(self, f"model{n_layers}", nn.Sequential(Conv2d(nf, 1, KERNEL, stride=1, padding=PADDING)))

    @staticmethod
    def channels(ndf, depth):
        """Channels of the features ``depth`` stride-2 layers above ``model0`` (ndf divisible by 2**depth)."""
        return ndf // 2 ** depth

    def execute(self, x, alpha=1.0):
        """Features of every layer after the input convolution, prediction last. With ``alpha`` < 1 the
        new path is blended over the half-size input entered one layer deeper."""
        depth = self.level
        h = getattr(self, f"from_rgb_{depth}")(x)
        if alpha < 1:
            lower = getattr(self, f"from_rgb_{depth - 1}")(downsample_image(x, 2))
            h = getattr(self, f"down_{depth}")(h) * alpha + lower * (1 - alpha)
            depth -= 1
        features = []
        for n in range(depth, 0, -1):
            h = getattr(self, f"down_{n}")(h)
            features.append(h)
        for j in range(self.num_layers):
            h = getattr(self, f"model{j}")(h)
            features.append(h)
        return features


class ProgressiveDiscriminator(nn.Module):
    """APF-GAN's progressive discriminator (``--netD apf_progressive``); see the module docstring."""

    def __init__(self, opt):
        super().__init__()
        self.num_D = opt.num_D
        self.downsample = DOWNSAMPLINGS[opt.d_downsample]
        for i in range(opt.num_D):
            setattr(self, f"discriminator_{i}", LevelDiscriminator(
                semantic_nc(opt) + 3, opt.ndf, opt.n_layers_D, opt.norm_D, level=i))

    def scale(self, index):
        return getattr(self, f"discriminator_{index}")

    def grow(self, level):
        """Sub-discriminator ``level`` takes every weight it shares with sub-discriminator ``level`` - 1."""
        _copy_shared(self.scale(level - 1), self.scale(level))

    def scale_weights(self, stage):
        return None

    def execute(self, seg, image, stage=None):
        """Returns a list (one per active sub-discriminator, largest input first) of feature lists."""
        x = jt.concat([seg, image], dim=1)
        if stage is None:
            order, alpha = list(range(self.num_D)), 1.0
        else:
            order, alpha = list(range(stage.level, -1, -1)), stage.alpha
        results = []
        for k, i in enumerate(order):
            results.append(self.scale(i)(x, alpha if k == 0 else 1.0))
            if k + 1 < len(order):
                x = self.downsample(x)
        return results


DISCRIMINATORS = {"multiscale": MultiscaleDiscriminator, "apf_progressive": ProgressiveDiscriminator}
