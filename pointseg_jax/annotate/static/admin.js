// Campaign dashboard (organiser): progress, per-annotator gold accuracy and time, flags, token
// revoke / rotate, export. Data: GET /api/admin/campaign (annotate/dashboard.py), refreshed every
// REFRESH_MS. The admin token comes in the link's #token= fragment (never sent in a URL) and is
// kept in sessionStorage. Names are user data: written with textContent only, never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 5000;
  const KEY = "admin-token";
  const KINDS = { "1point": "1Point", allpoints: "AllPoints" };
  let token = null;
  let timer = null;

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + token }, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    const isJson = (r.headers.get("Content-Type") || "").startsWith("application/json");
    if (!r.ok) {
      const data = isJson ? await r.json() : {};
      const e = new Error(data.error || r.statusText);
      e.status = r.status;
      throw e;
    }
    return r;
  }

  const secs = (v) => (v === null || v === undefined ? "—" : v.toFixed(1) + " s");

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function button(td, label, action, name) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.action = action;
    b.dataset.name = name;
    td.appendChild(b);
  }

  function render(c) {
    $("config").textContent = `Classes: ${c.config.classes.join(", ")}. Kinds: ` +
      `${c.config.kinds.map((k) => KINDS[k]).join(", ")}. Tasks of ${c.config.task_size} images, ` +
      `${c.config.gold_per_task} gold, ≥ ${c.config.min_gold_right} right to pass; ` +
      `${c.config.redundancy} annotator(s) per task.`;
    $("paper").textContent = Object.entries(c.paper_per_image_s)
      .map(([k, v]) => `${v} s (${KINDS[k]})`).join(", ");
    const prog = $("progress").tBodies[0];
    prog.replaceChildren();
    for (const p of c.progress) {
      const tr = prog.insertRow();
      tr.dataset.kind = p.kind;
      tr.dataset.cls = p.class_name;
      cell(tr, KINDS[p.kind]);
      cell(tr, p.class_name);
      cell(tr, `${p.complete} / ${p.tasks}`, "complete");
      cell(tr, p.open);
      cell(tr, p.accepted);
      cell(tr, p.rejected);
      cell(tr, p.answers);
    }
    const ann = $("annotators").tBodies[0];
    ann.replaceChildren();
    for (const a of c.annotators) {
      const tr = ann.insertRow();
      tr.dataset.name = a.name;
      tr.classList.toggle("flagged", a.flags.length > 0);
      cell(tr, a.name);
      cell(tr, a.revoked ? "revoked" : "active", "token");
      cell(tr, `${a.open} / ${a.accepted} / ${a.rejected}`);
      cell(tr, a.gold_total ? `${a.gold_right} of ${a.gold_total} ` +
        `(${Math.round(100 * a.gold_accuracy)}%)` : "—", "gold");
      for (const k of ["1point", "allpoints"]) {
        const t = a.per_image_s[k];
        cell(tr, t ? secs(t.voc_formula) : "—", "time-" + k);
      }
      cell(tr, a.flags.join("; "), "flags");
      const td = cell(tr, "");
      if (!a.revoked) button(td, "Revoke", "revoke", a.name);
      button(td, a.revoked ? "Re-admit (new link)" : "New link", "rotate", a.name);
    }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  }

  async function refresh() {
    try {
      const r = await api("GET", "/api/admin/campaign");
      render(await r.json());
      $("board").hidden = false;
      showError("");
    } catch (e) {
      if (e.status === 401) return logout("Wrong or old admin token.");
      showError("Could not load the campaign: " + e.message);
    }
  }

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = false;
  }

  const link = (name, t) => `${name}: ${location.origin}/#token=${t}`;

  async function act(action, name) {
    try {
      const r = await api("POST", "/api/admin/" + action, { name });
      const data = await r.json();
      if (action === "revoke") notice(`${name}'s token is revoked: every request with it now fails.`);
      else notice("New link (shown once; the old one no longer works) — " + link(name, data.token));
      await refresh();
    } catch (e) {
      if (e.status === 401) return logout("Wrong or old admin token.");
      showError(e.message);
    }
  }

  async function download() {
    try {
      const r = await api("GET", "/api/admin/export");
      const url = URL.createObjectURL(await r.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = "clicks.json";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      notice("Exported " + (r.headers.get("X-Export-Counts") || "") + ".");
    } catch (e) {
      if (e.status === 401) return logout("Wrong or old admin token.");
      showError("Export failed: " + e.message);
    }
  }

  function logout(why) {
    clearInterval(timer);
    sessionStorage.removeItem(KEY);
    token = null;
    $("board").hidden = true;
    $("login").hidden = false;
    showError(why);
  }

  function start(t) {
    token = t;
    sessionStorage.setItem(KEY, t);
    $("login").hidden = true;
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, REFRESH_MS);
  }

  $("annotators").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (b) act(b.dataset.action, b.dataset.name);
  });
  $("add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("add-name").value.trim();
    try {
      const r = await api("POST", "/api/admin/add", { name });
      notice("New annotator — " + link(name, (await r.json()).token));
      $("add-name").value = "";
      await refresh();
    } catch (e) {
      if (e.status === 401) return logout("Wrong or old admin token.");
      showError(e.message);
    }
  });
  $("export").addEventListener("click", download);
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (t) start(t);
  });

  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) history.replaceState(null, "", location.pathname);   // the token leaves the address bar
  const t = m ? decodeURIComponent(m[1]) : sessionStorage.getItem(KEY);
  if (t) start(t);
  else $("login").hidden = false;
})();
