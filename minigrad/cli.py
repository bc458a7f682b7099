"""The command line: ``python -m minigrad`` ``demo | compare | bench | precompile``.

* ``demo``: the main training job (:mod:`minigrad.demo`): a small CNN (or, with
  ``--model mlp``, an MLP) learns scikit-learn's handwritten digits with a progress line, the
  held-out accuracy at the end and optionally the loss and accuracy curves as a picture.
* ``compare``: optimiser rules side by side on one 2-D test problem (:mod:`minigrad.playground`):
  a table (final loss, final point, distance to the minimum, when the loss settled) and, with
  ``--plot``, the picture of their paths and loss curves.
* ``bench``: each rule's update kernel against a kernel with the same memory traffic and no
  maths, measured in the same run (:mod:`minigrad.bench`): how close the rule gets to what
  the machine's memory allows.
* ``precompile``: fill the kernel cache ahead of time (:func:`minigrad.precompile`), so that
  later processes load every rule's kernel instead of compiling it.

``--help`` on each.  Nothing here is imported by ``import minigrad``.

>>> from minigrad.cli import main
>>> main(["compare", "--problem", "beale", "--rules", "Nesterov,Descent"])
beale: start (1.0, 1.5), minimum (3.0, 0.5), 1000 steps of each rule
rule       rate    final loss   final (x, y)     to minimum   below 0.001 from
Nesterov   0.005   1.1e-16      (3.000, 0.500)   2.7e-08      step 151
Descent    0.02    1.23e-07     (2.999, 0.500)   0.000902     step 282
0
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

__all__ = ["build_parser", "main"]

_BENCH_DEFAULT = "Descent,Momentum,Adam"


def _rules(text: str, known) -> list[str]:
    """``"all"`` or comma-separated names of ``known``, as a list (an argparse type)."""
    names = list(known) if text == "all" else [r.strip() for r in text.split(",") if r.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown rule(s) {', '.join(unknown)}; choose from {', '.join(known)} or 'all'")
    return names


def _demo(args) -> int:
    from .demo import train
    try:
        train(args.epochs, args.seed, args.plot, args.quiet, args.model, args.distributed)
    except ModuleNotFoundError as err:
        print(f"minigrad demo: {err}", file=sys.stderr)
        return 1
    return 0


def _compare(args) -> int:
    from . import playground as pg
    problem = pg.PROBLEMS[args.problem]
    results = pg.compare(problem, args.rules, args.steps, args.lr)
    steps = args.steps or problem.steps
    rates = "" if args.lr is None else f" at learning rate {args.lr:g}"
    print(f"{problem.name}: start {problem.start}, minimum {problem.minimum}, {steps} steps of "
          f"each rule{rates}")
    print(pg.table(results, tol=args.tol))
    if "AdaDelta" in args.rules:
        print("(AdaDelta has no learning rate: its 'rate' is its ϵ, which sets the size of its "
              "first steps)")
    if args.plot:
        try:
            pg.plot({problem.name: results}, args.plot)
        except ModuleNotFoundError as err:
            print(f"minigrad compare: {err}", file=sys.stderr)
            return 1
        print(f"picture saved to {args.plot}")
    return 0


def _bench(args) -> int:
    import numba
    import numpy as np

    from . import __version__
    from . import bench as b
    from . import optimise as o

    if args.threads:
        numba.set_num_threads(args.threads)
    dtype = np.dtype(args.dtype)
    n = int(float(args.size))
    makers = {name: getattr(o, name) for name in args.rules}   # Flux's defaults
    print(f"machine: {b.cpu_model()}; {b.usable_cores()} usable cores; load "
          f"{b.load_average():.2f}; python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__} ({numba.get_num_threads()} threads); minigrad "
          f"{__version__}")
    if b.load_average() > 0.5 * b.usable_cores():
        print("warning: other work is running on this machine; timings will be noisy")
    print(f"one update_(opt, p, g) on {n:,} {dtype.name} parameters against a kernel with the "
          f"same memory traffic and no maths (bound: s = serial, p = prange on all threads, the "
          f"faster shown); median of up to {args.rounds} interleaved rounds x {args.calls} "
          "calls; GB/s count the rule's traffic")
    rows = b.throughput(makers, n, rounds=args.rounds, calls=args.calls, dtype=dtype)
    print(b.format_rows(rows))
    print("minigrad/bound = 1.00: as fast as the memory traffic allows; (paired) is the median "
          "of the per-round ratios, steadier on a busy machine")
    return 0


def _precompile(args) -> int:
    import time

    from .optimise import precompile
    from .optimise.kernels import cache_dir

    start = time.perf_counter()
    count = precompile(dtypes=args.dtypes.split(","))
    print(f"{count} kernels ready in {cache_dir()} ({time.perf_counter() - start:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m minigrad`` with its four subcommands.

    >>> from minigrad.cli import build_parser
    >>> build_parser().parse_args(["bench", "--size", "1e5"]).size
    '1e5'
    """
    from .playground import PROBLEMS, RULES

    parser = argparse.ArgumentParser(
        prog="minigrad" if os.path.basename(sys.argv[0]) == "minigrad" else "python -m minigrad",
        description="minigrad's command line: the main training job, optimiser rules side by "
                    "side, and kernel throughput against the memory bound.",
        epilog="Run '%(prog)s COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from .demo import add_arguments
    demo = sub.add_parser(
        "demo", help="train a small CNN on scikit-learn's handwritten digits (the main job)",
        description="The main job: a small CNN (two Conv-BatchNorm-MaxPool blocks, Dropout and "
                    "a Dense layer; --model mlp for Chain(Dense(64, 64, relu), Dense(64, 10))) "
                    "learns the 8x8 digits bundled with scikit-learn (25% held out) with "
                    "train_ and Adam(3e-3), showing a progress line, each epoch's loss and "
                    "accuracies, and the held-out accuracy at the end.  Needs scikit-learn; "
                    "--plot needs matplotlib.")
    add_arguments(demo)
    demo.set_defaults(run=_demo)

    compare = sub.add_parser(
        "compare", help="optimiser rules side by side on a 2-D test problem: a table and a plot",
        description="Run optimiser rules from the same start on a 2-D test function "
                    "(Rosenbrock or Beale) and print a table of how each did: final loss, final "
                    "point, distance to the minimum and the step from which the loss stayed "
                    "below --tol.  Each rule uses its tuned learning rate unless --lr is given.  "
                    "--plot saves the paths over the contours and the loss curves (needs "
                    "matplotlib).")
    compare.add_argument("--problem", choices=list(PROBLEMS), default="rosenbrock",
                         help="the test function (default rosenbrock)")
    compare.add_argument("--rules", default="all", type=lambda text: _rules(text, RULES),
                         help=f"comma-separated rules or 'all' (default): {', '.join(RULES)}")
    compare.add_argument("--steps", type=int, help="steps per rule (default: 1000)")
    compare.add_argument("--lr", type=float,
                         help="one learning rate for every rule (default: each rule's tuned rate)")
    compare.add_argument("--tol", type=float, default=1e-3,
                         help="loss level for the 'below ... from' column (default 1e-3)")
    compare.add_argument("--plot", metavar="PNG", help="save the picture (needs matplotlib)")
    compare.set_defaults(run=_compare)

    bench = sub.add_parser(
        "bench", help="update-kernel throughput against the memory-traffic bound, same run",
        description="Time one update_(opt, p, g) on a large array for each rule against a "
                    "Numba kernel with the rule's memory traffic and no maths (loads x, g and "
                    "each state array; stores x and each state array), serial and parallel, in "
                    "interleaved rounds of the same process.  The ratio minigrad/bound says how "
                    "close the rule comes to what this machine's memory allows.")
    bench.add_argument("--size", default="1e7",
                       help="parameters in the array (default 1e7: beyond the caches)")
    bench.add_argument("--rules", default=_BENCH_DEFAULT, type=lambda text: _rules(text, RULES),
                       help=f"comma-separated rules or 'all' (default {_BENCH_DEFAULT})")
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="element type (default float32)")
    bench.add_argument("--rounds", type=int, default=9,
                       help="interleaved rounds, at most (default 9; at least 3 run)")
    bench.add_argument("--calls", type=int, default=1, help="calls per round (default 1)")
    bench.add_argument("--threads", type=int,
                       help="Numba threads (default: all usable cores)")
    bench.set_defaults(run=_bench)

    pre = sub.add_parser(
        "precompile", help="fill the kernel cache ahead of time",
        description="Compile (or load, checking the cache) every built-in rule's CPU kernel, "
                    "serial and multi-threaded, so that later processes start from a warm "
                    "cache.  Chains (Optimiser(...)) have kernels of their own: "
                    "minigrad.precompile(opt) compiles those.")
    pre.add_argument("--dtypes", default="float32,float64",
                     help="comma-separated element types (default float32,float64)")
    pre.set_defaults(run=_precompile)
    return parser


def main(argv=None) -> int:
    """Run ``python -m minigrad`` with ``argv`` (default ``sys.argv[1:]``); the exit status.

    >>> from minigrad.cli import main
    >>> main(["compare", "--rules", "Adam,Nope"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    args = build_parser().parse_args(argv)
    return args.run(args)
