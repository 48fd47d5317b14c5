"""Stopping a training run gracefully: Ctrl-C (SIGINT) or SIGTERM becomes a request that the training loop
reads after each iteration (``GracefulStop``), so that it can save a resumable checkpoint first. Pure Python;
the MPI agreement on the request is the loop's (``util.core.distributed.any_rank``)."""

import os
import signal
import sys

from util.core import distributed


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
