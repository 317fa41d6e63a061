// The operator console's one script, served by the service itself (the
// pages' Content-Security-Policy allows no other). It adds what the
// server-rendered pages cannot do alone: times in the browser's zone,
// sortable tables, the admin token kept in this tab's session storage,
// forms that call the API with it, the "as of" picker and the live feed.
// Everything from outside is put into the page as text, never as HTML.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const t = new Date(el.getAttribute("datetime"));
    if (!isNaN(t)) {
      el.title = el.getAttribute("datetime");
      el.textContent = t.toLocaleString();
    }
  }
  for (const el of root.querySelectorAll("[data-since]")) {
    const t = new Date(el.getAttribute("data-since"));
    if (!isNaN(t)) el.textContent = span((Date.now() - t.getTime()) / 1000);
  }
}

function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return d + " d " + h + " h";
  if (h > 0) return h + " h " + m + " min";
  return m + " min";
}

function sortable() {
  for (const th of document.querySelectorAll("th[data-sortable]")) {
    th.addEventListener("click", () => {
      const table = th.closest("table");
      const body = table.tBodies[0];
      const index = Array.from(th.parentNode.children).indexOf(th);
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      for (const other of th.parentNode.children) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const key = (row) => {
        const cell = row.children[index];
        return cell ? (cell.getAttribute("data-sort") ?? cell.textContent.trim()) : "";
      };
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const nx = Number(x), ny = Number(y);
        const order = x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny)
          ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      for (const row of rows) body.appendChild(row);
    });
  }
}

// Two tokens, as the API has: WEBHOOK_TOKEN for corrections (when the
// service sets one) and ADMIN_TOKEN for low-stock levels. Kept in this
// tab's session storage only: never a cookie, never a URL.
const TOKENS = { write: "warehouse-stock-write-token", admin: "warehouse-stock-admin-token" };

function tokenBox() {
  const form = document.getElementById("token-form");
  if (!form) return;
  const state = document.getElementById("token-state");
  const show = () => {
    const set = Object.keys(TOKENS).filter((k) => sessionStorage.getItem(TOKENS[k]));
    state.textContent = set.length ? set.join(" and ") + " token set" : "no token";
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const kind of Object.keys(TOKENS)) {
      const input = form.elements[kind + "_token"];
      if (input.value) sessionStorage.setItem(TOKENS[kind], input.value);
      input.value = "";
    }
    show();
  });
  show();
}

// A form that writes through the API: its fields become the JSON body,
// the token from session storage its bearer credential.
function apiForms() {
  for (const form of document.querySelectorAll("form[data-api]")) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = form.querySelector("output");
      const method = form.getAttribute("data-method") || "POST";
      let url = form.getAttribute("data-api");
      const body = {};
      for (const field of form.elements) {
        if (!field.name || field.value === "") continue;
        if (field.hasAttribute("data-path")) {
          url = url.replace("{" + field.name + "}", encodeURIComponent(field.value.trim()));
          continue;
        }
        body[field.name] = field.getAttribute("data-type") === "int"
          ? Number(field.value) : field.value;
      }
      const headers = { "Content-Type": "application/json" };
      const token = sessionStorage.getItem(TOKENS[form.getAttribute("data-auth") || "write"]);
      if (token) headers.Authorization = "Bearer " + token;
      out.className = "";
      out.textContent = "sending…";
      try {
        const answer = await fetch(url, {
          method, headers, body: method === "DELETE" ? undefined : JSON.stringify(body),
        });
        const text = await answer.text();
        const json = text ? JSON.parse(text) : {};
        if (answer.ok && json.status !== "rejected") {
          out.className = "done";
          out.textContent = "done";
          location.reload();
        } else {
          out.className = "failed";
          out.textContent = (json.code || json.reason || answer.status) + ": " +
            (json.detail || json.reason || "refused");
        }
      } catch (err) {
        out.className = "failed";
        out.textContent = "failed: " + err.message;
      }
    });
  }
}

// The "as of" picker: the browser's local date-time, sent as UTC.
function asOfPicker() {
  const form = document.getElementById("as-of-form");
  if (!form) return;
  const local = form.elements.local_as_of;
  const hidden = form.elements.as_of;
  if (hidden.value) {
    const t = new Date(hidden.value);
    const pad = (n) => String(n).padStart(2, "0");
    if (!isNaN(t)) local.value = t.getFullYear() + "-" + pad(t.getMonth() + 1) + "-" +
      pad(t.getDate()) + "T" + pad(t.getHours()) + ":" + pad(t.getMinutes()) + ":" +
      pad(t.getSeconds());
  }
  form.addEventListener("submit", () => {
    const t = new Date(local.value);
    local.disabled = true;
    if (local.value && !isNaN(t)) hidden.value = t.toISOString();
    else hidden.disabled = true;
  });
}

function feedRow(change) {
  const row = document.createElement("tr");
  const cell = (text, cls) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  };
  const link = (href, text) => {
    const td = document.createElement("td");
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.className = "id";
    td.appendChild(a);
    row.appendChild(td);
  };
  cell(String(change.seq), "num");
  const when = document.createElement("time");
  when.setAttribute("datetime", change.changed_at);
  when.textContent = change.changed_at;
  cell("").appendChild(when);
  link("/console/warehouses/" + encodeURIComponent(change.warehouse_id) + "/products/" +
    encodeURIComponent(change.product_id), change.warehouse_id + " / " + change.product_id);
  cell(change.event);
  cell((change.delta > 0 ? "+" : "") + change.delta, "num " + (change.delta < 0 ? "down" : "up"));
  cell(String(change.quantity), "num");
  localTimes(row);
  return row;
}

async function liveFeed() {
  const table = document.getElementById("feed");
  if (!table) return;
  const state = document.getElementById("feed-state");
  const body = table.tBodies[0];
  let after = table.getAttribute("data-after");
  const filter = new URLSearchParams();
  for (const name of ["warehouse_id", "product_id"]) {
    const value = table.getAttribute("data-" + name.replace("_id", ""));
    if (value) filter.set(name, value);
  }
  for (;;) {
    const query = new URLSearchParams(filter);
    query.set("after", after);
    query.set("wait", "20");
    query.set("limit", "100");
    try {
      const pending = fetch("/api/v1/stock/changes?" + query.toString());
      state.textContent = "live";
      const answer = await pending;
      if (!answer.ok) throw new Error("status " + answer.status);
      const page = await answer.json();
      for (const change of page.items) {
        body.insertBefore(feedRow(change), body.firstChild);
      }
      while (body.rows.length > 200) body.deleteRow(-1);
      after = String(page.next_after);
      table.setAttribute("data-after", after);
    } catch (err) {
      state.textContent = "reconnecting…";
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  sortable();
  tokenBox();
  apiForms();
  asOfPicker();
  liveFeed();
});
