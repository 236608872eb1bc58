//! A minimal keep-alive HTTP/1.1 client for the HTTP door: one connection, one request at a
//! time, `GET` only, responses framed by `Content-Length`. A general client (reqwest) costs the
//! pinned client core about twice what the axum server spends per request, so the bench would
//! measure itself; this one costs little more than the two system calls.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// The parts of a response head the bench needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Bytes of the head, including the blank line.
    pub len: usize,
    /// `Content-Length` (0 when absent: the servers under test always send it for bodies).
    pub content_length: usize,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Parses a response head at the start of `buf`: `Ok(None)` while incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err("response head too long".into())
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not an HTTP/1 response: {status_line}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {status_line}"))?;
    let mut head = Head {
        status,
        len: end + 4,
        content_length: 0,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line: {line}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().map_err(|_| format!("bad content-length: {value}"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("unsupported transfer-encoding: {value}"));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            head.close = true;
        }
    }
    Ok(Some(head))
}

/// One keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects with `TCP_NODELAY`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            out: Vec::with_capacity(2048),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `GET target` with `headers` (name, value) and reads the whole response; returns its
    /// status and whether the connection can be used again.
    pub async fn get<'h>(
        &mut self,
        target: &str,
        headers: impl IntoIterator<Item = &'h (&'h str, &'h str)>,
    ) -> Result<(u16, bool), String> {
        self.out.clear();
        self.out.extend_from_slice(b"GET ");
        self.out.extend_from_slice(target.as_bytes());
        self.out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b": ");
            self.out.extend_from_slice(value.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| format!("write: {}", e.kind()))?;

        self.buf.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            self.read_more().await?;
        };
        let total = head.len + head.content_length;
        while self.buf.len() < total {
            self.read_more().await?;
        }
        if self.buf.len() > total {
            return Err("unexpected bytes after the response".into());
        }
        Ok((head.status, !head.close))
    }

    async fn read_more(&mut self) -> Result<(), String> {
        self.buf.reserve(4096);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {}", e.kind())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_heads_only() {
        let r = b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nContent-Length: 12\r\n\r\n{\"a\":\"bcd\"}x";
        let head = parse_head(r).unwrap().unwrap();
        assert_eq!(head.status, 401);
        assert_eq!(head.content_length, 12);
        assert_eq!(&r[head.len..], b"{\"a\":\"bcd\"}x");
        assert!(!head.close);
        assert_eq!(parse_head(&r[..20]).unwrap(), None);
    }

    #[test]
    fn notices_close_and_refuses_chunking_and_garbage() {
        let close = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(close.close);
        assert_eq!(close.content_length, 0);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn keeps_the_connection_across_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, super::super::noop::router()).await });
        let mut conn = Connection::connect(addr).await.unwrap();
        for _ in 0..3 {
            assert_eq!(conn.get("/x", &[("host", "h"), ("a", "b")]).await.unwrap(), (200, true));
        }
    }
}
