//! The audit trail: one JSON object per line per decision (docs/BEHAVIOUR.md item
//! 33), written by a background task to stdout (`path = "-"`) or a file
//! opened for append and reopened on SIGHUP (log rotation).
//!
//! Never a token, secret, signature, body or decrypted context: the record
//! type has no field that could hold one.

use std::path::PathBuf;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Lines waiting for the writer at most; beyond, lines are dropped and
/// counted (`meetgate_audit_dropped_total`) rather than slowing requests.
const QUEUE: usize = 16 * 1024;

/// One decision.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    pub ts: String,
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    /// The host routed by (lower-case, no port); absent when the request
    /// was refused before routing.
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// Cut to 256 characters, non-printable bytes replaced by `?`.
    pub user_agent: Option<String>,
    pub client_ip: String,
    pub identity: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub roles: &'a [String],
    pub decision: &'static str,
    pub reason: &'a str,
    pub status: u16,
    pub upstream_ms: Option<u64>,
    /// From the request head to the response head.
    pub total_ms: u64,
    /// Request body bytes the gateway read (forwarded or held).
    pub request_bytes: u64,
    /// Response body bytes handed to the client connection (the line is
    /// written when the response body ends, or when the client goes away).
    pub response_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_role: Option<u8>,
}

enum Msg {
    Line(String),
    Reopen,
    /// Write everything queued before this, flush, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Where audit lines go.
pub struct AuditSink {
    path: String,
    tx: mpsc::Sender<Msg>,
    dropped: Counter,
}

impl AuditSink {
    /// Opens `path` (`-` for stdout) and starts the writer.
    pub async fn start(
        path: &str,
        base: &std::path::Path,
        dropped: Counter,
    ) -> std::io::Result<Self> {
        let target = (path != "-").then(|| base.join(path));
        let mut out = open(target.as_ref()).await?;
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let mut next = Some(msg);
                // Write everything queued, then flush once.
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Line(line) => {
                            if let Err(e) = out.write_all(line.as_bytes()).await {
                                tracing::error!(error = %e, "audit write failed");
                            }
                        }
                        Msg::Flush(done) => {
                            let _ = out.flush().await;
                            let _ = done.send(());
                        }
                        Msg::Reopen => {
                            let _ = out.flush().await;
                            match open(target.as_ref()).await {
                                Ok(w) => out = w,
                                Err(e) => {
                                    tracing::error!(error = %e, "audit file could not be reopened; still writing to the old one")
                                }
                            }
                        }
                    }
                    next = rx.try_recv().ok();
                }
                let _ = out.flush().await;
            }
            let _ = out.flush().await;
        });
        Ok(AuditSink {
            path: path.to_owned(),
            tx,
            dropped,
        })
    }

    /// The configured path this sink writes to.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Queues one record.
    pub fn write(&self, rec: &AuditRecord<'_>) {
        let Ok(mut line) = serde_json::to_string(rec) else {
            return;
        };
        line.push('\n');
        if self.tx.try_send(Msg::Line(line)).is_err() {
            self.dropped.inc();
        }
    }

    /// Waits (at most `limit`) until every line queued so far is written
    /// and flushed: at shutdown, after the last responses have ended.
    pub async fn flush(&self, limit: std::time::Duration) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        let _ = tokio::time::timeout(limit, async {
            if self.tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = flushed.await;
            }
        })
        .await;
    }

    /// Reopens the file (after log rotation moved it away).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

async fn open(target: Option<&PathBuf>) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    Ok(match target {
        None => Box::new(tokio::io::BufWriter::new(tokio::io::stdout())),
        Some(p) => {
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await?;
            Box::new(tokio::io::BufWriter::new(f))
        }
    })
}

/// Now as RFC 3339 (UTC, milliseconds).
pub fn now_rfc3339() -> String {
    use time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let ts = now_rfc3339();
        assert!(ts.ends_with('Z'), "{ts}");
        assert!(
            time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn lines_are_appended_and_the_file_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let sink = AuditSink::start("audit.log", dir.path(), Counter::default())
            .await
            .unwrap();
        let rec = |id: &'static str| AuditRecord {
            ts: now_rfc3339(),
            request_id: id,
            route: Some("r"),
            method: "GET",
            host: Some("gw.example"),
            path: "/x",
            protocol: "HTTP/1.1",
            user_agent: None,
            client_ip: "127.0.0.1".into(),
            identity: None,
            subject: None,
            tenant: None,
            roles: &[],
            decision: "allow",
            reason: "ok",
            status: 200,
            upstream_ms: Some(1),
            total_ms: 2,
            request_bytes: 0,
            response_bytes: 2,
            credential: None,
            granted_role: None,
        };
        sink.write(&rec("a"));
        let log = dir.path().join("audit.log");
        for _ in 0..100 {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("\"a\"")
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
        sink.reopen();
        sink.write(&rec("b"));
        for _ in 0..100 {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("\"b\"")
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let new = std::fs::read_to_string(&log).unwrap();
        let old = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
        assert!(old.contains("\"request_id\":\"a\"") && !old.contains("\"b\""));
        assert!(new.contains("\"request_id\":\"b\""));
        let v: serde_json::Value = serde_json::from_str(new.lines().next().unwrap()).unwrap();
        for k in [
            "ts",
            "request_id",
            "route",
            "method",
            "path",
            "client_ip",
            "identity",
            "subject",
            "tenant",
            "roles",
            "decision",
            "reason",
            "status",
            "upstream_ms",
            "total_ms",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
