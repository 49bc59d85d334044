//! The stages that finish a request once it is routed and its caller let
//! in: respond (the gateway answers), forward (with credentials injected,
//! retried once when the upstream refuses a fetched token) and webhook
//! delivery (verify, answer Zoom's URL validation, skip duplicates,
//! forward the exact bytes).

use std::time::Instant;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::authn::Principal;
use super::forward::{self, Target};
use super::request::{is_bodiless, read_body};
use super::route::Captures;
use super::{inject, webhook, ConnInfo, RequestLog};
use crate::body::{ReqBody, ResBody};
use crate::config::{Respond, WebhookSettings};
use crate::error::GatewayError;
use crate::live::{Live, LiveRoute};
use crate::server::h1::ClientUpgrade;
use crate::State;

/// One routed request: what every stage reads.
pub(super) struct Ctx<'a> {
    pub state: &'a State,
    pub live: &'a Live,
    pub conn: ConnInfo,
    pub route: &'a LiveRoute,
    pub captures: Captures,
    /// The normalized request path.
    pub path: String,
    /// The authority the client addressed (Host or :authority).
    pub authority: Option<String>,
    pub log: &'a mut RequestLog,
}

type Answer = Result<Response<ResBody>, GatewayError>;

impl Ctx<'_> {
    pub fn stage_unavailable(&self, stage: &'static str) -> GatewayError {
        GatewayError::StageUnavailable {
            route: self.route.settings.name.clone(),
            stage,
        }
    }

    fn target(&self) -> Result<Target<'_>, GatewayError> {
        Target::new(
            self.route,
            &self.path,
            self.conn,
            self.log.client.x_forwarded_for(),
            self.authority.as_deref(),
            self.live.settings.limits.upstream_timeout,
        )
        .ok_or_else(|| self.stage_unavailable("forward"))
    }

    /// Respond: the gateway answers (signature requests).
    pub async fn respond(
        &mut self,
        spec: &Respond,
        req: Request<Incoming>,
        principal: Option<&Principal>,
    ) -> Answer {
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, &parts.headers, &self.live.settings.limits).await?;
        self.log.read_request_bytes(bytes.len());
        let apps = inject::UserApps {
            zak: self.route.zak.as_deref(),
            obf: self.route.obf.as_deref(),
        };
        let (answer, credential, role) =
            inject::respond(spec, apps, principal, &self.captures, &bytes).await?;
        tracing::info!(route = %self.route.settings.name, credential, granted_role = ?role, "credential minted for the caller");
        self.log.minted.push((credential, role));
        Ok(answer)
    }

    /// Inject, then forward. A request without a body whose fetched token
    /// the upstream refuses is sent once more with a new token
    /// (docs/BEHAVIOUR.md item 30).
    pub async fn forward(
        &mut self,
        mut req: Request<Incoming>,
        websocket: bool,
        principal: Option<&Principal>,
        mut headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Answer {
        // The query is only copied for routes that inject: it may name the
        // meeting or role.
        let query = (!self.route.inject.is_empty())
            .then(|| req.uri().query().map(str::to_owned))
            .flatten();
        let wait = self.live.settings.limits.upstream_timeout;
        // Injecting (minting, fetching, a Zoom user's tokens) and the
        // refused-token retry are boxed: a plain proxied request's future
        // does not carry their room (pipeline::tests).
        let injected = if self.route.inject.is_empty() {
            inject::Injected::default()
        } else {
            Box::pin(inject::inject(
                self.route,
                wait,
                principal,
                &self.captures,
                query.as_deref(),
            ))
            .await?
        };
        let retry = (!injected.fetched.is_empty() && is_bodiless(&req)).then(|| Retry {
            head: head_of(&req),
            headers: headers.clone(),
        });
        headers.extend(injected.headers.iter().cloned());
        self.log.minted.extend(injected.minted.iter().cloned());

        let websocket = websocket && forward::is_websocket_upgrade(&req);
        let client_upgrade = websocket.then(|| ClientUpgrade::on(&mut req));
        let target = self.target()?;
        let started = Instant::now();
        let counted = self.log.request_bytes.clone();
        let req = req.map(|inner| ReqBody::stream(inner, counted));
        let mut resp = target.send(req, websocket, headers).await?;
        if resp.status() == StatusCode::UNAUTHORIZED && !injected.fetched.is_empty() {
            resp = Box::pin(self.refused_token(
                &target,
                &injected,
                retry,
                principal,
                query.as_deref(),
            ))
            .await?
            .unwrap_or(resp);
        }
        self.log.upstream = Some(started.elapsed());
        if let Some(client_upgrade) = client_upgrade {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                let name = self.route.settings.name.clone();
                forward::splice_upgrade(client_upgrade, upstream_upgrade, name);
            }
        }
        Ok(resp)
    }

    /// The upstream answered 401 to a request carrying fetched tokens: drop
    /// them (unless a 401 did so within the refetch cooldown, then the 401
    /// passes through) and, for a request that can be sent again, send it
    /// once more with fresh ones. `None`: the first answer stands.
    async fn refused_token(
        &self,
        target: &Target<'_>,
        injected: &inject::Injected,
        retry: Option<Retry>,
        principal: Option<&Principal>,
        query: Option<&str>,
    ) -> Result<Option<Response<ResBody>>, GatewayError> {
        let mut renewed = false;
        for (source, value) in &injected.fetched {
            let expose = secrecy::ExposeSecret::expose_secret(value);
            renewed |= source.invalidate(expose).await;
        }
        let Some(Retry { head, mut headers }) = retry.filter(|_| renewed) else {
            return Ok(None);
        };
        tracing::info!(route = %self.route.settings.name, "upstream refused the token; retrying once with a new one");
        let wait = self.live.settings.limits.upstream_timeout;
        let fresh = inject::inject(self.route, wait, principal, &self.captures, query).await?;
        // The fresh injected headers replace the first ones.
        headers.retain(|(n, _)| !fresh.headers.iter().any(|(f, _)| f == n));
        headers.extend(fresh.headers);
        let req = head.map(|()| ReqBody::full(bytes::Bytes::new()));
        target.send(req, false, headers).await.map(Some)
    }

    /// A `verify_webhook` route: buffer (bounded), verify, answer Zoom's
    /// URL validation, skip delivered duplicates, forward the exact bytes.
    pub async fn webhook(&mut self, settings: &WebhookSettings, req: Request<Incoming>) -> Answer {
        let name = settings.name.as_str();
        let count = |result: &'static str| {
            self.state
                .metrics
                .webhook_verifications
                .get_or_create(&crate::metrics::WebhookResult {
                    webhook: name.to_owned(),
                    result,
                })
                .inc();
        };
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, &parts.headers, &self.live.settings.limits).await?;
        self.log.read_request_bytes(bytes.len());
        let now = crate::now_secs() as i64;
        let verified = webhook::verify(settings, &parts.headers, &bytes, now).map_err(|e| {
            if let webhook::WebhookError::StaleTimestamp { age_secs } = e {
                tracing::info!(
                    webhook = name,
                    age_secs,
                    "webhook refused: timestamp outside the window"
                );
            } else {
                tracing::debug!(webhook = name, reason = e.code(), "webhook refused");
            }
            count(e.code());
            GatewayError::WebhookRejected(e)
        })?;
        let event: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let Some(obj) = event.as_object() else {
            return Err(GatewayError::BadRequest {
                code: "invalid_body",
                description: "a webhook body must be a JSON object".to_owned(),
            });
        };
        if settings.kind == crate::config::WebhookKind::Zoom
            && obj.get("event").and_then(|e| e.as_str()) == Some("endpoint.url_validation")
        {
            let plain = obj
                .get("payload")
                .and_then(|p| p.get("plainToken"))
                .and_then(|t| t.as_str())
                .ok_or_else(|| GatewayError::BadRequest {
                    code: "invalid_body",
                    description: "endpoint.url_validation needs payload.plainToken".to_owned(),
                })?;
            let answer =
                webhook::url_validation_answer(&settings.secrets[verified.secret].0, plain);
            count("url_validation");
            self.log.outcome = Some(("allow", "url_validation"));
            return Ok(crate::body::json_response(StatusCode::OK, answer));
        }

        let key = format!("{name}:{}", verified.dedup_key);
        let delivery = match self.state.replay.claim(&key, settings.dedup).await {
            crate::replay::Claim::Duplicate => {
                tracing::info!(webhook = name, "duplicate webhook event not forwarded");
                count("duplicate");
                self.log.outcome = Some(("deny", "webhook_duplicate"));
                return Ok(crate::body::json_response(
                    StatusCode::OK,
                    r#"{"status":"duplicate"}"#,
                ));
            }
            crate::replay::Claim::Fresh(d) => d,
        };
        if settings.kind == crate::config::WebhookKind::Zoom
            && obj.get("event").and_then(|e| e.as_str()) == Some("app_deauthorized")
        {
            super::zoom_user::deauthorized(self.live, &event).await;
        }
        let verified_header = vec![(
            HeaderName::from_static("x-webhook-verified"),
            HeaderValue::from_str(name).map_err(|_| self.stage_unavailable("verify_webhook"))?,
        )];
        let target = self.target()?;
        let req = Request::from_parts(parts, ReqBody::full(bytes));
        count("ok");
        let started = Instant::now();
        let resp = target.send(req, false, verified_header).await?;
        self.log.upstream = Some(started.elapsed());
        if resp.status().is_success() {
            delivery.delivered().await;
        }
        Ok(resp)
    }
}

/// What is needed to send a bodiless request again.
struct Retry {
    head: Request<()>,
    /// The identity headers, before any injected credential.
    headers: Vec<(HeaderName, HeaderValue)>,
}

fn head_of<B>(req: &Request<B>) -> Request<()> {
    let mut r = Request::new(());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}
