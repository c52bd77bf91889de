// The Turing-test results: the machine-chosen rate with its Wilson 95% interval, per form.
"use strict";

(function () {
  const { el, pct } = window.wenhui;
  const status = document.getElementById("results-status");

  function ci(r) {
    return pct(r.ci95[0]) + " – " + pct(r.ci95[1]);
  }

  async function load() {
    let s;
    try {
      const resp = await fetch("/v1/turing/results");
      if (!resp.ok) throw new Error(await window.wenhui.errorOf(resp));
      s = await resp.json();
    } catch (e) {
      status.textContent = "出错 Error: " + e.message;
      return;
    }
    document.getElementById("total-votes").textContent = String(s.total.votes);
    document.getElementById("total-rate").textContent = s.total.votes ? pct(s.total.rate) : "–";
    document.getElementById("total-ci").textContent = s.total.votes ? "95% CI " + ci(s.total) + " · " + s.total.machine_chosen + " of " + s.total.votes : "no votes yet";
    const body = document.querySelector("#by-form tbody");
    const rows = s.by_form.concat([s.paper]).map((r) => {
      const tr = el("tr");
      const th = el("th", r.form);
      th.scope = "row";
      tr.append(th, el("td", r.votes), el("td", r.machine_chosen), el("td", pct(r.rate)), el("td", ci(r)));
      return tr;
    });
    body.replaceChildren(...rows);
    status.textContent = s.total.votes + " votes · machine taken for human " + (s.total.votes ? pct(s.total.rate) : "–");
  }
  load();
})();
