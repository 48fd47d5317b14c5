"""Import a released SPADE (PyTorch), APF-GAN or COESAK (Jittor) generator checkpoint as an experiment.

    python util/import_ckpt.py --format spade latest_net_G.pth --name ade20k_spade [--checkpoints_dir DIR]
    python util/import_ckpt.py --format apf avg_273_299_net_G.pkl avg_273_299_net_E.pkl --name apf
    python util/import_ckpt.py --format coesak latest_net_G.pkl latest_net_E.pkl [--src_d latest_net_D.pkl] \
        --name coesak

Reads the file(s) without PyTorch (Jittor reads PyTorch's zip format), maps
every tensor to this framework's parameter names (models/source_checkpoints.py),
infers the architecture from the shapes, checks that the mapped tensors fill
exactly the model built from it (every source tensor used, every parameter
filled, equal shapes: otherwise an error naming them, and nothing is written),
and writes CHECKPOINTS_DIR/NAME/imported_net_G.pkl (+ imported_net_E.pkl for APF-GAN's
mask encoder, imported_net_Es.pkl for COESAK's style encoder, imported_net_D.pkl for a
discriminator), a training state for fine-tuning, and opt.txt / opt.json. Then:

    python test_phase.py --name NAME --which_epoch imported --input_path LABELS --output_path OUT
    python train_phase.py --name NAME --continue_train --which_epoch imported --input_path DATA/train ...

Fine-tuning starts at epoch 1 with fresh optimisers, and with a fresh discriminator (--netD, --ndf,
--num_D, --n_layers_D, --norm_D given here) unless one was imported (--src_d: its options are read
from its tensors).

The image size is not stored in these checkpoints: the released
configurations' sizes are used (ADE20K and COCO-Stuff 256x256, Cityscapes
512x256, APF-GAN and COESAK 512x384) unless --crop_size / --aspect_ratio say otherwise
(COESAK's aspect ratio is read from its style projection).
"""

import argparse
import os
import shutil
import sys
import tempfile
import zipfile

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from models import layout  # noqa: E402
from options import base_options  # noqa: E402
from util.core import checkpoint, device  # noqa: E402
from util.core.cli import run_main  # noqa: E402
from util.core.errors import OptionError  # noqa: E402
from models.source_checkpoints import FORMATS, SourceCheckpointError  # noqa: E402

TAG = "imported"
PYTORCH_SUFFIXES = (".pth", ".pt", ".bin")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=base_options.HelpFormatter)
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="spade: NVlabs SPADE latest_net_G.pth (PyTorch); apf: APF-GAN {tag}_net_G.pkl + _net_E.pkl "
                        "(Jittor); coesak: the COESAK team's ECGAN {tag}_net_G.pkl + _net_E.pkl (Jittor)")
    p.add_argument("src", help="the generator checkpoint")
    p.add_argument("src_e", nargs="?", default=None,
                   help="the encoder checkpoint: APF-GAN's {tag}_net_E.pkl (its mask encoder; needed when the "
                        "generator starts from it) or COESAK's (its style encoder; needed for reference photos)")
    p.add_argument("--src_d", default=None, metavar="PATH",
                   help="--format coesak: its discriminator {tag}_net_D.pkl too, for fine-tuning from it")
    p.add_argument("--name", required=True, help="experiment to create: CHECKPOINTS_DIR/NAME")
    p.add_argument("--checkpoints_dir", default="./checkpoints", help="folder holding one sub-folder per experiment")
    p.add_argument("--crop_size", type=base_options.positive_int, default=None,
                   help="network image width (default: the released configuration's)")
    p.add_argument("--aspect_ratio", type=base_options.positive_float, default=None,
                   help="width / height (default: the released configuration's)")
    p.add_argument("--label_edges", type=base_options.switch, default=None, metavar="yes|no",
                   help="whether the last label channel is the (instance) edge map (default: from the released "
                        "configuration with that many channels)")
    p.add_argument("--num_upsampling_layers", choices=tuple(layout.LAYOUTS), default=None,
                   help="the generator layout, when the released configuration's is not the right one (SPADE's "
                        "'normal' and 'more' have the same parameters: by default cityscapes-shaped generators "
                        "are spade_more, the others normal; see train.py --help)")
    p.add_argument("--force", action="store_true", help="overwrite an existing imported checkpoint of NAME")
    p.add_argument("--gpu", choices=device.GPU_MODES, default="off", help="device for the check (CPU by default)")
    base_options.add_discriminator_options(p)
    return p


def read_source(path, fmt, what):
    """The state dict in ``path`` as {name: numpy array}; SourceCheckpointError saying why it cannot be read."""
    import jittor as jt  # noqa: F401  (Jittor pickles may hold Jittor arrays)

    from models.source_checkpoints import as_arrays
    if not os.path.isfile(path):
        raise SourceCheckpointError(f"{path}: {what} file not found.")
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(0, os.path.getsize(path) - len(checkpoint.MAGIC)))
        tail = f.read()
    if fmt == "spade":
        if head != b"PK\x03\x04":
            hint = " (it is a Jittor pickle: use --format apf)" if tail == checkpoint.MAGIC else ""
            raise SourceCheckpointError(f"{path}: not a PyTorch zip checkpoint{hint}. Files saved by PyTorch >= 1.6 "
                                        f"are zip archives; re-save an older one with torch.save(..., "
                                        f"_use_new_zipfile_serialization=True).")
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise SourceCheckpointError(f"{path}: the zip member {bad} is corrupt; the file is damaged.")
        except zipfile.BadZipFile as err:
            raise SourceCheckpointError(f"{path}: not a readable zip archive, the file is truncated or damaged "
                                        f"({err}).") from None
        state = _load_pytorch(jt, path)
    else:
        if head == b"PK\x03\x04":
            raise SourceCheckpointError(f"{path}: a zip archive (a PyTorch checkpoint?), not a Jittor pickle: use "
                                        f"--format spade.")
        state = _load_jittor(path)
    return as_arrays(state, path)


def _load_jittor(path):
    """A Jittor .pkl (pickle + SHA-1 + magic, as jt.save writes it), read whatever the file is named."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return checkpoint.decode(data, path)
    except checkpoint.DamagedFileError as damaged:  # any unreadable file is the user's input problem here
        err = damaged.cause
        if err is None:
            raise SourceCheckpointError(f"{path}: not a readable Jittor checkpoint: its checksum does not match, "
                                        f"the file is truncated or damaged.") from None
        raise SourceCheckpointError(f"{path}: not a readable Jittor checkpoint; the file is truncated or damaged "
                                    f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}).") \
            from None


def _load_pytorch(jt, path):
    """Jittor's PyTorch reader (it needs a .pth/.pt/.bin name: other names are read through a link)."""
    tmpdir = None
    try:
        if not path.endswith(PYTORCH_SUFFIXES):
            tmpdir = tempfile.mkdtemp()
            link = os.path.join(tmpdir, "source.pth")
            os.symlink(os.path.abspath(path), link)
            path_to_read = link
        else:
            path_to_read = path
        return jt.load(path_to_read)
    except SourceCheckpointError:
        raise
    except Exception as err:
        raise SourceCheckpointError(f"{path}: Jittor cannot read this PyTorch checkpoint ({type(err).__name__}: "
                                    f"{str(err).splitlines()[0] if str(err) else 'no message'}).") from None
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def training_options(args, arch):
    """The options (namespace, parser) of the imported experiment, as train_phase.py would hold them."""
    from options import train_options
    return train_options.from_values(input_path="none", name=args.name, checkpoints_dir=args.checkpoints_dir,
                                     netD=args.netD, ndf=args.ndf, num_D=args.num_D, n_layers_D=args.n_layers_D,
                                     norm_D=args.norm_D, **arch)


def map_sources(args):
    """({net: mapped state dict}, [notes]) of the source file(s)."""
    from models import source_checkpoints as sc
    g = read_source(args.src, args.format, "generator")
    if args.format == "spade":
        if args.src_e is not None:
            raise OptionError("--format spade takes one file (latest_net_G.pth); the released SPADE generators have "
                              "no encoder file.")
        mapped, notes = sc.map_spade(g)
        return {"G": mapped}, notes
    if args.src_d is not None and args.format != "coesak":
        raise OptionError("--src_d is for --format coesak (the discriminator of its checkpoint).")
    states, notes = {}, []
    if args.format == "coesak":
        sources = {"G": (args.src, "G", "generator"), "Es": (args.src_e, "E", "style encoder"),
                   "D": (args.src_d, "D", "discriminator")}
        for ours, (path, theirs, what) in sources.items():
            if path is not None:
                states[ours], net_notes = sc.map_coesak(theirs, read_source(path, "coesak", what))
                notes += net_notes
        return states, notes
    states["G"], g_notes = sc.map_apf_generator(g)
    notes += g_notes
    if args.src_e is not None:
        states["E"], e_notes = sc.map_apf_encoder(read_source(args.src_e, "apf", "encoder"))
        notes += e_notes
    return states, notes


def main(argv=None):
    args = build_parser().parse_args(argv)
    device.setup(args.gpu)

    from models.discriminator import DISCRIMINATORS
    from models.encoder import ImageEncoder
    from models.networks import build_networks
    from util.core import checkpoint
    from models.source_checkpoints import compare_states, infer_architecture, infer_discriminator

    folder = os.path.join(args.checkpoints_dir, args.name)
    if os.path.exists(checkpoint.net_path(folder, TAG, "G")) and not args.force:
        raise OptionError(f"{checkpoint.net_path(folder, TAG, 'G')} exists; pass --force to overwrite it, or choose "
                          f"another --name.")
    states, notes = map_sources(args)
    arch, released, arch_notes = infer_architecture(states["G"], args.format, args.src, has_encoder="E" in states,
                                                    crop_size=args.crop_size, aspect_ratio=args.aspect_ratio,
                                                    label_edges=args.label_edges,
                                                    layout=args.num_upsampling_layers,
                                                    e_state=states.get("E", states.get("Es")))
    if "E" in states and not arch["encode_mask"]:
        raise SourceCheckpointError(f"{args.src_e}: the generator {args.src} has its own fc start and uses no mask "
                                    f"encoder; import it without the encoder file.")
    if "D" in states:
        for key, value in infer_discriminator(states["D"], args.src_d).items():
            setattr(args, key, value)
    opt, parser = training_options(args, arch)
    nets = build_networks(opt, with_discriminator=False)
    if "Es" in states:
        nets["Es"] = ImageEncoder(opt)
    if "D" in states:
        nets["D"] = DISCRIMINATORS[opt.netD](opt)
    files = {"G": args.src, "E": args.src_e, "Es": args.src_e, "D": args.src_d}
    for name, net in nets.items():
        compare_states({k: tuple(v.shape) for k, v in net.state_dict().items()}, states[name], files[name])
    sources = [p for p in (args.src, args.src_e, args.src_d) if p]
    opt.imported_from = f"{args.format}: {', '.join(sources)}"
    checkpoint.write_checkpoint(folder, TAG, states, state={
        "imported": args.format, "sources": sources,
        "next_epoch": 1, "next_iter": 0, "total_iters": 0, "phase": "imported"})
    base_options.save_options(opt, parser, folder)
    h = layout.image_height(opt)
    written = list(states)
    print(f"imported {args.format} checkpoint ({released['dataset']}) -> {folder}/{TAG}_net_"
          f"{'{' + ','.join(written) + '}' if len(written) > 1 else 'G'}.pkl")
    for note in notes + arch_notes:
        print(f"  {note}")
    print("inferred options:")
    print(f"  label input: {released['input']} -> --label_nc {opt.label_nc}"
          f"{' --label_edges' if opt.label_edges else ''}{' --dontcare_255' if opt.dontcare_255 else ''} "
          f"({layout.semantic_nc(opt)} channels)")
    for key in ("netG", "ngf", "num_upsampling_layers", "norm_G",
                *(("norm_E",) if "E" in states or "Es" in states else ()), "spade_hidden", "encode_mask", "use_vae",
                *(("z_dim",) if opt.use_vae else ()), "use_seg_noise",
                *(("ndf", "num_D", "n_layers_D", "norm_D") if "D" in states else ())):
        print(f"  --{key} {getattr(opt, key)}")
    print(f"  size {opt.crop_size}x{h} (--crop_size {opt.crop_size} --aspect_ratio {opt.aspect_ratio:.4g})")
    print(f"generate: python test_phase.py --name {args.name} --checkpoints_dir {args.checkpoints_dir} "
          f"--which_epoch {TAG} --input_path LABELS --output_path OUT")
    return 0


if __name__ == "__main__":
    run_main(main)
