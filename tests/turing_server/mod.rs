//! Helpers of the Turing-test and web tests: the `wenhui` binary as a child process (so a test
//! can SIGKILL it), pairs made by `wenhui turing prepare`, and a tiny HTTP/1.1 client.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `wenhui` binary under test.
pub fn wenhui() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wenhui"))
}

/// Makes `count` 五绝 pairs with small search sizes (fast) into `dir/pairs.jsonl`.
pub fn prepare_pairs(dir: &Path, count: usize) -> PathBuf {
    let out = dir.join("pairs.jsonl");
    let status = Command::new(wenhui())
        .args(["turing", "prepare", "--count", &count.to_string(), "--forms", "五绝", "--beams", "2", "--per-beam", "4", "--refine", "0"])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run wenhui turing prepare");
    assert!(status.success(), "wenhui turing prepare failed");
    out
}

/// A `wenhui serve --turing` child process.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `wenhui serve --turing PAIRS --votes DB` on a free loopback port; waits until it listens.
    pub fn start(pairs: &Path, votes: &Path) -> Server {
        let mut child = Command::new(wenhui())
            .args(["serve", "--addr", "127.0.0.1:0", "--turing"])
            .arg(pairs)
            .arg("--votes")
            .arg(votes)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wenhui serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                eprintln!("[server] {line}");
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("wenhui serve did not start listening within 60 s");
            }
        };
        Server { child, addr }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILLs the server (no shutdown, no flush) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 request (Connection: close): the status and the body. `Err` when the connection
/// fails (e.g. the server was killed).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    // A server may answer 413 and close before reading a huge body: ignore the write error then.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    // After a 413 the server may reset the connection: keep what arrived before the reset.
    let read = s.read_to_end(&mut raw);
    if raw.is_empty() {
        read?;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| std::io::Error::other("no status line"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// GET returning JSON (panics on a non-200 answer).
pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// POSTs a vote: status and body.
pub fn vote(addr: SocketAddr, pair_id: &str, token: &str, pick: &str) -> std::io::Result<(u16, String)> {
    let body = serde_json::json!({"pair_id": pair_id, "token": token, "pick": pick}).to_string();
    http(addr, "POST", "/v1/turing/vote", Some(body.as_bytes()))
}

/// Votes stored in the database file, read directly (tokens, in order).
pub fn stored_tokens(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open the vote database");
    let mut st = conn.prepare("SELECT token FROM votes ORDER BY id").expect("query votes");
    let rows = st.query_map([], |r| r.get::<_, String>(0)).expect("query votes");
    rows.map(|r| r.expect("row")).collect()
}

/// `PRAGMA integrity_check` of the database file.
pub fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).expect("open the vote database");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).expect("integrity_check")
}
