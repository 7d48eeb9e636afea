// Point annotation page (Bearman et al. 2016, Fig. 3): a target class, a batch of images; click one
// instance (1Point) or every instance (AllPoints), or mark the class "not present".
// Keys: click = point, N = not present, Z / Backspace / Ctrl+Z = undo, Enter / Space = done (next
// image or next task), Left = previous image, Right = next answered image.
// Answers are queued (and kept in localStorage until the server acknowledges them), sent one at a
// time with an idempotency key and a sequence number, and retried with backoff when offline.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PRETTY = { diningtable: "dining table", pottedplant: "potted plant", tvmonitor: "TV / monitor" };
  const S = {
    token: null, me: null, task: null, pos: 0, clicks: [], t0: 0, seq: 0, busy: true,
    answers: new Map(), images: new Map(), queue: [], sending: false, waiters: [], retry: 0,
  };

  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

  function randomKey() {  // crypto.getRandomValues works on plain http too (randomUUID does not)
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + S.token }, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    const json = (r.headers.get("Content-Type") || "").startsWith("application/json");
    const data = json ? await r.json() : await r.blob();
    if (!r.ok) {
      const e = new Error((json && data.error) || r.statusText);
      e.status = r.status;
      throw e;
    }
    return data;
  }

  // ---- status line and messages ------------------------------------------------------------

  function setStatus(text, warn) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("warn", !!warn);
  }

  function showMessage(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = kind || "";
    m.hidden = false;
    $("frame").hidden = true;
  }

  // ---- the answer queue ----------------------------------------------------------------------

  const queueKey = () => "pending:" + S.token.slice(0, 16);
  const saveQueue = () => localStorage.setItem(queueKey(), JSON.stringify(S.queue));

  function loadQueue() {
    try { S.queue = JSON.parse(localStorage.getItem(queueKey()) || "[]"); } catch (e) { S.queue = []; }
  }

  function enqueue(item) {
    S.queue.push(item);
    saveQueue();
    pump();
  }

  async function pump() {
    if (S.sending) return;
    S.sending = true;
    while (S.queue.length) {
      setStatus(`saving… (${S.queue.length})`);
      try {
        await api("POST", "/api/answer", S.queue[0]);
        S.queue.shift();
        saveQueue();
        S.retry = 0;
      } catch (e) {
        if (e.status === 401) { S.sending = false; return logout("Your token is no longer valid."); }
        if (e.status && e.status < 500 && e.status !== 408 && e.status !== 429) {
          S.queue.shift();   // refused for good (the message says why): never retried
          saveQueue();
          setStatus("answer refused: " + e.message, true);
          await sleep(1500);
        } else {
          S.retry = Math.min(S.retry + 1, 6);
          setStatus("connection lost, retrying…", true);
          await sleep(200 * 2 ** S.retry);
        }
      }
    }
    S.sending = false;
    setStatus("all saved");
    S.waiters.splice(0).forEach((f) => f());
  }

  const drained = () => (S.queue.length === 0 && !S.sending)
    ? Promise.resolve() : new Promise((res) => { S.waiters.push(res); pump(); });

  // ---- tasks and images ----------------------------------------------------------------------

  async function loadTask() {
    S.busy = true;
    S.task = null;
    $("next-task").hidden = true;
    showMessage("Loading…");
    let t;
    try {
      t = await api("GET", "/api/task");
    } catch (e) {
      if (e.status === 401) return logout("Unknown token.");
      showMessage("Cannot reach the server (" + e.message + "); retrying…", "bad");
      await sleep(2000);
      return loadTask();
    }
    if (t.done) return showMessage("No tasks left for you. Thank you!", "ok");
    S.images.forEach((p) => p.then((u) => URL.revokeObjectURL(u), () => {}));
    S.images.clear();
    S.task = t;
    S.answers = new Map(Object.entries(t.answers).map(([p, a]) => [Number(p), a]));
    S.seq = t.seq;
    for (const q of S.queue) {   // answers not yet acknowledged count as given
      if (q.assignment !== t.assignment) continue;
      S.answers.set(q.pos, { absent: q.absent, clicks: q.clicks });
      S.seq = Math.max(S.seq, q.seq);
    }
    const first = firstUnanswered(-1);
    if (first < 0) return finishTask();
    return showImage(first);
  }

  function imageURL(pos) {
    if (!S.images.has(pos)) {
      const p = api("GET", `/api/image?assignment=${S.task.assignment}&pos=${pos}`)
        .then((blob) => URL.createObjectURL(blob));
      p.catch(() => S.images.delete(pos));
      S.images.set(pos, p);
    }
    return S.images.get(pos);
  }

  async function showImage(pos) {
    S.busy = true;
    S.pos = pos;
    delete $("marks").dataset.ready;
    const prev = S.answers.get(pos);
    S.clicks = prev && !prev.absent ? prev.clicks.map((c) => ({ x: c.x, y: c.y, t: c.t })) : [];
    const task = S.task;
    let url;
    try {
      url = await imageURL(pos);
    } catch (e) {
      showMessage("Cannot load the image (" + e.message + "); retrying…", "bad");
      await sleep(1500);
      if (S.task === task && S.pos === pos) showImage(pos);
      return;
    }
    if (S.task !== task || S.pos !== pos) return;   // moved on while loading
    const img = $("photo");
    img.src = url;
    try { await img.decode(); } catch (e) { /* drawn anyway */ }
    const im = task.images[pos];
    $("marks").setAttribute("viewBox", `0 0 ${im.width} ${im.height}`);
    $("marks").setAttribute("preserveAspectRatio", "none");
    $("message").hidden = true;
    $("frame").hidden = false;
    draw();
    update();
    requestAnimationFrame(() => {   // the clock starts when the image is on screen
      const last = S.clicks.length ? S.clicks[S.clicks.length - 1].t : 0;
      S.t0 = performance.now() - last;   // a revisited image continues its clock
      S.busy = false;
      $("marks").dataset.ready = `${task.assignment}:${pos}`;
    });
    for (const p of [pos + 1, firstUnanswered(pos)]) {
      if (p >= 0 && p < task.images.length) imageURL(p);
    }
  }

  function firstUnanswered(after) {
    const n = S.task.images.length;
    for (let k = 1; k <= n; k++) {
      const p = (after + k + n) % n;
      if (!S.answers.has(p)) return p;
    }
    return -1;
  }

  // ---- drawing -------------------------------------------------------------------------------

  function draw() {
    const svg = $("marks");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const im = S.task.images[S.pos];
    const rect = svg.getBoundingClientRect();
    const k = rect.width ? im.width / rect.width : 1;   // image pixels per screen pixel
    S.clicks.forEach((c, i) => {
      const circle = document.createElementNS(SVG_NS, "circle");
      circle.setAttribute("cx", c.x);
      circle.setAttribute("cy", c.y);
      circle.setAttribute("r", 9 * k);
      circle.setAttribute("stroke-width", 1.5 * k);
      const label = document.createElementNS(SVG_NS, "text");
      label.setAttribute("x", c.x);
      label.setAttribute("y", c.y);
      label.setAttribute("font-size", 11 * k);
      label.textContent = String(i + 1);
      svg.append(circle, label);
    });
  }

  function update() {
    const t = S.task;
    const name = PRETTY[t.class_name] || t.class_name;
    const prompt = $("prompt");
    prompt.textContent = "";
    const b = document.createElement("b");
    b.textContent = name;
    if (t.kind === "1point") {
      prompt.append("Click on one ", b, " (the first you see) — N if there is none");
    } else {
      prompt.append("Click on every ", b, ", then Enter — N if there is none");
    }
    const answered = S.answers.size;
    const who = S.me ? `${S.me.name} · ` : "";
    $("progress").textContent =
      `${who}image ${S.pos + 1} / ${t.images.length} · ${answered} answered · task ${t.assignment}`;
    const prev = S.answers.get(S.pos);
    $("absent").disabled = S.clicks.length > 0;
    $("undo").disabled = S.clicks.length === 0 && S.pos === 0;
    $("done").hidden = t.kind !== "allpoints";
    $("done").disabled = S.clicks.length === 0;
    $("back").disabled = S.pos === 0;
    if (prev && prev.absent && S.clicks.length === 0) setStatus("answered: not present");
  }

  // ---- actions -------------------------------------------------------------------------------

  function onClick(e) {
    if (!S.task || S.busy) return;
    const im = S.task.images[S.pos];
    const r = $("marks").getBoundingClientRect();
    const clamp = (v, hi) => Math.min(Math.max(Math.round(v * 100) / 100, 0), hi - 0.01);
    const x = clamp((e.clientX - r.left) * im.width / r.width, im.width);
    const y = clamp((e.clientY - r.top) * im.height / r.height, im.height);
    const t = Math.round(performance.now() - S.t0);
    if (S.task.kind === "1point") {
      S.clicks = [{ x, y, t }];
      draw();
      return answer(false);
    }
    if (S.clicks.length >= S.task.max_clicks) return setStatus("too many clicks on one image", true);
    S.clicks.push({ x, y, t });
    draw();
    update();
  }

  function answer(absent) {
    if (!S.task || S.busy) return;
    const now = Math.round(performance.now() - S.t0);
    const clicks = absent ? [] : S.clicks.map((c) => ({ x: c.x, y: c.y, t: c.t }));
    const last = clicks.length ? clicks[clicks.length - 1].t : 0;
    S.seq += 1;
    const item = {
      key: randomKey(), assignment: S.task.assignment, pos: S.pos, absent, clicks,
      duration_ms: Math.max(now, last), seq: S.seq,
    };
    S.answers.set(S.pos, { absent, clicks });
    enqueue(item);
    const next = firstUnanswered(S.pos);
    if (next < 0) return finishTask();
    return showImage(next);
  }

  function notPresent() {
    if (S.clicks.length) return setStatus("remove your clicks first (Z) to mark 'not present'", true);
    return answer(true);
  }

  function done() {
    if (!S.task) return;
    if (S.task.kind !== "allpoints") return;
    if (!S.clicks.length) return setStatus("click every instance, or N if there is none", true);
    return answer(false);
  }

  function undo() {
    if (!S.task || S.busy) return;
    if (S.clicks.length) {
      S.clicks.pop();
      draw();
      update();
      return;
    }
    if (S.pos === 0) return;
    const pos = S.pos - 1;
    showImage(pos).then(() => {   // step back into the previous image, minus its last click
      if (S.pos === pos && S.clicks.length) { S.clicks.pop(); draw(); update(); }
    });
  }

  function back() {
    if (S.task && !S.busy && S.pos > 0) showImage(S.pos - 1);
  }

  function forward() {
    if (S.task && !S.busy && S.pos + 1 < S.task.images.length && S.answers.has(S.pos)) {
      showImage(S.pos + 1);
    }
  }

  async function finishTask() {
    const task = S.task;
    S.busy = true;
    showMessage("Saving your answers…");
    await drained();
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await api("POST", "/api/finish", { assignment: task.assignment });
        S.task = null;
        if (r.status === "accepted") {
          showMessage(`Task accepted: ${r.gold_right} of ${r.gold_total} check images right. Thank you!`, "ok");
        } else {
          showMessage(`Task rejected: ${r.gold_right} of ${r.gold_total} check images right ` +
                      `(${r.min_gold_right} needed), so its clicks will not be used.`, "bad");
        }
        $("next-task").hidden = false;
        $("next-task").focus();
        refreshMe();
        return;
      } catch (e) {
        if (e.status === 409) return loadTask();   // e.g. a refused answer: show what is missing
        if (e.status === 401) return logout("Unknown token.");
        setStatus("connection lost, retrying…", true);
        await sleep(Math.min(200 * 2 ** attempt, 10000));
      }
    }
  }

  async function refreshMe() {
    try { S.me = await api("GET", "/api/me"); } catch (e) { /* shown again later */ }
  }

  // ---- start ---------------------------------------------------------------------------------

  function logout(why) {
    sessionStorage.removeItem("token");
    S.token = null;
    S.task = null;
    $("frame").hidden = true;
    $("message").hidden = true;
    $("login").hidden = false;
    setStatus(why || "", true);
  }

  async function start() {
    $("login").hidden = true;
    loadQueue();
    pump();
    await refreshMe();
    await loadTask();
  }

  function readToken() {
    const m = location.hash.match(/token=([A-Za-z0-9_-]+)/);
    if (m) {   // the fragment never reaches a server log; drop it from the address bar too
      sessionStorage.setItem("token", m[1]);
      history.replaceState(null, "", location.pathname);
    }
    return sessionStorage.getItem("token");
  }

  $("marks").addEventListener("click", onClick);
  const buttons = { absent: notPresent, undo, done, back, "next-task": loadTask };
  for (const [id, fn] of Object.entries(buttons)) {
    $(id).addEventListener("click", (e) => { e.currentTarget.blur(); fn(); });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    if ((e.ctrlKey || e.metaKey) && (e.key === "z" || e.key === "Z")) {
      e.preventDefault();
      return undo();
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const actions = {
      n: notPresent, N: notPresent, z: undo, Z: undo, Backspace: undo,
      Enter: () => ($("next-task").hidden ? done() : loadTask()),
      " ": () => ($("next-task").hidden ? done() : loadTask()),
      ArrowLeft: back, ArrowRight: forward,
    };
    if (!(e.key in actions)) return;
    e.preventDefault();
    actions[e.key]();
  });
  window.addEventListener("resize", () => { if (S.task && !$("frame").hidden) draw(); });
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (!/^[A-Za-z0-9_-]+$/.test(token)) return setStatus("that is not a token", true);
    sessionStorage.setItem("token", token);
    S.token = token;
    start();
  });

  S.token = readToken();
  if (S.token) start(); else logout("");
})();
