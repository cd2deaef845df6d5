// The dashboard's little JavaScript: copy buttons, confirmations, and reloading a running
// rebilling run's page. Everything works without it except copying.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent;
  navigator.clipboard.writeText(text).then(() => { button.textContent = "Copied"; });
});
document.addEventListener("submit", (event) => {
  const form = event.target;
  const submitter = event.submitter;
  const message = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
if (document.getElementById("refreshing")) setTimeout(() => window.location.reload(), 2000);
