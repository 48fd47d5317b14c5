"""VGG19 feature extractor for the perceptual loss, with weights from a local file.

Accepts torchvision's ``vgg19-dcbb9e9d.pth`` state dict (read by Jittor without
PyTorch) or a Jittor ``.pkl`` holding the same keys (``features.N.weight``).
Inputs are images in [-1, 1]; they are mapped to ImageNet normalisation, the
statistics the weights were trained with. The network is frozen.
"""

import jittor as jt
from jittor import nn

from models.convolution import Conv2d
from models.pretrained import freeze, read_state_dict
from util.core.errors import WeightsFileError, few

# torchvision's vgg19 "features" indices of the convolutions used (up to relu5_1).
CONV_CHANNELS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
                 14: (256, 256), 16: (256, 256), 19: (256, 512), 21: (512, 512), 23: (512, 512),
                 25: (512, 512), 28: (512, 512)}
POOL_AT = (4, 9, 18, 27)              # max-pool positions inside features
SLICE_ENDS = (1, 6, 11, 20, 29)       # outputs taken after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MISSING_MESSAGE = (
    "{path}: VGG19 weights not found. The perceptual loss needs torchvision's VGG19 ImageNet weights: "
    "download vgg19-dcbb9e9d.pth (torchvision model zoo) on a machine with internet access and put it "
    "at {path} or pass --vgg_weights PATH; or train without the perceptual loss with --no_vgg_loss.")


VGG_INPUT_MODES = ("imagenet", "raw")


class VGG19Features(nn.Module):
    def __init__(self, input_mode="imagenet"):
        """``input_mode`` 'imagenet': images in [-1, 1] are mapped to ImageNet normalisation (what the weights
        were trained on); 'raw': they go in as they are (what SPADE and APF-GAN do)."""
        super().__init__()
        if input_mode not in VGG_INPUT_MODES:
            raise ValueError(f"VGG input mode must be one of {', '.join(VGG_INPUT_MODES)}, got {input_mode!r}")
        self.input_mode = input_mode
        self.features = nn.Sequential()
        for idx in range(SLICE_ENDS[-1] + 1):
            if idx in CONV_CHANNELS:
                cin, cout = CONV_CHANNELS[idx]
                layer = Conv2d(cin, cout, 3, padding=1)
            elif idx in POOL_AT:
                layer = nn.MaxPool2d(2, stride=2)
            else:
                layer = nn.ReLU()
            self.features.append(layer)
        self.mean = jt.array(IMAGENET_MEAN).reshape(1, 3, 1, 1).stop_grad()
        self.std = jt.array(IMAGENET_STD).reshape(1, 3, 1, 1).stop_grad()

    @classmethod
    def from_file(cls, path, input_mode="imagenet"):
        net = cls(input_mode)
        net.load_weights(read_state_dict(path, "VGG19", MISSING_MESSAGE.format(path=path)), path)
        return freeze(net)

    def load_weights(self, state, path="<state>"):
        needed = {k: v for k, v in self.state_dict().items() if k.startswith("features.")}
        missing = [k for k in needed if k not in state]
        if missing:
            raise WeightsFileError(f"{path}: not a VGG19 state dict; missing {few(missing, 4)}.")
        for key, var in needed.items():
            value = state[key]
            value = value.numpy() if hasattr(value, "numpy") else value
            if tuple(value.shape) != tuple(var.shape):
                raise WeightsFileError(f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(var.shape)}.")
            var.assign(jt.array(value))

    def execute(self, x):
        if self.input_mode == "imagenet":
            x = ((x + 1) / 2 - self.mean) / self.std
        outputs = []
        start = 0
        for end in SLICE_ENDS:
            for idx in range(start, end + 1):
                x = self.features[idx](x)
            outputs.append(x)
            start = end + 1
        return outputs
