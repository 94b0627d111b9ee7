//! The client's address, as request limits key on it. The limiter itself is the domain's
//! ([`postern_domain::limit`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;
use crate::error::ApiError;

pub use postern_domain::envelope::unmap;
use postern_domain::limit::client_key;
pub use postern_domain::limit::{HOUR, MINUTE};

/// The client's address: the socket peer, or, when the peer is a trusted proxy
/// (`http.trusted_proxies`), the nearest address in `X-Forwarded-For` that is not one.
/// IPv6 clients are keyed by their /64, which one subscriber usually holds whole.
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let Some(peer) = peer else {
            return Ok(ClientIp("local".to_string()));
        };
        let trusted = &state.ctx.settings().http.trusted_proxies;
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(client_key(client_address(
            peer, &forwarded, trusted,
        ))))
    }
}

/// Walks `X-Forwarded-For` from the right while the hop that added an entry is trusted.
fn client_address(peer: IpAddr, forwarded: &[&str], trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&unmap(*ip)));
    let mut client = unmap(peer);
    if !is_trusted(&client) {
        return client;
    }
    let hops = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = unmap(ip);
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer: IpAddr = "10.1.1.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        // A client behind the proxy is the rightmost untrusted hop, not what it claims.
        assert_eq!(
            client_address(peer, &["203.0.113.5, 192.0.2.1, 10.2.2.2"], &proxies),
            "192.0.2.1".parse::<IpAddr>().expect("ip")
        );
        // A direct client cannot pretend to be someone else.
        assert_eq!(client_address(stranger, &["192.0.2.1"], &proxies), stranger);
        // Off by default.
        assert_eq!(client_address(peer, &["192.0.2.1"], &[]), peer);
    }
}
