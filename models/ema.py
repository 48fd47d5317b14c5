"""Exponential moving average (EMA) of networks' weights, as OASIS and StyleGAN2 keep of their generator.

``ExponentialMovingAverage`` owns one copy of each network it is given (``copies``, made with
``copy.deepcopy``: the same modules and state-dict keys, no random draws). The copies are in eval mode, are
never given to an optimiser and are never run by training. ``update()`` moves each copy towards its live
network: every trainable parameter p (a Var that is not stop-grad in the live network) becomes

    ema = decay * ema + (1 - decay) * p

and every other state-dict entry (batch-norm running statistics, spectral-norm power-iteration vectors,
integer counters) is copied from the live network as it is. ``copy_from_live`` sets a copy, or some of its
entries, to the live values (a fresh start). The pairing of entries is by state-dict key and is made at every
call, so a structural change applied to both networks (e.g. removed to-RGB heads) needs nothing else. Names of
the copies in checkpoints are the trainer's business (``models.networks.ema_network_names``).
"""

import copy

from util.core.errors import few


class ExponentialMovingAverage:
    def __init__(self, nets, decay):
        """EMA copies of ``nets`` ({name: Module}), equal to them now; ``decay`` in [0, 1)."""
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be within 0 <= decay < 1, got {decay}")
        self.decay = float(decay)
        self.live = dict(nets)
        self.copies = {}
        for name, net in self.live.items():
            self.copies[name] = copy.deepcopy(net)
            self.copies[name].eval()
        for name in self.copies:
            self._pairs(name)  # fail now if a copy does not mirror its network

    def _pairs(self, name):
        """[(key, ema Var, live Var, trainable)] of network ``name``."""
        own, live_net = self.copies[name].state_dict(), self.live[name]
        theirs = live_net.state_dict()
        if list(own) != list(theirs):
            only_ema, only_live = sorted(set(own) - set(theirs)), sorted(set(theirs) - set(own))
            raise ValueError(f"the EMA copy of {name} no longer mirrors it (only in the copy: "
                             f"{few(only_ema) or 'none'}, only in the network: {few(only_live) or 'none'})")
        trainable = {id(p) for p in live_net.parameters() if not p.is_stop_grad()}
        return [(key, own[key], var, id(var) in trainable) for key, var in theirs.items()]

    def update(self):
        """One EMA step of every copy: parameters averaged, all other entries copied."""
        d = self.decay
        for name in self.copies:
            for _, ema, live, trainable in self._pairs(name):
                value = live.detach()
                if trainable:
                    value = (d * ema.detach() + (1 - d) * value) if d > 0 else value
                ema.update(value.astype(ema.dtype))

    def copy_from_live(self, name, keys=None):
        """Set the copy of ``name`` (only ``keys`` of its state dict, when given) to the live values."""
        wanted = None if keys is None else set(keys)
        for key, ema, live, _ in self._pairs(name):
            if wanted is None or key in wanted:
                ema.update(live.detach().astype(ema.dtype))
