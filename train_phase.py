"""Train one phase of the landscape GAN on a paired dataset.

    python train_phase.py --input_path DATA/train --name NAME [options]

Reads DATA/train/imgs/*.jpg and DATA/train/labels/*.png (or lables/), trains
the SPADE generator against the multiscale discriminator, and writes
checkpoints, a loss log, sample grids and an HTML page to
CHECKPOINTS_DIR/NAME. Ctrl-C stops after the current iteration and saves a
resumable 'latest' checkpoint; --continue_train resumes it exactly.

A phase of the two-phase recipe is one run of this script: --pg_niter turns
on progressive-size pre-training, --init_from starts fine-tuning from the
last pre-training checkpoint, and --preset NAME loads a recipe's options
(train.py runs both phases).
"""

import os
import signal
import sys
import time

from models import layout
from options import base_options, train_options
from util.core import checkpoint, device, distributed
from util.core.cli import run_main
from util.core.errors import CheckpointError, OptionError


class GracefulStop:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request to stop after the current iteration.

    Under MPI the ranks agree on the request (any rank's signal stops all of them after the same iteration),
    but mpirun itself ends the ranks at once on Ctrl-C or SIGTERM: there the last periodic 'latest'
    checkpoint (--save_latest_freq) is what a resume starts from."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}
        self._owner = None

    def __enter__(self):
        self._owner = os.getpid()
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if os.getpid() != self._owner:
            # A forked data-loader worker inherited this handler. Ctrl-C reaches the whole process group:
            # the main process decides, the worker goes on. SIGTERM is how a worker is ended: end it.
            if signum != signal.SIGINT:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        distributed.say(f"\n{signal.Signals(signum).name}: stopping after this iteration and saving a 'latest' "
                        f"checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False


def check_resume_architecture(opt, parser, argv, folder):
    saved = base_options.load_saved_options(folder)
    if saved is None:
        raise CheckpointError(f"--continue_train: {folder} holds no opt.json; nothing to resume.")
    given = base_options.explicit_flags(parser, argv)
    taken = base_options.apply_saved_architecture(opt, saved, given, os.path.join(folder, "opt.json"))
    if taken:
        distributed.say("resuming with the saved architecture: " +
                        ", ".join(f"{k}={getattr(opt, k)}" for k in taken))


def stopped(folder):
    distributed.say(f"stopped; resume with --continue_train (saved {folder}/latest_*)", file=sys.stderr)
    return 130


def to_images(var, size=None):
    """uint8 pictures of an image batch, nearest-upsampled to ``size`` (h, w) when smaller."""
    import numpy as np

    from data.transforms import array_to_image
    images = [array_to_image(x) for x in var.float32().numpy()]
    if size is not None and images and images[0].shape[:2] != tuple(size):
        fy, fx = size[0] // images[0].shape[0], size[1] // images[0].shape[1]
        images = [np.repeat(np.repeat(im, fy, axis=0), fx, axis=1) for im in images]
    return images


def split_init_source(opt, folder):
    """(experiment folder, tag) named by --init_from: TAG or EXPERIMENT_DIR/TAG."""
    if os.sep in opt.init_from or "/" in opt.init_from:
        return os.path.dirname(opt.init_from), os.path.basename(opt.init_from)
    return folder, opt.init_from


def read_init_source(opt, folder, names, optional=()):
    """(next epoch, iterations done, {net: state dict}) of the --init_from checkpoint; ``optional`` networks
    (the EMA copies) are read when the checkpoint has them (files its state records)."""
    src_folder, tag = split_init_source(opt, folder)
    state = checkpoint.read_file(checkpoint.state_path(src_folder, tag), f"training-state ({opt.init_from})")
    states = {}
    for name in names:
        path = checkpoint.net_path(src_folder, tag, name)
        if os.path.isfile(path):
            states[name] = checkpoint.read_net(src_folder, tag, name)
    for name in checkpoint.recorded_nets(state, (), optional):
        if os.path.isfile(checkpoint.net_path(src_folder, tag, name)):
            states[name] = checkpoint.read_net(src_folder, tag, name)
    if "G" not in states:
        raise CheckpointError(f"{checkpoint.net_path(src_folder, tag, 'G')}: --init_from {opt.init_from} has no "
                              f"generator checkpoint.")
    for name in ("G", checkpoint.ema_name("G")):
        if name in states:
            checkpoint.check_full_size_generator(states[name], f"--init_from {opt.init_from} "
                                                               f"({checkpoint.net_path(src_folder, tag, name)})")
    return state["next_epoch"], state.get("total_iters", 0), states, os.path.join(src_folder, f"{tag}_net_*.pkl")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    opt, parser = train_options.parse(argv, description=__doc__)
    folder = checkpoint.experiment_dir(opt)
    if opt.continue_train and opt.init_from:
        raise OptionError("--continue_train resumes this experiment's own run; --init_from starts a new phase "
                          "from a checkpoint. Give one of them.")
    if opt.continue_train:
        check_resume_architecture(opt, parser, argv, folder)
        base_options.validate_architecture(opt)
        train_options.validate_progressive(opt)
    distributed.check_launch()
    ranks = distributed.world_size()
    distributed.check_batch_size(opt.batchSize, ranks)
    use_cuda = device.setup(opt.gpu)
    main_rank = distributed.is_main()
    say = distributed.say

    import jittor as jt
    from tqdm import tqdm

    from data.datasets import PairedDataset, raise_batch_errors
    from data.folders import read_name_list
    from models.mixed_precision import MixedPrecision
    from models.networks import ema_network_names, network_names
    from models.trainer import SPADETrainer
    from util.core import seeding
    from models.training_page import TrainingLog, sample_grid

    crop_h = layout.image_height(opt)
    exclude = read_name_list(opt.exclude_list) if opt.exclude_list else frozenset()
    dataset = PairedDataset(opt.input_path, opt.label_nc, opt.crop_size, crop_h, opt.load_size,
                            allow_flip=not opt.no_flip, seed=opt.seed, max_size=opt.max_dataset_size,
                            batch_size=opt.batchSize, num_workers=opt.nThreads, dontcare_255=opt.dontcare_255,
                            exclude=exclude)
    if opt.exclude_list:
        say(f"left out {dataset.excluded} photos listed in {opt.exclude_list} ({len(exclude)} names listed, "
            f"{len(exclude) - dataset.excluded} of them not in {opt.input_path})")
    total_epochs = opt.niter + opt.niter_decay
    if total_epochs == 0:
        raise OptionError("--niter + --niter_decay is 0: nothing to train.")

    names = network_names(opt, with_discriminator=True)
    ema_names = ema_network_names(opt)  # read when the checkpoint has them, else started from G (E, Es)
    start_epoch, skip_iters, total_iters = 1, 0, 0
    imported = None
    if opt.continue_train:
        tag = opt.which_epoch
        # a checkpoint made by util/import_ckpt.py holds the generator (and mask encoder) only
        imported = checkpoint.imported_format(folder, tag)
        read_names = [n for n in names if n != "D"] if imported else names
        state, net_states, used_previous = checkpoint.read_training_checkpoint(folder, tag, read_names,
                                                                               optional=ema_names)
        if used_previous:
            say(f"the last save of {tag} was interrupted; resuming from the complete save before it")
        saved_ema = [n for n in state.get("net_digests", {}) if n.endswith(checkpoint.EMA_SUFFIX)]
        if saved_ema and not ema_names:
            say(f"note: checkpoint {tag} has EMA networks ({', '.join(saved_ema)}); without --ema_decay they are "
                f"not continued and the next saves have none")
        start_epoch, skip_iters, total_iters = state["next_epoch"], state["next_iter"], state["total_iters"]
    elif opt.init_from:
        start_epoch, total_iters, init_states, init_source = read_init_source(opt, folder, names, ema_names)
        if start_epoch > total_epochs:
            raise OptionError(f"--init_from {opt.init_from} ends at epoch {start_epoch - 1}, but this phase ends at "
                              f"epoch {total_epochs} (--niter + --niter_decay count from the first epoch of the "
                              f"whole run): raise --niter.")

    seeding.seed_everything(opt.seed if not opt.init_from else seeding.derive_seed(opt.seed, start_epoch))
    precision, precision_note = MixedPrecision.for_device(opt.amp, use_cuda)
    trainer = SPADETrainer(opt, start_epoch, precision)
    schedule = trainer.schedule
    if imported:
        source = os.path.join(folder, f"{tag}_net_*.pkl")
        new = trainer.init_networks(net_states, source)
        say(f"fine-tuning the {imported} networks imported in {source} from epoch 1, with fresh optimisers")
        for name, keys in new.items():
            say(f"  {name}: {len(keys)} tensors start at their initial values (nothing was imported for them)")
        jt.sync_all()
    elif opt.continue_train:
        source = os.path.join(folder, f"{tag}_net_*.pkl")
        trainer.load_networks(net_states, source)
        trainer.load_optimizer_states(state["optimizers"], source)
        trainer.d_level = state.get("d_level", trainer.d_level)
        seeding.set_rng_state(state["rng"])
        trainer.precision.load(state.get("precision"))
        say(f"resumed from {tag}: epoch {start_epoch}, iteration {skip_iters} of that epoch "
            f"({total_iters} iterations done)")
    elif opt.init_from:
        new = trainer.init_networks(init_states, init_source)
        say(f"initialised from {init_source} (epochs 1..{start_epoch - 1}); fresh optimisers")
        for name, keys in new.items():
            say(f"  {name}: {len(keys)} new parameter tensors at their initial values: "
                f"{', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}")
        jt.sync_all()
    if trainer.ema is not None:
        started = trainer.ema_from_live if (opt.continue_train or opt.init_from) else []
        say(f"keeping an exponential moving average (--ema_decay {opt.ema_decay}) of "
            f"{', '.join(trainer.ema_sources.values())}, saved as "
            f"{', '.join(f'TAG_net_{n}.pkl' for n in trainer.ema_sources)}" +
            (f"; the checkpoint has no {', '.join(started)}: started from the loaded "
             f"{', '.join(trainer.ema_sources[n] for n in started)}" if started else ""))
    distributed.broadcast_networks(trainer.nets)  # the EMA networks (G_ema, ...) are among them
    log = None
    if main_rank:
        base_options.save_options(opt, parser, folder)
        log = TrainingLog(folder, opt.name)
    processes = f", {ranks} MPI ranks x {opt.batchSize // ranks} images" if ranks > 1 else ""
    say(f"training {opt.name} ({opt.phase_name}): {len(dataset.pairs)} pairs, {dataset.num_batches()} "
        f"iterations/epoch of {opt.batchSize} images{processes}, epochs {start_epoch}..{total_epochs}, "
        f"{'GPU' if use_cuda else 'CPU'}, images {opt.crop_size}x{crop_h}, checkpoints in {folder}")
    if precision_note:
        say(precision_note)
    elif trainer.precision.enabled:
        say(f"training in {trainer.precision.describe()}")
    if trainer.progressive:
        say("progressive schedule:\n  " + "\n  ".join(schedule.describe(opt.crop_size, crop_h)))

    def save(tag, next_epoch, next_iter):
        if not main_rank:
            return
        checkpoint.write_checkpoint(folder, tag, trainer.network_states(), {
            "next_epoch": next_epoch, "next_iter": next_iter, "total_iters": total_iters,
            "optimizers": trainer.optimizer_states(), "rng": seeding.rng_state(), "seed": opt.seed,
            "d_level": trainer.d_level, "phase": opt.phase_name, "precision": trainer.precision.state()})

    def announce(epoch, i, text, bar):
        """A schedule event, on the console and in the loss log."""
        if log is not None:
            line = f"epoch {epoch}, iteration {i + 1}: {text}"
            bar.write(line)
            log.note(line)

    shown, stopping = None, False
    with GracefulStop() as stop, dataset:
        for epoch in range(start_epoch, total_epochs + 1):
            g_lr, d_lr = trainer.set_epoch_learning_rate(epoch)
            dataset.set_epoch(epoch)
            n_batches = dataset.num_batches()
            bar = tqdm(total=n_batches, initial=skip_iters, desc=f"epoch {epoch}/{total_epochs}",
                       dynamic_ncols=True, file=sys.stderr, disable=not main_rank)
            t_last = time.time()
            for i, batch in enumerate(dataset):
                if i < skip_iters:
                    continue
                raise_batch_errors(batch)
                stage = schedule.stage(epoch, i / n_batches) if trainer.progressive else None
                if stage is not None:
                    if shown is None or (stage.level, stage.alpha < 1) != shown:
                        announce(epoch, i, f"training {schedule.stage_text(stage, opt.crop_size, crop_h)}", bar)
                        shown = (stage.level, stage.alpha < 1)
                    for level in trainer.enter_stage(stage):
                        k = trainer.nets["D"].num_D - 1 - level
                        size = schedule.size_text(level, opt.crop_size, crop_h)
                        announce(epoch, i, f"discriminator scale {k} ({size}) initialised from scale {k + 1}", bar)
                seeding.seed_everything(seeding.derive_seed(opt.seed, epoch, i,
                                                            *distributed.seed_parts(distributed.rank(), ranks)))
                label, real = batch["label"], batch["image"]
                g_losses, fake = trainer.generator_step(label, real, stage)
                d_losses = trainer.discriminator_step(label, real, stage)
                # Materialise every pending update (parameters, optimiser moments, norm statistics,
                # power-iteration vectors) now, so that work is never fused into the next
                # iteration: otherwise a save in between would change the floating-point result.
                jt.sync_all()
                stopping = distributed.any_rank(stop.requested)
                total_iters += 1
                losses = {**g_losses, **d_losses}
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                if log is not None and (total_iters % opt.print_freq == 0 or i + 1 == n_batches):
                    now = time.time()
                    log.log_losses(epoch, i + 1, losses, (now - t_last) / max(1, opt.print_freq))
                    t_last = now
                if log is not None and (total_iters % opt.display_freq == 0 or i + 1 == n_batches):
                    full = tuple(real.shape[2:])
                    grid = sample_grid(label.numpy(), to_images(fake, full),
                                       to_images(trainer.stage_inputs(label, real, stage)[2], full), opt.label_nc)
                    log.save_samples(epoch, total_iters, grid)
                if i + 1 == n_batches:
                    break  # the epoch-end save below covers this iteration
                if stopping or total_iters % opt.save_latest_freq == 0:
                    save("latest", epoch, i + 1)
                if stopping:
                    bar.close()
                    return stopped(folder)
            bar.close()
            skip_iters = 0
            if trainer.progressive and schedule.finished(epoch + 1):
                trainer.finish_progressive()
                say(f"epoch {epoch}: progressive pre-training finished; the generator's auxiliary heads are "
                    f"removed, it now is the plain {opt.crop_size}x{crop_h} model")
            save("latest", epoch + 1, 0)
            if epoch % opt.save_epoch_freq == 0 or epoch == total_epochs:
                save(str(epoch), epoch + 1, 0)
                say(f"epoch {epoch}: saved checkpoint {epoch} (lr G {g_lr:.2e}, D {d_lr:.2e})")
            if stopping:
                return stopped(folder)
    jt.sync_all()
    say(f"done: epochs up to {total_epochs}, {total_iters} iterations; checkpoints in {folder}")
    return 0


if __name__ == "__main__":
    run_main(main)
