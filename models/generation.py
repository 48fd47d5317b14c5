"""Loading a trained generator and turning label maps into images.

Used by test_phase.py, test.py and model selection: ``load_generator``
builds the networks from the options and fills them from a checkpoint (from
its EMA networks G_ema, E_ema, Es_ema when it has them, unless --no_ema:
``generator_files``; the returned ``GenerationNetworks`` says which);
``generate_folder`` writes one image per label map, named after it, at the
label map's own size. Without a reference photo the style code z of an image
(``--use_vae`` models) is drawn from N(0, 1) by the seed and the image's file
name; with one (the style track, ``StyleReferences`` of ``data.references``)
it is the style encoder's mean code of that photo, or a sample of its
distribution drawn by (seed, file name) with ``sample_style``. Seg noise
(``--use_seg_noise``) depends on the seed and the file names of the batch, so
with batch size 1 every output depends only on (seed, checkpoint, file name,
reference photo). The optional colour transfer (``data.colour_transfer``) is
applied to each image at its label map's size, towards its reference photo.
With the optional pure-colour switch (``pure``, a ``data.pure_colour.PureColour``)
the label map is read again at its own size after the resize back and the
switch is applied to each image; its photo choice also depends only on
(seed, file name).
"""

import os
import zlib

import jittor as jt
import numpy as np

from data.colour_transfer import TRUNCATES_GENERATED
from data.datasets import LabelFolderDataset, raise_batch_errors
from data.image_io import read_image, read_label, save_image
from data import references
from data.references import transfer_toward
from data.transforms import array_to_image, image_to_array, resize_image
from models.encoder import ImageEncoder
from models.layout import image_height
from models.networks import build_networks, is_seg_noise, load_state, semantic_input
from util.core import checkpoint
from util.core.errors import CheckpointError
from util.core.seeding import derive_seed, seed_everything


class GenerationNetworks(dict):
    """What ``load_generator`` returns: {role: network} for the roles G, E, Es, with ``ema`` (True when they
    were filled from the checkpoint's EMA networks G_ema, E_ema, Es_ema) and ``note`` (one line saying which
    files of the checkpoint are used, for the scripts' output)."""

    def __init__(self, nets, ema, note):
        super().__init__(nets)
        self.ema, self.note = ema, note


def generator_files(opt, roles):
    """({role: network name in the checkpoint}, note) for the generation networks ``roles`` (G, E, Es) of
    checkpoint --which_epoch: their EMA networks (G_ema, ...) when the checkpoint has all of them
    (``util.core.checkpoint.networks_of``) and --no_ema is not given, otherwise the networks themselves."""
    folder, tag = checkpoint.experiment_dir(opt), str(opt.which_epoch)

    def files(names):
        return ", ".join(os.path.basename(checkpoint.net_path(folder, tag, name)) for name in names)

    ema = {role: checkpoint.ema_name(role) for role in roles}
    networks = checkpoint.networks_of(folder, tag)
    have = [name for name in ema.values() if name in networks]
    if have and len(have) == len(ema) and not getattr(opt, "no_ema", False):
        return ema, f"using the EMA generator of checkpoint {tag} ({files(ema.values())})"
    if not have:
        why = "the checkpoint has no EMA generator"
    elif len(have) == len(ema):
        why = "--no_ema"
    else:
        why = f"the checkpoint has {', '.join(have)} but no {', '.join(n for n in ema.values() if n not in have)}"
    return {role: role for role in roles}, f"using the raw generator of checkpoint {tag} ({files(roles)}; {why})"


def load_generator(opt, style_encoder=False, files=None):
    """Networks needed for generation (G, E with --encode_mask, and the style encoder Es when
    ``style_encoder`` and the model has one), in eval mode, as a ``GenerationNetworks``: filled from the
    checkpoint's EMA networks when it has them (``generator_files``, or its answer ``files`` when the caller
    has it already; --no_ema: the raw ones).

    Checkpoints saved before seg noise was switched on (pre-training epochs of
    a recipe whose fine-tuning adds it) load too: their seg-noise parameters
    stay zero, so they generate exactly as they were trained.
    """
    folder = checkpoint.experiment_dir(opt)
    tag = str(opt.which_epoch)
    if not os.path.isfile(checkpoint.net_path(folder, tag, "G")):
        raise CheckpointError(f"{checkpoint.net_path(folder, tag, 'G')}: no generator checkpoint for "
                              f"--which_epoch {tag} ({checkpoint.available_hint(folder)}).")
    nets = build_networks(opt, with_discriminator=False)
    if style_encoder and opt.use_vae:
        if not os.path.isfile(checkpoint.net_path(folder, tag, "Es")):
            raise CheckpointError(f"{checkpoint.net_path(folder, tag, 'Es')}: checkpoint {tag} has no style encoder, "
                                  f"which reference photos need; generate without references (--ref_json none) "
                                  f"or use a checkpoint of the training run.")
        nets["Es"] = ImageEncoder(opt)
    sources, note = files if files is not None else generator_files(opt, list(nets))
    for role, net in nets.items():
        path = checkpoint.net_path(folder, tag, sources[role])
        state = checkpoint.read_net(folder, tag, sources[role])
        if role == "G":
            checkpoint.check_full_size_generator(state, path)
        # a checkpoint from before seg noise was switched on (pre-training) lacks its zero-initialised
        # parameters: it generates as trained, without noise
        load_state(net, state, path, may_be_new=is_seg_noise)
        net.eval()
    return GenerationNetworks(nets, sources["G"] != "G", note)


def name_noise(name, seed, z_dim):
    """N(0, 1) noise of one image, from (seed, file name)."""
    return np.random.RandomState(derive_seed(seed, zlib.crc32(name.encode()))).randn(z_dim)


class ReferenceCodes:
    """Style codes of reference photos: the style encoder's (mu, logvar) of each photo, computed once."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.moments = {}

    def of(self, photo):
        if photo not in self.moments:
            image = jt.array(image_to_array(read_image(photo))[None])
            with jt.no_grad():
                mu, logvar = self.encoder(image)
            self.moments[photo] = (mu.numpy()[0].astype(np.float64), logvar.numpy()[0].astype(np.float64))
        return self.moments[photo]

    def code(self, photo, name, seed, sample):
        """The mean code of ``photo``, or with ``sample`` a draw mu + sigma * eps, eps from (seed, name)."""
        mu, logvar = self.of(photo)
        if not sample:
            return mu
        return mu + np.exp(0.5 * logvar) * name_noise(name, seed, len(mu))


def batch_codes(names, seed, z_dim, photos=None, reference_codes=None, sample=False):
    """z for a batch: the reference photo's code where ``photos`` has one, else N(0, 1) from (seed, name)."""
    photos = photos or {}
    codes = [reference_codes.code(photos[n], n, seed, sample) if n in photos else name_noise(n, seed, z_dim)
             for n in names]
    return jt.array(np.stack(codes).astype(np.float32))


def generate_batch(nets, opt, label, names, seed, photos=None, reference_codes=None):
    """Images for a batch of label maps; ``photos`` {name: reference photo} and ``reference_codes``
    (a ``ReferenceCodes``) give the style codes of the names that have a reference."""
    seg = semantic_input(label, opt)
    z = None
    if opt.use_vae:
        z = batch_codes(names, seed, opt.z_dim, photos, reference_codes, opt.sample_style)
    mask_features = nets["E"](seg) if "E" in nets else None
    with jt.no_grad():
        return nets["G"](seg, z=z, mask_features=mask_features)


def output_name(label_name, image_format):
    return os.path.splitext(label_name)[0] + "." + image_format


def generate_folder(nets, opt, input_dir, output_dir, image_format="jpg", quality=95, progress=None,
                    pure=None, style=None):
    """Generate an image for every label map in ``input_dir``; returns the written paths.

    ``pure``: an optional ``data.pure_colour.PureColour``, applied to every image at
    the label map's own size; its ``used`` records the images it changed.
    ``style``: optional ``data.references.StyleReferences``; the label maps it gives a
    photo take their style code from it (needs ``nets["Es"]`` for ``use_vae``
    models) and, with ``opt.color_transfer``, are colour-transferred towards it.
    """
    photos = style.photos if style is not None else {}
    transfer = opt.color_transfer if photos else "none"
    reference_codes = ReferenceCodes(nets["Es"]) if photos and opt.use_vae else None
    dataset = LabelFolderDataset(input_dir, opt.label_nc, opt.crop_size, image_height(opt),
                                 max_size=opt.max_dataset_size, batch_size=opt.batchSize,
                                 num_workers=opt.nThreads, dontcare_255=getattr(opt, "dontcare_255", False))
    os.makedirs(output_dir, exist_ok=True)
    written = []
    with dataset:
        for batch in dataset:
            raise_batch_errors(batch)
            # Seg noise is drawn per batch: from the seed and the batch's file names, so with
            # --batchSize 1 (the default) every image depends only on (seed, its name).
            seed_everything(derive_seed(opt.seed, *(zlib.crc32(name.encode()) for name in batch["path"])))
            fake = generate_batch(nets, opt, batch["label"], batch["path"], opt.seed, photos,
                                  reference_codes).numpy()
            for arr, name, size in zip(fake, batch["path"], batch["orig_size"].numpy()):
                truncate = transfer in TRUNCATES_GENERATED and name in photos
                rgb = resize_image(array_to_image(arr, truncate), tuple(int(s) for s in size))
                label = None
                if pure is not None or (transfer != "none" and name in photos):
                    label = read_label(os.path.join(input_dir, name), opt.label_nc,
                                       getattr(opt, "dontcare_255", False))
                if transfer != "none" and name in photos:
                    rgb = transfer_toward(transfer, rgb, label, photos[name], opt.label_nc)[0].image
                if pure is not None:
                    rgb = pure.apply(rgb, label, name, opt.seed)
                path = os.path.join(output_dir, output_name(name, image_format))
                save_image(path, rgb, quality=quality)
                written.append(path)
            if progress is not None:
                progress.update(len(batch["path"]))
    return written


def generate_from_options(opt, notes=(), saved=None, use_cuda=False):
    """One seeded generation run with parsed generation options, reporting on the console: every label map
    of --input_path to an image in --output_path. ``saved``: the experiment's saved options (for the
    training photos of the style track). Returns the written paths."""
    import sys

    from tqdm import tqdm

    from data.folders import test_labels
    from data.pure_colour import from_options

    labels = test_labels(opt.input_path, opt.max_dataset_size)
    total = len(labels)
    # bad references or a missing or bad dictionary stop here, before any generation
    style, style_notes = references.from_options(opt, [os.path.basename(p) for p in labels], saved)
    for note in [*notes, *style_notes]:
        print(note)
    pure = from_options(opt)
    nets = load_generator(opt, style_encoder=style is not None)
    print(nets.note)
    print(f"generating {total} images with {opt.name} (checkpoint {opt.which_epoch}) on "
          f"{'GPU' if use_cuda else 'CPU'} -> {opt.output_path}")
    with tqdm(total=total, desc="generating", dynamic_ncols=True, file=sys.stderr) as bar:
        written = generate_folder(nets, opt, opt.input_path, opt.output_path, opt.image_format,
                                  opt.jpeg_quality, progress=bar, pure=pure, style=style)
    print(f"wrote {len(written)} images to {opt.output_path}")
    if pure is not None:
        print(f"{len(pure.used)} of {len(written)} images used the pure-colour dictionary")
    return written
