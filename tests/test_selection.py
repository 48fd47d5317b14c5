"""Model selection by FID (util/metrics/selection.py): the pure helpers, checkpoint ranking with util/fid.py
and multi-seed generation keeping the best run with test.py, end to end on a tiny generator.

The FIDs use conftest's random FID Inception weights on the tiny dataset (12 photos, 3 label maps):
meaningless as quality measures, but real FIDs of the real pipeline. Each FID costs a 2048x2048
matrix square root (seconds on a CPU), so the module computes only a handful: 3 in the first
ranking, 2 in the multi-seed run and 1 for the default reference folder.
"""

import contextlib
import io
import json
import math
import os

import numpy as np
import pytest

from conftest import ROOT, TINY_NET_FLAGS, load_module, run_script
from util.core import checkpoint
from util.metrics import selection
from util.metrics.fid_stats import FrechetDistance
from util.core.errors import CheckpointError, DatasetError, OptionError, WeightsFileError
from util.metrics.selection import parse_tags, rank, ranking_csv, run_seeds

FID_SCRIPT = os.path.join("util", "fid.py")
NAME = "sel"
# one Inception batch shape (3 images of 128x96) for the 12 reference photos and the 3 generated images
FID_FLAGS = ["--gpu", "off", "--fid_batch_size", "3"]


test_script = load_module("test.py", "script_test")  # `import test` would find the standard library's


def call(main, argv):
    """Run ``main(argv)`` in-process; returns (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def folder_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


# -- the pure parts --------------------------------------------------------------------------------

def test_parse_tags_ranges_lists_names_and_mixes():
    assert parse_tags("270-272") == ["270", "271", "272"]
    assert parse_tags("273,298,299") == ["273", "298", "299"]
    assert parse_tags("5-5") == ["5"]
    assert parse_tags("avg_273_299") == ["avg_273_299"]
    assert parse_tags("latest") == ["latest"]
    # a mix keeps the given order; duplicates are dropped (the first occurrence stays); spaces are ignored
    assert parse_tags("latest, 3-5,avg_3_5,4,2") == ["latest", "3", "4", "5", "avg_3_5", "2"]
    assert parse_tags("9,8-10,9") == ["9", "8", "10"]
    # numbers are checkpoint epochs: leading zeros name the same file as without
    assert parse_tags("010") == ["10"]
    assert parse_tags("010,10,08-09") == ["10", "8", "9"]
    assert parse_tags(12) == ["12"]
    assert parse_tags("1,,2,") == ["1", "2"]


@pytest.mark.parametrize("text, message", [("5-3", "must not exceed"), ("a b", "not a checkpoint tag"),
                                           ("", "no checkpoint tags"), (" , ", "no checkpoint tags"),
                                           ("3,../x", "not a checkpoint tag"), ("1-2-3", "not a checkpoint tag"),
                                           ("-4", "not a checkpoint tag")])
def test_parse_tags_refuses_bad_input(text, message):
    with pytest.raises(OptionError, match=message):
        parse_tags(text)


def test_run_seeds_start_with_the_seed_and_are_distinct_and_deterministic():
    seeds = run_seeds(7, 20)
    assert len(seeds) == 20 and seeds[0] == 7
    assert len(set(seeds)) == 20
    assert all(isinstance(s, int) and 0 <= s < 2 ** 31 for s in seeds)
    assert run_seeds(7, 20) == seeds
    assert run_seeds(7, 3) == seeds[:3]  # more runs only add seeds
    assert run_seeds(7, 1) == [7]
    assert run_seeds(8, 20)[1:] != seeds[1:]  # the derived seeds depend on the seed
    assert run_seeds("7", 2) == seeds[:2]


def test_rank_by_fid_then_numeric_tag_order():
    results = [{"tag": "10", "fid": 5.0}, {"tag": "latest", "fid": 5.0}, {"tag": "9", "fid": 5.0},
               {"tag": "avg_9_10", "fid": 1.5}, {"tag": "100", "fid": 5.0}, {"tag": "3", "fid": 7.25},
               {"tag": "avg_1_2", "fid": 5.0}]
    ranked = rank(results)
    # ties: numeric tags by number (9 < 10 < 100, not as strings), then named tags by name
    assert [r["tag"] for r in ranked] == ["avg_9_10", "9", "10", "100", "avg_1_2", "latest", "3"]
    assert [r["tag"] for r in results][0] == "10"  # the input is not reordered
    assert ranked[0] is results[3]  # entries keep their other fields
    assert ranking_csv(ranked[:3]) == "rank,checkpoint,fid\n1,avg_9_10,1.500000\n2,9,5.000000\n3,10,5.000000\n"
    table = selection.ranking_table(ranked)
    assert len(table) == 1 + len(ranked) and "avg_9_10" in table[1] and "1.500" in table[1]


# -- a tiny trained-looking experiment ----------------------------------------------------------------

@pytest.fixture(scope="module")
def selection_data(tmp_path_factory):
    """The experiment's own 12/3 demo set. With 15 images the covariances are far from full rank, and the
    matrix square root is ill-conditioned for some image sets (an FIDError, as in pytorch-fid): the
    seed is one for which these FIDs are well defined."""
    from data.demo import write_dataset
    root = str(tmp_path_factory.mktemp("selection_data"))
    write_dataset(root, num=12, width=128, height=96, seed=SELECTION_DATA_SEED, num_test=3, progress=False)
    return root


SELECTION_DATA_SEED = 2


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, selection_data):
    """CHECKPOINTS_DIR/NAME with opt.json (training data: ``selection_data``) and generator checkpoints
    3 and 4: two perturbations of a tiny seg-noise generator whose seg-noise weights are non-zero, so
    the generation seed changes the images."""
    tiny_dataset = selection_data
    from models.networks import build_networks
    from options import base_options, train_options
    from util.core.seeding import seed_everything

    ckpts = str(tmp_path_factory.mktemp("selection") / "checkpoints")
    folder = os.path.join(ckpts, NAME)
    opt, parser = train_options.parse(["--input_path", os.path.join(tiny_dataset, "train"), *TINY_NET_FLAGS,
                                       "--use_seg_noise"])
    base_options.save_options(opt, parser, folder)
    seed_everything(0)
    initial = {k: v.numpy() for k, v in build_networks(opt, with_discriminator=False)["G"].state_dict().items()}
    noise_keys = [k for k in initial if "seg_noise_var" in k]
    assert noise_keys and all(not initial[k].any() for k in noise_keys)  # zero when built
    rng = np.random.RandomState(0)
    first = {}
    for key, value in initial.items():
        if key in noise_keys:
            value = rng.randn(*value.shape).astype(np.float32)  # noise of the order of the features
        elif key.endswith(".weight"):
            value = value * np.float32(30)  # from the 0.02-gain initialisation to visible outputs
        first[key] = value
    second = {k: (v * (1 + 0.5 * rng.randn(*v.shape))).astype(np.float32)
              if k.endswith("weight") or k.endswith("weight_orig") else v.copy() for k, v in first.items()}
    checkpoint.write_checkpoint(folder, "3", {"G": first})
    checkpoint.write_checkpoint(folder, "4", {"G": second})
    return {"checkpoints_dir": ckpts, "folder": folder, "train": os.path.join(tiny_dataset, "train"),
            "train_imgs": os.path.join(tiny_dataset, "train", "imgs"),
            "labels": os.path.join(tiny_dataset, "test", "labels")}


def phase_images(experiment, out, seed, tag="3"):
    """What test_phase.py writes for (checkpoint, seed): {file name: bytes}."""
    import test_phase
    code, _ = call(test_phase.main, ["--input_path", experiment["labels"], "--output_path", out, "--name", NAME,
                                     "--checkpoints_dir", experiment["checkpoints_dir"], "--which_epoch", tag,
                                     "--seed", str(seed), "--gpu", "off", "--nThreads", "0"])
    assert code == 0
    return folder_bytes(out)


# -- util/fid.py: ranking checkpoints ----------------------------------------------------------------

def fid_args(experiment, weights, tags, *extra):
    return [experiment["train"], experiment["labels"], experiment["folder"], tags,
            "--inception_weights", weights, *FID_FLAGS, *extra]


def read_ranking(folder):
    with open(os.path.join(folder, "fid_ranking.csv")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(folder, "fid_ranking.json")) as f:
        record = json.load(f)
    return lines, record


@pytest.fixture(scope="module")
def ranking(experiment, fid_weights_file):
    """The first ranking: tags 2-4 (2 has no checkpoint), the 2 best averaged and scored too."""
    from util import fid
    code, out = call(fid.main, fid_args(experiment, fid_weights_file, "2-4", "--average_best", "2"))
    lines, record = read_ranking(experiment["folder"])
    avg = checkpoint.net_path(experiment["folder"], "avg_3_4", "G")
    return {"code": code, "out": out, "csv": lines, "json": record,
            "avg_signature": selection.file_signature(avg) if os.path.isfile(avg) else None}


def test_fid_ranks_checkpoints_skips_missing_tags_and_scores_the_average(experiment, ranking):
    out, folder = ranking["out"], experiment["folder"]
    assert ranking["code"] == 0
    assert "no checkpoint for 1 of 3 tags, skipped: 2" in out

    header, *rows = ranking["csv"]
    assert header == "rank,checkpoint,fid"
    rows = [row.split(",") for row in rows]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    assert sorted(r[1] for r in rows) == ["3", "4", "avg_3_4"]
    fids = [float(r[2]) for r in rows]
    assert all(math.isfinite(f) and f > 0 for f in fids)
    assert fids == sorted(fids)
    assert len(set(fids)) == 3  # three different generators, three different FIDs

    record = ranking["json"]
    assert record["ranking"] == [r[1] for r in rows]
    by_tag = {r["tag"]: r for r in record["results"]}
    assert sorted(by_tag) == ["3", "4", "avg_3_4"]
    for _, tag, fid in rows:
        assert by_tag[tag]["fid"] == pytest.approx(float(fid), abs=1e-6)
        assert f"{tag:<16} FID" in out  # printed as it is scored
    setting = record["setting"]
    assert setting["reference"] == os.path.abspath(experiment["train_imgs"])  # TRAIN_IMGS/imgs, not TRAIN_IMGS
    assert setting["labels"] == os.path.abspath(experiment["labels"])
    assert setting["reference_count"] == 12 and setting["seed"] == 0
    assert f"best: {rows[0][1]} (FID" in out

    # the average of the 2 best (here: the only 2) with merge_ckpt's rules, under its default tag
    from models.averaging import average_states
    assert os.path.isfile(checkpoint.net_path(folder, "avg_3_4", "G"))
    merged = checkpoint.read_net(folder, "avg_3_4", "G")
    want, _ = average_states([checkpoint.read_net(folder, t, "G") for t in ("3", "4")])
    assert list(merged) == list(want)
    for key in want:
        np.testing.assert_array_equal(merged[key], want[key], err_msg=key)

    # the reference statistics are cached under CKPT_DIR/fid_stats; the scratch images are gone
    cached = os.listdir(os.path.join(folder, "fid_stats"))
    assert len(cached) == 1 and cached[0].startswith("fid_stats_") and cached[0].endswith(".npz")
    assert f"computed, cached in {os.path.join(folder, 'fid_stats', cached[0])}" in out
    assert not os.path.exists(os.path.join(folder, "fid_eval"))


def test_fid_rerun_reuses_stored_fids_and_the_stored_average(experiment, fid_weights_file, ranking, monkeypatch):
    from util import fid

    def no_generation(*args, **kwargs):
        raise AssertionError("a stored FID was computed again")

    monkeypatch.setattr(selection, "generate_and_score", no_generation)
    code, out = call(fid.main, fid_args(experiment, fid_weights_file, "2-4", "--average_best", "2"))
    assert code == 0
    for tag in ("3", "4", "avg_3_4"):
        assert f"{tag:<16} FID" in out and "(stored in" in out.split(f"{tag:<16} FID")[1].splitlines()[0], tag
    assert "cached in" in out and "computed" not in out  # reference statistics from the cache
    # the average of the same unchanged checkpoints is not rewritten (that would invalidate its FID)
    avg = checkpoint.net_path(experiment["folder"], "avg_3_4", "G")
    assert selection.file_signature(avg) == ranking["avg_signature"]
    lines, record = read_ranking(experiment["folder"])
    assert lines == ranking["csv"] and record["ranking"] == ranking["json"]["ranking"]

    # a changed checkpoint file is scored again (and then its average is made again)
    os.utime(checkpoint.net_path(experiment["folder"], "4", "G"))
    with pytest.raises(AssertionError, match="computed again"):
        call(fid.main, fid_args(experiment, fid_weights_file, "4"))
    # --recompute ignores what is stored
    os.utime(checkpoint.net_path(experiment["folder"], "4", "G"), ns=(1, 1))
    scored = []
    monkeypatch.setattr(selection, "generate_and_score", lambda nets, opt, *a, **k: scored.append(opt.which_epoch)
                        or FrechetDistance(1.0, "sqrtm"))
    call(fid.main, fid_args(experiment, fid_weights_file, "3,4", "--recompute"))
    assert scored == ["3", "4"]


def test_fid_with_name_and_checkpoints_dir(experiment, fid_weights_file, ranking, monkeypatch):
    from util import fid
    monkeypatch.setattr(selection, "generate_and_score", lambda *a, **k: pytest.fail("regenerated"))
    # the FIDs stored for 3 and 4 (by the ranking, or the stand-ins of the --recompute above) are found
    # in NAME's folder under CHECKPOINTS_DIR
    stored = [r for r in read_ranking(experiment["folder"])[1]["results"] if r["tag"] in ("3", "4")]
    assert len(stored) == 2
    code, out = call(fid.main, [experiment["train_imgs"], experiment["labels"], "4,3", "--name", NAME,
                                "--checkpoints_dir", experiment["checkpoints_dir"],
                                "--inception_weights", fid_weights_file, *FID_FLAGS])
    assert code == 0
    ranking_json = os.path.join(experiment["folder"], "fid_ranking.json")
    assert out.count(f"(stored in {ranking_json})") == 2
    lines, record = read_ranking(experiment["folder"])
    assert "\n".join(lines) + "\n" == ranking_csv(rank(stored))
    assert record["ranking"] == [r["tag"] for r in rank(stored)]
    with pytest.raises(OptionError, match="only the tags"):
        fid.main([experiment["train_imgs"], experiment["labels"], experiment["folder"], "3", "--name", NAME])
    with pytest.raises(OptionError, match="CKPT_DIR and the tags"):
        fid.main([experiment["train_imgs"], experiment["labels"], "3,4"])
    with pytest.raises(OptionError, match="K >= 2"):
        fid.main(fid_args(experiment, fid_weights_file, "3,4", "--average_best", "1"))


def test_fid_script_errors_exit_2(experiment, fid_weights_file, tmp_path):
    r = run_script(FID_SCRIPT, *fid_args(experiment, fid_weights_file, "7-9"), timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    message = " ".join(r.stderr.split())
    assert "none of the tags 7-9 has a checkpoint" in message and "available: 3, 4" in message
    assert "no checkpoint for 3 of 3 tags, skipped: 7, 8, 9" in r.stdout

    from util.core.download import FID_WEIGHTS_URL
    missing = str(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    r = run_script(FID_SCRIPT, *fid_args(experiment, missing, "3"), timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    message = " ".join(r.stderr.split())
    assert f"{missing}: FID Inception weights not found" in message
    assert FID_WEIGHTS_URL in message and "--inception_weights" in message


# -- test.py: several seeds, the best kept -----------------------------------------------------------

def selection_args(experiment, output, *extra, epoch="3"):
    return ["--input_path", experiment["labels"], "--output_path", output, "--name", NAME,
            "--checkpoints_dir", experiment["checkpoints_dir"], "--which_epoch", epoch, "--nThreads", "0",
            *FID_FLAGS, *extra]


@pytest.fixture(scope="module")
def selection_run(experiment, fid_weights_file, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("best") / "out")
    code, out = call(test_script.main, selection_args(experiment, output, "--n_runs", "2", "--inception_weights",
                                                 fid_weights_file, "--img_path", experiment["train_imgs"]))
    return {"code": code, "out": out, "output": output,
            "report_path": os.path.join(experiment["folder"], "test_report_3.json")}


def test_multi_seed_run_keeps_the_best_run(experiment, selection_run, ranking, tmp_path):
    assert selection_run["code"] == 0
    with open(selection_run["report_path"]) as f:
        report = json.load(f)
    runs = report["runs"]
    assert [r["seed"] for r in runs] == run_seeds(0, 2) and [r["run"] for r in runs] == [0, 1]
    assert all(math.isfinite(r["fid"]) and r["fid"] > 0 for r in runs)
    assert runs[0]["fid"] != runs[1]["fid"]  # the seed changes the images (seg noise)
    assert report["best"] == min(runs, key=lambda r: r["fid"])
    assert report["finished"] is True and report["which_epoch"] == "3" and report["reference_count"] == 12
    assert report["reference"] == os.path.abspath(experiment["train_imgs"])
    assert report["output_path"] == os.path.abspath(selection_run["output"])
    assert f"kept run {report['best']['run'] + 1} (seed {report['best']['seed']}" in selection_run["out"]

    # one image per label map, exactly test_phase.py's images with the best run's seed
    kept = folder_bytes(selection_run["output"])
    assert sorted(kept) == ["test_00000.jpg", "test_00001.jpg", "test_00002.jpg"]
    other = runs[1 - report["best"]["run"]]["seed"]
    assert kept == phase_images(experiment, str(tmp_path / "best_seed"), report["best"]["seed"])
    other_images = phase_images(experiment, str(tmp_path / "other_seed"), other)
    assert all(kept[name] != other_images[name] for name in kept)
    parent = os.path.dirname(selection_run["output"])
    assert sorted(os.listdir(parent)) == ["out"]  # no .run_tmp / .best_tmp left

    # run 1 uses --seed itself: the FID util/fid.py measured for checkpoint 3 with --seed 0 (the same images,
    # the same reference)
    assert ranking["json"]["setting"]["seed"] == 0
    first_ranking = {r["tag"]: r["fid"] for r in ranking["json"]["results"]}
    assert runs[0]["fid"] == pytest.approx(first_ranking["3"], rel=1e-9)


def test_default_reference_is_the_training_photos_of_opt_json(experiment, fid_weights_file, selection_run,
                                                               tmp_path):
    report_path = str(tmp_path / "report.json")
    code, out = call(test_script.main, selection_args(experiment, str(tmp_path / "out"), "--n_runs", "1",
                                                 "--inception_weights", fid_weights_file, "--report", report_path))
    assert code == 0
    with open(report_path) as f:
        report = json.load(f)
    assert report["reference"] == os.path.abspath(experiment["train_imgs"])  # opt.json input_path + /imgs
    assert "cached in" in out and "computed" not in out  # the statistics the --img_path run cached
    with open(selection_run["report_path"]) as f:
        first = json.load(f)["runs"][0]
    # seed 0: the images and the FID of the first run of the --img_path run
    assert [r["seed"] for r in report["runs"]] == [0] and report["best"]["seed"] == 0
    assert report["runs"][0]["fid"] == pytest.approx(first["fid"], rel=1e-9)


def copy_experiment(experiment, root, **saved_changes):
    """A copy of the experiment's opt.json (no checkpoints) with some saved options changed or removed."""
    folder = os.path.join(root, NAME)
    os.makedirs(folder)
    with open(os.path.join(experiment["folder"], "opt.json")) as f:
        saved = json.load(f)
    for key, value in saved_changes.items():
        if value is None:
            saved.pop(key)
        else:
            saved[key] = value
    with open(os.path.join(folder, "opt.json"), "w") as f:
        json.dump(saved, f)
    return dict(experiment, checkpoints_dir=root, folder=folder)


def test_missing_default_reference_is_a_clear_error(experiment, fid_weights_file, tmp_path):
    moved = copy_experiment(experiment, str(tmp_path / "moved"), input_path=str(tmp_path / "gone" / "train"))
    with pytest.raises(DatasetError) as err:
        test_script.main(selection_args(moved, str(tmp_path / "out"), "--inception_weights", fid_weights_file))
    message = str(err.value)
    assert os.path.join(str(tmp_path / "gone" / "train"), "imgs") in message
    assert "opt.json" in message and "--img_path" in message

    unnamed = copy_experiment(experiment, str(tmp_path / "unnamed"), input_path=None)
    with pytest.raises(DatasetError, match="does not name the training data.*--img_path"):
        test_script.main(selection_args(unnamed, str(tmp_path / "out"), "--inception_weights", fid_weights_file))
    assert not os.path.exists(tmp_path / "out")


def test_without_weights_a_single_run_like_test_phase(experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default weights path (pretrained/...) is relative: nothing there
    from options.train_options import DEFAULT_INCEPTION_WEIGHTS
    assert not os.path.exists(DEFAULT_INCEPTION_WEIGHTS)
    output = str(tmp_path / "out")
    code, out = call(test_script.main, selection_args(experiment, output, "--seed", "11", epoch="4"))
    assert code == 0
    assert "FID seed selection is off" in out and "--inception_weights" in out
    assert DEFAULT_INCEPTION_WEIGHTS in out and "single run with --seed 11" in out
    images = folder_bytes(output)
    assert len(images) == 3
    assert images == phase_images(experiment, str(tmp_path / "phase"), 11, tag="4")
    assert not os.path.exists(os.path.join(experiment["folder"], "test_report_4.json"))


def test_without_weights_as_a_user_runs_it(experiment, tmp_path):
    """Subprocess, user environment: the fallback must not import Jittor before choosing the device."""
    output = tmp_path / "out"
    r = run_script(os.path.join(ROOT, "test.py"), *selection_args(experiment, str(output), epoch="4"),
                   cwd=str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "FID seed selection is off" in r.stdout and len(os.listdir(output)) == 3


def test_explicit_missing_weights_exit_2(experiment, tmp_path):
    missing = str(tmp_path / "absent.pth")
    r = run_script("test.py", *selection_args(experiment, str(tmp_path / "out"), "--inception_weights", missing),
                   timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert f"{missing}: FID Inception weights not found" in " ".join(r.stderr.split())
    assert not os.path.exists(tmp_path / "out")  # nothing generated
    with pytest.raises(WeightsFileError):
        test_script.main(selection_args(experiment, str(tmp_path / "out"), "--inception_weights", missing))


def test_test_py_refuses_a_missing_checkpoint(experiment, fid_weights_file, tmp_path):
    with pytest.raises(CheckpointError, match="available: 3, 4"):
        test_script.main(selection_args(experiment, str(tmp_path / "out"), "--inception_weights", fid_weights_file,
                                   "--img_path", experiment["train_imgs"], epoch="12"))
    assert not os.path.exists(tmp_path / "out")
