//! A loopback load generator for `wenhui bench serve`: N concurrent clients send completion
//! requests over HTTP/1.1 (hand-written, one connection per request) and the throughput and
//! latency percentiles are measured, with continuous batching on and off.

use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Concurrent clients.
    pub clients: usize,
    /// The server's `--max-batch`.
    pub max_batch: usize,
    /// Requests answered 200.
    pub ok: usize,
    /// Requests answered otherwise (or failed).
    pub errors: usize,
    /// Completion tokens generated (from `usage`).
    pub tokens: usize,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// Completion tokens per second of wall time.
    pub tokens_per_s: f64,
    /// Median request latency in milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile request latency in milliseconds.
    pub p99_ms: f64,
}

/// POSTs `body` to `path` and returns (status, body).
pub fn post_json(addr: SocketAddr, path: &str, body: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs `requests` completion requests (`body(i)`) from `clients` threads against `addr`,
/// stopping early once `max_time` has passed.
pub fn load(addr: SocketAddr, clients: usize, requests: usize, max_time: Duration, body: &(dyn Fn(usize) -> String + Sync)) -> LoadReport {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let work = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= requests || start.elapsed() > max_time {
                break;
            }
            let t0 = Instant::now();
            let r = post_json(addr, "/v1/completions", &body(i), max_time.saturating_add(Duration::from_secs(30)));
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let (ok, tokens) = match r {
                Ok((200, b)) => {
                    let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                    (true, v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize)
                }
                _ => (false, 0),
            };
            out.push((ok, tokens, ms));
        }
        out
    };
    let results: Vec<(bool, usize, f64)> = std::thread::scope(|s| {
        // Clients the system cannot start are not started: the ones running share the requests
        // (a failed spawn panicked before).
        let workers: Vec<_> = (0..clients.max(1)).map_while(|_| std::thread::Builder::new().spawn_scoped(s, work).ok()).collect();
        if workers.len() < clients {
            tracing::warn!("bench serve: only {} of {clients} client threads could start", workers.len());
        }
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results.iter().filter(|r| r.0).map(|r| r.2).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let tokens = results.iter().map(|r| r.1).sum();
    LoadReport {
        clients,
        max_batch: 0,
        ok: results.iter().filter(|r| r.0).count(),
        errors: results.iter().filter(|r| !r.0).count(),
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    }
}
