"""The progressive-size schedule of pre-training, and the image resizing that goes with it.

Pre-training grows the output resolution level by level: level 0 is the
full size divided by 2**(levels-1) (64x48 for 512x384 with 4 levels), the
last level is the full size. ``ProgressiveSchedule`` maps the training
position (1-based epoch plus the fraction of that epoch already done) to
the active ``Stage``: its level, and ``alpha``, the weight of the new
level's output while it fades in over the upsampled output of the level
below (1 when no fade is running).

Strategies (``--pg_strategy``), with ``pg_niter`` pre-training epochs split
evenly between the ``levels - 1`` growths:
- ``fade``: each growth period first trains the current level alone for
  half the period, then fades the next level in linearly over the other half.
- ``jump``: each level trains alone for a whole period; the next one starts
  at full weight.
From epoch ``pg_niter + 1`` on, the full resolution is trained alone.

When alpha moves (``--pg_alpha``):
- ``iteration``: at every iteration, with the fraction of the epoch done.
- ``epoch``: APF-GAN's schedule, constant within an epoch: with a period
  P = pg_niter // (levels - 1) epochs, 1-based epoch e trains level e // P,
  and while a = (e mod P) / (P / 2) - 1 is positive it fades level
  e // P + 1 in at alpha a; the full resolution is trained alone from epoch
  ``pg_niter`` on (one epoch earlier than with ``iteration``).

Everything here is pure: the schedule is a function of the position only,
so a resumed run continues with the same level and alpha.
"""

from collections import namedtuple

from util.core.errors import OptionError

STRATEGIES = ("fade", "jump")
ALPHA_STEPS = ("iteration", "epoch")

Stage = namedtuple("Stage", "level alpha")
Stage.__doc__ = "Active resolution level (0 = lowest) and the fade-in weight of that level (1 = no fade)."


class ProgressiveSchedule:
    def __init__(self, pg_niter, levels, strategy="fade", alpha_step="iteration"):
        if strategy not in STRATEGIES:
            raise OptionError(f"--pg_strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}.")
        if alpha_step not in ALPHA_STEPS:
            raise OptionError(f"--pg_alpha {alpha_step!r}: expected one of {', '.join(ALPHA_STEPS)}.")
        if alpha_step == "epoch" and strategy != "fade":
            raise OptionError("--pg_alpha epoch is APF-GAN's fade schedule: it needs --pg_strategy fade.")
        if alpha_step == "epoch" and 0 < pg_niter < levels - 1:
            raise OptionError(f"--pg_alpha epoch: --pg_niter {pg_niter} gives less than one epoch per growth "
                              f"({levels - 1} growths); raise --pg_niter.")
        if pg_niter > 0 and levels < 2:
            raise OptionError("progressive pre-training (--pg_niter > 0) needs at least 2 resolution levels "
                              "(--num_D >= 2: one sub-discriminator per level).")
        self.pg_niter = pg_niter
        self.levels = levels
        self.strategy = strategy
        self.alpha_step = alpha_step

    @property
    def enabled(self):
        return self.pg_niter > 0

    @property
    def last_level(self):
        return self.levels - 1

    def stage(self, epoch, fraction=0.0):
        """The Stage at ``fraction`` (0 <= fraction < 1) of the way through 1-based ``epoch``."""
        if self.alpha_step == "epoch":
            return self._epoch_stage(epoch)
        t = (epoch - 1) + fraction
        if not self.enabled or t >= self.pg_niter:
            return Stage(self.last_level, 1.0)
        period = self.pg_niter / (self.levels - 1)
        growth = int(t // period)
        within = (t - growth * period) / period
        if self.strategy == "jump" or within < 0.5:
            return Stage(growth, 1.0)
        return Stage(growth + 1, min(1.0, (within - 0.5) * 2))

    def _epoch_stage(self, epoch):
        if not self.enabled or epoch >= self.pg_niter:
            return Stage(self.last_level, 1.0)
        period = self.pg_niter // (self.levels - 1)
        level = min(epoch // period, self.last_level)
        alpha = (epoch % period) / (period / 2) - 1
        if alpha > 0 and level < self.last_level:
            return Stage(level + 1, alpha)
        return Stage(level, 1.0)

    def finished(self, epoch):
        """True when ``epoch`` (1-based) trains only the full resolution."""
        if self.alpha_step == "epoch":
            return not self.enabled or epoch >= self.pg_niter
        return not self.enabled or epoch - 1 >= self.pg_niter

    def size(self, level, width, height):
        """(width, height) of ``level`` for a full size of width x height."""
        factor = 2 ** (self.last_level - level)
        return width // factor, height // factor

    def size_text(self, level, width, height):
        return "x".join(map(str, self.size(level, width, height)))

    def stage_text(self, stage, width, height):
        """'64x48', or '128x96 fading in over 64x48 (alpha 0.25)' during a fade."""
        if stage.alpha >= 1:
            return self.size_text(stage.level, width, height)
        return (f"{self.size_text(stage.level, width, height)} fading in over "
                f"{self.size_text(stage.level - 1, width, height)} (alpha {stage.alpha:.2f})")

    def describe(self, width, height):
        """Readable lines: which epochs train which resolution."""
        if not self.enabled:
            return [f"no progressive growing: every epoch trains {width}x{height}"]
        if self.alpha_step == "epoch":
            return self._describe_epochs(width, height)
        period = self.pg_niter / (self.levels - 1)
        lines = []

        def span(start, end):
            first, last = int(start) + 1, int(-(-end // 1))
            return f"epoch {first}" if first == last else f"epochs {first}-{last}"

        def wxh(level):
            return self.size_text(level, width, height)

        for g in range(self.levels - 1):
            start = g * period
            if self.strategy == "jump":
                lines.append(f"{span(start, start + period)}: {wxh(g)}")
            else:
                lines.append(f"{span(start, start + period / 2)}: {wxh(g)}")
                lines.append(f"{span(start + period / 2, start + period)}: {wxh(g + 1)} fading in over "
                             f"{wxh(g)}")
        lines.append(f"from epoch {int(-(-self.pg_niter // 1)) + 1}: {width}x{height}, auxiliary heads removed")
        return lines

    def _describe_epochs(self, width, height):
        """describe() for alpha per epoch: runs of epochs with the same level, fading or not."""
        lines, run = [], None

        def close(end):
            first, stage = run
            epochs = f"epoch {first}" if first == end else f"epochs {first}-{end}"
            size = self.size_text(stage.level, width, height)
            if stage.alpha < 1:
                size = f"{size} fading in over {self.size_text(stage.level - 1, width, height)}"
            lines.append(f"{epochs}: {size}")

        for epoch in range(1, self.pg_niter):
            stage = self.stage(epoch)
            key = Stage(stage.level, 1.0 if stage.alpha >= 1 else 0.0)
            if run is None or key != run[1]:
                if run is not None:
                    close(epoch - 1)
                run = (epoch, key)
        if run is not None:
            close(self.pg_niter - 1)
        lines.append(f"from epoch {self.pg_niter}: {width}x{height}, auxiliary heads removed")
        return lines


def schedule_from_options(opt):
    return ProgressiveSchedule(opt.pg_niter, opt.num_D, opt.pg_strategy, getattr(opt, "pg_alpha", "iteration"))
