//! Routes answered from users' Zoom grants: connect (start Zoom's OAuth
//! authorization-code flow with PKCE), callback (Zoom's redirect back:
//! exchange the code and store the grant), status and disconnect.
//!
//! The `state` of a connect is sealed with the vault's keyring, lives at
//! most 10 minutes, is accepted once, and binds the caller (identity,
//! subject, tenant), the PKCE verifier and a `return_to` from the app's
//! allow-list, so the callback needs no session and redirects nowhere
//! else.

use std::time::Duration;

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::authn::Principal;
use super::stages::Ctx;
use crate::body::ResBody;
use crate::config::{ZoomUserOp, ZoomUserRoute};
use crate::error::GatewayError;
use crate::live::zoom_users::{ZoomUserFailure, ZoomUsers};
use crate::vault::{
    open_state, seal_state, Grant, StateClaims, StateError, MAX_STATE_LIFETIME_SECS,
};
use crate::zoom_user::PkceVerifier;

type Answer = Result<Response<ResBody>, GatewayError>;

fn failure(f: ZoomUserFailure) -> GatewayError {
    GatewayError::ZoomUser(f)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<ResBody> {
    crate::body::json_response(status, v.to_string())
}

fn redirect(to: &str) -> Answer {
    let mut resp = crate::body::json_response(StatusCode::FOUND, "{}");
    let location = header::HeaderValue::from_str(to).map_err(|_| GatewayError::BadRequest {
        code: "invalid_request",
        description: "the redirect target is not a valid header value".to_owned(),
    })?;
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

fn grant_key(app: &ZoomUsers, p: &Principal) -> Result<crate::vault::GrantKey, GatewayError> {
    app.key(p).map_err(failure)
}

impl Ctx<'_> {
    /// A `zoom_user` route.
    pub async fn zoom_user(
        &mut self,
        spec: &ZoomUserRoute,
        req: Request<Incoming>,
        principal: Option<&Principal>,
    ) -> Answer {
        let app = self
            .route
            .zoom_user
            .clone()
            .ok_or_else(|| self.stage_unavailable("zoom_user"))?;
        let query = req.uri().query();
        match (spec.op, principal) {
            (ZoomUserOp::Callback, _) => self.callback(&app, query).await,
            (op, Some(p)) => match op {
                ZoomUserOp::Connect => connect(&app, p, &req),
                ZoomUserOp::Status => status(&app, p).await,
                ZoomUserOp::Disconnect => disconnect(&app, p).await,
                ZoomUserOp::Callback => unreachable!("matched above"),
            },
            (_, None) => Err(self.stage_unavailable("authenticate")),
        }
    }

    async fn callback(&mut self, app: &ZoomUsers, query: Option<&str>) -> Answer {
        if let Some(error) = query_param(query, "error") {
            tracing::info!(zoom_user = %app.settings.name, error = %error.chars().take(64).collect::<String>(), "Zoom authorization was not granted");
            return Err(failure(ZoomUserFailure::AuthorizationDenied));
        }
        let state = query_param(query, "state")
            .ok_or(failure(ZoomUserFailure::State(StateError::Invalid)))?;
        let keyring = app.vault.keyring();
        let claims = open_state(&keyring, &state, crate::now_secs())
            .map_err(|e| failure(ZoomUserFailure::State(e)))?;
        // Accepted once, whatever happens next (Zoom's code is single-use).
        let ttl = Duration::from_secs(MAX_STATE_LIFETIME_SECS);
        match self.state.replay.claim(&claims.replay_key(), ttl).await {
            crate::replay::Claim::Duplicate => {
                return Err(failure(ZoomUserFailure::StateReplayed));
            }
            crate::replay::Claim::Fresh(d) => d.delivered().await,
        }
        if !app.settings.return_to.contains(&claims.return_to) {
            // The allow-list changed since the state was sealed.
            return Err(failure(ZoomUserFailure::ReturnToNotAllowed));
        }
        let code = query_param(query, "code")
            .ok_or(failure(ZoomUserFailure::State(StateError::Invalid)))?;
        let verifier = PkceVerifier::from_secret(claims.pkce_verifier.clone())
            .map_err(|e| failure(ZoomUserFailure::Zoom(e)))?;
        let tokens = app
            .client
            .exchange_code(&code, &verifier)
            .await
            .map_err(|e| failure(ZoomUserFailure::Exchange(e)))?;
        let zoom_user_id = app
            .client
            .user_id(&tokens.api_url, &tokens.access_token)
            .await
            .map_err(|e| failure(ZoomUserFailure::Exchange(e)))?;
        let now = crate::now_secs();
        let grant = Grant {
            identity: claims.identity.clone(),
            subject: claims.subject.clone(),
            tenant: claims.tenant.clone(),
            zoom_user_id,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_expires_at: tokens.expires_at,
            scopes: tokens.scopes,
            api_url: tokens.api_url,
            connected_since: now,
            updated_at: now,
        };
        app.vault
            .put(&grant)
            .await
            .map_err(|e| failure(ZoomUserFailure::Store(e)))?;
        app.forget(&grant.key()).await;
        tracing::info!(zoom_user = %app.settings.name, "Zoom user connected");
        self.log.outcome = Some(("allow", "zoom_user_connected"));
        redirect(&claims.return_to)
    }
}

/// Starts the authorization: the authorize URL as JSON, or a 302 to it
/// for a browser navigation (`Accept: text/html` or `?redirect=1`).
fn connect(app: &ZoomUsers, p: &Principal, req: &Request<Incoming>) -> Answer {
    let query = req.uri().query();
    let return_to = match query_param(query, "return_to") {
        Some(r) if app.settings.return_to.contains(&r) => r,
        Some(_) => return Err(failure(ZoomUserFailure::ReturnToNotAllowed)),
        None => app
            .settings
            .return_to
            .first()
            .cloned()
            .ok_or(failure(ZoomUserFailure::ReturnToNotAllowed))?,
    };
    let key = grant_key(app, p)?;
    let verifier = PkceVerifier::generate().map_err(|e| failure(ZoomUserFailure::Zoom(e)))?;
    let state_error = |e: StateError| failure(ZoomUserFailure::State(e));
    let claims = StateClaims {
        identity: key.identity,
        subject: key.subject,
        tenant: p.tenant.clone(),
        return_to,
        pkce_verifier: verifier.secret().clone(),
        nonce: StateClaims::new_nonce().map_err(state_error)?,
        expires_at: crate::now_secs() + MAX_STATE_LIFETIME_SECS,
    };
    let state =
        seal_state(&app.vault.keyring(), &claims, crate::now_secs()).map_err(state_error)?;
    let url = app.client.authorize_url(&state, &verifier);
    let browser = query_param(query, "redirect").as_deref() == Some("1")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    if browser {
        return redirect(&url);
    }
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "authorize_url": url, "expires_in": MAX_STATE_LIFETIME_SECS }),
    ))
}

/// The caller's grant key and stored grant, if any.
async fn stored_grant(
    app: &ZoomUsers,
    p: &Principal,
) -> Result<(crate::vault::GrantKey, Option<crate::vault::LoadedGrant>), GatewayError> {
    let key = grant_key(app, p)?;
    let grant = app
        .vault
        .get(&key)
        .await
        .map_err(|e| failure(ZoomUserFailure::Store(e)))?;
    Ok((key, grant))
}

fn not_connected() -> Response<ResBody> {
    json(StatusCode::OK, serde_json::json!({ "connected": false }))
}

/// Whether the caller is connected; never a token.
async fn status(app: &ZoomUsers, p: &Principal) -> Answer {
    let (_, grant) = stored_grant(app, p).await?;
    let body = match grant {
        None => return Ok(not_connected()),
        Some(g) => serde_json::json!({
            "connected": true,
            "zoom_user_id": g.grant.zoom_user_id,
            "scopes": g.grant.scopes,
            "connected_since": g.grant.connected_since,
        }),
    };
    Ok(json(StatusCode::OK, body))
}

/// Revokes the grant at Zoom (best effort) and deletes it.
async fn disconnect(app: &ZoomUsers, p: &Principal) -> Answer {
    let (key, grant) = stored_grant(app, p).await?;
    let Some(grant) = grant else {
        return Ok(not_connected());
    };
    if let Err(e) = app.client.revoke(&grant.grant.access_token).await {
        tracing::warn!(zoom_user = %app.settings.name, code = e.code(), "revoking at Zoom failed; the grant is deleted here anyway");
    }
    app.vault
        .delete(&key)
        .await
        .map_err(|e| failure(ZoomUserFailure::Store(e)))?;
    app.forget(&key).await;
    tracing::info!(zoom_user = %app.settings.name, "Zoom user disconnected");
    Ok(not_connected())
}

/// A verified Zoom `app_deauthorized` event: every grant of that Zoom user
/// is deleted (the event still reaches the app).
pub async fn deauthorized(live: &crate::live::Live, event: &serde_json::Value) {
    let Some(user) = event
        .get("payload")
        .and_then(|p| p.get("user_id"))
        .and_then(|u| u.as_str())
    else {
        return;
    };
    let Some(app) = live.zoom_users.values().next() else {
        return;
    };
    match app.vault.delete_zoom_user(user).await {
        Ok(keys) => {
            for app in live.zoom_users.values() {
                for k in &keys {
                    app.forget(k).await;
                }
            }
            tracing::info!(grants = keys.len(), "Zoom app_deauthorized: grants deleted");
        }
        Err(e) => {
            tracing::warn!(
                code = e.code(),
                "Zoom app_deauthorized: grants could not be deleted"
            )
        }
    }
}
