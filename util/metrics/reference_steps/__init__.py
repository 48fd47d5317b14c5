"""Standalone driver scripts that run a reference implementation's own training step, for the side-by-side
benchmark (``python -m util.bench --compare spade|apf``).

They are not modules of this project: ``util/bench.py`` executes each of them in a subprocess, with the
reference checkout as the working directory and first on ``sys.path`` (its packages ``models``, ``options``,
``util``, ``data`` are the reference's, not this project's) and with another interpreter where the reference
needs one (PyTorch for NVlabs/SPADE). They import only the reference's code, NumPy and PyTorch or Jittor,
never this project, and are run as::

    cd REFERENCE_CHECKOUT && PYTHON -c 'import runpy, sys; runpy.run_path(sys.argv[1])["main"](sys.argv[2:])' \\
        DRIVER.py SETTINGS_JSON

``SETTINGS_JSON`` holds the reference's own command-line options, the image size, batch, label count, warm-up
iterations and device. A driver builds the reference's trainer and random label maps / photos, runs the warm-up
iterations (untimed), then answers a line protocol on stdin / stdout:

* it prints ``ready {JSON}`` (versions, device, parameter counts of the networks each optimiser updates);
* for each line ``run N`` it runs N training iterations (one G step and one D step each), waits for the device,
  and prints ``seconds S`` (the wall time of the N iterations);
* ``quit`` (or the end of stdin) ends it.

The protocol loop, the private stdout and the import check live once, in ``protocol.py``, which each driver
loads by path (``runpy.run_path``): the drivers cannot import this project.

Everything else a reference prints goes to stderr: the driver moves file descriptor 1 to 2 and keeps the
protocol on a private copy of the original stdout.
"""
