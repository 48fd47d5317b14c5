"""InceptionV3 feature extractor (pytorch-fid's FID Inception) and a feature-matching loss.

The network is the architecture of pytorch-fid's ``fid_inception_v3()``: the
Inception graph that TensorFlow's FID code uses (2015-12-05 checkpoint),
expressed as torchvision's ``Inception3`` with four patched block types:

* ``Mixed_5b..5d`` (FIDInceptionA), ``Mixed_6b..6e`` (FIDInceptionC) and
  ``Mixed_7b`` (FIDInceptionE_1) average-pool their ``branch_pool`` input with
  3x3 / stride 1 / padding 1 and ``count_include_pad=False``;
* ``Mixed_7c`` (FIDInceptionE_2) max-pools there instead (3x3 / stride 1 / pad 1).

Parameter names equal the keys of pytorch-fid's weight file
``pt_inception-2015-12-05-6726825d.pth`` (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ...), which Jittor reads without
PyTorch (``jt.load``); a Jittor ``.pkl`` with the same keys works as well.

Inputs are images in [-1, 1], the range the FID network's first convolution
expects. pytorch-fid's ``normalize_input`` maps [0, 1] to [-1, 1]; the images of
this project already are in [-1, 1], so nothing is rescaled here. Unless
``resize=False`` they are resized to 299x299 with bilinear interpolation
(align_corners=False), exactly as pytorch-fid's ``resize_input`` does.

torchvision's ImageNet weights (``inception_v3_google-*.pth``) load as well,
with the pooling of torchvision's own ``Inception3`` (``variant="torchvision"``:
every ``branch_pool``, Mixed_7c's included, is a 3x3 average pool with
``count_include_pad=True``). torchvision runs those weights with
``transform_input=True``, which turns ImageNet-normalised input back into
``(x - 0.5) / 0.5``, i.e. [-1, 1]; feeding [-1, 1] images straight to the
convolutions is therefore the same convention. (torchvision's preset resizes
to 342 and centre-crops 299; here the whole image is resized to 299.) These
weights are NOT the FID weights: features and any FID computed with them are
not comparable to published FIDs. The FID file is the supported one.

Keys of a weights file that are ignored, on purpose (anything else unknown is
an error): ``fc.*`` (the classifier: 1008 classes in the FID file, 1000 in
torchvision's; no feature used here comes after it), ``AuxLogits.*``
(torchvision's auxiliary classifier) and ``*.num_batches_tracked`` (a
PyTorch BatchNorm counter without meaning at inference).
"""

import math

import jittor as jt
from jittor import nn

from models.convolution import Conv2d
from models.normalization import avg_pool_exclude_pad
from models.pretrained import freeze, read_state_dict
from models.reductions import normalize
from util.core.download import FID_WEIGHTS_URL
from util.core.errors import WeightsFileError, few

FEATURE_LAYERS = ("pool_1", "pool_2", "mixed_6e", "pool_3")
FEATURE_CHANNELS = {"pool_1": 64, "pool_2": 192, "mixed_6e": 768, "pool_3": 2048}
IGNORED_PREFIXES = ("fc.", "AuxLogits.")
IGNORED_SUFFIXES = (".num_batches_tracked",)
VARIANTS = ("fid", "torchvision")
INCEPTION_NORMS = ("running", "batch")
INPUT_SIZE = 299

MISSING_MESSAGE = (
    "{path}: InceptionV3 weights not found. The Inception feature loss needs pytorch-fid's FID Inception "
    "weights: download pt_inception-2015-12-05-6726825d.pth from pytorch-fid's GitHub releases "
    f"({FID_WEIGHTS_URL}) on a machine with internet access and put it at {{path}} or pass "
    "--inception_weights PATH; or train without --inception_loss.")


def _max_pool(x, kernel_size, stride, padding):
    """Max pool with PyTorch semantics (padding never wins) for any map size.

    Jittor's pool refuses maps no larger than the kernel (even when padded);
    those tiny maps (inputs near the 75-pixel minimum) take strided slices.
    """
    h, w = int(x.shape[2]), int(x.shape[3])
    if min(h, w) > kernel_size:
        return nn.MaxPool2d(kernel_size, stride=stride, padding=padding)(x)
    if padding:
        x = nn.pad(x, (padding,) * 4, value=-math.inf)
    out_h = (h + 2 * padding - kernel_size) // stride + 1
    out_w = (w + 2 * padding - kernel_size) // stride + 1
    out = None
    for di in range(kernel_size):
        for dj in range(kernel_size):
            win = x[:, :, di:di + stride * (out_h - 1) + 1:stride, dj:dj + stride * (out_w - 1) + 1:stride]
            out = win if out is None else jt.maximum(out, win)
    return out


def _avg_pool_include_pad(x):
    """3x3 / stride 1 / padding 1 average pool counting the zero padding (torchvision's branch_pool)."""
    if min(int(x.shape[2]), int(x.shape[3])) > 3:
        return nn.AvgPool2d(3, stride=1, padding=1)(x)  # Jittor matches PyTorch for count_include_pad=True
    padded = nn.pad(x, (1, 1, 1, 1))
    h, w = int(x.shape[2]), int(x.shape[3])
    total = 0
    for di in range(3):
        for dj in range(3):
            total = total + padded[:, :, di:di + h, dj:dj + w]
    return total / 9.0


def _branch_pool(x, kind):
    if kind == "avg_exclude_pad":
        return avg_pool_exclude_pad(x, 3, 1, 1)
    if kind == "avg":
        return _avg_pool_include_pad(x)
    if kind == "max":
        return _max_pool(x, 3, 1, 1)
    raise ValueError(f"unknown pool kind {kind!r}")


def batch_normalize(x, weight, bias, eps):
    """x [N, C, H, W] normalised with its batch's per-channel mean and biased variance, then scaled by ``weight``
    and shifted by ``bias``."""
    return normalize(x, False, eps)[0] * weight.reshape((1, -1, 1, 1)) + bias.reshape((1, -1, 1, 1))


class FrozenBatchNorm(nn.Module):
    """A BatchNorm with fixed weights: normalises with the running statistics, or, with
    ``batch_statistics`` set, with the statistics of the batch it is given (what Jittor's ``nn.BatchNorm``
    does in training mode: APF-GAN's Inception loss ran that way); the running statistics never change.

    Jittor's ``Module.train()`` on any parent sets ``is_train`` on every
    descendant, which would switch ``nn.BatchNorm`` to batch statistics; this
    layer switches only by ``batch_statistics``. Keys: weight, bias, running_mean, running_var.
    """

    def __init__(self, num_features, eps=1e-3):
        super().__init__()
        self.eps = eps
        self.batch_statistics = False
        self.weight = jt.ones((num_features,), dtype="float32")
        self.bias = jt.zeros((num_features,), dtype="float32")
        self.running_mean = jt.zeros((num_features,), dtype="float32")
        self.running_var = jt.ones((num_features,), dtype="float32")

    def execute(self, x):
        if self.batch_statistics:
            return batch_normalize(x, self.weight, self.bias, self.eps)
        mean, var = self.running_mean, self.running_var
        scale = self.weight / jt.sqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale.reshape((1, -1, 1, 1)) + shift.reshape((1, -1, 1, 1))


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001), ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = FrozenBatchNorm(out_channels, eps=0.001)

    def execute(self, x):
        return nn.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):
    """35x35 block: 1x1 (64) | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | pool -> 1x1 pool_features."""

    def __init__(self, in_channels, pool_features, pool):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def execute(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_branch_pool(x, self.pool))
        return jt.concat([b1, b5, b3, bp], dim=1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 (384) | 1x1 64 -> 3x3 96 -> 3x3/2 96 | max pool 3x3/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def execute(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jt.concat([b3, bd, _max_pool(x, 3, 2, 0)], dim=1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (c7 = channels_7x7)."""

    def __init__(self, in_channels, channels_7x7, pool):
        super().__init__()
        self.pool = pool
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def execute(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_branch_pool(x, self.pool))
        return jt.concat([b1, b7, bd, bp], dim=1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 192 -> 3x3/2 320 | 1x1 192 -> 1x7 -> 7x1 -> 3x3/2 192 | max pool 3x3/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def execute(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return jt.concat([b3, b7, _max_pool(x, 3, 2, 0)], dim=1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches; ``pool`` picks FIDInceptionE_1 / _2 / torchvision."""

    def __init__(self, in_channels, pool):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def execute(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = jt.concat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = jt.concat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], dim=1)
        bp = self.branch_pool(_branch_pool(x, self.pool))
        return jt.concat([b1, b3, bd, bp], dim=1)


def _is_ignored(key):
    return key.startswith(IGNORED_PREFIXES) or key.endswith(IGNORED_SUFFIXES)


def detect_variant(state):
    """'torchvision' for a state dict with AuxLogits.* keys or a 1000-class fc, else 'fid'."""
    if any(str(k).startswith("AuxLogits.") for k in state):
        return "torchvision"
    fc = state.get("fc.weight")
    if fc is not None and tuple(fc.shape)[0] == 1000:
        return "torchvision"
    return "fid"


class InceptionV3Features(nn.Module):
    """Frozen InceptionV3 returning the feature maps pytorch-fid's four output blocks give.

    ``execute(x, resize=True)`` takes images in [-1, 1] of shape (N, 3, H, W)
    (H, W >= 75 without resizing) and returns a dict, in this order:

    * ``pool_1``: after the first max pool, (N, 64, 73, 73) at 299x299 input;
    * ``pool_2``: after the second max pool, (N, 192, 35, 35);
    * ``mixed_6e``: output of Mixed_6e, (N, 768, 17, 17);
    * ``pool_3``: global average of Mixed_7c, (N, 2048, 1, 1) - the FID
      features, shaped as pytorch-fid returns them.

    ``variant`` is "fid" (pytorch-fid's FIDInceptionV3 pooling) or
    "torchvision" (torchvision's Inception3 pooling); ``from_file`` picks it
    from the weights unless told.
    """

    def __init__(self, variant="fid"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.variant = variant
        fid = variant == "fid"
        avg = "avg_exclude_pad" if fid else "avg"
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32, avg)
        self.Mixed_5c = InceptionA(256, 64, avg)
        self.Mixed_5d = InceptionA(288, 64, avg)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, avg)
        self.Mixed_6c = InceptionC(768, 160, avg)
        self.Mixed_6d = InceptionC(768, 160, avg)
        self.Mixed_6e = InceptionC(768, 192, avg)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, avg)
        self.Mixed_7c = InceptionE(2048, "max" if fid else "avg")

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_file(cls, path, variant=None):
        """Load a PyTorch (.pth) or Jittor (.pkl) state dict; the network comes back frozen, in eval mode."""
        state = read_state_dict(path, "InceptionV3", MISSING_MESSAGE.format(path=path))
        return cls.from_state_dict(state, path=path, variant=variant)

    @classmethod
    def from_state_dict(cls, state, path="<state dict>", variant=None):
        if not isinstance(state, dict):
            raise WeightsFileError(f"{path}: not an InceptionV3 state dict (holds a {type(state).__name__}).")
        net = cls(variant or detect_variant(state))
        net.load_weights(state, path)
        return freeze(net)

    def load_weights(self, state, path="<state dict>"):
        needed = self.state_dict()
        missing = [k for k in needed if k not in state]
        if missing:
            raise WeightsFileError(f"{path}: not an InceptionV3 state dict of pytorch-fid / torchvision; "
                                   f"missing {few(missing, 4)}.")
        unknown = [k for k in state if k not in needed and not _is_ignored(str(k))]
        if unknown:
            raise WeightsFileError(f"{path}: unexpected keys for InceptionV3: {few(unknown, 4)}.")
        values, wrong = {}, []
        for key, var in needed.items():
            value = state[key]
            value = value.numpy() if hasattr(value, "numpy") else value
            if tuple(value.shape) != tuple(var.shape):
                wrong.append(f"{key} {tuple(value.shape)} (expected {tuple(var.shape)})")
            values[key] = value
        if wrong:
            raise WeightsFileError(f"{path}: InceptionV3 weights of the wrong shape: {few(wrong, 3)}.")
        for key, var in needed.items():
            var.assign(jt.array(values[key]).float32())

    # ----------------------------------------------------------------- forward
    def execute(self, x, resize=True):
        if resize and tuple(int(s) for s in x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = nn.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        feats = {}
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = feats["pool_1"] = _max_pool(x, 3, 2, 0)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = feats["pool_2"] = _max_pool(x, 3, 2, 0)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        feats["mixed_6e"] = x
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        feats["pool_3"] = x.mean(dims=(2, 3), keepdims=True)
        return feats


class InceptionLoss(nn.Module):
    """Weighted L1 (mean) between InceptionV3 features of fake and real images.

    ``layer_weights``: the weights of pool_1, pool_2, mixed_6e and pool_3 (default 1 each; APF-GAN:
    1/16, 1/8, 1/4, 1); the caller scales the whole term with its lambda. ``resize``: resize the images to
    299x299 first (False: their own size, as APF-GAN). ``norm``: "running" (the weights' batch-norm
    statistics) or "batch" (each batch-norm layer normalises fake and real with their own batch's
    statistics, as APF-GAN's loss ran). Real features are computed without gradient; the weights are frozen.
    """

    def __init__(self, weights_path, resize=True, layer_weights=(1.0, 1.0, 1.0, 1.0),
                 norm="running"):
        super().__init__()
        if len(layer_weights) != len(FEATURE_LAYERS):
            raise ValueError(f"{len(FEATURE_LAYERS)} layer weights expected ({', '.join(FEATURE_LAYERS)}), "
                             f"got {len(layer_weights)}")
        if norm not in INCEPTION_NORMS:
            raise ValueError(f"norm must be one of {INCEPTION_NORMS}, not {norm!r}")
        self.inception = InceptionV3Features.from_file(weights_path)
        for module in self.inception.modules():
            if isinstance(module, FrozenBatchNorm):
                module.batch_statistics = norm == "batch"
        self.resize = resize
        self.layer_weights = dict(zip(FEATURE_LAYERS, (float(w) for w in layer_weights)))

    def execute(self, fake, real):
        fake_feats = self.inception(fake, resize=self.resize)
        with jt.no_grad():
            real_feats = self.inception(real.detach(), resize=self.resize)
        total = 0.0
        for name, weight in self.layer_weights.items():
            total = total + weight * (fake_feats[name] - real_feats[name].detach()).abs().mean()
        return total
