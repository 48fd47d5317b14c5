"""ECGAN's generator as COESAK's Jittor code computes it (``--netG ecgan``).

ECGAN (Tang et al., "Edge Guided GANs with Contrastive Learning for Semantic Image Synthesis", ICLR 2023) as its
public code has it and as the COESAK team ported it to Jittor (wqliu657/Jittor-COESAK-Landscape,
``models/networks/generator.py``), with its parameter names, so that COESAK's checkpoints load one to one
(``util/import_ckpt.py --format coesak``):

- the whole SPADE trunk of ``SPADEGenerator`` (``fc``, ``head_0``, ``G_middle_0/1``, ``up_0..``; COESAK uses
  SPADE's 'more' layout, ``--num_upsampling_layers spade_more``), without ``conv_img``;
- two stacks of 3x3 convolutions at the full resolution on the trunk's features, each input through a leaky
  ReLU (0.2), no normalisation: the image branch ``conv_img1..4`` and the edge branch ``conv_edge1..4``
  (final_nc -> 32 -> 16 -> 8 -> 3). Each of the first three image layers is gated by the sigmoid of the edge
  layer of the same depth, ``i_k * sigmoid(e_k) + i_k``. The edge is ``tanh(e_4)``, 3 channels; the branch
  image is ``tanh(i_4) * sigmoid(tanh(e_4)) + tanh(i_4)`` (so in (-2, 2), not [-1, 1]);
- the semantic-preserving head: the trunk's features, the branch image, the edge and the label map are
  concatenated; ``conv_comb1`` maps them to one feature map per class, each scaled by 1 + sigmoid(its spatial
  mean); ``conv_comb2`` maps them back to the concatenated width and ``conv_comb`` + tanh gives the final
  image, the one COESAK's test.py saves.

COESAK's generator also holds a linear layer ``fc1`` (label_nc -> label_nc) that its forward never uses: it is
not built here (the importer drops it). ``execute`` returns the final image; ``outputs`` all three. Progressive
pre-training is not supported (the heads exist at the full resolution only).
"""

import jittor as jt
from jittor import nn

from models.convolution import Conv2d
from models.edge_generator import EdgeGuidedOutputs
from models.generator import SPADEGenerator
from models.layout import semantic_nc

BRANCH_WIDTHS = (32, 16, 8, 3)
EDGE_NC = 3


def lrelu(x):
    return nn.leaky_relu(x, 0.2)


class ECGANGenerator(SPADEGenerator):
    def __init__(self, opt, progressive_levels=1):
        if progressive_levels > 1:
            raise ValueError("ECGAN's generator (--netG ecgan) has no progressive heads; train it without "
                             "progressive pre-training (--pg_niter 0)")
        super().__init__(opt, progressive_levels=1)
        del self.conv_img
        prev = self.final_nc
        for k, width in enumerate(BRANCH_WIDTHS, start=1):
            setattr(self, f"conv_img{k}", Conv2d(prev, width, 3, padding=1))
            setattr(self, f"conv_edge{k}", Conv2d(prev, width, 3, padding=1))
            prev = width
        combined = self.final_nc + 3 + EDGE_NC + semantic_nc(opt)
        self.conv_comb1 = Conv2d(combined, opt.label_nc, 3, padding=1)
        self.conv_comb2 = Conv2d(opt.label_nc, combined, 3, padding=1)
        self.conv_comb = Conv2d(combined, 3, 3, padding=1)

    def add_progressive_heads(self, levels):
        raise ValueError("ECGAN's generator (--netG ecgan) does not support progressive pre-training")

    def branches(self, x):
        """(branch image, edge) from the trunk's full-resolution features ``x``."""
        image = edge = x
        for k in range(1, len(BRANCH_WIDTHS)):
            edge = getattr(self, f"conv_edge{k}")(lrelu(edge))
            image = getattr(self, f"conv_img{k}")(lrelu(image))
            image = image * jt.sigmoid(edge) + image
        k = len(BRANCH_WIDTHS)
        edge = jt.tanh(getattr(self, f"conv_edge{k}")(lrelu(edge)))
        image = jt.tanh(getattr(self, f"conv_img{k}")(lrelu(image)))
        return image * jt.sigmoid(edge) + image, edge

    def semantic_preserving(self, x, branch_image, edge, seg):
        """The final image from the trunk's features, the branch outputs and the label map."""
        class_features = self.conv_comb1(lrelu(jt.concat([x, branch_image, edge, seg], dim=1)))
        n, c = class_features.shape[0], class_features.shape[1]
        gamma = jt.sigmoid(class_features.mean(dims=(2, 3))).reshape(n, c, 1, 1)
        refined = self.conv_comb2(lrelu(class_features + class_features * gamma))
        return jt.tanh(self.conv_comb(lrelu(refined)))

    def outputs(self, seg, z=None, mask_features=None, stage=None):
        """All outputs (an ``EdgeGuidedOutputs``: final image, branch image, 3-channel edge) for full-size
        one-hot ``seg`` [N, label_nc, H, W]."""
        if stage is not None and (stage.level != 0 or stage.alpha < 1):
            raise ValueError(f"ECGAN's generator has one resolution level, got stage {tuple(stage)}")
        x = self.trunk(seg, z, mask_features)
        for up in self.up_blocks():
            x = up(nn.interpolate(x, scale_factor=2, mode="nearest"), seg)
        branch_image, edge = self.branches(x)
        return EdgeGuidedOutputs(self.semantic_preserving(x, branch_image, edge, seg), branch_image, edge)

    def execute(self, seg, z=None, mask_features=None, stage=None):
        """The final image [N, 3, H, W] in [-1, 1] (see ``outputs``)."""
        return self.outputs(seg, z, mask_features, stage).image
