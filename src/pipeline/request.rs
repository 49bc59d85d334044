//! Request checks that come before any stage (head size, framing, Host)
//! and the request facts the stages share (authority, body reads).

use http::header::HOST;
use http::Request;
use hyper::body::Incoming;

use crate::error::GatewayError;

/// Reads a body the gateway must hold, refusing more than
/// `max_body_bytes` (413) and bodies slower than the upstream timeout (408).
pub(super) async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limits: &crate::config::Limits,
) -> Result<bytes::Bytes, GatewayError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let limited = http_body_util::Limited::new(body, limits.max_body_bytes);
    match tokio::time::timeout(limits.upstream_timeout, limited.collect()).await {
        Err(_) => Err(GatewayError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge)
        }
        Ok(Err(_)) => Err(GatewayError::BadRequest {
            code: "invalid_body",
            description: "the request body could not be read".to_owned(),
        }),
    }
}

/// Request framing the gateway will not pass on: a transfer coding other
/// than `chunked` (the upstream would receive the decoded chunks without the
/// coding), or Content-Length beside Transfer-Encoding. (hyper's HTTP/1
/// server already drops Content-Length when Transfer-Encoding is present and
/// closes the connection after answering, RFC 9112 section 6.1; the check
/// stays as defence in depth.)
pub(super) fn check_framing(h: &http::HeaderMap) -> Result<(), GatewayError> {
    let mut te = h.get_all(http::header::TRANSFER_ENCODING).iter().peekable();
    if te.peek().is_none() {
        return Ok(());
    }
    let only_chunked = te.all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"));
    if !only_chunked || h.get_all(http::header::TRANSFER_ENCODING).iter().count() > 1 {
        return Err(GatewayError::BadRequest {
            code: "unsupported_transfer_encoding",
            description: "only the chunked transfer coding is accepted".to_owned(),
        });
    }
    if h.contains_key(http::header::CONTENT_LENGTH) {
        return Err(GatewayError::BadRequest {
            code: "invalid_request",
            description: "Content-Length and Transfer-Encoding together are refused".to_owned(),
        });
    }
    Ok(())
}

/// At most one `Host` line, and exactly one on an HTTP/1.1 request (RFC
/// 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status
/// code to any HTTP/1.1 request message that lacks a Host header field and
/// to any request message that contains more than one Host header field").
/// Two lines would let the gateway and the app disagree on the host.
pub(super) fn check_host<B>(req: &Request<B>) -> Result<(), GatewayError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let first = hosts.next();
    let description = if hosts.next().is_some() {
        "more than one Host header"
    } else if first.is_none() && req.version() == http::Version::HTTP_11 {
        "an HTTP/1.1 request needs a Host header"
    } else {
        return Ok(());
    };
    Err(GatewayError::BadRequest {
        code: "invalid_host",
        description: description.to_owned(),
    })
}

/// GET, HEAD, OPTIONS or DELETE without a body: safe to send twice.
pub(super) fn is_bodiless<B>(req: &Request<B>) -> bool {
    use http::Method;
    let method_ok = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    );
    let h = req.headers();
    let no_body = !h.contains_key(http::header::TRANSFER_ENCODING)
        && h.get(http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    method_ok && no_body
}

/// The authority the client addressed: `:authority` (HTTP/2, absolute-form)
/// or the Host header.
pub(super) fn request_authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
}

/// The size of the request head as the limit counts it: target plus every
/// header line.
pub(super) fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    req.headers()
        .iter()
        .fold(target, |acc, (n, v)| acc + n.as_str().len() + v.len() + 4)
}
