//! The browser rules' unit tests: which requests are browsers', and what each rule admits.
use super::*;
use crate::config::browser::{parse_cors_origins, parse_hostnames};

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36";

fn policy(hostnames: &str, cors: &str) -> Policy {
    Policy {
        hostnames: parse_hostnames(hostnames).unwrap(),
        cors: parse_cors_origins(cors).unwrap(),
    }
}

fn seen<'a>(host: &'a str, origin: Option<&'a str>) -> Seen<'a> {
    Seen {
        host: Some(host),
        origin,
        user_agent: Some(CHROME),
        ..Seen::default()
    }
}

fn status(result: Result<(), ApiError>) -> u16 {
    result.err().map_or(200, |e| e.status)
}

#[test]
fn browsers_are_told_apart_from_other_clients() {
    assert!(!Seen::default().is_browser());
    let curl = Seen {
        host: Some("evil.test"),
        user_agent: Some("curl/8.5.0"),
        ..Seen::default()
    };
    assert!(!curl.is_browser());
    assert!(seen("x", None).is_browser());
    for marked in [
        Seen {
            origin: Some("null"),
            ..Seen::default()
        },
        Seen {
            fetch_site: Some("none"),
            ..Seen::default()
        },
        Seen {
            fetch_mode: Some("cors"),
            ..Seen::default()
        },
        Seen {
            upgrade_insecure: Some("1"),
            ..Seen::default()
        },
    ] {
        assert!(marked.is_browser(), "{marked:?}");
    }
}

#[test]
fn non_browser_clients_pass_whatever_their_host() {
    let p = policy("", "");
    let curl = Seen {
        host: Some("evil.test:4242"),
        user_agent: Some("curl/8"),
        ..Seen::default()
    };
    for method in [Method::Get, Method::Post] {
        assert_eq!(status(p.admit(&curl, &method, false)), 200);
    }
}

#[test]
fn browser_hosts_must_not_be_rebindable() {
    let p = policy("hub, Hub.Tail1234.ts.net.", "");
    for good in [
        "127.0.0.1:4242",
        "100.64.1.2",
        "[::1]:4242",
        "[fd7a:115c::1]",
        "localhost:4242",
        "LOCALHOST",
        "hub:4242",
        "hub.tail1234.ts.net",
        "HUB.tail1234.ts.net.:80",
    ] {
        assert_eq!(
            status(p.admit(&seen(good, None), &Method::Get, false)),
            200,
            "{good}"
        );
    }
    for bad in [
        "evil.test:4242",
        "hub.evil.test",
        "127.0.0.1.evil.test",
        "localhost.evil.test",
        "",
        "[::1",
        "hub:port",
        "127.1",
    ] {
        let err = p.admit(&seen(bad, None), &Method::Get, false).unwrap_err();
        assert_eq!(err.status, 403, "{bad}");
        assert!(
            err.message.contains("WORKSHOP_HOSTNAMES"),
            "{}",
            err.message
        );
    }
    let no_host = Seen {
        fetch_mode: Some("navigate"),
        ..Seen::default()
    };
    assert_eq!(status(p.admit(&no_host, &Method::Get, false)), 403);
    // A preflight is always answered: it changes nothing.
    assert_eq!(
        status(p.admit(&seen("evil.test", None), &Method::Options, false)),
        200
    );
}

#[test]
fn cross_origin_writes_are_refused_unless_listed() {
    let p = policy("", "");
    let host = "127.0.0.1:4242";
    let write = |origin: Option<&str>, site: Option<&str>| {
        let mut s = seen(host, origin);
        s.fetch_site = site;
        status(p.admit(&s, &Method::Post, false))
    };
    assert_eq!(write(Some("http://127.0.0.1:4242"), None), 200);
    assert_eq!(write(Some("https://127.0.0.1:4242"), None), 200);
    assert_eq!(write(None, Some("same-origin")), 200);
    assert_eq!(write(None, Some("none")), 200);
    assert_eq!(write(None, None), 200);
    for origin in [
        "http://127.0.0.1:4243",
        "http://localhost:4242",
        "https://evil.example",
        "null",
        "http://127.0.0.1:4242.evil.example",
    ] {
        assert_eq!(write(Some(origin), Some("same-origin")), 403, "{origin}");
    }
    assert_eq!(write(None, Some("cross-site")), 403);
    assert_eq!(write(None, Some("same-site")), 403);
    // A read that says nothing of its site is served: without Access-Control-Allow-Origin
    // the page cannot see it (what Fetch Metadata adds is `cross_site_reads_...` below).
    assert_eq!(
        status(p.admit(
            &seen(host, Some("https://evil.example")),
            &Method::Get,
            false
        )),
        200
    );

    let listed = policy("", "https://ui.example, http://127.0.0.1:9000/");
    let from = |origin| status(listed.admit(&seen(host, Some(origin)), &Method::Post, false));
    assert_eq!(from("https://ui.example"), 200);
    assert_eq!(from("http://127.0.0.1:9000"), 200);
    assert_eq!(from("https://evil.example"), 403);
    let any = policy("", "*");
    let s = seen(host, Some("https://evil.example"));
    assert_eq!(status(any.admit(&s, &Method::Post, false)), 200);
}

#[test]
fn default_ports_are_implied_in_same_origin() {
    assert!(same_origin("http://hub", "hub:80"));
    assert!(same_origin("http://hub:80", "hub"));
    assert!(same_origin("https://hub", "hub:443"));
    assert!(!same_origin("http://hub", "hub:4242"));
    assert!(!same_origin("ftp://hub", "hub"));
    assert!(!same_origin("http://", ""));
}

fn header<'a>(headers: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn cors_headers_are_opt_in() {
    let o = Some("https://ui.example");
    let s = seen("127.0.0.1", o);
    let none = policy("", "").headers(&s, &Method::Options, "/ch/a", None);
    assert!(none.is_empty(), "{none:?}");

    let listed = policy("", "https://ui.example");
    let h = listed.headers(&s, &Method::Options, "/ch/a", None);
    assert_eq!(
        header(&h, "Access-Control-Allow-Origin"),
        Some("https://ui.example")
    );
    assert_eq!(
        header(&h, "Access-Control-Allow-Methods"),
        Some(ALLOW_METHODS)
    );
    assert_eq!(
        header(&h, "Access-Control-Allow-Headers"),
        Some(ALLOW_HEADERS)
    );
    assert_eq!(header(&h, "Vary"), Some("Origin"));
    let h = listed.headers(&s, &Method::Get, "/ch/a", None);
    assert_eq!(header(&h, "Access-Control-Allow-Methods"), None);
    let other = seen("127.0.0.1", Some("https://evil.example"));
    let h = listed.headers(&other, &Method::Options, "/ch/a", None);
    assert_eq!(header(&h, "Access-Control-Allow-Origin"), None);
    assert_eq!(header(&h, "Access-Control-Allow-Methods"), None);

    let any = policy("", "*");
    let h = any.headers(&Seen::default(), &Method::Get, "/status", None);
    assert_eq!(header(&h, "Access-Control-Allow-Origin"), Some("*"));
}

#[test]
fn ui_and_files_get_their_policies() {
    let p = policy("", "");
    let h = p.headers(&Seen::default(), &Method::Get, "/ui", None);
    let csp = header(&h, "Content-Security-Policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.ends_with("; frame-ancestors 'none'"), "{csp}");
    assert_eq!(
        header(&h, "Cross-Origin-Opener-Policy"),
        Some("same-origin")
    );
    let h = p.headers(&Seen::default(), &Method::Get, "/files/sha256:x", None);
    assert_eq!(header(&h, "Content-Disposition"), Some("attachment"));
    assert_eq!(
        header(&h, "Cross-Origin-Resource-Policy"),
        Some("same-origin")
    );
    assert_eq!(
        header(&h, "Content-Security-Policy"),
        Some(files::FILES_CSP)
    );
    let h = p.headers(&Seen::default(), &Method::Get, "/status", None);
    assert!(h.is_empty());
}

/// What a page of another site may still do: link to the hub. Its fetches, images, scripts
/// and frames are refused, since it could time or show what it cannot read, and so is any
/// browser wait (`?wait=`) that is not the hub's own page's or an allowed origin's.
#[test]
fn cross_site_reads_are_refused_but_links_and_allowed_origins_are_not() {
    let host = "127.0.0.1:4242";
    let read = |p: &Policy, site: Option<&str>, mode, dest, origin, waits| {
        let s = Seen {
            fetch_site: site,
            fetch_mode: Some(mode),
            fetch_dest: Some(dest),
            ..seen(host, origin)
        };
        status(p.admit(&s, &Method::Get, waits))
    };
    let p = policy("", "");
    for site in ["same-origin", "none"] {
        assert_eq!(
            read(&p, Some(site), "cors", "empty", None, true),
            200,
            "{site}"
        );
    }
    for site in ["cross-site", "same-site"] {
        assert_eq!(
            read(&p, Some(site), "navigate", "document", None, false),
            200
        );
        for (mode, dest) in [
            ("no-cors", "empty"),
            ("no-cors", "image"),
            ("no-cors", "script"),
        ] {
            assert_eq!(
                read(&p, Some(site), mode, dest, None, false),
                403,
                "{site} {dest}"
            );
        }
        assert_eq!(read(&p, Some(site), "navigate", "iframe", None, false), 403);
        assert_eq!(
            read(&p, Some(site), "navigate", "document", None, true),
            403,
            "a wait"
        );
        let evil = Some("https://evil.example");
        assert_eq!(read(&p, Some(site), "cors", "empty", evil, false), 403);
    }
    // No Fetch Metadata (plain http under a name): served, but never a wait from elsewhere.
    assert_eq!(read(&p, None, "", "", None, false), 200);
    assert_eq!(read(&p, None, "", "", None, true), 403);
    let own = Some("http://127.0.0.1:4242");
    assert_eq!(read(&p, None, "", "", own, true), 200);
    // An allowed origin reads, waits included.
    let listed = policy("", "https://ui.example");
    let ui = Some("https://ui.example");
    assert_eq!(
        read(&listed, Some("cross-site"), "cors", "empty", ui, true),
        200
    );
    let refused = p
        .admit(
            &Seen {
                fetch_site: Some("cross-site"),
                fetch_mode: Some("no-cors"),
                ..seen(host, None)
            },
            &Method::Get,
            true,
        )
        .unwrap_err();
    assert!(
        refused.message.contains("WORKSHOP_CORS_ORIGINS"),
        "{}",
        refused.message
    );
}
