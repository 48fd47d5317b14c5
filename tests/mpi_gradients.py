"""Test helper, run alone or under mpirun: the gradients of one training iteration as the optimisers hold
them after Jittor's all-reduce, written by rank 0.

    python tests/mpi_gradients.py OUT.npz [train_phase.py flags]

Builds the networks as train_phase.py does (same seed, rank 0's weights broadcast), takes the first batch of
epoch 1 (each rank its slice of it) and runs the trainer's real generator and discriminator steps with the
optimisers' update switched off, so what remains is the backward pass and the gradient averaging.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from util.core import device, distributed  # noqa: E402


def main(out, argv):
    device.setup("off")
    import numpy as np

    from data.datasets import PairedDataset
    from models.trainer import SPADETrainer
    from models import layout
    from options import train_options
    from util.core import seeding

    opt, _ = train_options.parse(argv)
    seeding.seed_everything(opt.seed)
    trainer = SPADETrainer(opt)
    distributed.broadcast_networks(trainer.nets)
    dataset = PairedDataset(opt.input_path, opt.label_nc, opt.crop_size, layout.image_height(opt),
                            opt.load_size, seed=opt.seed, batch_size=opt.batchSize, num_workers=0)
    dataset.set_epoch(1)
    batch = next(iter(dataset))
    for optimizer in trainer.optimizers.values():
        optimizer.step = optimizer.backward  # gradients (all-reduced under MPI), no update
    losses = {**trainer.generator_step(batch["label"], batch["image"])[0],
              **trainer.discriminator_step(batch["label"], batch["image"])}
    arrays = {f"loss.{k}": np.float64(v) for k, v in losses.items()}
    for name, optimizer in trainer.optimizers.items():
        for group in optimizer.param_groups:
            for param, grad in zip(group["params"], group["grads"]):
                if not param.is_stop_grad():
                    arrays[f"{name}.{param.name()}"] = grad.numpy()
    if distributed.is_main():
        np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
