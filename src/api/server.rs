//! The listener: accepting connections under a cap, the TLS handshake, HTTP/1.1 on each
//! connection, and a graceful stop.
//!
//! Every request it reads goes to [`route`]; it knows nothing of endpoints, tokens or bodies.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::routes::route;
use super::State;

/// How long a client may take to send a request's headers, or to finish a TLS handshake.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

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
        let st = state.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = st.tls.clone() else {
                return serve(stream, st, stop).await;
            };
            // The handshake runs here, in the connection's own task, so a slow or hostile
            // client holds one permit and never the accept loop.
            match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, st, stop).await,
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

/// HTTP/1.1 on one connection, plain or TLS, until the client leaves or the server stops.
async fn serve<S>(stream: S, st: Arc<State>, mut stop: tokio::sync::watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let st = st.clone();
        async move { Ok::<_, Infallible>(route(&st, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
