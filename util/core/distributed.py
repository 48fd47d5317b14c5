"""Data-parallel training over MPI ranks (``mpirun -np K python train.py ...``).

Jittor does the heavy lifting under mpirun: its optimisers average every
gradient over the ranks before the update, its datasets give each rank its
own slice of every global batch, and ``BatchNorm(sync=True)`` (``--norm_G
...syncbatch...``) averages the batch statistics. This module owns what the
training loop adds on top: who this process is, the global batch size
check, identical initial weights on every rank, a noise seed per rank, and
agreement between the ranks on loss values and stop requests. Without
mpirun every function is the single-process identity.

``--batchSize`` is the global batch: each of K ranks trains on batchSize / K
images per iteration, so the learning rate means the same for any K.
The collective operations import Jittor: call them after ``util.core.device.setup``.
"""

import os
import shutil

from util.core.errors import OptionError

# Jittor recognises an MPI launch by OpenMPI's environment (jittor.compile_extern.inside_mpi); so does
# this module, which lets the scripts ask before Jittor is imported.
SIZE_VARIABLE, RANK_VARIABLE = "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"


def world_size():
    """Number of ranks (1 without mpirun)."""
    return int(os.environ.get(SIZE_VARIABLE, "1"))


def rank():
    """This process's rank (0 without mpirun)."""
    return int(os.environ.get(RANK_VARIABLE, "0"))


def is_main():
    """True in the one process that writes files and prints progress (rank 0)."""
    return rank() == 0


def say(*args, **kwargs):
    """print() on rank 0 only."""
    if is_main():
        print(*args, **kwargs)


def check_launch():
    """Under mpirun, Jittor builds its MPI operators with mpicc at import: fail clearly when it cannot."""
    if world_size() > 1 and os.environ.get("use_mpi", "1") == "1" and \
            not (os.environ.get("mpicc_path") or shutil.which("mpicc")):
        raise OptionError("running under mpirun, but mpicc was not found: Jittor needs the OpenMPI development "
                          "files to build its MPI operators (Debian/Ubuntu: apt-get install openmpi-bin "
                          "libopenmpi-dev; or set mpicc_path). See docs/training.md, 'Multi-GPU training (MPI)'.")


def check_batch_size(batch_size, ranks):
    """The global ``batch_size`` must split evenly over ``ranks``."""
    if ranks > 1 and batch_size % ranks:
        lower, upper = batch_size - batch_size % ranks, batch_size - batch_size % ranks + ranks
        hint = f"{lower} or {upper}" if lower else str(upper)
        raise OptionError(f"--batchSize {batch_size} is the global batch size, split evenly over the {ranks} MPI "
                          f"ranks ({ranks} x batchSize/{ranks}): use a multiple of {ranks}, e.g. {hint}.")


def seed_parts(this_rank, ranks):
    """Extra parts of the per-iteration noise seed: none in one process (so single-process runs keep their
    seeds), the rank under MPI (so ranks draw different noise for their different samples)."""
    return (this_rank,) if ranks > 1 else ()


def broadcast_networks(nets):
    """Copy every parameter and buffer (norm statistics, power-iteration vectors) of ``nets``
    ({name: Module}) from rank 0 to all ranks."""
    if world_size() == 1:
        return
    import jittor as jt
    for net in nets.values():
        for var in net.parameters():
            var.update(var.mpi_broadcast(0))
    jt.sync_all()


def mean_values(terms):
    """{name: float} of scalar Jittor ``terms``, averaged over the ranks (one all-reduce for all)."""
    if world_size() == 1 or not terms:
        return {name: float(value.float32().item()) for name, value in terms.items()}
    import jittor as jt
    stacked = jt.concat([value.reshape(1).float32() for value in terms.values()])
    values = stacked.mpi_all_reduce("mean").numpy()
    return {name: float(v) for name, v in zip(terms, values)}


def any_rank(flag):
    """True on every rank when ``flag`` is true on at least one of them."""
    if world_size() == 1:
        return bool(flag)
    import jittor as jt
    return float(jt.array([1.0 if flag else 0.0]).mpi_all_reduce("add").item()) > 0


def require_single_process(script):
    """Scripts other than training run in one process: refuse to run under mpirun."""
    if world_size() > 1:
        raise OptionError(f"{script} runs in one process; only training is data-parallel under mpirun. Run it "
                          f"without mpirun (choose the GPU with CUDA_VISIBLE_DEVICES).")
