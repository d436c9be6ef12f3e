//! HTTPS through the outbound client against a TLS server on 127.0.0.1 whose certificate
//! was signed by a throw-away CA: the per-backend `ca_bundle` is what makes it trusted,
//! certificate and host name are verified, and the connection goes to the pinned address
//! while TLS still verifies the name from the URL.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock::outbound::client::OutboundClient;
use airlock::outbound::config::OutboundConfig;
use airlock::outbound::resolve::StaticLookup;
use airlock::outbound::{HttpSender, OutboundError, OutboundRequest};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

/// Connections the server accepts before it stops.
const MAX_CONNECTIONS: usize = 4;

struct Pki {
    ca_pem: String,
    leaf: pki_types::CertificateDer<'static>,
    key: pki_types::PrivateKeyDer<'static>,
}

/// A CA and a leaf certificate for `vault.test` signed by it.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "airlock test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["vault.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        key: pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

/// A TLS server on 127.0.0.1 answering every request with 200 "secure".
async fn tls_server(pki: &Pki) -> (u16, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.key.clone_key())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        for _ in 0..MAX_CONNECTIONS {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let serve = async {
                    let mut tls = acceptor.accept(stream).await.ok()?;
                    // Read the request head (bounded), then answer.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        let n = tls.read(&mut buf).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        head.extend_from_slice(&buf[..n]);
                    }
                    tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure",
                    )
                    .await
                    .ok()?;
                    tls.shutdown().await.ok()
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
            });
        }
    });
    (port, task)
}

fn client(port: u16, ca_bundle: Option<std::path::PathBuf>) -> OutboundClient {
    let config = OutboundConfig {
        allowed_outbound: vec![format!("https://*.test:{port}")],
        allow_private_networks: true,
        ca_bundle,
        timeout_ms: 5_000,
        connect_timeout_ms: 2_000,
        ..OutboundConfig::default()
    };
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let lookup = StaticLookup::new([
        ("vault.test", vec![loopback]),
        ("other.test", vec![loopback]),
    ]);
    OutboundClient::with_lookup("tls-test", &config, Arc::new(lookup)).unwrap()
}

fn get(url: String) -> OutboundRequest {
    OutboundRequest {
        method: "GET".into(),
        url,
        headers: vec![],
        body: None,
    }
}

fn bundle(pki: &Pki) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    (dir, path)
}

#[tokio::test]
async fn outbound_tls_trusts_the_configured_ca_bundle() {
    let pki = pki();
    let (port, server) = tls_server(&pki).await;
    let (_dir, path) = bundle(&pki);
    let c = client(port, Some(path));
    let response = c
        .send(get(format!("https://vault.test:{port}/v1/sys/health")))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"secure");
    server.abort();
}

#[tokio::test]
async fn outbound_tls_refuses_a_certificate_from_an_unknown_ca() {
    let pki = pki();
    let (port, server) = tls_server(&pki).await;
    let c = client(port, None);
    let err = c
        .send(get(format!("https://vault.test:{port}/")))
        .await
        .unwrap_err();
    let OutboundError::Connection(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    server.abort();
}

#[tokio::test]
async fn outbound_tls_verifies_the_name_from_the_url_not_the_pinned_address() {
    let pki = pki();
    let (port, server) = tls_server(&pki).await;
    let (_dir, path) = bundle(&pki);
    let c = client(port, Some(path));
    let err = c
        .send(get(format!("https://other.test:{port}/")))
        .await
        .unwrap_err();
    let OutboundError::Connection(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("not valid for name"), "{msg}");
    assert_eq!(c.stats().snapshot().connection, 1);
    server.abort();
}
