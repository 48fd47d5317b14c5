"""Parity with the COESAK team's Jittor code (wqliu657/Jittor-COESAK-Landscape, ECGAN's generator), from the
outputs its own code computed: tests/data/coesak_reference.npz, made by tests/data/make_coesak_reference.py on
generated weights (tests/data/reference_nets.py rebuilds them here).

Compared: ECGAN's generator (``--netG ecgan``) and the style encoder, eval mode, with COESAK's weights mapped
by ``models.source_checkpoints.map_coesak`` (its spectral norm never normalised: built here without it):
the final image, the branch image and the 3-channel edge, mu and logvar; the multiscale discriminator on a
photo and on a Sobel edge image; its Sobel edge targets byte for byte; its test.py: the generated image it
converts, and its whole-image LAB transfer byte for byte. As in tests/test_reference_parity.py, Jittor's own
norms (what COESAK's code ran with) are swapped in; the discriminator downsamples as COESAK's did
(``--d_downsample zero_padded``, as the ``coesak`` recipe does). Tolerances: tests/parity_checks.py.
"""

import json
import os

import jittor as jt
import numpy as np
import pytest

from conftest import run_script, tiny_train_opt
from parity_checks import (LOSS_TOL, MUTATION, OUTPUT_TOL, assert_close, assert_features_equal, assert_gradients_equal,
                           assert_relative, assert_steps_equal, build, generated_vgg19, jittors_norms, load, nets, semantics, step_gradients, step_tensors, step_tolerances)

HERE = os.path.dirname(os.path.abspath(__file__))
COESAK = np.load(os.path.join(HERE, "data", "coesak_reference.npz"))
SEED = 31  # make_coesak_reference.SEED
HEIGHT, WIDTH = 192, 256

# COESAK's option defaults (its 'more' layout, use_vae, z_dim 256, spectral norms that did nothing, its
# discriminator's downsampling) at the runner's size: 29 classes, 256x192, ngf 8, ndf 8, num_D 2, n_layers_D 3.
ECGAN_OPTIONS = ["--netG", "ecgan", "--label_nc", "29", "--crop_size", "256", "--aspect_ratio", str(4 / 3),
                 "--ngf", "8", "--ndf", "8", "--num_D", "2", "--n_layers_D", "3", "--num_upsampling_layers",
                 "spade_more", "--norm_G", "spadesyncbatch3x3", "--norm_E", "instance", "--norm_D", "instance",
                 "--use_vae", "--z_dim", "256", "--spade_hidden", "128", "--d_downsample", "zero_padded"]


def coesak_state(net, prefix, seed):
    """Our state dict of the COESAK network ``net`` stored under ``prefix`` (or only its seed and shapes)."""
    from models.source_checkpoints import map_coesak
    if f"{prefix}/__shapes__" in COESAK.files:
        state = nets.rebuild_state(*nets.unpack(COESAK, prefix), seed)
    else:
        shapes = {k: tuple(v) for k, v in json.loads(str(COESAK[f"{prefix.split('/')[0]}/shapes"])).items()}
        state = nets.generated_state(seed, shapes)
    return map_coesak(net, state)


@pytest.fixture
def coesak_networks(monkeypatch):
    """(options, {G, Es, D}) with COESAK's generator, style encoder and discriminator weights, Jittor's norms
    and downsampling."""
    jittors_norms(monkeypatch)
    opt, networks = build(*ECGAN_OPTIONS, discriminator=True)
    load(networks["G"], coesak_state("G", "g/state", str(COESAK["g_seed"]))[0], "COESAK generator")
    load(networks["Es"], coesak_state("E", "e/state", str(COESAK["e_seed"]))[0], "COESAK style encoder")
    load(networks["D"], coesak_state("D", "d", str(COESAK["d/seed"]))[0], "COESAK discriminator")
    for net in networks.values():
        net.eval()
    return opt, networks


def test_mapping_drops_only_the_unused_layer_and_the_power_iteration_vectors():
    from models.source_checkpoints import map_coesak
    state = nets.rebuild_state(*nets.unpack(COESAK, "g/state"), str(COESAK["g_seed"]))
    mapped, notes = map_coesak("G", state)
    dropped = {k for k in state if k.endswith((".weight_u", ".weight_v"))} | {"fc1.weight", "fc1.bias"}
    assert len(mapped) == len(state) - len(dropped)
    assert "head_0.conv_0.weight" in mapped and "conv_comb1.weight" in mapped and "fc1.weight" not in mapped
    assert any("fc1.weight, fc1.bias" in n for n in notes) and any("raw weight_orig" in n for n in notes)
    d_state = coesak_state("D", "d", str(COESAK["d/seed"]))[0]
    assert "discriminator_1.model1.0.0.weight" in d_state and not any("sequential" in k for k in d_state)


def test_ecgan_generator_and_style_encoder_equal_coesak(coesak_networks):
    opt, networks = coesak_networks
    photo = jt.array(nets.photos(SEED, 1, HEIGHT, WIDTH))
    with jt.no_grad():
        mu, logvar = networks["Es"](photo)
        outputs = networks["G"].outputs(semantics(COESAK["label"][None].astype(np.int64), opt), z=mu)
    assert_close(mu.numpy(), COESAK["mu"], OUTPUT_TOL, "COESAK style encoder mu")
    assert_close(logvar.numpy(), COESAK["logvar"], OUTPUT_TOL, "COESAK style encoder logvar")
    assert_close(outputs.image.numpy(), COESAK["image2"], OUTPUT_TOL, "ECGAN final (semantic-preserving) image")
    assert_close(outputs.branch_image.numpy(), COESAK["image"], OUTPUT_TOL, "ECGAN branch image")
    assert_close(outputs.edge.numpy(), COESAK["edge"], OUTPUT_TOL, "ECGAN edge")
    assert outputs.edge.shape[1] == 3


@pytest.mark.parametrize("kind", ["photo", "edge"])
def test_discriminator_judges_photos_and_edge_images_like_coesak(coesak_networks, kind):
    from data.edge_maps import sobel_edge_map
    opt, networks = coesak_networks
    label = nets.label_map(SEED, 2, 96, 128, 29)
    if kind == "photo":
        image = nets.photos(SEED, 2, 96, 128)
    else:  # COESAK's loader: the edge PNG read as RGB, in [-1, 1]
        edges = np.stack([sobel_edge_map(p) for p in nets.photo_bytes(SEED, 2, 96, 128)])
        image = np.repeat((edges.astype(np.float32) / 255 * 2 - 1)[:, None], 3, axis=1)
    with jt.no_grad():
        pred = networks["D"](semantics(label, opt), jt.array(image))
    assert len(pred) == 2
    for i, scale in enumerate(pred):
        assert len(scale) == int(COESAK[f"d/{kind}/{i}/count"])
        assert_features_equal(scale, COESAK, f"d/{kind}/{i}", f"COESAK D {i} on {kind}s")


def test_sobel_edge_maps_are_coesaks_byte_for_byte():
    from data.edge_maps import sobel_edge_map
    photos = nets.photo_bytes(SEED, 2, 96, 128)
    ours = np.stack([sobel_edge_map(p) for p in photos])
    np.testing.assert_array_equal(ours, COESAK["sobel/96x128"])
    assert ours.max() > 100 and (ours == 0).any()  # real edges, and flat parts
    flipped = sobel_edge_map(photos[0][:, ::-1].copy())[:, ::-1]
    assert not np.array_equal(flipped, ours[0])  # |gx + gy| / 2 is not mirror-symmetric: edges before flips


def test_colour_transfer_is_coesaks_test_py_byte_for_byte():
    """From the reference photo's bytes (its loader's float round trip included) and the generated image as its
    test.py converts it, the image its test.py writes."""
    import cv2

    from data.colour_transfer import WHOLE_IMAGE, coesak_reference, transfer
    reference = nets.photo_bytes(str(COESAK["testpy/reference_seed"]), 1, HEIGHT, WIDTH)[0]
    seen = coesak_reference(reference, (WIDTH, HEIGHT))
    np.testing.assert_array_equal(seen, COESAK["testpy/reference_converted"])
    assert 0.05 < (seen != reference).mean() < 0.5  # the round trip lowers a part of the values by one
    result = transfer("coesak", COESAK["testpy/generated"], reference)
    assert result.mode == WHOLE_IMAGE
    np.testing.assert_array_equal(result.image, cv2.cvtColor(COESAK["testpy/written"], cv2.COLOR_BGR2RGB))


def test_colour_transfer_shifts_a_flat_channel_instead_of_dividing_by_zero():
    from data.colour_transfer import coesak_transfer
    flat = np.full((8, 8, 3), 120, np.uint8)
    reference = np.random.RandomState(0).randint(0, 256, (16, 16, 3)).astype(np.uint8)
    out = coesak_transfer(flat, reference).image
    assert out.shape == flat.shape and len(np.unique(out.reshape(-1, 3), axis=0)) == 1


def test_test_py_generates_what_the_generator_computes(coesak_networks):
    """COESAK's test.py on the calibrated generator (z = mu): the image it converts is this framework's final
    image of the same label map and reference photo, converted as it converts it (truncated), within one grey
    level; rounded (this framework's images), about half a grey level brighter."""
    from data.transforms import array_to_image
    opt, networks = coesak_networks
    reference = nets.photo_bytes(str(COESAK["testpy/reference_seed"]), 1, HEIGHT, WIDTH)[0]
    photo = jt.array(reference.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1)
    with jt.no_grad():
        mu, _ = networks["Es"](photo)
        image = networks["G"](semantics(COESAK["testpy/label"][None].astype(np.int64), opt), z=mu).numpy()[0]
    truncated = array_to_image(image, truncate=True).astype(int) - COESAK["testpy/generated"]
    assert np.abs(truncated).max() <= 1 and np.abs(truncated).mean() < 0.01, np.abs(truncated).mean()
    rounded = array_to_image(image).astype(int) - COESAK["testpy/generated"]
    assert rounded.min() >= 0 and 0.3 < rounded.mean() < 0.7


# ----------------------------------------------------------------------------
# One training iteration
# ----------------------------------------------------------------------------

# COESAK's training options (hinge, feature matching and VGG19 at 10, KLD at 0.05, Adam 0 / 0.9 at 2e-4 with
# TTUR; its discriminator step generates again), VGG19 fed the [-1, 1] images as its loss does.
COESAK_TRAIN = [*ECGAN_OPTIONS, "--batchSize", "2", "--gan_mode", "hinge", "--no_vgg_loss", "no", "--vgg_input",
                "raw", "--lambda_vgg", "10", "--lambda_feat", "10", "--lambda_kld", "0.05", "--lambda_l1", "0",
                "--beta1", "0", "--beta2", "0.9", "--lr", "0.0002", "--d_fake", "regenerate"]
COESAK_LOSS_NAMES = {"GAN": "G_GAN", "GAN_Feat": "G_GAN_Feat", "VGG": "G_VGG", "KLD": "KLD", "D_Fake": "D_Fake",
                     "D_real": "D_Real"}
OURS = {"G": "G", "E": "Es", "D": "D"}  # COESAK's network -> ours


def training_edges(n, h, w):
    """make_coesak_reference.training_edges as COESAK's loader gives them: [N, 3, H, W] in [-1, 1]."""
    edges = nets.photo_bytes(SEED, n, h, w).mean(axis=3).astype(np.uint8)
    return np.repeat((edges.astype(np.float32) / 255.0 * 2 - 1)[:, None], 3, axis=1)


def training_start(net):
    """COESAK's starting state of ``net`` (its names)."""
    shapes = {k: tuple(v) for k, v in json.loads(str(COESAK[f"train/{net}/shapes"])).items()}
    return nets.generated_state(str(COESAK[f"train/{net}/seed"]), shapes)


def renamed(net, tensors):
    from models.source_checkpoints import coesak_key
    return {coesak_key(net, k): v for k, v in tensors.items() if coesak_key(net, k) is not None}


@pytest.fixture(scope="module")
def coesak_iteration(tmp_path_factory):
    """This framework's trainer (Jittor's norms and downsampling swapped in) after one G step and one D step
    from COESAK's start: (losses, {net: state after}, {net: {parameter: gradient}}, {net: learning rate})."""
    from models.source_checkpoints import map_coesak
    from models.trainer import SPADETrainer
    patch = pytest.MonkeyPatch()
    jittors_norms(patch)
    try:
        trainer = SPADETrainer(tiny_train_opt(*COESAK_TRAIN, "--vgg_weights",
                                              generated_vgg19(tmp_path_factory, str(SEED)), *MUTATION))
        for theirs, ours in OURS.items():
            load(trainer.nets[ours], map_coesak(theirs, training_start(theirs))[0], f"COESAK training {theirs}")
        label = jt.array(COESAK["train/label"].astype(np.int32))
        n, h, w = COESAK["train/label"].shape
        photos, edges = jt.array(nets.photos(SEED, n, h, w)), jt.array(training_edges(n, h, w))
        # the reparameterisation's noise as the runner fed COESAK's (the same draw in both steps)
        patch.setattr(jt, "randn", lambda shape, dtype="float32": jt.array(nets.noise(tuple(shape))).astype(dtype))
        losses = dict(trainer.generator_step(label, photos, None, edges)[0])
        losses.update(trainer.discriminator_step(label, photos, None, edges))
    finally:
        patch.undo()
    grads = step_gradients(trainer, {"G": "G", "Es": "G", "D": "D"})
    states = {net: {k: v.numpy() for k, v in trainer.nets[net].state_dict().items()} for net in OURS.values()}
    g_lr, d_lr = trainer.set_epoch_learning_rate(1)
    return losses, states, grads, {"G": g_lr, "Es": g_lr, "D": d_lr}


def test_coesak_training_losses_equal_coesak(coesak_iteration):
    losses = coesak_iteration[0]
    names = [COESAK_LOSS_NAMES[str(name)] for name in COESAK["train/loss_names"]]
    assert set(names) == set(losses)
    for name, value in zip(names, COESAK["train/losses"]):
        assert_relative(losses[name], value, LOSS_TOL, f"COESAK {name}")


def coesak_step_tensors(net):
    """step_tensors of COESAK's ``net`` under our names."""
    tensors, largest = step_tensors(COESAK, f"train/{net}/grad/")
    # Jittor lists the batch-norm statistics among a module's parameters (with a zero gradient): buffers here
    tensors = {k: v for k, v in tensors.items() if not k.endswith(("running_mean", "running_var"))}
    return renamed(net, tensors), largest


@pytest.mark.parametrize("net", list(OURS))
def test_coesak_training_gradients_equal_coesaks(coesak_iteration, net):
    tensors, largest = coesak_step_tensors(net)
    assert_gradients_equal(coesak_iteration[2][OURS[net]], tensors, largest, f"COESAK {net}",
                           step_tolerances(OURS[net]).gradient)


@pytest.mark.parametrize("net", list(OURS))
def test_coesak_training_step_updates_weights_like_coesak(coesak_iteration, net):
    from models.source_checkpoints import map_coesak
    _, states, _, lrs = coesak_iteration
    tensors, largest = coesak_step_tensors(net)
    prefix = f"train/{net}/after/"
    after = renamed(net, {key[len(prefix):].partition("#")[0]: (COESAK[key], key.endswith("#fingerprint"))
                          for key in COESAK.files if key.startswith(prefix)})
    ours = states[OURS[net]]
    assert set(ours) == set(after)
    assert_steps_equal(ours, map_coesak(net, training_start(net))[0], after.__getitem__, tensors, largest,
                       lrs[OURS[net]], f"COESAK {net}", step_tolerances(OURS[net]))


# ----------------------------------------------------------------------------
# The user path: COESAK's checkpoint files imported, then test_phase.py
# ----------------------------------------------------------------------------

def test_coesak_import_generates_its_test_py_images(tmp_path):
    """As a user: COESAK's latest_net_G.pkl / latest_net_E.pkl (the state dicts its save_network pickles) and
    its discriminator, util/import_ckpt.py --format coesak, then test_phase.py with the reference photo: the mean
    style code gives the image COESAK's test.py converts (z = mu), and --color_transfer coesak the image it
    writes, each within one grey level on average."""
    import cv2
    from PIL import Image

    files = []
    d_shapes = {k: tuple(v) for k, v in json.loads(str(COESAK["d/shapes"])).items()}
    sources = (("G", nets.rebuild_state(*nets.unpack(COESAK, "g/state"), str(COESAK["g_seed"]))),
               ("E", nets.rebuild_state(*nets.unpack(COESAK, "e/state"), str(COESAK["e_seed"]))),
               ("D", nets.generated_state(str(COESAK["d/seed"]), d_shapes)))
    for net, state in sources:
        files.append(str(tmp_path / f"latest_net_{net}.pkl"))
        jt.save({k: np.asarray(v) for k, v in state.items()}, files[-1])
    ckpt = str(tmp_path / "checkpoints")
    result = run_script("util/import_ckpt.py", "--format", "coesak", files[0], files[1], "--src_d", files[2],
                        "--name", "coesak", "--checkpoints_dir", ckpt, "--crop_size", "256")
    assert result.returncode == 0, result.stderr[-3000:]
    for text in ("--netG ecgan", "--num_upsampling_layers spade_more", "--norm_G spadesyncbatch3x3", "--z_dim 256",
                 "--ndf 8", "--num_D 2", "--n_layers_D 3", "fc1.weight, fc1.bias", "raw weight_orig", "256x192"):
        assert text in result.stdout, (text, result.stdout)
    labels, photos = tmp_path / "labels", tmp_path / "photos"
    labels.mkdir()
    photos.mkdir()
    Image.fromarray(COESAK["testpy/label"].astype(np.uint8)).save(labels / "scene.png")
    reference = nets.photo_bytes(str(COESAK["testpy/reference_seed"]), 1, HEIGHT, WIDTH)[0]
    Image.fromarray(reference).save(photos / "ref.png")
    (tmp_path / "refs.json").write_text(json.dumps({"scene.png": "ref.png"}))
    outputs = {}
    for transfer in ("none", "coesak"):
        out = tmp_path / f"out_{transfer}"
        result = run_script("test_phase.py", "--input_path", str(labels), "--output_path", str(out), "--name",
                            "coesak", "--checkpoints_dir", ckpt, "--which_epoch", "imported", "--img_path",
                            str(photos), "--ref_json", str(tmp_path / "refs.json"), "--color_transfer", transfer,
                            "--image_format", "png", "--nThreads", "0", "--gpu", "off")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[transfer] = np.asarray(Image.open(out / "scene.png").convert("RGB")).astype(int)
    generated = np.abs(outputs["none"] - COESAK["testpy/generated"])
    assert generated.max() <= 1 and generated.mean() < 1.0, generated.mean()
    written = np.abs(outputs["coesak"] - cv2.cvtColor(COESAK["testpy/written"], cv2.COLOR_BGR2RGB))
    assert written.mean() < 1.0, written.mean()
    print(f"COESAK's test.py image against test_phase.py's: mean {generated.mean():.3f}, max {generated.max()}; "
          f"with the transfer: mean {written.mean():.3f}, max {written.max()} (grey levels)")
