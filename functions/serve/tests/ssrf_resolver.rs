//! The URL guard with a stub resolver: names that resolve to private, link-local
//! (cloud metadata) or loopback addresses are refused before any connection,
//! without ever contacting such an address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use d2serve_serve::fetch::{Fetcher, HostLookup};
use d2serve_serve::ssrf::AllowList;
use futures_util::future::BoxFuture;

struct Stub;

impl HostLookup for Stub {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let ips: Vec<IpAddr> = match host.as_str() {
            "private.example" => vec!["10.1.2.3".parse().unwrap()],
            "corp.example" => vec!["172.20.0.9".parse().unwrap(), "192.168.7.7".parse().unwrap()],
            "metadata.example" => vec!["169.254.169.254".parse().unwrap()],
            "v6-metadata.example" => vec!["fd00:ec2::254".parse().unwrap()],
            "rebind.example" => vec!["127.0.0.1".parse().unwrap()],
            "mapped.example" => vec!["::ffff:10.0.0.1".parse().unwrap()],
            _ => vec![],
        };
        Box::pin(async move { Ok(ips) })
    }
}

#[tokio::test]
async fn names_resolving_to_private_or_metadata_addresses_are_refused() {
    let f = Fetcher::new(AllowList::default(), Arc::new(Stub), 1 << 20, Duration::from_secs(5));
    for (host, ip) in [
        ("private.example", "10.1.2.3"),
        ("corp.example", "192.168.7.7"),
        ("metadata.example", "169.254.169.254"),
        ("v6-metadata.example", "fd00:ec2::254"),
        ("rebind.example", "127.0.0.1"),
        ("mapped.example", "10.0.0.1"),
    ] {
        let e = f.get(&format!("http://{host}/image.png")).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 403, "{host}: {e:?}");
        assert_eq!(e.error, "url_blocked", "{host}");
        assert!(e.detail.contains(host) && e.detail.contains(ip), "{host}: {}", e.detail);
    }
    // A name with no address is a 4xx too (unreachable), never a 5xx.
    let e = f.get("http://nowhere.example/x.png").await.unwrap_err();
    assert!(e.status.is_client_error(), "{e:?}");
}
