"""NVlabs/SPADE's own training iteration, for ``python -m util.bench --compare spade``.

A standalone script (see this folder's ``__init__``): run with a Python that has PyTorch, torchvision and dill,
in a SPADE checkout, by ``util/bench.py``. It imports only SPADE's code, NumPy and PyTorch.

What it runs: SPADE's ``trainers/pix2pix_trainer.py`` ``Pix2PixTrainer`` built from SPADE's own
``TrainOptions`` with the command-line options of the settings (the benchmark passes them, and they are
recorded with its results), then per iteration ``run_generator_one_step`` and ``run_discriminator_one_step``
on a batch dict as SPADE's data loader yields it (``label`` float [N, 1, H, W], ``instance``, ``image``
[N, 3, H, W] in [-1, 1], ``path``), made from two fixed random batches taken in turn, and on a GPU
``torch.cuda.synchronize()``. Three things are patched, none of which changes the computation:

* VGG19 for the perceptual loss is built by torchvision with ``weights=None`` (random weights; SPADE asks for
  ImageNet weights, a download);
* on the CPU, ``torch.nn.Module.cuda`` returns the module unchanged (SPADE's ``VGGLoss`` calls ``.cuda()``
  unconditionally);
* when the checkout lacks SPADE's ``models/networks/sync_batchnorm`` (a git submodule, often not checked out),
  a stand-in module maps ``SynchronizedBatchNorm2d`` to ``torch.nn.BatchNorm2d`` and
  ``DataParallelWithCallback`` to ``torch.nn.DataParallel`` (in one process the real one computes plain batch
  norm).
"""

import os
import runpy
import sys
import types

SHARED = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol.py"))
start, build_trainer, serve = SHARED["start"], SHARED["build_trainer"], SHARED["serve"]


def stub_sync_batchnorm(repo, torch):
    """Register a stand-in for the sync_batchnorm submodule when the checkout lacks it; returns which is used."""
    if os.path.isfile(os.path.join(repo, "models", "networks", "sync_batchnorm", "__init__.py")):
        return "the checkout's"
    stub = types.ModuleType("models.networks.sync_batchnorm")
    stub.SynchronizedBatchNorm2d = torch.nn.BatchNorm2d
    stub.DataParallelWithCallback = torch.nn.DataParallel
    sys.modules[stub.__name__] = stub
    return "stand-in (torch.nn.BatchNorm2d)"


def count(optimizer):
    """Parameters the optimiser updates."""
    return int(sum(p.numel() for group in optimizer.param_groups for p in group["params"] if p.requires_grad))


def main(argv):
    settings, proto, repo = start(argv)

    import numpy as np
    import torch
    import torchvision

    cuda = bool(settings["cuda"])
    torch.manual_seed(settings["seed"])
    if not cuda:
        torch.nn.Module.cuda = lambda self, device=None: self
    real_vgg19 = torchvision.models.vgg19
    torchvision.models.vgg19 = lambda *args, **kwargs: real_vgg19(weights=None)
    sync_bn = stub_sync_batchnorm(repo, torch)

    trainer = build_trainer(repo, "train.py", settings["options"], "spade_bench_")

    n, h, w, label_nc = settings["batch"], settings["height"], settings["width"], settings["label_nc"]
    rs = np.random.RandomState(settings["seed"])
    batches = [(rs.randint(0, label_nc, (n, 1, h, w)).astype(np.float32),
                rs.uniform(-1, 1, (n, 3, h, w)).astype(np.float32)) for _ in range(2)]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step(i):
        label, image = batches[i % len(batches)]
        data = {"label": torch.from_numpy(label), "instance": torch.zeros(n), "image": torch.from_numpy(image),
                "path": [""] * n}
        trainer.run_generator_one_step(data)
        trainer.run_discriminator_one_step(data)
        sync()

    def describe():
        fake = trainer.get_latest_generated()
        info = {"reference": "NVlabs/SPADE", "framework": f"PyTorch {torch.__version__}",
                "python": sys.version.split()[0], "threads": torch.get_num_threads(),
                "device": torch.cuda.get_device_name(0) if cuda else "CPU", "sync_batchnorm": sync_bn,
                "g_step_parameters": count(trainer.optimizer_G), "d_step_parameters": count(trainer.optimizer_D),
                "generated_shape": list(fake.shape)}
        return info

    return serve(step, sync, settings["warmup"], describe, proto)
