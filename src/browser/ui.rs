//! The served UI (`/ui`): the page, and the Content-Security-Policy header it is sent with.
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Req};
use std::sync::LazyLock;

/// ui.html, built into the binary.
pub const PAGE: &str = include_str!("../../ui.html");

/// `GET /ui`.
pub fn page(_: &App, _: &mut Req) -> Result<Reply, ApiError> {
    Ok(Reply::Html(PAGE))
}

/// `/ui`'s policy: the one in ui.html's `<meta>` (which pins its script's hash, kept current
/// by tests/browser/csp.mjs), plus `frame-ancestors 'none'`, which only a header can carry.
pub(super) static CSP: LazyLock<String> = LazyLock::new(|| ui_csp(PAGE));

fn ui_csp(page: &str) -> String {
    let meta = meta_csp(page).expect("ui.html has a Content-Security-Policy <meta>");
    format!("{meta}; frame-ancestors 'none'")
}

/// The policy in a page's Content-Security-Policy `<meta>`, if it has one.
fn meta_csp(page: &str) -> Option<&str> {
    const META: &str = "http-equiv=\"Content-Security-Policy\" content=\"";
    page.find(META)
        .map(|at| &page[at + META.len()..])
        .and_then(|rest| rest.split('"').next())
}
