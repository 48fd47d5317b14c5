"""The SPADE residual block: two SPADE-normalised 3x3 convolutions plus a
shortcut that is learned (SPADE + 1x1 conv) when the channel count changes."""

from jittor import nn

from models.normalization import SPADE, conv2d, parse_norm_G, resize_label


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin, fout, norm_G, semantic_nc, spade_hidden=128, seg_noise=False):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        spectral, norm_kind, kernel = parse_norm_G(norm_G)
        self.conv_0 = conv2d(fin, fmiddle, 3, padding=1, spectral=spectral)
        self.conv_1 = conv2d(fmiddle, fout, 3, padding=1, spectral=spectral)
        if self.learned_shortcut:
            self.conv_s = conv2d(fin, fout, 1, bias=False, spectral=spectral)
        self.norm_0 = SPADE(norm_kind, kernel, fin, semantic_nc, spade_hidden, seg_noise)
        self.norm_1 = SPADE(norm_kind, kernel, fmiddle, semantic_nc, spade_hidden, seg_noise)
        if self.learned_shortcut:
            self.norm_s = SPADE(norm_kind, kernel, fin, semantic_nc, spade_hidden, seg_noise)

    def execute(self, x, seg):
        seg = resize_label(seg, x.shape[2:])  # once for the block's two or three SPADE layers
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(nn.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(nn.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx
