//! A local OIDC issuer: real RSA and P-256 keys, discovery and JWKS on an
//! ephemeral loopback port, with switches for rotation, outages, hangs and
//! arbitrary JWKS bodies, and a counter of JWKS fetches.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Response, StatusCode};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::{full, upstream, TestBody};

/// One signing key of the issuer.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
    /// The private key as PKCS#8 PEM (for independent signers).
    pub pem: String,
    pub jwk: Value,
}

impl SigningKey {
    pub fn rsa(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        Self::from_pem(kid, Algorithm::RS256, kp.serialize_pem(), None)
    }

    pub fn ec(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate().unwrap();
        Self::from_pem(kid, Algorithm::ES256, kp.serialize_pem(), None)
    }

    /// `jwk_alg`: the `alg` member published in the JWK, if any.
    fn from_pem(kid: &str, alg: Algorithm, pem: String, jwk_alg: Option<&str>) -> Self {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        let mut jwk: Value =
            serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        let obj = jwk.as_object_mut().unwrap();
        obj.insert("kid".into(), json!(kid));
        obj.insert("use".into(), json!("sig"));
        match jwk_alg {
            Some(a) => {
                obj.insert("alg".into(), json!(a));
            }
            None => {
                obj.remove("alg");
            }
        }
        SigningKey {
            kid: kid.to_owned(),
            alg,
            key,
            pem,
            jwk,
        }
    }

    /// Signs `claims` with a standard header (`alg`, `typ: JWT`, `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, claims)
    }

    /// Signs with another algorithm of the same key family (PS256 with an
    /// RSA key).
    pub fn sign_as(&self, alg: Algorithm, claims: &Value) -> String {
        let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT", "kid": self.kid });
        self.sign_raw(&header, claims, alg)
    }

    /// Signs an arbitrary header and claims (for crafted tokens).
    pub fn sign_raw(&self, header: &Value, claims: &Value, alg: Algorithm) -> String {
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &self.key, alg).unwrap();
        format!("{msg}.{sig}")
    }
}

/// The issuer's mutable state.
pub struct Issuer {
    pub url: String,
    pub keys: Mutex<Vec<SigningKey>>,
    /// Extra raw JWKS entries published as they are (rotation tests).
    pub jwks_fetches: AtomicUsize,
    pub discovery_fetches: AtomicUsize,
    /// When set, every endpoint answers 500.
    pub down: AtomicBool,
    /// When set, the JWKS endpoint answers garbage.
    pub garbage: AtomicBool,
    /// When set (`Some`), the JWKS endpoint answers exactly this body.
    pub jwks_body: Mutex<Option<String>>,
    /// While true, every request waits (answering once it turns false).
    pub hang: tokio::sync::watch::Sender<bool>,
    /// Requests that arrived while hanging.
    pub hung: AtomicUsize,
}

impl Issuer {
    /// Starts an issuer publishing `keys`.
    pub async fn start(keys: Vec<SigningKey>) -> Arc<Issuer> {
        let slot: Arc<Mutex<Option<Arc<Issuer>>>> = Arc::new(Mutex::new(None));
        let s2 = slot.clone();
        let addr = upstream(move |req: http::Request<hyper::body::Incoming>| {
            let issuer = s2.lock().unwrap().clone().expect("issuer set");
            async move {
                let mut hang = issuer.hang.subscribe();
                if *hang.borrow_and_update() {
                    issuer.hung.fetch_add(1, Ordering::SeqCst);
                    let _ = hang.wait_for(|h| !*h).await;
                }
                issuer.answer(req.uri().path())
            }
        })
        .await;
        let issuer = Arc::new(Issuer {
            url: format!("http://127.0.0.1:{}", addr.port()),
            keys: Mutex::new(keys),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            garbage: AtomicBool::new(false),
            jwks_body: Mutex::new(None),
            hang: tokio::sync::watch::Sender::new(false),
            hung: AtomicUsize::new(0),
        });
        *slot.lock().unwrap() = Some(issuer.clone());
        issuer
    }

    fn answer(&self, path: &str) -> Response<TestBody> {
        if self.down.load(Ordering::SeqCst) {
            let mut r = Response::new(full("down"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
        match path {
            "/.well-known/openid-configuration" => {
                self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                json_response(
                    json!({ "issuer": self.url, "jwks_uri": format!("{}/jwks", self.url) }),
                )
            }
            "/jwks" => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                if self.garbage.load(Ordering::SeqCst) {
                    return Response::new(full("{\"keys\": 42"));
                }
                if let Some(body) = self.jwks_body.lock().unwrap().clone() {
                    return Response::new(full(body));
                }
                let keys: Vec<Value> = self
                    .keys
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|k| k.jwk.clone())
                    .collect();
                json_response(json!({ "keys": keys }))
            }
            _ => {
                let mut r = Response::new(full("not found"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        }
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Standard claims for `sub`, valid for an hour.
    pub fn claims(&self, sub: &str, extra: Value) -> Value {
        let now = now();
        let mut c = json!({
            "iss": self.url, "sub": sub, "aud": "api://meetings",
            "iat": now, "exp": now + 3600,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn json_response(v: Value) -> Response<TestBody> {
    let mut r = Response::new(full(v.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
