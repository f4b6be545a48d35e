//! Rate limits (issue 5): per credential requests and per tenant spans trip at the configured
//! rate with 429 + Retry-After (HTTP) or RESOURCE_EXHAUSTED + RetryInfo (gRPC), and recover.

mod common;

use std::time::Duration;

use common::*;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_trip_at_the_configured_rate_and_recover() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(
        tmp,
        "[rate_limits]\nrequests_per_sec = 5\nspans_per_sec = 100\nbytes_per_sec = 0\n",
        &[],
    );
    let c = srv.http_client();
    let tags = || {
        c.get(format!("{}/api/search/tags", srv.api))
            .bearer_auth(srv.token())
            .send()
    };
    // Requests per credential: a burst of 5 passes, then 429 with Retry-After.
    let mut ok = 0;
    let mut retry_after = None;
    for _ in 0..12 {
        let r = tags().await.unwrap();
        if r.status() == 200 {
            ok += 1;
        } else {
            assert_eq!(r.status(), 429);
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.text().await.unwrap();
            assert!(
                body.contains("5 requests per second per credential"),
                "{body}"
            );
        }
    }
    // The burst (5), and a few more refilled while the loop ran on a busy machine.
    assert!((5..=9).contains(&ok), "{ok} passed");
    assert_eq!(retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(tags().await.unwrap().status(), 200, "recovered");

    // Spans per tenant: 60 + 60 in a second is over 100.
    let send = |n: usize| {
        let (req, _) = request("checkout", n);
        c.post(format!("{}/v1/traces", srv.http))
            .bearer_auth(srv.token())
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(send(60).await.unwrap().status(), 200);
    let r = send(60).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let st = tv_server::error::RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert!(
        st.message.contains("100 spans per second per tenant"),
        "{}",
        st.message
    );

    // gRPC: RESOURCE_EXHAUSTED with a RetryInfo detail, which OTLP exporters honour.
    let mut grpc = srv.grpc_client().await;
    let mut req = tonic::Request::new(request("checkout", 95).0);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", srv.token()).parse().unwrap(),
    );
    let err = grpc.export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    let details = tv_server::error::RpcStatus::decode(err.details()).unwrap();
    let retry = details
        .details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.RetryInfo")
        .expect("RetryInfo detail");
    let info = tv_server::error::RetryInfo::decode(retry.value.as_slice()).unwrap();
    assert!(info.retry_delay.unwrap().seconds >= 1);

    // And it recovers.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(send(60).await.unwrap().status(), 200);
    let m = c
        .get(format!("{}/metrics", srv.api))
        .bearer_auth(srv.token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("tracevault_rate_limited_total{kind=\"requests\"}"),
        "{m}"
    );
    assert!(
        m.contains("tracevault_rate_limited_total{kind=\"spans\"}"),
        "{m}"
    );
}
