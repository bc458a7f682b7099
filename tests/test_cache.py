"""The kernel cache (``minigrad.optimise.kernels.cache_dir``) never stops import or training.

* Read-only home, unusable ``MINIGRAD_CACHE_DIR``: training works, kernels land in the shared
  ``minigrad-<uid>`` folder of the temporary directory, with Numba's cache next to them.
* Read-only install AND read-only home, for real: the package is copied to a folder the user
  cannot write and run as ``nobody`` (``setpriv --reuid=65534``; root ignores permissions, so
  chmod alone proves nothing).  Skipped where there is no root or no ``setpriv``.
* A shared temporary folder that someone else could write (or a symlink) is not used.
* Nothing writable at all: ``import minigrad`` works; the first step names the problem.
* Two processes compiling the same new kernel at once both work and leave a cache that a third
  process loads (Numba's ``cache_hits``).
* Two threads training two models at once (both compiling, then both in the multi-threaded
  kernel) get bit for bit what they get one after the other.
* A damaged cache never changes a result nor stops a run: a generated source that lost its
  last line or was cut short, Numba's index or code file cut short or with flipped bits.  The
  next process gets the right result, with a warning, and the one after that loads the
  repaired cache without one.
* A Python bytecode file planted beside a kernel's source never runs.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from minigrad.optimise import kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One step of a chain that no other test uses, so a fresh cache must compile it; prints the
# folder used and the result.
STEP = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, sys.argv[1])
    import minigrad as mg
    from minigrad.optimise import kernels
    w = mg.param(np.linspace(-1, 1, 7))
    opt = mg.Optimiser(mg.ClipValue(0.3), mg.AdaBelief(0.1), mg.InvDecay(0.25))
    for _ in range(3):
        mg.update_(opt, w, np.linspace(2, -2, 7))
    hits = sum(sum(k.stats.cache_hits.values()) for k in kernels._kernels.values())
    print(kernels.cache_dir())
    print(repr(w.data.tolist()))
    print(hits)
""")


def expected_step() -> list:
    import minigrad as mg
    w = mg.param(np.linspace(-1, 1, 7))
    opt = mg.Optimiser(mg.ClipValue(0.3), mg.AdaBelief(0.1), mg.InvDecay(0.25))
    for _ in range(3):
        mg.update_(opt, w, np.linspace(2, -2, 7))
    return w.data.tolist()


def clean_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MINIGRAD_CACHE_DIR", "NUMBA_CACHE_DIR", "TMPDIR", "HOME")}
    env.update(changes)
    return env


def run_step(env, root=ROOT, user=None, timeout=300):
    command = [sys.executable, "-c", STEP, root]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + command
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    folder, values, hits = out.stdout.strip().splitlines()[-3:]
    return folder, eval(values), int(hits)


def kernel_files(folder) -> tuple:
    sources = [f for f in os.listdir(folder)
               if f.startswith("minigrad_kernel_") and f.endswith(".py")]
    cache = os.path.join(folder, "__pycache__")
    index = [f for f in os.listdir(cache) if f.endswith(".nbi")] if os.path.isdir(cache) else []
    return sources, index


def test_read_only_home_and_bad_cache_variable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("folders cannot be made under a regular file")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = clean_env(HOME=str(blocker / "home"), MINIGRAD_CACHE_DIR=str(blocker / "cache"),
                    TMPDIR=str(temp))
    folder, values, _ = run_step(env)
    assert folder == str(temp / f"minigrad-{os.getuid()}")
    assert values == expected_step()
    sources, index = kernel_files(folder)
    assert sources and index, "the kernel source and Numba's cache index should be there"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


@pytest.mark.skipif(not (hasattr(os, "getuid") and os.getuid() == 0 and shutil.which("setpriv")),
                    reason="needs root and setpriv to run as another user")
def test_read_only_install_and_home_as_nobody():
    base = tempfile.mkdtemp(prefix="minigrad-ro-")
    try:
        os.chmod(base, 0o755)                       # readable, not writable, by nobody
        shutil.copytree(os.path.join(ROOT, "minigrad"), os.path.join(base, "minigrad"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        home = os.path.join(base, "home")
        os.mkdir(home, 0o755)
        temp = os.path.join(base, "tmp")
        os.mkdir(temp)
        os.chmod(temp, 0o1777)
        env = clean_env(HOME=home, TMPDIR=temp)
        folder, values, _ = run_step(env, root=base, user=65534)
        assert folder == os.path.join(temp, "minigrad-65534")
        assert values == expected_step()
        assert os.stat(folder).st_uid == 65534 and kernel_files(folder)[1]
        assert os.listdir(home) == []               # nothing written into the home...
        written = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(base, "minigrad"))
                   for f in fs if os.stat(os.path.join(d, f)).st_uid == 65534]
        assert written == []                        # ...nor into the package
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_unsafe_shared_folder_is_not_used(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.delenv("MINIGRAD_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delattr(kernels.cache_dir, "private", raising=False)
    shared = tmp_path / f"minigrad-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)                             # anyone could plant a kernel here
    private = kernels.cache_dir()
    assert private != str(shared) and os.path.dirname(private) == str(tmp_path)
    assert kernels.cache_dir() == private           # kept for the process
    shared.rmdir()
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    shared.symlink_to(target)                       # a symlink is refused too
    assert kernels.cache_dir() == private
    shared.unlink()
    assert kernels.cache_dir() == str(shared)       # a fresh private shared folder is fine
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o700


def test_cache_folder_whose_pycache_is_unusable_is_skipped(tmp_path, monkeypatch):
    # Numba caches into <folder>/__pycache__; if it cannot, it falls back to ~/.cache/numba
    # and, with no writable home either, compiling fails.  A regular file in the way blocks
    # even root.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "env").mkdir()
    (tmp_path / "temp").mkdir()
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    assert kernels.cache_dir() == str(tmp_path / "env")
    (tmp_path / "env" / "__pycache__").write_text("")
    assert kernels.cache_dir() == str(tmp_path / "temp" / f"minigrad-{os.getuid()}")


def test_nothing_writable_import_works_and_the_step_says_why(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = clean_env(HOME=str(blocker / "home"), MINIGRAD_CACHE_DIR=str(blocker / "cache"),
                    TMPDIR=str(blocker / "tmp"))
    out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "import minigrad; print('imported')", ROOT],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "imported", out.stderr
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))
    monkeypatch.delattr(kernels.cache_dir, "private", raising=False)
    with pytest.raises(OSError, match="set MINIGRAD_CACHE_DIR to a writable folder"):
        kernels.cache_dir()


def test_two_processes_compile_the_same_new_kernel_at_once(tmp_path):
    cache = tmp_path / "cache"
    go = tmp_path / "go"
    # Both processes import, then wait for the same moment to compile.
    waiting = STEP.replace("import minigrad as mg\n", textwrap.dedent(f"""
        import minigrad as mg, os, time
        open({str(tmp_path / 'ready')!r} + str(os.getpid()), 'w').close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
    """), 1)
    env = clean_env(MINIGRAD_CACHE_DIR=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", waiting, ROOT], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for _ in range(12000):
            if len([f for f in os.listdir(tmp_path) if f.startswith("ready")]) == 2:
                break
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        go.write_text("")
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    expected = expected_step()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
        folder, values, hits = out.strip().splitlines()[-3:]
        assert folder == str(cache) and eval(values) == expected
    sources, index = kernel_files(cache)
    assert len(sources) == 1 and len(index) == 1
    assert [f for f in os.listdir(cache) if f.endswith(".tmp")] == []
    # A later process finds the compiled kernel in the cache: the third, or, where the two
    # writers' files and recorded hashes crossed (each compiles its own machine code, which
    # differs byte for byte), the fourth, once the third has recompiled and recorded it.
    folder, values, hits = run_step(env)
    assert values == expected
    if hits == 0:
        folder, values, hits = run_step(env)
        assert values == expected
    assert hits >= 1


THREADS = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, sys.argv[1])
    import numpy as np, minigrad as mg
    sys.setswitchinterval(1e-5)
    N = 70_000          # above the parallel threshold set: both threads in the threaded kernel

    def train(rule, seed, out):
        rng = np.random.default_rng(seed)
        W, b = mg.param(rng.standard_normal((10, N // 10))), mg.param(rng.standard_normal(10))
        x = rng.standard_normal(N // 10)
        ps = mg.params(W, b)
        for _ in range(20):
            gs = mg.gradient(lambda: mg.sum(mg.tanh(W @ x + b) ** 2), ps)
            mg.update_(rule, ps, gs)
        out.append((W.data.copy(), b.data.copy()))

    def pair(barrier=None):
        results = [[], []]
        rules = [mg.Optimiser(mg.ClipNorm(5.0), mg.AMSGrad(0.01)), mg.NAdam(0.02)]
        def work(i):
            if barrier is not None:
                barrier.wait()
            train(rules[i], i, results[i])
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        return results

    together = pair(threading.Barrier(2))       # both compile and train at the same time
    alone = [[], []]
    train(mg.Optimiser(mg.ClipNorm(5.0), mg.AMSGrad(0.01)), 0, alone[0])
    train(mg.NAdam(0.02), 1, alone[1])
    for a, b in zip(together, alone):
        assert len(a) == 1, "a thread failed"
        assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0])), "threads disagree"
    print("OK", mg.optimise.kernels.cache_dir())
""")


def test_two_threads_train_two_models_at_once(tmp_path):
    env = clean_env(MINIGRAD_CACHE_DIR=str(tmp_path / "cache"),
                    MINIGRAD_PARALLEL_THRESHOLD="65536")
    out = subprocess.run([sys.executable, "-c", THREADS, ROOT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["OK", str(tmp_path / "cache")]


def _cut_last_line(path):
    lines = open(path).read().splitlines(keepends=True)
    open(path, "w").write("".join(lines[:-1]))


def _cut_in_half(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def _flip_bits(path):
    data = bytearray(open(path, "rb").read())
    for k in range(1, 8):                       # a bit in each eighth of the file
        data[k * len(data) // 8 - 1] ^= 1 << k
    open(path, "wb").write(bytes(data))


DAMAGES = {   # what to damage (source, Numba's index, Numba's code file) and how
    "source loses its last line": (".py", _cut_last_line),
    "source cut in half": (".py", _cut_in_half),
    "index cut in half": (".nbi", _cut_in_half),
    "index bits flipped": (".nbi", _flip_bits),
    "code cut in half": (".nbc", _cut_in_half),
    "code bits flipped": (".nbc", _flip_bits),
}


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A kernel cache holding STEP's kernel, as one process left it."""
    cache = tmp_path_factory.mktemp("warm") / "cache"
    folder, values, _ = run_step(clean_env(MINIGRAD_CACHE_DIR=str(cache)))
    assert values == expected_step()
    return cache


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_cache_never_changes_a_result(damage, warm_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    suffix, harm = DAMAGES[damage]
    files = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs
             if f.startswith("minigrad_kernel_") and f.endswith(suffix)]
    assert files
    for path in files:
        harm(path)
    env = clean_env(MINIGRAD_CACHE_DIR=str(cache))
    command = [sys.executable, "-W", "always", "-c", STEP, ROOT]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert eval(first.stdout.splitlines()[-2]) == expected_step()
    assert "was damaged" in first.stderr and "recompiled" in first.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert eval(second.stdout.splitlines()[-2]) == expected_step()
    assert "damaged" not in second.stderr
    assert int(second.stdout.splitlines()[-1]) >= 1     # loaded from the repaired cache


def test_a_planted_bytecode_file_never_runs(warm_cache, tmp_path):
    """Python's import system would run a ``__pycache__`` bytecode file beside a kernel's
    source whose header records the source's mtime and size; minigrad compiles the source text
    it has checked instead.  Planted here for each kernel: its update with the sign flipped
    (the same length), with Numba's cache removed so that Numba compiles whatever ran."""
    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    for name in os.listdir(cache / "__pycache__"):
        os.unlink(cache / "__pycache__" / name)
    sources = sorted(cache.glob("minigrad_kernel_*.py"))
    assert sources
    for path in sources:
        text = path.read_text()
        assert "x[i] = xi - d" in text
        planted = tmp_path / path.name
        planted.write_text(text.replace("x[i] = xi - d", "x[i] = xi + d"))
        os.utime(planted, (kernels.SOURCE_MTIME, kernels.SOURCE_MTIME))
        py_compile.compile(str(planted), cfile=importlib.util.cache_from_source(str(path)),
                           dfile=str(path), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    _, values, _ = run_step(clean_env(MINIGRAD_CACHE_DIR=str(cache)))
    assert values == expected_step()
