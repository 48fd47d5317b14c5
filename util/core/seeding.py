"""Deterministic seeds derived from (run seed, epoch, iteration)."""

import random

import numpy as np


def derive_seed(*parts):
    """A 31-bit seed that depends on all ``parts`` (non-negative ints)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed):
    """Seed Python, NumPy and Jittor (imported lazily: call util.core.device.setup first) with ``seed`` as it is,
    in every MPI rank too (per-rank seeds are the caller's choice: util.core.distributed.seed_parts)."""
    import jittor as jt
    random.seed(seed)
    np.random.seed(seed)
    jt.set_global_seed(seed, different_seed_for_mpi=False)


def rng_state():
    return {"python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
