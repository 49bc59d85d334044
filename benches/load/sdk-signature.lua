-- A Meeting SDK signature request answered by the gateway.
wrk.method = "POST"
wrk.body = '{"meetingNumber":"85746065432","role":0}'
wrk.headers["Content-Type"] = "application/json"
