"""Values with units from a command line: ``12.5mm``, ``"800 nm"``, ``10ms`` -> the number in
the unit the parameter or axis is in.

pint parses and converts (it knows SI prefixes, ``µm``/``um``, ``mm/s²``, ``°C``, ``deg``), so
``move esp300.axis1 1.25cm`` moves to 12.5 mm and ``set camera.exposure 0.01s`` sets 10 ms. A
value of another kind is refused naming both: ``maitai.wavelength: '10 ms' is a time, the
parameter is in nm``. A bare number is in the target's unit, as before.

pint counts angles, percentages and bits alike as dimensionless, and a pixel as a length (a CSS
pixel, 1/96 inch); a bench must not turn ``5 %`` into degrees or ``1 mm`` into pixels. So
dimensionless units are told apart by kind (angle, ratio, information), and a unit pint does not
know, or a pixel, converts only to itself.

Error handling: :class:`UnitError` (a ``ValueError``) with a message for people; nothing is
sent to the daemon then. The text is bounded (64 characters) before pint sees it.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 64
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
#: a number, then a unit that starts with a letter, µ, °, % or Ω
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµμ°%Ω].*?)\s*$")

#: units that convert only to themselves (pint's meaning is not the bench's)
_LITERAL = {"px", "pixel", "pixels", "css_pixel", "count", "counts", "adu", "e-"}
_ANGLES = {
    "radian",
    "degree",
    "arcminute",
    "arcsecond",
    "turn",
    "revolution",
    "gradian",
    "milliradian",
    "microradian",
}
_INFORMATION = {"bit", "byte", "kilobyte", "megabyte", "gigabyte", "kibibyte", "mebibyte"}

#: dimensionality (as pint prints it) -> what people call it
_KINDS = {
    "[length]": "a length",
    "[time]": "a time",
    "1 / [time]": "a frequency",
    "[length] / [time]": "a speed",
    "[length] / [time] ** 2": "an acceleration",
    "[mass] * [length] ** 2 / [time] ** 3": "a power",
    "[mass] * [length] ** 2 / [time] ** 2": "an energy",
    "[mass] * [length] ** 2 / [current] / [time] ** 3": "a voltage",
    "[current]": "a current",
    "[temperature]": "a temperature",
    "[mass]": "a mass",
    "[mass] / [time] ** 3": "an irradiance",
    "[length] ** 2": "an area",
    "[substance]": "an amount of substance",
    "[luminosity]": "a luminous intensity",
}


class UnitError(ValueError):
    """A value with a unit that cannot be given to this parameter or axis."""


@functools.cache
def registry() -> Any:
    """pint's registry, built once, on the first value with a unit (it takes ~0.2 s)."""
    import pint  # noqa: PLC0415 (only values with units pay for it)

    return pint.UnitRegistry()


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number and the unit it was given in, as typed."""

    magnitude: float
    unit: str
    text: str


def split_quantity(text: str) -> Quantity | None:
    """``"12.5mm"`` -> Quantity(12.5, "mm"); None if ``text`` is not a number with a unit."""
    if len(text) > MAX_TEXT:
        return None
    match = _QUANTITY.match(text)
    if match is None:
        return None
    return Quantity(float(match.group(1)), match.group(2), text.strip())


def is_quantity(text: str) -> bool:
    return split_quantity(text) is not None


def _unit(name: str) -> Any | None:
    """pint's unit for ``name``, None if pint does not know it (or it is a literal unit)."""
    if name.strip().lower() in _LITERAL:
        return None
    import pint  # noqa: PLC0415

    try:
        return registry().Unit(name)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, ValueError):
        return None
    except (AttributeError, TypeError, SyntaxError, AssertionError):  # pint's parser on junk
        return None


def kind_of(unit: Any) -> str:
    """What a unit measures, in words: "a length", "an angle", "a ratio", ..."""
    dimensionality = unit.dimensionality
    if not dimensionality:
        names = set(re.findall(r"[A-Za-z_]+", str(unit)))  # "degree", "percent"
        if names & _ANGLES:
            return "an angle"
        if names & _INFORMATION:
            return "an amount of information"
        return "a ratio" if names else "a plain number"
    key = str(dimensionality)
    return _KINDS.get(key, f"in {key}")


def to_unit(text: str, target: str, what: str, role: str = "parameter") -> float:
    """The number ``text`` means in ``target`` units: a bare number as it is, a number with a
    unit converted. ``what`` names the parameter or axis in messages (``maitai.wavelength``),
    ``role`` says which ("parameter", "axis").

    Error handling: :class:`UnitError` for text that is no number, a unit pint does not know,
    a value of another kind than the target, or a target without units.
    """
    try:
        return float(text)
    except ValueError:
        pass
    quantity = split_quantity(text)
    shown = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
    if quantity is None:
        raise UnitError(f"{what}: {shown!r} is not a number (with or without a unit, e.g. 12.5mm)")
    if not target:
        raise UnitError(f"{what}: {shown!r} has a unit, the {role} has none; give a plain number")
    if quantity.unit == target:
        return quantity.magnitude
    source_unit, target_unit = _unit(quantity.unit), _unit(target)
    if source_unit is None:
        if target_unit is None or quantity.unit.lower() in _LITERAL:
            raise UnitError(f"{what}: {shown!r}: the {role} is in {target}; give {target}")
        raise UnitError(f"{what}: {shown!r}: unknown unit {quantity.unit!r}")
    if target_unit is None:
        raise UnitError(f"{what}: {shown!r}: the {role} is in {target}; give {target}")
    source_kind, target_kind = kind_of(source_unit), kind_of(target_unit)
    if source_kind != target_kind:
        raise UnitError(f"{what}: {shown!r} is {source_kind}, the {role} is in {target}")
    value = float(registry().Quantity(quantity.magnitude, source_unit).to(target_unit).magnitude)
    if not math.isfinite(value):
        raise UnitError(f"{what}: {shown!r} is not a finite number of {target}")
    return float(f"{value:.12g}")  # 1.25 cm is 12.5 mm, not 12.500000000000002


def to_number(value: float, dtype: str, what: str, units: str, text: str) -> int | float:
    """``value`` as the parameter's dtype: an int parameter takes whole numbers (after a
    conversion, within rounding: 0.8 µm is 800 nm)."""
    if dtype != "int":
        return value
    whole = round(value)
    if abs(value - whole) > 1e-9 * max(1.0, abs(value)):
        raise UnitError(f"{what}: {text!r} is {value:g} {units}; the parameter takes whole {units}")
    return whole
