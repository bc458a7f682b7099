"""``minigrad.precompile``: fill the kernel cache ahead of time.

A process loads each CPU kernel it needs at its first use: a few ms from a warm cache, 0.1 to
0.5 s to compile on a cold one.  Run this once (or ``python -m minigrad precompile``) after
installing, and the first steps of every later process find their kernels compiled.
"""

from __future__ import annotations

import numpy as np

from . import cpu, rules_extra  # noqa: F401  (rules_extra: its rules are built in too)
from .kernels import ready
from .rules import NormClip, builtin_rules
from .step import fused_passes

__all__ = ["precompile"]


def precompile(*optimisers, dtypes=(np.float32, np.float64)) -> int:
    """Compile (or load, checking the cache) the CPU kernels that ``optimisers`` use, for each
    of ``dtypes``, in both the serial and the multi-threaded variant, and for a ClipNorm the
    norm's (:func:`minigrad.optimise.cpu.block_sums`), so that later processes start from a
    warm cache.  With no optimiser: every built-in rule on its own, and the norm's.  Returns
    how many kernels are ready.

    >>> import minigrad as mg
    >>> mg.precompile(mg.Optimiser(mg.WeightDecay(1e-4), mg.Adam()), dtypes=("float32",))
    2
    """
    if optimisers:
        passes = {tuple(map(type, p)) for opt in optimisers for p in fused_passes(opt)}
    else:
        passes = {(rule,) for rule in builtin_rules()}
    count = 0
    for rules in sorted(passes, key=repr):
        for dtype in dtypes:
            for parallel in (False, True):
                ready(rules, True, parallel, dtype)
                count += 1
    if not optimisers or any(issubclass(rule, NormClip) for rules in passes for rule in rules):
        for dtype in dtypes:
            for parallel in (False, True):
                cpu.block_kernel(dtype, parallel)
                count += 1
    return count
