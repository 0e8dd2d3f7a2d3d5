//! Checks every request passes before routing, and the net under every handler:
//!
//! - a transfer coding other than `chunked` is refused with `501 not_implemented`. hyper
//!   removes the chunked framing and hands any other coding (`gzip, chunked`) through, so
//!   without this the gateway would store the client's compressed bytes as the file;
//! - a handler that panics answers `500 internal` JSON and is counted
//!   (`sixfold_http_panics_total`), instead of an empty reply that shows nowhere.

use std::panic::AssertUnwindSafe;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;

use super::AppState;
use super::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;

/// The transfer codings of a request that the gateway cannot undo, if any.
pub fn unsupported_transfer_coding(headers: &HeaderMap) -> Option<String> {
    let mut refused = Vec::new();
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
        };
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                refused.push(coding.to_owned());
            }
        }
    }
    (!refused.is_empty()).then(|| refused.join(", "))
}

/// Middleware: refuses unsupported transfer codings, and turns a panic below into a JSON 500.
pub async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(coding) = unsupported_transfer_coding(request.headers()) {
        return ApiError::new(
            ErrorCode::NotImplemented,
            format!("transfer coding {coding:?} is not supported; send the body as is or chunked"),
        )
        .into_response();
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    answer_panics(app.metrics(), &method, &path, next.run(request)).await
}

/// Runs a handler's future; a panic in it becomes a counted, logged `500 internal`.
async fn answer_panics<F>(metrics: &Metrics, method: &Method, path: &str, handler: F) -> Response
where
    F: Future<Output = Response>,
{
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            metrics.http_panic();
            tracing::error!(%method, path = ?path, panic = ?what, "request handler panicked");
            ApiError::internal("the gateway failed on this request; it was logged").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::TRANSFER_ENCODING,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn only_chunked_is_accepted() {
        assert_eq!(unsupported_transfer_coding(&headers(&[])), None);
        assert_eq!(unsupported_transfer_coding(&headers(&["chunked"])), None);
        assert_eq!(unsupported_transfer_coding(&headers(&["Chunked"])), None);
        assert_eq!(
            unsupported_transfer_coding(&headers(&["gzip, chunked"])),
            Some("gzip".into())
        );
        assert_eq!(
            unsupported_transfer_coding(&headers(&["deflate", "br, chunked"])),
            Some("deflate, br".into())
        );
        assert_eq!(
            unsupported_transfer_coding(&headers(&["identity"])),
            Some("identity".into())
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_json_and_is_counted() {
        let metrics = Metrics::new();
        let response = answer_panics(&metrics, &Method::GET, "/files/x", async {
            panic!("byte index 7 is not a char boundary")
        })
        .await;
        assert_eq!(
            response.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["error"], "internal");
        let text = metrics.render(&[], None);
        assert!(
            text.contains("sixfold_http_panics_total 1"),
            "panic not counted:\n{text}"
        );
        let fine = answer_panics(&metrics, &Method::GET, "/", async {
            axum::http::StatusCode::NO_CONTENT.into_response()
        })
        .await;
        assert_eq!(fine.status(), axum::http::StatusCode::NO_CONTENT);
    }
}
