//! Corked writes for the gRPC connections: a connection's first write after a quiet spell waits
//! until the runtime has run the tasks that were already ready, so the responses those tasks
//! produce leave in one socket write instead of one per HTTP/2 frame.
//!
//! Why: every check runs in a task of its own (hyper spawns one per HTTP/2 stream) and hands its
//! response frames to the connection task, which tokio then runs next (its "LIFO slot"). When a
//! check costs tens of microseconds — a signature verification — the connection task therefore
//! wakes after each frame and writes it alone: measured 3.3 `writev` calls per cold RS256 check,
//! each waking the peer, about a fifth of the server's CPU. Corked, the connection task goes to
//! the back of the run queue once before writing (it wakes itself, which tokio treats as a
//! yield), the other ready checks finish first, and one write carries all their frames. With
//! nothing else ready the connection task is polled again at once, so an idle server adds one
//! task poll per write and no delay.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose writes wait for the ready tasks to run first; see the module docs.
#[derive(Debug)]
pub struct Corked<S> {
    inner: S,
    /// The current batch has already yielded once: write now.
    yielded: bool,
}

impl<S> Corked<S> {
    /// Wraps a connection.
    pub fn new(inner: S) -> Self {
        Self { inner, yielded: false }
    }

    /// `Ready` once this batch has yielded; the first call yields (wakes the task and returns
    /// `Pending`, which puts the task behind the tasks already ready to run).
    fn poll_cork(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        yield_once(&mut self.yielded, cx)
    }
}

/// `Pending` the first time (`yielded` false): the task wakes itself, which puts it at the back
/// of the run queue behind every task already ready; `Ready` once `yielded` is set. (Unlike
/// `tokio::task::yield_now`, which defers the task until the worker has nothing else to do.)
fn yield_once(yielded: &mut bool, cx: &mut Context<'_>) -> Poll<()> {
    if *yielded {
        Poll::Ready(())
    } else {
        *yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Corked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_cork(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Reported as not vectored, though the socket is: h2 then copies DATA payloads under 1 KiB
    /// into its write buffer instead of chaining them, and a chained payload forces a flush
    /// before the next frame — with the 256-byte threshold h2 uses for vectored I/O, each
    /// denial (≈ 300 bytes) left in a write of its own (measured 1.04 writes per bad-signature
    /// check against 0.01 per allowed one). One contiguous buffer also needs no `writev`.
    fn is_write_vectored(&self) -> bool {
        false
    }

    /// Flushing ends the batch: the next write yields again.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_ready() {
            self.yielded = false;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_pass_through_unchanged_in_both_directions() {
        let (a, b) = tokio::io::duplex(1024);
        let mut a = Corked::new(a);
        let mut b = Corked::new(b);
        a.write_all(b"ping").await.unwrap();
        a.flush().await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        b.write_all(b"pong").await.unwrap();
        b.flush().await.unwrap();
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_lets_the_ready_tasks_run_first() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut a = Corked::new(a);
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let order = order.clone();
            tokio::spawn(async move {
                a.write_all(b"x").await.unwrap();
                order.lock().unwrap().push("written");
                a.flush().await.unwrap();
                a
            })
        };
        let other = {
            let order = order.clone();
            tokio::spawn(async move { order.lock().unwrap().push("other task ran") })
        };
        let mut a = writer.await.unwrap();
        other.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["other task ran", "written"]);
        // After a flush the next write yields again, and bytes still arrive.
        a.write_all(b"y").await.unwrap();
        a.flush().await.unwrap();
        let mut got = [0u8; 2];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"xy");
    }

    /// Counts the writes that reach the "socket"; reports itself vectored, as a TCP stream does.
    struct CountingWrites<S> {
        inner: S,
        writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for CountingWrites<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for CountingWrites<S> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write(cx, buf);
            if written.is_ready() {
                self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            written
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            if written.is_ready() {
                self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            written
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// The regression behind the bad-signature gap: h2 chains a DATA payload of 256 bytes or more
    /// when the connection says it is vectored, and a chained payload flushes before the next
    /// frame — so denials (≈ 300 bytes) left one write each. Eight such responses queued
    /// together must leave in one write (at most two), not eight.
    #[tokio::test(flavor = "current_thread")]
    async fn responses_of_a_denials_size_queued_together_leave_in_one_write() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        const STREAMS: usize = 8;
        const BODY: usize = 300;

        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let before_responses = Arc::new(AtomicUsize::new(usize::MAX));
        let server = {
            let writes = writes.clone();
            let before_responses = before_responses.clone();
            tokio::spawn(async move {
                let io = Corked::new(CountingWrites {
                    inner: server_io,
                    writes: writes.clone(),
                });
                let mut conn = h2::server::handshake(io).await.unwrap();
                let mut pending = Vec::new();
                while pending.len() < STREAMS {
                    let (_request, respond) = conn.accept().await.unwrap().unwrap();
                    pending.push(respond);
                }
                before_responses.store(writes.load(Ordering::SeqCst), Ordering::SeqCst);
                for mut respond in pending {
                    let mut body = respond.send_response(http::Response::new(()), false).unwrap();
                    body.send_data(bytes::Bytes::from(vec![b'x'; BODY]), true).unwrap();
                }
                while conn.accept().await.is_some() {}
            })
        };

        let (client, connection) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let mut responses = Vec::new();
        for _ in 0..STREAMS {
            let request = http::Request::get("http://jwtgate/check").body(()).unwrap();
            let (response, _) = client.send_request(request, true).unwrap();
            responses.push(response);
        }
        for response in responses {
            let mut body = response.await.unwrap().into_body();
            let mut received = 0;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                received += chunk.len();
                body.flow_control().release_capacity(chunk.len()).unwrap();
            }
            assert_eq!(received, BODY);
        }
        let response_writes = writes.load(Ordering::SeqCst) - before_responses.load(Ordering::SeqCst);
        drop(client);
        server.await.unwrap();
        assert!(
            (1..=2).contains(&response_writes),
            "{STREAMS} responses of {BODY} bytes took {response_writes} writes"
        );
    }
}
