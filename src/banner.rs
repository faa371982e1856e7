//! What the server prints when it starts: first the `workshop listening on http://ADDR` line
//! that scripts parse, then what an operator wants to check in the first minute — version,
//! where the data lives, retention, upload limit, and the URLs that reach it (the machine's
//! own addresses when it listens on every interface, since 0.0.0.0 is not a place to go).
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;

pub fn text(config: &Config, addr: SocketAddr) -> String {
    let mut out = format!(
        "workshop listening on http://{addr}\n  \
         version:   {}\n  \
         database:  {}\n  \
         blobs:     {}\n  \
         retention: {}\n  \
         uploads:   up to {}\n",
        env!("CARGO_PKG_VERSION"),
        absolute(&config.db_path),
        absolute(&config.blobs_dir),
        retention(config.retention_days),
        size(config.max_file_bytes),
    );
    out.push_str(&url_lines(&reachable(addr, &crate::sys::interface_addrs())));
    out
}

fn retention(days: u64) -> String {
    match days {
        0 => "messages kept forever".to_string(),
        1 => "messages deleted after 1 day".to_string(),
        d => format!("messages deleted after {d} days"),
    }
}

/// The UI at each URL, then how to watch the stream at the first.
fn url_lines(urls: &[String]) -> String {
    let mut out = ui_lines(urls);
    if let Some(first) = urls.first() {
        out.push_str(&format!("  stream:    curl -N {first}/\n"));
    }
    out
}

/// A line for the UI at each URL, labelled once.
fn ui_lines(urls: &[String]) -> String {
    let mut out = String::new();
    for (i, url) in urls.iter().enumerate() {
        let label = if i == 0 { "ui:" } else { "" };
        out.push_str(&format!("  {label:<10} {url}/ui\n"));
    }
    out
}

/// Base URLs for `addr`: itself, or for an unspecified address each interface address of the
/// same family (IPv6 link-local ones left out: they need a zone to be usable).
fn reachable(addr: SocketAddr, interfaces: &[IpAddr]) -> Vec<String> {
    let ips = match addr.ip().is_unspecified() {
        true => usable(addr, interfaces),
        false => Vec::new(),
    };
    let ips = match ips.is_empty() {
        false => ips,
        // The interfaces are unknown (the unit's RestrictAddressFamilies= denies the netlink
        // socket they are read from): this machine's own loopback, a place to go, unlike
        // 0.0.0.0.
        true if addr.ip().is_unspecified() => vec![loopback(addr)],
        true => vec![addr.ip()],
    };
    ips.into_iter()
        .map(|ip| base_url(ip, addr.port()))
        .collect()
}

/// The interface addresses of `addr`'s family that another machine could use, loopback last.
fn usable(addr: SocketAddr, interfaces: &[IpAddr]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = interfaces
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() == addr.is_ipv4())
        .filter(|ip| match ip {
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        })
        .collect();
    // Loopback last: the others are what a second machine needs.
    ips.sort_by_key(|ip| (ip.is_loopback(), *ip));
    ips.dedup();
    ips
}

fn loopback(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

fn base_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
    }
}

fn absolute(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// `104857600` → `100 MiB`; other sizes in the largest unit that divides them, else bytes.
fn size(bytes: u64) -> String {
    for (unit, name) in [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_replaces_the_unspecified_address() {
        let addr: SocketAddr = "0.0.0.0:4242".parse().unwrap();
        let ifs: Vec<IpAddr> = ["127.0.0.1", "192.168.1.5", "fe80::1", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            reachable(addr, &ifs),
            [
                "http://10.0.0.2:4242",
                "http://192.168.1.5:4242",
                "http://127.0.0.1:4242"
            ]
        );
        let one: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(reachable(one, &ifs), ["http://127.0.0.1:9"]);
        // Interfaces unknown (the unit denies netlink): loopback, never 0.0.0.0.
        assert_eq!(reachable(addr, &[]), ["http://127.0.0.1:4242"]);
        let v6: SocketAddr = "[::]:4242".parse().unwrap();
        assert_eq!(reachable(v6, &[]), ["http://[::1]:4242"]);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(104_857_600), "100 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
