"""The annotation page in a real headless Chromium (Playwright driving the system's chromium, never a
downloaded browser): click on images, pass and fail the gold check, keyboard shortcuts, undo, a
phone-sized screen, no request leaving the server; and end to end: annotate a fabricated VOC tree in
the browser, export, build voc2012_points from the export and train a tiny run on it.

  python tests/test_annotate_browser.py docs/images/annotate.png   # the screenshot in the docs
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pointseg_jax import CLASS_NAMES
from pointseg_jax.annotate import dashboard
from pointseg_jax.annotate import db
from pointseg_jax.annotate import export
from pointseg_jax.data import click_json

from annotate_util import DOG, H, Client, do_task, make_store, right_answer, serving, task_images
from annotate_util import wrong_answer

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
  pytest.skip(f"no chromium at {CHROMIUM}: install the Debian package `chromium` "
              "(.ci/run does when it runs as root)", allow_module_level=True)
pytestmark = pytest.mark.e2e   # a real browser against a server
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
  with sync_api.sync_playwright() as p:
    b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


def open_page(browser, port, token, viewport=(900, 700), path="/"):
  """A fresh browser context (its own sessionStorage) on the annotator's link; records requests."""
  context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
  page = context.new_page()
  page.requests = []
  page.on("request", lambda r: page.requests.append(r.url))
  page.errors = []
  page.on("pageerror", lambda e: page.errors.append(str(e)))
  page.goto(f"http://127.0.0.1:{port}{path}#token={token}")
  return page


_NEXT = """([prev]) => {
  const ready = document.getElementById('marks').dataset.ready;
  const msg = document.getElementById('message');
  return (ready && ready !== prev && !document.getElementById('frame').hidden) ||
         (!msg.hidden && /Task (accepted|rejected)|No tasks left/.test(msg.textContent));
}"""


def wait_next(page, prev):
  page.wait_for_function(_NEXT, arg=[prev], timeout=20000)
  if page.is_visible("#frame"):
    return page.get_attribute("#marks", "data-ready")
  return None


def click_image(page, x, y):
  """Click image pixel (x, y) (image coordinates) on the page."""
  box = page.locator("#marks").bounding_box()
  im_w, im_h = (float(v) for v in page.get_attribute("#marks", "viewBox").split()[2:])
  page.mouse.click(box["x"] + x * box["width"] / im_w, box["y"] + y * box["height"] / im_h)


def annotate_task(page, store, answer_fn, *, ready=None, undo_once=False, button_once=False):
  """Answer every image of the task on screen the way a person would: click, N, Enter.

  answer_fn(image name, kind, cls) -> [(x, y, t)]; returns {image name: clicks made}."""
  ready = ready or wait_next(page, None)
  made = {}
  while ready is not None:
    assignment, pos = (int(v) for v in ready.split(":"))
    with store.transaction(write=False) as conn:
      kind, cls = conn.execute("SELECT t.kind, t.cls FROM assignments a JOIN tasks t ON "
                               "t.id = a.task WHERE a.id = ?", (assignment,)).fetchone()
    name = task_images(store, assignment)[pos]
    clicks = [(x, y) for x, y, _ in answer_fn(name, kind, cls)]
    made[name] = clicks
    if not clicks:
      if button_once:
        page.click("#absent")
        button_once = False
      else:
        page.keyboard.press("n")
    elif kind == "1point":
      click_image(page, *clicks[0])
    else:
      if undo_once:              # a misclick, taken back with Z
        click_image(page, 1, 1)
        assert page.locator("#marks circle").count() == 1
        page.keyboard.press("z")
        assert page.locator("#marks circle").count() == 0
        undo_once = False
      for x, y in clicks:
        click_image(page, x, y)
      assert page.locator("#marks circle").count() == len(clicks)     # visible, numbered clicks
      assert page.locator("#marks text").all_text_contents() == [str(i + 1) for i in range(len(clicks))]
      page.keyboard.press("Enter")
    ready = wait_next(page, ready)
  return made


def test_annotate_pass_and_fail_the_gold_check(browser, tmp_path):
  store = make_store(str(tmp_path), n_work=4, classes=(DOG,), task_size=6)   # 1Point + AllPoints
  alice, bob = store.add_annotator("alice"), store.add_annotator("bob")
  with serving(store) as port:
    # Bob clicks wrongly on the gold images: his 1Point task is rejected.
    page = open_page(browser, port, bob)
    first = wait_next(page, None)
    assert "Click on one dog" in page.inner_text("#prompt")
    annotate_task(page, store, wrong_answer, ready=first, button_once=True)
    assert "Task rejected: 0 of 2 check images right (2 needed)" in page.inner_text("#message")
    # Alice does the same task right, then the AllPoints task (with an undone misclick).
    page = open_page(browser, port, alice)
    made = annotate_task(page, store, right_answer)
    assert "Task accepted: 2 of 2 check images right" in page.inner_text("#message")
    page.keyboard.press("Enter")                                   # next task
    first = wait_next(page, None)
    assert "Click on every dog, then Enter" in page.inner_text("#prompt")
    made_all = annotate_task(page, store, right_answer, ready=first, undo_once=True)
    assert "Task accepted: 2 of 2" in page.inner_text("#message")
    page.keyboard.press("Enter")
    page.wait_for_function("() => /No tasks left/.test(document.getElementById('message').textContent)")
    # A phone-sized screen: the image and every control fit the width.
    page.set_viewport_size({"width": 360, "height": 640})
    for sel in ("#bar", "#controls"):
      box = page.locator(sel).bounding_box()
      assert box["x"] >= 0 and box["x"] + box["width"] <= 360
    # Nothing but this server was contacted (no CDN), and the page raised no error.
    base = f"http://127.0.0.1:{port}/"
    assert all(u.startswith(base) or u.startswith("blob:") for u in page.requests), page.requests
    assert not page.errors
  work = {n for n in made if n.startswith("work")}
  assert work == {n for n in made_all if n.startswith("work")} and len(work) == 4
  with store.transaction(write=False) as conn:
    assert dict(conn.execute("SELECT an.name, COUNT(*) FROM assignments a JOIN annotators an ON "
                             "an.id = a.annotator GROUP BY an.name, a.status ORDER BY a.status")
                ) == {"alice": 2, "bob": 1}
  # Export: the clicks alice made (1Point as annotator 1, AllPoints as annotator 0), at the pixels
  # she clicked (the page maps screen to image pixels; 1 px tolerance for the mouse's integer grid).
  path = str(tmp_path / "clicks.json")
  export.export(store, path)
  clicks = click_json.load_clicks(path)
  assert sorted(clicks) == [f"work_{i:02d}" for i in range(4)]
  for image, c in clicks.items():
    np.testing.assert_array_equal(c["annotator"], [0, 1])
    np.testing.assert_array_equal(c["cls"], [DOG, DOG])
    np.testing.assert_allclose(c["x"], [made_all[image + ".jpg"][0][0], made[image + ".jpg"][0][0]],
                               atol=1.0)
    np.testing.assert_allclose(c["y"], [H / 2, H / 2], atol=1.0)
    assert (c["time_ms"] >= 0).all()


def test_token_form_and_bad_token(browser, tmp_path):
  store = make_store(str(tmp_path), n_work=2, classes=(DOG,), kinds=("1point",), task_size=4)
  token = store.add_annotator("alice")
  with serving(store) as port:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token-input", "not-a-real-token")
    page.press("#token-input", "Enter")
    page.wait_for_selector("#login:not([hidden])")
    page.wait_for_function("() => /Unknown token/.test(document.getElementById('status').textContent)")
    page.fill("#token-input", token)
    page.press("#token-input", "Enter")
    page.wait_for_selector("#marks[data-ready]")
    assert page.url == f"http://127.0.0.1:{port}/"        # the token never sits in the address bar


def test_campaign_dashboard(browser, tmp_path):
  """The organiser's page: progress, accuracy and time per annotator, a flag, revoke, a new link,
  export; every number as the API gives it, nothing loaded from elsewhere."""
  store = make_store(str(tmp_path))
  alice, bob = store.add_annotator("alice"), store.add_annotator("bob")
  admin = store.ensure_admin_token()
  with serving(store) as port:
    do_task(store, Client(port, alice), right=True)      # 1Point dog, task 1: accepted
    do_task(store, Client(port, bob), right=False)       # 1Point dog, task 2: rejected
    page = open_page(browser, port, admin, viewport=(1200, 800), path="/admin")
    page.wait_for_selector("#annotators tbody tr[data-name='bob']")
    assert page.url == f"http://127.0.0.1:{port}/admin"    # the token left the address bar
    row = "#progress tr[data-kind='1point'][data-cls='dog']"
    assert page.text_content(f"{row} td.complete") == "1 / 2"
    numbers = dashboard.campaign(store)
    people = {a["name"]: a for a in numbers["annotators"]}
    a_row, b_row = "#annotators tr[data-name='alice']", "#annotators tr[data-name='bob']"
    assert page.text_content(f"{a_row} td.gold") == "2 of 2 (100%)"
    assert page.text_content(f"{a_row} td.time-1point") == (
        f"{people['alice']['per_image_s']['1point']['voc_formula']:.1f} s")
    assert page.text_content("#paper") == "22.1 s (1Point), 23.2 s (AllPoints)"
    assert "flagged" in page.get_attribute(b_row, "class")
    assert page.text_content(f"{b_row} td.flags") == "; ".join(people["bob"]["flags"])
    assert "flagged" not in (page.get_attribute(a_row, "class") or "")

    page.click(f"{a_row} button[data-action='revoke']")
    page.wait_for_function(f"() => document.querySelector(\"{a_row} td.token\").textContent "
                           "=== 'revoked'")
    assert Client(port, alice).request("GET", "/api/me")[0] == 401
    page.click(f"{a_row} button[data-action='rotate']")
    page.wait_for_function("() => /#token=/.test(document.getElementById('notice').textContent)")
    new = page.text_content("#notice").split("#token=")[1].strip()
    assert Client(port, new).request("GET", "/api/me")[1]["accepted"] == 1
    page.wait_for_function(f"() => document.querySelector(\"{a_row} td.token\").textContent "
                           "=== 'active'")

    page.fill("#add-name", "carol")
    page.click("#add button")
    page.wait_for_selector("#annotators tbody tr[data-name='carol']")

    with page.expect_download() as download:
      page.click("#export")
    export.export(store, str(tmp_path / "cli.json"))
    assert json.load(open(download.value.path())) == json.load(open(tmp_path / "cli.json"))
    assert not page.errors
    assert all(u.startswith(f"http://127.0.0.1:{port}/") or u.startswith("blob:")
               for u in page.requests), page.requests

    page = open_page(browser, port, "wrong", path="/admin")
    page.wait_for_selector("#login:not([hidden])")
    assert "Wrong or old admin token" in page.text_content("#error")
    page.fill("#token-input", admin)
    page.press("#token-input", "Enter")
    page.wait_for_selector("#annotators tbody tr[data-name='carol']")


# ----------------------------------------------------------------------------------------------
# End to end: browser -> export -> voc2012_points -> tiny training run.


@pytest.mark.slow
def test_browser_to_dataset_to_training(browser, tmp_path):
  import tensorflow_datasets as tfds
  from helpers import load_config
  from voc_tree import VOC_VAL, make_tree
  from pointseg_jax import train
  from pointseg_jax.data import prepare
  from pointseg_jax.data.voc2012_points import voc2012_points as vp

  root = tmp_path / "manual"
  root.mkdir()
  truth, _, _ = make_tree(root)
  voc = root / "VOCdevkit" / "VOC2012"
  gold = tmp_path / "gold.json"
  r = subprocess.run([sys.executable, "-m", "pointseg_jax.annotate", "gold",
                      f"--masks={voc / 'SegmentationClass'}", f"--instances={voc / 'SegmentationObject'}",
                      f"--ids_file={voc / 'ImageSets/Segmentation/val.txt'}", f"--output={gold}"],
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  assert sorted(json.loads(gold.read_text())) == sorted(VOC_VAL)
  work = sorted(set(truth) - set(VOC_VAL))
  cls = int(truth[work[0]][0][truth[work[0]][0] < 255].max())   # a class of the first work image
  store = db.create(str(tmp_path / "p.db"), db.Config(
      images_dir=str(voc / "JPEGImages"), classes=(cls,), kinds=("1point",), task_size=6,
      gold_per_task=2, min_gold_right=2, allow_weak_gold=True), str(gold))
  token = store.add_annotator("alice")

  def truthful(name, kind, c):          # click the centre of mass of the class, if present
    mask = truth[os.path.splitext(name)[0]][0]
    ys, xs = np.nonzero(mask == c)
    if not len(ys):
      return []
    inside = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)   # a pixel of the class
    return [(xs[inside] + 0.5, ys[inside] + 0.5, 0)]

  with serving(store) as port:
    page = open_page(browser, port, token)
    for _ in range(1):                   # 4 work images: one task (+ the 2 gold images; with
      annotate_task(page, store, truthful)   # only 2, a 2nd task of the class would show them again)
      assert "Task accepted" in page.inner_text("#message")
      page.keyboard.press("Enter")
  (root / vp.SUPP_JSON).unlink()
  export.export(store, str(root / vp.MAIN_JSON))
  exported = click_json.load_clicks(str(root / vp.MAIN_JSON))
  assert sorted(exported) == work
  data_dir = str(tmp_path / "tfds")
  builder = prepare("voc2012_points", data_dir, manual_dir=str(root))
  train_examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
  stored = {ex["id"].decode(): ex["clicks"] for ex in train_examples}
  # Only `cls` was asked: every other class is unknown for the exported images, never absent.
  asked = {ex["id"].decode(): ex["asked"].tolist() for ex in train_examples}
  assert set(exported) <= set(asked)
  for image in exported:
    assert asked[image] == [c in (0, cls) for c in range(21)], image
  for image in set(stored) & set(exported):
    np.testing.assert_array_equal(stored[image]["x"], exported[image]["x"])
    np.testing.assert_array_equal(stored[image]["cls"], exported[image]["cls"])
    mask = truth[image][0]
    c = stored[image]
    assert (mask[c["y"].astype(int), c["x"].astype(int)] == c["cls"]).all()  # on the object
  config = load_config("point", "tiny", data__dataset="voc2012_points", data__manual_dir=str(root),
                       data__data_dir=data_dir, train__num_steps=2, train__eval_every=2,
                       train__checkpoint_every=2, train__progress_bar=False)
  summary = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["step"] == 2 and 0.0 <= summary["eval/miou"] <= 1.0


# ----------------------------------------------------------------------------------------------
# The screenshot in docs/annotate.md.


def screenshot(path: str) -> None:
  """An AllPoints task on a synthetic scene (procedural, no licence attached), every instance of the
  target class clicked (deepest pixel of each), as an annotator would before pressing Enter."""
  import io
  import tempfile
  from PIL import Image
  from scipy import ndimage
  from pointseg_jax.data.synthetic_points import scenes
  for seed in range(100):                       # a scene with >= 2 instances of one class
    scene = scenes.render_scene(np.random.default_rng(seed), 300, 400)
    inst, mask = scene["instance_mask"], scene["mask"]
    ids = [k for k in np.unique(inst) if 0 < k < 255]
    by_class = {}
    for k in ids:
      vals = mask[inst == k]
      vals = vals[(vals >= 1) & (vals <= 20)]
      if vals.size > 300:
        by_class.setdefault(int(np.bincount(vals).argmax()), []).append(k)
    cls = next((c for c, ks in by_class.items() if len(ks) >= 2), None)
    if cls is not None:
      break
  with tempfile.TemporaryDirectory() as d:
    images = os.path.join(d, "images")
    os.makedirs(images)
    Image.fromarray(scene["image"]).save(os.path.join(images, "scene.jpg"), quality=92)
    other = scenes.render_scene(np.random.default_rng(1000), 300, 400)["image"]
    Image.fromarray(other).save(os.path.join(images, "gold.jpg"), quality=92)
    with open(os.path.join(d, "gold.json"), "w") as f:
      json.dump({"gold": []}, f)
    store = db.create(os.path.join(d, "p.db"), db.Config(
        images_dir=images, classes=(cls,), kinds=("allpoints",), task_size=2, gold_per_task=1,
        min_gold_right=1, allow_weak_gold=True), os.path.join(d, "gold.json"))
    token = store.add_annotator("alice")
    with serving(store) as port, sync_api.sync_playwright() as p:
      b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
      page = open_page(b, port, token, viewport=(760, 520))
      ready = wait_next(page, None)
      if task_images(store, int(ready.split(":")[0]))[0] == "gold.jpg":
        page.keyboard.press("n")
        ready = wait_next(page, ready)
      for k in by_class[cls]:
        depth = ndimage.distance_transform_edt(inst == k)
        y, x = np.unravel_index(np.argmax(depth), depth.shape)
        click_image(page, x + 0.5, y + 0.5)
      png = page.screenshot()
      b.close()
  # 256 colours: a third of the bytes, no visible change for a flat UI.
  Image.open(io.BytesIO(png)).convert("RGB").quantize(
      256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
  print(f"{CLASS_NAMES[cls]} x {len(by_class[cls])}: wrote {path}")


def dashboard_screenshot(path: str) -> None:
  """The dashboard with three annotators: one good, one rejected and revoked, one just started."""
  import io
  import tempfile
  from PIL import Image
  with tempfile.TemporaryDirectory() as d:
    store = make_store(d)
    tokens = {n: store.add_annotator(n) for n in ("alice", "bob", "carol")}
    admin = store.ensure_admin_token()
    with serving(store) as port, sync_api.sync_playwright() as p:
      for name, right in (("alice", True), ("bob", False), ("alice", True)):
        do_task(store, Client(port, tokens[name]), right=right)
      Client(port, tokens["carol"]).task()
      b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
      page = open_page(b, port, admin, viewport=(1100, 760), path="/admin")
      page.wait_for_selector("#annotators tbody tr[data-name='carol']")
      page.click("#annotators tr[data-name='bob'] button[data-action='revoke']")
      page.wait_for_function("() => document.querySelector(\"#annotators tr[data-name='bob'] "
                             "td.token\").textContent === 'revoked'")
      png = page.screenshot(full_page=True)
      b.close()
  Image.open(io.BytesIO(png)).convert("RGB").quantize(
      256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
  print(f"wrote {path}")


if __name__ == "__main__":   # python tests/test_annotate_browser.py PAGE.png [DASHBOARD.png]
  screenshot(sys.argv[1])
  if len(sys.argv) > 2:
    dashboard_screenshot(sys.argv[2])
