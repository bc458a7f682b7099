"""minigrad.schedules against ParameterSchedulers.jl (v0.4.3, with v0.3.7's old keywords).

Every expected value is computed here from the formula in ``reference/flux.md`` §7, written out
independently of the module (plain ``math`` on the definition), or is a literal taken from
ParameterSchedulers' own test suite (``test/complex.jl``, ``test/runtests.jl``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.schedules import (
    BoundsError,
    Constant,
    Cos,
    CosAnneal,
    Exp,
    Interpolator,
    Inv,
    Loop,
    OneCycle,
    Poly,
    Scheduler,
    Sequence,
    Shifted,
    Sin,
    SinDecay2,
    SinExp,
    Stateful,
    Step,
    Triangle,
    TriangleDecay2,
    TriangleExp,
    next_,
    reset_,
)

TS = range(1, 201)


def close(a, b, rel=1e-12, abs_=1e-15) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# -- the formulas, written out independently ----------------------------------------------------

def cycle(l0, l1, x):
    """ParameterSchedulers' ``_cycle``: ``|l0 − l1|·x + min(l0, l1)``."""
    return abs(l0 - l1) * x + min(l0, l1)


def tri(t, period):
    return 2 / math.pi * abs(math.asin(math.sin(math.pi * (t - 1) / period)))


def sn(t, period):
    return abs(math.sin(math.pi * (t - 1) / period))


def cos_wave(t, period):
    """``(1 + cos(π(t−1)/period))/2``: 1 at ``t = 1``."""
    return (1 + math.cos(math.pi * (t - 1) / period)) / 2


def cos_restart(t, period):
    return (1 + math.cos(math.pi * ((t - 1) % period) / period)) / 2


def step_exponent(t, step_sizes):
    """How many cumulative sums of the step sizes lie strictly below ``t``."""
    sizes = itertools.repeat(step_sizes) if isinstance(step_sizes, int) else iter(step_sizes)
    total, count = 0, 0
    for n in sizes:
        total += n
        if total >= t:
            break
        count += 1
    return count


ends = st.floats(-10, 10, allow_nan=False)
periods = st.integers(1, 12)


# -- decay schedules ----------------------------------------------------------------------------

@pytest.mark.parametrize("step_sizes", [1, 3, 10, [2, 5], [1, 1, 4], [7]])
def test_step_against_its_formula(step_sizes):
    s = Step(0.3, 0.7, step_sizes)
    for t in TS:
        assert close(s(t), 0.3 * 0.7 ** step_exponent(t, step_sizes)), t


def test_step_by_hand():
    # an integer step size repeats; a list decays once at the end of each entry, then stays
    assert [Step(1.0, 0.5, 3)(t) for t in range(1, 11)] == \
        [1.0] * 3 + [0.5] * 3 + [0.25] * 3 + [0.125]
    assert [Step(1.0, 0.5, [2, 3])(t) for t in range(1, 10)] == \
        [1.0] * 2 + [0.5] * 3 + [0.25] * 4


@given(start=st.floats(-5, 5), decay=st.floats(0.01, 2))
def test_exp_against_its_formula(start, decay):
    s = Exp(start, decay)
    for t in range(1, 60):
        assert close(s(t), start * decay ** (t - 1), abs_=1e-300), t


def test_poly_against_its_formula_and_its_end():
    s = Poly(0.5, 2, 40)
    for t in range(1, 41):
        assert close(s(t), 0.5 * (1 - (t - 1) / 40) ** 2), t
    assert s(1) == 0.5 and close(s(40), 0.5 / 1600)
    with pytest.raises(BoundsError, match="41"):
        s(41)
    with pytest.raises(IndexError):        # BoundsError is an IndexError
        s(100)
    assert len(s) == 40
    values = list(s)                        # iteration stops at max_iter, as in Julia
    assert len(values) == 40 and values == [s(t) for t in range(1, 41)]
    assert [v for v, _ in zip(s, range(1, 101), strict=False)] == values


def test_inv_against_its_formula():
    for degree in (1, 2, 3):
        s = Inv(2.0, 0.25, degree)
        for t in TS:
            assert close(s(t), 2.0 / (1 + (t - 1) * 0.25) ** degree), (degree, t)


# -- cyclic schedules ---------------------------------------------------------------------------

@given(l0=ends, l1=ends, period=periods)
def test_cyclic_schedules_against_their_formulas(l0, l1, period):
    cases = [
        (Triangle(l0=l0, l1=l1, period=period), lambda t: cycle(l0, l1, tri(t, period))),
        (TriangleDecay2(l0=l0, l1=l1, period=period),
         lambda t: cycle(l0, l1, tri(t, period) / 2 ** ((t - 1) // period))),
        (Sin(l0=l0, l1=l1, period=period), lambda t: cycle(l0, l1, sn(t, period))),
        (SinDecay2(l0=l0, l1=l1, period=period),
         lambda t: cycle(l0, l1, sn(t, period) / 2 ** ((t - 1) // period))),
        (TriangleExp(l0=l0, l1=l1, period=period, decay=0.9),
         lambda t: cycle(l0, l1, tri(t, period) * 0.9 ** (t - 1))),
        (SinExp(l0=l0, l1=l1, period=period, decay=0.9),
         lambda t: cycle(l0, l1, sn(t, period) * 0.9 ** (t - 1))),
        (CosAnneal(l0=l0, l1=l1, period=period), lambda t: cycle(l0, l1, cos_restart(t, period))),
        (CosAnneal(l0=l0, l1=l1, period=period, restart=False),
         lambda t: cycle(l0, l1, cos_wave(t, period))),
    ]
    for s, f in cases:
        for t in range(1, 101):
            assert close(s(t), f(t), rel=1e-12, abs_=1e-12), (s, t)


@pytest.mark.parametrize("period", [2, 4, 10])
def test_cyclic_shapes(period):
    lo, hi = 0.1, 0.9
    half = 1 + period // 2
    for cls in (Triangle, Sin):
        s = cls(l0=lo, l1=hi, period=period)
        assert close(s(1), lo)                          # starts at the minimum
        assert close(s(half), hi)                       # the top, half a period later
        assert close(s(1 + period), lo)                 # back at the bottom
        assert all(close(s(t), s(t + period)) for t in range(1, 50))
        assert all(lo - 1e-12 <= s(t) <= hi + 1e-12 for t in range(1, 50))
    s = CosAnneal(l0=lo, l1=hi, period=period)
    assert close(s(1), hi)                              # starts at the MAXIMUM
    assert all(s(t) > s(t + 1) for t in range(1, period))      # falls within a period
    assert all(close(s(t), s(t + period)) for t in range(1, 50))    # restarts
    s = CosAnneal(l0=lo, l1=hi, period=period, restart=False)
    assert close(s(1), hi) and close(s(1 + period), lo) and close(s(1 + 2 * period), hi)
    assert all(s(t) < s(t + 1) for t in range(1 + period, 1 + 2 * period))   # rises again
    # halving amplitude: the peak of cycle k is hi·0.5^k above the bottom
    for cls in (TriangleDecay2, SinDecay2):
        s = cls(l0=lo, l1=hi, period=period)
        for k in range(4):
            assert close(s(half + k * period), lo + (hi - lo) * 0.5 ** k)


def test_cyclic_positional_form_is_range_offset_period():
    s = Triangle(0.8, 0.1, 4)                               # range 0.8 above offset 0.1
    assert s.range == 0.8 and s.offset == 0.1 and s.period == 4
    assert close(s(1), 0.1) and close(s(3), 0.9)
    assert Triangle(range=0.8, offset=0.1, period=4) == s
    assert CosAnneal(0.5, 0.0, 10, False) == CosAnneal(l0=0.5, l1=0.0, period=10, restart=False)
    assert TriangleExp(2.0, 1.0, 6, 0.5) == TriangleExp(l0=3.0, l1=1.0, period=6, decay=0.5)
    # the endpoints may come in either order
    assert Sin(l0=0.9, l1=0.1, period=3) == Sin(l0=0.1, l1=0.9, period=3)


# -- old and new keyword names --------------------------------------------------------------------

def test_old_and_new_keywords_give_equal_schedules():
    pairs = [
        (Step(λ=0.1, γ=0.5, step_sizes=3), Step(start=0.1, decay=0.5, step_sizes=3)),
        (Exp(λ=0.1, γ=0.5), Exp(start=0.1, decay=0.5)),
        (Exp(lambda_=0.1, gamma=0.5), Exp(0.1, 0.5)),
        (Poly(λ=0.1, p=2, max_iter=50), Poly(start=0.1, degree=2, max_iter=50)),
        (Inv(λ=0.1, γ=0.2, p=2), Inv(start=0.1, decay=0.2, degree=2)),
        (Triangle(λ0=0.1, λ1=0.4, period=6), Triangle(l0=0.1, l1=0.4, period=6)),
        (TriangleDecay2(lambda0=0.1, lambda1=0.4, period=6),
         TriangleDecay2(l0=0.1, l1=0.4, period=6)),
        (TriangleExp(λ0=0.1, λ1=0.4, period=6, γ=0.9),
         TriangleExp(l0=0.1, l1=0.4, period=6, decay=0.9)),
        (Sin(λ0=0.1, λ1=0.4, period=6), Sin(l0=0.1, l1=0.4, period=6)),
        (SinDecay2(λ0=0.1, λ1=0.4, period=6), SinDecay2(l0=0.1, l1=0.4, period=6)),
        (SinExp(λ0=0.1, λ1=0.4, period=6, γ=0.9), SinExp(l0=0.1, l1=0.4, period=6, decay=0.9)),
        (CosAnneal(λ0=0.1, λ1=0.4, period=6, restart=False),
         CosAnneal(l0=0.1, l1=0.4, period=6, restart=False)),
    ]
    for old, new in pairs:
        assert old == new, (old, new)
        assert [old(t) for t in range(1, 40)] == [new(t) for t in range(1, 40)]
    assert Exp(λ=0.1, γ=0.5) != Exp(0.1, 0.6)
    assert Exp(0.1, 0.5) != Step(0.1, 0.5, 1)       # same values, different kinds


def test_cos_is_v02_cosanneal_with_restarts():
    s = Cos(λ0=1e-4, λ1=1e-2, period=10)
    assert isinstance(s, CosAnneal) and s.restart
    assert s == CosAnneal(l0=1e-4, l1=1e-2, period=10) == CosAnneal(l0=1e-4, l1=1e-2, period=10,
                                                                   restart=True)
    assert s == Cos(1e-4, 1e-2, 10) == Cos(l0=1e-2, l1=1e-4, period=10)   # v0.2: endpoints
    assert s == Cos(lambda0=1e-4, lambda1=1e-2, period=10)


# -- the seed's "Scheduling Optimisers" examples, as written ------------------------------------

def seed_cos(t):
    """Cos(λ0 = 1e-4, λ1 = 1e-2, period = 10) at ``t``, from the definition."""
    return 1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * ((t - 1) % 10) / 10)) / 2


def test_seed_scheduling_optimisers_zip_loop():
    opt = mg.Momentum()
    schedule = Cos(λ0=1e-4, λ1=1e-2, period=10)
    epochs = []
    for eta, epoch in zip(schedule, range(1, 101), strict=False):
        opt.eta = eta
        # your training code here
        assert close(eta, seed_cos(epoch)), epoch
        epochs.append(epoch)
    assert epochs == list(range(1, 101))
    assert opt.eta == schedule(100)
    assert close(schedule(100), seed_cos(100)) and close(schedule(100), 0.000342270244, rel=1e-9)
    assert close(schedule(1), 1e-2) and close(schedule(6), 0.00505) and close(schedule(11), 1e-2)
    # the optimiser does use the value set last: Momentum's first step is η·g
    w = mg.param([1.0])
    mg.update_(opt, w, np.array([2.0]))
    assert float(w[0]) == pytest.approx(1.0 - 2.0 * seed_cos(100), rel=1e-14)


def test_seed_scheduling_optimisers_stateful_loop():
    opt = mg.Momentum()
    schedule = Stateful(Cos(λ0=1e-4, λ1=1e-2, period=10))
    seen = []
    for _epoch in range(1, 101):
        opt.eta = next_(schedule)
        seen.append(opt.eta)
    assert all(close(v, seed_cos(t)) for t, v in enumerate(seen, start=1))
    assert schedule.state == 101
    assert close(next_(schedule), seed_cos(101))
    reset_(schedule)
    assert schedule.state == 1 and close(next_(schedule), 1e-2)


# -- iteration ----------------------------------------------------------------------------------

def test_iteration_starts_at_one_and_is_endless():
    s = Exp(1.0, 0.5)
    assert [v for v, _ in zip(s, range(1, 101), strict=False)] == [s(t) for t in range(1, 101)]
    assert list(itertools.islice(s, 5)) == [1.0, 0.5, 0.25, 0.125, 0.0625]
    assert len(list(itertools.islice(Triangle(l0=0, l1=1, period=4), 10_000))) == 10_000
    count = 0
    for v in CosAnneal(1.0, 0.0, 3):        # `for v in s` does not stop by itself
        count += 1
        assert 0 <= v <= 1
        if count == 500:
            break
    assert count == 500
    it = iter(s)                             # two iterators are independent
    next(it)
    assert next(iter(s)) == 1.0 and next(it) == 0.5


# -- composite schedules ------------------------------------------------------------------------

def test_sequence_upstream_values():
    # ParameterSchedulers test/complex.jl: Sequence(1 => 1, Step(0.1, 0.5, 10) => 50)
    s = Sequence((1, 1), (Step(0.1, 0.5, 10), 50))
    assert s(1) == 1
    assert s(2) == 0.1
    assert s(42) == 0.00625
    assert s(52) == 0.003125                 # past the end: the last schedule keeps running
    for form in (Sequence([(1, 1), (Step(0.1, 0.5, 10), 50)]),
                 Sequence([1, Step(0.1, 0.5, 10)], [1, 50]),
                 Sequence(schedules=[1, Step(0.1, 0.5, 10)], step_sizes=[1, 50])):
        assert form == s
        assert [form(t) for t in range(1, 80)] == [s(t) for t in range(1, 80)]


@pytest.mark.parametrize("steps", [(1, 1), (3, 7), (10, 2)])
def test_sequence_of_functions_and_numbers(steps):
    n1, _ = steps
    s = Sequence([math.log, math.sqrt], list(steps))
    for t in range(1, 60):
        expected = math.sqrt(t - n1) if t > n1 else math.log(t)
        assert s(t) == pytest.approx(expected, rel=1e-15), t
    assert [v for v, _ in zip(s, range(1, 51), strict=False)] == [s(t) for t in range(1, 51)]
    params = [0.3, 0.7]
    s = Sequence(params, list(steps))
    assert all(s(t) == (params[1] if t > n1 else params[0]) for t in range(1, 60))
    assert isinstance(s.schedules[0], Constant)


def test_sequence_three_stages_local_time():
    s = Sequence((Exp(1.0, 0.5), 3), (Constant(7.0), 2), (Exp(10.0, 0.1), 4))
    expected = [1.0, 0.5, 0.25, 7.0, 7.0, 10.0, 1.0, 0.1, 0.01, 0.001, 0.0001]
    assert [s(t) for t in range(1, 12)] == pytest.approx(expected, rel=1e-12)


def test_sequence_endless_generator_is_read_lazily():
    # test/complex.jl "Infinite Sequences": Sequence(Exp(1.0, 0.5 * step) for step in OneToInf())
    s = Sequence((Exp(1.0, 0.5 * k), k) for k in itertools.count(1))
    t0 = 1
    for k in range(1, 8):
        for local in range(1, k + 1):
            assert s(t0 - 1 + local) == pytest.approx((0.5 * k) ** (local - 1), rel=1e-15)
        t0 += k
    assert s(1000) == pytest.approx((0.5 * 45) ** (1000 - 990 - 1))   # stage 45 starts at 991


def test_loop():
    for period in (1, 3, 7):
        s = Loop(math.log, period)
        for t in range(1, 100):
            assert s(t) == math.log((t - 1) % period + 1)
    s = Loop(Exp(1.0, 0.5), 4)
    assert [v for v, _ in zip(s, range(1, 13), strict=False)] == [1.0, 0.5, 0.25, 0.125] * 3


def test_interpolator():
    # test/complex.jl: Interpolator(sin, dt, identity) at t = dt, 2dt, ... gives sin(1), sin(2)
    dt = 1e-3
    s = Interpolator(math.sin, dt, lambda x: x)
    assert [s(k * dt) for k in range(1, 101)] == pytest.approx(
        [math.sin(k) for k in range(1, 101)], rel=1e-9)
    # a schedule in epochs, called once per batch
    values, epochs, nbatches = [1, 2, 3], [10, 10, 30], 5
    s = Interpolator(Sequence(values, epochs), nbatches)
    correct = [v for v, n in zip(values, epochs, strict=True) for _ in range(nbatches * n)]
    assert [s(t) for t in range(1, sum(epochs) * nbatches + 1)] == correct
    s = Interpolator(Exp(1.0, 0.5), 2, math.floor)       # another rounding function
    assert [s(t) for t in range(2, 8)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_shifted():
    s = Triangle(l0=0, l1=1, period=10)
    soffset = Shifted(s, 5)
    assert [soffset(t) for t in range(1, 51)] == [s(t) for t in range(5, 55)]
    assert Shifted(Exp(1.0, 0.5), 1)(3) == 0.25


def test_constant():
    s = Constant(0.123)
    assert all(s(t) == 0.123 for t in range(1, 1001))
    assert list(itertools.islice(Constant(3), 4)) == [3, 3, 3, 3]


def onecycle(t, nsteps, startval, maxval, endval, pct):
    """test/complex.jl's reference for OneCycle (a warm-up then a cosine decay)."""
    warmup = math.ceil(pct * nsteps)
    warmdown = nsteps - warmup
    if t <= warmup:
        return cycle(startval, maxval, cos_wave(t + warmup, warmup))
    return cycle(maxval, endval, cos_wave(t - warmup, warmdown))


def test_onecycle():
    nsteps, maxval = 50, 0.1
    s = OneCycle(nsteps, maxval)
    for t in range(1, nsteps + 1):
        assert close(s(t), onecycle(t, nsteps, maxval / 25, maxval, maxval / 1e5, 0.25)), t
    with pytest.raises(BoundsError):
        s(nsteps + 1)
    assert len(s) == nsteps and len(list(s)) == nsteps
    assert close(s(1), maxval / 25)                      # starts at startval
    assert close(s(14), maxval)                          # ceil(0.25·50) = 13 warm-up steps
    assert max(s) == s(14)
    s = OneCycle(nsteps, maxval, startval=1e-4, endval=1e-2, percent_start=0.3)
    for t in range(1, nsteps + 1):
        assert close(s(t), onecycle(t, nsteps, 1e-4, maxval, 1e-2, 0.3)), t


# -- Stateful -------------------------------------------------------------------------------------

def test_stateful_upstream():
    stateful_s = Stateful(math.log)
    assert all(next_(stateful_s) == math.log(i) for i in range(1, 101))
    assert reset_(stateful_s) is stateful_s
    assert next_(stateful_s) == math.log(1)
    stateful_s = Stateful(math.log, advance=lambda s: s == 1)
    assert next_(stateful_s) == math.log(1)
    assert next_(stateful_s) == math.log(2)
    assert next_(stateful_s) == math.log(2)
    assert stateful_s.state == 2


def test_stateful_is_a_python_iterator():
    st_ = Stateful(Exp(1.0, 0.5))
    assert next(st_) == 1.0 and st_.next_() == 0.5
    assert list(itertools.islice(st_, 2)) == [0.25, 0.125]
    assert st_.reset_().state == 1


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0, -1, 2.5, math.nan, math.inf, "3", None, True])
def test_bad_t_is_a_value_error(t):
    for s in (Exp(1.0, 0.5), Triangle(l0=0, l1=1, period=4), Sequence((1, 2), (2, 2)),
              Loop(Exp(1.0, 0.5), 3), Shifted(Exp(1.0, 0.5), 2), Constant(1.0),
              OneCycle(10, 1.0), Step(1.0, 0.5, 2)):
        with pytest.raises(ValueError, match="t must be"):
            s(t)


def test_integral_t_of_other_types_is_accepted():
    s = Exp(1.0, 0.5)
    assert s(np.int64(3)) == s(3.0) == s(3) == 0.25


@pytest.mark.parametrize("make, match", [
    (lambda: Exp(math.nan, 0.5), "start must be a finite real number, got nan"),
    (lambda: Exp(0.1, "fast"), "decay must be a finite real number, got 'fast'"),
    (lambda: Exp(0.1), "missing 'decay'"),
    (lambda: Exp(0.1, 0.5, rate=3), "unexpected keyword 'rate'"),
    (lambda: Exp(0.1, 0.5, λ=0.2), "'start' twice"),
    (lambda: Exp(start=0.1, λ=0.2, decay=0.5), "'start' twice"),
    (lambda: Exp(0.1, p=2), "unexpected keyword 'p'"),
    (lambda: Step(0.1, 0.5, 0), "step_sizes must be an integer >= 1, got 0"),
    (lambda: Step(0.1, 0.5, []), "non-empty list"),
    (lambda: Step(0.1, 0.5, [3, 2.5]), "got 2.5"),
    (lambda: Poly(0.1, 2, 0), "max_iter must be an integer >= 1, got 0"),
    (lambda: Triangle(l0=0.1, l1=0.2, period=0), "period must be an integer >= 1, got 0"),
    (lambda: Triangle(l0=0.1, l1=0.2, period=2.5), "period must be an integer >= 1, got 2.5"),
    (lambda: Triangle(l0=0.1, period=4), "both endpoints"),
    (lambda: Triangle(0.5, l0=0.1, l1=0.2, period=4), "not both"),
    (lambda: Sin(l0=math.inf, l1=0.2, period=4), "l0 must be a finite real number, got inf"),
    (lambda: TriangleExp(l0=0.1, l1=0.2, period=4), "missing 'decay'"),
    (lambda: CosAnneal(l0=0.1, l1=0.2, period=4, restart="yes"), "restart must be True"),
    (lambda: Cos(λ0=0.1, λ1=0.2, period=4, restart=False), "unexpected keyword 'restart'"),
    (lambda: Sequence((1, 0)), "step size must be an integer >= 1, got 0"),
    (lambda: Sequence([1, 2], [3]), "2 schedules but 1 step sizes"),
    (lambda: Sequence(("fast", 3)), "stage 0's schedule must be a schedule"),
    (lambda: Sequence(), "Sequence takes pairs"),
    (lambda: Sequence([]), "at least one"),
    (lambda: Loop(3.0, 4), "f must be a schedule or a function"),
    (lambda: Loop(math.log, 0), "period must be an integer >= 1"),
    (lambda: Interpolator(math.log, 0), "rate must be > 0"),
    (lambda: Shifted(math.log, 0), "offset must be an integer >= 1, got 0"),
    (lambda: OneCycle(0, 0.1), "nsteps must be an integer >= 1"),
    (lambda: OneCycle(10, 0.1, percent_start=1.5), "percent_start must lie in"),
    (lambda: Constant("x"), "value must be a number"),
    (lambda: Stateful(0.1), "schedule must be a schedule or a function"),
    (lambda: next_(Exp(0.1, 0.5)), "wrap it: Stateful"),
])
def test_bad_arguments_raise_naming_the_value(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# -- Scheduler ------------------------------------------------------------------------------------

def linear_model(dtype):
    W = mg.param(np.ones((4, 3), dtype=dtype))
    b = mg.param(np.ones(4, dtype=dtype))
    x = np.ones(3, dtype=dtype)
    return W, b, x


@pytest.mark.parametrize("dtype, rel", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_scheduler_basic_usage(dtype, rel):
    # ParameterSchedulers test/runtests.jl "Basic usage": m′ = m − g·s(t)
    W, b, x = linear_model(dtype)
    s = Exp(0.1, 0.5)
    o = Scheduler(mg.Descent, s)
    for t in range(1, 11):
        gs = mg.gradient(lambda: mg.sum(W @ x + b), mg.params(W, b))
        assert np.array_equal(gs[W], np.ones((4, 3))) and np.array_equal(gs[b], np.ones(4))
        W0, b0 = np.array(W), np.array(b)
        mg.update_(o, mg.params(W, b), gs)
        np.testing.assert_allclose(W, W0 - gs[W] * s(t), rtol=rel)
        np.testing.assert_allclose(b, b0 - gs[b] * s(t), rtol=rel)
        assert o.state[W] == o.state[b] == t + 1
    # 10 steps of 0.1·0.5^(t−1) in total
    np.testing.assert_allclose(W, 1 - 0.1 * (1 - 0.5 ** 10) / 0.5, rtol=rel)


def test_scheduler_advanced_usage_momentum():
    # ParameterSchedulers test/runtests.jl "Advanced usage", in Flux's sign convention.  There
    # (Optimisers.jl) m′ = m − (ρ(t)·v + g·η(t)) with v the previous step; Flux keeps
    # v_Flux = −(previous step) and steps by −(ρv_Flux − ηg), the same update.
    W, b, x = linear_model(np.float64)
    seta, srho = Exp(0.1, 0.5), Exp(0.9, 0.9)
    o = Scheduler(mg.Momentum, eta=seta, rho=srho)
    previous = {id(W): np.zeros((4, 3)), id(b): np.zeros(4)}
    for t in range(1, 11):
        gs = mg.gradient(lambda: mg.sum(W @ x + b), mg.params(W, b))
        before = {id(p): np.array(p) for p in (W, b)}
        velocity = {id(p): (o.opt.state[p][0].reshape(p.shape).copy() if p in o.opt.state
                            else np.zeros(p.shape)) for p in (W, b)}
        mg.update_(o, mg.params(W, b), gs)
        for p in (W, b):
            expected = before[id(p)] - (srho(t) * previous[id(p)] + gs[p] * seta(t))
            np.testing.assert_allclose(p, expected, rtol=1e-12)
            np.testing.assert_allclose(
                p, before[id(p)] - (srho(t) * -velocity[id(p)] + gs[p] * seta(t)), rtol=1e-12)
            previous[id(p)] = before[id(p)] - np.array(p)
        assert o.opt.eta == seta(t) and o.opt.rho == srho(t)


def test_scheduler_positional_greek_and_constant_forms_agree():
    seta = Exp(0.1, 0.5)
    optimisers = [Scheduler(mg.Momentum, seta, 0.8), Scheduler(mg.Momentum, η=seta, ρ=0.8),
                  Scheduler(mg.Momentum, eta=seta, rho=Constant(0.8))]
    ws = [mg.param([1.0, -1.0]) for _ in optimisers]
    # the hand loop: Flux's momentum with η(t), ρ = 0.8
    w, v = np.array([1.0, -1.0]), np.zeros(2)
    for t in range(1, 8):
        g = np.array([0.5, 2.0]) * t
        v = 0.8 * v - seta(t) * g
        w = w + v
        for o, p in zip(optimisers, ws, strict=True):
            mg.update_(o, p, g.copy())
    for p in ws:
        np.testing.assert_allclose(p, w, rtol=1e-12)


def test_scheduler_counts_t_per_parameter():
    s = Exp(1.0, 0.5)
    o = Scheduler(mg.Descent, s)
    a, b = mg.param([0.0]), mg.param([0.0])
    for _ in range(3):
        mg.update_(o, a, np.array([1.0]))
    mg.update_(o, b, np.array([1.0]))          # b's first step uses s(1), not s(4)
    assert float(a[0]) == -(1 + 0.5 + 0.25) and float(b[0]) == -1.0
    assert o.state[a] == 4 and o.state[b] == 2
    assert np.array_equal(mg.apply_(o, a, np.array([8.0])), [8.0 * s(4)])  # apply_ too


def test_scheduler_keeps_the_rules_state():
    # Adam's moments and βp live on across steps: a scheduler with a constant η is plain Adam
    g_seq = [np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.array([-1.0, 3.0])]
    o, plain = Scheduler(mg.Adam, Constant(0.01)), mg.Adam(0.01)
    p, q = mg.param([1.0, 1.0]), mg.param([1.0, 1.0])
    for g in g_seq * 3:
        mg.update_(o, p, g.copy())
        mg.update_(plain, q, g.copy())
    np.testing.assert_allclose(p, q, rtol=1e-14)


def test_scheduler_with_a_chain_constructor_and_inside_an_optimiser():
    # AdamW is a function returning Optimiser(Adam, WeightDecay): its decay is scheduled
    sdecay = Exp(1e-2, 0.7)
    o = Scheduler(mg.AdamW, decay=sdecay)
    p = mg.param([1.0])
    for t in range(1, 4):
        mg.update_(o, p, np.array([2.0]))
        assert o.opt[1].wd == sdecay(t) and o.opt[0].eta == 0.001
    # one Adam state, advanced three times: βp = β^(t+1)
    assert o.opt[0].state[p].scalars == pytest.approx([0.9 ** 4, 0.999 ** 4], rel=1e-14)
    # inside a chain: ClipValue first, then the scheduled Descent
    w = mg.param([1.0])
    chain = mg.Optimiser(mg.ClipValue(0.5), Scheduler(mg.Descent, Exp(1.0, 0.5)))
    for _ in range(3):
        mg.update_(chain, w, np.array([2.0]))
    assert float(w[0]) == 1.0 - 0.5 * (1 + 0.5 + 0.25)


def test_scheduler_v03_form():
    # v0.3.7: Scheduler(schedule, opt); opt.eta = s(t) before each step, state[p] == t + 1
    s = Exp(0.1, 0.5)
    o = Scheduler(s, mg.Descent())
    p = mg.param([0.0])
    for t in range(1, 6):
        mg.update_(o, p, np.array([1.0]))
        assert o.optim.eta == s(t)
        assert o.state[p] == t + 1
    assert float(p[0]) == pytest.approx(-sum(s(t) for t in range(1, 6)), rel=1e-15)
    # update_func for a rule without eta
    o = Scheduler(Exp(0.9, 0.5), mg.AdaDelta(), update_func=lambda opt, v: setattr(opt, "rho", v))
    mg.update_(o, p, np.array([1.0]))
    mg.update_(o, p, np.array([1.0]))
    assert o.optim.rho == 0.45


@pytest.mark.parametrize("make, match", [
    (lambda: Scheduler(mg.Descent(), Exp(0.1, 0.5)), "constructor, not an instance"),
    (lambda: Scheduler(mg.Descent), "at least one schedule"),
    (lambda: Scheduler(mg.Descent, "fast"), "schedule 0 must be a schedule.*'fast'"),
    (lambda: Scheduler(mg.Momentum, eta=Exp(0.1, 0.5), rho=[0.9]), "schedule rho .*\\[0.9\\]"),
    (lambda: Scheduler(3, Exp(0.1, 0.5)), "constructor must be .*got 3"),
    (lambda: Scheduler(lambda eta: eta, Exp(0.1, 0.5)), "returned 0.1, which is not"),
    (lambda: Scheduler(mg.Descent, Exp(math.nan, 0.5)), "start must be a finite real"),
    (lambda: Scheduler(mg.Descent, lambda t: math.nan), "eta must be a finite real number, "
                                                        "got nan"),
    (lambda: Scheduler(mg.Momentum, Exp(0.1, 0.5), typo=0.9), "unexpected keyword 'typo'"),
    (lambda: Scheduler(Exp(0.1, 0.5), mg.AdaDelta()), "AdaDelta has no eta"),
    (lambda: Scheduler(mg.Descent, Exp(0.1, 0.5), update_func=print), "v0.3 form"),
])
def test_scheduler_bad_arguments(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_scheduler_error_midway_leaves_t_alone():
    o = Scheduler(mg.Descent, lambda t: 0.1 if t < 3 else math.inf)
    p = mg.param([0.0])
    mg.update_(o, p, np.array([1.0]))
    mg.update_(o, p, np.array([1.0]))
    with pytest.raises(ValueError, match="eta must be a finite real number, got inf"):
        mg.update_(o, p, np.array([1.0]))
    assert o.state[p] == 3 and float(p[0]) == pytest.approx(-0.2)
