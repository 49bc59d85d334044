//! WebSocket upgrades pass through on routes that allow them, and only there.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn ws_echo_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A gateway with the WebSocket route `/ws` to `up`, then `more` routes.
async fn ws_gateway(up: std::net::SocketAddr, more: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"
[[route]]
name = "ws"
path = "/ws"
upstream = "http://{up}"
authenticate = "none"
websocket = true
{more}"#
    ))
    .await
}

async fn connect(
    gw: &TestGateway,
    path: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let stream = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    let url = format!("wss://localhost:{}{path}", gw.gw.tls_addr.port());
    tokio_tungstenite::client_async(url, stream)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let up = ws_echo_upstream().await;
    let gw = ws_gateway(
        up,
        &format!(
            r#"
[[route]]
name = "no-ws"
path = "/plain"
upstream = "http://{up}"
authenticate = "none"
"#
        ),
    )
    .await;
    let mut ws = connect(&gw, "/ws")
        .await
        .expect("upgrade through the gateway");
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &[0u8, 1, 2, 255]
    );
    ws.close(None).await.unwrap();

    // Without `websocket = true` the Upgrade header is hop-by-hop and dropped.
    assert!(connect(&gw, "/plain").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_on_a_keep_alive_connection_after_it_was_parked() {
    // The stream is handed over by the gateway's own HTTP/1.1 driver
    // (src/server/h1.rs), not hyper's upgrade machinery: check it on a
    // connection that served a request and was parked first, with frames
    // larger than any buffer on the way.
    let up = ws_echo_upstream().await;
    let echo = echo_upstream().await;
    let gw = ws_gateway(
        up,
        &format!(
            r#"
[[route]]
name = "echo"
path = "/echo"
upstream = "http://{echo}"
authenticate = "none"
"#
        ),
    )
    .await;
    let mut stream = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    wait_parked(&gw, 1.0).await;
    let url = format!("wss://localhost:{}/ws", gw.gw.tls_addr.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade on the parked connection");
    assert_eq!(resp.status(), 101);
    wait_parked(&gw, 0.0).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
        ws.send(Message::binary(big.clone())).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_data().as_ref(), big.as_slice());
    }
    ws.close(None).await.unwrap();
}
