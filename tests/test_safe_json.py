"""pointseg_jax.data.safe_json: JSON a user hands us, read with limits that give one error line."""
import json

import pytest

from pointseg_jax.data import safe_json
from pointseg_jax.errors import DataError, MissingInputError


def _file(tmp_path, content, name="f.json"):
  path = tmp_path / name
  path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
  return path


def test_depth_limit_is_exact_and_ignores_brackets_in_strings(tmp_path):
  at_limit = "[" * safe_json.MAX_DEPTH + "]" * safe_json.MAX_DEPTH
  assert safe_json.load(_file(tmp_path, at_limit)) == json.loads(at_limit)
  over = "[" + at_limit + "]"
  with pytest.raises(DataError, match=rf"f.json: JSON nested {safe_json.MAX_DEPTH + 1} levels deep"):
    safe_json.load(_file(tmp_path, over))
  # Brackets inside strings (escaped quotes too) are text, not nesting.
  text = json.dumps({"a": "[{" * 1000, "b": '\\"[[[', "c": [[1]]})
  assert safe_json.nesting_depth(text.encode()) == 3
  assert safe_json.load(_file(tmp_path, text))["c"] == [[1]]


def test_the_recursion_limit_is_never_reached(tmp_path):
  """json.loads itself raises RecursionError here: the text check refuses first, one line."""
  deep = "{\"a\": " * 200_000 + "1" + "}" * 200_000
  with pytest.raises(RecursionError):
    json.loads(deep)
  with pytest.raises(DataError, match="JSON nested 200000 levels deep; a tool export is at most 64"):
    safe_json.load(_file(tmp_path, deep), what="tool export")


@pytest.mark.parametrize("number, ok", [("9223372036854775807", True), ("-9223372036854775807", True),
                                        ("12345678901234567890", False), ("9" * 400, False),
                                        ("9" * 5000, False)])
def test_integer_size_limit(tmp_path, number, ok):
  path = _file(tmp_path, f'{{"n": {number}}}')
  if ok:
    assert safe_json.load(path) == {"n": int(number)}
  else:
    with pytest.raises(DataError, match=rf"an integer of {len(number.lstrip('-'))} digits"):
      safe_json.load(path)


def test_encodings(tmp_path):
  data = {"image": "café", "x": [1.5]}
  for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-32"):   # the ones RFC 8259 names
    assert safe_json.load(_file(tmp_path, json.dumps(data, ensure_ascii=False).encode(encoding))) == data
  with pytest.raises(DataError, match=r"f.json: not UTF-8 text .* save the file as UTF-8"):
    safe_json.load(_file(tmp_path, b'{"a": "\xff"}'))


def test_duplicate_keys_missing_files_and_folders(tmp_path):
  with pytest.raises(DataError, match=r"key 'a' appears twice in one JSON object \(an id twice\); "
                                      "a JSON reader would keep only the last one"):
    safe_json.load(_file(tmp_path, '{"a": 1, "b": {"a": 2}, "a": 3}'), duplicates="an id twice")
  with pytest.raises(MissingInputError, match=r"none.json: export not found"):
    safe_json.load(tmp_path / "none.json", what="export")
  with pytest.raises(DataError, match=r"a folder, not a click file"):
    safe_json.load(tmp_path, what="click file")
  with pytest.raises(DataError, match=r"malformed JSON \(Expecting value"):
    safe_json.load(_file(tmp_path, '{"a": '))


def test_an_unreadable_file(tmp_path, monkeypatch):
  """(open() is replaced: chmod 0 does not stop root, who runs CI here.)"""
  def denied(path, *args, **kwargs):
    raise PermissionError(13, "Permission denied", str(path))
  monkeypatch.setattr(safe_json, "open", denied, raising=False)
  with pytest.raises(DataError, match=r"locked.json: cannot read the JSON file \(Permission denied\)"):
    safe_json.load(_file(tmp_path, "{}", "locked.json"))


def test_show_is_short_whatever_the_value():
  assert safe_json.show("dog") == "'dog'"
  assert safe_json.show(12) == "12"
  for value in ("w" * 10**6, list(range(10**5)), [[[[[[[1]]]]]]], {str(i): i for i in range(1000)}):
    assert len(safe_json.show(value)) <= 80
