"""The options the faithful APF-GAN recipe is made of, each on its own: the exclusion list of training
images, the per-epoch fade schedule's neighbours (bilinear stage resizing and fade upsampling), the
Inception loss's layer weights and batch statistics, and DiffAugment's independent colour draws. Their
combination is compared with APF-GAN's own trainer in test_reference_parity.py."""

import os
import types

import jittor as jt
import numpy as np
import pytest
from jittor import nn

from conftest import tiny_train_opt
from data import folders
from data.datasets import PairedDataset
from models.diff_augment import diff_augment
from models.inception import FrozenBatchNorm
from models.progressive import Stage, schedule_from_options
from options import train_options
from util.core.errors import DatasetError, OptionError


def test_exclusion_list_leaves_out_the_named_pairs(tiny_dataset, tmp_path):
    train = os.path.join(tiny_dataset, "train")
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(train, "imgs")))
    listed = tmp_path / "hard.txt"
    listed.write_text(f"# hard images\n{stems[0]}\n\n{stems[3]}.jpg\nnot_in_this_dataset\n")
    exclude = folders.read_name_list(str(listed))
    assert exclude == {stems[0], stems[3], "not_in_this_dataset"}
    dataset = PairedDataset(train, 29, 128, 96, 128, exclude=exclude)
    kept = [os.path.splitext(os.path.basename(img))[0] for img, _ in dataset.pairs]
    assert kept == [s for s in stems if s not in (stems[0], stems[3])]
    assert dataset.excluded == 2
    with pytest.raises(DatasetError, match="every one"):
        folders.training_pairs(train, exclude=frozenset(stems))


def test_exclusion_list_must_exist():
    with pytest.raises(OptionError, match="no_such_list.txt"):
        train_options.parse(["--input_path", "x", "--exclude_list", "no_such_list.txt"])


def test_inception_layer_weights_take_fractions():
    opt = tiny_train_opt("--inception_layer_weights", "1/16,1/8,1/4,1")
    assert opt.inception_layer_weights == (0.0625, 0.125, 0.25, 1.0)
    for bad in ("1,2,3", "1,a,1,1", "1,-1,1,1"):
        with pytest.raises(SystemExit):
            tiny_train_opt("--inception_layer_weights", bad)


def test_inception_batch_statistics_normalise_each_batch():
    """--inception_norm batch: every batch norm normalises with the batch's own statistics (as Jittor's
    BatchNorm in training mode, what APF-GAN's loss ran), so a batch and its brightened copy look alike;
    with the running statistics they do not."""
    rng = np.random.RandomState(0)
    x = rng.normal(2.0, 3.0, (2, 4, 5, 6)).astype(np.float32)
    bn = FrozenBatchNorm(4)
    bn.batch_statistics = True
    out = bn(jt.array(x)).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-3)
    jittors = nn.BatchNorm(4, eps=1e-3, affine=False)  # APF-GAN's: Jittor's norm in training mode
    np.testing.assert_allclose(out, jittors(jt.array(x)).numpy(), atol=1e-4)
    bn.batch_statistics = False
    np.testing.assert_allclose(bn(jt.array(x)).numpy(), x / np.sqrt(1 + 1e-3), rtol=1e-6)


@pytest.mark.parametrize("independent", [False, True])
def test_diff_augment_colour_can_be_drawn_apart(independent):
    """Same fake and real image: shared colour parameters keep them equal, independent ones do not; the
    geometric ops stay shared either way (the label must fit both images)."""
    jt.set_global_seed(3)
    image = jt.array(np.random.RandomState(1).uniform(-1, 1, (4, 3, 16, 16)).astype(np.float32))
    seg = jt.array(np.eye(3, dtype=np.float32)[np.random.RandomState(2).randint(0, 3, (4, 16, 16))]
                   .transpose(0, 3, 1, 2))
    fake, real, _ = diff_augment(image, image, seg, "color", independent_colour=independent)
    differs = np.abs(fake.numpy() - real.numpy()).max(axis=(1, 2, 3)) > 1e-3
    assert differs.all() if independent else not differs.any()
    fake, real, _ = diff_augment(image, image, seg, "translation,crop", independent_colour=independent)
    np.testing.assert_array_equal(fake.numpy(), real.numpy())


def stage_trainer(*flags):
    from models.trainer import SPADETrainer
    opt = tiny_train_opt("--num_D", "3", "--pg_niter", "4", *flags)
    trainer = types.SimpleNamespace(opt=opt, precision=types.SimpleNamespace(cast=lambda x: x),
                                    schedule=schedule_from_options(opt))
    return opt, lambda *args: SPADETrainer.stage_inputs(trainer, *args)


def test_bilinear_stage_inputs_are_apf_gans():
    """--pg_resize bilinear: photo and one-hot labels bilinearly resized to the level (soft labels at class
    boundaries), the photo not blended during a fade; box: exact block averages, nearest labels, the photo
    blended like the generator's output."""
    rng = np.random.RandomState(0)
    label = jt.array(rng.randint(0, 29, (2, 96, 128)).astype(np.int32))
    photo = jt.array(rng.uniform(-1, 1, (2, 3, 96, 128)).astype(np.float32))
    _, bilinear = stage_trainer("--pg_resize", "bilinear")
    seg, seg_small, real_small = bilinear(label, photo, Stage(0, 1.0))
    np.testing.assert_allclose(real_small.numpy(), nn.interpolate(photo, size=(24, 32), mode="bilinear").numpy())
    assert 0 < seg_small.numpy().max() and np.any((seg_small.numpy() > 0) & (seg_small.numpy() < 1))
    faded = bilinear(label, photo, Stage(1, 0.5))[2]
    np.testing.assert_allclose(faded.numpy(), nn.interpolate(photo, size=(48, 64), mode="bilinear").numpy())
    _, box = stage_trainer("--pg_resize", "box")
    seg_small = box(label, photo, Stage(0, 1.0))[1].numpy()
    assert set(np.unique(seg_small)) <= {0.0, 1.0}
    assert not np.allclose(box(label, photo, Stage(1, 0.5))[2].numpy(), box(label, photo, Stage(1, 1.0))[2].numpy())


def test_native_inception_input_needs_75_pixels():
    with pytest.raises(OptionError, match="75x75"):
        tiny_train_opt("--crop_size", "64", "--aspect_ratio", "1", "--inception_loss", "--inception_input", "native")
    assert tiny_train_opt("--crop_size", "128", "--inception_loss", "--inception_input", "native")
