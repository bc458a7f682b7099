"""``train_`` and its helpers against Flux v0.13.17 (``reference/flux.md`` §3 and §4 items 3-4).

Items 3 (a)-(e) and 4 are ports of Flux's ``test/optimise.jl`` "Training Loop" and "Stop on
NaN"; the rest checks each rule of §3 with values computed by hand in the test.  Timing-based
tests only assert orderings that hold with generous margins on a loaded machine, never speed.
"""

from __future__ import annotations

import math
import re
import threading
import time

import numpy as np
import pytest

import minigrad as mg
from minigrad.schedules import Exp, Scheduler

# -- Flux test/optimise.jl "Training Loop" (§4 item 3) ---------------------------------------------

def test_skip_in_the_loss_every_item():
    # (a) i = 0; loss: sleep(0.1); skip(); i += 1; N = 10  =>  i == 0
    i = 0

    def loss():
        nonlocal i
        time.sleep(0.1)
        mg.skip()
        i += 1
        return i

    mg.train_(loss, mg.Params([]), [()] * 10, mg.Descent())
    assert i == 0


def test_skip_in_the_loss_from_item_eight():
    # (b) loss: sleep(0.1); i == 8 && skip(); i += 1; N = 10  =>  i == 8
    i = 0

    def loss():
        nonlocal i
        time.sleep(0.1)
        if i == 8:
            mg.skip()
        i += 1
        return i

    mg.train_(loss, mg.Params([]), [()] * 10, mg.Descent())
    assert i == 8


def test_stop_through_a_throttled_callback():
    # (c) loss: sleep(0.1); i += 1; 1; N = 100; cb = throttle(() -> (i > 3 && stop()), 1)
    i = 0

    def loss():
        nonlocal i
        time.sleep(0.1)
        i += 1
        return 1

    def check():
        if i > 3:
            mg.stop()

    mg.train_(loss, mg.Params([]), [()] * 100, mg.Descent(), cb=mg.throttle(check, 1))
    # the first call (i = 1) runs at once and does not stop; the next run is >= 1 s later,
    # after >= 4 items, and the loop could not reach 50 items (>= 5 s) before it
    assert 3 < i < 50


def test_runall():
    # (d) runall([() -> (), () -> x = 1])() sets x = 1
    x = 0

    def set_x():
        nonlocal x
        x = 1

    mg.runall([lambda: None, set_x])()
    assert x == 1
    f = lambda: None                    # noqa: E731  (a single function is returned as is)
    assert mg.runall(f) is f
    with pytest.raises(TypeError, match="callback 1 is not callable"):
        mg.runall([f, 3])


def test_an_item_that_is_not_a_tuple_is_passed_whole():
    # (e) train!(x -> sum(x.*x), params(r), (r,), Descent()) with r = rand(3, 3): the DATA is
    # the 1-tuple (r,), so its one item is r, which is not a tuple: the loss gets loss(r)
    np.random.seed(0)
    r = mg.rand(3, 3)
    r0 = np.array(r)
    mg.train_(lambda x: mg.sum(x * x), mg.params(r), (r,), mg.Descent())
    np.testing.assert_allclose(r, r0 - 0.1 * 2 * r0, rtol=1e-15)    # d/dr Σr² = 2r


# -- Flux test/optimise.jl "Stop on NaN" (§4 item 4) -----------------------------------------------

def test_stop_on_nan():
    m = mg.Dense(1, 1)
    m.weight[...] = 0
    cnt = 0

    def loss(i):
        nonlocal cnt
        cnt += 1
        return (math.nan if i == 51 else 1.0) * mg.sum(m(np.array([1.0], dtype=np.float32)))

    with pytest.raises(mg.DomainError) as info:
        mg.train_(loss, mg.params(m), range(1, 101), mg.Descent(0.1))
    assert cnt == 51
    # 50 updates of −0.1·∂(w·1 + b)/∂w = −0.1 each, and none for the NaN item
    assert float(m.weight[0, 0]) == pytest.approx(-5, rel=1e-5)
    assert float(m.bias[0]) == pytest.approx(-5, rel=1e-5)
    message = str(info.value)
    assert "nan" in message.lower()
    assert re.search(r"\b50\b", message) and re.search(r"\b51\b", message)   # index 50, item 51
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_non_finite_loss_raises_before_the_update(bad):
    W = mg.param([1.0])
    with pytest.raises(mg.DomainError, match=re.escape(str(bad))):
        mg.train_(lambda x: mg.sum(W) + x, mg.params(W), [1.0, 2.0, bad, 4.0],
                  mg.Descent(0.25))
    assert float(W[0]) == 1.0 - 0.25 - 0.25         # items 0 and 1 only (∂loss/∂W = 1)


# -- batchmemaybe, callbacks, stop/skip ----------------------------------------------------------

def test_tuple_items_are_splatted_and_others_passed_whole():
    seen = []

    def loss(*args):
        seen.append(args)
        return 0.0

    a = np.array([1.0, 2.0])
    data = [(1, 2), (a,), a, [3, 4], "s", 5, ()]
    mg.train_(loss, mg.Params([]), data, mg.Descent())
    assert [len(args) for args in seen] == [2, 1, 1, 1, 1, 1, 0]
    assert seen[0] == (1, 2) and seen[1][0] is a and seen[2][0] is a
    assert seen[3] == ([3, 4],) and seen[4] == ("s",) and seen[5] == (5,)


def test_train_updates_like_a_hand_loop():
    W, b = mg.param([[1.0, 2.0]]), mg.param([0.5])
    data = [(np.array([1.0, -1.0]), np.array([2.0])), (np.array([0.5, 2.0]), np.array([1.0]))]
    mg.train_(lambda x, y: mg.sum((W @ x + b - y) ** 2), mg.params(W, b), data * 2,
              mg.Descent(0.1))
    w, c = np.array([[1.0, 2.0]]), np.array([0.5])
    for x, y in data * 2:
        r = w @ x + c - y
        w, c = w - 0.1 * 2 * np.outer(r, x), c - 0.1 * 2 * r
    np.testing.assert_allclose(W, w, rtol=1e-14)
    np.testing.assert_allclose(b, c, rtol=1e-14)


def test_callbacks_as_a_list_run_in_order_after_each_update():
    W = mg.param([0.0])
    log = []
    cbs = [lambda: log.append(("a", float(W[0]))), lambda: log.append(("b", float(W[0])))]
    mg.train_(lambda: mg.sum(W), mg.params(W), [()] * 3, mg.Descent(1.0), cb=cbs)
    assert log == [("a", -1.0), ("b", -1.0), ("a", -2.0), ("b", -2.0), ("a", -3.0), ("b", -3.0)]


def test_skip_in_the_callback_does_not_undo_the_update():
    # Flux PR #1913: cb() runs after update!, so skip() there only ends that item early
    W = mg.param([0.0])
    calls = []

    def cb():
        calls.append(float(W[0]))
        mg.skip()

    mg.train_(lambda: mg.sum(W), mg.params(W), [()] * 4, mg.Descent(0.5), cb=cb)
    assert calls == [-0.5, -1.0, -1.5, -2.0] and float(W[0]) == -2.0


def test_stop_in_the_loss_or_the_callback():
    W = mg.param([0.0])

    def loss(i):
        if i == 2:
            mg.stop()                  # before item 2's update
        return mg.sum(W)

    mg.train_(loss, mg.params(W), range(10), mg.Descent(1.0))
    assert float(W[0]) == -2.0
    W[...] = 0
    calls = []

    def cb():
        calls.append(1)
        if len(calls) == 3:
            mg.stop()                  # after item 2's update

    mg.train_(lambda i: mg.sum(W), mg.params(W), range(10), mg.Descent(1.0), cb=cb)
    assert float(W[0]) == -3.0 and len(calls) == 3


def test_other_exceptions_propagate():
    def loss(i):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        mg.train_(loss, mg.Params([]), range(3), mg.Descent())


# -- the Tracker-era form and @epochs ------------------------------------------------------------

def test_legacy_train_with_a_closure_optimiser():
    W, b = mg.param([[1.0, 2.0]]), mg.param([0.5])
    opt = mg.SGD([W, b], 0.1)
    x, y = np.array([1.0, -1.0]), np.array([2.0])
    mg.train_(lambda x, y: mg.sum((W @ x + b - y) ** 2), [(x, y)] * 3, opt)
    # by hand: r = −2.5, −1, −0.4; W −= 0.1·2r·x, b −= 0.1·2r
    np.testing.assert_allclose(W, [[1.78, 1.22]], rtol=1e-14)
    np.testing.assert_allclose(b, [1.28], rtol=1e-14)
    assert W.grad is None or not np.any(W.grad)          # the gradient was consumed


def test_epochs_yields_one_to_n_and_logs(capsys):
    assert list(mg.epochs(3)) == [1, 2, 3]
    assert capsys.readouterr().out == "Epoch 1\nEpoch 2\nEpoch 3\n"
    lines = []
    assert list(mg.epochs(2, log=lines.append)) == [1, 2] and lines == ["Epoch 1", "Epoch 2"]
    assert list(mg.epochs(2, log=None)) == [1, 2] and capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="-1"):
        list(mg.epochs(-1))


# -- throttle -------------------------------------------------------------------------------------

def wait_for(predicate, limit=10.0):
    deadline = time.monotonic() + limit
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_throttle_leading_runs_at_once_then_drops():
    calls = []
    f = mg.throttle(lambda v: calls.append(v) or v, 60)
    assert [f(1), f(2), f(3)] == [1, 1, 1]              # the first result, returned again
    assert calls == [1]


def test_throttle_runs_again_after_the_timeout():
    calls = []
    f = mg.throttle(lambda: calls.append(time.monotonic()), 0.2)
    before = time.monotonic()
    f()
    assert len(calls) == 1
    assert wait_for(lambda: (f(), len(calls) >= 2)[1])
    assert calls[1] - before >= 0.2                       # never sooner than the timeout


def test_throttle_trailing_without_leading():
    calls = []
    f = mg.throttle(lambda v: calls.append(v) or v * 10, 1.0, leading=False, trailing=True)
    start = time.monotonic()
    results = [f(1), f(2), f(3)]
    snapshot = list(calls)
    prompt = time.monotonic() - start < 0.5              # all three inside the first window
    assert results[0] is None                             # nothing has run yet
    if prompt:
        assert snapshot == []
    assert wait_for(lambda: len(calls) >= 1)
    if prompt:
        time.sleep(0.3)
        assert calls == [3]                               # only the last call ran
        assert f(4) == 30                                 # the trailing call's result
    else:
        assert calls[-1] == 3


def test_throttle_trailing_with_leading():
    calls = []
    f = mg.throttle(lambda v: calls.append(v), 1.0, leading=True, trailing=True)
    start = time.monotonic()
    f(1), f(2), f(3)
    prompt = time.monotonic() - start < 0.5
    assert calls[0] == 1
    assert wait_for(lambda: len(calls) >= 2)
    if prompt:
        assert calls == [1, 3]


def test_throttle_timer_runs_on_another_thread():
    threads = []
    f = mg.throttle(lambda: threads.append(threading.current_thread()), 0.05, leading=False,
                    trailing=True)
    f()
    assert wait_for(lambda: threads)
    assert threads[0] is not threading.main_thread()


def test_throttle_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        mg.throttle(3, 1)
    with pytest.raises(ValueError, match="-1"):
        mg.throttle(print, -1)


# -- progress --------------------------------------------------------------------------------------

def test_progress_line_on_stderr(capsys):
    W = mg.param([2.0])
    mg.train_(lambda: mg.sum(W * W), mg.params(W), [()] * 3, mg.Descent(0.1), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    last = captured.err.rstrip("\n").split("\r")[-1]
    match = re.fullmatch(r"step 3/3\s+loss (\S+)\s+([\d,]+) steps/s", last)
    assert match, captured.err
    # the last loss is the third item's: W = 2·0.8² before it, loss = W²
    assert float(match.group(1)) == pytest.approx((2 * 0.8 ** 2) ** 2, rel=1e-5)
    assert captured.err.endswith("\n")


def test_no_progress_by_default(capsys):
    mg.train_(lambda: 0.0, mg.Params([]), [()] * 3, mg.Descent())
    assert capsys.readouterr().err == ""


# -- a Scheduler inside train_ --------------------------------------------------------------------

def test_scheduler_driving_adam_eta_matches_a_hand_loop():
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=(20, 3)), rng.normal(size=20)
    data = list(zip(xs, ys, strict=True))
    s = Exp(0.05, 0.9)
    W = mg.param(np.array([0.1, -0.2, 0.3]))
    mg.train_(lambda x, y: (mg.sum(W * x) - y) ** 2, mg.params(W), data,
              Scheduler(mg.Adam, s))
    # by hand: Flux's Adam with η = s(t), β = (0.9, 0.999), ϵ = 1e-8
    w = np.array([0.1, -0.2, 0.3])
    m, v, b1p, b2p = np.zeros(3), np.zeros(3), 0.9, 0.999
    for t, (x, y) in enumerate(data, start=1):
        g = 2 * (w @ x - y) * x
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - m / (1 - b1p) / (np.sqrt(v / (1 - b2p)) + 1e-8) * s(t)
        b1p, b2p = b1p * 0.9, b2p * 0.999
    np.testing.assert_allclose(W, w, rtol=1e-12)
