//! What tests ask a running `Server` over HTTP: plain requests, and the calls most tests make
//! (publish, history, tasks, status, metrics, a stream), each asserting the answer it needs.
use crate::http::{Response, request};
use crate::server::Server;
use crate::sse::Sse;
use serde_json::Value;

impl Server {
    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        request(self.port, "POST", path, &[], body.as_bytes())
    }

    pub fn post_json(&self, path: &str, body: Value) -> Response {
        self.post(path, &body.to_string())
    }

    /// A JSON POST under an `Idempotency-Key`.
    pub fn post_keyed(&self, path: &str, key: &str, body: &Value) -> Response {
        let headers = [
            ("Content-Type", "application/json"),
            ("Idempotency-Key", key),
        ];
        request(
            self.port,
            "POST",
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    /// GET /status, which must answer.
    pub fn status(&self) -> Value {
        let r = self.get("/status");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Waits until /status's count `key` is `want`; a failure after `within`.
    pub fn await_status(&self, key: &str, want: u64, within: std::time::Duration) {
        crate::wait_for(within, &format!("{key} = {want}"), || {
            let now = self.status()[key].as_u64().expect(key);
            if now == want {
                Ok(())
            } else {
                Err(format!("{key} = {now}"))
            }
        });
    }

    /// The value of the /metrics sample whose line starts with `line_start` (the name and
    /// labels, e.g. `workshop_throttled_total{request="publish"}`).
    pub fn metric(&self, line_start: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {line_start} in:\n{text}"))
    }

    /// Publishes and returns the new id.
    pub fn publish(&self, ch: &str, kind: &str, body: Value) -> String {
        let r = self.post_json(
            &format!("/ch/{ch}"),
            serde_json::json!({"from": "test.me", "type": kind, "body": body}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().expect("id").to_string()
    }

    /// An ndjson history, parsed.
    pub fn history(&self, path: &str) -> Vec<Value> {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect()
    }

    /// Every message in history, oldest first, paging forward with `since`.
    pub fn all_messages(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let mut since = "00000000000000000000000000".to_string();
        loop {
            let page = self.history(&format!("/history?since={since}&n=1000"));
            match page.last() {
                Some(last) => since = last["id"].as_str().expect("id").to_string(),
                None => return out,
            }
            out.extend(page);
        }
    }

    /// `GET path`, which must answer 200 with a JSON array: each element's string `field`.
    pub fn list_field(&self, path: &str, field: &str) -> Vec<String> {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let items = r.json().as_array().expect("a JSON array").clone();
        items
            .iter()
            .map(|v| v[field].as_str().expect(field).to_string())
            .collect()
    }

    /// Creates a task and returns its id.
    pub fn create_task(&self, body: Value) -> String {
        let r = self.post_json("/tasks", body);
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().expect("id").to_string()
    }

    /// `POST /tasks/{id}/{action}`.
    pub fn task_action(&self, id: &str, action: &str, body: Value) -> Response {
        self.post_json(&format!("/tasks/{id}/{action}"), body)
    }

    /// `GET /tasks/{id}`, which must exist.
    pub fn task(&self, id: &str) -> Value {
        let r = self.get(&format!("/tasks/{id}"));
        assert_eq!(r.status, 200, "task {id}: {}", r.text());
        r.json()
    }

    pub fn sse(&self, path: &str, headers: &[(&str, &str)]) -> Sse {
        Sse::connect(self.port, path, headers)
    }
}
