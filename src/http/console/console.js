// The operations console: talks only to its own origin's public API with a platform
// token held in this closure (never in storage, cookies or the URL).
"use strict";
(() => {
  let token = null;
  let timer = null;
  let lookup = null; // the receipt lookup being kept fresh
  const $ = (sel) => document.querySelector(sel);

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    if (!res.ok) {
      const err = new Error((json && json.message) || res.statusText);
      err.status = res.status;
      err.code = json && json.code;
      throw err;
    }
    return json;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    return td;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  async function refreshSockets() {
    const c = await api("GET", "/v1/platform/connections");
    $("#sockets-total").textContent = String(c.total.sockets);
    const roles = $("#sockets-by-role tbody");
    roles.replaceChildren();
    for (const role of ["rider", "merchant", "platform"]) {
      const row = roles.insertRow();
      row.dataset.role = role;
      cell(row, role);
      cell(row, c.total.by_role[role] || 0, "count");
    }
    const replicas = $("#sockets-by-replica tbody");
    replicas.replaceChildren();
    for (const r of c.replicas) {
      const row = replicas.insertRow();
      row.dataset.replica = r.replica_id;
      cell(row, r.replica_id + (r.replica_id === c.replica_id ? " (this one)" : ""));
      cell(row, r.sockets, "count");
      cell(row, Object.entries(r.by_role).map(([k, v]) => k + " " + v).join(", "));
      cell(row, new Date(r.reported_at_ms).toLocaleTimeString());
    }
    $("#sockets-updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  async function refreshStatus() {
    const s = await api("GET", "/v1/platform/status");
    const body = $("#status tbody");
    body.replaceChildren();
    const rows = [
      ["PostgreSQL", s.postgres],
      ["Redis", s.redis],
      ["pub/sub", s.pubsub],
      ["outbox pending", s.outbox.pending + (s.outbox.pending ? " (oldest " + s.outbox.oldest_pending_s.toFixed(1) + " s)" : "")],
      ["outbox failed (kept)", s.outbox.failed],
      ["replica", s.replica_id + (s.draining ? " (draining)" : "")],
    ];
    for (const [name, value] of rows) {
      const row = body.insertRow();
      row.dataset.check = name;
      cell(row, name);
      const bad = value === "unavailable";
      cell(row, value, bad ? "bad" : value === "ok" ? "ok" : "");
    }
  }

  async function refreshAlerts() {
    const a = await api("GET", "/v1/platform/alerts?limit=20");
    const body = $("#alerts tbody");
    body.replaceChildren();
    for (const alert of a.alerts) {
      const row = body.insertRow();
      cell(row, when(alert.created_at));
      cell(row, alert.event);
      cell(row, alert.title);
      cell(row, alert.content);
      cell(row, alert.message_id);
    }
    if (!a.alerts.length) cell(body.insertRow(), "no alerts").colSpan = 5;
  }

  function renderReceipts(receipts) {
    const out = $("#receipts");
    out.replaceChildren();
    for (const r of receipts) {
      const h = document.createElement("h3");
      h.textContent = r.event + " · " + r.message_id;
      const meta = document.createElement("p");
      meta.append("created " + when(r.created_at) + ", expires " + when(r.expires_at));
      const table = document.createElement("table");
      table.className = "receipt";
      table.dataset.messageId = r.message_id;
      const head = table.createTHead().insertRow();
      for (const t of ["user", "state", "delivered", "acked"]) {
        const th = document.createElement("th");
        th.textContent = t;
        head.append(th);
      }
      const body = table.createTBody();
      for (const p of r.recipients) {
        const row = body.insertRow();
        row.dataset.user = String(p.user_id);
        cell(row, p.user_id);
        cell(row, p.state, "state state-" + p.state);
        cell(row, when(p.delivered_at));
        cell(row, when(p.acked_at));
      }
      out.append(h, meta, table);
    }
    if (!receipts.length) out.textContent = "no notifications";
  }

  // A lookup stays on and refreshes with the rest: receipts are written within a few
  // seconds of what they record, so "not found" may only mean "not yet".
  async function refreshLookup() {
    if (!lookup) return;
    const id = encodeURIComponent(lookup.id);
    try {
      const receipts = lookup.kind === "order"
        ? (await api("GET", "/v1/orders/" + id + "/notifications")).notifications
        : [await api("GET", "/v1/platform/notifications/" + id)];
      $("#lookup-error").textContent = "";
      renderReceipts(receipts);
    } catch (e) {
      if (e.status === 401) throw e;
      $("#receipts").replaceChildren();
      $("#lookup-error").textContent = e.status === 404
        ? "not found (yet: receipts are written within seconds); still looking"
        : e.message;
    }
  }

  async function refresh() {
    const results = await Promise.allSettled([refreshSockets(), refreshStatus(), refreshAlerts(), refreshLookup()]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed && failed.reason.status === 401) signOut("the token is no longer valid");
  }

  function signOut(why) {
    token = null;
    lookup = null;
    clearInterval(timer);
    $("#console").hidden = true;
    $("#sign-out").hidden = true;
    $("#who").textContent = "";
    $("#sign-in-panel").hidden = false;
    $("#sign-in-error").textContent = why || "";
  }

  $("#sign-in").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const field = $("#token");
    token = field.value.trim();
    field.value = "";
    try {
      if (token.startsWith("llk_")) {
        // A service key (with the read scope; notify to send): not a user.
        await api("GET", "/v1/platform/connections");
        $("#who").textContent = "service key " + token.split("_")[1];
      } else {
        const me = await api("GET", "/v1/me");
        if (!me.roles.includes("platform")) throw new Error("this user is not platform staff");
        $("#who").textContent = "user " + me.id;
      }
      $("#sign-in-panel").hidden = true;
      $("#console").hidden = false;
      $("#sign-out").hidden = false;
      $("#sign-in-error").textContent = "";
      await refresh();
      timer = setInterval(refresh, 2000);
    } catch (e) {
      signOut("sign-in failed: " + e.message);
    }
  });

  $("#sign-out").addEventListener("click", () => signOut());

  $("#send").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    // Through `elements`: a form's own `title` and `target` properties shadow its fields.
    const f = ev.target.elements;
    const body = { title: f.namedItem("title").value, content: f.namedItem("content").value };
    if (f.namedItem("target").value === "user") body.user_id = Number(f.namedItem("user_id").value);
    else body.role = f.namedItem("role").value;
    const out = $("#send-result");
    try {
      const res = await api("POST", "/v1/platform/notifications", body);
      out.className = "";
      out.textContent = "sent: message_id " + res.message_id;
      out.dataset.messageId = res.message_id;
    } catch (e) {
      out.className = "error";
      out.textContent = "not sent: " + (e.code ? e.code + ": " : "") + e.message;
    }
  });

  $("#lookup").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    lookup = { kind: f.namedItem("kind").value, id: f.namedItem("key").value.trim() };
    await refreshLookup();
  });
})();
