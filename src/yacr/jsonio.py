"""JSON without the json package, whose import of `re` costs ~14 ms per container start.

The C scanner and string encoder of `_json` do the real work; this module only
supplies the small context object the scanner expects and a compact writer.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Context:
    """The attributes `_json.make_scanner` reads from a JSONDecoder, with the defaults."""

    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int",
                 "parse_constant", "memo")

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = _bad_constant
        self.memo: dict[str, str] = {}


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


class JSONError(ValueError):
    """Malformed JSON; the message gives the line and column (both from 1)."""


def where(text: str | bytes, pos: int) -> str:
    """`line L, column C` of offset pos in text (columns count characters, or bytes in
    bytes), as editors show them."""
    nl = "\n" if isinstance(text, str) else b"\n"
    line = text.count(nl, 0, pos) + 1  # type: ignore[arg-type]
    col = pos - (text.rfind(nl, 0, pos) + 1) + 1  # type: ignore[arg-type]
    return f"line {line}, column {col}"


def loads(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONError(f"not UTF-8 at {where(text, e.start)}") from None
    pos = 0
    n = len(text)
    while pos < n and text[pos] in _WS:
        pos += 1
    try:
        try:
            value, end = _scan(text, pos)
        except SystemError:
            # The C scanner reports syntax errors with json.decoder.JSONDecodeError, which it
            # only finds if json.decoder is already imported; import it (the error path only).
            import json.decoder  # noqa: F401

            value, end = _scan(text, pos)
    except StopIteration as e:
        raise JSONError(f"expected a JSON value at {where(text, e.value)}") from None
    except RecursionError:
        raise JSONError("nested too deeply") from None
    except ValueError as e:
        # The C scanner raises json.decoder.JSONDecodeError (a ValueError) with a position.
        msg = (getattr(e, "msg", None) or str(e)).removesuffix(" at")
        off = getattr(e, "pos", None)
        raise JSONError(f"{msg} at {where(text, off)}" if off is not None else msg) from None
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise JSONError(f"extra data after the JSON value at {where(text, end)}")
    return value


_enc = _json.encode_basestring_ascii


def dumps(value: Any, indent: int | None = None) -> str:
    parts: list[str] = []
    _write(value, parts, indent, 0)
    return "".join(parts)


def _write(v: Any, out: list[str], indent: int | None, level: int) -> None:
    if isinstance(v, str):
        out.append(_enc(v))
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif v is None:
        out.append("null")
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("cannot encode a non-finite float")
        out.append(float.__repr__(v))
    elif isinstance(v, dict):
        if not v:
            out.append("{}")
            return
        if indent is None:
            out.append("{")
            first = True
            for k, item in v.items():
                if not first:
                    out.append(",")
                first = False
                out.append(_enc(str(k)))
                out.append(":")
                _write(item, out, None, 0)
            out.append("}")
        else:
            pad = "\n" + " " * (indent * (level + 1))
            out.append("{")
            first = True
            for k, item in v.items():
                if not first:
                    out.append(",")
                first = False
                out.append(pad)
                out.append(_enc(str(k)))
                out.append(": ")
                _write(item, out, indent, level + 1)
            out.append("\n" + " " * (indent * level) + "}")
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        if indent is None:
            out.append("[")
            for i, item in enumerate(v):
                if i:
                    out.append(",")
                _write(item, out, None, 0)
            out.append("]")
        else:
            pad = "\n" + " " * (indent * (level + 1))
            out.append("[")
            for i, item in enumerate(v):
                if i:
                    out.append(",")
                out.append(pad)
                _write(item, out, indent, level + 1)
            out.append("\n" + " " * (indent * level) + "]")
    else:
        raise TypeError(f"cannot encode {type(v).__name__} as JSON")
