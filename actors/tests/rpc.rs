//! RPC server and client over real TCP: typed round trips, pipelining, unknown opcodes,
//! garbage on the socket, and reconnects after the server comes back.

use std::time::Duration;

use actors::{serve, ClientOptions, Router, RpcClient, ServerOptions};
use protocol::pd::{AllocateIds, ListNodes};
use protocol::range_rpc::{Batch, Fetch, FetchResponse};
use protocol::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn router() -> Router {
    let mut router = Router::new();
    router.route(|req: AllocateIds, _ctx| async move {
        if req.count == 0 {
            return Err(protocol::RpcError::new(
                ErrorCode::InvalidArgument,
                "count is zero",
            ));
        }
        // Answer slowly for odd counts so responses overtake each other.
        if req.count % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(req.count * 10)
    });
    router
}

/// The request every test here sends: `count` ids under key "k".
fn allocate(count: u64) -> AllocateIds {
    AllocateIds {
        key: "k".into(),
        count,
    }
}

#[actix_rt::test]
async fn typed_calls_pipeline_and_errors() {
    let addr = serve("127.0.0.1:0", router(), ServerOptions::default())
        .await
        .unwrap();
    let client = RpcClient::new(addr.to_string());
    let calls = (1..=200u64).map(|n| {
        let client = client.clone();
        async move { (n, client.call(allocate(n)).await) }
    });
    for (n, result) in futures::future::join_all(calls).await {
        assert_eq!(result.unwrap(), n * 10);
    }
    let err = client.call(allocate(0)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let err = client.call(ListNodes {}).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownOpcode);
    // The connection still serves after errors.
    assert_eq!(client.call(allocate(2)).await.unwrap(), 20);
}

#[actix_rt::test]
async fn garbage_closes_only_that_connection() {
    let opts = ServerOptions { max_frame: 1024 };
    let addr = serve("127.0.0.1:0", router(), opts).await.unwrap();
    let good = RpcClient::new(addr.to_string());
    assert_eq!(good.call(allocate(2)).await.unwrap(), 20);

    for garbage in [
        &[0xffu8, 0xff, 0xff, 0xff, 1, 2, 3][..],
        &[0, 0, 0, 3, 9, 9, 9][..],
    ] {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        raw.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        // The server answers with one error frame and closes.
        tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.len() > 4, "expected an error frame before the close");
    }
    assert_eq!(good.call(allocate(4)).await.unwrap(), 40);
}

#[actix_rt::test]
async fn unreachable_peer_fails_fast_then_times_out_cleanly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = RpcClient::with_options(
        addr.to_string(),
        ClientOptions {
            call_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let err = client.call(allocate(2)).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // The server appears at that address: the client reconnects on its own.
    let router = router();
    serve(&addr.to_string(), router, ServerOptions::default())
        .await
        .unwrap();
    let mut answer = None;
    for _ in 0..50 {
        if let Ok(v) = client.call(allocate(2)).await {
            answer = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, Some(20));
}

/// A response too large for a frame comes back as a `FrameTooLarge` error for that call only,
/// and a request too large for one fails at once: before, the server's write failed and closed
/// the connection under every other call on it, and the client dropped the request and let
/// the call time out.
#[actix_rt::test]
async fn frames_too_large_fail_their_call_only() {
    let mut router = router();
    router.route(|req: Fetch, _ctx| async move {
        Ok(FetchResponse {
            batches: vec![Batch {
                offset: 0,
                count: 1,
                crc: 0,
                payload: bytes::Bytes::from(vec![0u8; req.max_bytes as usize]),
            }],
            readable_end: 1,
            sealed_end: None,
        })
    });
    let addr = serve("127.0.0.1:0", router, ServerOptions { max_frame: 4096 })
        .await
        .unwrap();
    let client = actors::RpcClient::with_options(
        addr.to_string(),
        ClientOptions {
            max_frame: 4096,
            ..ClientOptions::default()
        },
    );
    let fetch = |max_bytes| Fetch {
        stream_id: 1,
        index: 0,
        offset: 0,
        end: 1,
        max_bytes,
    };
    // A slow call in flight on the same connection while the large answer is refused.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.call(allocate(3)).await })
    };
    let err = client.call(fetch(10_000)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::FrameTooLarge, "{err}");
    assert_eq!(slow.await.unwrap().unwrap(), 30);
    assert_eq!(client.call(fetch(100)).await.unwrap().batches.len(), 1);
    // A request over the client's own limit never leaves it.
    let err = client
        .call(AllocateIds {
            key: "k".repeat(10_000),
            count: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::FrameTooLarge, "{err}");
    assert_eq!(client.call(allocate(2)).await.unwrap(), 20);
}
