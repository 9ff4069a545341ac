//! The listener: accepting connections under a cap in all and a cap per client address, the
//! TLS handshake, HTTP/1.1 on each connection with a deadline for each request's headers (so
//! an idle or half-sent connection is closed), and a graceful stop.
//!
//! Every request it reads goes to its [`Site`] (the admin API's [`route`], or the public
//! redress form of [`super::redress`]), tagged with the client's [`ClientAddr`]; it knows
//! nothing of endpoints, tokens or bodies.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::guard::Guard;
use super::http::ResponseBody;
use super::routes::{route, ClientAddr};
use super::State;

/// What a listener serves: its caps and timeouts, its edge by address, and its answers.
pub(super) trait Site: Send + Sync + 'static {
    /// Connections served at once; more wait in the listen queue.
    fn max_connections(&self) -> usize;
    /// For a request's headers (and a TLS handshake); an idle connection is closed after it.
    fn header_timeout(&self) -> Duration;
    /// Connections counted per address.
    fn guard(&self) -> &Arc<Guard>;
    fn tls(&self) -> Option<tokio_rustls::TlsAcceptor>;
    /// A connection was closed at once: its address held its share.
    fn connection_refused(&self);
    fn tls_failed(&self);
    fn header_timed_out(&self);
    /// The reply to one request (its [`ClientAddr`] in the extensions).
    fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = hyper::Response<ResponseBody>> + Send;
}

impl Site for State {
    fn max_connections(&self) -> usize {
        self.cfg.max_connections
    }
    fn header_timeout(&self) -> Duration {
        self.cfg.header_timeout()
    }
    fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }
    fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.clone()
    }
    fn connection_refused(&self) {
        self.stats.connections_refused.inc();
    }
    fn tls_failed(&self) {
        self.stats.tls_handshake_failures.inc();
    }
    fn header_timed_out(&self) {
        self.stats.header_timeouts.inc();
    }
    fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = hyper::Response<ResponseBody>> + Send {
        route(self, req)
    }
}

/// Serve the admin API until `shutdown` completes; connections in progress finish their
/// current request.
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_site(listener, state, shutdown).await
}

/// Serve `site` until `shutdown` completes.
pub(super) async fn serve_site<S: Site>(
    listener: TcpListener,
    state: Arc<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(state.max_connections()));
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
        let Some(counted) = state.guard().connect(peer.ip()) else {
            state.connection_refused();
            tracing::debug!(peer = %peer, "api: too many connections from this address");
            drop(stream);
            continue;
        };
        let st = state.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _held = (permit, counted);
            let Some(acceptor) = st.tls() else {
                return serve(stream, peer, st, stop).await;
            };
            // The handshake runs here, in the connection's own task, so a slow or hostile
            // client holds one permit and never the accept loop.
            let within = st.header_timeout();
            match tokio::time::timeout(within, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, peer, st, stop).await,
                Ok(Err(e)) => {
                    st.tls_failed();
                    tracing::debug!(peer = %peer, error = %e, "api: TLS handshake failed");
                }
                Err(_) => {
                    st.tls_failed();
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
async fn serve<S, T>(
    stream: S,
    peer: SocketAddr,
    st: Arc<T>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: Site,
{
    let state = st.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let st = state.clone();
        req.extensions_mut().insert(ClientAddr(peer));
        async move { Ok::<_, Infallible>(st.answer(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(st.header_timeout())
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                if e.is_timeout() {
                    st.header_timed_out();
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
