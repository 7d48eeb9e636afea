"""notebooks/inspect_predictions.ipynb: committed without outputs, and executed top to bottom
(nbclient, a real kernel) on a finished tiny run, so it cannot rot."""
import json
import pathlib
import re

import nbformat
from nbclient import NotebookClient
import pytest

pytestmark = pytest.mark.e2e   # process-level: subprocesses / a notebook kernel (make test-fast skips)


NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "inspect_predictions.ipynb"


def test_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code
  for cell in code:
    assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
  assert set(nb.metadata) <= {"kernelspec", "language_info"}   # no widget state, no run metadata
  assert "parameters" in code[1].metadata.get("tags", [])     # papermill-style parameters cell


def test_notebook_runs_top_to_bottom_on_a_tiny_run(tiny_run, monkeypatch):
  workdir, _ = tiny_run
  nb = nbformat.read(NOTEBOOK, as_version=4)
  monkeypatch.setenv("POINTSEG_WORKDIR", str(workdir))   # the parameters cell reads it
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  figures = [o for o in outputs if "image/png" in o.get("data", {})]
  # first images, per-class IoU, confusion matrix, worst images, training curves
  assert len(figures) == 5
  text = "".join(o.get("text", "") for o in outputs)
  assert "regime point, step 6" in text
  assert "lowest per-image mIoU: id " in text
  # The install cell did nothing (the package is installed here): no pip run, no output.
  assert nb.cells[1].outputs == []
  # The notebook's mIoU over the whole val split is the run's own final eval.
  miou = float(re.search(r"16 images, mIoU ([\d.]+) %", text).group(1))
  summary = json.loads((workdir / "summary.json").read_text())
  assert miou == pytest.approx(100 * summary["eval/miou"], abs=0.05)


def test_install_cell_outside_a_checkout_asks_for_the_repository_url(tmp_path, monkeypatch):
  """On Colab (package missing, no checkout around) the placeholder URL is a clear error, not a
  git clone of a repository that does not exist."""
  nb = nbformat.read(NOTEBOOK, as_version=4)
  install = [c for c in nb.cells if c.cell_type == "code"][0].source
  (tmp_path / "nb").mkdir()
  monkeypatch.chdir(tmp_path / "nb")   # its parent holds no setup.cfg
  monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
  calls = []
  monkeypatch.setattr("subprocess.run", lambda *a, **k: calls.append(a))
  with pytest.raises(SystemExit, match="Set REPO_URL in this cell"):
    exec(compile(install, "install-cell", "exec"), {})  # pylint: disable=exec-used
  assert calls == []
