//! Name resolution for outbound requests, done by the host once per request, and the
//! resolver handed to reqwest that only ever returns addresses the policy checked.
//!
//! Invariant (rebinding safety): reqwest never looks a name up itself. The sender resolves
//! with a [`Lookup`], checks every address, and pins them in the [`PinnedResolver`] for
//! the duration of the request; reqwest's connector asks the pinned resolver, which answers
//! with exactly those addresses or fails. A DNS answer that changes between the check and
//! the connect (DNS rebinding) therefore changes nothing.
//!
//! Pins are keyed by host name. Two concurrent requests to one name may pin different
//! answers; either answer is safe for both, because for a DNS-name request the address
//! check depends only on the backend's policy, the name and the request's scheme, port,
//! method and path — and both answers passed it. A pin is removed when its last request
//! ends, so the table stays as small as the number of requests in flight.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves a host name to addresses.
#[async_trait]
pub trait Lookup: Send + Sync {
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo` via tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, port)).await?;
        let mut ips: Vec<IpAddr> = Vec::new();
        for addr in addrs {
            if !ips.contains(&addr.ip()) {
                ips.push(addr.ip());
            }
        }
        Ok(ips)
    }
}

/// A fixed name → addresses table: answers without any network traffic. For tests and
/// deployments that want to pin names in configuration. Unknown names fail to resolve.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup {
    table: HashMap<String, Vec<IpAddr>>,
}

impl StaticLookup {
    pub fn new<N: Into<String>>(entries: impl IntoIterator<Item = (N, Vec<IpAddr>)>) -> Self {
        StaticLookup {
            table: entries
                .into_iter()
                .map(|(n, a)| (n.into().to_ascii_lowercase(), a))
                .collect(),
        }
    }
}

#[async_trait]
impl Lookup for StaticLookup {
    async fn lookup(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        self.table
            .get(&host.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name not in the static table"))
    }
}

#[derive(Debug)]
struct Pin {
    addrs: Vec<IpAddr>,
    users: usize,
}

/// The resolver reqwest uses: answers only from pins the sender set.
#[derive(Debug, Default)]
pub struct PinnedResolver {
    pins: Mutex<HashMap<String, Pin>>,
}

impl PinnedResolver {
    pub fn new() -> Arc<Self> {
        Arc::new(PinnedResolver::default())
    }

    /// Pin `addrs` (already checked) for `host` until the guard drops.
    pub fn pin(self: &Arc<Self>, host: &str, addrs: Vec<IpAddr>) -> PinGuard {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        let pin = pins.entry(host.to_owned()).or_insert(Pin {
            addrs: Vec::new(),
            users: 0,
        });
        pin.addrs = addrs;
        pin.users += 1;
        PinGuard {
            resolver: Arc::clone(self),
            host: host.to_owned(),
        }
    }

    /// The pinned addresses for `host`, if a request for it is in flight.
    pub fn pinned(&self, host: &str) -> Option<Vec<IpAddr>> {
        let pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        pins.get(host).map(|p| p.addrs.clone())
    }

    fn release(&self, host: &str) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pin) = pins.get_mut(host) {
            pin.users = pin.users.saturating_sub(1);
            if pin.users == 0 {
                pins.remove(host);
            }
        }
    }
}

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let answer = self.pinned(&host);
        Box::pin(async move {
            match answer {
                Some(addrs) if !addrs.is_empty() => {
                    // Port 0 is replaced by the URL's port by the connector.
                    let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                _ => Err(Box::new(io::Error::other(format!(
                    "no checked address for {host}: the host never resolves names on its own"
                )))
                    as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// Keeps a pin alive; dropping it releases the pin.
#[derive(Debug)]
pub struct PinGuard {
    resolver: Arc<PinnedResolver>,
    host: String,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.resolver.release(&self.host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn pinned_resolver_answers_only_with_pins() {
        let r = PinnedResolver::new();
        let name: Name = "vault.internal".parse().unwrap();
        assert!(r.resolve(name).await.is_err());

        let g1 = r.pin("vault.internal", vec![ip("10.0.0.1")]);
        let g2 = r.pin("vault.internal", vec![ip("10.0.0.2")]);
        let got: Vec<SocketAddr> = r
            .resolve("vault.internal".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(got, vec![SocketAddr::new(ip("10.0.0.2"), 0)]);
        drop(g2);
        assert_eq!(r.pinned("vault.internal"), Some(vec![ip("10.0.0.2")]));
        drop(g1);
        assert_eq!(r.pinned("vault.internal"), None);
        assert!(r.resolve("vault.internal".parse().unwrap()).await.is_err());
    }

    #[tokio::test]
    async fn static_lookup_never_touches_the_network() {
        let l = StaticLookup::new([("Vault.Internal", vec![ip("10.0.0.1")])]);
        assert_eq!(
            l.lookup("vault.internal", 443).await.unwrap(),
            vec![ip("10.0.0.1")]
        );
        assert_eq!(
            l.lookup("other.internal", 443).await.unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn system_lookup_resolves_localhost_from_the_hosts_file() {
        let ips = SystemLookup.lookup("localhost", 80).await.unwrap();
        assert!(!ips.is_empty());
        assert!(ips.iter().all(|i| i.is_loopback()), "{ips:?}");
    }
}
