"""How numbers are written on the page: one rule per kind of number, shared by every page."""

from __future__ import annotations

MINUS = "−"


def score(value: float | None) -> str:
    """A metric value with 3 decimals (the `#score` hook's format); a dash when there is none."""
    return "—" if value is None else f"{value:.3f}"


def delta(value: float | None, decimals: int = 3) -> str:
    """A signed change: +0.012, −0.002, ±0.000 (never float noise like -0.0020000000000000018)."""
    if value is None:
        return "—"
    rounded = round(value, decimals)
    sign = "+" if rounded > 0 else MINUS if rounded < 0 else "±"
    return f"{sign}{abs(rounded):.{decimals}f}"


def direction(value: float | None, decimals: int = 3) -> str:
    """"up", "down" or "" for a change, as it is shown (so ±0.000 is neither)."""
    if value is None or round(value, decimals) == 0:
        return ""
    return "up" if value > 0 else "down"


def number(value: float | None, decimals: int = 4) -> str:
    """A statistic in a table or a hover label."""
    return "—" if value is None else f"{value:.{decimals}f}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def fixed3(value: float) -> str:
    """A bound of an interval with 3 decimals, never "-0.000"."""
    return f"{0.0 if abs(value) < 5e-4 else value:.3f}"


def p_value(value: float) -> str:
    """A p-value as a reader compares it: p = 0.031, or p < 0.001 below that."""
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"
