"""Released generator checkpoints of the two reference systems, mapped onto this framework.

``spade``: NVlabs SPADE's PyTorch ``latest_net_G.pth`` (ADE20K, Cityscapes,
COCO-Stuff). Its names are ours; the batch-norm counters
``*.num_batches_tracked`` are dropped (Jittor's batch norm has none, and with
a fixed momentum they never enter a computation).

``apf``: APF-GAN's Jittor ``{tag}_net_G.pkl`` + ``{tag}_net_E.pkl``. APF-GAN's
spectral norm never normalised anything (its pre-forward hook computes the
normalised weight and drops it; ``weight`` is the very Var ``weight_orig``),
so its networks trained and generated with the raw ``weight_orig``: that is
imported as a plain ``weight`` (and the networks built without spectral
norm), and the never-updated ``weight_u``/``weight_v`` are dropped. Other differences:
``out_conv_img.*`` is our ``conv_img.*``; every SPADE layer's seg-noise 1x1
convolution has a bias, ours has none. That convolution only ever sees the
one-hot label map (resized nearest, so still one-hot: its channels sum to 1 at
every pixel), hence W s + b = (W + b 1^T) s exactly: the bias is folded into
the weight (b added to every class column). The encoder's VAE heads
``fc_mu.*``/``fc_var.*`` are not used on the mask-encoding path APF-GAN
generates with and are dropped, by name.

``coesak``: the COESAK team's Jittor ECGAN (wqliu657/Jittor-COESAK-Landscape) ``{tag}_net_G.pkl`` +
``{tag}_net_E.pkl`` (+ ``{tag}_net_D.pkl``), written by its ``save_network``: our ``--netG ecgan`` with the
VAE style encoder, and the multiscale discriminator. It inherits APF-GAN's spectral norm, so the raw
``weight_orig`` is imported as ``weight`` as for ``apf``; the generator's ``fc1``, which its forward never uses,
is dropped; the discriminator's ``sequential.discriminator_<i>.models.model<j>`` is our
``discriminator_<i>.model<j>``.

``infer_architecture`` reads the architecture options from the tensor shapes.
Pure NumPy; the files themselves are read by ``util/import_ckpt.py``.
"""

import numpy as np

from models.layout import LAYOUTS
from util.core.checkpoint import describe_state_differences, state_differences
from util.core.errors import CheckpointError, few

FORMATS = ("spade", "apf", "coesak")

# Label input channels of SPADE's released models -> what they are (and what our options make of them).
RELEASED_SPADE = {
    151: dict(dataset="ade20k", label_nc=151, label_edges=False, dontcare_255=True, crop_size=256, aspect_ratio=1.0,
              input="150 classes + dont-care (ADE20K label ids 0..150, 0 = unknown; 255 is read as 150), "
                    "no instance edges"),
    36: dict(dataset="cityscapes", label_nc=35, label_edges=True, dontcare_255=False, crop_size=512,
             aspect_ratio=2.0, num_upsampling_layers="spade_more",
             input="35 Cityscapes label ids + instance-edge channel"),
    184: dict(dataset="coco", label_nc=183, label_edges=True, dontcare_255=True, crop_size=256, aspect_ratio=1.0,
              input="182 COCO-Stuff classes + dont-care (id 182; the value 255 is read as 182) + instance-edge "
                    "channel"),
}
RELEASED_APF = dict(dataset="apf-landscape", dontcare_255=False, crop_size=512, aspect_ratio=4 / 3,
                    input="29 landscape classes (ids 0..28)")
RELEASED_COESAK = dict(RELEASED_APF, dataset="coesak-landscape", num_upsampling_layers="spade_more")
# Up blocks -> layout. SPADE's 'more' has the blocks of 'normal' (its extra upsampling has no parameters):
# the shapes cannot tell them apart, the released configuration (or --num_upsampling_layers) does.
SPADE_LAYOUTS = {4: ("normal", "spade_more"), 5: ("spade_most",)}
APF_LAYOUTS = {4: ("normal",), 5: ("apf_more",)}
LAYOUTS_OF = {"spade": SPADE_LAYOUTS, "apf": APF_LAYOUTS, "coesak": SPADE_LAYOUTS}
SHOWN = 20  # names listed per kind of mismatch
DROPPED_APF_ENCODER_KEYS = ("fc_mu.weight", "fc_mu.bias", "fc_var.weight", "fc_var.bias")


class SourceCheckpointError(CheckpointError):
    """A source checkpoint that is unreadable, of another format, or of an architecture this framework lacks."""


def as_arrays(state, source):
    """{name: numpy array} from a state dict whose values are arrays, Jittor/PyTorch-like tensors or scalars."""
    if not isinstance(state, dict) or not state:
        kind = type(state).__name__ if not isinstance(state, dict) else "an empty dict"
        raise SourceCheckpointError(f"{source}: not a state dict of tensors (it holds {kind}).")
    out, bad = {}, []
    for key, value in state.items():
        if hasattr(value, "numpy") and callable(value.numpy):
            value = value.numpy()
        if isinstance(value, (int, float, np.number)):
            value = np.asarray(value)
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            bad.append(str(key))
            continue
        out[key] = value
    if bad:
        raise SourceCheckpointError(f"{source}: not a state dict of tensors; these entries are something else: "
                                    f"{few(sorted(bad))}.")
    return out


def _float32(value):
    return value.astype(np.float32) if value.dtype.kind == "f" else value


def map_spade(state):
    """(our state dict, [notes]) of a SPADE generator state dict."""
    counters = sorted(k for k in state if k.endswith(".num_batches_tracked"))
    mapped = {k: _float32(v) for k, v in state.items() if k not in set(counters)}
    notes = [f"dropped {len(counters)} batch-norm counters (*.num_batches_tracked)"] if counters else []
    return mapped, notes


def fold_seg_noise_bias(weight, bias, name):
    """The bias-free weight equal to a 1x1 conv (weight [O, C, 1, 1], bias [O]) on one-hot inputs."""
    if weight.ndim != 4 or weight.shape[2:] != (1, 1) or bias.shape != (weight.shape[0],):
        raise SourceCheckpointError(f"{name}: a seg-noise convolution of shape {tuple(weight.shape)} with bias "
                                    f"{tuple(bias.shape)}; only 1x1 kernels (the released APF-GAN setting) can be "
                                    f"imported.")
    folded = weight.astype(np.float64) + bias.astype(np.float64)[:, None, None, None]
    return folded.astype(np.float32)


APF_SPECTRAL_NOTE = ("{n} spectral-norm weights imported as the raw weight_orig, without the never-updated "
                     "weight_u/weight_v: APF-GAN's spectral norm did not normalise, so this is what it computed with "
                     "(the network is built without spectral norm)")
# APF-GAN's discriminator names -> ours, per dotted part: sub-discriminators, their input convolutions, their
# stride-2 layers above model0.
APF_DISCRIMINATOR_PARTS = (("multiscale_discriminator_", "discriminator_"), ("toRGB_extra", "from_rgb_"),
                           ("extra", "down_"))


def apf_key(net, key):
    """Our name of the tensor ``key`` of APF-GAN network ``net`` (G, E or D), or None for what is not imported:
    the never-updated power-iteration vectors ``weight_u``/``weight_v``, the generator's pre-training to-RGB
    heads ``inter_conv_img.*`` (APF-GAN deletes them when pre-training ends), the encoder's VAE heads (unused on
    the mask path)."""
    if key.endswith((".weight_u", ".weight_v")):
        return None
    if key.endswith(".weight_orig"):
        key = key[:-len("_orig")]
    if net == "G":
        if key.startswith("inter_conv_img."):
            return None
        if key.startswith("out_conv_img."):
            return "conv_img." + key[len("out_conv_img."):]
    elif net == "E":
        if key in DROPPED_APF_ENCODER_KEYS:
            return None
    else:
        parts = key.split(".")
        for i, part in enumerate(parts[:2]):
            for theirs, ours in APF_DISCRIMINATOR_PARTS:
                if part.startswith(theirs) and part[len(theirs):].isdigit():
                    parts[i] = ours + part[len(theirs):]
                    break
        key = ".".join(parts)
    return key


def map_apf(net, state):
    """(our state dict, [notes]) of the state dict of APF-GAN network ``net`` (G, E or D). The generator's
    seg-noise biases are folded into their weights."""
    mapped, folded = {}, 0
    for key, value in state.items():
        ours = apf_key(net, key)
        if ours is None:
            continue
        if key.endswith(".seg_noise_var.weight") and key[:-len("weight")] + "bias" in state:
            mapped[ours] = fold_seg_noise_bias(value, state[key[:-len("weight")] + "bias"], key)
            folded += 1
        elif key.endswith(".seg_noise_var.bias") and key[:-len("bias")] + "weight" in state:
            continue  # folded into the weight above
        else:
            mapped[ours] = _float32(value)
    name = {"G": "generator", "E": "encoder", "D": "discriminator"}[net]
    notes = []
    renamed = sorted({k.split(".")[0] for k in state if apf_key(net, k) not in (None, k)
                      and not k.endswith(".weight_orig")})
    if net == "G" and "out_conv_img" in renamed:
        notes.append("renamed out_conv_img.* -> conv_img.*")
    if net == "D" and renamed:
        notes.append("renamed multiscale_discriminator_* -> discriminator_*, toRGB_extra* -> from_rgb_*, "
                     "extra* -> down_*")
    heads = [k for k in state if k.startswith("inter_conv_img.")] if net == "G" else []
    if heads:
        notes.append(f"dropped the {len(heads)} tensors of the pre-training to-RGB heads inter_conv_img.* (APF-GAN "
                     f"deletes them when pre-training ends)")
    dropped = [k for k in DROPPED_APF_ENCODER_KEYS if k in state] if net == "E" else []
    if dropped:
        notes.append(f"dropped the encoder's VAE heads, unused on the mask path: {', '.join(dropped)}")
    if folded:
        notes.append(f"folded the bias of {folded} seg-noise convolutions into their weights (exact: they see "
                     f"one-hot label maps)")
    unwrapped = sum(k.endswith(".weight_orig") for k in state)
    if unwrapped:
        notes.append(f"{name}: " + APF_SPECTRAL_NOTE.format(n=unwrapped))
    return mapped, notes


COESAK_UNUSED_G_KEYS = ("fc1.weight", "fc1.bias")


def coesak_key(net, key):
    """Our name of the tensor ``key`` of COESAK's network ``net`` (G, E or D), or None for what is not imported:
    the never-updated power-iteration vectors and the generator's unused ``fc1``."""
    if key.endswith((".weight_u", ".weight_v")) or (net == "G" and key in COESAK_UNUSED_G_KEYS):
        return None
    if key.endswith(".weight_orig"):
        key = key[:-len("_orig")]
    if net == "D" and key.startswith("sequential."):
        key = key[len("sequential."):].replace(".models.", ".", 1)
    return key


def map_coesak(net, state):
    """(our state dict, [notes]) of the state dict of COESAK's network ``net`` (G, E or D)."""
    mapped = {coesak_key(net, k): _float32(v) for k, v in state.items() if coesak_key(net, k) is not None}
    name = {"G": "generator", "E": "style encoder", "D": "discriminator"}[net]
    notes = []
    unused = [k for k in COESAK_UNUSED_G_KEYS if k in state] if net == "G" else []
    if unused:
        notes.append(f"dropped the generator's {', '.join(unused)}: a layer COESAK's forward never uses")
    if net == "D" and any(k.startswith("sequential.") for k in state):
        notes.append("renamed sequential.discriminator_*.models.model* -> discriminator_*.model*")
    unwrapped = sum(k.endswith(".weight_orig") for k in state)
    if unwrapped:
        notes.append(f"{name}: " + APF_SPECTRAL_NOTE.format(n=unwrapped).replace("APF-GAN's", "COESAK's (APF-GAN's)"))
    return mapped, notes


def map_apf_generator(state):
    """(our state dict, [notes]) of an APF-GAN generator state dict."""
    return map_apf("G", state)


def map_apf_encoder(state):
    """(our mask-encoder state dict, [notes]) of an APF-GAN encoder state dict."""
    return map_apf("E", state)


def map_apf_discriminator(state):
    """(our ``--netD apf_progressive`` state dict, [notes]) of an APF-GAN discriminator state dict."""
    return map_apf("D", state)


def _shape(state, key, source):
    if key not in state:
        raise SourceCheckpointError(f"{source}: no tensor {key}; not a SPADE-style generator "
                                    f"(it has {few(sorted(state))}).")
    return tuple(int(s) for s in state[key].shape)


def infer_architecture(g_state, fmt, source, has_encoder=False, crop_size=None, aspect_ratio=None,
                       label_edges=None, layout=None, e_state=None):
    """(architecture options {key: value}, released configuration, [notes]) read from mapped state dicts.

    ``crop_size``/``aspect_ratio``/``label_edges``/``layout`` override what the
    released configurations suggest (the fc/mask start keeps no image size, and
    SPADE's 'normal' and 'more' have the same parameters).
    """
    shared = _shape(g_state, "head_0.norm_0.mlp_shared.0.weight", source)
    spectral = "head_0.conv_0.weight_orig" in g_state
    conv0 = _shape(g_state, "head_0.conv_0.weight_orig" if spectral else "head_0.conv_0.weight", source)
    if conv0[0] % 16:
        raise SourceCheckpointError(f"{source}: head_0 has {conv0[0]} channels, not 16*ngf.")
    ngf = conv0[0] // 16
    semantic = shared[1]
    kernel = shared[2]
    blocks = sum(1 for i in range(8) if f"up_{i}.conv_0.weight_orig" in g_state or f"up_{i}.conv_0.weight" in g_state)
    layouts = LAYOUTS_OF[fmt].get(blocks)
    if layouts is None:
        known = LAYOUTS_OF[fmt]
        raise SourceCheckpointError(f"{source}: {blocks} up blocks (up_0..); {fmt} generators have " + " or ".join(
            f"{n} ({'/'.join(names)})" for n, names in known.items()) + ".")
    if layout is not None and layout not in layouts:
        raise SourceCheckpointError(f"{source}: --num_upsampling_layers {layout} does not fit its {blocks} up blocks "
                                    f"({' or '.join(layouts)}).")
    norm_kind = "syncbatch" if "head_0.norm_0.param_free_norm.running_mean" in g_state else "instance"
    fc = g_state.get("fc.weight")
    use_vae = fc is not None and fc.ndim == 2
    encode_mask = fc is None
    if encode_mask and not has_encoder:
        raise SourceCheckpointError(f"{source}: the generator has no fc layer, so it starts from a mask encoder; "
                                    f"give the encoder file too (SRC_E).")
    notes = []
    if fmt == "spade":
        released = RELEASED_SPADE.get(semantic)
    else:
        released = dict(RELEASED_COESAK if fmt == "coesak" else RELEASED_APF, label_nc=semantic, label_edges=False)
    if released is None:
        released = dict(dataset="unknown", label_nc=semantic - (1 if label_edges else 0), label_edges=bool(label_edges),
                        dontcare_255=False, crop_size=256, aspect_ratio=1.0, input=f"{semantic} label channels")
        notes.append(f"{semantic} label channels is not one of SPADE's released configurations (151 ade20k, "
                     f"36 cityscapes, 184 coco): assuming {released['label_nc']} classes"
                     f"{' + edge channel' if released['label_edges'] else ''}; set --label_edges, --crop_size and "
                     f"--aspect_ratio if that is wrong")
    edges = released["label_edges"] if label_edges is None else bool(label_edges)
    crop = crop_size or released["crop_size"]
    aspect = aspect_ratio or released["aspect_ratio"]
    if layout is not None:
        mode = layout
        notes.append(f"layout {mode}: from --num_upsampling_layers")
    elif len(layouts) == 1:
        mode = layouts[0]
    else:
        mode = released.get("num_upsampling_layers", layouts[0])
        notes.append(f"layout {mode}: the {released['dataset']} configuration's (the parameters of "
                     f"{' and '.join(layouts)} are the same; give --num_upsampling_layers if that is wrong)")
    if use_vae:
        n = LAYOUTS[mode].upsamplings
        cells = fc.shape[0] // (16 * ngf)
        sw = crop // 2 ** n
        if sw == 0 or cells % sw:
            raise SourceCheckpointError(f"{source}: the style projection fc holds {cells} start cells, which does not "
                                        f"fit a width of {crop}; give --crop_size.")
        aspect = crop / (cells // sw * 2 ** n)
        notes.append(f"aspect ratio {aspect:.4g} read from the size of the style projection fc")
    options = dict(
        label_nc=semantic - (1 if edges else 0), label_edges=edges, dontcare_255=released["dontcare_255"],
        ngf=ngf, crop_size=crop, aspect_ratio=aspect,
        num_upsampling_layers=mode, norm_G=f"{'spectral' if spectral else ''}spade{norm_kind}{kernel}x{kernel}",
        spade_hidden=shared[0], use_vae=use_vae, encode_mask=encode_mask,
        use_seg_noise=any(".seg_noise_var." in k for k in g_state),
        netG="ecgan" if "conv_comb1.weight" in g_state else "spade")
    if use_vae:
        options["z_dim"] = int(fc.shape[1])
    if e_state is not None:
        options["norm_E"] = "spectralinstance" if any(k.endswith(".weight_orig") for k in e_state) else "instance"
    return options, released, notes


def infer_discriminator(d_state, source):
    """The multiscale discriminator's options {ndf, num_D, n_layers_D, norm_D} read from a mapped state dict
    (``discriminator_<i>.model<j>...``; an intermediate convolution without a bias is followed by a norm)."""
    scales = sorted({int(k.split(".")[0][len("discriminator_"):]) for k in d_state
                     if k.startswith("discriminator_") and k.split(".")[0][len("discriminator_"):].isdigit()})
    if not scales or scales != list(range(len(scales))):
        raise SourceCheckpointError(f"{source}: not a multiscale discriminator (no discriminator_0.model0.*); it has "
                                    f"{few(sorted(d_state))}.")
    models = {int(k.split(".")[1][len("model"):]) for k in d_state if k.startswith("discriminator_0.model")}
    first = d_state.get("discriminator_0.model0.0.weight")
    if first is None or first.ndim != 4:
        raise SourceCheckpointError(f"{source}: no input convolution discriminator_0.model0.0.weight.")
    normed = "discriminator_0.model1.0.0.weight" in d_state
    return dict(ndf=int(first.shape[0]), num_D=len(scales), n_layers_D=len(models) - 1,
                norm_D="instance" if normed else "none")


def compare_states(own_shapes, state, source):
    """Raise SourceCheckpointError listing every model parameter the mapped ``state`` does not fill, every
    entry it has that the model lacks, and every shape that differs; ``own_shapes`` {key: shape}."""
    _, missing, unused, wrong = state_differences(own_shapes, state)
    if not (missing or unused or wrong):
        return
    parts = describe_state_differences(own_shapes, state, missing, unused, wrong,
                                       ("model parameters not filled", "source tensors not used",
                                        "shapes that differ (source vs model)"), SHOWN)
    raise SourceCheckpointError(f"{source} does not map onto the architecture inferred from it; nothing was "
                                f"written.\n" + "\n".join(parts))
