"""Weight averaging (models.averaging, and its command util.merge_ckpt): float means, spectral-norm vectors
re-estimated for the averaged weight, integer buffers copied, the refusals, and an averaged tiny generator used
for generation."""

import os

import numpy as np
import pytest

from conftest import TINY_NET_FLAGS, run_script
from models import layout
from util.core import checkpoint
from util import merge_ckpt
from util.core.errors import CheckpointError, OptionError
from models.averaging import average_states, reestimate_singular_vectors, spectral_prefixes

SCRIPT = os.path.join("util", "merge_ckpt.py")


def top_singular(weight):
    """(sigma_max, u, v) of ``weight`` reshaped to [out, -1], from an SVD in float64."""
    mat = np.asarray(weight, np.float64).reshape(weight.shape[0], -1)
    u, s, vt = np.linalg.svd(mat, full_matrices=False)
    return s[0], u[:, 0], vt[0]


def sigma_used_in_eval(state, prefix):
    """The divisor the model uses in eval mode: u . (W_mat v) with the stored vectors."""
    w = state[prefix + ".weight_orig"].astype(np.float64)
    return float(state[prefix + ".weight_u"] @ (w.reshape(w.shape[0], -1) @ state[prefix + ".weight_v"]))


def low_rank_plus_noise(rng, direction_u, direction_v, shape, strength=3.0, noise=0.05):
    """A conv weight [out, in, k, k] whose matrix is strength * u v^T + small noise: a clear singular gap."""
    mat = strength * np.outer(direction_u, direction_v) + noise * rng.randn(shape[0], int(np.prod(shape[1:])))
    return mat.reshape(shape).astype(np.float32)


def unit(x):
    return x / np.linalg.norm(x)


def sn_checkpoint(weight, extra=None):
    """A state dict with one spectral-norm conv whose u, v are the exact singular vectors of its weight."""
    _, u, v = top_singular(weight)
    state = {"conv.weight_orig": weight, "conv.weight_u": u.astype(np.float32),
             "conv.weight_v": v.astype(np.float32), "conv.bias": np.zeros(weight.shape[0], np.float32)}
    state.update(extra or {})
    return state


# -- the maths ----------------------------------------------------------------------------------

def test_float_arrays_are_the_float64_mean_stored_as_float32():
    rng = np.random.RandomState(0)
    keys = {"fc.weight": (6, 5, 3, 3), "fc.bias": (6,), "norm.running_mean": (6,), "norm.running_var": (6,)}
    states = [{k: (rng.randn(*s) * 10 ** rng.uniform(-3, 3)).astype(np.float32) for k, s in keys.items()}
              for _ in range(3)]
    states[1]["norm.running_var"] = states[1]["norm.running_var"].astype(np.float64)  # a float64 input too
    merged, report = average_states(states)
    assert report["averaged"] == 4 and report["spectral"] == [] and report["copied"] == []
    assert list(merged) == list(keys)
    for key in keys:
        want = np.mean(np.stack([s[key].astype(np.float64) for s in states]), axis=0)
        assert merged[key].dtype == np.float32 and merged[key].shape == want.shape
        np.testing.assert_allclose(merged[key], want, rtol=2e-7, atol=0)
        # float64 accumulation: exactly the float32 rounding of the float64 mean
        np.testing.assert_array_equal(merged[key], want.astype(np.float32))


def test_power_iteration_finds_the_leading_singular_pair():
    rng = np.random.RandomState(1)
    weight = low_rank_plus_noise(rng, unit(rng.randn(8)), unit(rng.randn(36)), (8, 4, 3, 3))
    sigma, u_ref, v_ref = top_singular(weight)
    u, v = reestimate_singular_vectors(weight, unit(rng.randn(8)), unit(rng.randn(36)), iterations=30)
    assert u.dtype == np.float64 and u.shape == (8,) and v.shape == (36,)
    assert abs(abs(u @ u_ref) - 1) < 1e-10 and abs(abs(v @ v_ref) - 1) < 1e-10
    w = weight.astype(np.float64).reshape(8, -1)
    assert u @ (w @ v) == pytest.approx(sigma, rel=1e-10)
    # zero steps: the starting vectors come back unchanged
    u0, v0 = unit(rng.randn(8)), unit(rng.randn(36))
    u1, v1 = reestimate_singular_vectors(weight, u0, v0, iterations=0)
    np.testing.assert_array_equal(u1, u0)
    np.testing.assert_array_equal(v1, v0)


def test_spectral_vectors_are_reestimated_for_the_averaged_weight():
    rng = np.random.RandomState(2)
    shape = (8, 4, 3, 3)
    # two checkpoints whose leading singular directions differ (as after a stretch of training)
    u_a, v_a = unit(rng.randn(8)), unit(rng.randn(36))
    u_b, v_b = unit(u_a + 0.8 * unit(rng.randn(8))), unit(v_a + 0.8 * unit(rng.randn(36)))
    states = [sn_checkpoint(low_rank_plus_noise(rng, u_a, v_a, shape)),
              sn_checkpoint(low_rank_plus_noise(rng, u_b, v_b, shape, strength=2.5))]
    merged, report = average_states(states)
    assert report["spectral"] == ["conv"]
    assert report["averaged"] == 2  # weight_orig and bias; u, v are not averaged
    w_avg = np.mean([s["conv.weight_orig"].astype(np.float64) for s in states], axis=0)
    np.testing.assert_allclose(merged["conv.weight_orig"], w_avg, rtol=2e-7)
    for key in ("conv.weight_u", "conv.weight_v"):
        assert merged[key].dtype == np.float32
        assert np.linalg.norm(merged[key].astype(np.float64)) == pytest.approx(1.0, abs=1e-6)
    sigma_ref, _, _ = top_singular(merged["conv.weight_orig"])
    assert sigma_used_in_eval(merged, "conv") == pytest.approx(sigma_ref, rel=1e-4)

    # Element-wise averaging of u and v (the naive merge) gives neither unit vectors nor the right sigma.
    naive = dict(merged, **{k: np.mean([s[k] for s in states], axis=0) for k in ("conv.weight_u", "conv.weight_v")})
    assert np.linalg.norm(naive["conv.weight_u"]) < 0.99
    assert abs(sigma_used_in_eval(naive, "conv") / sigma_ref - 1) > 0.05


def test_integer_and_bool_buffers_are_copied_from_the_last_checkpoint():
    rng = np.random.RandomState(3)
    states = [{"w": rng.randn(3).astype(np.float32), "bn.num_batches_tracked": np.array(10 * (i + 1), np.int64),
               "mask": np.array([True, False, i == 1]), "same": np.arange(4, dtype=np.int32)} for i in range(3)]
    merged, report = average_states(states)
    for key in ("bn.num_batches_tracked", "mask", "same"):
        assert merged[key].dtype == states[-1][key].dtype
        np.testing.assert_array_equal(merged[key], states[-1][key])
    assert int(merged["bn.num_batches_tracked"]) == 30  # not the mean, 20
    assert report["copied"] == ["bn.num_batches_tracked", "mask", "same"]
    assert report["differing"] == ["bn.num_batches_tracked", "mask"]


def test_average_states_refuses_different_architectures():
    base = {"a.weight": np.zeros((4, 3), np.float32), "a.bias": np.zeros(4, np.float32)}
    with pytest.raises(CheckpointError, match="at least two"):
        average_states([base])
    with pytest.raises(CheckpointError) as info:
        average_states([base, {"a.weight": base["a.weight"]}], labels=["T1", "T2"])
    assert "a.bias" in str(info.value) and "missing in T2" in str(info.value)
    with pytest.raises(CheckpointError) as info:
        average_states([base, dict(base, **{"a.weight": np.zeros((5, 3), np.float32)})], labels=["T1", "T2"])
    assert "a.weight" in str(info.value) and "(4, 3)" in str(info.value) and "(5, 3)" in str(info.value)
    with pytest.raises(CheckpointError, match="a.bias"):
        average_states([base, dict(base, **{"a.bias": np.zeros(4, np.int64)})])


# -- the command ----------------------------------------------------------------------------------

def write_tags(folder, states_by_tag, net="G"):
    for tag, state in states_by_tag.items():
        checkpoint.write_checkpoint(folder, tag, {net: state})


def toy_state(seed, with_counter=True):
    rng = np.random.RandomState(seed)
    weight = low_rank_plus_noise(rng, unit(rng.randn(4)), unit(rng.randn(27)), (4, 3, 3, 3))
    state = sn_checkpoint(weight, {"norm.running_mean": rng.randn(4).astype(np.float32)})
    if with_counter:
        state["norm.num_batches_tracked"] = np.array(seed, np.int64)
    return state


def test_main_writes_the_average_under_a_new_tag(tmp_path, capsys):
    folder = str(tmp_path)
    states = {"273": toy_state(1), "299": toy_state(2)}
    write_tags(folder, states)
    assert merge_ckpt.main([folder, "273", "299"]) == 0
    printed = capsys.readouterr().out
    path = checkpoint.net_path(folder, "avg_273_299", "G")
    assert path in printed and "1 spectral-norm layers re-estimated" in printed
    assert "3 tensors averaged" in printed  # weight_orig, bias, running_mean; not u, v, the counter
    assert "norm.num_batches_tracked" in printed  # differs: named in a note
    assert "--which_epoch avg_273_299" in printed
    assert not os.path.exists(checkpoint.net_path(folder, "avg_273_299", "E"))
    assert not os.path.exists(checkpoint.state_path(folder, "avg_273_299"))
    got = checkpoint.read_net(folder, "avg_273_299", "G")
    want, _ = average_states([states["273"], states["299"]])
    assert list(got) == list(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert int(got["norm.num_batches_tracked"]) == 2
    assert "avg_273_299" in checkpoint.available_tags(folder)


def test_average_tags_is_the_library_main_prints(tmp_path, capsys):
    from models.averaging import average_tags
    folder = str(tmp_path)
    write_tags(folder, {"1": toy_state(1), "2": toy_state(2)})
    lines = average_tags(folder, ["1", "2"], out="avg_lib")
    assert lines[0].startswith(f"wrote {checkpoint.net_path(folder, 'avg_lib', 'G')}: 3 tensors averaged")
    assert lines[-1] == "use it with --which_epoch avg_lib"
    assert capsys.readouterr().out == ""  # the library prints nothing
    assert merge_ckpt.main([folder, "1", "2", "--out", "avg_cli"]) == 0
    assert capsys.readouterr().out.splitlines() == [line.replace("avg_lib", "avg_cli") for line in lines]
    with pytest.raises(CheckpointError, match="no checkpoints there at all"):
        average_tags(str(tmp_path / "empty"), ["1", "2"])
    assert checkpoint.available_hint(folder) == "available: 1, 2, avg_cli, avg_lib"
    assert checkpoint.available_hint(folder, "available tags") == "available tags: 1, 2, avg_cli, avg_lib"


def test_output_tag_rules(tmp_path):
    folder = str(tmp_path)
    write_tags(folder, {"1": toy_state(1), "2": toy_state(2), "3": toy_state(3)})
    with pytest.raises(CheckpointError, match="one of the input tags"):
        merge_ckpt.main([folder, "1", "2", "--out", "2"])
    merge_ckpt.main([folder, "1", "2", "--out", "best"])
    first = checkpoint.read_net(folder, "best", "G")
    with pytest.raises(CheckpointError) as info:
        merge_ckpt.main([folder, "2", "3", "--out", "best"])
    assert checkpoint.net_path(folder, "best", "G") in str(info.value) and "--force" in str(info.value)
    np.testing.assert_array_equal(checkpoint.read_net(folder, "best", "G")["conv.bias"], first["conv.bias"])
    merge_ckpt.main([folder, "2", "3", "--out", "best", "--force"])
    again = checkpoint.read_net(folder, "best", "G")
    assert not np.array_equal(again["norm.running_mean"], first["norm.running_mean"])
    # a training checkpoint (with a state file) is never overwritten, not even with --force
    checkpoint.write_checkpoint(folder, "latest", {"G": toy_state(4)}, {"next_epoch": 5})
    with pytest.raises(CheckpointError, match="training checkpoint"):
        merge_ckpt.main([folder, "1", "2", "--out", "latest", "--force"])


def test_refusals_name_what_is_wrong(tmp_path):
    folder = str(tmp_path)
    good = toy_state(1)
    write_tags(folder, {"1": good, "2": toy_state(2)})
    with pytest.raises(CheckpointError, match="at least two"):
        merge_ckpt.main([folder, "1"])
    with pytest.raises(CheckpointError, match="given twice"):
        merge_ckpt.main([folder, "1", "1"])

    with pytest.raises(CheckpointError) as info:
        merge_ckpt.main([folder, "1", "7"])
    assert checkpoint.net_path(folder, "7", "G") in str(info.value) and "available tags: 1, 2" in str(info.value)

    write_tags(folder, {"fewer": {k: v for k, v in good.items() if k != "norm.running_mean"}})
    with pytest.raises(CheckpointError) as info:
        merge_ckpt.main([folder, "1", "fewer"])
    assert "norm.running_mean" in str(info.value)
    assert "missing in " + checkpoint.net_path(folder, "fewer", "G") in str(info.value)

    write_tags(folder, {"wide": dict(good, **{"norm.running_mean": np.zeros(5, np.float32)})})
    with pytest.raises(CheckpointError) as info:
        merge_ckpt.main([folder, "1", "wide"])
    assert "norm.running_mean" in str(info.value) and "(4,)" in str(info.value) and "(5,)" in str(info.value)

    write_tags(folder, {"pg": dict(good, **{"to_rgb_0.weight": np.zeros((3, 8, 3, 3), np.float32)}),
                        "pg2": dict(good, **{"to_rgb_0.weight": np.ones((3, 8, 3, 3), np.float32)})})
    with pytest.raises(CheckpointError, match="progressive pre-training"):
        merge_ckpt.main([folder, "pg", "pg2"])

    write_tags(folder, {"1": {"enc.weight": np.ones((2, 2), np.float32)}}, net="E")
    with pytest.raises(CheckpointError) as info:
        merge_ckpt.main([folder, "1", "2"])
    assert "mask encoder" in str(info.value) and "tag(s) 1 but not for 2" in str(info.value)

    with pytest.raises(OptionError, match="subset of G,E"):
        merge_ckpt.main([folder, "1", "2", "--nets", "G,D"])
    with pytest.raises(CheckpointError, match="asks for E"):
        merge_ckpt.main([folder, "pg", "pg2", "--nets", "E"])
    assert not [f for f in os.listdir(folder) if f.startswith("avg_")]  # nothing written by a refusal


def test_mask_encoder_is_averaged_too(tmp_path):
    folder = str(tmp_path)
    write_tags(folder, {"1": toy_state(1), "2": toy_state(2)})
    write_tags(folder, {"1": toy_state(5, False), "2": toy_state(6, False)}, net="E")
    merge_ckpt.main([folder, "1", "2"])
    want, _ = average_states([toy_state(5, False), toy_state(6, False)])
    got = checkpoint.read_net(folder, "avg_1_2", "E")
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    merge_ckpt.main([folder, "1", "2", "--nets", "G", "--out", "g_only"])
    assert not os.path.exists(checkpoint.net_path(folder, "g_only", "E"))


def test_script_refusals_exit_2_without_traceback(tmp_path):
    folder = str(tmp_path)
    write_tags(folder, {"1": toy_state(1), "2": toy_state(2)})
    for args, expected in (([folder, "1"], "at least two"), ([folder, "1", "9"], "available tags: 1, 2"),
                           ([folder, "1", "2", "--nets", "D"], "subset of G,E")):
        r = run_script(SCRIPT, *args, timeout=120)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and r.stderr.startswith("error: ") and expected in r.stderr
    help_text = " ".join(run_script(SCRIPT, "--help", timeout=120).stdout.split())
    for phrase in ("D is never merged", "power iteration", "copied from the last tag", "float32"):
        assert phrase in help_text


# -- end to end: an averaged tiny generator generates --------------------------------------------

def exact_spectral_vectors(state):
    """Give every spectral-norm layer the singular vectors of its weight, as a trained checkpoint has."""
    for prefix in spectral_prefixes(state):
        _, u, v = top_singular(state[prefix + ".weight_orig"])
        state[prefix + ".weight_u"], state[prefix + ".weight_v"] = u.astype(np.float32), v.astype(np.float32)
    return state


def generate(folder, tag, label):
    import jittor as jt
    from options import test_options
    from models.generation import generate_batch, load_generator
    ck, name = os.path.split(folder)
    opt, _, _ = test_options.parse(["--name", name, "--checkpoints_dir", ck, "--which_epoch", tag,
                                    "--input_path", "unused", "--output_path", "unused", "--nThreads", "0"])
    nets = load_generator(opt)
    return generate_batch(nets, opt, jt.array(label[None]), ["x.png"], opt.seed).numpy()[0]


def test_averaged_generator_loads_and_generates(tmp_path):
    from models.networks import build_networks
    from options import base_options, train_options
    from util.core.seeding import seed_everything
    seed_everything(0)
    opt, parser = train_options.parse(["--input_path", "unused", *TINY_NET_FLAGS])
    folder = str(tmp_path / "exp")
    base_options.save_options(opt, parser, folder)
    first = {k: v.numpy() for k, v in build_networks(opt, with_discriminator=False)["G"].state_dict().items()}
    for key in first:  # plain convs: from the 0.02-gain initialisation (outputs ~1e-6) to outputs of order 0.1
        if key.endswith(".weight"):
            first[key] = first[key] * np.float32(30)
    rng = np.random.RandomState(0)
    second = {k: (v * (1 + 0.5 * rng.randn(*v.shape)).astype(np.float32)
                  if k.endswith("weight") or k.endswith("weight_orig") else v.copy()) for k, v in first.items()}
    checkpoint.write_checkpoint(folder, "5", {"G": exact_spectral_vectors(first)})
    checkpoint.write_checkpoint(folder, "6", {"G": exact_spectral_vectors(second)})

    r = run_script(SCRIPT, folder, "5", "6", timeout=300)
    assert r.returncode == 0, r.stderr
    assert checkpoint.net_path(folder, "avg_5_6", "G") in r.stdout

    label = np.zeros((layout.image_height(opt), opt.crop_size), np.uint8)
    label[40:, :] = 3
    label[:, 70:] = 17
    outputs = {tag: generate(folder, tag, label) for tag in ("5", "6", "avg_5_6")}
    merged = outputs["avg_5_6"]
    assert merged.shape == (3, label.shape[0], label.shape[1]) and np.isfinite(merged).all()
    for tag in ("5", "6"):
        assert np.abs(merged - outputs[tag]).max() > 0.05 * np.abs(outputs[tag]).max(), tag
