//! Prometheus text metrics: requests by endpoint and status, queue depth, generated tokens,
//! generation rate and a latency histogram per endpoint.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The server's counters. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    queue_depth: AtomicI64,
    generated_tokens: AtomicU64,
    busy_ns: AtomicU64,
    last_rate_milli: AtomicU64,
    batch_rows: AtomicU64,
    batch_rows_peak: AtomicU64,
    decode_steps: AtomicU64,
}

impl Metrics {
    /// Counts a finished request (status 499: the client left before the answer) and its latency.
    pub fn record(&self, endpoint: &str, status: u16, elapsed: Duration) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((endpoint.to_string(), status)).or_default() += 1;
        let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h =
            lat.entry(endpoint.to_string()).or_insert_with(|| Histogram { counts: vec![0; LATENCY_BUCKETS.len()], ..Default::default() });
        let s = elapsed.as_secs_f64();
        for (c, &b) in h.counts.iter_mut().zip(LATENCY_BUCKETS) {
            if s <= b {
                *c += 1;
            }
        }
        h.sum += s;
        h.count += 1;
    }
    /// A request entered the queue.
    pub fn enqueued(&self) {
        self.queue_depth.fetch_add(1, Ordering::Relaxed);
    }
    /// The worker took a request off the queue.
    pub fn dequeued(&self) {
        self.queue_depth.fetch_sub(1, Ordering::Relaxed);
    }
    /// Requests waiting for the model now.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.load(Ordering::Relaxed)
    }
    /// The worker generated `tokens` tokens in `busy` of model time.
    pub fn generated(&self, tokens: usize, busy: Duration) {
        self.tokens_generated(tokens);
        self.model_busy(tokens, busy);
    }
    /// Counts `tokens` generated tokens (before the answers holding them are sent, so that a
    /// client reading the metrics after its answer sees its tokens).
    pub fn tokens_generated(&self, tokens: usize) {
        self.generated_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
    }
    /// The model was busy for `busy` producing `tokens` tokens (already counted).
    pub fn model_busy(&self, tokens: usize, busy: Duration) {
        self.busy_ns.fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
        if tokens > 0 && busy > Duration::ZERO {
            self.last_rate_milli.store((tokens as f64 / busy.as_secs_f64() * 1e3) as u64, Ordering::Relaxed);
        }
    }
    /// A continuous-batching decode step ran over `rows` rows.
    pub fn batch_step(&self, rows: usize) {
        self.batch_rows.store(rows as u64, Ordering::Relaxed);
        self.batch_rows_peak.fetch_max(rows as u64, Ordering::Relaxed);
        self.decode_steps.fetch_add(1, Ordering::Relaxed);
    }
    /// The most rows one decode step has run over.
    pub fn batch_rows_peak(&self) -> u64 {
        self.batch_rows_peak.load(Ordering::Relaxed)
    }
    /// Tokens generated since start.
    pub fn generated_tokens(&self) -> u64 {
        self.generated_tokens.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP wenhui_requests_total HTTP requests by endpoint and status (streams: their outcome; 499: the client left first)."
        );
        let _ = writeln!(o, "# TYPE wenhui_requests_total counter");
        for ((e, s), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(o, "wenhui_requests_total{{endpoint=\"{e}\",status=\"{s}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP wenhui_queue_depth Requests waiting for the model worker.");
        let _ = writeln!(o, "# TYPE wenhui_queue_depth gauge");
        let _ = writeln!(o, "wenhui_queue_depth {}", self.queue_depth().max(0));
        let tokens = self.generated_tokens();
        let busy = self.busy_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            o,
            "# HELP wenhui_generated_tokens_total Tokens generated: completions and fills, and the tokens of poem and answer texts."
        );
        let _ = writeln!(o, "# TYPE wenhui_generated_tokens_total counter");
        let _ = writeln!(o, "wenhui_generated_tokens_total {tokens}");
        let _ = writeln!(o, "# HELP wenhui_generation_seconds_total Model time spent generating those tokens.");
        let _ = writeln!(o, "# TYPE wenhui_generation_seconds_total counter");
        let _ = writeln!(o, "wenhui_generation_seconds_total {busy:.6}");
        let _ = writeln!(o, "# HELP wenhui_tokens_per_second Generated tokens per second of model time, since start.");
        let _ = writeln!(o, "# TYPE wenhui_tokens_per_second gauge");
        let _ = writeln!(o, "wenhui_tokens_per_second {:.3}", if busy > 0.0 { tokens as f64 / busy } else { 0.0 });
        let _ = writeln!(o, "# HELP wenhui_last_request_tokens_per_second Generation rate of the last decode step (batched completions) or request (others).");
        let _ = writeln!(o, "# TYPE wenhui_last_request_tokens_per_second gauge");
        let _ = writeln!(o, "wenhui_last_request_tokens_per_second {:.3}", self.last_rate_milli.load(Ordering::Relaxed) as f64 / 1e3);
        let _ = writeln!(o, "# HELP wenhui_batch_rows Rows (completion choices) in the last continuous-batching decode step.");
        let _ = writeln!(o, "# TYPE wenhui_batch_rows gauge");
        let _ = writeln!(o, "wenhui_batch_rows {}", self.batch_rows.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP wenhui_batch_rows_peak The most rows one decode step has run over.");
        let _ = writeln!(o, "# TYPE wenhui_batch_rows_peak gauge");
        let _ = writeln!(o, "wenhui_batch_rows_peak {}", self.batch_rows_peak());
        let _ = writeln!(o, "# HELP wenhui_decode_steps_total Continuous-batching decode steps.");
        let _ = writeln!(o, "# TYPE wenhui_decode_steps_total counter");
        let _ = writeln!(o, "wenhui_decode_steps_total {}", self.decode_steps.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP wenhui_request_duration_seconds Request latency (streams: until the stream ends).");
        let _ = writeln!(o, "# TYPE wenhui_request_duration_seconds histogram");
        for (e, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (c, b) in h.counts.iter().zip(LATENCY_BUCKETS) {
                let _ = writeln!(o, "wenhui_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"{b}\"}} {c}");
            }
            let _ = writeln!(o, "wenhui_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(o, "wenhui_request_duration_seconds_sum{{endpoint=\"{e}\"}} {:.6}", h.sum);
            let _ = writeln!(o, "wenhui_request_duration_seconds_count{{endpoint=\"{e}\"}} {}", h.count);
        }
        o
    }
}
