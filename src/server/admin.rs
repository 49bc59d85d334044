//! The admin listener: `/healthz`, `/readyz` (see [`super::readiness`]),
//! `/metrics` (plaintext, never on the public listeners; docs/BEHAVIOUR.md
//! item 5).

use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ResBody;
use crate::error::json_error;
use crate::State;

/// Serves the admin endpoints until `shutdown` flips.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = super::stop_requested(&mut shutdown) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                super::accept_failed("admin", &e).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&state, &req)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn answer<B>(state: &State, req: &Request<B>) -> Response<ResBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "admin endpoints answer GET",
        );
    }
    match req.uri().path() {
        "/healthz" => json(StatusCode::OK, serde_json::json!({ "status": "ok" })),
        "/readyz" => {
            let strict = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .any(|(k, v)| k == "strict" && matches!(&*v, "" | "1" | "true"));
            let (status, body) = super::readiness::answer(state, strict);
            json(status, body)
        }
        "/metrics" => {
            refresh_gauges(state);
            super::readiness::refresh_gauges(state);
            let mut r = Response::new(ResBody::full(state.metrics.encode()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "admin endpoints: /healthz, /readyz, /metrics",
        ),
    }
}

/// Gauges computed at scrape time from the live state.
fn refresh_gauges(state: &State) {
    use crate::metrics::{CredentialLabel, IdentityLabel};
    let snap = state.live.load();
    let m = &state.metrics;
    for (name, keys) in &snap.identity_keys {
        let label = IdentityLabel {
            identity: name.clone(),
        };
        let usable = keys.usable();
        m.jwks_keys
            .get_or_create(&label)
            .set(usable.as_ref().map_or(0, |k| k.keys.len() as i64));
        if let Some(ks) = keys.last_fetched() {
            m.jwks_age
                .get_or_create(&label)
                .set(ks.elapsed().as_secs_f64());
        }
    }
    m.token_cache_bytes
        .set(i64::try_from(state.tokens.weighted_size()).unwrap_or(i64::MAX));
    m.token_cache_entries
        .set(i64::try_from(state.tokens.len()).unwrap_or(i64::MAX));
    for (name, source) in &snap.credential_sources {
        if let Some(secs) = source.expires_in() {
            m.credential_expiry
                .get_or_create(&CredentialLabel {
                    credential: name.clone(),
                })
                .set(secs as f64);
        }
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<ResBody> {
    crate::body::json_response(status, v.to_string())
}
