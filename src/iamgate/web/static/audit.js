// Live audit: new calls matching the page's filters appear at the top as they happen.
// Polls the JSON API with the browser's session; the server decides what this person may see.
(function () {
  "use strict";
  // The filters fold away on a phone; on a wider screen they stay open.
  const box = document.getElementById("filter-box");
  if (box && window.matchMedia("(min-width: 721px)").matches) box.open = true;
  const table = document.getElementById("events");
  const status = document.getElementById("live-status");
  if (!table || table.dataset.live !== "on") return;
  const accounts = JSON.parse(table.dataset.accounts || "{}");
  const filters = new URLSearchParams(table.dataset.filters || "");
  const seen = new Set(Array.from(table.tBodies[0].rows).map((r) => r.dataset.id).filter(Boolean));
  let newest = table.dataset.newest || new Date().toISOString();

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  function row(event) {
    const f = event.fields || {};
    const tr = document.createElement("tr");
    tr.dataset.id = event.id;
    tr.className = (f.decision || "") + " fresh";
    const decision = document.createElement("span");
    decision.className = "decision " + (f.decision || "");
    decision.textContent = f.decision || "";
    const decisionCell = cell("");
    decisionCell.appendChild(decision);
    tr.append(
      cell(String(event.time || "").slice(0, 19).replace("T", " "), "mono nowrap"),
      cell(event.principal || ""),
      cell(accounts[f.account_id] || f.account_id || ""),
      cell(f.aws_role || "", "mono"),
      cell(f.action || f.operation || "", "mono"),
      decisionCell,
      cell(f.status || ""),
      cell(f.access_key_id || "", "mono small key"),
      cell(f.resource || "", "mono small resource"),
      cell(f.region || "", "mono small"),
      cell(event.source_ip || "", "mono small"),
      cell(f.rule || f.reason || f.error_code || "", "small"),
    );
    return tr;
  }

  async function poll() {
    const query = new URLSearchParams(filters);
    query.set("since", newest);
    try {
      const response = await fetch("/api/v1/audit?" + query.toString(), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401) {
        status.textContent = "Live updates stopped: your session ended.";
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const body = await response.json();
      const events = (body.events || []).filter((e) => !seen.has(e.id));
      const tbody = table.tBodies[0];
      const empty = tbody.querySelector("tr.none");
      if (events.length && empty) empty.remove();
      for (const event of events.reverse()) {
        seen.add(event.id);
        tbody.insertBefore(row(event), tbody.firstChild);
        if (event.time > newest) newest = event.time;
      }
      status.textContent = "Live: showing new calls as they happen.";
    } catch (error) {
      status.textContent = "Live updates paused (" + error.message + "); retrying.";
    }
    window.setTimeout(poll, 3000);
  }
  window.setTimeout(poll, 3000);
})();
