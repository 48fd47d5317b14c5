"""The training benchmark (util/bench.py) and its FLOP counter (util/metrics/flops.py).

No speed is asserted here: the figures depend on the machine. The tests check
the FLOP counts against hand-computed ones, the back-propagation accounting,
that counting at any size builds a graph without running it, the loader
measurement, the command line end to end at tiny settings, and its errors."""

import json
import os
import re
import sys

import jittor as jt
import numpy as np
import pytest
from jittor import nn

from conftest import run_script, tiny_train_opt
from models.normalization import SNConv2d
from util import bench
from util.metrics import flops

TINY_ARGS = ["--preset", "cpu", "--gpu", "off", "--iters", "1", "--repeats", "1", "--warmup", "1",
             "--gen_batch", "1", "--loader_images", "4", "--loader_unique", "2", "--loader_batch", "2",
             "--train_args", "--crop_size 32 --aspect_ratio 1 --ngf 4 --ndf 4 --spade_hidden 8 --num_D 1 "
                             "--n_layers_D 2 --batchSize 1 --inception_input 299"]  # 32x32: too small as it is


class TinyNet(nn.Module):
    """conv 3->8 (3x3, pad 1), spectral conv 8->4 (3x3, stride 2, pad 1), transposed conv 4->2 (2x2,
    stride 2), linear 128->10."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = SNConv2d(8, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 8 * 8, 10)

    def execute(self, x):
        y = self.up(self.c2(nn.relu(self.c1(x))))
        return self.fc(y.reshape(y.shape[0], -1))


# Multiply-adds of TinyNet on a [2, 3, 8, 8] input, by hand:
MACS = {
    "c1": 2 * 8 * 8 * 8 * (3 * 3 * 3),    # output elements x (in channels x kernel)
    "c2": 2 * 4 * 4 * 4 * (8 * 3 * 3),    # 8x8 -> 4x4 with stride 2
    "up": 2 * 4 * 4 * 4 * (2 * 2 * 2),    # every input element into out channels x kernel
    "fc": 2 * 128 * 10,                   # rows x in x out
}


def trainable(net):
    return [p for p in net.parameters() if not p.is_stop_grad()]


def test_counts_conv_transposed_conv_and_linear_multiply_adds_as_computed_by_hand():
    net = TinyNet()
    with flops.FlopCounter({"net": net}) as counter:
        out = net(jt.randn(2, 3, 8, 8))
        assert tuple(out.shape) == (2, 10)
        assert {c.layer: c.macs for c in counter.calls} == MACS
        assert [c.kind for c in counter.calls] == ["conv", "conv", "deconv", "linear"]
        assert counter.flops() == counter.flops("net") == 2 * sum(MACS.values()) == 80896
    assert all("execute" not in m.__dict__ for _, m in net.named_modules())   # the layers are restored
    with flops.FlopCounter({"net": net}) as counter:
        net(jt.randn(1, 3, 8, 8))
        assert counter.flops() == sum(MACS.values())                        # half the batch, half the FLOPs


def test_a_no_grad_pass_counts_once_a_trained_pass_three_times():
    net, head = TinyNet(), TinyNet()
    total = 2 * sum(MACS.values())
    with flops.FlopCounter({"net": net}) as counter:
        with jt.no_grad():
            net(jt.randn(2, 3, 8, 8))
        assert flops.training_flops(counter.calls, trainable(net))["total"] == total
        assert flops.naive_training_flops(counter.calls) == total
        counter.clear()

        # input computed from a trained parameter: every layer's input and weight gradients, 3x
        x = nn.conv2d(jt.randn(2, 3, 8, 8).stop_grad(), head.c1.weight[:3], padding=1)
        net(x)
        result = flops.training_flops(counter.calls, trainable(net) + [head.c1.weight])
        assert result["total"] == 3 * total and result["backward"] == 2 * total
        assert flops.naive_training_flops(counter.calls) == 3 * total


def test_first_layer_on_data_and_frozen_networks_count_what_their_backward_computes():
    net, frozen = TinyNet(), nn.Linear(10, 5)
    for p in frozen.parameters():
        p.stop_grad()
    with flops.FlopCounter({"net": net, "frozen": frozen}) as counter:
        data = jt.randn(2, 3, 8, 8)
        frozen(net(data))                      # trained net, then a frozen net the gradient flows through
        frozen(data.reshape(2, -1)[:, :10])    # frozen net on data alone: forward only
        factors = flops.backprop_factors(counter.calls, trainable(net))
        assert factors == [(1, 0, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 0), (1, 0, 0)]
        result = flops.training_flops(counter.calls, trainable(net))
        fc = 2 * 2 * 10 * 5
        assert result["networks"]["net"] == {"forward": 2 * sum(MACS.values()),
                                             "backward": 2 * (2 * sum(MACS.values()) - MACS["c1"])}
        assert result["networks"]["frozen"] == {"forward": 2 * fc, "backward": fc}
        # detach() stops the gradient: the layers behind it are not back-propagated into
        counter.clear()
        net(nn.conv2d(data, net.c1.weight[:3], padding=1).detach())
        assert flops.backprop_factors(counter.calls, trainable(net))[0] == (1, 0, 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchweights")
    rng = np.random.default_rng(0)
    vgg, inception = str(folder / bench.VGG_FILE), str(folder / bench.INCEPTION_FILE)
    bench.write_random_vgg(vgg, rng)
    bench.write_random_inception(inception, rng)
    return vgg, inception


def test_random_weight_files_load_with_the_real_loaders(weights):
    from models.inception import InceptionV3Features
    from models.vgg import VGG19Features
    vgg = VGG19Features.from_file(weights[0])
    inception = InceptionV3Features.from_file(weights[1])
    assert inception.variant == "fid"
    x = jt.array(np.random.RandomState(0).uniform(-1, 1, (1, 3, 80, 80)).astype(np.float32))
    feats = inception(x)
    assert all(np.isfinite(f.numpy()).all() for f in feats.values())
    assert np.isfinite(vgg(x)[-1].numpy()).all()


def test_training_flops_are_counted_from_the_lazy_graph_of_the_real_step(weights):
    """The fine-tuning step at tiny settings: the forward FLOPs of one iteration are G on the batch twice
    (G step, then under no_grad in D's step), D on fake + real twice, VGG19 and Inception on fake + real
    once (--d_fake regenerate, as SPADE and APF-GAN); the backward pass lies between 1x and 2x the forward;
    nothing is executed."""
    opt = tiny_train_opt("--vgg_weights", weights[0], "--inception_weights", weights[1], "--no_vgg_loss", "no",
                         "--inception_loss", "--diff_aug", "color,crop,translation", "--use_seg_noise",
                         "--batchSize", "2", "--d_fake", "regenerate")
    result = bench.count_flops(opt)
    per = result["forward_per_image"]
    assert set(per) == {"G", "D", "VGG19", "Inception"} and all(v > 0 for v in per.values())
    assert per["Inception"] == pytest.approx(2 * 5.7e9, rel=0.01)          # InceptionV3 at 299x299
    n = 2
    assert result["per_iteration_forward_only"] == pytest.approx(
        n * (2 * per["G"] + 4 * per["D"] + 2 * per["VGG19"] + 2 * per["Inception"]))
    forward = result["per_iteration_forward_only"]
    assert forward < result["per_iteration"] < 3 * forward
    assert result["per_iteration"] < result["per_iteration_naive_3x"]
    # real photo through VGG19 / Inception: forward only; fake: forward + input gradient
    g_nets = result["generator_step"]["networks"]
    assert g_nets["VGG19"]["backward"] == pytest.approx(g_nets["VGG19"]["forward"] / 2)
    assert g_nets["Inception"]["backward"] == pytest.approx(g_nets["Inception"]["forward"] / 2)
    assert result["discriminator_step"]["networks"]["G"]["backward"] == 0


def test_reusing_the_generator_steps_image_saves_one_generator_forward_per_iteration(weights):
    common = ("--vgg_weights", weights[0], "--no_vgg_loss", "no", "--use_seg_noise", "--batchSize", "2")
    reuse = bench.count_flops(tiny_train_opt(*common, "--d_fake", "reuse"))
    regenerate = bench.count_flops(tiny_train_opt(*common, "--d_fake", "regenerate"))
    g_forward = 2 * reuse["forward_per_image"]["G"]
    assert "G" not in reuse["discriminator_step"]["networks"]
    assert regenerate["per_iteration_forward_only"] - reuse["per_iteration_forward_only"] == pytest.approx(g_forward)
    assert reuse["generator_step"] == regenerate["generator_step"]


def test_loader_measurement_on_a_handful_of_images(tiny_dataset, tmp_path):
    opt = tiny_train_opt()
    r = bench.measure_loader(os.path.join(tiny_dataset, "train"), opt, threads=0, batch=4, repeats=2)
    assert r["epoch_images"] == 12 and len(r["all_images_per_s"]) == 2 and r["images_per_s"] > 0
    assert all(s > 0 for s in r["epoch_seconds"])
    root = bench.write_loader_dataset(str(tmp_path / "d"), total=5, unique=2, width=32, height=32)
    assert sorted(os.listdir(os.path.join(root, "imgs"))) == [f"demo_{i:05d}.jpg" for i in range(5)]
    assert os.path.samefile(os.path.join(root, "labels", "demo_00004.png"),
                            os.path.join(root, "labels", "demo_00000.png"))


def positive_numbers(obj, path=""):
    """(path, value) of every number in a JSON tree (booleans excluded)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from positive_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from positive_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def test_cpu_preset_end_to_end_prints_the_table_and_writes_every_figure(tmp_path):
    out = str(tmp_path / "bench.json")
    proc = run_script("util.bench", *TINY_ARGS, "--loader_threads", "0,1", "--peak_tflops", "1", "--json", out,
                      timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in (r"pre-training\s+iterations/s\s+[0-9.]+", r"fine-tuning\s+images/s\s+[0-9.]+",
                r"generation\s+images/s\s+[0-9.]+", r"images/s, 0 workers\s+[0-9.]+",
                r"images/s, 1 workers\s+[0-9.]+", r"peak host RSS after fine-tuning\s+[0-9.]+ GiB",
                r"G forward.*\s+[0-9.]+ [MG]", r"D forward\s+[0-9.]+ [kMG]", r"VGG19 forward\s+[0-9.]+ [MG]",
                r"Inception forward\s+11.\d G", r"training, pre-training\s+[0-9.]+ G",
                r"TFLOP/s, fine-tuning\s+[0-9.]+", r"utilisation\s+fine-tuning\s+[0-9.]+ %",
                r"command: python -m util.bench --preset cpu"):
        assert re.search(row, proc.stdout), row
    with open(out) as f:
        results = json.load(f)
    for phase in ("pretrain", "finetune"):
        t = results["train"][phase]
        assert t["images_per_s"] == pytest.approx(t["iterations_per_s"] * t["batch"])
        assert len(t["all_iterations_per_s"]) == 1 and t["settings"]["size"] == "32x32"
        assert {"peak_host_rss_bytes", "peak_tensor_bytes"} <= set(t["memory"])
        f_ = results["flops"][phase]
        assert {"per_iteration", "achieved_tflops", "utilisation", "forward_per_image"} <= set(f_)
    assert results["train"]["finetune"]["settings"]["inception_loss"] is True
    # apf_finetune: the mask encoder, and the Inception loss in place of VGG
    assert set(results["flops"]["finetune"]["forward_per_image"]) == {"G", "E", "D", "Inception"}
    assert results["generate"]["images_per_s"] > 0
    assert set(results["loader"]["threads"]) == {"0", "1"}
    assert results["device"].startswith("CPU") and results["gpu"] is False
    numbers = list(positive_numbers(results))
    assert len(numbers) > 50
    # all positive, but the backward FLOPs of a network that a step does not back-propagate (G in D's step)
    # and the machine's load average (0 on an idle machine)
    assert [p for p, v in numbers if not (v > 0 or (v == 0 and p.endswith(".backward"))
                                          or p.startswith(".load_average"))] == []
    assert results["flops"]["finetune"]["discriminator_step"]["networks"]["G"]["backward"] == 0


@pytest.mark.parametrize("args, named", [
    (["--preset", "gpu_huge"], "gpu_huge"),
    (["--what", "train,bogus"], "bogus"),
    (["--phases", "warmup"], "warmup"),
    (["--loader_threads", "two"], "two"),
])
def test_bad_choices_exit_with_a_message_naming_them(args, named):
    proc = run_script("util.bench", *args, timeout=120)
    assert proc.returncode == 2
    assert named in proc.stderr and "Traceback" not in proc.stderr


def test_bad_train_args_are_named():
    proc = run_script("util.bench", "--gpu", "off", "--what", "flops", "--train_args", "--no_such_flag 3",
                      timeout=300)
    assert proc.returncode == 2
    assert "--train_args" in proc.stderr and "--no_such_flag" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------ --compare (side by side with the references)
def fake_checkout(root, kind):
    """A folder with the files --compare looks for in a checkout of the reference ``kind`` (nothing runs)."""
    trainer = {"spade": "from models.networks.sync_batchnorm import DataParallelWithCallback\n",
               "apf": "import jittor as jt\n"}[kind]
    for path, text in (("trainers/pix2pix_trainer.py", trainer), ("models/pix2pix_model.py", ""),
                       ("options/train_options.py", "")):
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write(text)
    return str(root)


def python_without_torch(folder):
    """An executable named python3 in ``folder`` that fails as a Python without torch does."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "python3")
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    os.chmod(path, 0o755)
    return path


def assert_user_error(proc, *texts):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    message = " ".join(proc.stderr.split())  # the message is wrapped at 100 columns
    for text in texts:
        assert text in message, (text, message)


@pytest.mark.parametrize("kind, flag, url", [("spade", "--spade_repo", "https://github.com/NVlabs/SPADE"),
                                             ("apf", "--apf_repo", "https://github.com/zcablii/APF-GAN-jittor")])
def test_compare_without_or_with_a_missing_checkout_says_where_to_get_it(tmp_path, kind, flag,
                                                                             url):
    proc = run_script("util.bench", "--compare", kind, timeout=120)
    assert_user_error(proc, flag, f"git clone {url} DIR")
    proc = run_script("util.bench", "--compare", kind, flag, str(tmp_path / "nowhere"), timeout=120)
    assert_user_error(proc, f"{tmp_path / 'nowhere'}: no such folder", f"git clone {url} DIR")
    # the other reference's checkout, or an empty folder, is refused
    other = fake_checkout(tmp_path / "other", "apf" if kind == "spade" else "spade")
    proc = run_script("util.bench", "--compare", kind, flag, other, timeout=120)
    assert_user_error(proc, "not a checkout of " + url, "trainers/pix2pix_trainer.py")
    proc = run_script("util.bench", "--compare", kind, flag, str(tmp_path), timeout=120)
    assert_user_error(proc, "not a checkout of " + url, "models/pix2pix_model.py")


def test_compare_spade_without_torch_says_how_to_make_a_python_with_it(tmp_path):
    repo = fake_checkout(tmp_path / "spade", "spade")
    fake = python_without_torch(str(tmp_path / "bin"))
    venv = ("python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.14.1 torchvision==0.29.1 "
            "dill")
    proc = run_script("util.bench", "--compare", "spade", "--spade_repo", repo, "--torch_python", fake, timeout=120)
    assert_user_error(proc, f"{fake} (ModuleNotFoundError: No module named 'torch')", venv,
                      "--torch_python /tmp/torchenv/bin/python")
    proc = run_script("util.bench", "--compare", "spade", "--spade_repo", repo, "--torch_python",
                      str(tmp_path / "missing" / "python"), timeout=120)
    assert_user_error(proc, "no such program", venv)
    # by default: python3 / python on PATH
    proc = run_script("util.bench", "--compare", "spade", "--spade_repo", repo, timeout=120,
                      extra_env={"PATH": str(tmp_path / "bin")})
    assert_user_error(proc, f"{fake} (ModuleNotFoundError", venv)


@pytest.mark.parametrize("args, named", [
    (["--compare", "torch"], "torch"),
    (["--spade_repo", "/tmp"], "--spade_repo is used with --compare spade only"),
    (["--compare", "apf", "--spade_repo", "/tmp"], "--spade_repo is used with --compare spade only"),
    (["--compare", "apf", "--torch_python", "python3"], "--torch_python is used with --compare spade only"),
    (["--apf_repo", "/tmp"], "--apf_repo is used with --compare apf only"),
    (["--compare", "spade", "--what", "train", "--preset", "cpu"], "drop --preset, --what"),
    (["--compare", "apf", "--train_args", "--ngf 8"], "drop --train_args"),
])
def test_compare_argument_checks(args, named):
    proc = run_script("util.bench", *args, timeout=120)
    assert proc.returncode == 2
    assert named in proc.stderr and "Traceback" not in proc.stderr


def flag_values(argv):
    """{--flag: value} of a command line (bare switches map to True)."""
    out = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out[arg] = True if nxt is None or nxt.startswith("--") else nxt
    return out


@pytest.mark.parametrize("d_fake", ["reuse", "regenerate"])
@pytest.mark.parametrize("kind, size", [("spade", (128, 96)), ("apf", (256, 192))])
def test_compare_settings_are_the_same_on_both_sides(tmp_path, kind, size, d_fake):
    """The project's options parse and have the reference's values (APF-GAN runs at 256x192: its layout); the
    discriminator step's image is the one --d_fake asks for (regenerate: as the references)."""
    from options import train_options
    settings, values, argv, extra = bench.compare_settings(kind, str(tmp_path), d_fake)
    opt, _ = train_options.from_values(**values)
    ref = flag_values(argv)
    w, h = size
    assert (settings["width"], settings["height"]) == (w, h) == (opt.crop_size, round(w / opt.aspect_ratio))
    assert ref["--crop_size"] == str(w) and float(ref["--aspect_ratio"]) == opt.aspect_ratio
    for key, flag, value in (("ngf", "--ngf", 32), ("ndf", "--ndf", 32), ("num_D", "--num_D", 2),
                             ("n_layers_D", "--n_layers_D", 4), ("batchSize", "--batchSize", 2),
                             ("label_nc", "--label_nc", 29)):
        assert getattr(opt, key) == value and ref[flag] == str(value), key
    assert ref["--no_instance"] is True and ref["--gan_mode"] == opt.gan_mode == "hinge"
    assert not opt.no_vgg_loss and not opt.no_ganFeat_loss and opt.vgg_input == "raw"
    assert float(ref["--lambda_vgg"]) == opt.lambda_vgg and float(ref["--lambda_feat"]) == opt.lambda_feat
    assert not (opt.inception_loss or opt.diff_aug or opt.use_seg_noise or opt.use_vae or opt.pg_niter)
    assert opt.d_fake == d_fake
    if kind == "spade":
        assert (opt.num_upsampling_layers, ref["--num_upsampling_layers"]) == ("normal", "normal")
        assert opt.norm_G == ref["--norm_G"] and opt.norm_D == ref["--norm_D"] and not opt.encode_mask
    else:
        assert (opt.num_upsampling_layers, ref["--num_upsampling_layers"]) == ("apf_more", "more")
        assert opt.encode_mask and ref["--encode_mask"] is True and opt.netD == "apf_progressive"
        assert extra["epoch"] >= int(ref["--pg_niter"])      # APF-GAN's full-size networks


def test_compare_table_shows_rates_the_paired_ratio_and_parameters(capsys):
    ref = {"framework": "PyTorch 2.14.1", "python": "3.11.7", "commit": "fecacc9" + "0" * 33, "runs": "SPADE's",
           "argv": ["--ngf", "32"], "iterations_per_s": 0.5, "all_iterations_per_s": [0.5, 0.4, 0.6],
           "g_step_parameters": 110, "d_step_parameters": 20,
           "unused_parameters": {"g_step": {"E.fc_mu/fc_var": 10}, "d_step": {}}}
    project = {"framework": "Jittor 1.3.11", "python": "3.11.7", "runs": "ours", "iterations_per_s": 0.6,
               "all_iterations_per_s": [0.6, 0.6, 0.5], "g_step_parameters": 100, "d_step_parameters": 20}
    results = {"device": "CPU: test", "command": "python -m util.bench --compare spade", "settings": dict(
        bench.COMPARE_COMMON, size="128x96", steps="one G step + one D step", optimiser="Adam", data="random"),
        "repeats": 3, "iters": 2, "warmup": 2, "load_average_at_end": 1.0, "reference": ref, "project": project,
        "ratio": 1.2, "pair_ratios": [1.2, 1.5, 0.83]}
    bench.print_compare(results, "NVlabs/SPADE", batch=2)
    out = capsys.readouterr().out
    assert "NVlabs/SPADE fecacc9 (PyTorch 2.14.1" in out and "options: --ngf 32" in out
    for row in (r"NVlabs/SPADE\s+iterations/s\s+0.500\s+1.000 images/s; passes 0.500, 0.400, 0.600",
                r"this project\s+iterations/s\s+0.600", r"this project / SPADE\s+1.20\s+median of the 3 paired "
                r"passes: 1.20, 1.50, 0.83", r"trained by the G step\s+100\s+this project; NVlabs/SPADE: 110 = 100 "
                r"\+ 10 its step never uses \(E.fc_mu/fc_var 10\)", r"trained by the D step\s+20\s+this project; "
                r"NVlabs/SPADE: 20$"):
        assert re.search(row, out, re.M), row


def test_reference_driver_protocol_and_a_crash_through_a_stand_in_driver(tmp_path, monkeypatch):
    """ReferenceDriver speaks to a driver script's main() (run in the checkout folder by runpy) line by line;
    a driver that dies is a ReferenceRunError quoting its output. The stand-in prints to stdout as the
    references do: only the protocol copy reaches the benchmark."""
    folder = tmp_path / "drivers"
    folder.mkdir()
    (folder / "fake_step.py").write_text(
        "import json, os, sys\n"
        "def main(argv):\n"
        "    settings = json.loads(argv[0])\n"
        "    proto = os.fdopen(os.dup(1), 'w', buffering=1)\n"
        "    os.dup2(2, 1)\n"
        "    print('noise from the reference')\n"
        "    if settings.get('crash'):\n"
        "        raise RuntimeError('the reference broke')\n"
        "    print('ready ' + json.dumps({'cwd': os.getcwd(), 'warmup': settings['warmup']}), file=proto)\n"
        "    for line in sys.stdin:\n"
        "        if line.startswith('quit'):\n"
        "            break\n"
        "        print('seconds ' + str(0.5 * int(line.split()[1])), file=proto)\n"
        "    return 0\n")
    monkeypatch.setattr(bench, "DRIVERS", str(folder))
    monkeypatch.setitem(bench.REFERENCES, "fake", {"title": "the fake", "driver": "fake_step.py"})
    driver = bench.ReferenceDriver("fake", sys.executable, str(tmp_path), {"warmup": 3},
                                   str(tmp_path / "log.txt"), bench.driver_environment())
    try:
        assert driver.ready() == {"cwd": str(tmp_path), "warmup": 3}
        assert driver.run(4) == 2.0 and driver.run(1) == 0.5
    finally:
        driver.close()
    assert driver.proc.returncode == 0
    assert "noise from the reference" in (tmp_path / "log.txt").read_text()
    crashing = bench.ReferenceDriver("fake", sys.executable, str(tmp_path), {"warmup": 1, "crash": True},
                                     str(tmp_path / "log2.txt"), bench.driver_environment())
    with pytest.raises(bench.ReferenceRunError, match="(?s)the fake's training driver stopped.*the reference broke"):
        crashing.ready()
    crashing.close()


def test_operator_profile_groups_jittors_report_by_kind_of_work_per_iteration():
    from util.metrics.op_profile import ELEMENTWISE, op_kind, summarise
    header = ["Name", "FileName", "Count", "TotalTime", "AvgTime"]
    rows = [["mkl_conv«Txd:float32«XFORMAT:abcd", "", "8", "4e9", ""],
            ["mkl_conv_backward_x«Tyd:float32", "", "4", "2e9", ""],
            ["cudnn_conv_backward_w«Tx:float32", "", "4", "1e9", ""],
            ["«opkey0:reduce«Tx:float32«OP:add", "", "6", "5e8", ""],
            ["mkl_matmul«T:float32", "", "2", "2e8", ""],
            ["«opkey0:array«T:float32«opkey1:binary«OP:add", "", "10", "3e8", ""]]
    assert op_kind(rows[2][0]) == "convolution, backward to the weights" and op_kind(rows[5][0]) == ELEMENTWISE
    summary = summarise([header] + rows, calls=2, top=2)
    assert summary["per_call_seconds"] == pytest.approx(4.0)
    kinds = {kind: (seconds, share) for kind, seconds, share in summary["kinds"]}
    assert kinds["convolution, forward"] == pytest.approx((2.0, 0.5))
    assert kinds["reduction (fused)"][0] == pytest.approx(0.25) and kinds[ELEMENTWISE][0] == pytest.approx(0.15)
    assert summary["kinds"][0][0] == "convolution, forward"                    # largest first
    assert [(s, n) for s, n, _ in summary["top"]] == [(2.0, 4.0), (1.0, 2.0)]
