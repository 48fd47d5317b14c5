"""What the discriminator step judges (--d_fake): the generator step's own image, or a second generation."""

import jittor as jt
import numpy as np
import pytest

from conftest import tiny_train_opt

H, W = 96, 128


def batch(seed=0, n=2):
    rng = np.random.RandomState(seed)
    label = jt.array(rng.randint(0, 29, (n, H, W)).astype(np.uint8))
    real = jt.array(rng.uniform(-1, 1, (n, 3, H, W)).astype(np.float32))
    return label, real


def counting_trainer(mode, monkeypatch, *extra):
    """A trainer whose generator forwards and discriminator inputs are recorded."""
    from models.trainer import SPADETrainer
    trainer = SPADETrainer(tiny_train_opt("--d_fake", mode, "--use_seg_noise", *extra))
    calls, judged = [], []
    generate, discriminate = trainer.generate, trainer.discriminate

    def counted_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        calls.append(out[0].numpy().copy())
        return out

    def recorded_discriminate(seg, fake, real, stage=None):
        judged.append(fake.numpy().copy())
        return discriminate(seg, fake, real, stage)

    monkeypatch.setattr(trainer, "generate", counted_generate)
    monkeypatch.setattr(trainer, "discriminate", recorded_discriminate)
    return trainer, calls, judged


def test_reuse_judges_the_generator_steps_image_without_a_second_forward(monkeypatch):
    trainer, calls, judged = counting_trainer("reuse", monkeypatch)
    label, real = batch()
    _, fake = trainer.generator_step(label, real)
    trainer.discriminator_step(label, real)
    assert len(calls) == 1  # one generator forward in the whole iteration
    np.testing.assert_array_equal(judged[-1], fake.numpy())
    assert trainer._generated is None  # used once: a later discriminator step alone generates again
    trainer.discriminator_step(label, real)
    assert len(calls) == 2


def test_regenerate_judges_the_updated_generators_new_image(monkeypatch):
    trainer, calls, judged = counting_trainer("regenerate", monkeypatch)
    label, real = batch()
    _, fake = trainer.generator_step(label, real)
    trainer.discriminator_step(label, real)
    assert len(calls) == 2
    np.testing.assert_array_equal(judged[-1], calls[-1])
    # the generator was updated (and seg noise drawn again) in between: another image
    assert np.abs(judged[-1] - fake.numpy()).max() > 1e-4


@pytest.mark.parametrize("mode", ["reuse", "regenerate"])
def test_discriminator_is_trained_and_generator_left_alone_by_its_step(mode, monkeypatch):
    trainer, _, _ = counting_trainer(mode, monkeypatch)
    label, real = batch(seed=3)
    trainer.generator_step(label, real)
    def weights(net):  # the trained parameters (not spectral-norm vectors or batch-norm statistics)
        return {k: v.numpy().copy() for k, v in trainer.nets[net].named_parameters() if not v.is_stop_grad()}
    g_before, d_before = weights("G"), weights("D")
    losses = trainer.discriminator_step(label, real)
    assert set(losses) == {"D_Fake", "D_Real"} and all(np.isfinite(v) for v in losses.values())
    g_after, d_after = weights("G"), weights("D")
    assert g_before.keys() == g_after.keys() and all(np.array_equal(g_after[k], g_before[k]) for k in g_before)
    assert any(not np.array_equal(d_after[k], d_before[k]) for k in d_before)
