// The fill and answer pages: a form posted as JSON, the answer's text shown.
"use strict";

(function () {
  for (const form of document.querySelectorAll("form[data-endpoint]")) {
    const name = form.dataset.output;
    const out = document.getElementById(name + "-out");
    const status = document.getElementById(name + "-status");
    const button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      for (const input of form.querySelectorAll("input[name], textarea[name], select[name]")) {
        const v = input.value.trim();
        if (v === "") continue;
        if (input.dataset.type === "int") body[input.name] = parseInt(v, 10);
        else if (input.dataset.type === "float") body[input.name] = parseFloat(v);
        else body[input.name] = v;
      }
      button.disabled = true;
      status.textContent = "生成中… working";
      try {
        const r = await window.wenhui.postJSON(form.dataset.endpoint, body);
        out.textContent = r.text;
        const extra = r.fills ? "blanks: " + r.fills.map((f) => "「" + f + "」").join(" ") : (r.elapsed_ms / 1000).toFixed(1) + " s";
        status.textContent = extra;
      } catch (e) {
        status.textContent = "出错 Error: " + e.message;
      } finally {
        button.disabled = false;
      }
    });
  }
})();
