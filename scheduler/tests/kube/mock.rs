//! A mocked Kubernetes API server behind a real `kube::Client` (kube-rs's
//! own pattern: a `tower_test` service). Each expected request is checked
//! for method and path, its body is handed to the test, and the test
//! answers with a recorded object.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{self, Handle, SendResponse};

/// Long enough for a debug build on a loaded 2-core machine.
const REQUEST_WAIT: Duration = Duration::from_secs(20);

pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A request the code under test made, with a way to answer it.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
    reply: SendResponse<Response<Body>>,
}

pub fn client() -> (kube::Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ApiServer { handle })
}

impl ApiServer {
    /// The next request, which must be `method path`; `what` says what
    /// the code should be doing, for the failure message.
    pub async fn expect(&mut self, method: Method, path: &str, what: &str) -> Call {
        let next = tokio::time::timeout(REQUEST_WAIT, self.handle.next_request()).await;
        let (request, reply) = match next {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the client was dropped before it {what}"),
            Err(_) => panic!(
                "no request within {REQUEST_WAIT:?}: the code never {what} ({method} {path})"
            ),
        };
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON request body")
        };
        let call = Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body,
            reply,
        };
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "expected the code to have {what}; it sent {} {}?{} with {}",
            call.method,
            call.path,
            call.query,
            call.body
        );
        call
    }
}

impl Call {
    pub fn respond(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("serializes");
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("a response");
        self.reply.send_response(response);
    }

    pub fn ok(self, body: &Value) {
        self.respond(StatusCode::OK, body)
    }

    /// Answers a watch with these events (one JSON object per line); the
    /// stream then ends, as an API server's watch does on its timeout.
    pub fn watch_events(self, events: &[(&str, Value)]) {
        let mut bytes = Vec::new();
        for (kind, object) in events {
            let line = serde_json::json!({ "type": kind, "object": object });
            bytes.extend(serde_json::to_vec(&line).expect("serializes"));
            bytes.push(b'\n');
        }
        let response = Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("a response");
        self.reply.send_response(response);
    }
}

/// A recorded object from `tests/kube/fixtures/`.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kube/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
