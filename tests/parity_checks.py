"""What the reference-parity tests share: the tolerances, the comparisons against a reference's stored
outputs, and the pieces of a training iteration's comparison.

The tolerances are ``parity_margins.Tolerance``s (tests/parity_margins.py measures how close every CPU kind comes
to each). The comparisons take the reference's arrays, or its ``reference_nets.fingerprint`` of a large one.
Used by tests/test_reference_parity.py (NVlabs/SPADE, APF-GAN-jittor) and tests/test_coesak_parity.py
(Jittor-COESAK-Landscape).
"""

import os
import shlex
from collections import namedtuple

import jittor as jt
import numpy as np

from conftest import load_data_module, tiny_train_opt
from parity_margins import MUTATION_VARIABLE, Tolerance, measured
from torch_format import save_torch_state_dict

nets = load_data_module("reference_nets")

# The discriminator's downsampling as APF-GAN's and COESAK's Jittor code computed it (the zero padding counted in:
# Jittor ignores their count_include_pad=False); this framework's default averages the pixels inside.
ZERO_PADDED = ("--d_downsample", "zero_padded")

# Flags added to the training iterations' options by ``tests/parity_margins.py --mutations``, which shows that the
# tolerances catch a small difference from the references' computation.
MUTATION = shlex.split(os.environ.get(MUTATION_VARIABLE, ""))

# Each tolerance is at least 1.5x the largest value measured on any CPU kind, with Jittor's fused kernels and
# operator by operator (lazy_execution=0), by tests/parity_margins.py (docs/tests.md has the table and where each
# maximum occurs). Written next to each: EPYC = AMD EPYC with AVX-512 (Zen 5), AVX2 = the same computing as an
# AVX2-only CPU (python -m util.cpu_isa --as avx2, which reproduces a real AVX2-only EPYC's figures: G_STEP_TOL's
# 0.26 below, to the digit), both as fused / op by op; Xeon = an Intel Xeon with AVX-512, as recorded when the
# tolerance was first set (not re-measured). Small real differences from the references' computation exceed
# them: a loss weight 10% off, or the discriminator judging the generator's image from before its step
# (tests/parity_margins.py --mutation; docs/tests.md).
OUTPUT_TOL = Tolerance(1e-4, "OUTPUT_TOL")  # EPYC 1.8e-5 / 2.0e-5, AVX2 1.9e-5 / 1.5e-5
LOSS_TOL = Tolerance(1e-4, "LOSS_TOL")  # EPYC 2.3e-5 / 2.6e-5, AVX2 1.3e-5 / 2.3e-5
WEIGHT_TOL = Tolerance(1e-5, "WEIGHT_TOL")  # EPYC 1.5e-8 / 1.5e-8, AVX2 1.5e-8 / 1.5e-8
# The generator's buffers after the step (batch-norm statistics, power-iteration vectors) come from two passes,
# the second with the stepped weights (SPADE's D step generates again).
BUFFER_TOL = Tolerance(5e-4, "BUFFER_TOL")  # EPYC 1.3e-4 / 1.3e-4, AVX2 1.9e-4 / 2.0e-4, Xeon 1.3e-4
# One training iteration: gradients (relative L2), large tensors' steps (relative L2 of their projections) and
# the fraction of a tensor's largest gradient above which an element's step must be the reference's exactly.
# The generator's and encoder's gradients come from the same weights and inputs as the reference's: they differ
# by round-off, amplified by the L1 losses, whose gradients are sign functions of feature differences (SPADE
# against itself, its image moved by 1e-5: its VGG loss gradient moves by 2.1%). Their steps differ more: Adam's
# first step is +-lr by each element's sign, and elements with gradients near zero flip. The discriminator steps
# after the generator (SPADE's and APF-GAN's trainers generate again with the stepped generator), so it sees an
# image that differs by those flips; its sub-discriminators on downsampled inputs amplify that most. APF-GAN
# against itself, its generator's gradients moved by noise of 10% of their mean size before its step: the bias
# of sub-discriminator 1's input convolution moves by 14%.
StepTolerances = namedtuple("StepTolerances", "gradient step robust_fraction")
G_STEP = StepTolerances(
    Tolerance(0.05, "G_GRADIENT_TOL"),  # EPYC 0.015 / 0.015, AVX2 0.022 / 0.023, Xeon 0.034 (SPADE G and D)
    Tolerance(0.4, "G_STEP_TOL"),  # EPYC 0.21 / 0.20, AVX2 0.26 / 0.24, Xeon 0.14 (SPADE)
    0.05)
D_STEP = StepTolerances(
    Tolerance(0.35, "D_GRADIENT_TOL"),  # EPYC 0.073 / 0.10, AVX2 0.23 / 0.18, Xeon 0.19 / 0.071
    Tolerance(0.65, "D_STEP_TOL"),  # EPYC 0.31 / 0.30, AVX2 0.32 / 0.42, Xeon 0.32 / 0.26
    0.25)


def step_tolerances(net):
    """The StepTolerances of network ``net`` (G, E or D)."""
    return D_STEP if net == "D" else G_STEP


def assert_close(ours, ref, tol, what):
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    err = float(np.abs(ours.astype(np.float64) - ref).max())
    scale = max(1.0, float(np.abs(ref).max()))
    measured(tol, err / scale, what)
    assert err <= tol * scale, f"{what}: max abs difference {err:.3g} (scale {scale:.3g})"


def assert_fingerprint(ours, ref_fingerprint, tol, what):
    """A large tensor against the reference's fixed random projections of it."""
    err = float(np.abs(nets.fingerprint(ours) - ref_fingerprint).max())
    scale = max(1.0, float(np.linalg.norm(ours.astype(np.float64))))
    measured(tol, err / scale, what)
    assert err <= tol * scale, f"{what}: projections differ by {err:.3g} (norm {scale:.3g})"


def assert_relative(ours, ref, tol, what):
    """A loss: ``ours`` within ``tol`` of ``ref``, relative."""
    err = abs(float(ours) - float(ref)) / abs(float(ref))
    measured(tol, err, what)
    assert err <= tol, f"{what}: {ours:.7g} against {ref:.7g} (relative difference {err:.3g})"


def assert_features_equal(features, ref, prefix, what):
    """A sub-discriminator's features against the reference's ``prefix``/<layer>[#fingerprint] entries."""
    for j, feature in enumerate(features):
        key = f"{prefix}/{j}"
        if key in ref.files:
            assert_close(feature.numpy(), ref[key], OUTPUT_TOL, f"{what} layer {j}")
        else:
            assert_fingerprint(feature.numpy(), ref[key + "#fingerprint"], OUTPUT_TOL, f"{what} layer {j}")


def build(*flags, discriminator=False):
    from models.networks import build_networks
    opt = tiny_train_opt(*flags)
    return opt, build_networks(opt, with_discriminator=discriminator)


def load(net, state, what):
    from models.networks import load_state
    load_state(net, {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, what)


def semantics(label, opt):
    from models.networks import semantic_input
    return semantic_input(jt.array(label.astype(np.int32)), opt)


# torchvision VGG19 features: (index, weight shape) of the convolutions up to relu5_1
VGG19_CONVS = [(i, (cout, cin, 3, 3)) for i, (cin, cout) in
               zip((0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28),
                   ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 256),
                    (256, 512), (512, 512), (512, 512), (512, 512), (512, 512)))]


def generated_vgg19(tmp_path_factory, seed):
    """A .pth of VGG19's convolutions with the weights the reference runners generated for ``seed``."""
    shapes = {}
    for index, shape in VGG19_CONVS:
        shapes[f"vgg19.features.{index}.weight"] = shape
        shapes[f"vgg19.features.{index}.bias"] = shape[:1]
    vgg = nets.generated_state(seed, shapes, gain=float(np.sqrt(2.0)))
    vgg_path = str(tmp_path_factory.mktemp("vgg") / "vgg19-generated.pth")
    save_torch_state_dict(vgg_path, {k[len("vgg19."):]: v for k, v in vgg.items()})
    return vgg_path


def step_gradients(trainer, owners):
    """{net: {parameter: gradient of the last step}} for {net: optimizer name} ``owners``."""
    grads = {}
    for net, which in owners.items():
        group_grads = {id(p): g for group in trainer.optimizers[which].param_groups
                       for p, g in zip(group["params"], group["grads"])}
        grads[net] = {k: group_grads[id(p)].numpy() for k, p in trainer.nets[net].named_parameters()
                      if id(p) in group_grads}
    return grads


def step_tensors(ref, prefix):
    """{name: (reference gradient or None, its fingerprint or None)} of the entries ``prefix``<name>[#fingerprint]
    of the reference npz ``ref``, and the largest reference gradient among them."""
    out = {}
    for key in ref.files:
        if key.startswith(prefix):
            name, _, kind = key[len(prefix):].partition("#")
            out[name] = (None, ref[key]) if kind else (ref[key], None)
    return out, max(np.abs(g).max() for g, _ in out.values() if g is not None)


def assert_gradients_equal(ours, tensors, largest, what, tol):
    """Per parameter, relative L2 difference <= ``tol``, except parameters whose gradient is round-off (below
    1e-5 of the network's largest: biases that a batch norm removes). Every parameter is compared before the
    failures are reported."""
    assert tensors and set(tensors) <= set(ours), (what, sorted(set(tensors) - set(ours))[:5])
    failures = []
    for name, (ref, fingerprint) in tensors.items():
        mine = ours[name]
        if ref is not None:
            if np.abs(ref).max() < 1e-5 * largest:
                if np.abs(mine).max() >= 1e-5 * largest:
                    failures.append(f"{what} {name}: a round-off gradient in the reference")
                continue
            err = np.linalg.norm(mine - ref) / np.linalg.norm(ref)
        else:
            if not np.any(fingerprint):  # a block the stage does not reach (pre-training)
                if np.any(mine):
                    failures.append(f"{what} {name}: a gradient where the reference has none")
                continue
            err = np.linalg.norm(nets.fingerprint(mine) - fingerprint) / np.linalg.norm(fingerprint)
        if measured(tol, err, f"{what} {name}") > tol:
            failures.append(f"{what} {name}: gradients differ by {err:.3g} (relative L2; tolerance {tol:.3g})")
    assert not failures, "\n".join(failures)


def assert_steps_equal(ours, start, after, tensors, largest, lr, what, tols):
    """``ours`` (state after the step) against the reference's state after it: ``after(key)`` gives
    (array, is_fingerprint). Adam's first step is lr * g / (|g| + eps): +-lr by the sign of each gradient
    element. Elements whose reference gradient is at least ``tols.robust_fraction`` of their tensor's largest
    take the reference's step to WEIGHT_TOL of the weights' scale; the others (whose sign the gradient
    differences can flip) move by at most lr; large tensors (compared through projections) take the
    reference's step to ``tols.step`` (relative L2; +-lr steps of the wrong size or sign give 1 or more).
    Buffers (batch-norm statistics, power-iteration vectors) to BUFFER_TOL of their scale. Every tensor is
    compared before the failures are reported."""
    failures = []
    for key, mine in ours.items():
        mine, before = mine.astype(np.float64), start[key]
        ref, is_fingerprint = after(key)
        if is_fingerprint:
            start_print = nets.fingerprint(before)
            step, our_step = ref - start_print, nets.fingerprint(mine) - start_print
            # a step within the fingerprints' round-off is no step (a block the stage does not reach): the
            # reference's fingerprints were summed on another machine, in another order
            floor = 2 * nets.fingerprint_noise(before)
            still = [bool(np.all(np.abs(s) <= floor)) for s in (step, our_step)]
            if any(still):
                if not all(still):
                    failures.append(f"{what} {key}: " + ("stepped where the reference did not" if still[0] else
                                                         "not stepped where the reference stepped") +
                                    f" (steps' projections {np.abs(step).max():.3g} and "
                                    f"{np.abs(our_step).max():.3g}, round-off up to {floor.max():.3g})")
                continue
            err = measured(tols.step, np.linalg.norm(our_step - step) / np.linalg.norm(step), f"{what} {key}")
            if err > tols.step:
                failures.append(f"{what} {key}: steps differ by {err:.3g} (relative L2; tolerance {tols.step:.3g})")
            continue
        if key not in tensors:  # a buffer
            try:
                assert_close(mine, ref, BUFFER_TOL, f"{what} {key}")
            except AssertionError as err:
                failures.append(str(err))
            continue
        grad = tensors[key][0]
        robust = (np.abs(grad) >= tols.robust_fraction * np.abs(grad).max() if np.abs(grad).max() >= 1e-5 * largest
                  else np.zeros(grad.shape, bool))
        scale = max(1.0, float(np.abs(ref).max()))
        err = measured(WEIGHT_TOL, np.abs(mine - ref)[robust].max(initial=0) / scale, f"{what} {key}")
        if err > WEIGHT_TOL:
            failures.append(f"{what} {key}: clear-gradient elements' steps differ by {err:.3g} of the weights")
        if np.abs(mine - before).max() > lr * (1 + 1e-3):
            failures.append(f"{what} {key}: moved more than lr")
    assert not failures, "\n".join(failures)


def jittors_norms(monkeypatch):
    """Jittor's own instance and batch norms (variance as E[x^2] - E[x]^2, what APF-GAN ran with) in place of
    this framework's (variance from the deviations from the mean); the same for the batch statistics of the
    Inception loss's batch norms (--inception_norm batch). Measured on the fine-tuning iteration: with this
    framework's variance the generator's gradients are up to 7.3% (relative L2) from APF-GAN's, with Jittor's
    1.5%: the generated Inception network's batch norms amplify the round-off."""
    from jittor import nn

    from models import inception, normalization
    monkeypatch.setattr(normalization, "InstanceNorm2d", lambda c: nn.InstanceNorm2d(c, affine=False))
    monkeypatch.setattr(normalization, "BatchNorm2d", lambda c, sync: nn.BatchNorm(c, affine=False, sync=sync))

    def jittors_batch_normalize(x, weight, bias, eps):
        mean = x.mean(dims=(0, 2, 3))
        var = ((x * x).mean(dims=(0, 2, 3)) - mean * mean).maximum(0.0)
        scale = weight / jt.sqrt(var + eps)
        shift = bias - mean * scale
        return x * scale.reshape((1, -1, 1, 1)) + shift.reshape((1, -1, 1, 1))
    monkeypatch.setattr(inception, "batch_normalize", jittors_batch_normalize)
