//! `GET /search?q=&ch=&from=&type=&n=&before=`: full-text search, best match first.
use super::channel;
use super::id_param;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Req, count_param};
use crate::store::batches::Messages;
use crate::store::search::{self, MAX_QUERY_CHARS, MAX_QUERY_WORDS, SearchQuery};

pub fn search(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let params = &req.query;
    let nonblank = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let q = nonblank("q").ok_or_else(|| ApiError::bad_request("q is required"))?;
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!(
            "q is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    if search::query_words(&q).count() > MAX_QUERY_WORDS {
        return Err(ApiError::bad_request(format!(
            "q has more than {MAX_QUERY_WORDS} words"
        )));
    }
    let words = search::match_expression(&q)
        .ok_or_else(|| ApiError::bad_request("q must contain a word (letters or digits)"))?;
    let query = SearchQuery {
        words,
        ch: nonblank("ch").map(|c| channel(&c)).transpose()?,
        from: nonblank("from"),
        type_prefix: nonblank("type"),
        before: id_param(params, "before")?,
        limit: count_param(params, 50, 500)?,
    };
    app.store.index_search()?;
    let index = app.store.read(|conn| search::search(conn, &query))?;
    Ok(Reply::ndjson(Messages::from_index(
        app.store.reader(),
        index,
    )))
}
