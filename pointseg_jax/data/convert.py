r"""Point annotations from/to the tools people annotate with: Label Studio, CVAT, labelme.

  python -m pointseg_jax.data.convert --from labelstudio --input export.json --output clicks.json
  python -m pointseg_jax.data.convert --from cvat --input annotations.xml --output clicks.json
  python -m pointseg_jax.data.convert --from labelme --input labelme_dir --output clicks.json
  python -m pointseg_jax.data.convert --to labelstudio --input clicks.json --images DIR --output ls.json
  python -m pointseg_jax.data.convert --to cvat --input clicks.json --images DIR --output annotations.xml
  python -m pointseg_jax.data.convert --to labelme --input clicks.json --images DIR --output labelme_dir

"ours" is the click JSON of docs/clicks.md (extended format). The formats (docs/annotate.md,
"Converters"):
  Label Studio  JSON export (list of tasks); KeyPointLabels results with x, y in percent of
                original_width / original_height; each annotation of a task is one annotator
                (0, 1, ...); Choices results are image tags.
  CVAT          "CVAT for images 1.1" XML (or the export zip holding annotations.xml); `<points>`
                shapes, each point a click; `<tag>` elements are image tags.
  labelme       one JSON per image; shapes with shape_type "point"; image flags are image tags.
Coordinates are pixels with (0, 0) at the top-left corner of the image in all four formats (ours:
float pixels, a click on pixel (r, c) has floor(y) = r, floor(x) = c). Ranks are the click order per
(annotator, class) unless a click carries its own; rank, annotator and time_ms travel in the slot
each tool keeps for extra data (Label Studio region meta text, CVAT shape attributes, labelme extra
shape keys), so ours -> tool -> ours gives the same clicks back exactly. An image in a tool's
export that an annotator answered counts as annotated: one without points becomes an empty list
(no class present); a Label Studio task with no (uncancelled) annotation was never answered and is
left out, counted and logged. A tag for a class without a click cannot be stored in the click JSON:
such tags are counted and logged.

Bad files (docs/annotate.md, "Converters"): every refusal is one `DataError` line naming the file,
the place in it and the field; JSON is read through `safe_json` (depth and number limits), CVAT XML
through defusedxml as a stream (no DOCTYPE or entities; zips cut at MAX_ZIP_XML_BYTES), and every
image `--to` names is fully decoded (`image_io`).

Asked classes (docs/clicks.md, "asked"): none of the three formats records which classes a project
asked about (a Label Studio / CVAT label list is project configuration, not export data), so
--from writes every image with the classes of --asked (default: all 20), and logs when the clicks
use fewer classes; --to cannot carry a file's "asked" lists and logs how many images had one.
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
import urllib.parse
import xml.etree.ElementTree as ET
import zipfile
import zlib
from typing import IO, Iterator, Mapping

import defusedxml
import defusedxml.ElementTree
import numpy as np
from absl import flags
from absl import logging

from pointseg_jax import CLASS_NAMES
from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax import image_io
from pointseg_jax.data import click_json
from pointseg_jax.data import safe_json


TOOLS = ("labelstudio", "cvat", "labelme")
EXTRA_KEYS = ("annotator", "rank", "time_ms")   # what travels in each tool's extra-data slot
# Other spellings of the VOC classes (COCO / everyday names); anything else needs --label_map.
ALIASES = {"airplane": "aeroplane", "plane": "aeroplane", "bike": "bicycle",
           "motorcycle": "motorbike", "couch": "sofa", "tv": "tvmonitor", "monitor": "tvmonitor",
           "table": "diningtable", "plant": "pottedplant"}
LABELME_VERSION = "5.5.0"
# Memory bounds for CVAT files (a 1 MB zip can declare gigabytes of XML, and "1,2;" is a click in 4
# bytes): annotations.xml read from a zip is cut at MAX_ZIP_XML_BYTES uncompressed (its declared
# size is checked first), and a CVAT file holds at most MAX_CVAT_CLICKS clicks (VOC's 10,582 train
# images with 3 annotators are about 50,000). Measured peaks: docs/annotate.md, "Converters".
MAX_ZIP_XML_BYTES = 64 * 2**20
MAX_CVAT_CLICKS = 1_000_000
_INT32_MAX = 2**31 - 1

Rows = dict[str, list[dict]]   # image id -> clicks {x, y, cls, rank, annotator[, time_ms]}


def _norm(label: str) -> str:
  return re.sub(r"[^a-z0-9]", "", label.lower())


class Labels:
  """Tool label -> VOC class id: the VOC names in any case/spacing, a few aliases, --label_map."""

  def __init__(self, label_map: Mapping[str, str] | None = None):
    self.table = {_norm(n): i for i, n in enumerate(CLASS_NAMES) if i}
    self.table.update({_norm(a): CLASS_NAMES.index(n) for a, n in ALIASES.items()})
    for tool_label, target in (label_map or {}).items():
      key = _norm(target)
      if key not in self.table and not (target.isdigit() and 1 <= int(target) < len(CLASS_NAMES)):
        raise errors.ConfigError(f"--label_map {tool_label}={target}: {target!r} is not a VOC class "
                                 f"(one of {list(CLASS_NAMES[1:])} or 1..20)")
      self.table[_norm(tool_label)] = int(target) if target.isdigit() else self.table[key]

  def cls(self, label, *, source: str) -> int:
    if isinstance(label, str) and _norm(label) in self.table:
      return self.table[_norm(label)]
    raise errors.DataError(f"{source}: label {safe_json.show(label)} is not a PASCAL VOC class; "
                           f"name it one of {list(CLASS_NAMES[1:])} or map it with --label_map "
                           f"{label if isinstance(label, str) else 'LABEL'}=<voc name>")


# ------------------------------------------------------------------------------------------------
# Shared helpers.


def _number(v, *, source: str, what: str, integer: bool = False):
  """A finite number (integers within int32) from a JSON value or an XML attribute's text."""
  if isinstance(v, str):
    try:
      v = int(v) if integer else float(v)
    except ValueError:   # also a string of over 4,300 digits (CPython's int conversion limit)
      raise errors.DataError(f"{source}: {what} {safe_json.show(v)} is not a number") from None
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    raise errors.DataError(f"{source}: {what} {safe_json.show(v)} is not a finite number")
  if not (abs(v) <= _INT32_MAX if isinstance(v, int) else math.isfinite(v)):   # before float()
    raise errors.DataError(f"{source}: {what} {safe_json.show(v)} is "
                           f"{'out of range' if isinstance(v, int) else 'not a finite number'}")
  if integer and float(v) != int(v):
    raise errors.DataError(f"{source}: {what} {v!r} must be an integer")
  if integer and abs(v) > _INT32_MAX:
    raise errors.DataError(f"{source}: {what} {v!r} is out of range")
  return int(v) if integer else float(v)


def _size(v, *, source: str, what: str) -> int:
  """An image width or height: an integer >= 1 (0 would put every Label Studio click at x = 0)."""
  n = _number(v, source=source, what=what, integer=True)
  if n < 1:
    raise errors.DataError(f"{source}: {what} {n} must be >= 1 (the image's size in pixels)")
  return n


_KINDS = {list: "a list", dict: "an object", str: "a string"}


def _get(obj: Mapping, key: str, kind: type, *, where: str, default=None):
  """obj[key] (or default) when it is of `kind`; else a one-line DataError naming the field."""
  value = obj.get(key, default)
  if not isinstance(value, kind):
    raise errors.DataError(f"{where}: field {key!r} is {safe_json.show(value)}, expected "
                           f"{_KINDS[kind]}")
  return value


def _px(v: float) -> float:
  """A coordinate as stored (float32, like the click JSON), so rows compare exactly."""
  return float(np.float32(v))


def _f32(v: float) -> float:
  """The float32 a coordinate is stored as, written with the fewest digits that give it back."""
  return float(np.format_float_positional(np.float32(v), trim="-"))


class _Ranker:
  """Rank = click order per (image, annotator, class) unless the click names its own."""

  def __init__(self):
    self.count = collections.Counter()
    self.total = 0

  def __call__(self, image: str, annotator: int, cls: int, explicit: int | None) -> int:
    self.total += 1
    self.count[(image, annotator, cls)] += 1
    return explicit if explicit is not None else self.count[(image, annotator, cls)]


class _Report:
  """What a reader left out or could not store: logged once with counts, never silent."""

  def __init__(self, source: str):
    self.source = source
    self.ignored = collections.Counter()          # shape / result type -> count
    self.tag_only = []                            # (image, class) tagged present without a click
    self.outside = []                             # image ids with clicks outside the image
    self.unannotated = []                         # image ids left out: nobody annotated them

  def log(self) -> None:
    if self.unannotated:
      logging.warning("%s: %d tasks have no annotation (or only cancelled ones) and are left out: "
                      "nobody said which classes they hold, so they are not 'no class present': "
                      "%s", self.source, len(self.unannotated),
                      ", ".join(self.unannotated[:20]) + (" ..." if len(self.unannotated) > 20 else ""))
    if self.ignored:
      logging.warning("%s: ignored %s (only points and image tags are read)", self.source,
                      ", ".join(f"{n} {k}" for k, n in sorted(self.ignored.items())))
    if self.tag_only:
      logging.warning("%s: %d image tags name a class without a click; the click JSON cannot hold "
                      "them (e.g. %s)", self.source, len(self.tag_only),
                      ", ".join(f"{i}:{CLASS_NAMES[c]}" for i, c in self.tag_only[:10]))
    if self.outside:
      logging.warning("%s: clicks outside their image in %d images (the dataset builder clips or "
                      "drops them and says so): %s", self.source, len(self.outside),
                      ", ".join(sorted(set(self.outside))[:20]))


def _finish(rows: Rows, tags: Mapping[str, set], sizes: Mapping[str, tuple[int, int]],
            report: _Report) -> Rows:
  for image, classes in tags.items():
    clicked = {r["cls"] for r in rows.get(image, [])}
    report.tag_only += [(image, c) for c in sorted(classes - clicked)]
  for image, clicks in rows.items():
    h, w = sizes.get(image, (math.inf, math.inf))
    if any(not (0 <= r["x"] <= w and 0 <= r["y"] <= h) for r in clicks):
      report.outside.append(image)
  report.log()
  return {k: rows[k] for k in sorted(rows)}


def _twice(image: str, source: str) -> errors.DataError:
  return errors.DataError(f"{source}: image {image!r} appears twice; merge its annotations in the "
                          "tool or rename one image")


def _add_image(rows: Rows, image: str, source: str) -> None:
  if image in rows:
    raise _twice(image, source)
  rows[image] = []


def _extras(values: Mapping, *, source: str) -> dict:
  return {k: _number(values[k], source=source, what=k, integer=True)
          for k in EXTRA_KEYS if values.get(k) is not None}


# ------------------------------------------------------------------------------------------------
# Ours.


def read_ours(path: str) -> Rows:
  """Rows of a click JSON file, checked by `click_json` (annotator 0 where the file names none)."""
  rows = {}
  for image, clicks in sorted(click_json.read_click_json(path).items()):
    rows[image] = [{"x": _px(c["x"]), "y": _px(c["y"]), "cls": c["cls"], "rank": c["rank"],
                    "annotator": c.get("annotator", 0),
                    **({"time_ms": c["time_ms"]} if c.get("time_ms") is not None else {})}
                   for c in clicks]
  return rows


def to_arrays(rows: Rows) -> dict[str, dict[str, np.ndarray]]:
  """Rows -> the clicks arrays `click_json.write_click_json` writes."""
  return {image: click_json.rows_to_arrays(clicks) for image, clicks in rows.items()}


def write_ours(path: str, rows: Rows, asked: list[int] | None = None) -> None:
  """Our click JSON; `asked` (class ids) = the classes the tool's project asked about, for every
  image (None: every class)."""
  click_json.write_click_json(path, to_arrays(rows),
                              None if asked is None else {image: asked for image in rows})


def image_files(images_dir: str, ids) -> dict[str, tuple[str, int, int]]:
  """{image id: (file name, height, width)} for `ids`, from the files in `images_dir`."""
  if not os.path.isdir(images_dir):
    raise errors.MissingInputError(f"--images {images_dir}: folder not found (the tool formats "
                                   "need each image's file name and size)")
  # x.jpg beside x.png is an error naming both (files.list_images), never a silent pick.
  by_id = {name: path.name for name, path in files.list_images(images_dir, what="--images")}
  out, missing = {}, []
  for image in ids:
    if image not in by_id:
      missing.append(image)
      continue
    h, w = image_io.size(os.path.join(images_dir, by_id[image]),
                         fix="every image with clicks is written to the tool's file: replace it")
    out[image] = (by_id[image], h, w)
  if missing:
    raise errors.MissingInputError(f"--images {images_dir}: no image file for {len(missing)} ids of "
                                   f"the click file, e.g. {missing[:5]}")
  return out


# ------------------------------------------------------------------------------------------------
# Label Studio.


def _ls_image_id(url: str, *, where: str) -> str:
  try:
    parsed = urllib.parse.urlparse(url)
  except ValueError as e:   # e.g. 'http://[::1' (an unclosed IPv6 host)
    raise errors.DataError(f"{where}: image URL {safe_json.show(url)} is not a URL ({e})") from None
  query = urllib.parse.parse_qs(parsed.query)
  path = query["d"][0] if "d" in query else urllib.parse.unquote(parsed.path)
  image = files.image_id(path)
  # Files uploaded to Label Studio are stored as /data/upload/<project>/<8 hex>-<original name>.
  if "/data/upload/" in parsed.path and re.match(r"^[0-9a-f]{8}-.", image):
    image = image[9:]
  if not image:
    raise errors.DataError(f"{where}: image URL {safe_json.show(url)} names no file")
  return image


def read_labelstudio(path: str, labels: Labels, *, image_key: str = "image") -> Rows:
  """Rows of a Label Studio JSON export. A task with no annotation (or only cancelled ones) was
  never annotated: it is left out and counted, never read as "no class present"."""
  data = safe_json.load(path, what="Label Studio export")
  if isinstance(data, dict):
    data = [data]
  if not isinstance(data, list):
    raise errors.DataError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
  rows: Rows = {}
  sizes, tags = {}, collections.defaultdict(set)
  report, rank = _Report(path), _Ranker()
  for n, task in enumerate(data):
    where = f"{path}: task {safe_json.show(task.get('id', n)) if isinstance(task, dict) else n}"
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
      raise errors.DataError(f"{where}: a task must be an object with a 'data' object (use the "
                             "'JSON' export, not 'JSON_MIN' or CSV)")
    url = task["data"].get(image_key)
    if not isinstance(url, str):
      raise errors.DataError(f"{where}: data has no image URL under {image_key!r} (keys "
                             f"{safe_json.show(sorted(task['data']))}); pass --labelstudio_image_key")
    image = _ls_image_id(url, where=where)
    key = "annotations" if "annotations" in task else "completions"   # older exports
    annotations = _get(task, key, list, where=where, default=[])
    for k, ann in enumerate(annotations):
      if not isinstance(ann, dict):
        raise errors.DataError(f"{where}: {key}[{k}] is {safe_json.show(ann)}, expected an object")
    if image in rows or image in report.unannotated:
      raise _twice(image, path)
    cancelled = sum(bool(a.get("was_cancelled")) for a in annotations)
    if cancelled:
      report.ignored["cancelled annotations"] += cancelled
    if cancelled == len(annotations):
      report.unannotated.append(image)
      continue
    rows[image] = []
    annotator = 0
    for k, ann in enumerate(annotations):
      if ann.get("was_cancelled"):
        continue
      for j, res in enumerate(_get(ann, "result", list, where=f"{where}: {key}[{k}]", default=[])):
        rw = f"{where}: {key}[{k}].result[{j}]"
        if not isinstance(res, dict):
          raise errors.DataError(f"{rw} is {safe_json.show(res)}, expected an object")
        kind = res.get("type")
        if kind == "choices":
          choices = _get(_get(res, "value", dict, where=rw), "choices", list, where=f"{rw}.value",
                         default=[])
          tags[image] |= {labels.cls(c, source=where) for c in choices}
          continue
        if kind != "keypointlabels":
          report.ignored[f"{kind if isinstance(kind, str) else safe_json.show(kind)} results"] += 1
          continue
        value = _get(res, "value", dict, where=rw)
        names = _get(value, "keypointlabels", list, where=f"{rw}.value", default=[])
        if len(names) != 1:
          raise errors.DataError(f"{rw}: a keypoint has labels {safe_json.show(names)}; give each "
                                 "point one class")
        w = _size(res.get("original_width"), source=rw, what="original_width")
        h = _size(res.get("original_height"), source=rw, what="original_height")
        if res.get("image_rotation", 0):
          raise errors.DataError(f"{rw}: image_rotation {safe_json.show(res['image_rotation'])} is "
                                 "not supported; annotate unrotated images")
        sizes[image] = (h, w)
        extras = _meta_extras(res.get("meta"), source=rw)
        cls = labels.cls(names[0], source=rw)
        rows[image].append({
            "x": _px(_number(value.get("x"), source=rw, what="x") * w / 100),
            "y": _px(_number(value.get("y"), source=rw, what="y") * h / 100), "cls": cls,
            "rank": rank(image, annotator, cls, extras.get("rank")), "annotator": annotator,
            **({"time_ms": extras["time_ms"]} if "time_ms" in extras else {})})
      annotator += 1
  return _finish(rows, tags, sizes, report)


def _meta_extras(meta, *, source: str) -> dict:
  """rank / time_ms from a region's meta text 'rank=2 time_ms=2410' (what write_labelstudio puts)."""
  if meta is None:
    return {}
  if not isinstance(meta, dict):
    raise errors.DataError(f"{source}: field 'meta' is {safe_json.show(meta)}, expected an object")
  found = {}
  for line in _get(meta, "text", list, where=f"{source}.meta", default=[]):
    for key, value in re.findall(r"\b(rank|time_ms)=(\S+)", str(line)):
      found[key] = value
  return _extras(found, source=source)


def write_labelstudio(path: str, rows: Rows, images: Mapping[str, tuple[str, int, int]], *,
                      url_prefix: str = "") -> None:
  tasks = []
  for n, image in enumerate(sorted(rows), start=1):
    name, h, w = images[image]
    by_annotator = collections.defaultdict(list)
    for r in rows[image]:
      by_annotator[r["annotator"]].append(r)
    annotations = []
    for a in range(max(by_annotator, default=0) + 1):
      result = []
      for k, r in enumerate(by_annotator.get(a, [])):
        meta = f"rank={r['rank']}" + (f" time_ms={r['time_ms']}" if "time_ms" in r else "")
        result.append({"id": f"i{n}a{a}p{k}", "type": "keypointlabels", "from_name": "point",
                       "to_name": "image", "original_width": w, "original_height": h,
                       "image_rotation": 0,
                       "value": {"x": r["x"] / w * 100, "y": r["y"] / h * 100, "width": 0.5,
                                 "keypointlabels": [CLASS_NAMES[r["cls"]]]},
                       "meta": {"text": [meta]}})
      present = sorted({r["cls"] for r in by_annotator.get(a, [])})
      if present:
        result.append({"id": f"i{n}a{a}tags", "type": "choices", "from_name": "classes",
                       "to_name": "image", "value": {"choices": [CLASS_NAMES[c] for c in present]}})
      annotations.append({"result": result, "was_cancelled": False, "ground_truth": False})
    tasks.append({"id": n, "data": {"image": url_prefix + name}, "annotations": annotations})
  files.write_text(path, json.dumps(tasks, indent=1))


def labelstudio_config() -> str:
  """The labeling config (XML) that matches what write_labelstudio writes and read_labelstudio reads."""
  labels = "\n".join(f'    <Label value="{n}"/>' for n in CLASS_NAMES[1:])
  choices = "\n".join(f'    <Choice value="{n}"/>' for n in CLASS_NAMES[1:])
  return (f'<View>\n  <Image name="image" value="$image"/>\n'
          f'  <KeyPointLabels name="point" toName="image">\n{labels}\n  </KeyPointLabels>\n'
          f'  <Choices name="classes" toName="image" choice="multiple">\n{choices}\n  </Choices>\n'
          f'</View>\n')


# ------------------------------------------------------------------------------------------------
# CVAT for images 1.1.


class _Capped:
  """A binary stream that refuses to give more than `limit` bytes (a zip member that lies about
  its size, or is larger than we read)."""

  def __init__(self, stream: IO[bytes], limit: int, source: str):
    self.stream, self.left, self.limit, self.source = stream, limit, limit, source

  def read(self, n: int = -1) -> bytes:
    data = self.stream.read(self.left + 1 if n < 0 else min(n, self.left + 1))
    self.left -= len(data)
    if self.left < 0:
      raise errors.DataError(f"{self.source}: more than {self.limit / 2**20:g} MiB uncompressed; "
                             "export fewer images per file")
    return data


@contextlib.contextmanager
def _cvat_stream(path: str) -> Iterator[IO[bytes]]:
  """The XML bytes of a CVAT export: the file itself, or annotations.xml of an export zip, read
  as a stream cut at MAX_ZIP_XML_BYTES (never the whole member in memory)."""
  if not os.path.isfile(path):
    raise errors.MissingInputError(f"{path}: file not found")
  if not path.lower().endswith(".zip"):
    try:
      f = open(path, "rb")
    except OSError as e:
      raise errors.DataError(f"{path}: cannot read the CVAT file ({e.strerror or e})") from None
    with f:
      yield f
    return
  try:
    z = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
    raise errors.DataError(f"{path}: not a zip archive ({e}); give CVAT's export zip or its "
                           "annotations.xml") from None
  with z:
    try:
      info = z.getinfo("annotations.xml")
    except KeyError:
      raise errors.DataError(f"{path}: the zip holds no annotations.xml (export as 'CVAT for "
                             "images 1.1')") from None
    if info.file_size > MAX_ZIP_XML_BYTES:
      raise errors.DataError(f"{path}: annotations.xml declares {info.file_size} bytes "
                             f"uncompressed, over the {MAX_ZIP_XML_BYTES / 2**20:g} MiB this reader "
                             "takes from a zip; unzip it and give annotations.xml (read as a stream), "
                             "or export fewer images per file")
    try:
      member = z.open(info)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError) as e:
      raise errors.DataError(f"{path}: cannot open annotations.xml in the zip ({e})") from None
    with member:
      yield _Capped(member, MAX_ZIP_XML_BYTES, f"{path}: annotations.xml")


def _cvat_shapes(path: str) -> Iterator[tuple[ET.Element, ET.Element | None]]:
  """The shapes of a CVAT for images 1.1 export in file order, as (image, None) when an <image>
  starts (its attributes are read) and (image, shape) for each of its children once parsed; each
  shape is freed after use, so memory holds one shape, whatever the size of the file or an image.

  Parsed with defusedxml: a DOCTYPE, entities or external references are refused whatever the
  file's encoding (CVAT writes none)."""
  with _cvat_stream(path) as stream:
    depth, root, image = 0, None, None
    try:
      for event, el in defusedxml.ElementTree.iterparse(stream, events=("start", "end"),
                                                         forbid_dtd=True):
        if event == "start":
          depth += 1
          if depth == 1:
            root = el
            if el.tag != "annotations":
              raise errors.DataError(f"{path}: root element is <{el.tag}>, expected <annotations> "
                                     "(CVAT XML)")
          elif depth == 2 and el.tag == "track":
            raise errors.DataError(f"{path}: this is a 'CVAT for video' export; export as 'CVAT "
                                   "for images 1.1'")
          elif depth == 2 and el.tag == "image":
            image = el
            yield image, None
          continue
        depth -= 1
        if depth == 2 and image is not None:   # a child of <image> is complete
          yield image, el
          image.remove(el)
        elif depth == 1:
          image = None
          root.clear()
    except defusedxml.DefusedXmlException as e:
      raise errors.DataError(f"{path}: XML with a DOCTYPE or entities is refused (CVAT writes none; "
                             f"{type(e).__name__})") from None
    except ET.ParseError as e:
      raise errors.DataError(f"{path}: malformed XML ({e})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
      raise errors.DataError(f"{path}: corrupt zip, annotations.xml cannot be read ({e})") from None


def read_cvat(path: str, labels: Labels) -> Rows:
  rows: Rows = {}
  sizes, tags = {}, collections.defaultdict(set)
  report, rank = _Report(path), _Ranker()
  with contextlib.closing(_cvat_shapes(path)) as events:   # the file is closed on an error too
    for el, shape in events:
      if shape is None:   # an <image> starts
        image = files.image_id(el.get("name", ""))
        where = f"{path}: image {safe_json.show(el.get('name'))}"
        if not image:
          raise errors.DataError(f"{path}: an <image> has no name")
        _add_image(rows, image, path)
        sizes[image] = (_size(el.get("height"), source=where, what="height"),
                        _size(el.get("width"), source=where, what="width"))
        continue
      if shape.tag == "tag":
        tags[image].add(labels.cls(shape.get("label"), source=where))
        continue
      if shape.tag != "points":
        report.ignored[f"<{shape.tag}> shapes"] += 1
        continue
      cls = labels.cls(shape.get("label"), source=where)
      extras = _extras({a.get("name"): a.text for a in shape.findall("attribute")}, source=where)
      annotator = extras.get("annotator", 0)
      text = shape.get("points") or ""
      if rank.total + text.count(";") + 1 > MAX_CVAT_CLICKS:   # counted before splitting
        raise errors.DataError(f"{where}: more than {MAX_CVAT_CLICKS} clicks in one CVAT file; "
                               "export fewer images per file and convert each")
      points = [p for p in text.split(";") if p.strip()]
      if not points:
        raise errors.DataError(f"{where}: a <points> shape of label {safe_json.show(shape.get('label'))} has no "
                               f"point (points={safe_json.show(shape.get('points'))}); delete the "
                               "shape in CVAT or give it its click")
      if len(points) > 1 and ("rank" in extras or "time_ms" in extras):
        raise errors.DataError(f"{where}: a <points> shape with several points cannot carry one "
                               "rank / time_ms attribute; use one shape per point")
      for p in points:
        xy = p.split(",")
        if len(xy) != 2:
          raise errors.DataError(f"{where}: points {safe_json.show(shape.get('points'))} must be "
                                 "'x,y;x,y;...'")
        rows[image].append({
            "x": _px(_number(xy[0], source=where, what="x")),
            "y": _px(_number(xy[1], source=where, what="y")),
            "cls": cls, "rank": rank(image, annotator, cls, extras.get("rank")),
            "annotator": annotator,
            **({"time_ms": extras["time_ms"]} if "time_ms" in extras else {})})
  if not rows:
    raise errors.DataError(f"{path}: no <image> elements (an empty task, or not a 'CVAT for "
                           "images 1.1' export)")
  return _finish(rows, tags, sizes, report)


def write_cvat(path: str, rows: Rows, images: Mapping[str, tuple[str, int, int]]) -> None:
  root = ET.Element("annotations")
  ET.SubElement(root, "version").text = "1.1"
  task = ET.SubElement(ET.SubElement(root, "meta"), "task")
  ET.SubElement(task, "name").text = "pointseg_jax clicks"
  ET.SubElement(task, "size").text = str(len(rows))
  ET.SubElement(task, "mode").text = "annotation"
  labels_el = ET.SubElement(task, "labels")
  for name in CLASS_NAMES[1:]:
    label = ET.SubElement(labels_el, "label")
    ET.SubElement(label, "name").text = name
    ET.SubElement(label, "type").text = "any"
    attrs = ET.SubElement(label, "attributes")
    for attr in EXTRA_KEYS:
      a = ET.SubElement(attrs, "attribute")
      ET.SubElement(a, "name").text = attr
      ET.SubElement(a, "mutable").text = "False"
      ET.SubElement(a, "input_type").text = "number"
      ET.SubElement(a, "default_value").text = "1" if attr == "rank" else "0"
      ET.SubElement(a, "values").text = "0\n100000000\n1"
  for n, image in enumerate(sorted(rows)):
    name, h, w = images[image]
    el = ET.SubElement(root, "image", id=str(n), name=name, width=str(w), height=str(h))
    for r in rows[image]:
      shape = ET.SubElement(el, "points", label=CLASS_NAMES[r["cls"]], source="manual",
                            occluded="0", points=f"{_f32(r['x'])!r},{_f32(r['y'])!r}", z_order="0")
      for attr in EXTRA_KEYS:
        if attr in r:
          ET.SubElement(shape, "attribute", name=attr).text = str(r[attr])
    for cls in sorted({r["cls"] for r in rows[image]}):
      ET.SubElement(el, "tag", label=CLASS_NAMES[cls], source="manual")
  ET.indent(root)
  files.write_text(path, '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n")


# ------------------------------------------------------------------------------------------------
# labelme.


def labelme_files(folder: str) -> list[str]:
  """Every .json file under `folder`, subfolders included (labelme saves next to each image, so
  a dataset kept in subfolders has its files there), sorted."""
  found = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
           if n.lower().endswith(".json")]
  if not found:
    raise errors.DataError(f"{folder}: no labelme .json files in this folder or its subfolders")
  return sorted(found)


def read_labelme(path: str, labels: Labels) -> Rows:
  """Rows of a labelme file, or of every labelme file under a folder (image id = the stem of
  imagePath: two files naming the same image id are an error, never one silently kept)."""
  paths = labelme_files(path) if os.path.isdir(path) else [path]
  rows: Rows = {}
  sizes, tags = {}, collections.defaultdict(set)
  report, rank = _Report(path), _Ranker()
  for file in paths:
    data = safe_json.load(file, what="labelme file")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
      raise errors.DataError(f"{file}: not a labelme file (an object with a 'shapes' list)")
    image_path = data.get("imagePath") or file
    if not isinstance(image_path, str):
      raise errors.DataError(f"{file}: field 'imagePath' is {safe_json.show(image_path)}, expected "
                             "a string (the image's file name)")
    image = files.image_id(image_path)
    _add_image(rows, image, file)
    if data.get("imageHeight") is not None and data.get("imageWidth") is not None:
      sizes[image] = (_size(data["imageHeight"], source=file, what="imageHeight"),
                      _size(data["imageWidth"], source=file, what="imageWidth"))
    flags_ = data.get("flags") or {}
    if not isinstance(flags_, dict):
      raise errors.DataError(f"{file}: flags must be an object {{name: true/false}}")
    tags[image] |= {labels.cls(k, source=file) for k, v in flags_.items() if v is True}
    for shape in data["shapes"]:
      if not isinstance(shape, dict):
        raise errors.DataError(f"{file}: every shape must be an object")
      shape_type = shape.get("shape_type", "polygon")
      if shape_type != "point":
        report.ignored[f"{shape_type if isinstance(shape_type, str) else safe_json.show(shape_type)}"
                       " shapes"] += 1
        continue
      pts = shape.get("points")
      if not isinstance(pts, list) or len(pts) != 1 or not isinstance(pts[0], list) or len(pts[0]) != 2:
        raise errors.DataError(f"{file}: a point shape needs points [[x, y]], got "
                             f"{safe_json.show(pts)}")
      cls = labels.cls(shape.get("label"), source=file)
      extras = _extras(shape, source=file)
      annotator = extras.get("annotator", 0)
      rows[image].append({
          "x": _px(_number(pts[0][0], source=file, what="x")),
          "y": _px(_number(pts[0][1], source=file, what="y")),
          "cls": cls, "rank": rank(image, annotator, cls, extras.get("rank")), "annotator": annotator,
          **({"time_ms": extras["time_ms"]} if "time_ms" in extras else {})})
  return _finish(rows, tags, sizes, report)


def write_labelme(out_dir: str, rows: Rows, images: Mapping[str, tuple[str, int, int]],
                  images_dir: str) -> None:
  os.makedirs(out_dir, exist_ok=True)
  for image in sorted(rows):
    name, h, w = images[image]
    present = {r["cls"] for r in rows[image]}
    shapes = [{"label": CLASS_NAMES[r["cls"]], "points": [[_f32(r["x"]), _f32(r["y"])]],
               "group_id": None, "description": "", "shape_type": "point", "flags": {},
               "mask": None, **{k: r[k] for k in EXTRA_KEYS if k in r}} for r in rows[image]]
    data = {"version": LABELME_VERSION,
            "flags": {n: i in present for i, n in enumerate(CLASS_NAMES) if i},
            "shapes": shapes,
            "imagePath": os.path.relpath(os.path.join(images_dir, name), out_dir),
            "imageData": None, "imageHeight": h, "imageWidth": w}
    files.write_text(os.path.join(out_dir, image + ".json"), json.dumps(data, indent=1))


# ------------------------------------------------------------------------------------------------
# Files and the command line.


def read_tool(tool: str, path: str, labels: Labels | None = None, **kwargs) -> Rows:
  labels = labels or Labels()
  readers = {"labelstudio": read_labelstudio, "cvat": read_cvat, "labelme": read_labelme}
  return readers[tool](path, labels, **kwargs)


def write_tool(tool: str, path: str, rows: Rows, images_dir: str, **kwargs) -> None:
  images = image_files(images_dir, rows)
  if tool == "labelstudio":
    write_labelstudio(path, rows, images, **kwargs)
  elif tool == "cvat":
    write_cvat(path, rows, images)
  else:
    write_labelme(path, rows, images, images_dir)


FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global, and
  tests and notebooks import this module for its readers and writers)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_enum("from", None, TOOLS, "Convert this tool's export to our click JSON.", **fv)
  flags.DEFINE_enum("to", None, TOOLS, "Convert our click JSON to this tool's format.", **fv)
  flags.DEFINE_string("input", None, "File (or labelme folder) to convert.", **fv)
  flags.DEFINE_string("output", None, "File (or labelme folder) to write.", **fv)
  flags.DEFINE_string("images", None, "--to: folder of the images (file names and sizes).", **fv)
  flags.DEFINE_list("label_map", [], "Tool label -> VOC class, e.g. kitty=cat,sofa_chair=sofa.", **fv)
  flags.DEFINE_string("image_url_prefix", "", "--to labelstudio: prefix of each task's image URL, "
                      "e.g. /data/local-files/?d=voc/JPEGImages/", **fv)
  flags.DEFINE_string("labelstudio_image_key", "image",
                      "--from labelstudio: task data key of the image.", **fv)
  flags.DEFINE_bool("print_labelstudio_config", False,
                    "Print the Label Studio labeling config and exit.", **fv)
  flags.DEFINE_list("asked", [], "--from: the classes the tool's project asked about (its labels); "
                    "the others are written as unknown, not absent (default: all 20).", **fv)

def main(argv):
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments {argv[1:]}")
  if FLAGS.print_labelstudio_config:
    print(labelstudio_config(), end="")
    return
  src, dst = FLAGS["from"].value, FLAGS.to
  if (src is None) == (dst is None):
    raise errors.ConfigError("give exactly one of --from TOOL (tool -> click JSON) or --to TOOL "
                             f"(click JSON -> tool), TOOL one of {list(TOOLS)}")
  if not FLAGS.input or not FLAGS.output:
    raise errors.ConfigError("--input and --output are required")
  label_map = {}
  for item in FLAGS.label_map:
    if "=" not in item:
      raise errors.ConfigError(f"--label_map {item!r}: use tool_label=voc_name")
    k, v = item.split("=", 1)
    label_map[k.strip()] = v.strip()
  if src:
    kwargs = {"image_key": FLAGS.labelstudio_image_key} if src == "labelstudio" else {}
    labels = Labels(label_map)
    rows = read_tool(src, FLAGS.input, labels, **kwargs)
    asked = sorted({labels.cls(c, source="--asked") for c in FLAGS.asked}) or None
    used = sorted({r["cls"] for clicks in rows.values() for r in clicks})
    if asked is None and len(used) < len(CLASS_NAMES) - 1:
      logging.warning("%s: the clicks use %d of the 20 classes (%s); every image is written with all "
                      "20 asked, so the others read as absent: if the project asked only for some "
                      "classes, pass --asked with them (docs/clicks.md)", FLAGS.input, len(used),
                      ", ".join(CLASS_NAMES[c] for c in used))
    write_ours(FLAGS.output, rows, asked)
  else:
    if not FLAGS.images:
      raise errors.ConfigError(f"--to {dst} needs --images DIR (each image's file name and size)")
    rows = read_ours(FLAGS.input)
    partial = {k: tuple(np.flatnonzero(v[1:]) + 1)
               for k, v in click_json.load_asked(FLAGS.input).items() if not v.all()}
    if partial:
      sets = sorted(set(partial.values()))
      logging.warning("%s: %d images name the classes they were asked about; %s files cannot carry "
                      "that: convert back with --asked %s", FLAGS.input, len(partial), dst,
                      ",".join(CLASS_NAMES[c] for c in sets[0]) if len(sets) == 1 else
                      f"(they differ between images: {len(sets)} sets)")
    kwargs = {"url_prefix": FLAGS.image_url_prefix} if dst == "labelstudio" else {}
    write_tool(dst, FLAGS.output, rows, FLAGS.images, **kwargs)
  n = sum(len(v) for v in rows.values())
  print(f"{n} clicks on {len(rows)} images: {FLAGS.input} -> {FLAGS.output}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
