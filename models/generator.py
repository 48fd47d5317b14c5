"""The SPADE generator.

Layout (parameter names follow SPADE): a start feature map of 16*ngf
channels at crop_size / 2**n, then ``head_0``, upsample, ``G_middle_0``,
(upsample in SPADE's ``spade_more``/``spade_most``), ``G_middle_1``, and one
upsample + block per ``up_i`` (channels halve each time), then ``conv_img``
+ tanh. The layouts are ``models.layout.LAYOUTS``: ``normal`` has
up_0..up_3 (n = 5); ``apf_more`` adds ``up_4`` (ngf -> ngf/2, n = 6: a 6x8
start for 512x384, the APF-GAN layout); ``spade_more`` has normal's blocks and
the middle upsampling (n = 6), ``spade_most`` adds ``up_4`` to it (n = 7);
``two_extra_blocks`` adds ``up_4`` and ``up_5`` (n = 7).

Progressive pre-training adds ``to_rgb_<level>`` heads (3x3 convolution +
tanh) on the outputs of intermediate up blocks, one per lower resolution
level; ``execute(..., stage=...)`` then stops at the active level's block
and, during a fade, blends the new head with the 2x-upsampled head of the
level below (nearest, or bilinear as APF-GAN: ``--pg_fade_upsample``).
``remove_progressive_heads`` drops them when pre-training ends, leaving the plain full-resolution generator.

The start comes from one of: a 3x3 convolution ``fc`` of the downsampled
label map (default), the mask encoder (``--encode_mask``), a linear ``fc``
of a style code z (``--use_vae``), or the mask encoder plus the projected
style code (both flags).
"""

import jittor as jt
from jittor import nn

from models.convolution import Conv2d
from models.architecture import SPADEResnetBlock
from models.normalization import resize_label
from models.layout import LAYOUTS, image_height, semantic_nc


def num_upsamplings(mode):
    return LAYOUTS[mode].upsamplings


def start_size(opt):
    """(height, width) of the generator's first feature map."""
    n = num_upsamplings(opt.num_upsampling_layers)
    sw = opt.crop_size // (2 ** n)
    sh = max(1, int(round(image_height(opt) / (2 ** n))))
    return sh, sw


def up_block_channels(ngf, index):
    """(in, out) channels of block ``up_<index>``: 16ngf->8ngf, 8ngf->4ngf, ..."""
    return int(ngf * 2 ** (4 - index)), int(ngf * 2 ** (3 - index))


def upsample_fade(image, mode):
    """The lower level's image at twice its size, for a fade: ``mode`` nearest or bilinear
    (align_corners=False)."""
    return nn.interpolate(image, scale_factor=2, mode=mode)


class SPADEGenerator(nn.Module):
    def __init__(self, opt, progressive_levels=1):
        """``progressive_levels`` > 1 adds the to-RGB heads of that many resolution levels."""
        super().__init__()
        nf = opt.ngf
        self.sh, self.sw = start_size(opt)
        self.use_vae = opt.use_vae
        self.encode_mask = opt.encode_mask
        self.z_dim = opt.z_dim
        self.ngf = nf
        label_channels = semantic_nc(opt)
        if opt.use_vae:
            self.fc = nn.Linear(opt.z_dim, 16 * nf * self.sw * self.sh)
        elif not opt.encode_mask:
            self.fc = Conv2d(label_channels, 16 * nf, 3, padding=1)

        def block(fin, fout):
            return SPADEResnetBlock(fin, fout, opt.norm_G, label_channels, opt.spade_hidden,
                                    opt.use_seg_noise)

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.num_up_blocks = LAYOUTS[opt.num_upsampling_layers].up_blocks
        self.middle_upsampling = LAYOUTS[opt.num_upsampling_layers].middle_upsampling
        for i in range(self.num_up_blocks):
            setattr(self, f"up_{i}", block(*up_block_channels(nf, i)))
        self.final_nc = up_block_channels(nf, self.num_up_blocks - 1)[1]
        self.conv_img = Conv2d(self.final_nc, 3, 3, padding=1)
        self.progressive_levels = 1
        self.fade_upsample = getattr(opt, "pg_fade_upsample", "nearest")
        if progressive_levels > 1:
            self.add_progressive_heads(progressive_levels)

    def add_progressive_heads(self, levels):
        if levels > self.num_up_blocks:
            raise ValueError(f"{levels} resolution levels need at least {levels} up blocks, "
                             f"the generator has {self.num_up_blocks}")
        self.progressive_levels = levels
        for level in range(levels - 1):
            channels = up_block_channels(self.ngf, self.level_block(level))[1]
            setattr(self, f"to_rgb_{level}", Conv2d(channels, 3, 3, padding=1))

    def remove_progressive_heads(self):
        for level in range(self.progressive_levels - 1):
            delattr(self, f"to_rgb_{level}")
        self.progressive_levels = 1

    def level_block(self, level):
        """Index of the up block whose output has the resolution of ``level``."""
        return self.num_up_blocks - self.progressive_levels + level

    def to_rgb(self, level, x):
        head = self.conv_img if level == self.progressive_levels - 1 else getattr(self, f"to_rgb_{level}")
        return jt.tanh(head(nn.leaky_relu(x, 0.2)))

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

    def trunk(self, seg, z=None, mask_features=None):
        """The features before the up blocks: start map, head_0, 2x upsampling, G_middle_0, (2x upsampling in
        SPADE's middle-upsampling layouts), G_middle_1."""
        x = self.start_features(seg, z, mask_features)
        x = self.head_0(x, seg)
        x = nn.interpolate(x, scale_factor=2, mode="nearest")
        x = self.G_middle_0(x, seg)
        if self.middle_upsampling:
            x = nn.interpolate(x, scale_factor=2, mode="nearest")
        return self.G_middle_1(x, seg)

    def execute(self, seg, z=None, mask_features=None, stage=None):
        """seg: one-hot label map [N, label_nc, H, W] (+ the edge channel with --label_edges, see
        models.networks.semantic_input) at the full output size; returns images in [-1, 1].

        ``stage`` (a models.progressive.Stage) selects the output level of a
        generator with progressive heads: the image then has that level's size.
        """
        level, alpha = (self.progressive_levels - 1, 1.0) if stage is None else stage
        if level >= self.progressive_levels:
            raise ValueError(f"stage level {level} but the generator has {self.progressive_levels} levels")
        last_block = self.level_block(level)
        x = self.trunk(seg, z, mask_features)
        lower = None
        for i, up in enumerate(self.up_blocks()[:last_block + 1]):
            if alpha < 1 and level > 0 and i == last_block:
                lower = upsample_fade(self.to_rgb(level - 1, x), self.fade_upsample)
            x = nn.interpolate(x, scale_factor=2, mode="nearest")
            x = up(x, seg)
        image = self.to_rgb(level, x)
        if lower is not None:
            image = alpha * image + (1 - alpha) * lower
        return image
