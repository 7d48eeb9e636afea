"""JSON files a user hands us (click JSON, tool exports), read with limits: one `DataError` line.

Python's `json` turns some bad files into tracebacks instead of errors: nesting deeper than the
interpreter's recursion limit raises `RecursionError`, an integer of more than 4,300 digits
`ValueError` (CPython's int/str conversion limit), and a shorter huge integer passes and breaks
later (`OverflowError` converting it to float). The click files and the tool exports we read are
shallow (Label Studio's export is 8 levels deep: task, annotations, result, value, labels) and hold
no integer beyond 64 bits, so `load` refuses, naming the file:
- nesting deeper than `MAX_DEPTH` (checked on the text before parsing),
- an integer literal of more than `MAX_INT_DIGITS` digits,
- a key repeated in one object (a JSON reader keeps the last one, so data would be lost),
- text that is not UTF-8 (or UTF-16/32 with its byte order mark, which the JSON RFC allows).
`show` is how a value from such a file appears in an error message: short, whatever its size.
"""
from __future__ import annotations

import json
import os
import re
import reprlib
from typing import Any

import numpy as np

from pointseg_jax.errors import DataError, MissingInputError

MAX_DEPTH = 64
MAX_INT_DIGITS = 19         # 2**63 - 1 has 19 digits
# A JSON string literal (escapes included): removed before counting brackets.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)

_STEP = np.zeros(256, np.int8)   # byte -> change of nesting depth
_STEP[[ord("["), ord("{")]], _STEP[[ord("]"), ord("}")]] = 1, -1

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlevel = 3


def show(value: Any) -> str:
  """repr(value), cut to a few dozen characters (a value may be a 1 MB string or a deep list)."""
  return _repr.repr(value)


class _Refused(Exception):
  """Raised inside the json hooks; `load` turns it into a DataError naming the file."""


class _DuplicateKey(Exception):
  """Raised by the object hook on a repeated key."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
  out = {}
  for key, value in pairs:
    if key in out:
      raise _DuplicateKey(key)
    out[key] = value
  return out


def _int(digits: str) -> int:
  if len(digits.lstrip("-")) > MAX_INT_DIGITS:
    raise _Refused(f"an integer of {len(digits.lstrip('-'))} digits ({digits[:12]}...); numbers "
                   f"in this file must fit 64 bits (at most {MAX_INT_DIGITS} digits)")
  return int(digits)


def nesting_depth(raw: bytes) -> int:
  """Deepest nesting of [ and { outside strings (an upper bound where the text is malformed)."""
  codes = np.frombuffer(_STRING.sub(b"", raw), np.uint8)
  return int(np.cumsum(_STEP[codes], dtype=np.int64).max(initial=0))


def _decode(raw: bytes, path: str) -> tuple[str, bytes]:
  """(text, its UTF-8 bytes) of a file in the encodings the JSON RFC names."""
  encoding = json.detect_encoding(raw)
  try:
    text = raw.decode(encoding)
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 text ({e}); save the file as UTF-8") from None
  return text, (raw if encoding.startswith("utf-8") else text.encode("utf-8"))


def load(path: str | os.PathLike, *, what: str = "JSON file", duplicates: str = "") -> Any:
  """The parsed JSON of `path`, within the limits above; else a DataError naming the file.

  `duplicates`: what a repeated key most likely is in this kind of file (said in the error).
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise DataError(f"{path}: a folder, not a {what}")
  if not os.path.isfile(path):
    raise MissingInputError(f"{path}: {what} not found")
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:   # permissions, a dangling network mount
    raise DataError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
  text, utf8 = _decode(raw, path)
  depth = nesting_depth(utf8)
  if depth > MAX_DEPTH:
    raise DataError(f"{path}: JSON nested {depth} levels deep; a {what} is at most {MAX_DEPTH} "
                    "levels deep (a damaged or wrong file?)")
  try:
    return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_int=_int)
  except json.JSONDecodeError as e:
    raise DataError(f"{path}: malformed JSON ({e})") from None
  except _Refused as e:
    raise DataError(f"{path}: {e}") from None
  except _DuplicateKey as e:
    raise DataError(f"{path}: key {show(e.args[0])} appears twice in one JSON object"
                    f"{f' ({duplicates})' if duplicates else ''}; a JSON reader would keep only the "
                    "last one: merge the entries into one") from None
  except RecursionError:   # a backstop: MAX_DEPTH is far below the recursion limit
    raise DataError(f"{path}: JSON nested too deep (a {what} is at most {MAX_DEPTH} levels deep)"
                    ) from None
