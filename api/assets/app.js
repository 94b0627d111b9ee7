// Postern's only script: progressive enhancement. Every page works without it.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = button.getAttribute("data-copy");
  // The label is kept once: a second click while it says "Copied" must not make that stick.
  if (!button.dataset.label) button.dataset.label = button.textContent;
  const done = () => {
    button.textContent = "Copied";
    clearTimeout(button.copiedTimer);
    button.copiedTimer = setTimeout(() => { button.textContent = button.dataset.label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallback(text, done));
  } else {
    fallback(text, done);
  }
});

// Without a secure context (plain http on a LAN), copy through a selected text field.
function fallback(text, done) {
  const field = document.createElement("textarea");
  field.value = text;
  field.setAttribute("readonly", "");
  field.className = "offscreen";
  document.body.appendChild(field);
  field.select();
  try { document.execCommand("copy"); done(); } finally { field.remove(); }
}

// Copy buttons are hidden until the script runs: without it they would do nothing.
document.documentElement.classList.add("js");
