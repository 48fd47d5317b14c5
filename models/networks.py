"""Building the networks of an experiment and initialising their weights."""

import math

import jittor as jt
from jittor import nn

from models.convolution import set_cpu_conv
from models.discriminator import DISCRIMINATORS
from models.encoder import ImageEncoder, MaskEncoder
from models.generator import SPADEGenerator
from models.normalization import SPADE, SpectralNormed
from util.core.checkpoint import EMA_SOURCES, describe_state_differences, ema_name, state_differences


def init_weights(net, gain=0.02):
    """Xavier-normal (gain 0.02) for convolution and linear weights, zero biases."""
    for module in net.modules():
        weight = None
        if isinstance(module, SpectralNormed):
            weight = module.weight_orig
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight
        if weight is None:
            continue
        fan_out = weight.shape[0] * (int(weight.numel()) // (weight.shape[0] * weight.shape[1]))
        fan_in = int(weight.numel()) // weight.shape[0]
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        weight.assign(jt.randn(weight.shape) * std)
        bias = getattr(module, "bias", None)
        if bias is not None:
            bias.assign(jt.zeros(bias.shape))
    for module in net.modules():
        if isinstance(module, SPADE) and module.seg_noise_var is not None:
            module.seg_noise_var.weight.assign(jt.zeros(module.seg_noise_var.weight.shape))
    return net


def network_names(opt, with_discriminator):
    """G always, E (mask encoder) with --encode_mask, Es (style encoder) with --use_vae when training,
    D when ``with_discriminator``."""
    names = ["G"]
    if opt.encode_mask:
        names.append("E")
    if opt.use_vae and with_discriminator:
        names.append("Es")
    if with_discriminator:
        names.append("D")
    return names


def ema_network_names(opt):
    """With --ema_decay > 0: the names of the EMA copies a training run keeps of its G, E and Es (G_ema,
    E_ema, Es_ema; ``util.core.checkpoint.ema_name``), saved beside them; otherwise none."""
    if getattr(opt, "ema_decay", 0) <= 0:
        return []
    return [ema_name(name) for name in network_names(opt, with_discriminator=True) if name in EMA_SOURCES]


def generator_class(opt):
    """The generator class selected by --netG."""
    if getattr(opt, "netG", "spade") == "spade_edge":
        from models.edge_generator import EdgeGuidedGenerator
        return EdgeGuidedGenerator
    if getattr(opt, "netG", "spade") == "ecgan":
        from models.ecgan_generator import ECGANGenerator
        return ECGANGenerator
    return SPADEGenerator


def build_networks(opt, with_discriminator, progressive_levels=1):
    """Return {name: network} for ``network_names``; G gets the to-RGB heads of
    ``progressive_levels`` resolution levels when that is more than 1."""
    set_cpu_conv(opt.cpu_conv)
    builders = {"G": lambda: generator_class(opt)(opt, progressive_levels), "E": lambda: MaskEncoder(opt),
                "Es": lambda: ImageEncoder(opt), "D": lambda: DISCRIMINATORS[getattr(opt, "netD", "multiscale")](opt)}
    nets = {name: init_weights(builders[name]()) for name in network_names(opt, with_discriminator)}
    # Jittor draws random numbers when an op runs, not when it is created: run the
    # initialisation now, under the caller's seed, not at some later first use.
    jt.sync_all()
    return nets


def one_hot(label, num_classes):
    """[N, H, W] integer class ids -> [N, C, H, W] float32 one-hot."""
    classes = jt.arange(num_classes).reshape(1, num_classes, 1, 1)
    return (label.unsqueeze(1).int32() == classes).float32()


def label_edge_map(label):
    """[N, H, W] class ids -> [N, 1, H, W] float32: 1 where a pixel differs from its left, right, upper or
    lower neighbour (the rule of SPADE's instance-edge channel, applied to the label map)."""
    t = label.unsqueeze(1).int32()
    dx = (t[:, :, :, 1:] != t[:, :, :, :-1]).float32()
    dy = (t[:, :, 1:, :] != t[:, :, :-1, :]).float32()
    count = nn.pad(dx, (1, 0, 0, 0)) + nn.pad(dx, (0, 1, 0, 0)) + nn.pad(dy, (0, 0, 1, 0)) + nn.pad(dy, (0, 0, 0, 1))
    return (count > 0).float32()


def semantic_input(label, opt):
    """The networks' label input: the one-hot map of ``label`` [N, H, W], with --label_edges followed by
    its edge map (``models.layout.semantic_nc(opt)`` channels)."""
    seg = one_hot(label, opt.label_nc)
    if getattr(opt, "label_edges", False):
        seg = jt.concat([seg, label_edge_map(label)], dim=1)
    return seg


def is_seg_noise(key):
    """Seg-noise parameters: zero when built, so a checkpoint without them means 'no seg noise'."""
    return "seg_noise_var" in key


def load_state(net, state, source, may_be_new=None):
    """Load a state dict strictly: every parameter filled, every entry used, shapes equal.

    ``may_be_new(key)`` names parameters the state may lack (modules added
    on purpose, e.g. seg noise); they keep their initial values and are
    returned. Raises CheckpointError listing the offending names.
    """
    from util.core.errors import CheckpointError
    own = net.state_dict()
    shapes = {k: tuple(v.shape) for k, v in own.items()}
    new, missing, unused, wrong = state_differences(shapes, state, may_be_new)
    if missing or unused or wrong:
        parts = describe_state_differences(shapes, state, missing, unused, wrong,
                                           ("missing", "unexpected", "shape mismatch (checkpoint vs model)"))
        raise CheckpointError(f"{source} does not fit the model built from the options ({'; '.join(parts)}). "
                              f"Check that the architecture options match the ones used for training.")
    for key, var in own.items():
        if key in state:
            var.assign(jt.array(state[key]).astype(var.dtype))
    return new
