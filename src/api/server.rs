//! The listener: accepting connections under a cap in all and a cap per client address, the
//! TLS handshake, HTTP/1.1 on each connection with a deadline for each request's headers (so
//! an idle or half-sent connection is closed), and a graceful stop.
//!
//! Every request it reads goes to [`route`], tagged with the client's [`ClientAddr`]; it knows
//! nothing of endpoints, tokens or bodies.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::routes::{route, ClientAddr};
use super::State;

/// Serve until `shutdown` completes; connections in progress finish their current request.
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(state.cfg.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // One address may not hold every connection: past its share it is closed at once,
        // which frees the permit for everyone else.
        let Some(counted) = state.guard.connect(peer.ip()) else {
            state.stats.connections_refused.inc();
            tracing::debug!(peer = %peer, "api: too many connections from this address");
            drop(stream);
            continue;
        };
        let st = state.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _held = (permit, counted);
            let Some(acceptor) = st.tls.clone() else {
                return serve(stream, peer, st, stop).await;
            };
            // The handshake runs here, in the connection's own task, so a slow or hostile
            // client holds one permit and never the accept loop.
            let within = st.cfg.header_timeout();
            match tokio::time::timeout(within, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, peer, st, stop).await,
                Ok(Err(e)) => {
                    st.stats.tls_handshake_failures.inc();
                    tracing::debug!(peer = %peer, error = %e, "api: TLS handshake failed");
                }
                Err(_) => {
                    st.stats.tls_handshake_failures.inc();
                    tracing::debug!(peer = %peer, "api: TLS handshake timed out");
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// HTTP/1.1 on one connection, plain or TLS, until the client leaves, is too slow with its
/// headers (the deadline also runs while a kept-alive connection waits for its next request),
/// or the server stops.
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    st: Arc<State>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = st.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let st = state.clone();
        req.extensions_mut().insert(ClientAddr(peer));
        async move { Ok::<_, Infallible>(route(&st, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(st.cfg.header_timeout())
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                if e.is_timeout() {
                    st.stats.header_timeouts.inc();
                }
                tracing::debug!(peer = %peer, error = %e, "api: connection ended");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
