"""One phase's training run: where it starts, the epoch loop, and when it logs and saves.

``run_training`` is what train_phase.py and train.py call. It reads the start point (``read_start_point``:
a new run; this experiment's own checkpoint with --continue_train, also one imported by
util/import_ckpt.py; another phase's checkpoint with --init_from), builds the dataset and the
``SPADETrainer``, trains the epochs (``TrainingLoop``) and returns the exit code: 0, or 130 after a stop
request (Ctrl-C, SIGTERM: ``util.core.stopping.GracefulStop``), with a resumable 'latest' checkpoint
saved. ``Cadence`` decides when the loop logs the losses, saves sample grids and writes checkpoints.
Imports Jittor: call ``util.core.device.setup`` first.
"""

import os
import sys
import time
from collections import namedtuple

import jittor as jt
import numpy as np
from tqdm import tqdm

from data.datasets import PairedDataset, raise_batch_errors
from data.folders import read_name_list
from data.transforms import array_to_image
from models import convolution, layout
from models.mixed_precision import MixedPrecision
from models.networks import ema_network_names, network_names
from models.trainer import SPADETrainer
from models.training_page import TrainingLog, sample_grid
from util.core import checkpoint, distributed, seeding
from util.core.errors import CheckpointError, OptionError, few
from util.core.stopping import GracefulStop

STOPPED = 130  # the exit code of a run that stopped on request

say = distributed.say


def run_training(opt, use_cuda, on_start=None):
    """Train one phase as ``opt`` says; returns the exit code. ``on_start()`` runs on the main rank once the
    start point is read and the networks are filled, before the first iteration (the caller saves the
    options there)."""
    folder = checkpoint.experiment_dir(opt)
    dataset = build_dataset(opt)
    total_epochs = opt.niter + opt.niter_decay
    if total_epochs == 0:
        raise OptionError("--niter + --niter_decay is 0: nothing to train.")
    start = read_start_point(opt, folder, total_epochs)

    seeding.seed_everything(opt.seed if start.kind != INIT else seeding.derive_seed(opt.seed, start.epoch))
    precision, precision_note = MixedPrecision.for_device(opt.amp, use_cuda)
    trainer = SPADETrainer(opt, start.epoch, precision)
    load_start_point(trainer, start)
    distributed.broadcast_networks(trainer.nets)  # the EMA networks (G_ema, ...) are among them
    log = None
    if distributed.is_main():
        if on_start is not None:
            on_start()
        log = TrainingLog(folder, opt.name)
    describe_run(opt, folder, dataset, trainer, start, use_cuda, precision_note)

    loop = TrainingLoop(opt, folder, trainer, dataset, log, start.total_iters)
    skip_iters = start.next_iter
    with GracefulStop() as stop, dataset:
        for epoch in range(start.epoch, total_epochs + 1):
            if loop.train_epoch(epoch, skip_iters, stop):
                return stopped(folder)
            skip_iters = 0
    jt.sync_all()
    say(f"done: epochs up to {total_epochs}, {loop.total_iters} iterations; checkpoints in {folder}")
    return 0


def stopped(folder):
    say(f"stopped; resume with --continue_train (saved {folder}/latest_*)", file=sys.stderr)
    return STOPPED


def build_dataset(opt):
    """The paired training set of --input_path, less the photos --exclude_list names."""
    exclude = read_name_list(opt.exclude_list) if opt.exclude_list else frozenset()
    dataset = PairedDataset(opt.input_path, opt.label_nc, opt.crop_size, layout.image_height(opt), opt.load_size,
                            allow_flip=not opt.no_flip, seed=opt.seed, max_size=opt.max_dataset_size,
                            batch_size=opt.batchSize, num_workers=opt.nThreads, dontcare_255=opt.dontcare_255,
                            exclude=exclude, edges=SPADETrainer.needs_edges(opt))
    if opt.exclude_list:
        say(f"left out {dataset.excluded} photos listed in {opt.exclude_list} ({len(exclude)} names listed, "
            f"{len(exclude) - dataset.excluded} of them not in {opt.input_path})")
    return dataset


# -- the start point ------------------------------------------------------------------------------

NEW, RESUME, IMPORT, INIT = "new", "resume", "import", "init_from"

StartPoint = namedtuple("StartPoint", "kind tag epoch next_iter total_iters net_states source state imported_format",
                        defaults=(None, None))
StartPoint.__doc__ = """Where a run starts: ``kind`` (NEW; RESUME this experiment's checkpoint ``tag``; IMPORT one
that util/import_ckpt.py wrote, in ``imported_format``; INIT from another phase's checkpoint ``tag``), the epoch
and its iteration to start at, the iterations done before, the networks' state dicts read, ``source`` (the files
they came from, TAG_net_*.pkl) and the training ``state`` of a resume."""


def read_start_point(opt, folder, total_epochs):
    """The StartPoint the options ask for, its checkpoint read and checked. The EMA networks are read when the
    checkpoint has them (else they start from G, E, Es)."""
    names, ema_names = network_names(opt, with_discriminator=True), ema_network_names(opt)
    if opt.continue_train:
        return read_resume_point(folder, opt.which_epoch, names, ema_names)
    if opt.init_from:
        start = read_init_point(opt.init_from, folder, names, ema_names)
        if start.epoch > total_epochs:
            raise OptionError(f"--init_from {opt.init_from} ends at epoch {start.epoch - 1}, but this phase ends at "
                              f"epoch {total_epochs} (--niter + --niter_decay count from the first epoch of the "
                              f"whole run): raise --niter.")
        return start
    return StartPoint(NEW, None, 1, 0, 0, {}, None)


# networks an imported checkpoint may lack (they then start fresh): the style encoder and the discriminator
IMPORT_OPTIONAL = ("Es", "D")


def read_resume_point(folder, tag, names, ema_names):
    """Checkpoint ``tag`` of this experiment (its last complete save); one imported by util/import_ckpt.py
    holds the generator (and mask encoder), and the style encoder and discriminator where they were imported."""
    imported_format = checkpoint.imported_format(folder, tag)
    read_names, optional = names, ema_names
    if imported_format:
        read_names = [n for n in names if n not in IMPORT_OPTIONAL]
        optional = [*ema_names, *IMPORT_OPTIONAL]
    state, net_states, used_previous = checkpoint.read_training_checkpoint(folder, tag, read_names,
                                                                           optional=optional)
    if used_previous:
        say(f"the last save of {tag} was interrupted; resuming from the complete save before it")
    saved_ema = [n for n in state.get("net_digests", {}) if n.endswith(checkpoint.EMA_SUFFIX)]
    if saved_ema and not ema_names:
        say(f"note: checkpoint {tag} has EMA networks ({', '.join(saved_ema)}); without --ema_decay they are "
            f"not continued and the next saves have none")
    return StartPoint(IMPORT if imported_format else RESUME, tag, state["next_epoch"], state["next_iter"],
                      state["total_iters"], net_states, os.path.join(folder, f"{tag}_net_*.pkl"), state,
                      imported_format)


def split_init_source(init_from, folder):
    """(experiment folder, tag) named by --init_from: TAG or EXPERIMENT_DIR/TAG."""
    if os.sep in init_from or "/" in init_from:
        return os.path.dirname(init_from), os.path.basename(init_from)
    return folder, init_from


def read_init_point(init_from, folder, names, ema_names):
    """The networks of checkpoint ``init_from``, to start a new phase from: those of ``names`` it has, and the
    EMA networks its training state records; its generator must be a full-size one."""
    src_folder, tag = split_init_source(init_from, folder)
    state = checkpoint.read_file(checkpoint.state_path(src_folder, tag), f"training-state ({init_from})")
    states = {}
    for name in [*names, *checkpoint.recorded_nets(state, (), ema_names)]:
        if os.path.isfile(checkpoint.net_path(src_folder, tag, name)):
            states[name] = checkpoint.read_net(src_folder, tag, name)
    if "G" not in states:
        raise CheckpointError(f"{checkpoint.net_path(src_folder, tag, 'G')}: --init_from {init_from} has no "
                              f"generator checkpoint.")
    for name in ("G", checkpoint.ema_name("G")):
        if name in states:
            checkpoint.check_full_size_generator(states[name], f"--init_from {init_from} "
                                                               f"({checkpoint.net_path(src_folder, tag, name)})")
    return StartPoint(INIT, tag, state["next_epoch"], 0, state.get("total_iters", 0), states,
                      os.path.join(src_folder, f"{tag}_net_*.pkl"))


def load_start_point(trainer, start):
    """Fill the trainer from the start point's checkpoint: all of it for a resume, the networks (with fresh
    optimisers) for an import or --init_from."""
    if start.kind == IMPORT:
        new = trainer.init_networks(start.net_states, start.source)
        say(f"fine-tuning the {start.imported_format} networks imported in {start.source} from epoch 1, with "
            f"fresh optimisers")
        for name, keys in new.items():
            say(f"  {name}: {len(keys)} tensors start at their initial values (nothing was imported for them)")
        jt.sync_all()
    elif start.kind == RESUME:
        trainer.resume(start.state, start.net_states, start.source)
        seeding.set_rng_state(start.state["rng"])
        say(f"resumed from {start.tag}: epoch {start.epoch}, iteration {start.next_iter} of that epoch "
            f"({start.total_iters} iterations done)")
    elif start.kind == INIT:
        new = trainer.init_networks(start.net_states, start.source)
        say(f"initialised from {start.source} (epochs 1..{start.epoch - 1}); fresh optimisers")
        for name, keys in new.items():
            say(f"  {name}: {len(keys)} new parameter tensors at their initial values: {few(keys, 4)}")
        jt.sync_all()


def describe_run(opt, folder, dataset, trainer, start, use_cuda, precision_note):
    """The run's summary before the first iteration: data, epochs, device, precision, EMA, progressive schedule."""
    if trainer.ema is not None:
        started = trainer.ema_from_live if start.kind != NEW else []
        say(f"keeping an exponential moving average (--ema_decay {opt.ema_decay}) of "
            f"{', '.join(trainer.ema_sources.values())}, saved as "
            f"{', '.join(f'TAG_net_{n}.pkl' for n in trainer.ema_sources)}" +
            (f"; the checkpoint has no {', '.join(started)}: started from the loaded "
             f"{', '.join(trainer.ema_sources[n] for n in started)}" if started else ""))
    ranks, crop_h = distributed.world_size(), layout.image_height(opt)
    processes = f", {ranks} MPI ranks x {opt.batchSize // ranks} images" if ranks > 1 else ""
    say(f"training {opt.name} ({opt.phase_name}): {len(dataset.pairs)} pairs, {dataset.num_batches()} "
        f"iterations/epoch of {opt.batchSize} images{processes}, epochs {start.epoch}..{opt.niter + opt.niter_decay}, "
        f"{'GPU' if use_cuda else 'CPU'}, images {opt.crop_size}x{crop_h}, checkpoints in {folder}")
    say(f"computing on {convolution.describe(use_cuda)}")
    if precision_note:
        say(precision_note)
    elif trainer.precision.enabled:
        say(f"training in {trainer.precision.describe()}")
    if trainer.progressive:
        say("progressive schedule:\n  " + "\n  ".join(trainer.schedule.describe(opt.crop_size, crop_h)))


# -- the epoch loop -------------------------------------------------------------------------------

class Cadence:
    """When the training loop logs the losses, saves sample grids and writes checkpoints (like NVlabs/SPADE's
    IterationCounter; pure Python). ``total_iters`` counts the iterations of the whole run done so far, the
    current one included; ``i`` is the current iteration's 0-based index in its epoch of ``n_batches``."""

    def __init__(self, print_freq, display_freq, save_latest_freq, save_epoch_freq, total_epochs):
        self.print_freq, self.display_freq = print_freq, display_freq
        self.save_latest_freq, self.save_epoch_freq = save_latest_freq, save_epoch_freq
        self.total_epochs = total_epochs

    @classmethod
    def from_options(cls, opt):
        return cls(opt.print_freq, opt.display_freq, opt.save_latest_freq, opt.save_epoch_freq,
                   opt.niter + opt.niter_decay)

    @staticmethod
    def ends_epoch(i, n_batches):
        return i + 1 == n_batches

    def logs_losses(self, total_iters, i, n_batches):
        """Every --print_freq iterations, and after each epoch's last one."""
        return total_iters % self.print_freq == 0 or self.ends_epoch(i, n_batches)

    def shows_samples(self, total_iters, i, n_batches):
        """Every --display_freq iterations, and after each epoch's last one."""
        return total_iters % self.display_freq == 0 or self.ends_epoch(i, n_batches)

    def saves_latest(self, total_iters, i, n_batches, stopping):
        """A 'latest' checkpoint within the epoch: on a stop request and every --save_latest_freq iterations,
        but not after the epoch's last iteration (the end of the epoch saves one anyway)."""
        return not self.ends_epoch(i, n_batches) and (stopping or total_iters % self.save_latest_freq == 0)

    def saves_epoch(self, epoch):
        """A checkpoint named by the epoch at its end: every --save_epoch_freq epochs and after the last one."""
        return epoch % self.save_epoch_freq == 0 or epoch == self.total_epochs


def to_images(var, size=None):
    """uint8 pictures of an image batch, nearest-upsampled to ``size`` (h, w) when smaller."""
    images = [array_to_image(x) for x in var.float32().numpy()]
    if size is not None and images and images[0].shape[:2] != tuple(size):
        fy, fx = size[0] // images[0].shape[0], size[1] // images[0].shape[1]
        images = [np.repeat(np.repeat(im, fy, axis=0), fx, axis=1) for im in images]
    return images


class TrainingLoop:
    """The epochs of one run: the iterations, the progressive stages they enter, the loss log, the sample
    grids and the checkpoints. ``log`` is None on the ranks other than the main one, which write nothing."""

    def __init__(self, opt, folder, trainer, dataset, log, total_iters):
        self.opt, self.folder, self.trainer, self.dataset, self.log = opt, folder, trainer, dataset, log
        self.total_iters = total_iters
        self.cadence = Cadence.from_options(opt)
        self.crop_h = layout.image_height(opt)
        self.shown_stage = None  # (level, fading) of the stage announced last
        self.t_last = time.time()

    def train_epoch(self, epoch, skip_iters, stop):
        """Train ``epoch`` from its iteration ``skip_iters`` on and save its checkpoints; returns True when the
        run stops here on request (a 'latest' checkpoint is saved)."""
        g_lr, d_lr = self.trainer.set_epoch_learning_rate(epoch)
        self.dataset.set_epoch(epoch)
        n_batches = self.dataset.num_batches()
        bar = tqdm(total=n_batches, initial=skip_iters, desc=f"epoch {epoch}/{self.cadence.total_epochs}",
                   dynamic_ncols=True, file=sys.stderr, disable=not distributed.is_main())
        self.t_last = time.time()
        stopping = False
        for i, batch in enumerate(self.dataset):
            if i < skip_iters:
                continue
            stopping = self.train_iteration(epoch, i, n_batches, batch, stop, bar)
            if self.cadence.saves_latest(self.total_iters, i, n_batches, stopping):
                self.save("latest", epoch, i + 1)
            if self.cadence.ends_epoch(i, n_batches):
                break
            if stopping:
                bar.close()
                return True
        bar.close()
        self.end_epoch(epoch, g_lr, d_lr)
        return stopping

    def train_iteration(self, epoch, i, n_batches, batch, stop, bar):
        """One generator and one discriminator update; returns whether the ranks stop after it."""
        raise_batch_errors(batch)
        stage = self.enter_stage(epoch, i, n_batches, bar)
        ranks = distributed.world_size()
        seeding.seed_everything(seeding.derive_seed(self.opt.seed, epoch, i,
                                                    *distributed.seed_parts(distributed.rank(), ranks)))
        label, real, edge = batch["label"], batch["image"], batch.get("edge")
        g_losses, fake = self.trainer.generator_step(label, real, stage, edge)
        d_losses = self.trainer.discriminator_step(label, real, stage, edge)
        # Materialise every pending update (parameters, optimiser moments, norm statistics,
        # power-iteration vectors) now, so that work is never fused into the next
        # iteration: otherwise a save in between would change the floating-point result.
        jt.sync_all()
        stopping = distributed.any_rank(stop.requested)
        self.total_iters += 1
        losses = {**g_losses, **d_losses}
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
        if self.log is not None:
            self.record(epoch, i, n_batches, losses, (label, real, fake, stage))
        return stopping

    def enter_stage(self, epoch, i, n_batches, bar):
        """The progressive stage of iteration ``i`` (None: full size); announces each new one and each
        discriminator scale it initialises."""
        trainer, schedule, opt = self.trainer, self.trainer.schedule, self.opt
        stage = schedule.stage(epoch, i / n_batches) if trainer.progressive else None
        if stage is None:
            return None
        if self.shown_stage is None or (stage.level, stage.alpha < 1) != self.shown_stage:
            self.announce(epoch, i, f"training {schedule.stage_text(stage, opt.crop_size, self.crop_h)}", bar)
            self.shown_stage = (stage.level, stage.alpha < 1)
        for level in trainer.enter_stage(stage):
            k = trainer.nets["D"].num_D - 1 - level
            size = schedule.size_text(level, opt.crop_size, self.crop_h)
            self.announce(epoch, i, f"discriminator scale {k} ({size}) initialised from scale {k + 1}", bar)
        return stage

    def announce(self, epoch, i, text, bar):
        """A schedule event, on the console and in the loss log."""
        if self.log is not None:
            line = f"epoch {epoch}, iteration {i + 1}: {text}"
            bar.write(line)
            self.log.note(line)

    def record(self, epoch, i, n_batches, losses, step):
        """The loss log line and the sample grid of this iteration, when the cadence asks for them."""
        if self.cadence.logs_losses(self.total_iters, i, n_batches):
            now = time.time()
            seconds_per_iter = (now - self.t_last) / max(1, self.opt.print_freq)
            self.log.log_losses(epoch, i + 1, self.total_iters, losses, seconds_per_iter)
            self.t_last = now
        if self.cadence.shows_samples(self.total_iters, i, n_batches):
            label, real, fake, stage = step
            full = tuple(real.shape[2:])
            grid = sample_grid(label.numpy(), to_images(fake, full),
                               to_images(self.trainer.stage_inputs(label, real, stage)[2], full), self.opt.label_nc)
            self.log.save_samples(epoch, self.total_iters, grid)

    def end_epoch(self, epoch, g_lr, d_lr):
        """After an epoch's last iteration: end progressive pre-training when it is over, save 'latest' and,
        when the cadence asks, the epoch's own checkpoint."""
        trainer, opt = self.trainer, self.opt
        if trainer.progressive and trainer.schedule.finished(epoch + 1):
            trainer.finish_progressive()
            say(f"epoch {epoch}: progressive pre-training finished; the generator's auxiliary heads are "
                f"removed, it now is the plain {opt.crop_size}x{self.crop_h} model")
        self.save("latest", epoch + 1, 0)
        if self.cadence.saves_epoch(epoch):
            self.save(str(epoch), epoch + 1, 0)
            say(f"epoch {epoch}: saved checkpoint {epoch} (lr G {g_lr:.2e}, D {d_lr:.2e})")

    def save(self, tag, next_epoch, next_iter):
        """Checkpoint ``tag`` (main rank only), from which a resume continues at ``next_epoch``, ``next_iter``."""
        if not distributed.is_main():
            return
        trainer, opt = self.trainer, self.opt
        checkpoint.write_checkpoint(self.folder, tag, trainer.network_states(), {
            "next_epoch": next_epoch, "next_iter": next_iter, "total_iters": self.total_iters,
            "optimizers": trainer.optimizer_states(), "rng": seeding.rng_state(), "seed": opt.seed,
            "d_level": trainer.d_level, "phase": opt.phase_name, "precision": trainer.precision.state()})
