// Browser test of the wenhui web app (run by tests/web_e2e.rs; needs Debian's chromium and
// `npm ci --prefix tests/e2e`). Usage:
//   node tests/e2e/web.mjs vote  URL ARTIFACT_DIR   playground poem, fill, answer, 10 Turing votes, results
//   node tests/e2e/web.mjs check URL ARTIFACT_DIR N K  the results page shows N votes, K machine-chosen
// Prints one JSON line ({"votes": N, "machine_chosen": K}) on success; exits 1 with a message otherwise.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [mode, url, artifacts, wantVotes, wantMachine] = process.argv.slice(2);
if (!["vote", "check"].includes(mode) || !url || !artifacts) {
  console.error("usage: node web.mjs vote|check URL ARTIFACT_DIR [N K]");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const executablePath = process.env.WENHUI_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
const problems = [];
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });
page.on("request", (r) => { if (!r.url().startsWith(url)) problems.push("request outside the server: " + r.url()); });
page.setDefaultTimeout(60_000);

function pct(k, n) {
  return (100 * k / n).toFixed(1) + "%";
}
function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function playground() {
  await page.goto(url + "/");
  await page.getByLabel("题目 Title").fill("山居秋暝");
  await page.getByLabel("种子 Seed").fill("3");
  await page.getByRole("button", { name: /作诗/ }).click();
  // The first streamed line appears before the result is complete.
  await page.locator("#poem .line").first().waitFor();
  await page.locator("#poem-status", { hasText: "constraints" }).waitFor({ timeout: 120_000 });
  const lines = await page.locator("#poem .line").allTextContents();
  expect(lines.length === 4, "a 五绝 has 4 lines, the page shows " + JSON.stringify(lines));
  for (const l of lines) expect([...l].length === 6, "each line is 5 characters and a mark: " + l);
  await page.locator("#explain summary").click();
  const rows = await page.locator("#explain-body tbody tr").count();
  expect(rows >= 4, "the explain view lists the candidates (" + rows + " rows)");
  await page.screenshot({ path: join(artifacts, "playground.png"), fullPage: true });
}

async function fillPage() {
  await page.goto(url + "/fill");
  await page.getByRole("button", { name: /填空/ }).click();
  await page.locator("#fill-status", { hasText: "blanks" }).waitFor();
  const text = await page.locator("#fill-out").textContent();
  expect(text.includes("床前明月光") && !text.includes("[MASK]"), "the blank is filled: " + text);
}

async function answerPage() {
  await page.goto(url + "/answer");
  await page.getByRole("button", { name: /回答/ }).click();
  await page.locator("#answer-status", { hasText: " s" }).waitFor();
  const text = (await page.locator("#answer-out").textContent()).trim();
  expect(text.length > 0, "the answer is shown");
}

async function turing() {
  await page.goto(url + "/turing");
  let machine = 0;
  for (let i = 0; i < 10; i++) {
    const pick = page.locator("#pick-left");
    await page.locator("#pair-view:not([hidden])").waitFor();
    await page.waitForFunction(() => !document.getElementById("pick-left").disabled && document.getElementById("next-pair").hidden);
    await pick.click();
    await page.locator(".pair .card.human").waitFor();
    const humanLeft = await page.locator("#card-left.human").count();
    if (!humanLeft) machine += 1; // picked left, the human poem was on the right
    await page.locator("#my-votes", { hasText: String(i + 1) }).waitFor();
    if (i === 0) await page.screenshot({ path: join(artifacts, "turing.png"), fullPage: true });
    if (i < 9) await page.locator("#next-pair").click();
  }
  return machine;
}

async function results(n, k) {
  await page.goto(url + "/turing/results");
  await page.locator("#total-votes", { hasText: String(n) }).waitFor();
  const rate = (await page.locator("#total-rate").textContent()).trim();
  expect(rate === pct(k, n), "the results page shows " + rate + ", expected " + pct(k, n));
  const formRow = await page.locator("#by-form tbody tr", { hasText: "五言绝句" }).textContent();
  expect(formRow.includes(String(n)), "the per-form row counts the votes: " + formRow);
  await page.screenshot({ path: join(artifacts, mode === "vote" ? "results.png" : "results-after-restart.png"), fullPage: true });
}

let code = 0;
try {
  if (mode === "vote") {
    await playground();
    await fillPage();
    await answerPage();
    const k = await turing();
    await results(10, k);
    // One column on a phone: the pair page at 390 px (no vote cast).
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(url + "/turing");
    await page.locator("#pair-view:not([hidden])").waitFor();
    await page.screenshot({ path: join(artifacts, "turing-phone.png"), fullPage: true });
    expect(problems.length === 0, problems.join("\n"));
    console.log(JSON.stringify({ votes: 10, machine_chosen: k }));
  } else {
    await results(Number(wantVotes), Number(wantMachine));
    expect(problems.length === 0, problems.join("\n"));
    console.log(JSON.stringify({ votes: Number(wantVotes), machine_chosen: Number(wantMachine) }));
  }
} catch (e) {
  console.error("web e2e failed: " + (e && e.stack ? e.stack : e));
  try { await page.screenshot({ path: join(artifacts, "failure.png"), fullPage: true }); } catch (_) { /* ignore */ }
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
