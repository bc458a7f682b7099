"""Shared test settings.

Hypothesis: no per-example deadline (timings on a loaded 2-core CI machine are noisy) and the
failing example's reproduction blob is printed.  Each test file chooses its own example counts.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "minigrad",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("minigrad")
