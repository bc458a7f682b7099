"""What machine a benchmark ran on: shared by the scripts in this folder.

The helpers themselves live in :mod:`minigrad.bench` (``python -m minigrad bench`` prints the
same header); this module only makes them importable as ``from machine import ...`` here.
"""

from __future__ import annotations

import os
import sys

try:
    from minigrad.bench import cpu_model, cpu_seconds, usable_cores
except ImportError:  # not installed: use the checkout this folder lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from minigrad.bench import cpu_model, cpu_seconds, usable_cores

__all__ = ["cpu_model", "cpu_seconds", "usable_cores"]
