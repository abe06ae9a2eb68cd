//! A socket whose writes fail once they have made no progress for a set time: a peer that stops reading
//! would otherwise hold its task in a write forever, and with it everything queued for that task (RFC 6120
//! section 13.12 asks servers to bound the resources one connection can hold).
//!
//! It wraps the raw socket, under TLS, so the same deadline covers negotiation, the bound session, stream
//! errors and closing, whichever layer is writing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `S` whose writes, flushes and shutdowns fail with [`io::ErrorKind::TimedOut`] after `timeout` without
/// progress. Reads pass through untouched (idle reads are the session's ping's business).
#[derive(Debug)]
pub struct WriteDeadline<S> {
    io: S,
    timeout: Duration,
    /// Running while a write waits for the peer to read; reset by every write that goes through. Boxed so
    /// that the many sessions that are not blocked pay one pointer for it.
    stall: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    /// Wraps `io`; writes that make no progress for `timeout` fail.
    pub fn new(io: S, timeout: Duration) -> Self {
        WriteDeadline {
            io,
            timeout,
            stall: None,
        }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Passes a finished write through (progress: the deadline starts again); for a pending one, starts
    /// or checks the deadline.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stall = None;
            return outcome;
        }
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer has not read for the whole write deadline",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const DEADLINE: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_deadline() {
        let (near, _far) = tokio::io::duplex(64);
        let mut guarded = WriteDeadline::new(near, DEADLINE);
        let started = tokio::time::Instant::now();
        let error = tokio::time::timeout(Duration::from_secs(10), guarded.write_all(&[0; 1024]))
            .await
            .expect("the write ends by itself")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= DEADLINE);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut guarded = WriteDeadline::new(near, DEADLINE);
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            let mut total = 0;
            while total < 512 {
                // Pacing, not synchronisation: each read comes within the deadline, though the whole write
                // takes several deadlines.
                tokio::time::sleep(DEADLINE / 4).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        guarded.write_all(&[0; 512]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 512);
    }
}
