//! The Turing test's vote endpoint against a real `wenhui serve --turing` process: votes survive
//! a `kill -9` mid-vote (every acknowledged vote is in the database, which passes
//! `PRAGMA integrity_check`), hostile votes are refused with 4xx and change nothing, and a
//! malformed pairs file is an error naming the file and line.

mod turing_server;

use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use turing_server::{get_json, http, integrity, prepare_pairs, stored_tokens, vote, Server};

/// Fetches `n` pairs, each with its one-time token: `(pair_id, token)`.
fn tokens(s: &Server, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let p = get_json(s.addr, "/v1/turing/pair");
            (p["pair_id"].as_str().unwrap().to_string(), p["token"].as_str().unwrap().to_string())
        })
        .collect()
}

fn total_votes(s: &Server) -> u64 {
    get_json(s.addr, "/v1/turing/results")["total"]["votes"].as_u64().unwrap()
}

#[test]
fn votes_survive_kill_9_mid_vote() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = prepare_pairs(dir.path(), 4);
    let db = dir.path().join("votes.db");
    let mut server = Server::start(&pairs, &db);
    let issued = tokens(&server, 400);
    let addr = server.addr;
    // 8 clients vote as fast as they can; the server is killed once 30 votes are acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let queue = Arc::new(Mutex::new(issued));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (acked, count, queue) = (acked.clone(), count.clone(), queue.clone());
            std::thread::spawn(move || loop {
                let Some((pair, token)) = queue.lock().unwrap().pop() else { return };
                match vote(addr, &pair, &token, "left") {
                    Ok((200, _)) => {
                        acked.lock().unwrap().push(token);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((status, body)) => panic!("a valid vote got {status}: {body}"),
                    Err(_) => return, // the server is gone
                }
            })
        })
        .collect();
    let start = Instant::now();
    while count.load(Ordering::SeqCst) < 30 {
        assert!(start.elapsed() < Duration::from_secs(60), "votes are too slow: {} in 60 s", count.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill9();
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 30 && acked.len() < 400, "the kill came mid-vote ({} acknowledged)", acked.len());
    // Restart on the same database: every acknowledged vote is there, the file is sound.
    let server = Server::start(&pairs, &db);
    let stored = stored_tokens(&db);
    eprintln!("{} votes acknowledged before the kill, {} stored", acked.len(), stored.len());
    let missing: Vec<_> = acked.iter().filter(|t| !stored.contains(t)).collect();
    assert!(missing.is_empty(), "{} acknowledged votes were lost: {missing:?}", missing.len());
    assert_eq!(integrity(&db), "ok");
    // At most the votes in flight at the kill were committed without an answer.
    assert!(stored.len() >= acked.len() && stored.len() <= acked.len() + 8, "{} stored, {} acknowledged", stored.len(), acked.len());
    assert_eq!(total_votes(&server), stored.len() as u64);
    // Replaying an acknowledged vote after the restart is still refused.
    let (pair, token) = (stored_pair(&db, &acked[0]), acked[0].clone());
    assert_eq!(vote(server.addr, &pair, &token, "right").unwrap().0, 409);
}

fn stored_pair(db: &std::path::Path, token: &str) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT pair_id FROM votes WHERE token = ?1", [token], |r| r.get(0)).unwrap()
}

#[test]
fn hostile_votes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = prepare_pairs(dir.path(), 2);
    let db = dir.path().join("votes.db");
    let server = Server::start(&pairs, &db);
    let a = server.addr;
    // With --turing the web app links to the test and serves its pages.
    let (status, home) = http(a, "GET", "/", None).unwrap();
    assert!(status == 200 && home.contains("href=\"/turing\"") && home.contains("href=\"/turing/results\""), "{home}");
    assert_eq!(http(a, "GET", "/turing/results", None).unwrap().0, 200);
    let t = tokens(&server, 3);
    // One good vote.
    let (status, body) = vote(a, &t[0].0, &t[0].1, "left").unwrap();
    assert_eq!(status, 200, "{body}");
    let ok: Value = serde_json::from_str(&body).unwrap();
    assert!(ok["human"] == "left" || ok["human"] == "right");
    let before = (total_votes(&server), stored_tokens(&db));
    assert_eq!(before.0, 1);

    let huge = format!(r#"{{"pair_id": "{}", "token": "{}", "pick": "left", "pad": "{}"}}"#, t[1].0, t[1].1, "x".repeat(256 << 10));
    let wrong_pair = pairs_ids(&pairs).into_iter().find(|id| *id != t[1].0);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("replayed vote", vote_body(&t[0].0, &t[0].1, "left"), 409),
        ("replayed vote, other pick", vote_body(&t[0].0, &t[0].1, "right"), 409),
        ("unknown pair id", vote_body("no-such-pair", &t[1].1, "left"), 404),
        ("unknown token", vote_body(&t[1].0, "00000000000000000000000000000000", "left"), 400),
        ("huge body", huge.into_bytes(), 413),
        ("a list, not an object", serde_json::json!([t[1].0, t[1].1, "left"]).to_string().into_bytes(), 400),
        ("not JSON", b"pair_id=h001&pick=left".to_vec(), 400),
        ("empty body", Vec::new(), 400),
        ("bad pick", vote_body(&t[1].0, &t[1].1, "middle"), 400),
        (
            "unknown field",
            format!(r#"{{"pair_id": "{}", "token": "{}", "pick": "left", "machine": true}}"#, t[1].0, t[1].1).into_bytes(),
            400,
        ),
        ("missing token", format!(r#"{{"pair_id": "{}", "pick": "left"}}"#, t[1].0).into_bytes(), 400),
    ];
    for (what, body, want) in cases {
        let (status, answer) = http(a, "POST", "/v1/turing/vote", Some(&body)).unwrap();
        assert_eq!(status, want, "{what}: {answer}");
        if status == 413 {
            // The vote's own limit, not the server's --max-body-bytes.
            assert!(answer.contains("a vote is at most 4096 bytes"), "{what}: {answer}");
        } else {
            let e: Value = serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{what}: not a JSON error: {answer}"));
            assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {answer}");
        }
    }
    if let Some(wrong) = wrong_pair {
        // A token used for another pair than it was issued for.
        let (status, answer) = vote(a, &wrong, &t[1].1, "left").unwrap();
        assert_eq!(status, 400, "token of another pair: {answer}");
    }
    assert_eq!(http(a, "GET", "/v1/turing/vote", None).unwrap().0, 405);
    assert_eq!((total_votes(&server), stored_tokens(&db)), before, "a refused vote changed the database");
    // The untouched token still works once.
    assert_eq!(vote(a, &t[1].0, &t[1].1, "right").unwrap().0, 200);
    assert_eq!(vote(a, &t[1].0, &t[1].1, "right").unwrap().0, 409);
    assert_eq!(total_votes(&server), 2);
}

/// Before any vote the results have no rate (not 0%); a vote whose `Content-Length` is over the
/// server's `--max-body-bytes` is refused naming the vote's limit; a JSON list is not a vote; the
/// OpenAPI document lists the fields a vote takes.
#[test]
fn results_without_votes_have_no_rate_and_votes_are_objects_within_their_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = prepare_pairs(dir.path(), 1);
    let server = Server::start(&pairs, &dir.path().join("votes.db"));
    let a = server.addr;
    let results = get_json(a, "/v1/turing/results");
    assert_eq!(results["total"]["votes"], 0);
    assert!(results["total"]["rate"].is_null(), "{results}");
    assert!(results["paper"]["rate"].as_f64().is_some_and(|r| (r - 0.452).abs() < 1e-3), "{results}");
    let (status, page) = http(a, "GET", "/assets/common.js", None).unwrap();
    assert!(status == 200 && page.contains("typeof x === \"number\""), "the results page shows no rate as –");
    // 1 MB declared (and sent): 413 with the vote's limit.
    let (status, answer) = http(a, "POST", "/v1/turing/vote", Some(&vec![b' '; 1_000_000])).unwrap();
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("a vote is at most 4096 bytes") && !answer.contains("--max-body-bytes"), "{answer}");
    let t = tokens(&server, 1);
    let (status, answer) =
        http(a, "POST", "/v1/turing/vote", Some(serde_json::json!([t[0].0, t[0].1, "left"]).to_string().as_bytes())).unwrap();
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("JSON object"), "{answer}");
    // The documented vote fields are the accepted ones.
    let doc = get_json(a, "/openapi.json");
    let mut documented: Vec<String> =
        doc["components"]["schemas"]["TuringVote"]["properties"].as_object().unwrap().keys().cloned().collect();
    documented.sort();
    let (_, answer) = http(a, "POST", "/v1/turing/vote", Some(br#"{"no_such_field": 1}"#)).unwrap();
    let listed = answer.split("expected").nth(1).unwrap_or_else(|| panic!("{answer}"));
    let mut accepted: Vec<String> = listed.split('`').skip(1).step_by(2).map(String::from).collect();
    accepted.sort();
    assert_eq!(documented, accepted, "{answer}");
    assert_eq!(vote(a, &t[0].0, &t[0].1, "left").unwrap().0, 200);
    let results = get_json(a, "/v1/turing/results");
    assert!(results["total"]["rate"].as_f64().is_some(), "{results}");
}

fn vote_body(pair: &str, token: &str, pick: &str) -> Vec<u8> {
    serde_json::json!({"pair_id": pair, "token": token, "pick": pick}).to_string().into_bytes()
}

fn pairs_ids(path: &std::path::Path) -> Vec<String> {
    wenhui::eval::turing::read_pairs(path).unwrap().into_iter().map(|p| p.id).collect()
}

#[test]
fn malformed_pairs_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"id": "a", "title": "春", "form": "五绝", "human": "一二三四五，", "machine": "六七八九十。"}"#;
    let cases = [
        (format!("{good}\nnot json\n"), "line 2"),
        (format!("{good}\n{good}\n"), "appears twice"),
        (r#"{"id": "a", "title": "春", "form": "十绝", "human": "x", "machine": "y"}"#.to_string(), "unknown poem form"),
        (r#"{"id": "a", "title": "春", "form": "五绝", "human": "", "machine": "y"}"#.to_string(), "non-empty"),
        (String::new(), "no pairs"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.jsonl"));
        std::fs::write(&p, text).unwrap();
        let e = wenhui::eval::turing::read_pairs(&p).unwrap_err().to_string();
        assert!(e.contains(&format!("bad{i}.jsonl")) && e.contains(want), "case {i}: {e}");
        // The server refuses to start on it, with the same message.
        let out = std::process::Command::new(turing_server::wenhui())
            .args(["serve", "--addr", "127.0.0.1:0", "--turing"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(!out.status.success(), "case {i}: the server started on a bad pairs file");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "case {i}: {stderr}");
    }
    // A vote database that is not SQLite is a clear error too.
    let pairs = dir.path().join("ok.jsonl");
    std::fs::write(&pairs, format!("{good}\n")).unwrap();
    let db = dir.path().join("not-a-db");
    std::fs::write(&db, "this is not a database, just text that is long enough to have a header").unwrap();
    let out = std::process::Command::new(turing_server::wenhui())
        .args(["serve", "--addr", "127.0.0.1:0", "--turing"])
        .arg(&pairs)
        .arg("--votes")
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not-a-db") && stderr.contains("vote database"), "{stderr}");
}
