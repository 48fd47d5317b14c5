"""Expected, user-facing failures.

Every error a user can cause by what they pass in (a bad file, a missing
weight file, an option that makes no sense) is raised as a ``UserError``
subclass. Entry points catch ``UserError`` and print its message without a
traceback (see ``util.core.cli.run_main``); anything else is a bug and keeps its
traceback.
"""


def few(names, shown=5):
    """'a, b, c ... (12 in all)': the first ``shown`` names of a list, for messages."""
    names = list(names)
    return ", ".join(names[:shown]) + (f" ... ({len(names)} in all)" if len(names) > shown else "")


class UserError(Exception):
    """An expected failure caused by the user's input; the message says what to fix."""

    exit_code = 2


class LabelMapError(UserError):
    """A label map that cannot be used: wrong values, wrong channels, unreadable."""


class ImageFileError(UserError):
    """A photo that is missing, truncated or not an image."""


class DatasetError(UserError):
    """A dataset folder whose layout or pairing is wrong (empty, unmatched names, size mismatch)."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


class OptionError(UserError):
    """Options that contradict each other or the machine (e.g. --gpu on without a GPU)."""


class CudaSetupError(OptionError):
    """--gpu on with a GPU that Jittor cannot use: its CUDA toolkit, cuDNN, driver or architecture."""


class WeightsFileError(UserError):
    """A pretrained-weights file (VGG19, Inception) that is missing or of the wrong format."""


class WeightsDownloadError(WeightsFileError):
    """A pretrained-weights download that failed (incomplete, wrong SHA-256, server unreachable); nothing is kept."""


class TrainingDivergedError(UserError):
    """A loss became NaN or Inf; training stopped, the last good checkpoint is kept."""
