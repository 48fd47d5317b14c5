"""ECGAN's generator (``--netG ecgan``) as a framework option: its Sobel training targets in the data loader, a
training run end to end and generation from its checkpoint. Parity with COESAK's own code is in
tests/test_coesak_parity.py."""

import os

import numpy as np
import pytest

from conftest import run_script, tiny_train_opt

ECGAN_FLAGS = ["--netG", "ecgan", "--use_vae", "--z_dim", "16", "--norm_E", "instance", "--lambda_l1", "0",
               "--pg_niter", "0"]


def test_training_samples_carry_the_sobel_edges_of_the_photo_before_its_flip(tiny_dataset):
    from data.datasets import PairedDataset
    from data.edge_maps import sobel_edge_map
    from data.image_io import read_image
    from data.transforms import image_to_array
    root = os.path.join(tiny_dataset, "train")
    for flip in (False, True):
        dataset = PairedDataset(root, 29, 128, 96, 128, allow_flip=flip, batch_size=1, shuffle=False, edges=True)
        flipped_any = False
        for index in range(4):
            sample = dataset[index]
            photo = read_image(dataset.pairs[index][0])  # 128x96: no resize, no crop
            flipped = not np.array_equal(sample["image"], image_to_array(photo))
            assert not flipped or np.array_equal(sample["image"], image_to_array(photo[:, ::-1]))
            edges = sobel_edge_map(photo)
            expected = np.repeat((edges[:, ::-1] if flipped else edges)[:, :, None], 3, axis=2)
            np.testing.assert_array_equal(sample["edge"], image_to_array(expected))
            flipped_any |= flipped
        assert flipped_any == flip
    assert "edge" not in PairedDataset(root, 29, 128, 96, 128, batch_size=1)[0]


def test_the_trainer_asks_for_edges_and_refuses_a_batch_without_them(tiny_dataset):
    import jittor as jt

    from models.trainer import SPADETrainer
    opt = tiny_train_opt(*ECGAN_FLAGS, input_path=os.path.join(tiny_dataset, "train"))
    assert SPADETrainer.needs_edges(opt) and not SPADETrainer.needs_edges(tiny_train_opt())
    trainer = SPADETrainer(opt)
    with pytest.raises(ValueError, match="Sobel edge images"):
        trainer.generator_step(jt.zeros((1, 96, 128), "int32"), jt.zeros((1, 3, 96, 128)))


def test_progressive_pre_training_is_refused():
    from util.core.errors import OptionError
    with pytest.raises(OptionError, match="--netG ecgan does not support progressive pre-training"):
        tiny_train_opt(*ECGAN_FLAGS[:-2], "--pg_niter", "2", "--num_D", "2")


def test_the_coesak_recipe_is_one_phase():
    import train
    assert "coesak" in train.recipes() and train.recipe_phases("coesak") == ("train",)
    assert train.recipe_phases("apf") == ("pretrain", "finetune")
    assert train.parse_phases("train", ("train",)) == ["train"]
    from util.core.errors import OptionError
    with pytest.raises(OptionError, match="from train"):
        train.parse_phases("pretrain", ("train",))


def test_a_run_of_the_recipe_trains_and_generates_from_its_checkpoint(tiny_dataset, tmp_path):
    """As a user: train.py --recipe coesak at a tiny size for one epoch, then test_phase.py with reference
    photos (mean style codes, COESAK's colour transfer)."""
    import jittor as jt
    ckpt = str(tmp_path / "ckpt")
    result = run_script("train.py", "--recipe", "coesak", "--input_path", os.path.join(tiny_dataset, "train"),
                        "--name", "ec", "--checkpoints_dir", ckpt, "--niter", "1", "--niter_decay", "0",
                        "--batchSize", "2", "--ngf", "8", "--ndf", "8", "--spade_hidden", "16", "--z_dim", "16",
                        "--crop_size", "128", "--load_size", "128", "--num_upsampling_layers", "normal",
                        "--num_D", "2", "--n_layers_D", "3", "--no_vgg_loss", "--nThreads", "0", "--print_freq", "1",
                        "--no_pure_dictionary", "--gpu", "off")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== train: train_phase.py --preset coesak_train --phase_name train" in result.stdout
    assert "G_GAN" in result.stderr + result.stdout and "recipe 'coesak' finished (train)" in result.stdout
    state = jt.load(os.path.join(ckpt, "ec", "1_net_G.pkl"))
    assert {"conv_img1.weight", "conv_edge4.weight", "conv_comb.weight", "head_0.conv_0.weight"} <= set(state)
    assert "conv_img.weight" not in state and "fc1.weight" not in state
    out = tmp_path / "out"
    refs = os.path.join(tiny_dataset, "test", "label_to_img.json")
    result = run_script("test_phase.py", "--input_path", os.path.join(tiny_dataset, "test", "labels"),
                        "--output_path", str(out), "--name", "ec", "--checkpoints_dir", ckpt, "--which_epoch", "1",
                        "--img_path", os.path.join(tiny_dataset, "train", "imgs"), "--ref_json", refs,
                        "--color_transfer", "coesak", "--image_format", "png", "--nThreads", "0", "--gpu", "off")
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(os.listdir(out))
    assert len(written) == 3 and all(name.endswith(".png") for name in written)
