//! Listener limits (`limits:`) under attack: slow and silent connections closed within the
//! configured timeout on every listener, one listener's full cap leaving the gRPC door
//! answering under a low file limit, and HTTP/2 streams past the cap refused with the server's
//! memory bounded.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn hs_token() -> String {
    sign(
        SECRET.as_bytes(),
        jsonwebtoken::Algorithm::HS256,
        None,
        serde_json::json!({"iss": "legacy", "sub": "alice", "exp": now() + 600}),
    )
}

const PROVIDERS: &str = "  - { name: legacy, issuer: legacy, hmac_secret: { file: hs.secret } }\n";

/// How long until the server closes `stream` (reads return 0 or fail), bounded by `limit`;
/// `None` when it is still open then. Bytes the server sends meanwhile are read and dropped.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if start.elapsed() >= limit {
                    return None;
                }
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

#[tokio::test]
async fn slow_and_silent_connections_are_closed_within_the_timeouts_on_every_listener() {
    bounded(Duration::from_secs(60), async {
        let text = format!(
            "listen: {{ grpc: \"127.0.0.1:0\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\", introspection: \"127.0.0.1:0\" }}\nproviders:\n{PROVIDERS}introspection:\n  enabled: true\n  clients: [{{ id: rs, secret_file: hs.secret }}]\nlimits: {{ header_read_timeout: 1s, idle_timeout: 3s, http2_keepalive_interval: 1s, http2_keepalive_timeout: 1s }}\n"
        );
        let gate = Gatekeeper::start_text(tempfile::tempdir().unwrap(), &text, &[("hs.secret", SECRET.as_bytes())]).await;
        let listeners = [
            ("grpc", gate.grpc_addr),
            ("http", gate.http_addr),
            ("admin", gate.admin_addr),
            ("introspection", gate.introspection_addr.unwrap()),
        ];
        let limit = Duration::from_secs(5);
        let mut tasks = Vec::new();
        for (name, addr) in listeners {
            // Nothing at all: no HTTP/1 head, no HTTP/2 preface.
            tasks.push(tokio::task::spawn_blocking(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                (name, "silent", closed_within(&mut s, limit))
            }));
            // Half a request head (HTTP/1) or connection preface (the HTTP/2-only gRPC and admin
            // listeners), a byte every 200 ms: each byte would reset an idle timer.
            tasks.push(tokio::task::spawn_blocking(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let head: &[u8] = match name {
                    "grpc" | "admin" => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                    _ => b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                };
                let start = Instant::now();
                for byte in head {
                    if s.write_all(&[*byte]).is_err() {
                        return (name, "half head", Some(start.elapsed()));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    if start.elapsed() > limit {
                        return (name, "half head", None);
                    }
                }
                (name, "half head", closed_within(&mut s, limit.saturating_sub(start.elapsed())))
            }));
        }
        // An HTTP/1 connection kept alive after one answer, then silent.
        let http = gate.http_addr;
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(http).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            ("http", "kept alive", closed_within(&mut s, limit))
        }));
        for t in tasks {
            let (listener, how, closed) = t.await.unwrap();
            let took = closed.unwrap_or_else(|| panic!("{listener}: a {how} connection was still open after {limit:?}"));
            assert!(took >= Duration::from_millis(500), "{listener}: {how} closed after {took:?}, before the timeout");
        }
        let m = scrape(gate.http_addr).await;
        for listener in ["grpc", "http", "admin", "introspection"] {
            let key = format!("jwtgate_connections_refused_total{{listener=\"{listener}\",reason=\"header_timeout\"}}");
            assert!(m.get(&key).copied().unwrap_or_default() >= 1.0, "{key} not counted: {m:?}");
        }
        // The scrape's own connection is the only one open on the HTTP door.
        assert_eq!(m["jwtgate_connections{listener=\"http\"}"], 1.0);
    })
    .await;
}

#[tokio::test]
async fn a_connection_that_stops_answering_pings_is_dropped_as_idle() {
    bounded(Duration::from_secs(30), async {
        let gate = Gatekeeper::start(
            &format!("{PROVIDERS}limits: {{ header_read_timeout: 1s, idle_timeout: 3s, http2_keepalive_interval: 1s, http2_keepalive_timeout: 1s }}\n"),
            &[("hs.secret", SECRET.as_bytes())],
        )
        .await;
        let addr = gate.grpc_addr;
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            // A preface and empty SETTINGS, then nothing: never an ACK, never a PING answer.
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
            closed_within(&mut s, Duration::from_secs(10))
        })
        .await
        .unwrap();
        let took = closed.expect("an HTTP/2 connection that answers nothing was kept for 10 s");
        assert!(took <= Duration::from_secs(5), "closed after {took:?}");
    })
    .await;
}

/// `jwtgate serve` under a file limit of 256 (soft and hard), with the default limits.
fn serve_with_256_files(dir: &std::path::Path) -> ServeProcess {
    std::fs::write(dir.join("hs.secret"), SECRET).unwrap();
    let file = dir.join("jwtgate.yaml");
    std::fs::write(&file, config_text(PROVIDERS)).unwrap();
    ServeProcess::start_under(&["bash", "-c", "ulimit -n 256 && exec \"$0\" \"$@\""], &file, &[])
}

#[tokio::test]
async fn the_grpc_door_answers_while_300_idle_sockets_fill_the_http_door() {
    bounded(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let served = serve_with_256_files(dir.path());
        served.wait_ready().await;
        let limits = served.wait_for("listener limits");
        assert_eq!(limits["fields"]["files"], 256);
        let http: SocketAddr = served.addr("http").parse().unwrap();
        let mut idle = Vec::new();
        for _ in 0..300 {
            match TcpStream::connect(http) {
                Ok(s) => idle.push(s),
                Err(e) => panic!("connect: {e}"),
            }
        }
        // Give the accept loop time to take (and close) the excess.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let token = hs_token();
        let mut client = served.client().await;
        for _ in 0..20 {
            let answer = tokio::time::timeout(Duration::from_secs(3), check(&mut client, bearer(&token)))
                .await
                .expect("gRPC Check timed out while the HTTP door was flooded")
                .expect("gRPC Check failed");
            assert_eq!(answer.grpc_code, 0);
        }
        // A fresh gRPC connection is taken too.
        let mut fresh = served.client().await;
        assert_eq!(check(&mut fresh, bearer(&token)).await.unwrap().grpc_code, 0);
        let still_open = idle
            .iter_mut()
            .map(|s| {
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 1];
                matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .filter(|open| *open)
            .count();
        assert!(
            still_open <= 64,
            "{still_open} of 300 sockets kept open by the HTTP door"
        );
        drop(idle);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = scrape(&served.addr("http")).await;
        let refused = m["jwtgate_connections_refused_total{listener=\"http\",reason=\"max_connections\"}"];
        assert!(refused >= 236.0, "refused at the cap: {refused}");
    })
    .await;
}

/// HPACK for a gRPC Check's request headers, every field a literal without indexing (so the
/// same block serves every stream): `:method POST`, `:scheme http`, `:path`, `:authority`,
/// `content-type`, `te`.
fn check_headers_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86];
    let lit_indexed_name = |b: &mut Vec<u8>, index: u8, value: &[u8]| {
        b.push(index);
        b.push(u8::try_from(value.len()).unwrap());
        b.extend_from_slice(value);
    };
    lit_indexed_name(&mut b, 0x04, b"/envoy.service.auth.v3.Authorization/Check");
    lit_indexed_name(&mut b, 0x01, b"localhost");
    for (name, value) in [(&b"content-type"[..], &b"application/grpc"[..]), (b"te", b"trailers")] {
        b.push(0x00);
        b.push(u8::try_from(name.len()).unwrap());
        b.extend_from_slice(name);
        b.push(u8::try_from(value.len()).unwrap());
        b.extend_from_slice(value);
    }
    b
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn twenty_thousand_streams_on_one_connection_are_refused_past_the_cap_with_memory_bounded() {
    bounded(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hs.secret"), SECRET).unwrap();
        let file = dir.path().join("jwtgate.yaml");
        std::fs::write(
            &file,
            config_text(&format!("{PROVIDERS}limits: {{ grpc_max_concurrent_streams: 100 }}\n")),
        )
        .unwrap();
        let served = ServeProcess::start(&file, &[]);
        served.wait_ready().await;
        let pid = served.pid();
        let before = rss_kib(pid);
        let addr: SocketAddr = served.addr("grpc").parse().unwrap();
        let (refused, goaway, after) = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
            s.write_all(&frame(4, 0, 0, &[])).unwrap();
            let mut reader = s.try_clone().unwrap();
            let counted = std::thread::spawn(move || {
                let (mut refused, mut goaway) = (0u32, false);
                let mut head = [0u8; 9];
                reader.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                while reader.read_exact(&mut head).is_ok() {
                    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                    let mut payload = vec![0u8; len];
                    if reader.read_exact(&mut payload).is_err() {
                        break;
                    }
                    match head[3] {
                        // RST_STREAM: REFUSED_STREAM (7).
                        3 if payload == [0, 0, 0, 7] => refused += 1,
                        7 => goaway = true,
                        _ => {}
                    }
                }
                (refused, goaway)
            });
            s.write_all(&frame(4, 1, 0, &[])).unwrap();
            let block = check_headers_block();
            let mut sent = 0u32;
            'send: for chunk in 0..200u32 {
                let mut batch = Vec::new();
                for i in 0..100u32 {
                    let stream = 2 * (chunk * 100 + i) + 1;
                    batch.extend_from_slice(&frame(1, 0x4, stream, &block));
                }
                if s.write_all(&batch).is_err() {
                    break 'send;
                }
                sent += 100;
            }
            std::thread::sleep(Duration::from_secs(1));
            let after = rss_kib(pid);
            let _ = sent;
            let (refused, goaway) = counted.join().unwrap();
            (refused, goaway, after)
        })
        .await
        .unwrap();
        // Past 100 open streams, each new one is refused, until h2 gives up on a peer that
        // keeps causing refusals and sends GOAWAY.
        assert!(refused >= 900, "streams refused: {refused} (GOAWAY: {goaway})");
        let grown_mib = after.saturating_sub(before) / 1024;
        assert!(
            grown_mib < 32,
            "RSS grew by {grown_mib} MiB ({before} KiB -> {after} KiB)"
        );
        // The door still answers on a new connection.
        let mut client = served.client().await;
        assert_eq!(check(&mut client, bearer(&hs_token())).await.unwrap().grpc_code, 0);
        eprintln!("20,000 streams: {refused} refused, GOAWAY {goaway}, RSS {before} KiB -> {after} KiB");
    })
    .await;
}

/// The process's CPU time so far, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn out_of_files_the_accept_loop_pauses_instead_of_spinning_and_warns_once() {
    bounded(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hs.secret"), SECRET).unwrap();
        let file = dir.path().join("jwtgate.yaml");
        // Caps above what 256 files allow: accept itself runs out of descriptors.
        let config = format!("{PROVIDERS}limits: {{ max_connections: {{ http: 1000 }} }}\n");
        std::fs::write(&file, config_text(&config)).unwrap();
        let served = ServeProcess::start_under(&["bash", "-c", "ulimit -n 256 && exec \"$0\" \"$@\""], &file, &[]);
        served.wait_ready().await;
        let warned = served.wait_for("limits.max_connections: the listeners' caps add up to more than the process's file limit allows (less 128 kept for other files): a flood on one listener can still take the descriptors the others need");
        assert_eq!(warned["level"], "WARN");
        let http: SocketAddr = served.addr("http").parse().unwrap();
        let mut idle: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(http).ok()).collect();
        // One waiting on the gRPC port too: its accept fails for want of a descriptor (tonic's
        // own loop retried that at once, at 78-100 % of a core).
        idle.extend(TcpStream::connect(served.addr("grpc")).ok());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pid = served.pid();
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = cpu_ticks(pid) - before;
        // Spinning on EMFILE used 78-100 % of a core: about 160-200 ticks in 2 s.
        assert!(used < 40, "{used} CPU ticks in 2 s while out of files");
        let line = served.wait_for_prefix("accept failed: ");
        assert_eq!(line["level"], "WARN");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let m = scrape(&served.addr("http")).await;
        assert!(m["jwtgate_connections_refused_total{listener=\"http\",reason=\"out_of_files\"}"] >= 1.0);
    })
    .await;
}

/// What a raw HTTP/2 client saw from the server: a GOAWAY, `HEADERS` frames, and when the
/// connection closed (within `limit`, or `None`).
#[derive(Debug, Default)]
struct Seen {
    goaway: bool,
    headers: u32,
    closed_after: Option<Duration>,
}

/// Connects to `addr`, sends the preface and `settings` (id, value pairs), then `after_settings`
/// frames, and from then on only answers the server's PINGs and SETTINGS, for at most `limit`.
fn h2_answering_pings(addr: SocketAddr, settings: &[(u16, u32)], after_settings: &[Vec<u8>], limit: Duration) -> Seen {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut payload = Vec::new();
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(4, 0, 0, &payload)).unwrap();
    for f in after_settings {
        s.write_all(f).unwrap();
    }
    let start = Instant::now();
    let mut seen = Seen::default();
    let mut head = [0u8; 9];
    loop {
        let Some(left) = limit.checked_sub(start.elapsed()) else {
            return seen;
        };
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        if s.read_exact(&mut head).is_err() {
            if start.elapsed() < limit {
                seen.closed_after = Some(start.elapsed());
            }
            return seen;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            seen.closed_after = Some(start.elapsed());
            return seen;
        }
        match (head[3], head[4] & 1) {
            (1, _) => seen.headers += 1,
            (4, 0) => {
                let _ = s.write_all(&frame(4, 1, 0, &[]));
            }
            (6, 0) => {
                let _ = s.write_all(&frame(6, 1, 0, &body));
            }
            (7, _) => seen.goaway = true,
            _ => {}
        }
    }
}

const SHORT_LIMITS: &str = "limits: { header_read_timeout: 1s, idle_timeout: 3s, http2_keepalive_interval: 1s, http2_keepalive_timeout: 1s, request_timeout: 2s }\n";

#[tokio::test]
async fn an_http2_connection_that_answers_pings_but_asks_nothing_is_closed_as_idle() {
    bounded(Duration::from_secs(30), async {
        let gate = Gatekeeper::start(
            &format!("{PROVIDERS}{SHORT_LIMITS}"),
            &[("hs.secret", SECRET.as_bytes())],
        )
        .await;
        let addrs = [gate.grpc_addr, gate.admin_addr, gate.http_addr];
        let seen: Vec<Seen> = futures_join(addrs.map(|addr| {
            tokio::task::spawn_blocking(move || h2_answering_pings(addr, &[], &[], Duration::from_secs(10)))
        }))
        .await;
        for (addr, seen) in addrs.iter().zip(&seen) {
            let took = seen
                .closed_after
                .unwrap_or_else(|| panic!("{addr}: a ping-answering idle connection stayed 10 s: {seen:?}"));
            assert!(seen.goaway, "{addr}: closed without GOAWAY: {seen:?}");
            assert!(
                took >= Duration::from_secs(2) && took < Duration::from_secs(7),
                "{addr}: closed after {took:?}"
            );
        }
        let m = scrape(gate.http_addr).await;
        assert!(m["jwtgate_connections_refused_total{listener=\"grpc\",reason=\"idle_timeout\"}"] >= 1.0);
    })
    .await;
}

async fn futures_join<T: Send + 'static>(tasks: [tokio::task::JoinHandle<T>; 3]) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A gRPC `Check` with an empty `CheckRequest`: HEADERS, then one DATA frame ending the stream.
fn empty_check(stream: u32) -> Vec<Vec<u8>> {
    vec![
        frame(1, 0x4, stream, &check_headers_block()),
        frame(0, 0x1, stream, &[0, 0, 0, 0, 0]),
    ]
}

#[tokio::test]
async fn streams_whose_answers_are_never_read_do_not_keep_a_connection() {
    bounded(Duration::from_secs(40), async {
        let gate = Gatekeeper::start(
            &format!("{PROVIDERS}{SHORT_LIMITS}"),
            &[("hs.secret", SECRET.as_bytes())],
        )
        .await;
        let addr = gate.grpc_addr;
        let checks: Vec<Vec<u8>> = (0..50u32).flat_map(|i| empty_check(2 * i + 1)).collect();
        // SETTINGS_INITIAL_WINDOW_SIZE (4) = 0: no answer's DATA can ever be sent.
        let seen =
            tokio::task::spawn_blocking(move || h2_answering_pings(addr, &[(4, 0)], &checks, Duration::from_secs(25)))
                .await
                .unwrap();
        assert!(seen.headers >= 1, "no answer started: {seen:?}");
        let took = seen
            .closed_after
            .unwrap_or_else(|| panic!("a connection holding unread answers stayed 25 s: {seen:?}"));
        // idle_timeout (3 s), then GOAWAY and 10 s for the streams to finish.
        assert!(took < Duration::from_secs(20), "closed after {took:?}");
        assert!(seen.goaway, "{seen:?}");
    })
    .await;
}

#[tokio::test]
async fn a_request_body_dripped_a_byte_at_a_time_is_cut_at_request_timeout() {
    bounded(Duration::from_secs(30), async {
        let text = format!(
            "listen: {{ grpc: \"127.0.0.1:0\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\", introspection: \"127.0.0.1:0\" }}\nproviders:\n{PROVIDERS}introspection:\n  enabled: true\n  clients: [{{ id: rs, secret_file: hs.secret }}]\n{SHORT_LIMITS}"
        );
        let gate = Gatekeeper::start_text(tempfile::tempdir().unwrap(), &text, &[("hs.secret", SECRET.as_bytes())]).await;
        let addr = gate.introspection_addr.unwrap();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /introspect HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20000\r\n\r\n").unwrap();
            s.set_nonblocking(true).unwrap();
            let start = Instant::now();
            let mut got = Vec::new();
            while start.elapsed() < Duration::from_secs(10) {
                let _ = s.write_all(b"t");
                let mut buf = [0u8; 1024];
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
                if !got.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            (start.elapsed(), String::from_utf8_lossy(&got).into_owned())
        })
        .await
        .unwrap();
        let (took, text) = answer;
        assert!(text.starts_with("HTTP/1.1 408"), "after {took:?}: {text:?}");
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
        let m = scrape(gate.http_addr).await;
        assert!(m["jwtgate_connections_refused_total{listener=\"introspection\",reason=\"request_timeout\"}"] >= 1.0);
    })
    .await;
}
