"""What the reference runners (make_*_reference.py) share: the checkout's commit, the compact storage of states
and discriminator features, and, for the runners of Jittor code (APF-GAN, COESAK), generated weights and
gradients. NumPy only at import time; the Jittor helpers import Jittor when called."""

import subprocess
import sys

import numpy as np

import reference_nets as nets


def commit_of(repo, given):
    """``given``, or the commit checked out in ``repo`` (exit with a message when it is no git checkout)."""
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"{repo} is not a git checkout: give its commit with --commit")


def fingerprinted(prefix, state):
    """npz entries of a state: small tensors whole, large ones as ``reference_nets.fingerprint``."""
    return {(f"{prefix}/{k}" if v.size <= nets.SMALL else f"{prefix}/{k}#fingerprint"):
            (v if v.size <= nets.SMALL else nets.fingerprint(v)) for k, v in state.items()}


def features_out(prefix, pred):
    """npz entries of a discriminator's [[features..]..] (arrays with ``.numpy()``): predictions whole, the other
    features as fingerprints, and each scale's feature count."""
    out = {}
    for i, scale in enumerate(pred):
        for j, feature in enumerate(scale):
            f = feature.numpy()
            key = f"{prefix}/{i}/{j}"
            if j == len(scale) - 1:
                out[key] = f
            else:
                out[key + "#fingerprint"] = nets.fingerprint(f)
        out[f"{prefix}/{i}/count"] = np.array(len(scale))
    return out


def use_generated_vgg19(seed, gain):
    """Make Jittor's model-zoo ``vgg19`` (which the references' VGG losses build with pretrained weights, a
    download) return a network whose tensors are generated, ``vgg19.``-prefixed names, with ``gain``."""
    from jittor import models
    real_vgg19 = models.vgg19

    def vgg19_generated(pretrained=False, **kwargs):
        import jittor as jt
        model = real_vgg19(pretrained=False, **kwargs)
        model.load_state_dict({k: jt.array(nets.generated_tensor(seed, "vgg19." + k, v.shape, gain))
                               for k, v in model.state_dict().items()})
        return model
    models.vgg19 = vgg19_generated


def load_generated(net, seed):
    """Every tensor of the Jittor network ``net`` at ``reference_nets.generated_tensor`` of its name."""
    import jittor as jt
    net.load_state_dict({k: jt.array(nets.generated_tensor(seed, k, v.shape)) for k, v in net.state_dict().items()})


def state_numpy(net):
    """The Jittor network's state dict as NumPy copies."""
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def gradients(optimizer, net):
    """{parameter name: gradient of the last step} of ``net``'s parameters in the Jittor ``optimizer``."""
    by_id = {id(p): g for group in optimizer.param_groups for p, g in zip(group["params"], group["grads"])}
    return {k: by_id[id(p)].numpy().copy() for k, p in net.named_parameters() if id(p) in by_id}
