// The poem playground: streams /v1/poem line by line, then shows the explain tables.
"use strict";

(function () {
  const form = document.getElementById("poem-form");
  const poem = document.getElementById("poem");
  const status = document.getElementById("poem-status");
  const go = document.getElementById("poem-go");
  const explainBody = document.getElementById("explain-body");
  const { el, fmt } = window.wenhui;

  function showLines(title, lines) {
    poem.replaceChildren(el("span", title, "title"), ...lines.map((l) => el("span", l, "line")));
  }

  function explainTable(step) {
    const table = el("table");
    const kind = step.refine ? "润色 refinement" : "生成 generation";
    table.append(el("caption", "第 " + (step.unit + 1) + " 句 · line " + (step.unit + 1) + " · " + kind + " · " + step.sampled + " candidates sampled"));
    const head = el("tr");
    for (const h of ["候选 Candidate", "Forward", "Inverse", "Format", "Total", "Beam", "Kept", "Verdict"]) {
      const th = el("th", h);
      th.scope = "col";
      head.append(th);
    }
    table.append(el("thead"));
    table.tHead.append(head);
    const body = el("tbody");
    for (const row of step.top) {
      const tr = el("tr", null, row.kept ? "kept" : "");
      tr.append(
        el("td", row.unit.text, "text"),
        el("td", fmt(row.unit.forward)),
        el("td", fmt(row.unit.inverse)),
        el("td", fmt(row.unit.format)),
        el("td", fmt(row.unit.total)),
        el("td", fmt(row.beam_score)),
        el("td", row.kept ? "✓" : ""),
        el("td", row.verdict, row.verdict === "ok" ? "verdict-ok" : "verdict-bad"),
      );
      body.append(tr);
    }
    table.append(body);
    return table;
  }

  function showResult(r) {
    showLines(r.title, r.lines);
    const verdict = r.constraints_ok ? "constraints ok" : "breaks: " + r.violations.join("; ");
    status.replaceChildren(
      el("span", r.form + " · " + r.rhyme + " · seed " + r.seed + " · " + (r.inverse ? "inverse prompting" : "forward only") +
        " · " + (r.elapsed_ms / 1000).toFixed(1) + " s · "),
      el("span", verdict, r.constraints_ok ? "verdict-ok" : "verdict-bad"),
    );
    const steps = r.explain || [];
    explainBody.replaceChildren(...(steps.length ? steps.map(explainTable) : [el("p", "No candidates recorded.", "hint")]));
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const title = document.getElementById("title").value.trim();
    const body = {
      title,
      form: document.getElementById("form").value,
      rhyme: document.getElementById("rhyme").value,
      acrostic: document.getElementById("acrostic").value.trim(),
      seed: Math.max(0, parseInt(document.getElementById("seed").value, 10) || 0),
      inverse: document.getElementById("inverse").checked,
      explain: true,
      stream: true,
    };
    const lines = [];
    showLines(title, lines);
    go.disabled = true;
    poem.setAttribute("aria-busy", "true");
    status.textContent = "写作中… writing";
    try {
      await window.wenhui.postSSE("/v1/poem", body, (data) => {
        if (data.error) throw new Error(data.error.message);
        if (typeof data.line === "string") {
          lines[data.index] = data.line;
          // A revision (refinement replaced a line already shown) redraws the poem.
          if (data.revised) showLines(title, lines);
          else poem.append(el("span", data.line, "line"));
        }
        if (data.result) showResult(data.result);
      });
    } catch (e) {
      status.textContent = "出错 Error: " + e.message;
    } finally {
      go.disabled = false;
      poem.setAttribute("aria-busy", "false");
    }
  });
})();
