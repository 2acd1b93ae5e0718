"""What a report page hands to plotly.js: the figures as JSON (:func:`figure_json`, the
encoding plotly.py's ``to_json`` writes, without importing plotly.py) and the plotly.js bundle
itself, read as a file from the plotly package (:func:`plotly_js`).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from simscale.errors import UserError
from simscale.reports.figure_style import Figure


def script_safe(text: str) -> str:
    """Make ``text`` safe inside a ``<script>`` element: ``</`` cannot close it and ``<!--``
    cannot open a comment (plotly's JSON already escapes ``<``; this is a second guard)."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


#: numpy dtypes that plotly.js reads as typed arrays (``{"dtype": "f4", "bdata": base64}``).
_TYPED_ARRAYS: dict[str, str] = {
    "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "float32": "f4", "float64": "f8",
}


def _typed_array(values: np.ndarray) -> Any:
    """A numpy array as plotly.js's base64 typed array spec, as plotly.py writes it (64-bit
    integers shrink to the narrowest type that holds them; other arrays become lists)."""
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8 and values.size:
        lo, hi = values.min(), values.max()
        for narrow in ((np.int8, np.int16, np.int32) if values.dtype.kind == "i"
                       else (np.uint8, np.uint16, np.uint32)):
            if np.iinfo(narrow).min <= lo and hi <= np.iinfo(narrow).max:
                values = values.astype(narrow)
                break
    code = _TYPED_ARRAYS.get(values.dtype.name)
    if code is None or values.size == 0 or values.ndim != 1:
        return _jsonable(values.tolist())
    data = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return {"dtype": code, "bdata": base64.b64encode(data.tobytes()).decode("ascii")}


def _jsonable(value: Any) -> Any:
    """``value`` with numpy arrays as typed arrays, numpy scalars as Python numbers and
    non-finite floats as ``null`` (what plotly.js takes for a missing value)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _typed_array(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def figure_json(fig: Figure) -> str:
    """The figure as JSON (numpy arrays as base64 typed arrays, as plotly.py writes them),
    safe to embed in a ``<script>`` element: ``<``, ``>`` and ``/`` are escaped inside the
    strings, so no user text can close the element."""
    text = json.dumps(_jsonable(fig), separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("/", "\\u002f")
    return script_safe(text)


def plotly_js_path() -> Path:
    """The plotly.js bundle that ships with plotly.py (``plotly/package_data/plotly.min.js``),
    found without importing plotly."""
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    raise UserError("cannot write the report: plotly.js not found (is plotly installed? "
                    "pip install plotly)")


def plotly_js() -> str:
    """plotly.js, bundled with plotly.py; ``</script`` (never present today) is escaped."""
    # (read_bytes + decode: twice as fast as read_text on the 4.8 MB bundle)
    text = plotly_js_path().read_bytes().decode("utf-8")
    return re.sub(r"(?i)</(script)", r"<\\/\1", text)
