//! The web app end to end in headless Chromium (Debian's `chromium`, driven by Playwright's
//! `playwright-core` from `tests/e2e/`): the playground streams a poem with its explain view, the
//! fill and answer pages answer, ten Turing votes are cast,
//! the results page shows them with the right rate, and after a restart of the server the votes are
//! still there. Screenshots go to `target/e2e-artifacts/`.
//!
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`; or `WENHUI_CHROMIUM=PATH`), Node.js
//! and `npm ci --prefix tests/e2e`; fails with those instructions when one is missing, unless
//! `WENHUI_SKIP_BROWSER_TESTS=1`.

mod turing_server;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use turing_server::{get_json, prepare_pairs, Server};

/// What is missing to run the browser tests, with how to install it.
fn missing_tools(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let chromium = std::env::var_os("WENHUI_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        missing.push(format!("{} (install Debian's browser: `apt-get install -y chromium`, or set WENHUI_CHROMIUM)", chromium.display()));
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        missing.push("node (install Node.js: `apt-get install -y nodejs npm`)".into());
    }
    if !root.join("tests/e2e/node_modules/playwright-core/package.json").is_file() {
        missing.push("playwright-core (run `npm ci --prefix tests/e2e`)".into());
    }
    missing
}

fn run_script(root: &Path, args: &[&str]) -> Value {
    let out = Command::new("node").arg(root.join("tests/e2e/web.mjs")).args(args).current_dir(root).output().expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed ({}):\n{stdout}\n{stderr}", out.status);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("the browser script printed no JSON summary ({e}): {stdout}"))
}

#[test]
fn playground_turing_votes_and_results_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if std::env::var("WENHUI_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("WENHUI_SKIP_BROWSER_TESTS=1: skipping the browser test");
        return;
    }
    let missing = missing_tools(&root);
    assert!(
        missing.is_empty(),
        "the browser test needs: {}. Install them (CI's .ci/run does), or set WENHUI_SKIP_BROWSER_TESTS=1 to skip it.",
        missing.join("; ")
    );
    let artifacts = root.join("target/e2e-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let art = artifacts.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pairs = prepare_pairs(dir.path(), 12);
    let db = dir.path().join("votes.db");

    let mut server = Server::start(&pairs, &db);
    let summary = run_script(&root, &["vote", &server.url(), art]);
    assert_eq!(summary["votes"], 10);
    let machine = summary["machine_chosen"].as_u64().unwrap();
    let results = get_json(server.addr, "/v1/turing/results");
    assert_eq!(results["total"]["votes"], 10, "{results}");
    assert_eq!(results["total"]["machine_chosen"], machine, "{results}");

    // Restart (a hard kill: nothing is flushed on the way out) and look again, in the browser too.
    server.kill9();
    let server = Server::start(&pairs, &db);
    let again = get_json(server.addr, "/v1/turing/results");
    assert_eq!(again["total"], results["total"], "the votes changed across the restart");
    let (n, k) = (10.to_string(), machine.to_string());
    run_script(&root, &["check", &server.url(), art, &n, &k]);
    assert!(artifacts.join("playground.png").is_file() && artifacts.join("results-after-restart.png").is_file());
}
