"""One model walk: the children of a container or model, its parameters with their dotted
paths, and ``fmap``.  :func:`minigrad.params`, checkpoints' names
(:func:`minigrad.checkpoint.named_params`) and ``gpu()``/``cpu()`` all walk models here.

This module imports no other part of minigrad (the tracker imports it): callers pass the
classes that matter to them, the parameter class and the sequence types to enumerate.

>>> import minigrad as mg
>>> m = mg.Chain(mg.Dense(3, 2))
>>> [path for path, p in walk(m, mg.Param, (mg.Params,))]
[('layers', 0, 'weight'), ('layers', 0, 'bias')]
"""

from __future__ import annotations

import copy
import types

import numpy as np

__all__ = ["NOT_MODELS", "children", "walk", "containers", "fmap", "mirror"]

#: Objects with a ``__dict__`` that are code or namespaces, not models holding parameters.
NOT_MODELS = (types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType,
              type)
_ATOMS = (np.ndarray, np.generic, str, bytes, int, float, complex)


def children(x, sequences: tuple = ()):
    """``[(key, child), ...]`` of a list, tuple or ``sequences`` instance (indices), a set
    (keys ``None``), a dict (its keys) or a model object (its attributes); ``None`` for
    anything else (arrays, numbers, strings, code, objects without a ``__dict__``).

    >>> children({"a": 1}), children([5, 6]), children(3.0)
    ([('a', 1)], [(0, 5), (1, 6)], None)
    """
    if x is None or isinstance(x, _ATOMS + NOT_MODELS):
        return None
    if isinstance(x, (list, tuple) + tuple(sequences)):
        return list(enumerate(x))
    if isinstance(x, (set, frozenset)):
        return [(None, child) for child in x]
    if isinstance(x, dict):
        return list(x.items())
    if hasattr(x, "__dict__"):
        return list(vars(x).items())
    return None


def walk(x, param: type, sequences: tuple = (), kids=children) -> list:
    """``[(path, p), ...]``: each instance ``p`` of ``param`` reachable from ``x``, once, in
    depth-first order, with the first path that reaches it (a tuple of keys; ``x`` itself
    being a parameter has the path ``()``).  A container is entered once.  The walk is a loop,
    not a recursion, so a deep model cannot exhaust Python's stack.

    Each key of a path is the child's key in its parent; a set's members have the key
    ``None`` (:func:`containers` gives the objects along a path).  ``kids(node, sequences)``
    lists a node's children (:func:`children` by default; the explicit optimisers pass one
    that keeps a layer's trainable fields only).

    >>> import minigrad as mg
    >>> W = mg.param([1.0])
    >>> walk({"a": [W, W], "b": {W}}, mg.Param)
    [(('a', 0), param([1.]))]
    """
    found, seen, out = set(), set(), []
    stack = [((), x)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, param):
            if id(node) not in found:
                found.add(id(node))
                out.append((path, node))
            continue
        below = kids(node, sequences)
        if below is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(((*path, key), child) for key, child in reversed(below))
    return out


def containers(x, path: tuple, sequences: tuple = ()) -> list:
    """The objects along ``path`` from ``x``: ``[x, x[path[0]], ...]`` without the last
    (the parents of the path's end); a set member's parent is the set.

    >>> containers({"a": [1, 2]}, ("a", 1))
    [{'a': [1, 2]}, [1, 2]]
    """
    out, node = [], x
    for key in path:
        out.append(node)
        if key is None:
            break
        node = dict(children(node, sequences))[key]
    return out


def fmap(leaf, x, sequences: tuple = (), memo: dict | None = None):
    """``x`` with every leaf replaced (Functors' ``fmap``): ``leaf(y)`` returns the
    replacement of ``y``, or ``NotImplemented`` when ``y`` is not a leaf.  Containers and
    objects are rebuilt only where something inside changed (an object by a shallow copy
    with the changed attributes); an object seen twice (tied weights) maps to one result.

    >>> fmap(lambda y: y * 2 if isinstance(y, float) else NotImplemented, {"a": [1.0, "s"]})
    {'a': [2.0, 's']}
    """
    memo = {} if memo is None else memo
    key = id(x)
    if key in memo:
        return memo[key][1]
    result = leaf(x)
    if result is NotImplemented:
        kids = children(x, sequences)
        if kids is None or isinstance(x, (set, frozenset)):
            return x
        items = [(k, fmap(leaf, v, sequences, memo)) for k, v in kids]
        if all(new is old for (_, new), (_, old) in zip(items, kids, strict=True)):
            result = x
        elif isinstance(x, dict):
            result = type(x)(items)
        elif isinstance(x, tuple) and hasattr(x, "_fields"):       # a namedtuple
            result = type(x)(*(v for _, v in items))
        elif isinstance(x, (list, tuple) + tuple(sequences)):
            result = type(x)([v for _, v in items])
        else:
            result = copy.copy(x)
            vars(result).update({k: v for (k, v), (_, old) in zip(items, kids, strict=True)
                                 if v is not old})
    memo[key] = (x, result)        # keep x alive so its id is not reused meanwhile
    return result


def mirror(x, leaf, sequences: tuple = (), kids=children, again=None):
    """A plain tree shaped like ``x`` (Zygote's structural tangents): an object or a dict
    becomes a dict of its children's mirrors (by attribute name or key), a list, tuple or
    ``sequences`` instance a tuple, and anything else ``leaf(y)``, or ``None`` when that
    returns ``NotImplemented`` (sets, numbers, strings, code); a container whose mirrors are
    all ``None`` (nothing inside is a leaf) gives ``None`` too.  The children are visited in
    :func:`walk`'s order, depth first, so a leaf met twice is first met at :func:`walk`'s
    path.  A container met again (a layer used twice) gives ``again(first_mirror)``
    (``None`` by default), and so does a cycle back to a container being mirrored.
    ``kids`` as in :func:`walk`.

    >>> mirror({"a": [1.0, "s"], "b": ["s"]}, lambda y: y * 2 if isinstance(y, float)
    ...        else NotImplemented)
    {'a': (2.0, None), 'b': None}
    """
    done: dict = {}

    def visit(node):
        result = leaf(node)
        if result is not NotImplemented:
            return result
        below = kids(node, sequences)
        if below is None or isinstance(node, (set, frozenset)):
            return None
        if id(node) in done:
            return again(done[id(node)][1]) if again is not None else None
        done[id(node)] = (node, None)       # (a cycle back here sees None)
        items = [(key, visit(child)) for key, child in below]
        if all(v is None for _, v in items):
            result = None
        elif isinstance(node, (list, tuple) + tuple(sequences)):
            result = tuple(v for _, v in items)
        else:
            result = dict(items)
        done[id(node)] = (node, result)     # (keeps node alive: its id is not reused)
        return result

    return visit(x)
