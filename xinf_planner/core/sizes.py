"""Model sizes, one rule: how a size in billions is written as Xinference's size label.

``size_label`` accepts what users and Xinference write (7, 7.0, '7', '7.0', '7b', 1.5, '1.5',
'1.50', '1_5') and gives the label the specs use ('7', '1_5'); every module that compares or
writes a size goes through it.
"""

from __future__ import annotations

import math

from xinf_planner.errors import InvalidInput


def size_label(value) -> str:
    """'1.5', 1.5, '1.50', '1_5' -> '1_5'; '7.0', 7, '7b' -> '7'; 0.0004 -> '0_0004'."""
    text = str(value).strip().lower().removesuffix("b").replace("_", ".")
    try:
        number = float(text)
    except ValueError:
        raise InvalidInput(f"model size {value!r} is not a number of billions (e.g. 7, 1.5, 1_5)") from None
    if not math.isfinite(number) or number <= 0:
        raise InvalidInput(f"model size {value!r} is not a number of billions (e.g. 7, 1.5, 1_5)")
    if number.is_integer():
        return str(int(number))
    return f"{number:.6f}".rstrip("0").rstrip(".").replace(".", "_")


def size_value(label: str):
    """What launch_model takes for ``model_size_in_billions``: an int for whole billions, else
    the label ('1_5')."""
    return int(label) if label.isdigit() else label


def size_in_billions(params: int | None) -> str | None:
    """A size label from a parameter count: 1.78e9 -> '1_8', 7.6e9 -> '7_6', 32.8e9 -> '33'."""
    if not params:
        return None
    b = params / 1e9
    if b >= 10:
        return str(round(b))
    if b >= 1:
        return size_label(round(b, 1))
    return size_label(float(f"{b:.2g}"))


def size_key(value) -> str:
    """A size in comparable form, from any source (a plan, a server's answer): its label, or
    the text itself when it is not a size (never raises); '' for None."""
    if value is None:
        return ""
    try:
        return size_label(value)
    except InvalidInput:
        return str(value)
