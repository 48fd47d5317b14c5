"""Run NVlabs/SPADE's own code on small random networks and store what it computes, for
tests/test_reference_parity.py.

Not run by the test suite (it needs PyTorch and a SPADE checkout). Made with
torch 2.14.1 and torchvision 0.29.1 in a separate venv (the versions
tests/data/make_inception_manifests.py uses):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.14.1 torchvision==0.29.1 "numpy<2" pillow
    git clone https://github.com/NVlabs/SPADE /tmp/spade
    /tmp/torchenv/bin/python tests/data/make_spade_reference.py --spade_repo /tmp/spade

It imports SPADE's packages from the checkout (none of its code is copied
here) with three stand-ins that running it on a CPU without downloads needs:
``models.networks.sync_batchnorm`` (a git submodule SPADE does not ship)
is PyTorch's BatchNorm2d, which is what the synchronised one computes in one
process; ``Module.cuda`` returns the module; torchvision's VGG19 is built
without downloading weights and gets generated ones.

Every tensor starts at ``reference_nets.generated_tensor`` of its name. The
generators are then calibrated as SPADE would leave a trained one: 20
train-mode passes without gradient (power iterations converge, batch-norm
running statistics settle), eval mode, and ``conv_img`` scaled so the output
has a standard deviation of about 0.4 (neither flat nor saturated). Only the
small tensors are stored (``reference_nets.split_state``); the test rebuilds
the rest from the names.

It writes ``spade_reference.npz`` next to itself:

* ``commit``: the SPADE commit that ran;
* ``g/<config>/...``: for ade20k (151 channels: ids 0..150 of its files,
  'normal', 256x256), cityscapes (35 ids + instance-edge channel, SPADE's
  'more', 512x256) and coco (182 + dont-care + edge channel, 'normal',
  256x256), ngf 8: the generator state, the label map
  (``reference_nets.label_map``, the instance map is the label map itself),
  and the eval forward ``output`` [1, 3, H, W] run on what SPADE's own data
  pipeline (its dataset class, from PNG files) makes of that label map;
* ``train/...``: one training iteration of ``Pix2PixTrainer`` (29 classes, no
  instance map, 128x96, ngf 8, ndf 8, num_D 2, n_layers_D 3, batch 2, hinge,
  feature matching and VGG19 with generated weights, TTUR Adam): the starting
  states are all generated; ``losses`` (GAN, GAN_Feat, VGG, D_Fake, D_real),
  the discriminator's forward on the starting weights (``d_forward/<scale>/
  <layer>``: the last layer of each scale whole, the others as
  ``reference_nets.fingerprint``), the gradients of the step
  (``g_grad``/``d_grad``: small tensors whole, large ones as fingerprints) and
  the states after it (``g_after``/``d_after``, the same way).
"""

import argparse
import importlib.util
import os
import sys
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "spade_reference.npz")


def _load(name):
    """tests/data/NAME.py as module NAME, without putting this folder on sys.path (SPADE's checkout goes there)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    sys.modules[name] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nets = _load("reference_nets")
_helpers = _load("runner_helpers")
commit_of, fingerprinted = _helpers.commit_of, _helpers.fingerprinted

SEED = 15
VGG_GAIN = float(np.sqrt(2.0))  # keeps random ReLU features from fading out over 16 layers
# config -> (SPADE command-line options, label ids drawn from [0, n), height, width)
GENERATOR_CONFIGS = {
    "ade20k": (["--dataset_mode", "ade20k"], 151, 256, 256),
    "cityscapes": (["--dataset_mode", "cityscapes"], 35, 256, 512),
    "coco": (["--dataset_mode", "coco"], 183, 256, 256),
}
TRAIN_OPTIONS = ["--dataset_mode", "custom", "--label_nc", "29", "--no_instance", "--crop_size", "128",
                 "--load_size", "128", "--aspect_ratio", str(4 / 3), "--ngf", "8", "--ndf", "8", "--num_D", "2",
                 "--n_layers_D", "3", "--batchSize", "2"]
TRAIN_SIZE = (2, 96, 128)  # batch, height, width
OUTPUT_STD = 0.4


def import_spade(repo):
    """SPADE's packages importable on a CPU without downloads (see the module docstring)."""
    import torch
    import torchvision
    sync = types.ModuleType("models.networks.sync_batchnorm")
    sync.SynchronizedBatchNorm2d = torch.nn.BatchNorm2d
    sync.DataParallelWithCallback = torch.nn.DataParallel
    sys.modules["models.networks.sync_batchnorm"] = sync
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    real_vgg19 = torchvision.models.vgg19

    def vgg19_generated(*args, **kwargs):
        model = real_vgg19(weights=None)
        state = {k: torch.from_numpy(nets.generated_tensor(SEED, "vgg19." + k, v.shape, VGG_GAIN))
                 for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        return model
    torchvision.models.vgg19 = vgg19_generated
    sys.path.insert(0, repo)


def spade_options(extra, workdir, name):
    from options.train_options import TrainOptions
    argv = ["spade", "--gpu_ids", "-1", "--checkpoints_dir", workdir, "--name", name, "--dataroot", workdir,
            "--nThreads", "0", *extra]
    if "custom" in extra:
        argv += ["--label_dir", workdir, "--image_dir", workdir]
    saved, sys.argv = sys.argv, argv
    try:
        opt = TrainOptions().parse()
    finally:
        sys.argv = saved
    return opt


def load_generated(net, seed):
    import torch
    state = {k: torch.from_numpy(nets.generated_tensor(seed, k, v.shape)) for k, v in net.state_dict().items()}
    net.load_state_dict(state)


def state_numpy(net):
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def calibrate(netG, semantics):
    """Power iterations and batch-norm statistics as training leaves them, then the output scaled to std ~0.4."""
    import torch
    netG.train()
    with torch.no_grad():
        for _ in range(20):
            netG(semantics)
    netG.eval()
    with torch.no_grad():
        for _ in range(6):
            std = float(netG(semantics).std())
            netG.conv_img.weight.mul_(OUTPUT_STD / std)
            netG.conv_img.bias.mul_(OUTPUT_STD / std)
        return float(netG(semantics).std())


def write_cityscapes_tree(root, label):
    """One label map as SPADE's Cityscapes dataset reads it (labelIds, instanceIds = the label map, photo)."""
    from PIL import Image
    for sub, suffix, array in (("gtFine", "gtFine_labelIds", label), ("gtFine", "gtFine_instanceIds", label),
                               ("leftImg8bit", "leftImg8bit", np.zeros((*label.shape, 3), np.uint8))):
        folder = os.path.join(root, sub, "val", "city")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(array.astype(np.uint8)).save(os.path.join(folder, f"city_000000_000000_{suffix}.png"))


def write_folder_tree(root, label, instances):
    """One label map as SPADE's custom dataset reads it (labels/, images/ and, with instances, instances/)."""
    from PIL import Image
    for sub, array, suffix in (("labels", label, ".png"), ("images", np.zeros((*label.shape, 3)), ".jpg"),
                               ("instances", label if instances else None, ".png")):
        if array is not None:
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            Image.fromarray(array.astype(np.uint8)).save(os.path.join(root, sub, "x" + suffix))


def pipeline_batch(config, opt, label, workdir):
    """SPADE's own dataset class run on PNG files holding ``label``: the data dict its test loop would feed."""
    import data as spade_data
    opt.phase, opt.serial_batches, opt.no_flip, opt.isTrain = "test", True, True, False
    opt.load_size = opt.crop_size
    if config == "cityscapes":
        write_cityscapes_tree(workdir, label)
        opt.dataroot = workdir
    else:
        # The custom dataset reads the files the way SPADE's ADE20K and COCO datasets do. ADE20K files hold the
        # ids 0..150 as they are (its dataset's postprocess, run below, computes a shift by one but never stores
        # it); COCO files hold 255 for 'unknown' (read as label_nc, as in every SPADE dataset) and have instance
        # maps (here: the label file itself, so the edges are those of the label map).
        stored = label if config == "ade20k" else np.where(label == opt.label_nc, 255, label)
        write_folder_tree(workdir, stored, instances=not opt.no_instance)
        opt.label_dir, opt.image_dir = os.path.join(workdir, "labels"), os.path.join(workdir, "images")
        opt.instance_dir = "" if opt.no_instance else os.path.join(workdir, "instances")
        opt.dataset_mode = "custom"
    dataset = spade_data.find_dataset_using_name(opt.dataset_mode)()
    dataset.initialize(opt)
    item = dataset[0]
    if config == "ade20k":
        from data.ade20k_dataset import ADE20KDataset
        ADE20KDataset.postprocess(dataset, item)
    batch = {k: (v.unsqueeze(0) if hasattr(v, "unsqueeze") else v) for k, v in item.items()}
    got = batch["label"][0, 0].numpy().astype(np.int64)
    assert np.array_equal(got, label), f"{config}: SPADE's pipeline read different label ids"
    return batch


def shapes_json(state):
    import json
    return np.array(json.dumps({k: list(v.shape) for k, v in state.items()}))


def generator_case(config, workdir):
    import torch
    from models.pix2pix_model import Pix2PixModel
    extra, num_ids, h, w = GENERATOR_CONFIGS[config]
    opt = spade_options([*extra, "--ngf", "8", "--no_vgg_loss"], workdir, config)
    model = Pix2PixModel(opt)
    seed = f"{SEED}:{config}"
    load_generated(model.netG, seed)
    label = nets.label_map(SEED, 1, h, w, num_ids)[0]
    batch = pipeline_batch(config, opt, label, os.path.join(workdir, "data"))
    semantics, _ = model.preprocess_input(dict(batch, image=torch.zeros(1, 3, h, w)))
    std = calibrate(model.netG, semantics)
    with torch.no_grad():
        output = model.netG(semantics).numpy()
    stored, shapes = nets.split_state(state_numpy(model.netG), seed)
    print(f"{config}: {opt.semantic_nc} label channels, {opt.num_upsampling_layers}, {w}x{h}, output std {std:.3f}, "
          f"{len(stored)} of {len(shapes)} tensors stored")
    return {**nets.pack(f"g/{config}/state", stored, shapes), f"g/{config}/label": label.astype(np.int16),
            f"g/{config}/output": output, f"g/{config}/seed": np.array(seed),
            f"g/{config}/num_upsampling_layers": np.array(opt.num_upsampling_layers)}


def gradients(net):
    return {k: p.grad.detach().numpy().copy() for k, p in net.named_parameters() if p.grad is not None}


def training_case(workdir):
    import torch
    from trainers.pix2pix_trainer import Pix2PixTrainer
    opt = spade_options(TRAIN_OPTIONS, workdir, "train")
    trainer = Pix2PixTrainer(opt)
    model = trainer.pix2pix_model_on_one_gpu
    g_seed, d_seed = f"{SEED}:train:G", f"{SEED}:train:D"
    load_generated(model.netG, g_seed)
    load_generated(model.netD, d_seed)
    n, h, w = TRAIN_SIZE
    label = nets.label_map(SEED, n, h, w, 29)
    image = nets.photos(SEED, n, h, w)
    batch = {"label": torch.from_numpy(label[:, None].astype(np.float32)), "instance": torch.tensor(0),
             "image": torch.from_numpy(image), "path": ["a", "b"]}
    out = {"train/g_seed": np.array(g_seed), "train/d_seed": np.array(d_seed),
           "train/g_shapes": shapes_json(state_numpy(model.netG)),
           "train/d_shapes": shapes_json(state_numpy(model.netD)),
           "train/label": label.astype(np.int16), "train/image": image}
    semantics, real = model.preprocess_input(dict(batch))
    with torch.no_grad():
        pred = model.netD(torch.cat([semantics, real], dim=1))
    for i, scale in enumerate(pred):
        for j, feature in enumerate(scale):
            f = feature.numpy()
            key = f"train/d_forward/{i}/{j}"
            if j == len(scale) - 1:
                out[key] = f
            else:
                out[key + "#fingerprint"] = nets.fingerprint(f)
    load_generated(model.netD, d_seed)  # the forward above ran power iterations: start from the generated state
    trainer.run_generator_one_step(batch)
    trainer.run_discriminator_one_step(batch)
    losses = {k: float(v.detach().mean()) for k, v in trainer.get_latest_losses().items()}
    print("training iteration losses:", ", ".join(f"{k} {v:.6f}" for k, v in sorted(losses.items())))
    out["train/loss_names"] = np.array(sorted(losses))
    out["train/losses"] = np.array([losses[k] for k in sorted(losses)])
    g_grads, d_grads = gradients(model.netG), gradients(model.netD)
    out.update(fingerprinted("train/g_grad", g_grads))
    out.update(fingerprinted("train/d_grad", d_grads))
    out.update(fingerprinted("train/g_after", state_numpy(model.netG)))
    out.update(fingerprinted("train/d_after", state_numpy(model.netD)))
    out["train/lr"] = np.array(opt.lr)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spade_repo", required=True, help="a checkout of https://github.com/NVlabs/SPADE")
    parser.add_argument("--commit", help="its commit, when the checkout is not a git repository")
    parser.add_argument("--out", default=OUTPUT, help="the .npz to write (default: %(default)s)")
    args = parser.parse_args(argv)
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(2)
    commit = commit_of(args.spade_repo, args.commit)
    import_spade(os.path.abspath(args.spade_repo))
    out = {"commit": np.array(commit), "torch": np.array(torch.__version__)}
    with tempfile.TemporaryDirectory() as workdir:
        for config in GENERATOR_CONFIGS:
            out.update(generator_case(config, os.path.join(workdir, config)))
        out.update(training_case(os.path.join(workdir, "train")))
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MiB), SPADE {commit[:7]}")


if __name__ == "__main__":
    main()
