"""NeXus names for the bench's names: devices, parameters and scan columns as HDF5 group and
field names that NeXus readers accept.

Why: NeXus allows ``[A-Za-z_][A-Za-z0-9_]*`` for the names of groups and fields (nexusformat
flags anything else as an invalid name; a dot also reads as an attribute or extension in many
tools), while the bench names its devices ``esp300.axis1`` or ``ell14.2`` and a plan names a
parameter axis ``maitai.wavelength``. The rule, applied the same way everywhere:

* every character outside ``A-Z a-z 0-9 _`` becomes ``_``: ``esp300.axis1`` -> ``esp300_axis1``;
* a name that would start with a digit gets a leading ``_``: ``2theta`` -> ``_2theta``;
* if two names of one group would collide (``a.b`` and ``a_b``), the later one (in the order
  the bench lists them) gets ``_2``, ``_3``, ...

The original name is never lost: each group made from a bench name carries it in an attribute
(``@device``, ``@parameter``, ``@column``) and in the value's ``@long_name``, and the file's
``/entry/manifest/layout_json`` maps every original name to its path.
"""

from __future__ import annotations

import re

_INVALID = re.compile(r"[^A-Za-z0-9_]")
VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def nexus_name(name: str) -> str:
    """The NeXus-valid form of one name (not yet made unique)."""
    text = _INVALID.sub("_", name) or "_"
    return f"_{text}" if text[0].isdigit() else text


class NameAllocator:
    """Unique NeXus names within one group, handed out in order."""

    def __init__(self, taken: tuple[str, ...] = ()) -> None:
        self._taken = set(taken)
        self.names: dict[str, str] = {}  # original -> NeXus name

    def __call__(self, original: str) -> str:
        known = self.names.get(original)
        if known is not None:
            return known
        base = nexus_name(original)
        name, number = base, 2
        while name in self._taken:
            name = f"{base}_{number}"
            number += 1
        self._taken.add(name)
        self.names[original] = name
        return name
