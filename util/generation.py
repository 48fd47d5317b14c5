"""Loading a trained generator and turning label maps into images.

Used by test_phase.py (and later by model selection): ``load_generator``
builds the networks from the options and fills them from a checkpoint;
``generate_folder`` writes one image per label map, named after it, at the
label map's own size. The style code z of an image depends only on the seed
and the image's file name; seg noise (``--use_seg_noise``) depends on the seed
and the file names of the batch, so with batch size 1 every output depends only
on (seed, checkpoint, file name).
With the optional pure-colour switch (``pure``, a ``data.pure_colour.PureColour``)
the label map is read again at its own size after the resize back and the
switch is applied to each image; its photo choice also depends only on
(seed, file name).
"""

import os
import zlib

import jittor as jt
import numpy as np

from data.datasets import LabelFolderDataset, raise_batch_errors
from data.image_io import read_label, save_image
from data.transforms import array_to_image, resize_image
from models.networks import build_networks, is_seg_noise, load_state, one_hot
from options.base_options import experiment_dir, image_height
from util import checkpoint
from util.errors import CheckpointError
from util.seeding import derive_seed, seed_everything


def load_generator(opt):
    """Networks needed for generation (G, and E with --encode_mask), in eval mode.

    Checkpoints saved before seg noise was switched on (pre-training epochs of
    a recipe whose fine-tuning adds it) load too: their seg-noise parameters
    stay zero, so they generate exactly as they were trained.
    """
    folder = experiment_dir(opt)
    tag = str(opt.which_epoch)
    if not os.path.isfile(checkpoint.net_path(folder, tag, "G")):
        tags = checkpoint.available_tags(folder)
        hint = f"available: {', '.join(tags)}" if tags else "no checkpoints there at all"
        raise CheckpointError(f"{checkpoint.net_path(folder, tag, 'G')}: no generator checkpoint for "
                              f"--which_epoch {tag} ({hint}).")
    nets = build_networks(opt, with_discriminator=False)
    for name, net in nets.items():
        state = checkpoint.read_net(folder, tag, name)
        if name == "G":
            checkpoint.check_full_size_generator(state, checkpoint.net_path(folder, tag, name))
        # a checkpoint from before seg noise was switched on (pre-training) lacks its zero-initialised
        # parameters: it generates as trained, without noise
        load_state(net, state, checkpoint.net_path(folder, tag, name), may_be_new=is_seg_noise)
        net.eval()
    return nets


def style_codes(names, seed, z_dim):
    """One N(0, 1) code per image, from (seed, file name)."""
    codes = [np.random.RandomState(derive_seed(seed, zlib.crc32(n.encode()))).randn(z_dim) for n in names]
    return jt.array(np.stack(codes).astype(np.float32))


def generate_batch(nets, opt, label, names, seed):
    seg = one_hot(label, opt.label_nc)
    z = style_codes(names, seed, opt.z_dim) if opt.use_vae else None
    mask_features = nets["E"](seg) if "E" in nets else None
    with jt.no_grad():
        return nets["G"](seg, z=z, mask_features=mask_features)


def output_name(label_name, image_format):
    return os.path.splitext(label_name)[0] + "." + image_format


def generate_folder(nets, opt, input_dir, output_dir, image_format="jpg", quality=95, progress=None,
                    pure=None):
    """Generate an image for every label map in ``input_dir``; returns the written paths.

    ``pure``: an optional ``data.pure_colour.PureColour``, applied to every image at
    the label map's own size; its ``used`` records the images it changed.
    """
    dataset = LabelFolderDataset(input_dir, opt.label_nc, opt.crop_size, image_height(opt),
                                 max_size=opt.max_dataset_size, batch_size=opt.batchSize,
                                 num_workers=opt.nThreads)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for batch in dataset:
        raise_batch_errors(batch)
        # Seg noise is drawn per batch: from the seed and the batch's file names, so with
        # --batchSize 1 (the default) every image depends only on (seed, its name).
        seed_everything(derive_seed(opt.seed, *(zlib.crc32(name.encode()) for name in batch["path"])))
        fake = generate_batch(nets, opt, batch["label"], batch["path"], opt.seed).numpy()
        for arr, name, size in zip(fake, batch["path"], batch["orig_size"].numpy()):
            rgb = resize_image(array_to_image(arr), tuple(int(s) for s in size))
            if pure is not None:
                rgb = pure.apply(rgb, read_label(os.path.join(input_dir, name), opt.label_nc), name, opt.seed)
            path = os.path.join(output_dir, output_name(name, image_format))
            save_image(path, rgb, quality=quality)
            written.append(path)
        if progress is not None:
            progress.update(len(batch["path"]))
    return written
