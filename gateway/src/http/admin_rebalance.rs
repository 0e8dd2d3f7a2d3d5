//! `/admin/rebalance`: the rebalance job ([`crate::rebalance::job`]). The admin scope is
//! checked by the auth layer.
//!
//! - `GET /admin/rebalance`: state (`idle`, `running`, `paused`), parts and bytes planned, done
//!   and failed, rate, ETA, the limits in force.
//! - `POST /admin/rebalance` (body optional, `{"force": true}`): asks for a run; it converges
//!   when the fill spread exceeds `rebalance_threshold` (or when forced), else it only drains.
//!   `202` with the status.
//! - `POST /admin/rebalance/pause`, `POST /admin/rebalance/resume`: no new move starts while
//!   paused (a running one finishes).
//! - `PATCH /admin/rebalance` with `{"rate": BYTES, "concurrency": N}` (either or both; the rate
//!   a number of bytes per second or a size like `"10MiB"`, 0 = unlimited): the new limits,
//!   now.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Serialize;

use crate::rebalance::job::Rebalancer;
use crate::rebalance::plan::Trigger;

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

pub fn router(job: Rebalancer) -> axum::Router {
    axum::Router::new()
        .route(
            "/admin/rebalance",
            get(status).post(start).patch(set_limits),
        )
        .route("/admin/rebalance/pause", post(pause))
        .route("/admin/rebalance/resume", post(resume))
        .with_state(job)
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(ErrorBody {
            error: "bad_request",
            message,
        }),
    )
        .into_response()
}

/// The `force` of a `POST` body (empty: not forced).
pub fn parse_start(body: &[u8]) -> Result<bool, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match value.get("force") {
        None => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(_) => Err(r#"force must be true or false: {"force": true}"#.into()),
    }
}

/// The limits a `PATCH` body asks for: (rate in bytes/s, concurrency per node).
pub fn parse_limits(body: &[u8]) -> Result<(Option<u64>, Option<u32>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err(r#"the body must be {"rate": BYTES, "concurrency": N}"#.into());
    };
    if let Some(key) = object
        .keys()
        .find(|k| !["rate", "concurrency"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown setting {key:?}: only rate and concurrency change at run time"
        ));
    }
    let rate = match object.get("rate") {
        None => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_u64()
                .ok_or("rate must be a whole number of bytes per second")?,
        ),
        Some(serde_json::Value::String(s)) => {
            Some(crate::config::parse_byte_size(s).map_err(|e| format!("rate {s:?}: {e}"))?)
        }
        Some(_) => {
            return Err("rate must be bytes per second, a number or a size like \"10MiB\"".into());
        }
    };
    let concurrency = match object.get("concurrency") {
        None => None,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(0) | None => return Err("concurrency must be a whole number, at least 1".into()),
            Some(n) => Some(n),
        },
    };
    if rate.is_none() && concurrency.is_none() {
        return Err(r#"the body must set rate, concurrency or both: {"rate": "10MiB"}"#.into());
    }
    Ok((rate, concurrency))
}

async fn status(State(job): State<Rebalancer>) -> Response {
    Json(job.status().await).into_response()
}

async fn start(State(job): State<Rebalancer>, body: Bytes) -> Response {
    let force = match parse_start(&body) {
        Ok(force) => force,
        Err(why) => return bad_request(why),
    };
    job.trigger(Trigger::OnDemand { force });
    (StatusCode::ACCEPTED, Json(job.status().await)).into_response()
}

async fn pause(State(job): State<Rebalancer>) -> Response {
    job.pause();
    Json(job.status().await).into_response()
}

async fn resume(State(job): State<Rebalancer>) -> Response {
    job.resume();
    Json(job.status().await).into_response()
}

async fn set_limits(State(job): State<Rebalancer>, body: Bytes) -> Response {
    let (rate, concurrency) = match parse_limits(&body) {
        Ok(limits) => limits,
        Err(why) => return bad_request(why),
    };
    if let Err(e) = job.set_limits(rate, concurrency) {
        return bad_request(e.to_string());
    }
    Json(job.status().await).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_limit_bodies() {
        assert_eq!(parse_start(b""), Ok(false));
        assert_eq!(parse_start(b"{}"), Ok(false));
        assert_eq!(parse_start(br#"{"force":true}"#), Ok(true));
        assert!(parse_start(br#"{"force":"yes"}"#).is_err());
        assert!(parse_start(b"go").is_err());
        assert_eq!(parse_limits(br#"{"rate":1000}"#), Ok((Some(1000), None)));
        assert_eq!(
            parse_limits(br#"{"rate":"1MiB","concurrency":3}"#),
            Ok((Some(1 << 20), Some(3)))
        );
        assert_eq!(parse_limits(br#"{"rate":0}"#), Ok((Some(0), None)));
        for (body, needle) in [
            (&br#"{"concurrency":0}"#[..], "at least 1"),
            (br#"{"rate":-1}"#, "whole number"),
            (br#"{"rate":"fast"}"#, "rate"),
            (br#"{"threshold":0.1}"#, "unknown setting"),
            (br#"{}"#, "must set"),
            (b"[1]", "must be"),
        ] {
            let err = parse_limits(body).expect_err(needle);
            assert!(err.contains(needle), "{err}");
        }
    }
}
