//! Bearer JWTs from OIDC issuers, verified against their JWKS.
//!
//! Order of checks (cheap and key-independent first): size, shape, header
//! (`alg`, `typ`, `crit`), issuer selection, key lookup (with one coalesced
//! refetch for an unknown `kid`), algorithm/key consistency, signature, then
//! claims (`iss`, `aud`, `exp`, `nbf`, `iat`). `jku`, `x5u`, `jwk` and `x5c`
//! header parameters are never used to find keys.
//!
//! Verified tokens are remembered ([`TokenCache`], keyed by SHA-256 of the
//! token) until they expire, so a repeated token costs a hash and a lookup.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::{shown, shown_list};
use super::{AuthnError, Principal};
use crate::config::{IdentitySettings, Snapshot};
use crate::error::GatewayError;
use crate::jwks::KeySet;
use crate::live::LiveIdentity;

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Bookkeeping per cache entry beyond the principal itself (key, moka's
/// node and expiry wheel entry, the `Arc`).
const ENTRY_OVERHEAD: usize = 256;

/// One remembered verification: the principal and the snapshot whose
/// settings verified it (a token verified while a reload tightened the
/// rules must not be served under the new ones).
#[derive(Clone)]
struct Verified {
    principal: Arc<Principal>,
    snapshot: u64,
}

/// Verified tokens: SHA-256 of the token → principal, living until the
/// token's `exp` (plus leeway). Bounded in estimated bytes
/// ([`Principal::approx_bytes`]), so tokens with large claims take their
/// share of the bound rather than a slot each.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<arc_swap::ArcSwap<Entries>>,
    hits: prometheus_client::metrics::counter::Counter,
}

struct Entries {
    map: moka::sync::Cache<[u8; 32], Verified>,
    capacity: u64,
}

struct UntilExpiry;

impl moka::Expiry<[u8; 32], Verified> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Verified,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            v.principal.valid_until.saturating_sub(now_secs()),
        ))
    }
}

impl Entries {
    fn new(capacity: u64) -> Self {
        Entries {
            map: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .weigher(|_, v: &Verified| {
                    u32::try_from(v.principal.approx_bytes() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .expire_after(UntilExpiry)
                .support_invalidation_closures()
                .build(),
            capacity,
        }
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(
            Default::default(),
            crate::config::Limits::DEFAULT.token_cache_bytes,
        )
    }
}

impl TokenCache {
    /// A cache of at most `capacity` estimated bytes counting its hits on
    /// `hits`.
    pub fn new(hits: prometheus_client::metrics::counter::Counter, capacity: u64) -> Self {
        TokenCache {
            inner: Arc::new(arc_swap::ArcSwap::from_pointee(Entries::new(capacity))),
            hits,
        }
    }

    /// Drops entries of `identity` signed with one of `kids` (their key left
    /// the JWKS).
    pub fn forget_kids(&self, identity: &str, kids: &HashSet<String>) {
        let identity = identity.to_owned();
        let kids = kids.clone();
        let _ = self.inner.load().map.invalidate_entries_if(move |_, v| {
            let p = &v.principal;
            p.identity == identity && p.kid.as_ref().is_some_and(|k| kids.contains(k))
        });
    }

    /// Requests answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// Drops everything (configuration changed), and takes a new capacity
    /// (`[limits] token_cache_bytes`).
    pub fn reset(&self, capacity: u64) {
        let current = self.inner.load();
        current.map.invalidate_all();
        if current.capacity != capacity {
            self.inner.store(Arc::new(Entries::new(capacity)));
        }
    }

    /// Entries currently held (approximate).
    pub fn len(&self) -> u64 {
        let e = self.inner.load();
        e.map.run_pending_tasks();
        e.map.entry_count()
    }

    /// Estimated bytes currently held (at most the capacity once moka's
    /// pending evictions have run).
    pub fn weighted_size(&self) -> u64 {
        let e = self.inner.load();
        e.map.run_pending_tasks();
        e.map.weighted_size()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

use crate::now_secs;

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Verifies `token` for a route accepting `identities` and returns who it
/// belongs to.
pub async fn verify(
    token: &str,
    identities: &[LiveIdentity],
    snap: &Snapshot,
    cache: &TokenCache,
) -> Result<Arc<Principal>, GatewayError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(GatewayError::from(AuthnError::TokenTooLarge));
    }
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let entries = cache.inner.load();
    if let Some(v) = entries.map.get(&digest) {
        // The cache is shared by routes: the identity must be one of ours,
        // and the settings that verified it must be the ones in force.
        let p = v.principal;
        if v.snapshot == snap.build_id
            && identities.iter().any(|i| i.settings.name == p.identity)
            && now_secs() <= p.valid_until
        {
            cache.hits.inc();
            return Ok(p);
        }
    }

    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(GatewayError::from(AuthnError::MalformedToken));
    };
    if h64.is_empty() || c64.is_empty() {
        return Err(GatewayError::from(AuthnError::MalformedToken));
    }
    let header: JoseHeader = decode_part(h64)?;
    let claims: Map<String, Value> = decode_part(c64)?;

    if let Some(crit) = &header.crit {
        // This gateway understands no extension header parameters.
        tracing::debug!(crit = %crit, "token rejected: crit");
        return Err(GatewayError::from(AuthnError::UnsupportedCrit));
    }
    if let Some(typ) = &header.typ {
        let t = typ.to_ascii_lowercase();
        if !matches!(
            t.as_str(),
            "jwt" | "at+jwt" | "application/at+jwt" | "application/jwt"
        ) {
            return Err(GatewayError::from(AuthnError::InvalidTyp));
        }
    }
    // `none` in any spelling, HS*, or anything unknown: refused.
    let alg: Algorithm = match header.alg.parse() {
        Ok(a) if !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => a,
        _ => {
            return Err(
                GatewayError::from(AuthnError::AlgorithmNotAllowed).explained(format!(
                    "alg {} is not an asymmetric JWS algorithm",
                    shown(&header.alg)
                )),
            )
        }
    };
    if s64.is_empty() {
        return Err(GatewayError::from(AuthnError::MalformedToken));
    }

    // Identity: the token's `iss` picks one of the route's identities.
    let iss = claims.get("iss").and_then(Value::as_str).ok_or_else(|| {
        GatewayError::from(AuthnError::InvalidClaims).explained("no iss string claim")
    })?;
    let live = identities
        .iter()
        .find(|i| i.settings.issuer == iss)
        .ok_or_else(|| {
            let expected = shown_list(identities.iter().map(|i| i.settings.issuer.as_str()));
            let detail = format!("iss {} is not the route's issuer {expected}", shown(iss));
            if identities.len() > 1 {
                GatewayError::from(AuthnError::UnknownIssuer).explained(detail)
            } else {
                GatewayError::from(AuthnError::WrongIssuer).explained(detail)
            }
        })?;
    let (identity, keys) = (&*live.settings, &live.keys);
    if !identity.algorithms.iter().any(|a| a == &header.alg) {
        return Err(
            GatewayError::from(AuthnError::AlgorithmNotAllowed).explained(format!(
                "alg {} is not in identity {}'s algorithms {}",
                shown(&header.alg),
                identity.name,
                shown_list(identity.algorithms.iter().map(String::as_str))
            )),
        );
    }

    // Key: by kid; an unknown kid (or no usable keys at all) refetches once.
    let kid = header.kid.as_deref();
    let mut keyset = keys.usable();
    let found = keyset
        .as_ref()
        .is_some_and(|ks| ks.find(kid, alg).is_some());
    if !found {
        let had_keys = keyset.is_some();
        keyset = keys
            .refetch()
            .await
            .or(keyset)
            .filter(|_| keys.usable().is_some());
        if keyset.is_none() {
            return Err(if had_keys {
                GatewayError::from(AuthnError::UnknownKid).explained(unknown_kid(kid, identity))
            } else {
                GatewayError::KeysUnavailable {
                    identity: identity.name.clone(),
                }
            });
        }
    }
    let keyset: Arc<KeySet> = keyset.expect("checked above");
    let Some(key) = keyset.find(kid, alg) else {
        tracing::debug!(identity = %identity.name, kid, "token rejected: unknown kid");
        return Err(
            GatewayError::from(AuthnError::UnknownKid).explained(unknown_kid(kid, identity))
        );
    };
    if !key.family.accepts(alg) || key.alg.is_some_and(|a| a != alg) {
        return Err(
            GatewayError::from(AuthnError::AlgorithmNotAllowed).explained(format!(
                "alg {} does not fit the key it names",
                shown(&header.alg)
            )),
        );
    }

    // Signature over "header.claims" exactly as received.
    let signed_len = h64.len() + 1 + c64.len();
    let verified =
        jsonwebtoken::crypto::verify(s64, &token.as_bytes()[..signed_len], &key.key, alg)
            .unwrap_or(false);
    if !verified {
        tracing::debug!(identity = %identity.name, kid, "token rejected: signature");
        return Err(
            GatewayError::from(AuthnError::InvalidSignature).explained(format!(
                "the signature does not verify with identity {}'s key {}",
                identity.name,
                kid.map_or_else(|| "(no kid)".to_owned(), shown)
            )),
        );
    }

    let now = now_secs();
    let valid_until = check_claims(&claims, identity, now)?;
    let mut principal = Principal::from_claims(identity, key.kid.clone(), claims, valid_until);
    // Only the claims some route reads are kept (roles, tenant and subject
    // are already taken out): the rest would only cost cache memory.
    principal
        .claims
        .retain(|name, _| snap.principal_claims.contains(name));
    let principal = Arc::new(principal);
    if identity.verified_token_cache {
        entries.map.insert(
            digest,
            Verified {
                principal: principal.clone(),
                snapshot: snap.build_id,
            },
        );
    }
    Ok(principal)
}

/// The detail of an unknown `kid` refusal.
fn unknown_kid(kid: Option<&str>, identity: &IdentitySettings) -> String {
    match kid {
        Some(k) => format!(
            "kid {} is not among identity {}'s keys, even after a refetch",
            shown(k),
            identity.name
        ),
        None => format!(
            "no kid, and no key of identity {} fits the algorithm",
            identity.name
        ),
    }
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, GatewayError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| GatewayError::from(AuthnError::MalformedToken))?;
    // A member named twice is ambiguous (parsers disagree on which wins):
    // refuse it rather than pick one.
    serde_json::from_slice::<UniqueKeys>(&bytes)
        .map_err(|_| GatewayError::from(AuthnError::MalformedToken))?;
    serde_json::from_slice(&bytes).map_err(|_| GatewayError::from(AuthnError::MalformedToken))
}

/// A JSON object whose members (at any depth) are all distinct.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(|()| UniqueKeys)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without duplicate object members")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.into_owned()) {
                return Err(serde::de::Error::custom("duplicate member"));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Registered-claim checks; returns until when the token may be accepted
/// (`exp` + leeway).
fn check_claims(
    claims: &Map<String, Value>,
    identity: &IdentitySettings,
    now: u64,
) -> Result<u64, GatewayError> {
    let leeway = identity.leeway.as_secs();
    let time = |name: &str| -> Result<Option<u64>, GatewayError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| GatewayError::from(AuthnError::InvalidClaims)),
        }
    };
    let exp = time("exp")?
        .ok_or_else(|| GatewayError::from(AuthnError::InvalidClaims).explained("no exp claim"))?;
    if now > exp.saturating_add(leeway) {
        return Err(GatewayError::from(AuthnError::Expired).explained(format!(
            "expired {} s ago (exp {exp}, leeway {leeway} s)",
            now - exp
        )));
    }
    for name in ["nbf", "iat"] {
        if let Some(t) = time(name)? {
            if t > now.saturating_add(leeway) {
                return Err(
                    GatewayError::from(AuthnError::NotYetValid).explained(format!(
                        "{name} is {} s in the future (leeway {leeway} s): check the clocks",
                        t - now
                    )),
                );
            }
        }
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => identity.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| identity.audiences.iter().any(|x| x == a))
        }),
        _ => false,
    };
    if !aud_ok {
        let received = match claims.get("aud") {
            Some(Value::String(a)) => shown(a),
            Some(Value::Array(list)) => shown_list(list.iter().filter_map(Value::as_str)),
            Some(_) => "not a string".to_owned(),
            None => "missing".to_owned(),
        };
        return Err(
            GatewayError::from(AuthnError::WrongAudience).explained(format!(
                "aud {received} is none of identity {}'s audiences {}",
                identity.name,
                shown_list(identity.audiences.iter().map(String::as_str))
            )),
        );
    }
    Ok(exp.saturating_add(leeway))
}
