"""Peak memory of reading hostile CVAT zips (docs/annotate.md, "Converters"). One zip per process,
so each peak (ru_maxrss) is that zip's alone:

    for k in declares_1gib one_points_attribute many_shapes; do python -m bench.cvat_zip_memory $k; done
"""
import os
import resource
import sys
import tempfile
import zipfile

from pointseg_jax import errors
from pointseg_jax.data import convert

HEAD = b'<?xml version="1.0"?>\n<annotations><version>1.1</version>'


def write_zip(kind: str, path: str) -> None:
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    with z.open("annotations.xml", "w", force_zip64=True) as f:
      f.write(HEAD)
      if kind == "declares_1gib":           # 1 GiB of blanks: a 1 MB zip bomb
        for _ in range(1024):
          f.write(b" " * 2**20)
      elif kind == "one_points_attribute":  # under the size cap: "1,2;" is a click in 4 bytes
        f.write(b'<image name="a.jpg" width="9" height="9"><points label="dog" points="')
        for _ in range(60):
          f.write(b"1,2;" * 2**18)
        f.write(b'1,2"/></image>')
      elif kind == "many_shapes":           # under the size cap: one minimal shape per click
        shape = b'<points label="dog" points="1,2"/>'
        f.write(b'<image name="a.jpg" width="9" height="9">')
        for _ in range(60 * 2**20 // len(shape)):
          f.write(shape)
        f.write(b"</image>")
      else:
        raise SystemExit(f"unknown kind {kind!r}")
      f.write(b"</annotations>")


def main(kind: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, f"{kind}.zip")
    write_zip(kind, path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
      rows = convert.read_tool("cvat", path)
      result = f"read {sum(map(len, rows.values()))} clicks"
    except errors.DataError as e:
      result = f"refused: {str(e).split(': ', 1)[1]}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{kind}: zip {os.path.getsize(path) / 1e6:.1f} MB; peak RSS {peak / 1024:.0f} MiB "
          f"(before reading {before / 1024:.0f} MiB); {result}")


if __name__ == "__main__":
  main(sys.argv[1])
