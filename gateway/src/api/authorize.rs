//! The authentication and authorization middleware of the public router.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::endpoint::{Access, Endpoint};
use crate::auth::presign::{self, READ_METHOD_CLASS};
use crate::auth::{AccessKey, AuthError, KeyId, Principal, Scope, Token};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::meta::unix_ms_now;
use crate::upload::drain::RequestBody;

/// Lets a request through to its handler only if its credentials (bearer token, presigned
/// query, or the configured anonymous access) cover what its endpoint needs; the handler finds
/// the [`Principal`] in the request's extensions. Otherwise answers `401`/`403` JSON, having
/// left the unread body to a bounded drain so the client sees the answer, not a reset.
pub async fn authorize(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let endpoint = Endpoint::parse(request.method(), request.uri().path());
    let needed = match endpoint.access(app.auth_policy()) {
        Access::Open | Access::Internal => return next.run(request).await,
        Access::Scope(scope) => scope,
    };
    // Owned copies: the body is not `Sync`, so no reference to the request may live across an
    // await.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    match authenticate(&app, &method, &uri, authorization, &endpoint, needed).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => {
            if e.code == crate::http::error::ErrorCode::Unauthorized {
                tracing::debug!(%method, error = %e.message, "request not authenticated");
            }
            drop(RequestBody::new(request.into_body()));
            e.into_response()
        }
    }
}

async fn authenticate(
    app: &AppState,
    method: &Method,
    uri: &Uri,
    authorization: Option<HeaderValue>,
    endpoint: &Endpoint,
    needed: Scope,
) -> Result<Principal, ApiError> {
    if let Some(value) = authorization {
        let token = Token::from_authorization(value.as_bytes())?;
        let key = lookup(app, token.id.clone()).await?;
        // The secret first: whether a key is revoked is told only to who holds it.
        if !key.secret.matches(&token.secret) {
            return Err(AuthError::BadCredentials.into());
        }
        if key.is_revoked() {
            return Err(AuthError::Revoked.into());
        }
        if !key.scope.allows(needed) {
            return Err(AuthError::Forbidden {
                needed,
                have: key.scope,
            }
            .into());
        }
        return Ok(Principal::Key(key));
    }
    if let Some(presigned) = presign::from_query(uri.query())? {
        if !endpoint.presignable() || !(method == Method::GET || method == Method::HEAD) {
            return Err(AuthError::NotPresignable.into());
        }
        let key = lookup(app, presigned.key_id.clone()).await?;
        presign::verify(
            &key,
            &presigned,
            READ_METHOD_CLASS,
            uri.path(),
            unix_ms_now() / 1000,
        )?;
        if !key.scope.allows(needed) {
            return Err(AuthError::Forbidden {
                needed,
                have: key.scope,
            }
            .into());
        }
        return Ok(Principal::Presigned(key.id));
    }
    match app.auth_policy().anonymous.scope() {
        Some(scope) if scope.allows(needed) => Ok(Principal::Anonymous(scope)),
        _ => Err(AuthError::Missing.into()),
    }
}

/// The key with this id; an unknown id is the same `401` as a wrong secret.
async fn lookup(app: &AppState, id: KeyId) -> Result<AccessKey, ApiError> {
    app.meta()
        .get_key(&id)
        .await?
        .ok_or_else(|| AuthError::BadCredentials.into())
}
