"""Progressive-size pre-training and the pre-training -> fine-tuning hand-over: the schedule,
the generator's to-RGB heads and fades, discriminator growth, head removal, seg noise,
exact resume in the middle of a fade, --init_from, and option presets."""

import json
import os
import signal

import jittor as jt
import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, tiny_train_opt

# Three resolution levels at 128x96 ('normal' layout): 32x24, 64x48, 128x96.
PG = ["--num_D", "3", "--pg_niter", "4"]
W, H = 128, 96
LEVEL_SIZES = {0: (24, 32), 1: (48, 64), 2: (96, 128)}  # (h, w)


def pg_opt(*extra):
    return tiny_train_opt(*PG, *extra)


def labels(n, seed=0, h=H, w=W, nc=29):
    return jt.array(np.random.RandomState(seed).randint(0, nc, (n, h, w)).astype(np.uint8))


def photos(n, seed=0, h=H, w=W):
    return jt.array(np.random.RandomState(seed + 100).uniform(-1, 1, (n, 3, h, w)).astype(np.float32))


def state_numpy(net):
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def max_abs_diff(a, b):
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0 for k in a)


def box_down(x, f):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))


def nearest_up2(x):
    return np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)


# ---------------------------------------------------------------------------------------------
# 1. the schedule
# ---------------------------------------------------------------------------------------------

FADE_TABLE = [  # (epoch, fraction) -> (level, alpha) for pg_niter 180, 4 levels (periods of 60 epochs)
    ((1, 0.0), (0, 1.0)), ((15, 0.5), (0, 1.0)), ((30, 0.99), (0, 1.0)),
    ((31, 0.0), (1, 0.0)), ((46, 0.0), (1, 0.5)), ((60, 0.5), (1, 29.5 / 30)),
    ((61, 0.0), (1, 1.0)), ((90, 0.99), (1, 1.0)), ((91, 0.0), (2, 0.0)), ((106, 0.0), (2, 0.5)),
    ((121, 0.0), (2, 1.0)), ((151, 0.0), (3, 0.0)), ((166, 0.0), (3, 0.5)), ((180, 0.99), (3, 29.99 / 30)),
    ((181, 0.0), (3, 1.0)), ((181, 0.5), (3, 1.0)), ((500, 0.0), (3, 1.0)),
]
JUMP_TABLE = [
    ((1, 0.0), (0, 1.0)), ((31, 0.0), (0, 1.0)), ((60, 0.99), (0, 1.0)), ((61, 0.0), (1, 1.0)),
    ((120, 0.99), (1, 1.0)), ((121, 0.0), (2, 1.0)), ((180, 0.99), (2, 1.0)), ((181, 0.0), (3, 1.0)),
]


@pytest.mark.parametrize("strategy,table", [("fade", FADE_TABLE), ("jump", JUMP_TABLE)])
def test_schedule_table(strategy, table):
    from models.progressive import ProgressiveSchedule, Stage
    s = ProgressiveSchedule(180, 4, strategy)
    assert s.enabled and s.last_level == 3
    for (epoch, fraction), (level, alpha) in table:
        got = s.stage(epoch, fraction)
        assert isinstance(got, Stage)
        assert got.level == level and got.alpha == pytest.approx(alpha, abs=1e-9), (epoch, fraction, got)


@pytest.mark.parametrize("pg_niter,levels", [(180, 4), (4, 3), (2, 3), (10, 4), (7, 2), (3, 4)])
def test_fade_progress_is_monotone_and_continuous(pg_niter, levels):
    """level - (1 - alpha) never decreases and never jumps by more than the grid step allows."""
    from models.progressive import ProgressiveSchedule
    s = ProgressiveSchedule(pg_niter, levels, "fade")
    steps = 40
    period = pg_niter / (levels - 1)
    previous = None
    for epoch in range(1, pg_niter + 2):
        for i in range(steps):
            st = s.stage(epoch, i / steps)
            assert 0 <= st.level <= levels - 1 and 0.0 <= st.alpha <= 1.0
            progress = st.level - (1 - st.alpha)
            if previous is not None:
                assert progress >= previous - 1e-9, (epoch, i, st)
                assert progress - previous <= 2 / (steps * period) + 1e-9, (epoch, i, st)
            previous = progress
    assert s.stage(pg_niter + 1) == (levels - 1, 1.0)


# APF-GAN's per-epoch schedule (--pg_alpha epoch), 180 epochs, 4 levels: a period of 60 epochs; epoch e
# trains level e // 60 and fades the next in at (e mod 60) / 30 - 1 while positive; full size from epoch 180.
EPOCH_TABLE = [(1, (0, 1.0)), (30, (0, 1.0)), (31, (1, 1 / 30)), (45, (1, 0.5)), (59, (1, 29 / 30)),
               (60, (1, 1.0)), (90, (1, 1.0)), (91, (2, 1 / 30)), (120, (2, 1.0)), (179, (3, 29 / 30)),
               (180, (3, 1.0)), (300, (3, 1.0))]


def test_epoch_schedule_is_apf_gans():
    from models.progressive import ProgressiveSchedule
    s = ProgressiveSchedule(180, 4, "fade", "epoch")
    for epoch, (level, alpha) in EPOCH_TABLE:
        for fraction in (0.0, 0.7):  # constant within an epoch
            got = s.stage(epoch, fraction)
            assert got.level == level and got.alpha == pytest.approx(alpha, abs=1e-9), (epoch, got)
    assert not s.finished(179) and s.finished(180)
    lines = s.describe(512, 384)
    assert lines[0] == "epochs 1-30: 64x48"
    assert lines[1] == "epochs 31-59: 128x96 fading in over 64x48"
    assert lines[2] == "epochs 60-90: 128x96"
    assert lines[-1] == "from epoch 180: 512x384, auxiliary heads removed"


def test_epoch_schedule_options_are_checked():
    from models.progressive import ProgressiveSchedule
    from util.core.errors import OptionError
    with pytest.raises(OptionError, match="pg_strategy fade"):
        ProgressiveSchedule(180, 4, "jump", "epoch")
    with pytest.raises(OptionError, match="less than one epoch"):
        ProgressiveSchedule(2, 4, "fade", "epoch")
    with pytest.raises(OptionError):
        ProgressiveSchedule(180, 4, "fade", "sometimes")


def test_schedule_sizes_finished_describe_and_errors():
    from models.progressive import ProgressiveSchedule, schedule_from_options
    from util.core.errors import OptionError
    s = ProgressiveSchedule(180, 4)
    assert [s.size(level, 512, 384) for level in range(4)] == [(64, 48), (128, 96), (256, 192), (512, 384)]
    assert not s.finished(1) and not s.finished(180) and s.finished(181) and s.finished(300)
    lines = s.describe(512, 384)
    text = "\n".join(lines)
    assert "64x48" in text and "512x384" in text and "256x192" in text
    assert "1-30" in lines[0] and "64x48" in lines[0]
    assert "181" in lines[-1] and "512x384" in lines[-1]
    jump = ProgressiveSchedule(180, 4, "jump").describe(512, 384)
    assert "1-60" in jump[0] and "fading" not in "\n".join(jump)

    off = ProgressiveSchedule(0, 3)
    assert not off.enabled and off.finished(1) and off.stage(1) == (2, 1.0)
    assert "512x384" in "\n".join(off.describe(512, 384))
    ProgressiveSchedule(0, 1)  # no pre-training with a single scale is fine

    with pytest.raises(OptionError):
        ProgressiveSchedule(10, 3, "bogus")
    with pytest.raises(OptionError):
        ProgressiveSchedule(10, 1)

    opt = pg_opt("--pg_strategy", "jump")
    sched = schedule_from_options(opt)
    assert (sched.pg_niter, sched.levels, sched.strategy) == (4, 3, "jump")
    with pytest.raises(OptionError):
        tiny_train_opt("--num_D", "1", "--pg_niter", "4")
    with pytest.raises(OptionError):  # 'normal' has 4 up blocks: 5 levels cannot fit
        tiny_train_opt("--num_D", "5", "--pg_niter", "4")
    with pytest.raises(SystemExit):  # argparse choices
        tiny_train_opt("--pg_strategy", "bogus")


# ---------------------------------------------------------------------------------------------
# 2./3. generator and discriminator at every stage; fade blending
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_nets():
    from models.networks import build_networks
    jt.set_global_seed(0)
    return build_networks(pg_opt(), with_discriminator=True, progressive_levels=3)


STAGES = [(0, 1.0), (1, 0.0), (1, 0.5), (1, 1.0), (2, 0.25), (2, 1.0)]


def test_generator_shapes_at_every_stage_and_head_removal():
    from models.networks import build_networks, one_hot
    from models.progressive import Stage
    jt.set_global_seed(1)
    g = build_networks(pg_opt(), with_discriminator=False, progressive_levels=3)["G"]
    assert g.progressive_levels == 3
    sd = g.state_dict()
    assert tuple(sd["to_rgb_0.weight"].shape) == (3, 32, 3, 3)  # on up_1 (ngf 8: 64 -> 32 channels)
    assert tuple(sd["to_rgb_1.weight"].shape) == (3, 16, 3, 3)  # on up_2
    assert not any(k.startswith("to_rgb_2") for k in sd)
    g.eval()
    seg = one_hot(labels(2), 29)
    for level, alpha in STAGES:
        out = g(seg, stage=Stage(level, alpha)).numpy()
        assert out.shape == (2, 3, *LEVEL_SIZES[level]), (level, alpha)
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    full = g(seg).numpy()
    assert full.shape == (2, 3, H, W)
    with pytest.raises(ValueError):
        g(seg, stage=Stage(3, 1.0))

    g.remove_progressive_heads()
    assert g.progressive_levels == 1
    assert not [k for k in g.state_dict() if "to_rgb" in k]
    after = g(seg).numpy()
    np.testing.assert_array_equal(after, full)  # the heads never touch the full-resolution path

    plain = build_networks(tiny_train_opt(), with_discriminator=False)["G"]
    assert plain.progressive_levels == 1 and not [k for k in plain.state_dict() if "to_rgb" in k]
    assert plain(one_hot(labels(1), 29)).numpy().shape == (1, 3, H, W)


def _patch_size(s, n_layers=3):
    s = s // 2 + 1  # 4x4 stride 2 pad 2
    for n in range(1, n_layers):
        s = s // 2 + 1 if n < n_layers - 1 else s + 1
    return s + 1  # final 4x4 stride 1 pad 2


def test_discriminator_scales_per_level(pg_nets):
    from models.networks import one_hot
    from models.progressive import Stage
    d = pg_nets["D"]
    assert d.num_D == 3
    full = d(one_hot(labels(2), 29), photos(2))
    full_shapes = [tuple(s[-1].shape) for s in full]
    assert full_shapes[0] == (2, 1, _patch_size(96), _patch_size(128))
    for level in range(3):
        h, w = LEVEL_SIZES[level]
        first = 2 - level
        out = d(one_hot(labels(2, h=h, w=w), 29), photos(2, h=h, w=w), Stage(level, 1.0))
        assert len(out) == level + 1
        for j, scale in enumerate(out):
            assert len(scale) == 4  # n_layers_D 3 -> 3 convolutions + prediction
            pred = scale[-1].numpy()
            assert pred.shape == full_shapes[first + j], (level, j)
            assert np.isfinite(pred).all()
        assert tuple(out[0][-1].shape) == (2, 1, _patch_size(h), _patch_size(w))


def test_fade_blends_with_upsampled_previous_head(pg_nets, fusion):
    from models.networks import one_hot
    from models.progressive import Stage
    g = pg_nets["G"]
    assert all(m.seg_noise_var is None for m in g.modules() if hasattr(m, "seg_noise_var"))
    g.eval()  # no power-iteration updates, norms use stored statistics: every call sees the same weights
    try:
        seg = one_hot(labels(2, seed=3), 29)
        for level in (1, 2):
            previous = g(seg, stage=Stage(level - 1, 1.0)).numpy()
            stable = g(seg, stage=Stage(level, 1.0)).numpy()
            at0 = g(seg, stage=Stage(level, 0.0)).numpy()
            np.testing.assert_array_equal(at0, nearest_up2(previous),
                                          err_msg=f"level {level}, alpha 0 must be the upsampled level {level - 1}")
            at1 = g(seg, stage=Stage(level, 1.0)).numpy()
            np.testing.assert_array_equal(at1, stable)
            assert np.abs(stable - nearest_up2(previous)).max() > 1e-4  # the two heads really differ
            for alpha in (0.25, 0.7):
                mid = g(seg, stage=Stage(level, alpha)).numpy()
                np.testing.assert_allclose(mid, alpha * stable + (1 - alpha) * nearest_up2(previous), atol=1e-6)
    finally:
        g.train()


def test_stage_inputs_match_the_generator_blend(fusion):
    from models.progressive import Stage
    from models.trainer import SPADETrainer
    jt.set_global_seed(2)
    trainer = SPADETrainer(pg_opt())
    label, real = labels(2, seed=4), photos(2, seed=4)
    r = real.numpy()
    for level, alpha in STAGES:
        seg, seg_small, real_small = trainer.stage_inputs(label, real, Stage(level, alpha))
        h, w = LEVEL_SIZES[level]
        assert seg.shape == (2, 29, H, W) and seg_small.shape == (2, 29, h, w)
        f = 2 ** (2 - level)
        expected = box_down(r, f)
        if alpha < 1:
            expected = alpha * expected + (1 - alpha) * nearest_up2(box_down(r, 2 * f))
        np.testing.assert_allclose(real_small.numpy(), expected, atol=1e-5)
        s = seg_small.numpy()
        np.testing.assert_array_equal(s.sum(axis=1), 1.0)  # still one-hot
    seg, seg_small, real_small = trainer.stage_inputs(label, real, None)
    assert seg_small.shape == (2, 29, H, W)
    np.testing.assert_array_equal(real_small.numpy(), r)


# ---------------------------------------------------------------------------------------------
# 4./5. discriminator growth and the end of pre-training
# ---------------------------------------------------------------------------------------------

def test_discriminator_copy_happens_once_per_growth():
    from models.progressive import ProgressiveSchedule, Stage
    from models.trainer import SPADETrainer
    jt.set_global_seed(3)
    trainer = SPADETrainer(pg_opt())
    d = trainer.nets["D"]
    assert trainer.progressive and trainer.d_level == 0 and trainer.growths == []
    original = {i: state_numpy(d.scale(i)) for i in range(3)}
    assert max_abs_diff(original[1], original[2]) > 0  # independent initialisation

    assert trainer.enter_stage(Stage(0, 1.0)) == []
    assert trainer.enter_stage(Stage(1, 0.0)) == [1]
    # scale 1 (64x48 in the full model) now starts from scale 2 (the 32x24 one)
    assert max_abs_diff(state_numpy(d.scale(1)), original[2]) == 0.0
    assert max_abs_diff(state_numpy(d.scale(0)), original[0]) == 0.0

    label, real = labels(1, seed=5), photos(1, seed=5)
    trainer.discriminator_step(label, real, Stage(1, 0.3))
    trained = state_numpy(d.scale(1))
    assert max_abs_diff(trained, original[2]) > 0
    assert max_abs_diff(trained, state_numpy(d.scale(2))) > 0
    for a in np.linspace(0.05, 0.95, 20):
        assert trainer.enter_stage(Stage(1, float(a))) == []
    assert trainer.enter_stage(Stage(1, 1.0)) == []
    assert max_abs_diff(state_numpy(d.scale(1)), trained) == 0.0, "a second enter_stage at level 1 copied again"
    assert trainer.growths == [1]

    assert trainer.enter_stage(Stage(2, 0.0)) == [2]
    assert max_abs_diff(state_numpy(d.scale(0)), trained) == 0.0
    assert trainer.enter_stage(Stage(2, 0.5)) == [] and trainer.enter_stage(Stage(2, 1.0)) == []
    assert trainer.enter_stage(None) == []
    assert trainer.growths == [1, 2] and trainer.d_level == 2

    # the same through a real schedule, iteration by iteration
    jt.set_global_seed(3)
    other = SPADETrainer(pg_opt())
    schedule = ProgressiveSchedule(4, 3)
    grown_at = []
    for epoch in range(1, 7):
        for i in range(5):
            if other.enter_stage(schedule.stage(epoch, i / 5)):
                grown_at.append((epoch, i))
    assert other.growths == [1, 2] and grown_at == [(2, 0), (4, 0)]

    # a run that jumps straight to level 2 (e.g. resumed late) grows both scales in order
    jt.set_global_seed(3)
    late = SPADETrainer(pg_opt())
    top = state_numpy(late.nets["D"].scale(2))
    assert late.enter_stage(Stage(2, 1.0)) == [1, 2]
    for i in (0, 1):
        assert max_abs_diff(state_numpy(late.nets["D"].scale(i)), top) == 0.0


def test_apf_progressive_discriminator_through_pretraining():
    """--netD apf_progressive in the trainer: at each stage the active sub-discriminators (level L first, on
    the stage's size, deeper by one stride-2 layer per level), the fade blended inside the first one, a growth
    copying exactly the weights a level shares with the one below, and after pre-training sub-discriminator 0
    on the full size."""
    from models.progressive import Stage
    from models.trainer import SPADETrainer
    jt.set_global_seed(5)
    trainer = SPADETrainer(pg_opt("--netD", "apf_progressive", "--ndf", "16", "--norm_D", "instance"))
    d = trainer.nets["D"]
    assert {k.split(".")[0] for k in d.scale(2).state_dict()} == {
        "from_rgb_2", "from_rgb_1", "from_rgb_0", "down_2", "down_1", "model0", "model1", "model2", "model3"}
    label, real = labels(2, seed=7), photos(2, seed=7)

    before = {i: state_numpy(d.scale(i)) for i in range(3)}
    assert trainer.enter_stage(Stage(1, 0.25)) == [1]
    grown = state_numpy(d.scale(1))
    new = {"from_rgb_1.0.weight", "from_rgb_1.0.bias", "down_1.0.0.weight"}
    assert set(grown) == set(before[0]) | new
    assert all(np.array_equal(grown[k], before[0][k]) for k in before[0])
    assert all(np.array_equal(grown[k], before[1][k]) for k in new)

    # stage -> (input sizes, features per active sub-discriminator): model0..model3 plus the stride-2 layers
    # above them (a fading sub-discriminator enters its half-size input one layer deeper)
    for stage, sizes, depths in ((Stage(0, 1.0), [(24, 32)], [4]),
                                 (Stage(1, 0.25), [(48, 64), (24, 32)], [4, 4]),
                                 (Stage(1, 1.0), [(48, 64), (24, 32)], [5, 4]),
                                 (None, [(96, 128), (48, 64), (24, 32)], [4, 5, 6])):
        _, seg_small, real_small = trainer.stage_inputs(label, real, stage)
        assert tuple(real_small.shape[2:]) == sizes[0]
        with jt.no_grad():
            preds = d(seg_small, real_small, stage)
        assert [len(scale) for scale in preds] == depths, stage
        assert trainer.scale_weights(stage) is None
    with jt.no_grad():
        faded = [d(*trainer.stage_inputs(label, real, Stage(1, a))[1:], Stage(1, a))[0][-1].numpy()
                 for a in (0.0, 0.25, 1.0)]
    assert np.abs(faded[0] - faded[2]).max() > 1e-3
    # the blend is linear in alpha before the first layer after it: the prediction moves with alpha
    assert not np.allclose(faded[1], faded[0]) and not np.allclose(faded[1], faded[2])
    losses = trainer.discriminator_step(label, real, Stage(1, 0.25))
    assert all(np.isfinite(v) for v in losses.values())
    assert not np.array_equal(state_numpy(d.scale(1))["from_rgb_1.0.weight"], grown["from_rgb_1.0.weight"])


def _optimizer_param_count(optimizer):
    return sum(len(g["params"]) for g in optimizer.param_groups)


def test_finish_progressive_drops_heads_and_optimizer_state_round_trips():
    from models.progressive import Stage
    from models.trainer import SPADETrainer
    opt = pg_opt()
    jt.set_global_seed(4)
    trainer = SPADETrainer(opt)
    g = trainer.nets["G"]
    head_params = g.to_rgb_0.parameters() + g.to_rgb_1.parameters()
    assert len(head_params) == 4
    label, real = labels(1, seed=6), photos(1, seed=6)
    trainer.enter_stage(Stage(2, 0.5))
    trainer.generator_step(label, real, Stage(2, 0.5))
    trainer.discriminator_step(label, real, Stage(2, 0.5))
    before = _optimizer_param_count(trainer.optimizer_G)
    assert before == len(g.parameters())

    trainer.finish_progressive()
    assert not trainer.progressive and g.progressive_levels == 1
    assert not [k for k in g.state_dict() if "to_rgb" in k]
    assert _optimizer_param_count(trainer.optimizer_G) == before - len(head_params)
    for group in trainer.optimizer_G.param_groups:
        assert len(group["m"]) == len(group["values"]) == len(group["params"])
    kept = {id(p) for group in trainer.optimizer_G.param_groups for p in group["params"]}
    assert kept == {id(p) for p in g.parameters()}
    # training at full resolution still works
    trainer.generator_step(label, real, None)
    trainer.discriminator_step(label, real, None)
    jt.sync_all()

    nets = {name: state_numpy(net) for name, net in trainer.nets.items()}
    optim = trainer.optimizer_states()
    fresh = SPADETrainer(opt, start_epoch=opt.pg_niter + 1)
    assert not fresh.progressive and fresh.d_level == 2
    fresh.load_networks(nets, "test")
    fresh.load_optimizer_states(optim, "test")
    again = fresh.optimizer_states()
    for name in ("G", "D"):
        assert again[name]["n_step"] == optim[name]["n_step"]
        for key in ("m", "v"):
            for ga, gb in zip(again[name][key], optim[name][key]):
                assert len(ga) == len(gb)
                for a, b in zip(ga, gb):
                    np.testing.assert_array_equal(a, b)
    # both continue identically
    for t in (trainer, fresh):
        t.generator_step(label, real, None)
        jt.sync_all()
    assert max_abs_diff(state_numpy(trainer.nets["G"]), state_numpy(fresh.nets["G"])) < 1e-6

    # a progressive trainer's optimiser state does not fit a finished one
    from util.core.errors import CheckpointError
    jt.set_global_seed(4)
    progressive = SPADETrainer(opt)
    with pytest.raises(CheckpointError):
        fresh.load_optimizer_states(progressive.optimizer_states(), "test")


# ---------------------------------------------------------------------------------------------
# 6. seg noise
# ---------------------------------------------------------------------------------------------

def _seg_noise_modules(g):
    from models.normalization import SPADE
    return [m for m in g.modules() if isinstance(m, SPADE) and m.seg_noise_var is not None]


def test_seg_noise_starts_at_zero_and_changes_nothing_until_trained():
    from models.networks import build_networks, load_state, one_hot
    from util.core.errors import CheckpointError
    jt.set_global_seed(10)
    plain = build_networks(tiny_train_opt(), with_discriminator=False)["G"]
    jt.set_global_seed(11)
    noisy = build_networks(tiny_train_opt("--use_seg_noise"), with_discriminator=False)["G"]
    modules = _seg_noise_modules(noisy)
    assert len(modules) >= 7  # head_0, G_middle_0/1, up_0..3: norm_0/norm_1 (+ norm_s)
    noise_keys = sorted(k for k in noisy.state_dict() if "seg_noise_var" in k)
    assert noise_keys and all(k.endswith("seg_noise_var.weight") for k in noise_keys)
    assert set(noisy.state_dict()) - set(plain.state_dict()) == set(noise_keys)
    for k in noise_keys:
        assert not np.any(noisy.state_dict()[k].numpy()), k

    plain_state = state_numpy(plain)
    with pytest.raises(CheckpointError) as err:
        load_state(noisy, plain_state, "plain.pkl")
    assert "seg_noise_var" in str(err.value)
    new = load_state(noisy, plain_state, "plain.pkl", may_be_new=lambda k: "seg_noise_var" in k)
    assert new == noise_keys
    for k in noise_keys:
        assert not np.any(noisy.state_dict()[k].numpy()), k

    seg = one_hot(labels(2, seed=7), 29)
    jt.set_global_seed(5)
    a = plain(seg).numpy()
    jt.set_global_seed(5)
    b = noisy(seg).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)  # float32 rounding: the extra (zero) term changes the fusion

    for m in modules:
        w = m.seg_noise_var.weight
        w.assign(jt.array(np.random.RandomState(0).normal(0, 0.5, w.shape).astype(np.float32)))
    noisy.eval()
    jt.set_global_seed(5)
    c = noisy(seg).numpy()
    jt.set_global_seed(5)
    c2 = noisy(seg).numpy()
    jt.set_global_seed(6)
    d = noisy(seg).numpy()
    np.testing.assert_array_equal(c, c2)  # the noise follows the seed
    assert np.abs(c - d).max() > 1e-4, "nonzero seg_noise_var but the output ignores the seed"


def test_seg_noise_adds_one_gaussian_map_scaled_per_class_and_channel(monkeypatch, fusion):
    """SPADE with seg noise normalises x + n * (W . onehot(resized label)), n one N(0, 1) map per sample
    shared by the channels: checked against NumPy with the noise draw replaced by known values and the
    label-driven scale and shift at zero (so the output is the plain instance norm of the noisy input)."""
    from models.networks import one_hot
    from models.normalization import SPADE
    rng = np.random.RandomState(4)
    n, c, h, w, nc = 2, 4, 6, 8, 5
    spade = SPADE("instance", 3, c, nc, nhidden=8, seg_noise=True)
    weight = rng.normal(0, 1, (c, nc)).astype(np.float32)
    spade.seg_noise_var.weight.assign(jt.array(weight.reshape(c, nc, 1, 1)))
    for conv in (spade.mlp_gamma, spade.mlp_beta):
        conv.weight.assign(jt.zeros(conv.weight.shape))
        conv.bias.assign(jt.zeros(conv.bias.shape))
    x = rng.normal(0, 1, (n, c, h, w)).astype(np.float32)
    classes = rng.randint(0, nc, (n, 2 * h, 2 * w))
    noise = rng.normal(0, 1, (n, 1, h, w)).astype(np.float32)
    shapes = []

    def known_noise(shape, dtype="float32"):
        shapes.append(tuple(shape))
        return jt.array(noise).astype(dtype)
    monkeypatch.setattr(jt, "randn", known_noise)
    got = spade(jt.array(x), one_hot(jt.array(classes.astype(np.uint8)), nc)).numpy()
    assert shapes == [(n, 1, h, w)]
    seg = np.eye(nc)[classes[:, ::2, ::2]].transpose(0, 3, 1, 2)  # nearest resize by 1/2
    y = x + noise * np.einsum("ck,nkhw->nchw", weight, seg)
    mean, var = y.mean(axis=(2, 3), keepdims=True), y.var(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(got, (y - mean) / np.sqrt(var + 1e-5), atol=1e-4)


def test_one_generator_step_trains_seg_noise():
    from models.trainer import SPADETrainer
    jt.set_global_seed(12)
    trainer = SPADETrainer(tiny_train_opt("--use_seg_noise"))
    modules = _seg_noise_modules(trainer.nets["G"])
    assert modules and all(not np.any(m.seg_noise_var.weight.numpy()) for m in modules)
    trainer.generator_step(labels(1, seed=8), photos(1, seed=8))
    jt.sync_all()
    for m in modules:
        assert np.any(m.seg_noise_var.weight.numpy()), "an Adam step left seg_noise_var at zero"


# ---------------------------------------------------------------------------------------------
# 7./8. train_phase: exact resume in a fade; pre-training -> fine-tuning
# ---------------------------------------------------------------------------------------------

# 8 pairs, batch 2: 4 iterations per epoch. --pg_niter 2 with 3 levels: epoch 1 trains 32x24 for iterations
# 1-2 and fades 64x48 in over iterations 3-4 (alpha 0, 0.5); epoch 2 the same one level up; the heads are
# removed after epoch 2.
PHASE_FLAGS = [*TINY_NET_FLAGS, "--num_D", "3", "--batchSize", "2", "--max_dataset_size", "8", "--lambda_l1", "1",
               "--print_freq", "1", "--display_freq", "100", "--save_epoch_freq", "1", "--gpu", "off"]
PRETRAIN = ["--pg_niter", "2", "--niter", "2", "--phase_name", "pretrain"]


def phase(data, ckpt, name, *extra):
    import train_phase
    return train_phase.main(["--input_path", os.path.join(data, "train"), "--name", name, "--checkpoints_dir", ckpt,
                             *PHASE_FLAGS, *extra])


@pytest.fixture(scope="module")
def pretrained(tiny_dataset, tmp_path_factory):
    """An uninterrupted pre-training run: (checkpoints dir, its stdout)."""
    import contextlib
    import io
    ckpt = str(tmp_path_factory.mktemp("pg_ckpt"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert phase(tiny_dataset, ckpt, "straight", *PRETRAIN) == 0
    return ckpt, out.getvalue()


def test_pretraining_prints_schedule_and_removes_heads(pretrained):
    from util.core.checkpoint import read_net, read_state
    ckpt, out = pretrained
    assert "progressive schedule:" in out
    for line in ("epoch 1: 32x24", "epoch 1: 64x48 fading in over 32x24", "epoch 2: 64x48",
                 "epoch 2: 128x96 fading in over 64x48", "from epoch 3: 128x96"):
        assert line in out, line
    assert "training 32x24" in out and "training 64x48 fading in over 32x24 (alpha 0.00)" in out
    assert "training 128x96 fading in over 64x48 (alpha 0.00)" in out
    assert out.count("discriminator scale 1") == 1 and out.count("discriminator scale 0") == 1
    assert "auxiliary heads are removed" in out
    folder = os.path.join(ckpt, "straight")
    state = read_state(folder, "2", ["G", "D"])
    assert state["d_level"] == 2 and state["next_epoch"] == 3 and state["phase"] == "pretrain"
    assert not [k for k in read_net(folder, "2", "G") if "to_rgb" in k]
    assert [k for k in read_net(folder, "1", "G") if "to_rgb" in k]  # still pre-training after epoch 1


def test_resume_in_the_middle_of_a_fade_is_exact(tiny_dataset, pretrained, tmp_path, monkeypatch, capsys):
    from models.trainer import SPADETrainer
    from util.core.checkpoint import read_net, read_state
    straight = os.path.join(pretrained[0], "straight")
    ckpt = str(tmp_path)
    # interrupt (as Ctrl-C does) in iteration 3 of epoch 1: the first iteration of the first fade
    original = SPADETrainer.generator_step
    calls = {"n": 0}

    def interrupting(self, label, real, stage=None, edge=None):
        calls["n"] += 1
        if calls["n"] == 3:
            assert stage == (1, 0.0), stage
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, label, real, stage, edge)

    monkeypatch.setattr(SPADETrainer, "generator_step", interrupting)
    assert phase(tiny_dataset, ckpt, "resumed", *PRETRAIN) == 130
    monkeypatch.setattr(SPADETrainer, "generator_step", original)
    folder = os.path.join(ckpt, "resumed")
    latest = read_state(folder, "latest", ["G", "D"])
    assert (latest["next_epoch"], latest["next_iter"], latest["d_level"]) == (1, 3, 1)
    capsys.readouterr()

    assert phase(tiny_dataset, ckpt, "resumed", *PRETRAIN, "--continue_train") == 0
    out = capsys.readouterr().out
    assert "resumed from latest: epoch 1, iteration 3" in out
    assert "training 64x48 fading in over 32x24 (alpha 0.50)" in out, out
    assert "discriminator scale 1" not in out, "the resumed run re-initialised a scale it had already grown"
    assert "discriminator scale 0" in out
    for net in ("G", "D"):
        diff = max_abs_diff(read_net(straight, "2", net), read_net(folder, "2", net))
        assert diff < 1e-5, f"{net}: resumed run differs from the straight one by {diff}"
    assert read_state(folder, "2", ["G", "D"])["d_level"] == 2


DIFF_AUG_FLAGS = ["--diff_aug", "color,translation"]


def test_pretraining_checkpoint_starts_finetuning(tiny_dataset, pretrained, tmp_path, capsys):
    import shutil

    import test_phase
    from PIL import Image

    from util.core.checkpoint import read_net, read_state
    ckpt = str(tmp_path / "ckpt")
    shutil.copytree(pretrained[0], ckpt)
    folder = os.path.join(ckpt, "straight")
    pre = read_net(folder, "2", "G")
    assert not [k for k in pre if "seg_noise_var" in k]

    assert phase(tiny_dataset, ckpt, "straight", "--init_from", "2", "--niter", "3", "--use_seg_noise",
                 "--phase_name", "finetune", *DIFF_AUG_FLAGS) == 0
    out = capsys.readouterr().out
    assert "new parameter tensors" in out and "seg_noise_var" in out, out
    assert "epochs 3..3" in out
    assert "progressive schedule" not in out
    g = read_net(folder, "3", "G")
    noise = [k for k in g if "seg_noise_var" in k]
    assert noise and not [k for k in g if "to_rgb" in k]
    assert set(g) - set(noise) == set(pre)
    assert any(np.any(g[k]) for k in noise)  # trained for an epoch
    state = read_state(folder, "3", ["G", "D"])
    assert state["phase"] == "finetune" and state["next_epoch"] == 4

    out_dir = tmp_path / "generated"
    assert test_phase.main(["--input_path", os.path.join(tiny_dataset, "test", "labels"), "--output_path",
                            str(out_dir), "--name", "straight", "--checkpoints_dir", ckpt, "--which_epoch", "3",
                            "--nThreads", "0", "--gpu", "off"]) == 0
    assert "use_seg_noise=True" in capsys.readouterr().out  # architecture taken from opt.json
    images = sorted(os.listdir(out_dir))
    assert len(images) == 3
    assert Image.open(out_dir / images[0]).size == (W, H)


def test_init_from_a_mid_pretraining_checkpoint_is_refused(tiny_dataset, pretrained, tmp_path):
    import shutil

    from util.core.errors import CheckpointError
    ckpt = str(tmp_path / "ckpt")
    shutil.copytree(pretrained[0], ckpt)
    with pytest.raises(CheckpointError, match="middle of progressive pre-training"):
        phase(tiny_dataset, ckpt, "straight", "--init_from", "1", "--niter", "3", "--use_seg_noise")


def test_generation_refuses_a_mid_pretraining_checkpoint(tiny_dataset, pretrained, tmp_path):
    import test_phase

    from util.core.errors import CheckpointError
    with pytest.raises(CheckpointError, match="middle of progressive pre-training"):
        test_phase.main(["--input_path", os.path.join(tiny_dataset, "test", "labels"), "--output_path",
                         str(tmp_path / "out"), "--name", "straight", "--checkpoints_dir", pretrained[0],
                         "--which_epoch", "1", "--nThreads", "0", "--gpu", "off"])


# ---------------------------------------------------------------------------------------------
# 9. presets
# ---------------------------------------------------------------------------------------------

def _parse(*args):
    from options import train_options
    opt, _ = train_options.parse(["--input_path", "unused", *args])
    return opt


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def test_preset_values_overrides_and_errors(tmp_path):
    from util.core.errors import OptionError
    p = _write(tmp_path / "p.json", {"options": {"batchSize": 3, "pg_niter": 5, "use_seg_noise": True}})
    opt = _parse("--preset", p)
    assert (opt.batchSize, opt.pg_niter, opt.use_seg_noise) == (3, 5, True)
    opt = _parse("--preset", p, "--batchSize", "2")
    assert (opt.batchSize, opt.pg_niter) == (2, 5)
    opt = _parse("--batchSize", "2", "--preset", p)  # order does not matter
    assert opt.batchSize == 2
    assert _parse("--preset", p, "--use_seg_noise", "no").use_seg_noise is False
    assert _parse("--use_seg_noise").use_seg_noise is True and _parse().use_seg_noise is False
    assert _parse().pg_niter == 0

    with pytest.raises(OptionError):
        _parse("--preset", _write(tmp_path / "bad.json", {"options": {"batchSize": 3, "no_such_option": 1}}))
    with pytest.raises(OptionError):
        _parse("--preset", _write(tmp_path / "badval.json", {"options": {"batchSize": "many"}}))
    with pytest.raises(OptionError):
        _parse("--preset", _write(tmp_path / "badchoice.json", {"options": {"pg_strategy": "sideways"}}))
    with pytest.raises(OptionError):
        _parse("--preset", _write(tmp_path / "noopts.json", {"description": "x"}))
    with pytest.raises(OptionError):
        _parse("--preset", str(tmp_path / "missing.json"))
    with pytest.raises(OptionError):
        _parse("--preset", "no_such_shipped_preset")
    with pytest.raises(OptionError):  # a preset value that breaks validation is still checked
        _parse("--preset", _write(tmp_path / "pg.json", {"options": {"pg_niter": 4, "num_D": 1}}))

    base = _write(tmp_path / "base.json", {"options": {"batchSize": 3, "ngf": 16, "pg_strategy": "jump"}})
    child = _write(tmp_path / "child.json", {"extends": base, "options": {"ngf": 32, "lambda_l1": 2.5}})
    opt = _parse("--preset", child)
    assert (opt.batchSize, opt.ngf, opt.pg_strategy, opt.lambda_l1) == (3, 32, "jump", 2.5)
    assert _parse("--preset", child, "--ngf", "8").ngf == 8
    loop_a = tmp_path / "loop_a.json"
    loop_b = _write(tmp_path / "loop_b.json", {"extends": str(loop_a), "options": {}})
    _write(loop_a, {"extends": loop_b, "options": {}})
    with pytest.raises(OptionError):
        _parse("--preset", str(loop_a))


def test_shipped_presets_parse():
    from options import presets
    for name in presets.available():
        _parse("--preset", name)
