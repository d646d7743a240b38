"""Type tests of JSON values, shared by the emulators' seeds, settings and control bodies.

Python's `bool` is an `int`, while JSON's `true` is not a number: a check written
`isinstance(value, int)` would take `true` for 1. These two say what JSON means.
"""

from __future__ import annotations

from typing import Any, TypeGuard


def is_number(value: Any) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> TypeGuard[int]:
    """A JSON integer: an int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)
