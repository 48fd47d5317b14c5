"""Multiscale PatchGAN discriminator. Each scale sees the label map and the
image concatenated; scale k sees them downsampled k times (3x3 average pool,
stride 2, padding excluded). Every scale returns its intermediate features
(for feature matching) with the patch prediction last.

During progressive pre-training only the scales whose resolution is active
take part: the input then arrives at a lower resolution and enters at the
scale that sees that resolution in the full model (``first_scale``). A scale
that becomes active is initialised once from the next coarser scale
(``copy_scale``)."""

import jittor as jt
from jittor import nn

from models.normalization import avg_pool_exclude_pad, normed_conv
from options.base_options import semantic_nc


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf, n_layers, norm_D):
        super().__init__()
        kw, pad = 4, 2
        nf = ndf
        layers = [nn.Sequential(nn.Conv2d(input_nc, nf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2))]
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(nn.Sequential(normed_conv(norm_D, nf_prev, nf, kw, stride, pad), nn.LeakyReLU(0.2)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, kw, stride=1, padding=pad)))
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
        for i in range(opt.num_D):
            setattr(self, f"discriminator_{i}",
                    NLayerDiscriminator(semantic_nc(opt) + 3, opt.ndf, opt.n_layers_D, opt.norm_D))

    def scale(self, index):
        return getattr(self, f"discriminator_{index}")

    def copy_scale(self, source, target):
        """Overwrite the weights of scale ``target`` with those of scale ``source``."""
        source_state = self.scale(source).state_dict()
        for key, var in self.scale(target).state_dict().items():
            var.assign(jt.array(source_state[key].numpy()))

    def execute(self, seg, image, first_scale=0):
        """Returns a list (one per scale from ``first_scale`` on) of feature lists, prediction last."""
        x = jt.concat([seg, image], dim=1)
        results = []
        for i in range(first_scale, self.num_D):
            results.append(self.scale(i)(x))
            if i + 1 < self.num_D:
                x = avg_pool_exclude_pad(x)
        return results
