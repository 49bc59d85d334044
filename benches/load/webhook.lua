-- A signed Zoom webhook event (fixed timestamp; the bench config's window is
-- wide). After the first delivery the gateway answers duplicates itself, so
-- this measures verification (HMAC over the raw body) and the dedup lookup.
wrk.method = "POST"
wrk.body = '{"event":"meeting.started","event_ts":1739923527123,"payload":{"account_id":"bench","object":{"id":"85746065432","topic":"bench"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-zm-request-timestamp"] = "1739923528"
wrk.headers["x-zm-signature"] = "v0=4f90b2c1751bbd3d52a602a387446491b414ad3d09c7963b8ac2a64483a0e664"
