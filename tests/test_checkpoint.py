"""The checkpoint writer/reader (util.core.checkpoint): round trip, atomic writes, mixed or damaged
file sets refused with a CheckpointError, tag listing, and compatibility with Jittor's .pkl."""

import os

import numpy as np
import pytest

import conftest  # noqa: F401  (sets up CPU Jittor before anything imports it)
from util.core import checkpoint
from util.core.checkpoint import (available_tags, net_path, read_file, read_net, read_state, read_training_checkpoint,
                              state_path, write_checkpoint)
from util.core.errors import CheckpointError, UserError


def make_nets(seed):
    rng = np.random.RandomState(seed)
    return {
        "G": {"conv.weight": rng.randn(4, 3, 3, 3).astype(np.float32),
              "conv.bias": rng.randn(4).astype(np.float32),
              "norm.running_mean": rng.randn(4).astype(np.float64),
              "step": np.array(seed * 7 + 1, np.int64),
              "half": rng.randn(2, 2).astype(np.float16)},
        "D": {"fc.weight": rng.randn(2, 5).astype(np.float32),
              "mask": (rng.rand(3, 3) > 0.5)},
    }


def make_state(seed):
    rng = np.random.RandomState(100 + seed)
    return {"next_epoch": seed + 2, "next_iter": 0, "total_iters": 10 * seed,
            "optimizers": {"G": {"m": [rng.randn(4).astype(np.float32)], "lr": 1e-4}},
            "rng": {"numpy": np.random.RandomState(seed).get_state()}, "seed": seed}


def file_bytes(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


def assert_state_dicts_equal(got, want):
    assert set(got) == set(want)
    for key in want:
        assert isinstance(got[key], np.ndarray), key
        assert got[key].dtype == np.asarray(want[key]).dtype, key
        assert got[key].shape == np.asarray(want[key]).shape, key
        np.testing.assert_array_equal(got[key], want[key])


def test_round_trip_keeps_values_and_dtypes(tmp_path):
    nets, state = make_nets(1), make_state(1)
    write_checkpoint(str(tmp_path), "latest", nets, state)
    assert sorted(os.listdir(tmp_path)) == ["latest_net_D.pkl", "latest_net_G.pkl", "latest_state.pkl"]
    for name in nets:
        assert_state_dicts_equal(read_net(str(tmp_path), "latest", name), nets[name])
    got = read_state(str(tmp_path), "latest", list(nets))
    for key in ("next_epoch", "next_iter", "total_iters", "seed"):
        assert got[key] == state[key]
    np.testing.assert_array_equal(got["optimizers"]["G"]["m"][0], state["optimizers"]["G"]["m"][0])
    assert got["optimizers"]["G"]["lr"] == state["optimizers"]["G"]["lr"]
    restored = np.random.RandomState()
    restored.set_state(got["rng"]["numpy"])
    assert restored.randint(1 << 30) == np.random.RandomState(1).randint(1 << 30)
    assert set(got["net_digests"]) == {"G", "D"}


def test_jittor_vars_are_stored_as_numpy(tmp_path):
    import jittor as jt
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_checkpoint(str(tmp_path), "5", {"G": {"w": jt.array(value)}})
    got = read_net(str(tmp_path), "5", "G")
    assert type(got["w"]) is np.ndarray and got["w"].dtype == np.float32
    np.testing.assert_array_equal(got["w"], value)
    assert not os.path.exists(state_path(str(tmp_path), "5"))  # no state given, none written


def test_tags_do_not_interfere(tmp_path):
    write_checkpoint(str(tmp_path), "latest", make_nets(1), make_state(1))
    write_checkpoint(str(tmp_path), "3", make_nets(2), make_state(2))
    assert_state_dicts_equal(read_net(str(tmp_path), "latest", "G"), make_nets(1)["G"])
    assert_state_dicts_equal(read_net(str(tmp_path), "3", "G"), make_nets(2)["G"])
    assert read_state(str(tmp_path), "latest", ["G", "D"])["seed"] == 1
    assert read_state(str(tmp_path), "3", ["G", "D"])["seed"] == 2


# -- atomicity ----------------------------------------------------------------------------------

class Killed(BaseException):
    """Stands in for the process being killed (not an Exception, like KeyboardInterrupt)."""


@pytest.mark.parametrize("where", ["before_temp_file", "inside_temp_write"])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_kill_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch, fail_at, where):
    """A writer interrupted while writing the temporary files (at the first, the second, or the
    state file; before a temp file is opened or after its bytes went to disk but before fsync
    returned) leaves the previous 'latest' byte-identical and readable, and no temp files."""
    folder = str(tmp_path)
    write_checkpoint(folder, "latest", make_nets(1), make_state(1))
    before = file_bytes(folder)
    calls = []

    if where == "before_temp_file":
        real_write_temp = checkpoint._write_temp

        def write_temp(final, data):
            calls.append(final)
            if len(calls) == fail_at:
                raise Killed()
            return real_write_temp(final, data)

        monkeypatch.setattr(checkpoint, "_write_temp", write_temp)
    else:
        real_fsync = os.fsync

        def fsync(fd):
            calls.append(fd)
            if len(calls) == fail_at:
                raise Killed()
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(Killed):
        write_checkpoint(folder, "latest", make_nets(2), make_state(2))
    monkeypatch.undo()
    assert len(calls) == fail_at
    assert file_bytes(folder) == before  # unchanged, and no temp file left behind

    state = read_state(folder, "latest", ["G", "D"])
    assert state["seed"] == 1
    assert_state_dicts_equal(read_net(folder, "latest", "G"), make_nets(1)["G"])

    # the next save works normally
    write_checkpoint(folder, "latest", make_nets(3), make_state(3))
    assert read_state(folder, "latest", ["G", "D"])["seed"] == 3
    assert sorted(os.listdir(folder)) == sorted(before)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    """util.core.files.atomic_write: bytes, text and writer functions land under the final name (a new folder
    is made); a writer that fails half-way leaves the old file byte-identical and no temporary file."""
    from util.core.files import atomic_write

    path = str(tmp_path / "sub" / "report.npz")
    assert atomic_write(path, b"old bytes") == path
    with open(path, "rb") as f:
        assert f.read() == b"old bytes"

    def failing(f):
        f.write(b"half of the new ")
        raise Killed()

    with pytest.raises(Killed):
        atomic_write(path, failing)
    assert sorted(os.listdir(tmp_path / "sub")) == ["report.npz"]
    with open(path, "rb") as f:
        assert f.read() == b"old bytes"

    atomic_write(path, lambda f: np.savez(f, x=np.arange(3)))  # np.savez appends no second .npz
    assert sorted(os.listdir(tmp_path / "sub")) == ["report.npz"]
    with np.load(path) as z:
        assert z["x"].tolist() == [0, 1, 2]
    atomic_write(path, "text, é")
    with open(path, encoding="utf-8") as f:
        assert f.read() == "text, é"


def test_kill_between_renames_falls_back_to_previous_save(tmp_path, monkeypatch):
    """Killed after the first rename: the files on disk come from two saves. That set must be
    refused (never silently loaded as a mixture), naming the odd file."""
    folder = str(tmp_path)
    write_checkpoint(folder, "latest", make_nets(1), make_state(1))
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        if not dst.endswith(".prev"):  # backups of the previous save are made first
            calls.append(dst)
            if len(calls) == 2:
                raise Killed()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        write_checkpoint(folder, "latest", make_nets(2), make_state(2))
    monkeypatch.undo()
    assert calls[-1] != state_path(folder, "latest")  # the state file had not been renamed yet
    with pytest.raises(CheckpointError) as info:
        read_state(folder, "latest", ["G", "D"])
    assert calls[0] in str(info.value) and "different saves" in str(info.value)
    # the complete previous save is still there and is what a resume uses
    state, nets, used_previous = read_training_checkpoint(folder, "latest", ["G", "D"])
    assert used_previous and state["seed"] == 1
    for name in ("G", "D"):
        for key, value in make_nets(1)[name].items():
            np.testing.assert_array_equal(nets[name][key], np.asarray(value))
    # the next complete save replaces both sets cleanly
    write_checkpoint(folder, "latest", make_nets(3), make_state(3))
    state, _, used_previous = read_training_checkpoint(folder, "latest", ["G", "D"])
    assert not used_previous and state["seed"] == 3
    assert not [f for f in os.listdir(folder) if f.endswith(".prev")]


# -- refused file sets --------------------------------------------------------------------------

def test_files_from_different_saves_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_checkpoint(str(a), "latest", make_nets(1), make_state(1))
    write_checkpoint(str(b), "latest", make_nets(2), make_state(2))
    os.replace(net_path(str(b), "latest", "G"), net_path(str(a), "latest", "G"))
    with pytest.raises(CheckpointError) as info:
        read_state(str(a), "latest", ["G", "D"])
    msg = str(info.value)
    assert net_path(str(a), "latest", "G") in msg and state_path(str(a), "latest") in msg
    assert "--which_epoch" in msg
    # only G was swapped: checking D alone still passes
    assert read_state(str(a), "latest", ["D"])["seed"] == 1


def test_same_values_saved_twice_are_not_refused(tmp_path):
    """Digests depend on content only: re-saving identical weights gives a consistent set."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_checkpoint(str(a), "latest", make_nets(1), make_state(1))
    write_checkpoint(str(b), "latest", make_nets(1), make_state(5))
    os.replace(net_path(str(b), "latest", "G"), net_path(str(a), "latest", "G"))
    assert read_state(str(a), "latest", ["G", "D"])["seed"] == 1


def test_missing_network_file_is_refused(tmp_path):
    write_checkpoint(str(tmp_path), "7", make_nets(1), make_state(1))
    os.remove(net_path(str(tmp_path), "7", "D"))
    with pytest.raises(CheckpointError) as info:
        read_state(str(tmp_path), "7", ["G", "D"])
    assert net_path(str(tmp_path), "7", "D") in str(info.value) and "missing" in str(info.value)
    with pytest.raises(CheckpointError) as info:
        read_net(str(tmp_path), "7", "D")
    assert "not found" in str(info.value)
    with pytest.raises(CheckpointError) as info:
        read_state(str(tmp_path), "8", ["G"])
    assert state_path(str(tmp_path), "8") in str(info.value)


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path):
    nets = make_nets(1)
    write_checkpoint(str(tmp_path), "latest", nets, make_state(1))
    path = net_path(str(tmp_path), "latest", "G")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        read_net(str(tmp_path), "latest", "G")
    assert path in str(info.value) and "truncated or corrupt" in str(info.value)
    with pytest.raises(CheckpointError):
        read_state(str(tmp_path), "latest", ["G", "D"])


def test_every_cut_or_flipped_byte_is_refused_or_harmless(tmp_path):
    """Any prefix of a checkpoint file either reads back the exact data (only the trailer was cut)
    or raises CheckpointError, never a pickle/other exception; a flipped body byte is caught."""
    nets = make_nets(4)
    write_checkpoint(str(tmp_path), "1", nets)
    path = net_path(str(tmp_path), "1", "G")
    with open(path, "rb") as f:
        data = f.read()
    cut = str(tmp_path / "cut.pkl")
    refused = 0
    for n in sorted(set(range(0, len(data), 7)) | set(range(len(data) - 40, len(data)))):
        with open(cut, "wb") as f:
            f.write(data[:n])
        try:
            got = read_file(cut)
        except CheckpointError as err:
            assert cut in str(err)
            refused += 1
        else:
            assert n >= len(data) - 28  # only the digest/magic trailer was missing
            assert_state_dicts_equal(got, nets["G"])
    assert refused > 0
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    with open(cut, "wb") as f:
        f.write(bytes(flipped))
    with pytest.raises(CheckpointError) as info:
        read_file(cut)
    assert "checksum" in str(info.value)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "latest_net_G.pkl"
    path.write_text("hello, I am text")
    with pytest.raises(CheckpointError) as info:
        read_net(str(tmp_path), "latest", "G")
    assert str(path) in str(info.value) and "not a readable checkpoint" in str(info.value)
    checkpoint_error = info.value
    assert isinstance(checkpoint_error, UserError)
    path.write_bytes(checkpoint.encode([1, 2, 3]))
    with pytest.raises(CheckpointError) as info:
        read_net(str(tmp_path), "latest", "G")
    assert "expected a state dict" in str(info.value)


# -- tags ---------------------------------------------------------------------------------------

def test_available_tags_sorts_epochs_numerically(tmp_path):
    assert available_tags(str(tmp_path / "none")) == []
    assert available_tags(str(tmp_path)) == []
    for tag in ("100", "latest", "2", "10"):
        (tmp_path / f"{tag}_net_G.pkl").write_bytes(b"")
    (tmp_path / "3_net_D.pkl").write_bytes(b"")                    # no generator: not a tag
    (tmp_path / f"4_net_G.pkl.tmp{os.getpid()}").write_bytes(b"")  # unfinished write
    (tmp_path / "opt.json").write_text("{}")
    assert available_tags(str(tmp_path)) == ["2", "10", "100", "latest"]


# -- Jittor's own format ------------------------------------------------------------------------

def test_files_are_readable_by_jittor_load(tmp_path):
    import jittor as jt
    from jittor import nn

    nets, state = make_nets(2), make_state(2)
    write_checkpoint(str(tmp_path), "latest", nets, state)
    loaded = jt.load(net_path(str(tmp_path), "latest", "G"))
    assert_state_dicts_equal(loaded, nets["G"])
    assert jt.load(state_path(str(tmp_path), "latest"))["total_iters"] == state["total_iters"]

    # a Jittor module's state dict goes through our writer and back into a module via jt.load
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    write_checkpoint(str(tmp_path), "9", {"L": src.state_dict()})
    dst.load_parameters(jt.load(net_path(str(tmp_path), "9", "L")))
    for key, value in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[key].numpy(), value.numpy())

    # and the reverse direction: a file written by jt.save is read by our reader
    jt.save({"w": np.arange(4, dtype=np.float32)}, str(tmp_path / "8_net_G.pkl"))
    np.testing.assert_array_equal(read_net(str(tmp_path), "8", "G")["w"], np.arange(4, dtype=np.float32))
