"""The training loop's decisions, without training: when it logs, shows samples and saves
(models.training.Cadence), and how a signal becomes a stop request (util.core.stopping.GracefulStop).
Pure Python and fast; the runs that use them are in test_training.py, test_progressive.py and test_recipe.py."""

import os
import signal
import types

import pytest

from models.training import Cadence
from util.core.stopping import GracefulStop


def iterations(epochs, n_batches):
    """(epoch, i, total_iters) of every iteration of a run from its start, as the loop counts them."""
    total = 0
    for epoch in range(1, epochs + 1):
        for i in range(n_batches):
            total += 1
            yield epoch, i, total


def test_losses_are_logged_every_print_freq_iterations_and_at_each_epochs_end():
    cadence = Cadence(print_freq=3, display_freq=100, save_latest_freq=100, save_epoch_freq=1, total_epochs=2)
    logged = [total for _, i, total in iterations(2, 5) if cadence.logs_losses(total, i, 5)]
    assert logged == [3, 5, 6, 9, 10]


def test_samples_are_shown_every_display_freq_iterations_and_at_each_epochs_end():
    cadence = Cadence(print_freq=100, display_freq=4, save_latest_freq=100, save_epoch_freq=1, total_epochs=3)
    shown = [total for _, i, total in iterations(3, 3) if cadence.shows_samples(total, i, 3)]
    assert shown == [3, 4, 6, 8, 9]


def test_print_and_display_frequencies_are_independent():
    cadence = Cadence(print_freq=2, display_freq=3, save_latest_freq=100, save_epoch_freq=1, total_epochs=1)
    assert [cadence.logs_losses(t, t - 1, 7) for t in range(1, 8)] == [False, True, False, True, False, True, True]
    assert [cadence.shows_samples(t, t - 1, 7) for t in range(1, 8)] == [False, False, True, False, False, True,
                                                                         True]


def test_latest_is_saved_every_save_latest_freq_iterations_but_not_at_an_epochs_end():
    cadence = Cadence(print_freq=1, display_freq=1, save_latest_freq=2, save_epoch_freq=1, total_epochs=2)
    saved = [(epoch, i + 1) for epoch, i, total in iterations(2, 4) if cadence.saves_latest(total, i, 4, False)]
    # totals 2 and 6 are within their epochs; 4 and 8 end an epoch, whose end saves 'latest' anyway
    assert saved == [(1, 2), (2, 2)]


def test_a_stop_request_saves_latest_within_the_epoch_only():
    cadence = Cadence(print_freq=1, display_freq=1, save_latest_freq=1000, save_epoch_freq=1, total_epochs=1)
    assert [cadence.saves_latest(i + 1, i, 4, True) for i in range(4)] == [True, True, True, False]
    assert not any(cadence.saves_latest(i + 1, i, 4, False) for i in range(4))


def test_epoch_checkpoints_every_save_epoch_freq_epochs_and_after_the_last():
    cadence = Cadence(print_freq=1, display_freq=1, save_latest_freq=1, save_epoch_freq=3, total_epochs=7)
    assert [e for e in range(1, 8) if cadence.saves_epoch(e)] == [3, 6, 7]
    every = Cadence(print_freq=1, display_freq=1, save_latest_freq=1, save_epoch_freq=1, total_epochs=3)
    assert [e for e in range(1, 4) if every.saves_epoch(e)] == [1, 2, 3]
    # a phase that starts later (fine-tuning from --init_from) counts epochs of the whole run
    late = Cadence(print_freq=1, display_freq=1, save_latest_freq=1, save_epoch_freq=10, total_epochs=310)
    assert [e for e in range(181, 311) if late.saves_epoch(e)] == list(range(190, 311, 10))


def test_the_last_iteration_of_an_epoch_is_recognised():
    assert [Cadence.ends_epoch(i, 3) for i in range(3)] == [False, False, True]
    assert Cadence.ends_epoch(0, 1)


def test_cadence_reads_the_options():
    opt = types.SimpleNamespace(print_freq=2, display_freq=3, save_latest_freq=5, save_epoch_freq=7, niter=4,
                                niter_decay=6)
    cadence = Cadence.from_options(opt)
    assert (cadence.print_freq, cadence.display_freq, cadence.save_latest_freq, cadence.save_epoch_freq,
            cadence.total_epochs) == (2, 3, 5, 7, 10)


def test_a_signal_becomes_a_stop_request_and_a_second_one_aborts():
    before = {sig: signal.getsignal(sig) for sig in GracefulStop.SIGNALS}
    with GracefulStop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {sig: signal.getsignal(sig) for sig in GracefulStop.SIGNALS} == before
