"""The optimiser playground: every Flux rule on Rosenbrock and Beale, in one picture.

Run it from the repository root (matplotlib needed for the picture: the ``examples`` extra)::

    python examples/playground.py                          # writes playground.png
    python examples/playground.py --out docs/playground.png
    python examples/playground.py --problems beale --rules Adam,Momentum,Descent

Each of the 14 rules starts from the same point with its own tuned learning rate (see
``minigrad.playground``), takes the problem's step budget (1000 steps) and leaves its path
over the contours (left) and its loss per step on a log scale (right).  The tables printed
before the picture rank the rules by final loss and say when each settled below 1e-3.
``python -m minigrad compare`` does the same for one problem from the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import minigrad as mg
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import minigrad as mg

from minigrad import playground


def main(argv=None) -> dict:
    """Run the playground; return ``{problem: [Result, ...]}`` (and save the picture)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="playground.png", help="picture to write (PNG)")
    parser.add_argument("--problems", default="rosenbrock,beale",
                        help=f"comma-separated, from {', '.join(playground.PROBLEMS)}")
    parser.add_argument("--rules", default="all",
                        help=f"comma-separated rules, or 'all' ({', '.join(playground.RULES)})")
    parser.add_argument("--steps", type=int, help="steps per run (default: the problem's)")
    parser.add_argument("--no-plot", action="store_true", help="print the tables only")
    args = parser.parse_args(argv)
    rules = None if args.rules == "all" else [r.strip() for r in args.rules.split(",")]
    runs = {}
    for name in args.problems.split(","):
        if name not in playground.PROBLEMS:
            parser.error(f"unknown problem {name!r}; choose from {', '.join(playground.PROBLEMS)}")
        problem = playground.PROBLEMS[name]
        runs[name] = playground.compare(problem, rules, args.steps)
        print(f"{name}: start {problem.start}, minimum {problem.minimum}, "
              f"{args.steps or problem.steps} steps")
        print(playground.table(runs[name]))
        print()
    if not args.no_plot:
        try:
            playground.plot(runs, args.out, title=f"minigrad {mg.__version__}: every optimiser "
                            "rule, each at its tuned learning rate")
        except ModuleNotFoundError as err:      # no matplotlib: say so, as `compare --plot` does
            print(f"playground.py: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"picture saved to {args.out}")
    return runs


if __name__ == "__main__":
    main()
