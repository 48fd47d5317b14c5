"""zcablii/APF-GAN-jittor's own training iteration, for ``python -m util.bench --compare apf``.

A standalone script (see this folder's ``__init__``): run with the project's Python (Jittor), in an
APF-GAN-jittor checkout, by ``util/bench.py``. It imports only APF-GAN's code, NumPy and Jittor.

What it runs: APF-GAN's ``trainers/pix2pix_trainer.py`` ``Pix2PixTrainer`` built from its own ``TrainOptions``
with the command-line options of the settings (the benchmark passes them, and they are recorded with its
results), then per iteration ``run_generator_one_step(data, epoch)`` and ``run_discriminator_one_step(data,
epoch)`` and ``jt.sync_all()``, on a batch dict as APF-GAN's loader yields it (``label`` float [N, 1, H, W],
``image`` [N, 3, H, W] in [-1, 1]) made from two fixed random batches taken in turn; each timed pass ends
with ``jt.sync_all(True)``. ``epoch`` is at or after ``--pg_niter``: the full-size networks that APF-GAN
trains once its progressive stages are over. Patched, without changing the computation:

* ``torchvision`` (imported by APF-GAN's ``architecture.py``, never used) is an empty module and ``dill``
  (its checkpoint pickler, not used here) is ``pickle``;
* Jittor's ``models.vgg19`` is built with ``pretrained=False`` (random weights; APF-GAN asks for the ImageNet
  weights, a download);
* on the CPU the environment variable ``nvcc_path`` is emptied before ``import jittor`` (as the project does),
  so that Jittor does not probe a CUDA toolkit without a GPU.
"""

import os
import pickle
import runpy
import sys
import types

SHARED = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol.py"))
start, build_trainer, serve = SHARED["start"], SHARED["build_trainer"], SHARED["serve"]


def count(optimizer):
    """Parameters the optimiser updates (Jittor skips those marked stop_grad: batch-norm statistics, the
    spectral-norm vectors)."""
    return int(sum(p.numel() for group in optimizer.param_groups for p in group["params"] if not p.is_stop_grad()))


def unused_parameters(model):
    """{"g_step"|"d_step": {kind: count}}: trained parameters APF-GAN's optimisers hold that its full-size training
    step never uses (counted before the first step, which deletes the progressive heads from the generator)."""
    kinds = {"g_step": {}, "d_step": {}}
    for net_name, step in (("netG", "g_step"), ("netE", "g_step"), ("netD", "d_step")):
        net = getattr(model, net_name, None)
        for name, p in (net.named_parameters() if net is not None else ()):
            if p.is_stop_grad():
                continue
            if net_name == "netE" and model.opt.encode_mask and name.startswith(("fc_mu.", "fc_var.")):
                kind = "E.fc_mu/fc_var"  # the image encoder's heads, which the mask encoder does not use
            elif net_name == "netG" and name.startswith("inter_conv_img."):
                kind = "G.inter_conv_img"  # the to-RGB heads of the progressive stages
            else:
                continue
            kinds[step][kind] = kinds[step].get(kind, 0) + int(p.numel())
    return kinds


def main(argv):
    settings, proto, repo = start(argv)
    cuda = bool(settings["cuda"])
    os.environ.setdefault("log_silent", "1")
    if cuda:
        os.environ.setdefault("use_cutlass", "0")
    else:
        os.environ["nvcc_path"] = ""
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    sys.modules.setdefault("dill", pickle)

    import jittor as jt
    import numpy as np
    from jittor import models as jittor_models

    jt.flags.use_cuda = 1 if cuda else 0
    jt.set_global_seed(settings["seed"])
    real_vgg19 = jittor_models.vgg19
    jittor_models.vgg19 = lambda pretrained=False, **kwargs: real_vgg19(pretrained=False, **kwargs)

    trainer = build_trainer(repo, "train_phase.py", settings["options"], "apf_bench_")
    unused = unused_parameters(trainer.pix2pix_model)
    epoch = int(settings["epoch"])

    n, h, w, label_nc = settings["batch"], settings["height"], settings["width"], settings["label_nc"]
    rs = np.random.RandomState(settings["seed"])
    batches = [(rs.randint(0, label_nc, (n, 1, h, w)).astype(np.float32),
                rs.uniform(-1, 1, (n, 3, h, w)).astype(np.float32)) for _ in range(2)]

    def step(i):
        label, image = batches[i % len(batches)]
        data = {"label": jt.array(label), "image": jt.array(image)}
        trainer.run_generator_one_step(data, epoch)
        trainer.run_discriminator_one_step(data, epoch)
        jt.sync_all()

    def describe():
        fake = trainer.get_latest_generated()
        fake = fake[-1] if isinstance(fake, list) else fake
        info = {"reference": "zcablii/APF-GAN-jittor", "framework": f"Jittor {jt.__version__}",
                "python": sys.version.split()[0], "device": "GPU" if cuda else "CPU", "epoch": epoch,
                "g_step_parameters": count(trainer.optimizer_G), "d_step_parameters": count(trainer.optimizer_D),
                "generated_shape": [int(s) for s in fake.shape], "unused_parameters": unused}
        return info

    return serve(step, lambda: jt.sync_all(True), settings["warmup"], describe, proto)
