"""Files on disk: writes that a kill never leaves half done, and the conventions of an image folder.

Atomic write: the bytes go to a temporary file in the same folder, then `os.replace` swaps it in
(atomic on POSIX and Windows for one file system), so a reader sees the old file or the new one,
never a prefix. Every small file the package writes (config.json, summary.json, eval.json,
objectness and label PNGs, click JSON, converted weights) goes through here.

Image folders (objectness precompute, the annotation tool, the converters, custom_points): an
image's id is its file name without the suffix (`2008_000123.jpg` -> `2008_000123`), the key of the
click JSON; two files with one id are an error, never a silent pick. A VOC class is its id 1..20 or
its name, any case.
"""
import contextlib
import json
import os
import pathlib
from typing import IO, Any, Iterator

from pointseg_jax import CLASS_NAMES
from pointseg_jax import errors

# What the readers here (PIL) decode and the tools accept as an image.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff")


# ----------------------------------------------------------------------------------------------
# Atomic writes.

@contextlib.contextmanager
def atomic_open(path, mode: str = "w") -> Iterator[IO]:
  """open(tmp, mode) in path's folder (made if missing); on success the file replaces `path`, on
  any error (Ctrl-C included) the temporary file is removed and `path` is untouched."""
  path = pathlib.Path(os.path.expanduser(os.fspath(path)))
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_text(path, text: str) -> None:
  with atomic_open(path, "w") as f:
    f.write(text)


def write_bytes(path, data: bytes) -> None:
  with atomic_open(path, "wb") as f:
    f.write(data)


def write_json(path, data: Any, *, indent: int | None = 2) -> None:
  """JSON (strict: NaN / inf are an error, write them as null first) + a final newline."""
  write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def save_image(path, image, **save_kwargs) -> None:
  """A PIL image, atomically; the format from save_kwargs['format'] or else PNG."""
  save_kwargs.setdefault("format", "PNG")
  with atomic_open(path, "wb") as f:
    image.save(f, **save_kwargs)


# ----------------------------------------------------------------------------------------------
# Image folders.

def is_image_file(path) -> bool:
  return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_SUFFIXES


def image_id(path) -> str:
  """The id of an image file: its name without the suffix ('a/b/x.jpg' -> 'x')."""
  return os.path.splitext(os.path.basename(os.fspath(path).replace("\\", "/")))[0]


def list_images(folder, *, recursive: bool = False, what: str = "images folder"
                ) -> list[tuple[str, pathlib.Path]]:
  """(name, path) of every image file in `folder`, sorted by name. name = the path relative to
  the folder without the suffix ('sub/x' when recursive, else the image id). Two files with one
  name (x.jpg, x.png) are a DataError naming both."""
  root = pathlib.Path(os.path.expanduser(os.fspath(folder)))
  if not root.is_dir():
    raise errors.MissingInputError(f"{what} {root} is not a folder")
  files = root.rglob("*") if recursive else root.glob("*")
  found: dict[str, pathlib.Path] = {}
  for p in sorted(files):
    if not (p.is_file() and is_image_file(p)):
      continue
    name = str(p.relative_to(root).with_suffix(""))
    if name in found:
      raise errors.DataError(f"{root}: {found[name].name!r} and {p.name!r} have the same image id "
                             f"{name!r} (file name without suffix); rename one")
    found[name] = p
  return sorted(found.items())


def class_id(value, *, source: str) -> int:
  """A VOC object class (1..20) from its id or its name ('dog', 'Dog'); else a DataError naming
  `source` (the file and field, or the flag)."""
  if isinstance(value, bool):
    raise errors.DataError(f"{source}: class {value!r} is neither an id 1..20 nor a VOC class name")
  if isinstance(value, int) and 1 <= value < len(CLASS_NAMES):
    return value
  if isinstance(value, str) and value.strip().lower() in CLASS_NAMES[1:]:
    return CLASS_NAMES.index(value.strip().lower())
  raise errors.DataError(f"{source}: class {value!r} is neither an id 1..20 nor one of the VOC "
                         f"class names {list(CLASS_NAMES[1:])}")
