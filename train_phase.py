"""Train one phase of the landscape GAN on a paired dataset.

    python train_phase.py --input_path DATA/train --name NAME [options]

Reads DATA/train/imgs/*.jpg and DATA/train/labels/*.png (or lables/), trains
the SPADE generator against the multiscale discriminator, and writes
checkpoints, a loss log, sample grids and an HTML page to
CHECKPOINTS_DIR/NAME. Ctrl-C stops after the current iteration and saves a
resumable 'latest' checkpoint; --continue_train resumes it exactly.
"""

import os
import signal
import sys
import time

from options import base_options, train_options
from util import device
from util.cli import run_main
from util.errors import CheckpointError, OptionError


class GracefulStop:
    """Turns the first Ctrl-C into a request to stop after the current iteration."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this iteration and saving a 'latest' checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)
        return False


def check_resume_architecture(opt, parser, argv, folder):
    saved = base_options.load_saved_options(folder)
    if saved is None:
        raise CheckpointError(f"--continue_train: {folder} holds no opt.json; nothing to resume.")
    given = base_options.explicit_flags(parser, argv)
    taken = base_options.apply_saved_architecture(opt, saved, given, os.path.join(folder, "opt.json"))
    if taken:
        print("resuming with the saved architecture: " + ", ".join(f"{k}={getattr(opt, k)}" for k in taken))


def stopped(folder):
    print(f"stopped; resume with --continue_train (saved {folder}/latest_*)", file=sys.stderr)
    return 130


def to_images(var):
    from data.transforms import array_to_image
    return [array_to_image(x) for x in var.numpy()]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    opt, parser = train_options.parse(argv, description=__doc__)
    folder = base_options.experiment_dir(opt)
    if opt.continue_train:
        check_resume_architecture(opt, parser, argv, folder)
        base_options.validate_architecture(opt)
    use_cuda = device.setup(opt.gpu)

    import jittor as jt
    from tqdm import tqdm

    from data.datasets import PairedDataset, raise_batch_errors
    from models.trainer import SPADETrainer
    from util import checkpoint, seeding
    from util.visualizer import TrainingLog, sample_grid

    crop_h = base_options.image_height(opt)
    dataset = PairedDataset(opt.input_path, opt.label_nc, opt.crop_size, crop_h, opt.load_size,
                            allow_flip=not opt.no_flip, seed=opt.seed, max_size=opt.max_dataset_size,
                            batch_size=opt.batchSize, num_workers=opt.nThreads)
    total_epochs = opt.niter + opt.niter_decay
    if total_epochs == 0:
        raise OptionError("--niter + --niter_decay is 0: nothing to train.")

    seeding.seed_everything(opt.seed)
    trainer = SPADETrainer(opt)
    start_epoch, skip_iters, total_iters = 1, 0, 0
    if opt.continue_train:
        tag = opt.which_epoch
        state, net_states, used_previous = checkpoint.read_training_checkpoint(folder, tag, trainer.nets)
        if used_previous:
            print(f"the last save of {tag} was interrupted; resuming from the complete save before it")
        trainer.load_networks(net_states, os.path.join(folder, f"{tag}_net_*.pkl"))
        trainer.load_optimizer_states(state["optimizers"])
        seeding.set_rng_state(state["rng"])
        start_epoch, skip_iters, total_iters = state["next_epoch"], state["next_iter"], state["total_iters"]
        print(f"resumed from {tag}: epoch {start_epoch}, iteration {skip_iters} of that epoch "
              f"({total_iters} iterations done)")
    base_options.save_options(opt, parser, folder)
    log = TrainingLog(folder, opt.name)
    print(f"training {opt.name}: {len(dataset.pairs)} pairs, {dataset.num_batches()} iterations/epoch, "
          f"epochs {start_epoch}..{total_epochs}, {'GPU' if use_cuda else 'CPU'}, images "
          f"{opt.crop_size}x{crop_h}, checkpoints in {folder}")

    def save(tag, next_epoch, next_iter):
        checkpoint.write_checkpoint(folder, tag, trainer.network_states(), {
            "next_epoch": next_epoch, "next_iter": next_iter, "total_iters": total_iters,
            "optimizers": trainer.optimizer_states(), "rng": seeding.rng_state(), "seed": opt.seed})

    with GracefulStop() as stop:
        for epoch in range(start_epoch, total_epochs + 1):
            g_lr, d_lr = trainer.set_epoch_learning_rate(epoch)
            dataset.set_epoch(epoch)
            n_batches = dataset.num_batches()
            bar = tqdm(total=n_batches, initial=skip_iters, desc=f"epoch {epoch}/{total_epochs}",
                       dynamic_ncols=True, file=sys.stderr)
            t_last = time.time()
            for i, batch in enumerate(dataset):
                if i < skip_iters:
                    continue
                raise_batch_errors(batch)
                seeding.seed_everything(seeding.derive_seed(opt.seed, epoch, i))
                label, real = batch["label"], batch["image"]
                g_losses, fake = trainer.generator_step(label, real)
                d_losses = trainer.discriminator_step(label, real)
                # Materialise every pending update (parameters, optimiser moments, norm statistics,
                # power-iteration vectors) now, so that work is never fused into the next
                # iteration: otherwise a save in between would change the floating-point result.
                jt.sync_all()
                total_iters += 1
                losses = {**g_losses, **d_losses}
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                if total_iters % opt.print_freq == 0 or i + 1 == n_batches:
                    now = time.time()
                    log.log_losses(epoch, i + 1, losses, (now - t_last) / max(1, opt.print_freq))
                    t_last = now
                if total_iters % opt.display_freq == 0 or i + 1 == n_batches:
                    grid = sample_grid(label.numpy(), to_images(fake), to_images(real), opt.label_nc)
                    log.save_samples(epoch, total_iters, grid)
                if i + 1 == n_batches:
                    break  # the epoch-end save below covers this iteration
                if stop.requested or total_iters % opt.save_latest_freq == 0:
                    save("latest", epoch, i + 1)
                if stop.requested:
                    bar.close()
                    return stopped(folder)
            bar.close()
            skip_iters = 0
            save("latest", epoch + 1, 0)
            if epoch % opt.save_epoch_freq == 0 or epoch == total_epochs:
                save(str(epoch), epoch + 1, 0)
                print(f"epoch {epoch}: saved checkpoint {epoch} (lr G {g_lr:.2e}, D {d_lr:.2e})")
            if stop.requested:
                return stopped(folder)
    jt.sync_all()
    print(f"done: {total_epochs} epochs, {total_iters} iterations; checkpoints in {folder}")
    return 0


if __name__ == "__main__":
    run_main(main)
