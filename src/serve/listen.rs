//! The accept loop: HTTP/1.1 connections served by hyper with a header-read timeout (a client that
//! never finishes its headers is dropped), and a stop that drains the requests in flight for at
//! most [`Limits::shutdown_grace`] — a second stop (Ctrl-C again) ends them at once.

use super::limits::Limits;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The next stop request (its reason); never resolves once no one can send one.
async fn next_stop(stops: &mut UnboundedReceiver<&'static str>) -> &'static str {
    match stops.recv().await {
        Some(why) => why,
        None => std::future::pending().await,
    }
}

/// How long the cancelled requests get to send their 503 (the worker stops a request within one
/// decode or search step) before their connections are dropped.
const CANCEL_DRAIN: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until the first stop, then drains: returns when every connection
/// has finished; when the grace period ends or at the second stop, it sets `cancelled` (the
/// worker answers every request it holds with 503) and returns once those answers are out, for
/// at most [`CANCEL_DRAIN`]. Connections still open then are dropped with the runtime.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &Limits,
    mut stops: UnboundedReceiver<&'static str>,
    cancelled: &AtomicBool,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper adds the timeout to the time a request starts: `Limits::validate` bounds it, and the
    // clamp keeps that sum from overflowing whatever `Limits` this was given.
    http.timer(TokioTimer::new()).header_read_timeout(limits.read_timeout.min(Duration::from_secs(Limits::MAX_SECONDS)));
    let graceful = GracefulShutdown::new();
    let why = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended with an error: {e}");
                    }
                });
            }
            why = next_stop(&mut stops) => break why,
        }
    };
    drop(listener);
    if why != "stop" {
        tracing::warn!(
            "{why}: finishing the requests in flight (at most {} s; {why} again stops them now), then stopping",
            limits.shutdown_grace.as_secs_f64()
        );
    }
    let mut drained = std::pin::pin!(graceful.shutdown());
    tokio::select! {
        _ = &mut drained => return,
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("requests still running after {} s: stopping them", limits.shutdown_grace.as_secs_f64());
        }
        why = next_stop(&mut stops) => tracing::warn!("{why} again: stopping the requests in flight now"),
    }
    // Dropping a connection mid-request would leave its client without any answer: the worker
    // answers 503 instead (an error event then `[DONE]` on a stream), and the connections close
    // once that is sent.
    cancelled.store(true, Ordering::Relaxed);
    if tokio::time::timeout(CANCEL_DRAIN, &mut drained).await.is_err() {
        tracing::warn!("connections still open {} s after the cancel: closing them", CANCEL_DRAIN.as_secs_f64());
    }
}

/// Forwards `stop` (a [`super::ServerHandle`]'s), and with `signals` every Ctrl-C and SIGTERM, as
/// stop requests to the returned receiver.
pub(crate) fn stop_requests(stop: tokio::sync::oneshot::Receiver<()>, signals: bool) -> UnboundedReceiver<&'static str> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            // Dropped without a send: the handle is gone, which also means stop.
            let _ = stop.await;
            let _ = tx.send("stop");
        });
    }
    if signals {
        let ctrl_c = tx.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if ctrl_c.send("Ctrl-C").is_err() {
                    break;
                }
            }
        });
        #[cfg(unix)]
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else { return };
            while term.recv().await.is_some() {
                if tx.send("SIGTERM").is_err() {
                    break;
                }
            }
        });
    }
    rx
}
