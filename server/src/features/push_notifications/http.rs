//! Notifications over HTTP for ChatSecure's publish-options (`token` + `endpoint`): what RubDub,
//! the XEP-0357 bridge ChatSecure's relay used, did with a publish: `POST <endpoint>` with the token
//! and a priority, form-encoded (ChatSecure-Push-Server's `/api/v1/messages/`).
//!
//! The endpoint is the user's choice, so the server must not become a way into its own network:
//! only `https:` (plain `http:` when configured), never a non-public address unless configured (both
//! the address literal in the URL and every address the name resolves to, checked when connecting, so
//! a name cannot resolve to a public address at enable time and a private one later), no redirects,
//! no proxies from the environment, a time limit, and the answer's body is never read.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::wire::Outcome;
use crate::config::PushNotificationSettings;

/// Why an endpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("the endpoint is not a URL")]
    NotAUrl,
    #[error("the endpoint must be https")]
    Scheme,
    #[error("the endpoint must be on a public address")]
    NotPublic,
}

/// Checks `endpoint` against the configuration: scheme, and the host when it is an address literal
/// (names are checked when resolved, by [`PublicOnly`]).
pub fn check_endpoint(
    endpoint: &str,
    settings: &PushNotificationSettings,
) -> Result<Url, EndpointError> {
    let url = Url::parse(endpoint).map_err(|_| EndpointError::NotAUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if settings.allow_plain_http => {}
        _ => return Err(EndpointError::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::NotAUrl);
    }
    // The parser has normalised the host: an IPv4 address in any notation is dotted decimal, an
    // IPv6 one is in brackets.
    let host = url.host_str().ok_or(EndpointError::NotAUrl)?;
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if let Some(ip) = literal
        && !settings.allow_private_addresses
        && !is_public(ip)
    {
        return Err(EndpointError::NotPublic);
    }
    Ok(url)
}

/// Whether `ip` is an address on the public internet: not loopback, private (RFC 1918, RFC 4193),
/// link-local, shared (RFC 6598), unspecified, multicast, broadcast, documentation or
/// benchmarking, nor an IPv4 address hidden in IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                // 64:ff9b::/96 (NAT64) and ::/96 (IPv4-compatible) carry IPv4 addresses.
                || (first == 0x64 && v6.segments()[1] == 0xff9b)
                || v6.segments()[..6].iter().all(|s| *s == 0))
        }
    }
}

/// A resolver that keeps only public addresses (see [`is_public`]); a name with none fails.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = resolved.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client for notifications, per the configuration. Errors: the TLS backend could not start.
pub fn client(settings: &PushNotificationSettings) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.http_timeout)
        .connect_timeout(settings.http_timeout)
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")));
    let builder = if settings.allow_private_addresses {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnly))
    };
    builder.build()
}

/// Posts a notification for `token` to `endpoint` (checked again: the configuration may have changed
/// since it was enabled) and classifies the answer: 2xx delivered; 404 and 410 gone (ChatSecure's
/// relay answers 404 for an unknown or revoked token); 429, 5xx and timeouts retried; any other
/// status, and no connection, counted as a failure.
pub async fn notify(
    client: &reqwest::Client,
    settings: &PushNotificationSettings,
    endpoint: &str,
    token: &str,
) -> Outcome {
    let url = match check_endpoint(endpoint, settings) {
        Ok(url) => url,
        Err(error) => {
            tracing::info!(%error, "push endpoint refused");
            return Outcome::Gone;
        }
    };
    // Every pushable stanza needs the user's attention: RubDub's `high`.
    let sent = client
        .post(url)
        .form(&[("token", token), ("priority", "high")])
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Outcome::Delivered
            } else if status == reqwest::StatusCode::NOT_FOUND
                || status == reqwest::StatusCode::GONE
            {
                Outcome::Gone
            } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                Outcome::Retry
            } else {
                Outcome::Failed
            }
        }
        // A timeout may pass; a name with no (public) address or a refused connection is counted,
        // so an endpoint that never works is disabled after a few notifications.
        Err(error) if error.is_timeout() => Outcome::Retry,
        Err(error) => {
            tracing::info!(error = %error, "push endpoint unreachable");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allow_plain_http: bool, allow_private_addresses: bool) -> PushNotificationSettings {
        PushNotificationSettings {
            allow_plain_http,
            allow_private_addresses,
            ..PushNotificationSettings::default()
        }
    }

    #[test]
    fn endpoints_are_https_on_public_addresses_unless_configured() {
        let strict = settings(false, false);
        let open = settings(true, true);
        let table = [
            (
                "https://push.chatsecure.org/api/v1/messages/",
                Ok(()),
                Ok(()),
            ),
            ("https://93.184.215.14/x", Ok(()), Ok(())),
            ("http://push.example/x", Err(EndpointError::Scheme), Ok(())),
            (
                "https://127.0.0.1:8080/x",
                Err(EndpointError::NotPublic),
                Ok(()),
            ),
            ("https://10.1.2.3/x", Err(EndpointError::NotPublic), Ok(())),
            ("https://[::1]/x", Err(EndpointError::NotPublic), Ok(())),
            (
                "https://[::ffff:192.168.0.1]/x",
                Err(EndpointError::NotPublic),
                Ok(()),
            ),
            (
                "https://169.254.169.254/latest",
                Err(EndpointError::NotPublic),
                Ok(()),
            ),
            (
                "ftp://push.example/x",
                Err(EndpointError::Scheme),
                Err(EndpointError::Scheme),
            ),
            (
                "file:///etc/passwd",
                Err(EndpointError::Scheme),
                Err(EndpointError::Scheme),
            ),
            (
                "gopher://127.0.0.1/",
                Err(EndpointError::Scheme),
                Err(EndpointError::Scheme),
            ),
            (
                "not a url",
                Err(EndpointError::NotAUrl),
                Err(EndpointError::NotAUrl),
            ),
            (
                "https://user:pw@push.example/",
                Err(EndpointError::NotAUrl),
                Err(EndpointError::NotAUrl),
            ),
        ];
        for (endpoint, strictly, openly) in table {
            assert_eq!(
                check_endpoint(endpoint, &strict).map(|_| ()),
                strictly,
                "{endpoint}"
            );
            assert_eq!(
                check_endpoint(endpoint, &open).map(|_| ()),
                openly,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn public_addresses() {
        for public in ["8.8.8.8", "93.184.215.14", "2a00:1450:4001::1"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "::7f00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
    }
}
