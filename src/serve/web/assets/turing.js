// The Turing test: show a pair, take one vote (with the pair's one-time token), reveal, next.
"use strict";

(function () {
  const status = document.getElementById("turing-status");
  const view = document.getElementById("pair-view");
  const next = document.getElementById("next-pair");
  const mine = document.getElementById("my-votes");
  const picks = [document.getElementById("pick-left"), document.getElementById("pick-right")];
  const seen = [];
  let current = null;
  let votes = 0;

  async function load() {
    current = null;
    next.hidden = true;
    for (const side of ["left", "right"]) document.getElementById("card-" + side).classList.remove("human");
    status.textContent = "Loading a pair…";
    try {
      const resp = await fetch("/v1/turing/pair?seen=" + encodeURIComponent(seen.slice(-200).join(",")));
      if (!resp.ok) throw new Error(await window.wenhui.errorOf(resp));
      current = await resp.json();
    } catch (e) {
      status.textContent = "出错 Error: " + e.message;
      return;
    }
    document.getElementById("pair-title-text").textContent = "《" + current.title + "》";
    document.getElementById("pair-form").textContent = current.form;
    document.getElementById("poem-left").replaceChildren(...couplets(current.left));
    document.getElementById("poem-right").replaceChildren(...couplets(current.right));
    view.hidden = false;
    for (const b of picks) b.disabled = false;
    status.textContent = "Which one did a person write? (pair " + current.pair_id + ")";
    picks[0].focus();
  }

  // One couplet a line, each verse unbreakable: on a narrow screen the verses wrap whole.
  function couplets(text) {
    const verses = text.match(/[^，。！？；]+[，。！？；]?/g) || [text];
    const out = [];
    for (let i = 0; i < verses.length; i += 2) {
      const c = window.wenhui.el("span", null, "couplet");
      for (const v of verses.slice(i, i + 2)) c.append(window.wenhui.el("span", v, "verse"));
      out.push(c);
    }
    return out;
  }

  async function vote(pick) {
    if (!current) return;
    for (const b of picks) b.disabled = true;
    try {
      const r = await window.wenhui.postJSON("/v1/turing/vote", { pair_id: current.pair_id, token: current.token, pick });
      votes += 1;
      mine.textContent = String(votes);
      seen.push(current.pair_id);
      document.getElementById("card-" + r.human).classList.add("human");
      const right = r.human === pick;
      status.textContent = (right ? "答对了 Right: " : "猜错了 Fooled: ") + "the " + r.human + " poem was written by a person. Vote recorded.";
      next.hidden = false;
      next.focus();
    } catch (e) {
      status.textContent = "出错 Error: " + e.message;
    }
  }

  for (const b of picks) b.addEventListener("click", () => vote(b.dataset.pick));
  next.addEventListener("click", load);
  load();
})();
