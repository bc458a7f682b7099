"""Keyword spellings: one argument under its ASCII and Greek names, as Python reads them.

Python reads identifiers in NFKC form, so the keyword ``ϵ`` (U+03F5) arrives as ``ε`` (U+03B5)
and ``β₁`` as ``β1``: every table here is compared in that form.  Rules, schedules and
:mod:`minigrad.mx` read their keywords through :func:`lookup` and :func:`resolve`.

>>> names = spellings([("eta", "η"), ("beta", "β"), ("epsilon", "ϵ")])
>>> lookup("ε", names), lookup("β2", names), lookup("rho", names)
('epsilon', 'beta2', None)
"""

from __future__ import annotations

import unicodedata

__all__ = ["normal", "spellings", "lookup", "resolve"]

#: The two halves of a ``beta`` pair, as keywords of their own (``Adam(β2=0.99)``).
BETA_PARTS = {"β1": "beta1", "beta1": "beta1", "β2": "beta2", "beta2": "beta2"}


def normal(key: str) -> str:
    """``key`` in the form Python gives identifiers (NFKC).

    >>> normal("ϵ") == "ε", normal("eta")
    (True, 'eta')
    """
    return unicodedata.normalize("NFKC", key)


def spellings(fields) -> dict:
    """The spelling table ``{keyword: attribute}`` of ``(attribute, greek)`` pairs (``greek``
    may be ``None``; further items of each field are ignored).  A ``beta`` attribute also
    takes ``β1``/``beta1`` and ``β2``/``beta2``, mapped to ``"beta1"``/``"beta2"``.

    >>> spellings([("eta", "η", 0.1), ("clip", None, 0)])
    {'eta': 'eta', 'η': 'eta', 'clip': 'clip'}
    """
    names: dict = {}
    for attr, greek, *_ in fields:
        names[attr] = attr
        if greek:
            names[normal(greek)] = attr
    if "beta" in names.values():
        names.update(BETA_PARTS)
    return names


def lookup(key: str, names: dict):
    """The attribute ``key`` spells in the table ``names``, or ``None``; both sides are
    compared in NFKC form.

    >>> lookup("ϵ", {"ϵ": "epsilon"})
    'epsilon'
    """
    key = normal(key)
    attr = names.get(key)
    if attr is None:
        attr = next((a for k, a in names.items() if normal(k) == key), None)
    return attr


def resolve(owner: str, kwargs: dict, names: dict) -> dict:
    """``{attribute: value}`` for the keyword arguments ``kwargs``, spelled as in ``names``;
    a ``TypeError`` naming ``owner`` for an unknown keyword or one attribute given twice.

    >>> resolve("Fixed", {"μ": 0.9}, {"mu": "mu", "μ": "mu"})
    {'mu': 0.9}
    >>> resolve("Fixed", {"mu": 0.9, "μ": 0.8}, {"mu": "mu", "μ": "mu"})
    Traceback (most recent call last):
    ...
    TypeError: Fixed got mu twice (as 'μ' and under another spelling)
    """
    values: dict = {}
    for key, value in kwargs.items():
        attr = lookup(key, names)
        if attr is None:
            spelled: dict = {}
            for k, a in names.items():
                spelled.setdefault(a, []).append(k)
            known = ", ".join(
                f"{a} ({'/'.join(k for k in ks if k != a)})" if len(ks) > 1 else a
                for a, ks in spelled.items())
            raise TypeError(f"{owner} got an unexpected keyword {key!r}; it takes {known}")
        if attr in values:
            raise TypeError(f"{owner} got {attr} twice (as {key!r} and under another spelling)")
        values[attr] = value
    return values
