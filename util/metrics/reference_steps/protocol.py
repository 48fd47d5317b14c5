"""What both reference drivers share: the protocol stream, importing from the checkout only, and the
``ready`` / ``run N`` / ``quit`` loop. Standalone like the drivers (standard library only); a driver loads it
by path (``runpy.run_path``), since it runs with the reference checkout, not this project, on ``sys.path``."""

import importlib
import json
import os
import sys
import tempfile
import time


def protocol_stream():
    """A private copy of stdout for the protocol; file descriptor 1 (print, C/C++ libraries) then goes to
    stderr."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return stream


def start(argv):
    """A driver's start: (its settings, the JSON of ``argv[0]``; the protocol stream; the checkout, made the first
    place imports look in)."""
    settings = json.loads(argv[0])
    proto = protocol_stream()
    repo = os.path.realpath(settings["repo"])
    sys.path.insert(0, repo)
    return settings, proto, repo


def reference(name, repo):
    """The reference's module ``name`` (the checkout is first on sys.path: its packages shadow any others);
    refuses a module found outside the checkout."""
    module = importlib.import_module(name)
    path = os.path.realpath(getattr(module, "__file__", "") or "")
    if not path.startswith(os.path.realpath(repo) + os.sep):
        raise ImportError(f"{name} was imported from {path}, not from the checkout {repo}")
    return module


def build_trainer(repo, script, options, prefix):
    """The reference's ``Pix2PixTrainer`` built from its own ``TrainOptions`` parsing ``options`` as the command
    line of ``script``, with checkpoints in a fresh temporary folder."""
    train_options = reference("options.train_options", repo)
    trainers = reference("trainers.pix2pix_trainer", repo)
    checkpoints = tempfile.mkdtemp(prefix=prefix)
    saved_argv, sys.argv = sys.argv, [script, *options, "--checkpoints_dir", checkpoints]
    try:
        opt = train_options.TrainOptions().parse()
    finally:
        sys.argv = saved_argv
    return trainers.Pix2PixTrainer(opt)


def serve(step, finish, warmup, describe, proto):
    """Run ``warmup`` iterations (``step(i)``), then ``finish()`` (wait for the device), print ``ready
    {describe()}``, then answer ``run N`` lines with ``seconds S`` (N iterations and ``finish()``) until
    ``quit`` or the end of stdin."""
    done = 0
    for _ in range(warmup):
        step(done)
        done += 1
    finish()
    print("ready " + json.dumps(describe()), file=proto, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] != "run" or len(words) != 2:
            raise ValueError(f"unknown command {line.strip()!r} (expected 'run N' or 'quit')")
        start = time.perf_counter()
        for _ in range(int(words[1])):
            step(done)
            done += 1
        finish()
        print(f"seconds {time.perf_counter() - start:.6f}", file=proto, flush=True)
    return 0
