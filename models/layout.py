"""The architecture facts that follow from the options: generator layouts, the
normalisation names, the channels of the label input and the image height.
Pure Python (no Jittor), so the option layer can validate with them."""

import re
from collections import namedtuple

Layout = namedtuple("Layout", "upsamplings up_blocks middle_upsampling")
Layout.__doc__ = ("A generator layout: its 2x upsamplings, its up blocks up_0.., and whether one upsampling sits "
                  "between G_middle_0 and G_middle_1 (no parameters of its own) instead of before an extra block.")
# --num_upsampling_layers. Each reference's names are prefixed with it where the two differ: SPADE's 'more'
# and APF-GAN's 'more' are different networks (the same parameters for 'normal' vs 'spade_more').
LAYOUTS = {
    "normal": Layout(5, 4, False),  # SPADE's and APF-GAN's 'normal'
    "spade_more": Layout(6, 4, True),  # SPADE's 'more' (its Cityscapes models)
    "spade_most": Layout(7, 5, True),  # SPADE's 'most': spade_more plus a final block up_4 at ngf/2
    "apf_more": Layout(6, 5, False),  # APF-GAN's 'more': a final block up_4 at ngf/2
    "two_extra_blocks": Layout(7, 6, False),  # apf_more plus up_5 at ngf/4
}
NUM_UPSAMPLINGS = {name: layout.upsamplings for name, layout in LAYOUTS.items()}

# --d_downsample: the discriminator's 3x3 average between scales, the padding excluded or counted in
# (models.normalization.DOWNSAMPLINGS)
D_DOWNSAMPLINGS = ("exact", "zero_padded")

NORM_G_PATTERN = re.compile(r"^(spectral)?spade(syncbatch|batch|instance)(\d+)x\d+$")
NORM_LAYER_PATTERN = re.compile(r"^(spectral)?(syncbatch|batch|instance|none)$")


def semantic_nc(opt):
    """Channels of the networks' label input: label_nc, plus 1 (the edge map) with --label_edges."""
    return opt.label_nc + (1 if getattr(opt, "label_edges", False) else 0)


def image_height(opt):
    """Height of the network's images for the width ``crop_size`` and ``aspect_ratio``."""
    return int(round(opt.crop_size / opt.aspect_ratio))
