"""The edge-guided generator (--netG spade_edge): outputs, parameter names, the Canny edge targets
against a per-pixel transcription of ECGAN's edge script, training steps and a checkpoint round trip."""

import copy
import os

import jittor as jt
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import tiny_train_opt

EDGE_FLAGS = ["--netG", "spade_edge"]
NEW_PREFIXES = ("edge_", "conv_edge.", "sp_")


def _seg(n=2, h=96, w=128, seed=0):
    from models.networks import one_hot
    return one_hot(jt.array(np.random.RandomState(seed).randint(0, 29, (n, h, w)).astype(np.uint8)), 29)


@pytest.fixture(scope="module")
def edge_net():
    from models.networks import build_networks
    opt = tiny_train_opt(*EDGE_FLAGS, "--norm_G", "spectralspadeinstance3x3")
    g = build_networks(opt, with_discriminator=False)["G"]
    g.eval()  # fixed spectral-norm vectors: the same input gives the same output
    return opt, g


def test_outputs_shapes_ranges_and_execute_is_the_final_image(edge_net):
    _, g = edge_net
    seg = _seg()
    out = g.outputs(seg)
    image, branch, edge = (v.numpy() for v in out)
    assert image.shape == (2, 3, 96, 128) and branch.shape == (2, 3, 96, 128) and edge.shape == (2, 1, 96, 128)
    for v in (image, branch, edge):
        assert np.isfinite(v).all() and np.abs(v).max() <= 1.0
    np.testing.assert_array_equal(g(seg).numpy(), image)


def test_trunk_keeps_the_spade_parameter_names(edge_net):
    from models.generator import SPADEGenerator
    opt, g = edge_net
    plain = SPADEGenerator(opt).state_dict()
    own = g.state_dict()
    assert all(tuple(own[k].shape) == tuple(v.shape) for k, v in plain.items())
    extra = sorted(set(own) - set(plain))
    assert extra and all(k.startswith(NEW_PREFIXES) for k in extra)
    named = {"edge_att_3.weight", "conv_edge.weight", "sp_class.weight", "sp_features.weight", "sp_img.weight"}
    assert named <= set(extra)
    assert tuple(own["edge_att_0.weight"].shape) == (8 * opt.ngf, 4 * opt.ngf, 1, 1)  # edge half the block width


def test_edge_branch_gates_the_image_branch_and_feeds_the_final_image(edge_net):
    """Changing the first edge block changes the branch image (through the attention), changing the edge
    head changes only the edge map and the final image."""
    _, g = edge_net
    seg = _seg(n=1)
    before = [v.numpy() for v in g.outputs(seg)]
    for name, changed in (("edge_0.conv_1", (0, 1, 2)), ("conv_edge", (0, 2))):
        layer = g
        for part in name.split("."):
            layer = getattr(layer, part)
        saved = layer.weight.numpy()
        layer.weight.assign(jt.array(saved * 50.0))
        after = [v.numpy() for v in g.outputs(seg)]
        layer.weight.assign(jt.array(saved))
        differs = tuple(i for i in range(3) if not np.array_equal(before[i], after[i]))
        assert differs == changed, name


def test_progressive_heads_are_refused():
    from models.edge_generator import EdgeGuidedGenerator
    with pytest.raises(ValueError, match="pg_niter"):
        EdgeGuidedGenerator(tiny_train_opt(*EDGE_FLAGS), progressive_levels=2)


# -- edge targets --------------------------------------------------------------

def reference_canny(rgb):
    """Per-pixel transcription of ECGAN's scripts/canny.m with replicated borders and the magnitude floor
    of 0.5, in float64: MATLAB's flipped-kernel convolutions, atan2 angles in degrees, loops for
    suppression and hysteresis."""
    rgb = rgb.astype(np.float64)
    gray = 0.2989 * rgb[..., 0] + 0.5870 * rgb[..., 1] + 0.1140 * rgb[..., 2]
    gauss = np.array([[2, 4, 5, 4, 2], [4, 9, 12, 9, 4], [5, 12, 15, 12, 5], [4, 9, 12, 9, 4], [2, 4, 5, 4, 2]]) / 159
    smooth = ndimage.convolve(gray, gauss, mode="nearest")
    fx = ndimage.convolve(smooth, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), mode="nearest")
    fy = ndimage.convolve(smooth, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]), mode="nearest")
    angle = np.degrees(np.arctan2(fy, fx)) % 360
    mag = np.sqrt(fx ** 2 + fy ** 2)
    h, w = gray.shape
    thinned = np.zeros((h, w))
    for i in range(1, h - 1):
        for j in range(1, w - 1):
            a = angle[i, j]
            if a < 22.5 or 157.5 <= a < 202.5 or a >= 337.5:
                pair = (mag[i, j + 1], mag[i, j - 1])
            elif 22.5 <= a < 67.5 or 202.5 <= a < 247.5:
                pair = (mag[i + 1, j - 1], mag[i - 1, j + 1])
            elif 67.5 <= a < 112.5 or 247.5 <= a < 292.5:
                pair = (mag[i + 1, j], mag[i - 1, j])
            else:
                pair = (mag[i + 1, j + 1], mag[i - 1, j - 1])
            thinned[i, j] = mag[i, j] if mag[i, j] >= max(pair) else 0
    low = max(0.075 * thinned.max(), 0.5)
    high = max(0.175 * thinned.max(), np.nextafter(low, 0))  # "above high" implies "at least low"
    edges = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            if thinned[i, j] < low:
                continue
            if thinned[i, j] > high or (thinned[max(0, i - 1):i + 2, max(0, j - 1):j + 2] > high).any():
                edges[i, j] = 1
    return edges


def _to_batch(rgbs):
    return jt.array(np.stack([r.astype(np.float32) / 127.5 - 1 for r in rgbs]).transpose(0, 3, 1, 2))


def test_canny_edges_match_the_reference(tiny_dataset, fusion):
    from models.edges import canny_edges
    folder = os.path.join(tiny_dataset, "train", "imgs")
    rgbs = [np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in sorted(os.listdir(folder))[:2]]
    blobs = ndimage.gaussian_filter(np.random.RandomState(1).rand(96, 128, 3) * 255, (2, 2, 0))
    rgbs.append(np.clip(blobs * 3 - 200, 0, 255).astype(np.uint8))
    got = canny_edges(_to_batch(rgbs)).numpy()
    for rgb, edges in zip(rgbs, got):
        ref = reference_canny(rgb)
        assert 0.01 < ref.mean() < 0.5
        np.testing.assert_array_equal(edges[0], ref)


def test_edge_target_of_a_step_and_of_a_flat_photo(fusion):
    from models.edges import edge_target
    step = np.zeros((96, 128, 3), np.uint8)
    step[:, 60:] = 200
    flat = np.full((96, 128, 3), 90, np.uint8)
    target = edge_target(_to_batch([step, flat])).numpy()
    assert set(np.unique(target)) <= {-1.0, 1.0}
    columns = np.nonzero((target[0, 0, 1:-1] > 0).any(axis=0))[0]
    assert set(columns) <= {59, 60} and (target[0, 0, 1:-1, 59:61] > 0).any(axis=1).all()
    assert (target[1] == -1).all()


# -- training and checkpoints ------------------------------------------------------

def test_progressive_pre_training_is_refused_by_the_options():
    from util.core.errors import OptionError
    with pytest.raises(OptionError, match="spade_edge does not support progressive"):
        tiny_train_opt(*EDGE_FLAGS, "--pg_niter", "2")


def _state(net):
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tiny_dataset):
    """A trainer of the edge-guided generator after two iterations on the demo data, with the
    parameters from before them and the loss terms of each step."""
    from data.datasets import PairedDataset
    from models.trainer import SPADETrainer
    from util.core.seeding import seed_everything
    seed_everything(0)
    opt = tiny_train_opt(*EDGE_FLAGS, "--batchSize", "2", "--lambda_l1", "1",
                         input_path=os.path.join(tiny_dataset, "train"))
    trainer = SPADETrainer(opt)
    before = {name: _state(net) for name, net in trainer.nets.items()}
    dataset = PairedDataset(opt.input_path, opt.label_nc, 128, 96, 128, batch_size=2, num_workers=0)
    dataset.set_epoch(1)
    losses = []
    for i, batch in enumerate(dataset):
        if i == 2:
            break
        g_losses, fake = trainer.generator_step(batch["label"], batch["image"])
        assert fake.shape == (2, 3, 96, 128)
        losses.append((g_losses, trainer.discriminator_step(batch["label"], batch["image"])))
    return opt, trainer, before, losses


def test_training_steps_have_finite_edge_and_branch_terms_and_change_every_part(trained):
    _, trainer, before, losses = trained
    for g_losses, d_losses in losses:
        assert {"G_GAN", "G_GAN_Feat", "G_L1", "G_GAN_branch", "G_GAN_Feat_branch", "G_L1_branch",
                "G_Edge"} <= set(g_losses)
        assert set(d_losses) == {"D_Fake", "D_Real"}
        assert all(np.isfinite(v) for v in [*g_losses.values(), *d_losses.values()])
        assert 0 < g_losses["G_Edge"] <= 2 * trainer.opt.lambda_edge
    after = _state(trainer.nets["G"])
    for key in ("fc.weight", "up_0.conv_0.weight_orig", "edge_0.conv_0.weight", "edge_att_3.weight",
                "conv_edge.weight", "conv_img.weight", "sp_class.weight", "sp_img.weight"):
        assert not np.array_equal(before["G"][key], after[key]), key
    d_after = _state(trainer.nets["D"])
    assert any(not np.array_equal(before["D"][k], d_after[k]) for k in d_after)


def test_edge_term_is_the_l1_distance_to_the_canny_target(trained, monkeypatch):
    from data.datasets import PairedDataset
    from models.edges import canny_edges
    from models.edge_generator import EdgeGuidedOutputs
    opt, trainer, _, _ = trained
    real = next(iter(PairedDataset(opt.input_path, opt.label_nc, 128, 96, 128, batch_size=2, num_workers=0)))["image"]
    edge = jt.tanh(jt.randn(2, 1, 96, 128))
    monkeypatch.setattr(opt, "lambda_branch", 0.0)  # the edge term alone
    terms = trainer.edge_guided_terms(EdgeGuidedOutputs(None, None, edge), None, real, None)
    expected = np.abs(edge.numpy() - (2 * canny_edges(real).numpy() - 1)).mean() * opt.lambda_edge
    assert set(terms) == {"G_Edge"} and terms["G_Edge"].item() == pytest.approx(expected, rel=1e-5)


def test_checkpoint_round_trip_through_generation_loading(trained, tmp_path):
    """Saved like train_phase.py saves, loaded like test_phase.py loads: the same images."""
    from util.core.checkpoint import write_checkpoint
    from models.generation import load_generator
    opt, trainer, _, _ = trained
    write_checkpoint(str(tmp_path / "edge"), "1", trainer.network_states())
    gen_opt = copy.copy(opt)
    gen_opt.checkpoints_dir, gen_opt.name, gen_opt.which_epoch = str(tmp_path), "edge", "1"
    jt.set_global_seed(123)  # a fresh build starts from other weights
    loaded = load_generator(gen_opt)["G"]
    trainer.nets["G"].eval()
    seg = _seg()
    np.testing.assert_array_equal(loaded(seg).numpy(), trainer.nets["G"](seg).numpy())
