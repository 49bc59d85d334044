//! `/readyz`: whether this gateway can serve (docs/BEHAVIOUR.md item 3).
//!
//! Plain `/readyz` is 503 while the gateway starts (until the first fetch
//! of every identity's keys and every fetched credential has been tried,
//! at most `readiness_grace_ms`) and while it drains after SIGTERM;
//! otherwise 200, with the parts that cannot work right now (an issuer or
//! a token endpoint that is down) named under `degraded`: a down issuer must
//! not pull every replica out of the load balancer, public routes and
//! webhooks still serve. `/readyz?strict=1` is the all-or-nothing answer:
//! 200 only when every identity has usable keys and every fetched
//! credential holds a token, the missing parts under `not_ready`.

use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;
use serde_json::{json, Value};

use crate::metrics::ComponentLabel;
use crate::State;

/// One part a route may need: an identity's keys or a fetched credential.
struct Part {
    kind: &'static str,
    name: String,
    /// A first fetch was tried (successfully or not).
    tried: bool,
    /// Usable right now.
    ok: bool,
}

impl Part {
    fn describe(&self) -> String {
        match self.kind {
            "identity" => format!("identity {}: no usable signing keys", self.name),
            _ => format!("credential {}: no token obtained yet", self.name),
        }
    }
}

impl Part {
    /// A part that is usable (`ok`) or not, with `fetches` attempts made.
    fn new(kind: &'static str, name: &str, ok: bool, fetches: [&AtomicU64; 2]) -> Self {
        let tried = fetches
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum::<u64>()
            > 0;
        Part {
            kind,
            name: name.to_owned(),
            tried: ok || tried,
            ok,
        }
    }
}

fn parts(state: &State) -> Vec<Part> {
    let live = state.live.load();
    let identities = live.identity_keys.iter().map(|(name, k)| {
        let ok = k.usable().is_some();
        Part::new("identity", name, ok, [&k.fetches_ok, &k.fetches_failed])
    });
    let credentials = live.credential_sources.iter().map(|(name, c)| {
        let ok = c.obtained.load(Ordering::SeqCst);
        Part::new("credential", name, ok, [&c.fetches_ok, &c.fetches_failed])
    });
    let mut parts: Vec<Part> = identities.chain(credentials).collect();
    parts.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    parts
}

/// The `/readyz` answer; `strict` for `?strict=1`.
pub fn answer(state: &State, strict: bool) -> (StatusCode, Value) {
    let parts = parts(state);
    let draining = state.draining.load(Ordering::SeqCst);
    let missing: Vec<String> = parts.iter().filter(|p| !p.ok).map(Part::describe).collect();
    let starting: Vec<String> =
        if state.started.elapsed() < state.live.load().settings.server.readiness_grace {
            parts
                .iter()
                .filter(|p| !p.tried)
                .map(|p| format!("{} {}", p.kind, p.name))
                .collect()
        } else {
            Vec::new()
        };
    let (ready, status) = if draining {
        (false, "draining")
    } else if strict {
        let ok = missing.is_empty();
        (ok, if ok { "ready" } else { "not_ready" })
    } else if !starting.is_empty() {
        (false, "starting")
    } else if missing.is_empty() {
        (true, "ready")
    } else {
        (true, "degraded")
    };
    let mut body = json!({
        "ready": ready,
        "status": status,
        "config_generation": state.generation.load(Ordering::Relaxed),
        "config_reloads": {
            "ok": state.reloads_ok.load(Ordering::Relaxed),
            "failed": state.reloads_failed.load(Ordering::Relaxed),
        },
    });
    if strict {
        body["not_ready"] = missing.into();
    } else {
        body["degraded"] = missing.into();
        if !starting.is_empty() {
            body["waiting_for"] = starting.into();
        }
    }
    // A Redis outage does not make the gateway unready: it serves from
    // in-process stores (docs/BEHAVIOUR.md item 34).
    if let Some(up) = state.cluster.healthy() {
        body["cluster_store"] = if up { "ok" } else { "degraded" }.into();
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

/// The readiness gauges, set at scrape time: `meetgate_ready` (plain
/// `/readyz`) and `meetgate_degraded{kind, name}` for every part.
pub fn refresh_gauges(state: &State) {
    let m = &state.metrics;
    m.ready
        .set(i64::from(answer(state, false).0 == StatusCode::OK));
    m.degraded.clear();
    for p in parts(state) {
        m.degraded
            .get_or_create(&ComponentLabel {
                kind: p.kind,
                name: p.name,
            })
            .set(i64::from(!p.ok));
    }
}
