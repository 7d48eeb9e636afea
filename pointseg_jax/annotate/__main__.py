r"""The click-annotation tool (docs/annotate.md).

  python -m pointseg_jax.annotate serve --images DIR --gold gold.json --db project.db
      create the project on first use (tasks of 50 images, 10 of them gold), print each new
      annotator's link and serve the page (http://127.0.0.1:8000 by default)
      (and, once, the organiser's dashboard link: http://HOST:PORT/admin#token=...)
  python -m pointseg_jax.annotate add-annotator --db project.db --name alice
  python -m pointseg_jax.annotate admin-token --db project.db   a new dashboard token
  python -m pointseg_jax.annotate report --db project.db        seconds per image vs the paper
  python -m pointseg_jax.annotate export --db project.db --output clicks.json
  python -m pointseg_jax.annotate gold --masks VOC2012/SegmentationClass \
      --instances VOC2012/SegmentationObject --ids_file val.txt --num 50 --output gold.json
"""
import json
import os
import socket

from absl import flags
from absl import logging

from pointseg_jax import CLASS_NAMES
from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax import labels
from pointseg_jax.annotate import db
from pointseg_jax.annotate import export as export_lib
from pointseg_jax.annotate import qc
from pointseg_jax.annotate import report as report_lib
from pointseg_jax.annotate import runner

COMMANDS = ("serve", "add-annotator", "admin-token", "report", "export", "gold")
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("db", None,
                      "Project database (SQLite file); serve creates it on first use.", **fv)
  flags.DEFINE_string("images", None,
                      "serve: folder of the images to annotate (and the gold images).", **fv)
  flags.DEFINE_string("gold", None,
                      "serve: gold file, JSON {image: [{cls, box}]} (docs/annotate.md).", **fv)
  flags.DEFINE_list("classes", list(CLASS_NAMES[1:]),
                    "serve: target classes (VOC names or ids).", **fv)
  flags.DEFINE_list("task_types", ["1point"], "serve: task kinds, of 1point, allpoints.", **fv)
  flags.DEFINE_integer("task_size", 50, "serve: images per task, gold included (paper: 50).", **fv)
  flags.DEFINE_integer("gold_per_task", 10, "serve: gold images per task (paper: 10).", **fv)
  flags.DEFINE_integer("min_gold_right", 8,
                       "serve: gold images that must be right (paper: 8).", **fv)
  flags.DEFINE_integer("redundancy", 1, "serve: annotators who must pass each task.", **fv)
  flags.DEFINE_integer("seed", 0, "serve: seed of the gold planting and image order.", **fv)
  flags.DEFINE_bool("allow_weak_gold", False,
                    "serve: create the project even when, for some class, the gold set is too "
                    "small for the check to catch a careless annotator (docs/annotate.md).", **fv)
  flags.DEFINE_string("host", "127.0.0.1",
                      "serve: address to listen on (0.0.0.0: every interface).", **fv)
  flags.DEFINE_integer("port", 8000, "serve: port (0: any free port).", **fv)
  flags.DEFINE_string("public_url", None,
                      "serve: the address annotators use, e.g. https://annotate.example.org behind "
                      "a TLS reverse proxy (docs/annotate.md, Deploy); the printed links use it.",
                      **fv)
  flags.DEFINE_integer("workers", 1, "serve: worker processes (each serves any request; SQLite "
                       "WAL keeps them consistent). About one per core.", **fv)
  flags.DEFINE_multi_string("add_annotator", [],
                            "serve: create this annotator and print its link.", **fv)
  flags.DEFINE_string("name", None, "add-annotator: the annotator's name.", **fv)
  flags.DEFINE_bool("include_rejected", False, "report: also time the tasks that failed QC.", **fv)
  flags.DEFINE_string("json", None, "report: also write the numbers to this JSON file.", **fv)
  flags.DEFINE_string("output", None, "export / gold: file to write.", **fv)
  flags.DEFINE_bool("include_gold", False, "export: also export the answers on gold images.", **fv)
  flags.DEFINE_string("masks", None, "gold: folder of VOC class PNGs (SegmentationClass).", **fv)
  flags.DEFINE_string("instances", None,
                      "gold: folder of VOC instance PNGs (SegmentationObject).", **fv)
  flags.DEFINE_string("ids_file", None,
                      "gold: text file of image ids, one a line (default: all masks).", **fv)
  flags.DEFINE_integer("num", None, "gold: use the first NUM ids only.", **fv)


# serve flags that only matter when the project is created.
CREATE_FLAGS = ("images", "gold", "classes", "task_types", "task_size", "gold_per_task",
                "min_gold_right", "redundancy", "seed", "allow_weak_gold")


def _require(*names: str) -> None:
  missing = [f"--{n}" for n in names if FLAGS[n].value is None]
  if missing:
    raise errors.ConfigError(f"{' and '.join(missing)} required")


def _config() -> db.Config:
  return db.Config(
      images_dir=FLAGS.images,
      classes=tuple(files.class_id(int(c) if c.isdigit() else c, source="--classes")
                    for c in FLAGS.classes),
      kinds=tuple(k.lower() for k in FLAGS.task_types), task_size=FLAGS.task_size,
      gold_per_task=FLAGS.gold_per_task, min_gold_right=FLAGS.min_gold_right,
      redundancy=FLAGS.redundancy, seed=FLAGS.seed, allow_weak_gold=FLAGS.allow_weak_gold)


def open_or_create() -> db.Store:
  _require("db")
  if os.path.exists(FLAGS.db):
    store = db.Store(FLAGS.db)
    given = [f"--{n}" for n in CREATE_FLAGS if FLAGS[n].present and n != "images"]
    if FLAGS.images and os.path.realpath(FLAGS.images) != store.config.images_dir:
      raise errors.ConfigError(f"{FLAGS.db} serves {store.config.images_dir}, not {FLAGS.images}; "
                               "use a new --db for another folder")
    if given:
      logging.warning("%s exists: %s only apply when a project is created; ignored", FLAGS.db,
                      ", ".join(given))
    return store
  _require("images", "gold")
  return db.create(FLAGS.db, _config(), FLAGS.gold)


def serve() -> None:
  if FLAGS.workers < 1:
    raise errors.ConfigError(f"--workers={FLAGS.workers}: give at least 1")
  if FLAGS.public_url and not FLAGS.public_url.startswith(("https://", "http://")):
    raise errors.ConfigError(f"--public_url={FLAGS.public_url}: give a URL starting with https://")
  sock = runner.bind(FLAGS.host, FLAGS.port)   # a busy port fails before anything is written
  store = open_or_create()
  tokens = {n: store.add_annotator(n) for n in FLAGS.add_annotator}
  if not tokens:
    first = store.add_first_annotator("annotator-1")   # atomic: once, even with two servers
    tokens = {"annotator-1": first} if first else {}
  admin = store.ensure_admin_token()
  host = socket.gethostname() if FLAGS.host in ("0.0.0.0", "::", "") else FLAGS.host
  local = f"http://{host}:{sock.getsockname()[1]}/"
  # Behind a TLS reverse proxy the links annotators open are the proxy's.
  base = FLAGS.public_url.rstrip("/") + "/" if FLAGS.public_url else local
  print(f"serving {store.config.images_dir} on {local}", flush=True)
  for name, token in tokens.items():
    print(f"annotator {name}: {base}#token={token}", flush=True)
  if admin:
    print(f"dashboard: {base}admin#token={admin}", flush=True)
  else:
    print(f"dashboard: {base}admin (its token was printed when the project was created; "
          f"`python -m pointseg_jax.annotate admin-token --db {FLAGS.db}` makes a new one)",
          flush=True)
  try:
    runner.run(store, sock, FLAGS.workers)
  finally:
    sock.close()
    store.close()


def admin_token() -> None:
  _require("db")
  token = db.Store(FLAGS.db).rotate_admin_token()
  print(f"dashboard: http://HOST:PORT/admin#token={token}  (the previous admin token no longer works)")


def add_annotator() -> None:
  _require("db", "name")
  token = db.Store(FLAGS.db).add_annotator(FLAGS.name)
  print(f"annotator {FLAGS.name}: token {token}  (page: http://HOST:PORT/#token={token})")


def report() -> None:
  _require("db")
  numbers = report_lib.compute(db.Store(FLAGS.db), include_rejected=FLAGS.include_rejected)
  print(report_lib.format_report(numbers))
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(numbers, f, indent=1)


def export() -> None:
  _require("db", "output")
  counts = export_lib.export(db.Store(FLAGS.db), FLAGS.output, include_gold=FLAGS.include_gold)
  print(f"{counts['clicks']} clicks on {counts['images']} images -> {FLAGS.output}")


def gold() -> None:
  _require("masks", "output")
  if not os.path.isdir(FLAGS.masks):
    raise errors.MissingInputError(f"--masks {FLAGS.masks}: folder not found")
  if FLAGS.ids_file:
    if not os.path.isfile(FLAGS.ids_file):
      raise errors.MissingInputError(f"--ids_file {FLAGS.ids_file}: file not found")
    with open(FLAGS.ids_file, encoding="utf-8") as f:
      ids = [line.strip() for line in f if line.strip()]
  else:
    ids = sorted(os.path.splitext(n)[0] for n in os.listdir(FLAGS.masks) if n.endswith(".png"))
  ids = ids[:FLAGS.num] if FLAGS.num else ids
  out = {}
  for image in ids:
    mask = labels.read_label_png(os.path.join(FLAGS.masks, image + ".png"))
    inst = None
    if FLAGS.instances:
      inst = labels.read_label_png(os.path.join(FLAGS.instances, image + ".png"), what="instance")
    out[image] = qc.gold_from_masks(mask, inst)
  with open(FLAGS.output, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(f"{sum(len(v) for v in out.values())} boxes on {len(out)} gold images -> {FLAGS.output}")


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise errors.ConfigError(f"usage: python -m pointseg_jax.annotate {{{'|'.join(COMMANDS)}}} "
                             f"[flags]; got {argv[1:]}")
  {"serve": serve, "add-annotator": add_annotator, "admin-token": admin_token, "report": report,
   "export": export, "gold": gold}[argv[1]]()


if __name__ == "__main__":
  define_flags()
  cli.run(main)
