//! CORS on routes with `cors = "NAME"` (the Fetch standard's CORS
//! protocol): preflights are answered here, before authentication, and
//! never forwarded; every other answer of such a route (the upstream's,
//! the gateway's own, errors included) gets the policy's headers.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{Method, Request, Response, StatusCode};

use super::route::{select, Selection};
use super::RequestLog;
use crate::body::ResBody;
use crate::config::RouteCors;
use crate::live::LiveRoute;

/// The request's `Origin`, when it has exactly one.
pub(super) fn request_origin(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(ORIGIN).iter();
    match (all.next(), all.next()) {
        (Some(o), None) => Some(o.clone()),
        _ => None,
    }
}

/// The method a CORS preflight asks about: an `OPTIONS` request with an
/// `Origin` and one well-formed `Access-Control-Request-Method`. `None`:
/// not a preflight (routed like any request).
pub(super) fn preflight_method<B>(req: &Request<B>) -> Option<Method> {
    if *req.method() != Method::OPTIONS || request_origin(req.headers()).is_none() {
        return None;
    }
    let mut all = req.headers().get_all(ACCESS_CONTROL_REQUEST_METHOD).iter();
    match (all.next(), all.next()) {
        (Some(m), None) => Method::from_bytes(m.as_bytes()).ok(),
        _ => None,
    }
}

/// The route whose policy answers a preflight for `requested`, if the
/// gateway answers it: the route the requested method takes, when it has
/// `cors`; else the route `OPTIONS` takes, when it has `cors` (then the
/// method is refused: no route with a policy takes it here). `None`: the
/// `OPTIONS` request is routed as usual.
pub(super) fn preflight_route<'r>(
    routes: &'r [LiveRoute],
    host: Option<&str>,
    requested: &Method,
    path: &str,
) -> Option<(&'r LiveRoute, &'r RouteCors, bool)> {
    let found = |method: &Method| match select(routes, host, method, path) {
        Selection::Found { route, .. } => Some(route),
        _ => None,
    };
    if let Some(route) = found(requested) {
        if let Some(cors) = &route.settings.cors {
            return Some((route, cors, true));
        }
    }
    let route = found(&Method::OPTIONS)?;
    let cors = route.settings.cors.as_ref()?;
    Some((route, cors, false))
}

/// Answers a preflight: 204 with the policy's headers when the origin, the
/// method (`takes_method`: the route answering takes it) and every
/// requested header are allowed; otherwise 403 `cors_not_allowed` without
/// any `Access-Control-Allow-*` header (the Fetch standard's way to refuse).
pub(super) fn preflight(
    cors: &RouteCors,
    requested: &Method,
    takes_method: bool,
    headers: &HeaderMap,
    log: &mut RequestLog,
) -> Response<ResBody> {
    let policy = &cors.policy;
    let origin = request_origin(headers).filter(|o| policy.allows(o.as_bytes()));
    let refusal = match &origin {
        None => Some("the origin is not allowed to call this route".to_owned()),
        Some(_) if !takes_method || !cors.methods.contains(requested) => Some(format!(
            "the route's CORS policy does not allow the method {requested}"
        )),
        Some(_) => refused_header(&policy.headers, headers),
    };
    let mut resp = match (refusal, origin) {
        (None, Some(origin)) => {
            log.outcome = Some(("allow", "cors_preflight"));
            let mut resp = Response::new(ResBody::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            let h = resp.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            set_list(
                h,
                ACCESS_CONTROL_ALLOW_METHODS,
                cors.methods.iter().map(Method::as_str),
            );
            set_list(
                h,
                ACCESS_CONTROL_ALLOW_HEADERS,
                policy.headers.iter().map(HeaderName::as_str),
            );
            if policy.credentials {
                h.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
            if let Some(secs) = policy.max_age_secs {
                h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(secs));
            }
            resp
        }
        (refusal, _) => {
            let description = refusal.unwrap_or_default();
            tracing::debug!(policy = %policy.name, %description, "CORS preflight refused");
            log.outcome = Some(("deny", "cors_not_allowed"));
            crate::error::json_error(StatusCode::FORBIDDEN, "cors_not_allowed", &description)
        }
    };
    // The answer depends on these request headers.
    resp.headers_mut().insert(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    resp
}

/// The first header named in `Access-Control-Request-Headers` that the
/// policy does not allow, as a refusal.
fn refused_header(allowed: &[HeaderName], headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        let Ok(list) = value.to_str() else {
            return Some("Access-Control-Request-Headers is not a list of header names".to_owned());
        };
        for name in list.split(',').map(|n| n.trim_matches([' ', '\t'])) {
            if name.is_empty() {
                continue;
            }
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) if allowed.contains(&n) => {}
                Ok(n) => {
                    return Some(format!(
                        "the route's CORS policy does not allow the request header {n}"
                    ))
                }
                Err(_) => {
                    return Some(
                        "Access-Control-Request-Headers is not a list of header names".to_owned(),
                    )
                }
            }
        }
    }
    None
}

/// The headers every other answer of a CORS route carries: the policy
/// replaces any `Access-Control-*` the upstream sent; `Vary: Origin` is
/// added to the upstream's `Vary`; an allowed origin is echoed, with
/// credentials and exposed headers as configured.
pub(super) fn decorate(
    resp: &mut Response<ResBody>,
    cors: &RouteCors,
    origin: Option<&HeaderValue>,
) {
    let h = resp.headers_mut();
    for name in [
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS,
        ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_MAX_AGE,
    ] {
        h.remove(name);
    }
    add_vary_origin(h);
    let policy = &cors.policy;
    let Some(origin) = origin.filter(|o| policy.allows(o.as_bytes())) else {
        return;
    };
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if policy.credentials {
        h.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    set_list(
        h,
        ACCESS_CONTROL_EXPOSE_HEADERS,
        policy.expose_headers.iter().map(HeaderName::as_str),
    );
}

/// Appends `Vary: Origin` unless the answer already varies on it (or on
/// everything, `*`); the upstream's own `Vary` lines stay as they are.
fn add_vary_origin(h: &mut HeaderMap) {
    let covered = h.get_all(VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|item| {
            let item = item.trim_ascii();
            item == b"*" || item.eq_ignore_ascii_case(b"origin")
        })
    });
    if !covered {
        h.append(VARY, HeaderValue::from_static("Origin"));
    }
}

/// `name: a, b, c`, unless the list is empty.
fn set_list<'a>(h: &mut HeaderMap, name: HeaderName, items: impl Iterator<Item = &'a str>) {
    let list = items.collect::<Vec<_>>().join(", ");
    if list.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&list) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_origin_is_appended_once() {
        let mut h = HeaderMap::new();
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        add_vary_origin(&mut h);
        add_vary_origin(&mut h);
        let all: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(all, ["Accept-Encoding", "Origin"]);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("accept, ORIGIN"));
        add_vary_origin(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("*"));
        add_vary_origin(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
    }

    #[test]
    fn requested_headers_are_checked_one_by_one() {
        let allowed = [
            HeaderName::from_static("authorization"),
            HeaderName::from_static("content-type"),
        ];
        let ask = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_static(v));
            refused_header(&allowed, &h)
        };
        assert_eq!(ask("authorization,content-type"), None);
        assert_eq!(ask(" Authorization , content-type ,"), None);
        assert_eq!(ask(""), None);
        assert!(ask("authorization,x-debug").unwrap().contains("x-debug"));
        assert!(ask("auth orization").unwrap().contains("not a list"));
    }
}
