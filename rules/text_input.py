"""Text from untrusted bytes: which encoding, and strings Python holds but cannot send.

* :func:`decode_text` reads UTF-8, UTF-16 and UTF-32, with or without a byte order mark. A
  PowerShell ``.ps1`` saved by Windows tools is often UTF-16 without a BOM; without detection
  its NUL-interleaved bytes matched nothing.
* :func:`find_lone_surrogate` finds a lone UTF-16 surrogate (``"\\ud800"`` in JSON decodes
  to one): such a string cannot be encoded as UTF-8, so it is refused up front rather than
  failing when the answer is written.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from rules.errors import EventInputError, InputEncodingError

__all__ = [
    "MAX_FILE_BYTES",
    "LoneSurrogate",
    "decode_text",
    "find_lone_surrogate",
    "lone_surrogate_error",
    "read_file_bytes",
]

_BOMS: Final = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32LE"),
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32BE"),
    (b"\xff\xfe", "utf-16-le", "UTF-16LE"),
    (b"\xfe\xff", "utf-16-be", "UTF-16BE"),
    (b"\xef\xbb\xbf", "utf-8", "UTF-8"),
)
_SAMPLE: Final = 4096
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _zero_share(sample: bytes, start: int, step: int) -> float:
    picked = sample[start::step]
    return picked.count(0) / len(picked) if picked else 0.0


def _sniff(data: bytes) -> tuple[str, str]:
    """(codec, label) of BOM-less bytes, from where their NUL bytes fall.

    Text in UTF-32 has NULs in (at least) two of every four bytes, UTF-16 text of mostly
    Latin script in one of every two; UTF-8 text has none."""
    sample = data[:_SAMPLE]
    if b"\x00" not in sample:
        return "utf-8", "UTF-8"
    if len(data) % 4 == 0 and len(sample) >= 4:
        if _zero_share(sample, 3, 4) == 1 and _zero_share(sample, 2, 4) > 0.9:
            return "utf-32-le", "UTF-32LE"
        if _zero_share(sample, 0, 4) == 1 and _zero_share(sample, 1, 4) > 0.9:
            return "utf-32-be", "UTF-32BE"
    if len(data) % 2 == 0:
        odd, even = _zero_share(sample, 1, 2), _zero_share(sample, 0, 2)
        if odd > 0.5 and even < 0.1:
            return "utf-16-le", "UTF-16LE"
        if even > 0.5 and odd < 0.1:
            return "utf-16-be", "UTF-16BE"
    return "utf-8", "UTF-8"


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding label) of ``data``: a BOM decides, else the NUL pattern, else UTF-8.

    Invalid bytes (or a lone surrogate in UTF-16/32) raise :class:`InputEncodingError` with
    the byte offset."""
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            return _decode_as(data[len(bom) :], codec, label, len(bom)), label
    codec, label = _sniff(data)
    return _decode_as(data, codec, label, 0), label


def _decode_as(data: bytes, codec: str, label: str, shift: int) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise InputEncodingError(
            f"invalid {label} text: {exc.reason}", byte_offset=exc.start + shift
        ) from None


class LoneSurrogate(NamedTuple):
    """Where a lone surrogate was found: the top-level key (``parameter``) and the path."""

    parameter: str | None
    path: str
    message: str


def _describe(path: str, text: str) -> str:
    found = _SURROGATE.search(text)
    code = f"\\u{ord(found.group()):04x}" if found else "a surrogate"
    where = f" in {path}" if path else ""
    return (
        f"invalid text{where}: a lone UTF-16 surrogate ({code}) at character "
        f"{found.start() if found else 0}; send valid Unicode (surrogates only in pairs)"
    )


def find_lone_surrogate(value: Any, path: str = "") -> LoneSurrogate | None:
    """The first string (value or key) in ``value`` holding a lone surrogate, if any."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                top = where.split(".", 1)[0].split("[", 1)[0] or None
                return LoneSurrogate(top, where, _describe(where, node))
        elif isinstance(node, Mapping):
            for key, item in reversed(list(node.items())):
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and _SURROGATE.search(key):
                    top = where.split(".", 1)[0].split("[", 1)[0] or None
                    return LoneSurrogate(top, where or "a key", _describe(where or "a key", key))
                stack.append((item, name))
        elif isinstance(node, list | tuple):
            stack.extend((item, f"{where}[{i}]") for i, item in reversed(list(enumerate(node))))
    return None


def lone_surrogate_error(value: Any, *, record: int | None = None) -> InputEncodingError | None:
    """An :class:`InputEncodingError` for the first lone surrogate in ``value``, if any."""
    found = find_lone_surrogate(value)
    if found is None:
        return None
    return InputEncodingError(found.message, record=record)


MAX_FILE_BYTES: Final = 256 * 1024 * 1024
"""Largest event file :func:`load_events_file` reads (``/dev/zero`` is not a file to read)."""


def read_file_bytes(path: str, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, refusing more than ``max_bytes`` without reading them all (devices and
    pipes included). Errors are ``OSError`` (missing, a directory) or EventInputError."""
    with open(path, "rb") as fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
            data = b""  # refused below without reading a byte
        else:
            data = fh.read(max_bytes + 1)
    if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
        raise EventInputError(
            f"input is {info.st_size:,} bytes; the limit is {max_bytes:,}", byte_offset=max_bytes
        )
    if len(data) > max_bytes:
        raise EventInputError(
            f"input is over {max_bytes:,} bytes, the limit", byte_offset=max_bytes
        )
    return data
