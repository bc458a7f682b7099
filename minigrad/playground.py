"""The optimiser playground: every rule on classic 2-D test functions, side by side.

A point ``p = mg.param([x, y])`` starts at a fixed place on a test function's surface and one
optimiser moves it with ``mg.update_(opt, p, g)``, the gradient ``g`` coming from
``mg.withgradient`` on the function written with minigrad's ops: the same loop as any training
job, small enough to draw.  :func:`run` records the path and the loss at every step,
:func:`compare` runs several rules on one problem, :func:`table` prints the results and
:func:`plot` draws the trajectories over the function's contours next to the loss curves.

The problems (:data:`PROBLEMS`):

* ``rosenbrock``: ``(1 − x)² + 100·(y − x²)²``, minimum 0 at ``(1, 1)`` at the end of a long,
  curved, flat-bottomed valley; the start ``(−1.2, 1)`` is the textbook one.
* ``beale``: ``(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²``, minimum 0 at
  ``(3, 0.5)``; flat plateaus and walls thousands of times steeper, so gradient sizes vary
  enormously along the way.

Each problem carries, per rule, the learning rate that the playground's figure uses
(:attr:`Problem.rates`), tuned once per rule by :func:`tune` (on the log grid :data:`GRID`,
the rate whose loss settles below 1e-3 soonest, else the lowest final loss): a picture of each
rule at its best, not of one rate that suits some rules and stalls or blows up others.
AdaDelta has no learning rate; its ``ϵ`` sets the size of its first steps, so that is what
its entry sets.

matplotlib is needed only by :func:`plot` (and imported there): ``pip install matplotlib``,
or the ``examples`` extra.

>>> import minigrad as mg
>>> from minigrad.playground import PROBLEMS, run
>>> r = run("Descent", PROBLEMS["rosenbrock"], steps=3)      # at the figure's rate
>>> r.path.shape, r.losses.shape, r.rule, r.rate
((4, 2), (4,), 'Descent', 0.002)
>>> bool(r.losses[-1] < r.losses[0])
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import optimise as _opt
from .autograd import param, withgradient
from .tracker import params

__all__ = ["Problem", "Result", "PROBLEMS", "RULES", "rosenbrock", "beale", "make_rule", "run",
           "compare", "table", "plot", "tune", "GRID",
           "FAMILIES"]


def rosenbrock(x, y):
    """Rosenbrock's function ``(1 − x)² + 100·(y − x²)²``: minimum 0 at ``(1, 1)``.

    Works on numbers, NumPy arrays (a grid, for contours) and minigrad arrays (for gradients).

    >>> from minigrad.playground import rosenbrock
    >>> rosenbrock(1.0, 1.0), rosenbrock(-1.2, 1.0)
    (0.0, 24.199999999999996)
    """
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def beale(x, y):
    """Beale's function ``(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²``.

    Minimum 0 at ``(3, 0.5)``.

    >>> from minigrad.playground import beale
    >>> beale(3.0, 0.5), round(beale(1.0, 1.5), 4)
    (0.0, 41.25)
    """
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
            + (2.625 - x + x * y ** 3) ** 2)


#: The rules, by name, each as ``make(rate)``: every Flux rule (the 14 of the optimiser
#: reference) at its default settings apart from the learning rate, except two.  ``AdaDelta``
#: has no learning rate, so its "rate" is its ``ϵ``; ``AdamW`` gets a weight decay of 1e-3
#: (Flux's default 0 would make it Adam), so each step also subtracts 1e-3·x (not scaled by η,
#: as in Flux).
RULES: dict[str, Callable[[float], _opt.AbstractOptimiser]] = {
    "Descent": lambda η: _opt.Descent(η),
    "Momentum": lambda η: _opt.Momentum(η, 0.9),
    "Nesterov": lambda η: _opt.Nesterov(η, 0.9),
    "RMSProp": lambda η: _opt.RMSProp(η),
    "Adam": lambda η: _opt.Adam(η),
    "RAdam": lambda η: _opt.RAdam(η),
    "AdaMax": lambda η: _opt.AdaMax(η),
    "AdaGrad": lambda η: _opt.AdaGrad(η),
    "AdaDelta": lambda ϵ: _opt.AdaDelta(0.9, ϵ),
    "AMSGrad": lambda η: _opt.AMSGrad(η),
    "NAdam": lambda η: _opt.NAdam(η),
    "AdamW": lambda η: _opt.AdamW(η, (0.9, 0.999), 1e-3),
    "OAdam": lambda η: _opt.OAdam(η),
    "AdaBelief": lambda η: _opt.AdaBelief(η),
}


@dataclass(frozen=True)
class Problem:
    """A 2-D test function with where to start, where its minimum is and how to draw it.

    ``f(x, y)`` must work on numbers, NumPy grids and minigrad arrays.  ``rates`` maps a rule
    name of :data:`RULES` to the learning rate the figure uses; ``steps`` is the step budget.

    >>> from minigrad.playground import PROBLEMS
    >>> p = PROBLEMS["beale"]
    >>> p.minimum, p(*p.minimum)
    ((3.0, 0.5), 0.0)
    """

    name: str
    f: Callable
    start: tuple
    minimum: tuple
    xlim: tuple
    ylim: tuple
    steps: int
    rates: dict = field(default_factory=dict)

    def __call__(self, x, y):
        return self.f(x, y)


PROBLEMS: dict[str, Problem] = {
    "rosenbrock": Problem(
        "rosenbrock", rosenbrock, start=(-1.2, 1.0), minimum=(1.0, 1.0),
        xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), steps=1000,
        rates={"Descent": 0.002, "Momentum": 0.002, "Nesterov": 0.001, "RMSProp": 0.005,
               "Adam": 0.5, "RAdam": 0.005, "AdaMax": 1.0, "AdaGrad": 1.0, "AdaDelta": 1e-7,
               "AMSGrad": 0.2, "NAdam": 0.05, "AdamW": 0.5, "OAdam": 0.005, "AdaBelief": 0.5}),
    "beale": Problem(
        "beale", beale, start=(1.0, 1.5), minimum=(3.0, 0.5),
        xlim=(-1.0, 4.5), ylim=(-1.5, 2.5), steps=1000,
        rates={"Descent": 0.02, "Momentum": 0.005, "Nesterov": 0.005, "RMSProp": 0.01,
               "Adam": 0.5, "RAdam": 0.02, "AdaMax": 1.0, "AdaGrad": 1.0, "AdaDelta": 1e-6,
               "AMSGrad": 0.5, "NAdam": 0.5, "AdamW": 0.5, "OAdam": 0.01, "AdaBelief": 0.5}),
}


def make_rule(name: str, rate: float):
    """The optimiser ``RULES[name]`` with learning rate ``rate``; a clear error for a bad name.

    >>> from minigrad.playground import make_rule
    >>> make_rule("Momentum", 0.01)
    Momentum(eta=0.01, rho=0.9)
    """
    try:
        make = RULES[name]
    except KeyError:
        raise ValueError(f"unknown rule {name!r}; choose from {', '.join(RULES)}") from None
    return make(rate)


@dataclass
class Result:
    """One rule's run: ``path`` is ``(steps + 1, 2)`` (the start first), ``losses`` the loss at
    each point of the path.  A run that leaves the finite numbers stops there
    (``diverged``), so ``path`` is then shorter than the budget.

    >>> from minigrad.playground import PROBLEMS, run
    >>> r = run("Descent", PROBLEMS["beale"], steps=2, rate=0.01)
    >>> r.distance > 0, r.diverged, r.reached(1e-3)
    (True, False, None)
    """

    rule: str
    rate: float
    problem: Problem
    path: np.ndarray
    losses: np.ndarray
    diverged: bool = False

    @property
    def final(self) -> np.ndarray:
        """The last point reached."""
        return self.path[-1]

    @property
    def distance(self) -> float:
        """Euclidean distance from the last point to the problem's minimum."""
        return float(np.hypot(*(self.final - np.asarray(self.problem.minimum))))

    def reached(self, tol: float) -> int | None:
        """The first step at which the loss is below ``tol``, or ``None``."""
        below = np.flatnonzero(self.losses < tol)
        return int(below[0]) if below.size else None

    def settled(self, tol: float) -> int | None:
        """The first step from which the loss stays below ``tol`` to the end, or ``None``
        (never, or not at the end, or diverged)."""
        if self.diverged or not self.losses[-1] < tol:
            return None
        above = np.flatnonzero(~(self.losses < tol))
        return int(above[-1]) + 1 if above.size else 0


def run(rule: str | _opt.AbstractOptimiser, problem: Problem | str, steps: int | None = None,
        rate: float | None = None, start: Sequence[float] | None = None) -> Result:
    """Move a point from ``problem.start`` for ``steps`` steps of ``rule`` and record its path.

    ``rule`` is a name of :data:`RULES` (built with ``rate``, by default the problem's tuned
    rate) or any optimiser object (then named by its type, or its stages' types joined by
    ``+`` for an ``Optimiser`` chain).  Each step is
    ``l, gs = mg.withgradient(lambda: f(p[0], p[1]), θ)`` and ``mg.update_(opt, p, gs[p])``.

    >>> from minigrad.playground import run
    >>> r = run("Descent", "rosenbrock", steps=1, rate=1e-3)
    >>> r.path[1].round(4).tolist()         # (−1.2, 1) − 0.001·∇f = (−1.2, 1) − 0.001·(−215.6, −88)
    [-0.9844, 1.088]
    """
    if isinstance(problem, str):
        problem = PROBLEMS[problem]
    steps = problem.steps if steps is None else int(steps)
    if isinstance(rule, str):
        name = rule
        rate = problem.rates.get(name, 1e-3) if rate is None else rate
        opt = make_rule(name, rate)
    else:
        opt = rule
        stages = getattr(opt, "os", None)
        name = "+".join(type(o).__name__ for o in stages) if stages else type(opt).__name__
        rate = float(getattr(opt, "eta", math.nan)) if rate is None else rate
    p = param(np.array(problem.start if start is None else start, dtype=np.float64))
    θ = params(p)
    path = np.empty((steps + 1, 2))
    losses = np.empty(steps + 1)
    path[0] = p.data
    loss = lambda: problem.f(p[0], p[1])  # noqa: E731
    diverged = False
    n = steps
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            value, gs = withgradient(loss, θ)
            losses[t] = float(value)
            g = gs[p]
            if not (math.isfinite(losses[t]) and np.all(np.isfinite(g))):
                diverged, n = True, t
                break
            _opt.update_(opt, p, g)
            path[t + 1] = p.data
        else:
            losses[steps] = float(problem.f(*path[steps]))
            if not math.isfinite(losses[steps]):
                diverged = True
    return Result(name, rate, problem, path[:n + 1], losses[:n + 1], diverged)


#: The learning rates :func:`tune` tries.
GRID = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2,
        0.5, 1.0)


def tune(rule: str, problem: Problem | str, grid: Sequence[float] = GRID,
         tol: float = 1e-3) -> float:
    """The rate of ``grid`` with which ``rule`` does best on ``problem`` in its step budget:
    of the rates whose loss falls below ``tol`` and stays there, the one that gets there in
    the fewest steps; if none does, the one with the lowest final loss (diverged runs last).
    This is how :attr:`Problem.rates` was chosen.

    >>> from minigrad.playground import tune
    >>> tune("Descent", "beale", grid=(1e-3, 1e-2, 0.1))
    0.01
    """
    def score(r: Result):
        at = r.settled(tol)
        if at is not None:
            return (0, at)
        final = float(r.losses[-1])
        return (1, final if not r.diverged and math.isfinite(final) else math.inf)
    scored = [(score(run(rule, problem, rate=rate)), i) for i, rate in enumerate(grid)]
    return grid[min(scored)[1]]


def compare(problem: Problem | str, rules: Sequence[str] | None = None,
            steps: int | None = None, rate: float | None = None) -> list[Result]:
    """:func:`run` each of ``rules`` (default: all of :data:`RULES`) on ``problem``.

    ``rate`` overrides every rule's tuned learning rate (the same rate for all).

    >>> from minigrad.playground import compare
    >>> [r.rule for r in compare("beale", ["Adam", "Momentum"], steps=5)]
    ['Adam', 'Momentum']
    """
    names = list(RULES) if rules is None else list(rules)
    for name in names:
        if name not in RULES:
            raise ValueError(f"unknown rule {name!r}; choose from {', '.join(RULES)}")
    return [run(name, problem, steps, rate) for name in names]


def table(results: Sequence[Result], tol: float = 1e-3) -> str:
    """The results as a text table: rate, final loss, final point, distance to the minimum and
    the step from which the loss stays below ``tol`` (:meth:`Result.settled`), best first.

    >>> from minigrad.playground import compare, table
    >>> print(table(compare("beale", ["Nesterov", "Descent"])))
    rule       rate    final loss   final (x, y)     to minimum   below 0.001 from
    Nesterov   0.005   1.1e-16      (3.000, 0.500)   2.7e-08      step 151
    Descent    0.02    1.23e-07     (2.999, 0.500)   0.000902     step 282
    """
    rows = sorted(results, key=lambda r: (r.diverged, float(r.losses[-1])))
    header = ("rule", "rate", "final loss", "final (x, y)", "to minimum", f"below {tol:g} from")
    body = []
    for r in rows:
        hit = r.settled(tol)
        body.append((r.rule, "-" if math.isnan(r.rate) else f"{r.rate:g}",
                     "diverged" if r.diverged else f"{r.losses[-1]:.3g}",
                     f"({r.final[0]:.3f}, {r.final[1]:.3f})", f"{r.distance:.3g}",
                     f"step {hit}" if hit is not None else "never"))
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in [header, *body])


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "drawing the playground needs matplotlib: pip install matplotlib "
            "(or pip install -e '.[examples]')") from None
    return Figure


#: How :func:`plot` groups the rules, one column each (rules outside these go in a last one).
FAMILIES: dict[str, tuple] = {
    "plain and momentum": ("Descent", "Momentum", "Nesterov"),
    "per-coordinate step sizes": ("RMSProp", "AdaGrad", "AdaDelta", "AdaMax"),
    "Adam and its variants": ("Adam", "RAdam", "AMSGrad", "NAdam", "AdamW", "OAdam",
                              "AdaBelief"),
}


def plot(runs: dict[str, Sequence[Result]] | Sequence[Result], path: str,
         title: str | None = None) -> str:
    """Save a picture of ``runs`` (``{problem name: results}``, or one problem's list).

    For each problem, two rows: the paths over the function's contours (start ■, minimum ★,
    each path ending in a dot), and below each the loss per step on a log scale; one column
    per family of rules (:data:`FAMILIES`), so that related rules sit side by side.  Needs
    matplotlib (imported here, never by ``import minigrad``) and uses no GUI backend.
    Returns ``path``.

    >>> import os, tempfile
    >>> from minigrad.playground import compare, plot
    >>> out = os.path.join(tempfile.mkdtemp(), "two.png")
    >>> plot({"beale": compare("beale", ["Adam", "Descent"], steps=20)}, out) == out
    True
    >>> open(out, "rb").read(4)
    b'\\x89PNG'
    """
    Figure = _matplotlib_figure()
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    if not isinstance(runs, dict):
        runs = {runs[0].problem.name: runs}
    present = {r.rule for rs in runs.values() for r in rs}
    columns = {fam: [n for n in names if n in present] for fam, names in FAMILIES.items()}
    columns = {fam: names for fam, names in columns.items() if names}
    grouped = {n for names in columns.values() for n in names}
    others = sorted(present - grouped)
    if others:
        columns["other"] = others
    palette = colormaps["tab10"]
    colours, styles = {}, {}
    for names in columns.values():
        for i, name in enumerate(names):
            colours[name], styles[name] = palette(i), ("-", "--", "-.")[i % 3]

    ncol = len(columns)
    fig = Figure(figsize=(5.2 * ncol, 8.4 * len(runs)), layout="constrained")
    axes = fig.subplots(2 * len(runs), ncol, squeeze=False,
                        height_ratios=[1.35, 1] * len(runs))
    for row, results in enumerate(runs.values()):
        problem = results[0].problem
        by_rule = {r.rule: r for r in results}
        X, Y = np.meshgrid(np.linspace(*problem.xlim, 300), np.linspace(*problem.ylim, 300))
        Z = problem.f(X, Y)
        levels = np.logspace(-2, math.log10(max(float(Z.max()), 1.0)), 25)
        steps = max(r.losses.size for r in results) - 1
        for col, (family, names) in enumerate(columns.items()):
            ax_path, ax_loss = axes[2 * row, col], axes[2 * row + 1, col]
            ax_path.contourf(X, Y, Z, levels=levels, cmap="Greys", alpha=0.3,
                             norm=LogNorm(levels[0], levels[-1]))
            ax_path.contour(X, Y, Z, levels=levels, colors="grey", linewidths=0.4, alpha=0.6)
            for rule in names:
                r = by_rule.get(rule)
                if r is None:
                    continue
                label = f"{r.rule} ({r.rate:g})" + (", diverged" if r.diverged else "")
                ax_path.plot(r.path[:, 0], r.path[:, 1], styles[rule], color=colours[rule],
                             lw=1.5, label=label)
                ax_path.plot(*r.final, "o", color=colours[rule], ms=5)
                ax_loss.plot(np.maximum(r.losses, 1e-16), styles[rule], color=colours[rule],
                             lw=1.4, label=rule)
            ax_path.plot(*problem.start, "ks", ms=7)
            ax_path.plot(*problem.minimum, "r*", ms=15)
            ax_path.set(xlim=problem.xlim, ylim=problem.ylim,
                        title=f"{problem.name}: {family}")
            ax_path.legend(fontsize=8, loc="upper left", framealpha=0.85,
                           title="rule (learning rate)", title_fontsize=8)
            ax_loss.set(yscale="log", ylim=(1e-16, None), xlabel="step",
                        title=f"{problem.name}: loss, {steps} steps (log scale)")
            ax_loss.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.savefig(path, dpi=80)
    return path
