//! HTTP connection limits (SPEC §4 "Abuse limits"): slow request heads, idle
//! keep-alives and the connection cap.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::eventually::POLL;
use crate::support::{spawn_app_with, within, TestApp};
use locallife::domain::Role;

const WAIT: Duration = Duration::from_secs(10);

async fn tcp(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the connection in time");
    seen
}

/// Sends one keep-alive request and reads its whole answer (bodies here are small and
/// carry a content-length). Empty when the connection was closed instead.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return String::new(),
                Ok(n) => n,
            };
            seen.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if seen.len() >= end + 4 + length {
                    return text.into_owned();
                }
            }
        }
    })
    .await
    .expect("no answer in time")
}

async fn counter(app: &TestApp, line_start: &str) -> u64 {
    app.metrics_text()
        .await
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn slow_request_heads_are_closed_after_the_header_timeout() {
    let app = spawn_app_with(|env| {
        env.insert("HTTP_HEADER_READ_TIMEOUT".into(), "1s".into());
    })
    .await;
    // Slowloris: many connections each holding half a request head, plus one that says
    // nothing at all and one that trickles a byte at a time.
    let mut half_sent = Vec::new();
    for _ in 0..50 {
        let mut stream = tcp(&app).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
            .await
            .unwrap();
        half_sent.push(stream);
    }
    let mut silent = tcp(&app).await;
    let mut trickle = tcp(&app).await;
    let trickled = async {
        for byte in b"GET /healthz HTTP/1.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let (trickle_refused, ()) = tokio::join!(trickled, async {
        for stream in &mut half_sent {
            let answer = until_closed(stream, WAIT).await;
            assert!(answer.is_empty(), "a half-sent head got an answer");
        }
        until_closed(&mut silent, WAIT).await;
    });
    assert!(
        trickle_refused,
        "a head trickled over 4 s was still being read"
    );
    assert!(
        counter(
            &app,
            "locallife_http_connections_timed_out_total{reason=\"headers\"}"
        )
        .await
            >= 51
    );
    // The replica still answers.
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn idle_keep_alives_close_after_the_idle_timeout_and_not_before_the_next_request() {
    let app = spawn_app_with(|env| {
        env.insert("HTTP_HEADER_READ_TIMEOUT".into(), "1s".into());
        env.insert("HTTP_IDLE_TIMEOUT".into(), "3s".into());
    })
    .await;
    let mut stream = tcp(&app).await;
    assert!(request(&mut stream, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    // Waiting longer than the header timeout between requests is fine: the clock for a
    // request head starts with its first byte.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(request(&mut stream, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    let idle_since = std::time::Instant::now();
    let rest = until_closed(&mut stream, WAIT).await;
    assert!(rest.is_empty());
    let idled = idle_since.elapsed();
    assert!(
        idled >= Duration::from_millis(2500),
        "closed after {idled:?}, before the idle timeout"
    );
    assert!(
        counter(
            &app,
            "locallife_http_connections_timed_out_total{reason=\"idle\"}"
        )
        .await
            >= 1
    );
}

#[tokio::test]
async fn websockets_outlive_the_http_timeouts() {
    let app = spawn_app_with(|env| {
        env.insert("HTTP_HEADER_READ_TIMEOUT".into(), "1s".into());
        env.insert("HTTP_IDLE_TIMEOUT".into(), "1s".into());
    })
    .await;
    let (_, token) = app.socket_user(Role::Platform).await;
    let mut ws = app.ws_ok(&token).await;
    // Quiet for longer than both HTTP timeouts: the socket stays open and answers.
    assert!(ws.nothing_within(Duration::from_secs(3)).await);
    ws.roundtrip().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_at_once_and_served_again_below_it() {
    let app = spawn_app_with(|env| {
        env.insert("MAX_CONNECTIONS".into(), "5".into());
    })
    .await;
    // Fill the replica up. The test's own HTTP client may already hold a pooled
    // connection, so count: every connection below the cap is served and kept alive.
    let mut held = Vec::new();
    loop {
        let mut stream = tcp(&app).await;
        if !request(&mut stream, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        held.push(stream);
        assert!(held.len() <= 5, "more than MAX_CONNECTIONS were served");
    }
    assert!(held.len() >= 4, "only {} served", held.len());
    // Over the cap a connection is answered 503 and closed without the server waiting
    // on it: these send nothing at all.
    let started = std::time::Instant::now();
    let mut over = Vec::new();
    for _ in 0..20 {
        let mut stream = tcp(&app).await;
        over.push(String::from_utf8(until_closed(&mut stream, WAIT).await).unwrap());
    }
    for answer in &over {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"code\":\"overloaded\""), "{answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals took {:?}",
        started.elapsed()
    );
    // A held connection still works, and one going away frees a place.
    assert!(request(&mut held[0], "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    held.pop();
    let served = within(WAIT, POLL, async || {
        let mut stream = tcp(&app).await;
        let answer = request(&mut stream, "/healthz").await;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    assert!(served.is_some(), "no place freed after a connection closed");
    assert!(
        counter(
            &app,
            "locallife_http_connections_refused_total{cap=\"total\"}"
        )
        .await
            >= 20
    );
}
