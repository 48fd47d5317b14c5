"""Reading pretrained-weights files (VGG19, InceptionV3) and freezing the networks built from them; where
they come from and their download: ``util.core.download``. Importing this module does not import Jittor."""

import os

from util.core.errors import WeightsFileError


def read_state_dict(path, what, missing_message):
    """The state dict in ``path`` (a PyTorch .pth, read without PyTorch, or a Jittor .pkl).

    Raises WeightsFileError with ``missing_message`` when the file is absent and a
    short reason when it cannot be read or holds something else.
    """
    if not os.path.isfile(path):
        raise WeightsFileError(missing_message)
    import jittor as jt

    try:
        state = jt.load(path)
    except Exception as err:  # any unreadable file is a user error here
        raise WeightsFileError(f"{path}: cannot read {what} weights ({type(err).__name__}: {err}).") from None
    if not isinstance(state, dict):
        raise WeightsFileError(f"{path}: not a {what} state dict (holds a {type(state).__name__}).")
    return state


def freeze(net):
    """No gradients for the parameters, inference mode; returns ``net``."""
    for p in net.parameters():
        p.stop_grad()
    net.eval()
    return net
