// Live requests: polls the JSON API with the browser's session every few seconds and reloads
// the page when what it shows has changed, unless the person is typing in one of its forms.
(function () {
  "use strict";
  const status = document.getElementById("live-status");
  if (!status) return;
  const shown = status.dataset.signature || "";
  let typing = false;
  document.addEventListener("input", () => { typing = true; });

  function signature(requests) {
    return requests.map((r) => r.id + ":" + r.state + ":" + (r.reviews || []).length).sort().join(",");
  }

  async function poll() {
    try {
      const response = await fetch("/api/v1/requests", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401) {
        status.textContent = "Live updates stopped: your session ended.";
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const body = await response.json();
      if (signature(body.requests || []) !== shown) {
        if (!typing) {
          window.location.replace("/requests");
          return;
        }
        status.textContent = "Requests have changed: reload to see them.";
      } else {
        status.textContent = "Live: this page follows changes.";
      }
    } catch (error) {
      status.textContent = "Live updates paused (" + error.message + "); retrying.";
    }
    window.setTimeout(poll, 3000);
  }
  window.setTimeout(poll, 3000);
})();
