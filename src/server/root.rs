//! `GET /`: the stream of every channel, unless a browser opens it as a page. A person who
//! types the hub's address gets the UI, not an endless `text/event-stream` download.
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Req, request_header};
use tiny_http::Request;

/// The UI for a page navigation (303 to `/ui`), the stream for everyone else. The browser
/// rules have admitted the request already, and they admit the same navigation to `/ui`.
pub(super) fn stream_or_ui(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    match is_page_navigation(&req.http) {
        true => Ok(Reply::SeeOther("/ui")),
        false => crate::sse::stream(app, req),
    }
}

/// A browser opening a page: its fetch metadata says a document is wanted; a browser that
/// sends none asks for HTML and not for a stream. EventSource sends `Sec-Fetch-Dest: empty`
/// and `Accept: text/event-stream`, curl `Accept: */*`, agents usually nothing.
fn is_page_navigation(request: &Request) -> bool {
    match request_header(request, "Sec-Fetch-Dest") {
        Some(dest) => dest == "document",
        None => request_header(request, "Accept").is_some_and(asks_for_a_page),
    }
}

fn asks_for_a_page(accept: &str) -> bool {
    let accept = accept.to_ascii_lowercase();
    accept.contains("text/html") && !accept.contains("text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::asks_for_a_page;

    #[test]
    fn a_page_is_asked_for_as_html_without_a_stream() {
        let page = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        for yes in [page, "TEXT/HTML", "text/html;q=0.9"] {
            assert!(asks_for_a_page(yes), "{yes}");
        }
        for no in [
            "*/*",
            "text/event-stream",
            "text/html, text/event-stream",
            "",
        ] {
            assert!(!asks_for_a_page(no), "{no}");
        }
    }
}
