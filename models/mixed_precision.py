"""Mixed-precision training (``--amp bf16|fp16``): half-precision arithmetic, float32 weights.

Jittor's automatic mixed precision decides an operation's type from its inputs: at
``auto_mixed_precision_level`` 5 an operation that sees a half-precision input computes in half
precision (reductions accumulate in float32 inside). ``MixedPrecision.autocast`` switches that on
around the forward passes and ``cast`` turns the networks' inputs to the half type, so convolutions,
norms and losses run in half precision while the weights stay float32. The update runs outside
autocast on float32 gradients: weights and Adam moments never leave float32. Buffers that the
forward pass updates (batch-norm statistics, power-iteration vectors) are put back to float32 after
every step, so checkpoints look the same with or without ``--amp``.

bfloat16 has float32's exponent range and needs nothing more. float16 gradients underflow: the loss
is multiplied by a dynamic scale (``LossScaler``) before the backward pass, the gradients are divided
by it, and a step whose gradients overflowed is skipped and the scale halved.

Mixed precision is for GPUs: Jittor's CPU kernels have no fast half-precision path, so on the CPU
``--amp`` falls back to float32 with a note (``for_device``).
"""

import contextlib
import math

DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
AUTOCAST_LEVEL = 5


class LossScaler:
    """Dynamic loss scale for float16: halve on overflow, double after ``growth_interval`` good steps."""

    def __init__(self, scale=2.0 ** 16, growth_interval=2000, min_scale=1.0):
        self.scale, self.growth_interval, self.min_scale = float(scale), growth_interval, min_scale
        self.good_steps = 0

    def update(self, finite):
        """Record one step's outcome (``finite``: all gradients finite); returns whether to apply it."""
        if not finite:
            self.scale = max(self.min_scale, self.scale / 2)
            self.good_steps = 0
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= 2
            self.good_steps = 0
        return True

    def state(self):
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load(self, state):
        self.scale, self.good_steps = float(state["scale"]), int(state["good_steps"])


class MixedPrecision:
    """Autocast, input casting and the optimiser step for one precision (``dtype`` None: float32)."""

    def __init__(self, dtype=None, scaler=None):
        if dtype not in (None, "bfloat16", "float16"):
            raise ValueError(f"unknown mixed-precision type {dtype!r}")
        self.dtype = dtype
        self.scaler = scaler if scaler is not None else (LossScaler() if dtype == "float16" else None)
        self.skipped_steps = 0

    @classmethod
    def for_device(cls, amp, use_cuda):
        """(MixedPrecision, note or None) for the ``--amp`` choice on this device."""
        if amp != "off" and amp not in DTYPES:
            raise ValueError(f"--amp must be off or one of {', '.join(DTYPES)}, got {amp!r}")
        if amp == "off":
            return cls(), None
        if not use_cuda:
            return cls(), (f"--amp {amp}: mixed precision needs a GPU (Jittor's CPU kernels have no fast "
                           f"half-precision path); training in float32")
        return cls(DTYPES[amp]), None

    @property
    def enabled(self):
        return self.dtype is not None

    def describe(self):
        if not self.enabled:
            return "float32"
        return f"mixed precision ({self.dtype}{', dynamic loss scaling' if self.scaler else ''})"

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        import jittor as jt
        return jt.flag_scope(auto_mixed_precision_level=AUTOCAST_LEVEL)

    def cast(self, x):
        return x.cast(self.dtype) if self.enabled else x

    def step(self, optimizer, loss, nets):
        """Back-propagate ``loss`` and update; returns False when a float16 overflow skipped the update."""
        if not self.enabled:
            optimizer.step(loss)
            return True
        scale = self.scaler.scale if self.scaler else 1.0
        optimizer.backward(loss.float32() * scale if scale != 1.0 else loss.float32())
        grads = [g for group in optimizer.param_groups
                 for p, g in zip(group["params"], group["grads"]) if not p.is_stop_grad()]
        for g in grads:
            g.update(g.float32() / scale if scale != 1.0 else g.float32())
        apply = True
        if self.scaler is not None:
            apply = self.scaler.update(all_finite(grads))
        if apply:
            optimizer.step()
        else:
            optimizer.zero_grad()
            self.skipped_steps += 1
        restore_float32(nets)
        return apply

    def state(self):
        return {"dtype": self.dtype, "scaler": self.scaler.state() if self.scaler else None}

    def load(self, state):
        if state and self.scaler is not None and state.get("scaler"):
            self.scaler.load(state["scaler"])


def all_finite(grads):
    """True when no gradient holds inf or nan (one reduction over all of them)."""
    import jittor as jt
    if not grads:
        return True
    total = jt.concat([g.abs().sum().reshape(1) for g in grads]).sum()
    return math.isfinite(float(total.item()))


def restore_float32(nets):
    """Put every floating-point parameter and buffer of ``nets`` ({name: Module}) back to float32."""
    for net in nets.values():
        for var in net.parameters():
            if var.dtype in ("float16", "bfloat16"):
                var.update(var.float32())
