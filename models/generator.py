"""The SPADE generator.

Layout (parameter names follow SPADE): a start feature map of 16*ngf
channels at crop_size / 2**n, then ``head_0``, upsample, ``G_middle_0``,
``G_middle_1``, and one upsample + block per ``up_i`` (channels halve each
time), then ``conv_img`` + tanh. ``normal`` has up_0..up_3 (n = 5); ``more``
adds ``up_4`` (ngf -> ngf/2, n = 6: a 6x8 start for 512x384, the APF-GAN
layout); ``most`` adds ``up_5`` (n = 7).

The start comes from one of: a 3x3 convolution ``fc`` of the downsampled
label map (default), the mask encoder (``--encode_mask``), a linear ``fc``
of a style code z (``--use_vae``), or the mask encoder plus the projected
style code (both flags).
"""

import jittor as jt
from jittor import nn

from models.architecture import SPADEResnetBlock
from models.normalization import resize_label
from options.base_options import image_height

NUM_UP_BLOCKS = {"normal": 4, "more": 5, "most": 6}


def num_upsamplings(mode):
    return NUM_UP_BLOCKS[mode] + 1


def start_size(opt):
    """(height, width) of the generator's first feature map."""
    n = num_upsamplings(opt.num_upsampling_layers)
    sw = opt.crop_size // (2 ** n)
    sh = max(1, int(round(image_height(opt) / (2 ** n))))
    return sh, sw


def up_block_channels(ngf, index):
    """(in, out) channels of block ``up_<index>``: 16ngf->8ngf, 8ngf->4ngf, ..."""
    return int(ngf * 2 ** (4 - index)), int(ngf * 2 ** (3 - index))


class SPADEGenerator(nn.Module):
    def __init__(self, opt):
        super().__init__()
        nf = opt.ngf
        self.sh, self.sw = start_size(opt)
        self.use_vae = opt.use_vae
        self.encode_mask = opt.encode_mask
        self.z_dim = opt.z_dim
        self.ngf = nf
        semantic_nc = opt.label_nc
        if opt.use_vae:
            self.fc = nn.Linear(opt.z_dim, 16 * nf * self.sw * self.sh)
        elif not opt.encode_mask:
            self.fc = nn.Conv2d(semantic_nc, 16 * nf, 3, padding=1)

        def block(fin, fout):
            return SPADEResnetBlock(fin, fout, opt.norm_G, semantic_nc, opt.spade_hidden)

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.num_up_blocks = NUM_UP_BLOCKS[opt.num_upsampling_layers]
        for i in range(self.num_up_blocks):
            setattr(self, f"up_{i}", block(*up_block_channels(nf, i)))
        self.final_nc = up_block_channels(nf, self.num_up_blocks - 1)[1]
        self.conv_img = nn.Conv2d(self.final_nc, 3, 3, padding=1)

    def up_blocks(self):
        return [getattr(self, f"up_{i}") for i in range(self.num_up_blocks)]

    def start_features(self, seg, z=None, mask_features=None):
        """The first feature map [N, 16*ngf, sh, sw]."""
        n = seg.shape[0]
        x = None
        if self.encode_mask:
            if mask_features is None:
                raise ValueError("encode_mask generator needs mask_features from the mask encoder")
            x = mask_features
        if self.use_vae:
            if z is None:
                z = jt.randn(n, self.z_dim)
            style = self.fc(z).reshape(n, 16 * self.ngf, self.sh, self.sw)
            x = style if x is None else x + style
        if x is None:
            x = self.fc(resize_label(seg, (self.sh, self.sw)))
        return x

    def execute(self, seg, z=None, mask_features=None):
        """seg: one-hot label map [N, label_nc, H, W] at the output size; returns images in [-1, 1]."""
        x = self.start_features(seg, z, mask_features)
        x = self.head_0(x, seg)
        x = nn.interpolate(x, scale_factor=2, mode="nearest")
        x = self.G_middle_0(x, seg)
        x = self.G_middle_1(x, seg)
        for up in self.up_blocks():
            x = nn.interpolate(x, scale_factor=2, mode="nearest")
            x = up(x, seg)
        x = self.conv_img(nn.leaky_relu(x, 0.2))
        return jt.tanh(x)
