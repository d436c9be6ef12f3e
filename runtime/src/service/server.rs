//! The listener: TCP (and optionally TLS via rustls), HTTP/1.1 connections served by
//! hyper, graceful shutdown.
//!
//! Invariants:
//! - At most `max_connections` connections are served at once; past that the service
//!   stops accepting until one closes (clients wait in the kernel's backlog).
//! - A client gets `header_read_timeout_ms` to send its request headers, and as long to
//!   finish a TLS handshake; request headers are capped at [`MAX_HEADER_BYTES`].
//! - HTTP/1.1 only (ALPN `http/1.1` under TLS): agents' clients all speak it, and leaving
//!   HTTP/2 out leaves out its stream-multiplexing attack surface.
//! - On shutdown the listener closes first (new connections are refused), requests in
//!   flight finish (idle keep-alive connections close at once), for at most
//!   `shutdown_grace_ms`; then the audit log is flushed.
//! - The client address every handler sees is the TCP peer's, never a header.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::Service as _;

use super::{Service, ServiceError};
use crate::config::{ServerConfig, TlsConfig};

/// Largest request head (request line and headers) read: 64 KiB, far above any real
/// client's, so a client cannot make the service buffer megabytes of headers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not
/// spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound listening socket (and TLS settings), ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    addr: SocketAddr,
}

impl Listener {
    /// Bind `config.listen` and load the TLS certificate and key if configured.
    pub async fn bind(config: &ServerConfig) -> Result<Listener, ServiceError> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let tcp = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServiceError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = tcp.local_addr().map_err(|source| ServiceError::Bind {
            addr: config.listen,
            source,
        })?;
        if !addr.ip().is_loopback() && tls.is_none() {
            tracing::warn!(
                %addr,
                "listening beyond loopback without TLS: tokens and values cross the network \
                 in clear; configure [server.tls]"
            );
        }
        Ok(Listener { tcp, tls, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// `http://127.0.0.1:8900` or `https://…`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }
}

fn load_tls(tls: &TlsConfig) -> Result<TlsAcceptor, ServiceError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| ServiceError::Tls(format!("certificate file {}: {e}", tls.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServiceError::Tls(format!("certificate file {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(ServiceError::Tls(format!(
            "certificate file {} holds no PEM certificate",
            tls.cert.display()
        )));
    }
    // The key's text never appears in an error: pki-types reports only the kind of failure.
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| ServiceError::Tls(format!("key file {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServiceError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServiceError::Tls(format!(
                "certificate {} and key {} do not make a usable pair: {e}",
                tls.cert.display(),
                tls.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serve `service` on `listener` until `shutdown` completes, then drain.
pub async fn serve(
    service: Service,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServiceError> {
    let config = service.config().clone();
    let router = service.router();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(config.max_connections as usize));
    let header_timeout = config.header_read_timeout();
    let Listener { tcp, tls, addr } = listener;
    tracing::info!(%addr, tls = tls.is_some(), "airlock service listening");
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                async move { router.call(req).await }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(true);
            let served = match tls {
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), svc);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let conn = http.serve_connection(TokioIo::new(tls_stream), svc);
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(tcp);
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    let grace = config.shutdown_grace();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "requests still running after the shutdown grace period were cut off"
        );
    }
    service.audit().flush().await;
    tracing::info!("airlock service stopped");
    Ok(())
}
