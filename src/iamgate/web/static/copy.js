// Copy buttons on the CLI set-up blocks of My access. Without scripts the blocks stay plain text.
(function () {
  "use strict";
  function copied(button, text) {
    button.textContent = text;
    window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
  }
  for (const pre of document.querySelectorAll("details.setup pre")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    const first = pre.textContent.split("\n")[0];
    button.setAttribute("aria-label", "Copy: " + first);
    button.addEventListener("click", async function () {
      try {
        await navigator.clipboard.writeText(pre.textContent.trimEnd() + "\n");
        copied(button, "Copied");
      } catch (error) {
        const range = document.createRange();
        range.selectNodeContents(pre);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copied(button, "Selected: press Ctrl+C");
      }
    });
    const wrap = document.createElement("div");
    wrap.className = "copyable";
    pre.parentNode.insertBefore(wrap, pre);
    wrap.append(pre, button);
  }
})();
