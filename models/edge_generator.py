"""This project's edge-guided generator (``--netG spade_edge``), inspired by ECGAN (Tang et al., ICLR 2023;
ECGAN's generator as its code has it is ``models.ecgan_generator``).

It keeps the whole SPADE trunk of ``SPADEGenerator`` under the same
parameter names (``fc``, ``head_0``, ``G_middle_0/1``, ``up_i``, ``conv_img``)
and adds, all plain convolutions without spectral norm:

- an edge decoder running beside the up blocks: ``edge_<i>`` (one per up
  block) takes the previous edge features (for ``edge_0`` the trunk's
  features after ``G_middle_1``), upsamples them 2x (nearest) and applies
  two 3x3 convolutions, each followed by instance normalisation (no
  parameters) and leaky ReLU, to them concatenated with the label map at
  that size; it has half the channels of the matching up block (at least
  4). The normalisation keeps the features at unit scale: without it the
  small initial weights (``init_weights``) would shrink them towards zero
  block after block and leave the branch without gradient;
- attention-guided edge transfer: after every up block ``up_i`` a 1x1
  convolution ``edge_att_<i>`` of the edge features plus a sigmoid gives an
  attention map A with the up block's channels, and the image features
  become x * (1 + A): edges select image features, never remove them;
- the edge head ``conv_edge`` (3x3, 1 channel, tanh): the edge map in
  [-1, 1], trained towards Canny edges (+1) on a -1 background
  (``models.edges.edge_target``);
- ``conv_img`` + tanh on the gated features: the image branch's image;
- the semantic-preserving head: the gated features, the branch image, the
  edge map and the label map are concatenated; ``sp_class`` (3x3) maps them
  to one feature map per class, each scaled by 1 + sigmoid(its spatial
  mean); ``sp_features`` (3x3) maps them back to the concatenated width and
  ``sp_img`` (3x3) + tanh gives the final image.

``execute`` returns the final image, like ``SPADEGenerator``; ``outputs``
returns all three outputs. Progressive pre-training is not supported: the
edge branch and the semantic-preserving head exist at the full resolution
only (``--pg_niter`` > 0 is refused with this generator).
"""

from collections import namedtuple

import jittor as jt
from jittor import nn

from models.convolution import Conv2d
from models.generator import SPADEGenerator, up_block_channels
from models.normalization import param_free_norm, resize_label

EdgeGuidedOutputs = namedtuple("EdgeGuidedOutputs", "image branch_image edge")
EdgeGuidedOutputs.__doc__ = ("Final (semantic-preserving) image and image-branch image [N, 3, H, W], edge map "
                             "[N, 1, H, W] (--netG spade_edge) or [N, 3, H, W] (--netG ecgan) in [-1, 1].")

EDGE_NC = 1


def edge_channels(ngf, index):
    """Channels of the edge features beside block ``up_<index>``: half the block's output, at least 4."""
    return max(4, up_block_channels(ngf, index)[1] // 2)


class EdgeBlock(nn.Module):
    """Upsample 2x, then two 3x3 convolutions (each + instance norm + leaky ReLU) of the features
    concatenated with the label map."""

    def __init__(self, fin, fout, label_nc):
        super().__init__()
        self.conv_0 = Conv2d(fin + label_nc, fout, 3, padding=1)
        self.norm_0 = param_free_norm("instance", fout)
        self.conv_1 = Conv2d(fout, fout, 3, padding=1)
        self.norm_1 = param_free_norm("instance", fout)

    def execute(self, e, seg):
        e = nn.interpolate(e, scale_factor=2, mode="nearest")
        e = self.conv_0(jt.concat([e, resize_label(seg, e.shape[2:])], dim=1))
        e = nn.leaky_relu(self.norm_0(e), 0.2)
        return nn.leaky_relu(self.norm_1(self.conv_1(e)), 0.2)


class EdgeGuidedGenerator(SPADEGenerator):
    def __init__(self, opt, progressive_levels=1):
        if progressive_levels > 1:
            raise ValueError("the edge-guided generator (--netG spade_edge) has no progressive heads; "
                             "train it without progressive pre-training (--pg_niter 0)")
        super().__init__(opt, progressive_levels=1)
        nf, label_nc = self.ngf, opt.label_nc
        fin = 16 * nf
        for i in range(self.num_up_blocks):
            fout = edge_channels(nf, i)
            setattr(self, f"edge_{i}", EdgeBlock(fin, fout, label_nc))
            setattr(self, f"edge_att_{i}", Conv2d(fout, up_block_channels(nf, i)[1], 1))
            fin = fout
        self.conv_edge = Conv2d(fin, EDGE_NC, 3, padding=1)
        sp_nc = self.final_nc + 3 + EDGE_NC + label_nc
        self.sp_class = Conv2d(sp_nc, label_nc, 3, padding=1)
        self.sp_features = Conv2d(label_nc, sp_nc, 3, padding=1)
        self.sp_img = Conv2d(sp_nc, 3, 3, padding=1)

    def add_progressive_heads(self, levels):
        raise ValueError("the edge-guided generator (--netG spade_edge) does not support progressive pre-training")

    def edge_blocks(self):
        return [getattr(self, f"edge_{i}") for i in range(self.num_up_blocks)]

    def edge_attentions(self):
        return [getattr(self, f"edge_att_{i}") for i in range(self.num_up_blocks)]

    def semantic_preserving(self, x, branch_image, edge, seg):
        """The final image from the gated features, the branch outputs and the label map."""
        class_features = self.sp_class(nn.leaky_relu(jt.concat([x, branch_image, edge, seg], dim=1), 0.2))
        n, c = class_features.shape[0], class_features.shape[1]
        gamma = jt.sigmoid(class_features.mean(dims=(2, 3))).reshape(n, c, 1, 1)
        refined = self.sp_features(nn.leaky_relu(class_features * (1 + gamma), 0.2))
        return jt.tanh(self.sp_img(nn.leaky_relu(refined, 0.2)))

    def outputs(self, seg, z=None, mask_features=None, stage=None):
        """All outputs (an ``EdgeGuidedOutputs``) for full-size one-hot ``seg`` [N, label_nc, H, W]."""
        if stage is not None and (stage.level != 0 or stage.alpha < 1):
            raise ValueError(f"the edge-guided generator has one resolution level, got stage {tuple(stage)}")
        x = self.trunk(seg, z, mask_features)
        e = x
        for up, edge_block, attention in zip(self.up_blocks(), self.edge_blocks(), self.edge_attentions()):
            e = edge_block(e, seg)
            x = up(nn.interpolate(x, scale_factor=2, mode="nearest"), seg)
            x = x * (1 + jt.sigmoid(attention(e)))
        edge = jt.tanh(self.conv_edge(e))
        branch_image = self.to_rgb(0, x)
        image = self.semantic_preserving(x, branch_image, edge, seg)
        return EdgeGuidedOutputs(image, branch_image, edge)

    def execute(self, seg, z=None, mask_features=None, stage=None):
        """The final image [N, 3, H, W] in [-1, 1] (see ``outputs``)."""
        return self.outputs(seg, z, mask_features, stage).image
