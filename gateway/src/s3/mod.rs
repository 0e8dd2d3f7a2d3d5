//! The S3-compatible API (issue 14): a second listener (`s3_listen`) over the same files, nodes
//! and access keys as the native API. The s3s crate does the protocol: routing, XML, SigV4
//! (header and presigned, streaming chunk signatures, aws-chunked with trailers), clock skew;
//! this module maps its operations onto the domain.
//!
//! - [`service`]: the operations (`impl s3s::S3`);
//! - [`auth`]: secrets and scopes from the access keys;
//! - [`body`]: MD5 (ETag) and checksum verification of uploaded bodies as they pass;
//! - [`read`]: reading a range across an object's segments;
//! - [`errors`]: the one mapping of domain errors to S3 error codes;
//! - [`names`]: bucket names, tokens, ETags;
//! - [`credentials`]: the AWS shared-credentials file `dev` writes.
//!
//! Objects are recorded in `meta` (`s3_buckets`, `s3_objects`, `s3_uploads`, `s3_parts`): an
//! object is an ordered list of segments, each a sixfold file. Domain modules know nothing of
//! this module.

pub mod auth;
pub mod body;
pub mod credentials;
pub mod errors;
pub mod names;
pub mod read;
pub mod service;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleError;
use axum::http::StatusCode;
use s3s::service::S3ServiceBuilder;

use crate::http::AppState;
use crate::meta::unix_ms_now;

/// The region clients are told to sign for (any region is accepted).
pub const REGION: &str = "us-east-1";

/// A multipart upload not completed or aborted this long after it started is aborted, its
/// parts deleted (S3 leaves that to lifecycle rules; a gateway without them needs a bound).
pub const MULTIPART_UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

/// How often forgotten multipart uploads are looked for.
const UPLOAD_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The S3 service as an axum router (for [`crate::http::listener::serve_tls`]).
pub fn router(app: AppState) -> Router {
    let keys = auth::KeyLookup::new(app.meta().clone());
    let mut builder = S3ServiceBuilder::new(service::SixfoldS3::new(app));
    builder.set_auth(keys.clone());
    builder.set_access(keys);
    let service = builder.build();
    let service = HandleError::new(service, |e: s3s::HttpError| async move {
        tracing::warn!(error = ?e, "s3: request failed below the S3 layer");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    });
    Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn(log_request))
}

/// One log line per S3 request (the native API's request log is tied to its error codes); the
/// request body drains when dropped unread.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // A request refused before its body was read (NoSuchBucket on a PUT) would otherwise leave
    // the unread bytes to reset the connection, or a keep-alive client reusing it to race its
    // close: the rest of the body is drained, bounded, as the native API does. Not when the
    // client waits for `100 Continue` (botocore does for PUTs): after a final answer it never
    // sends the body, and a drain would eat its next request; that connection is closed instead.
    let expects_continue = request
        .headers()
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let request =
        if expects_continue || http_body::Body::size_hint(request.body()).exact() == Some(0) {
            request
        } else {
            let (parts, body) = request.into_parts();
            let body = axum::body::Body::from_stream(crate::upload::drain::RequestBody::new(body));
            axum::extract::Request::from_parts(parts, body)
        };
    let mut response = next.run(request).await;
    if expects_continue && !response.status().is_success() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    let status = response.status().as_u16();
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(%method, path, status, elapsed_ms, "s3 request");
    response
}

/// Aborts multipart uploads older than `ttl`, every minute, until the task is dropped: their
/// part files go through the usual delete queue.
pub async fn sweep_uploads(app: AppState, ttl: Duration) {
    let mut tick = tokio::time::interval(UPLOAD_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let before = unix_ms_now().saturating_sub(ttl_ms);
        let meta = app.meta();
        let swept = async {
            let mut aborted = 0;
            for id in meta.multipart_started_before(before).await? {
                match meta.abort_multipart(&id).await {
                    Ok(parts) => {
                        tracing::info!(upload_id = %id, parts, "s3: expired multipart upload aborted");
                        aborted += 1;
                    }
                    Err(crate::meta::ObjectStoreError::NoSuchUpload(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<usize, crate::meta::ObjectStoreError>(aborted)
        }
        .await;
        match swept {
            Ok(0) => {}
            Ok(_) => app.store().wake_cleanup(),
            Err(e) => tracing::warn!(error = %e, "s3: cannot sweep expired multipart uploads"),
        }
    }
}
