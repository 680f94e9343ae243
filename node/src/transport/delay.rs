//! A delaying wrapper for stream transports (memory, TCP), for tests and benchmarks: `tc netem`
//! is not available on our machines, so latency is injected in user space.
//!
//! [`wrap`] maps a transport's raw connections (before noise and yamux) into [`Delayed`]
//! streams: every byte read is released `one_way` after it arrived, and every byte written
//! leaves `one_way` after it was written, where `one_way` comes from a [`Latency`] function of
//! the remote address. So a node whose transport is wrapped sees a round trip of `2 × one_way`
//! to that address, whether or not the remote is wrapped too, and per remote address.
//!
//! Two pump tasks per connection move the bytes; the channels between them are bounded (64
//! chunks of at most 64 KiB), so a slow reader back-pressures the sender as a socket would.
//! Order is kept because the delay is constant for a connection.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, SinkExt as _, StreamExt as _,
    channel::mpsc,
};
use libp2p::{Multiaddr, core::ConnectedPoint};
use tokio::time::Instant;

/// A shared address → one-way delay table for [`Latency::table`].
pub type LatencyTable = Arc<std::sync::Mutex<std::collections::HashMap<Multiaddr, Duration>>>;

/// One-way delay per remote address: the dialed address as given (it may end in `/p2p/<id>`),
/// or the send-back address of an inbound connection. It is asked again for every chunk, so a
/// test may change the latency of open connections.
#[derive(Clone)]
pub struct Latency(pub Arc<dyn Fn(&Multiaddr) -> Duration + Send + Sync>);

impl Latency {
    /// The same one-way delay to every address.
    pub fn fixed(one_way: Duration) -> Self {
        Self(Arc::new(move |_| one_way))
    }

    /// One-way delays looked up in a shared table by the remote's address without its
    /// `/p2p/<id>` suffix (zero for addresses not in it); a test changes entries to change the
    /// latency of open connections.
    pub fn table(table: LatencyTable) -> Self {
        Self(Arc::new(move |a: &Multiaddr| {
            let base: Multiaddr = a
                .iter()
                .take_while(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                .collect();
            table
                .lock()
                .map(|t| t.get(&base).copied().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::ZERO)
        }))
    }

    /// The one-way delay to `addr`.
    pub fn of(&self, addr: &Multiaddr) -> Duration {
        (self.0)(addr)
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Latency(fn)")
    }
}

const CHUNK: usize = 64 * 1024;
const QUEUE: usize = 64;

enum Msg {
    Data(Instant, Vec<u8>),
    Close(Instant),
}

/// A stream whose bytes are delayed in both directions.
pub struct Delayed {
    incoming: mpsc::Receiver<Msg>,
    current: Option<(Vec<u8>, usize)>,
    waiting: Option<(Pin<Box<tokio::time::Sleep>>, Msg)>,
    eof: bool,
    outgoing: mpsc::Sender<Msg>,
    one_way: Arc<dyn Fn() -> Duration + Send + Sync>,
}

impl std::fmt::Debug for Delayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delayed")
            .field("one_way", &(self.one_way)())
            .finish_non_exhaustive()
    }
}

/// The remote address of a connection.
pub fn remote(cp: &ConnectedPoint) -> &Multiaddr {
    match cp {
        ConnectedPoint::Dialer { address, .. } => address,
        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
    }
}

impl Delayed {
    /// Wraps `inner`, delaying each direction by a fixed `one_way`. Needs a tokio runtime.
    pub fn new<S>(inner: S, one_way: Duration) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::with(inner, Arc::new(move || one_way))
    }

    /// Wraps `inner`, delaying each chunk by `one_way()` at the time it is read or written, so
    /// a test can change the latency of open connections.
    pub fn with<S>(inner: S, one_way: Arc<dyn Fn() -> Duration + Send + Sync>) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let read_delay = one_way.clone();
        let (mut r, mut w) = inner.split();
        let (mut in_tx, in_rx) = mpsc::channel::<Msg>(QUEUE);
        let (out_tx, mut out_rx) = mpsc::channel::<Msg>(QUEUE);
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match r.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = in_tx.send(Msg::Close(Instant::now() + read_delay())).await;
                        return;
                    }
                    Ok(n) => n,
                };
                let due = Instant::now() + read_delay();
                if in_tx.send(Msg::Data(due, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(m) = out_rx.next().await {
                match m {
                    Msg::Data(due, bytes) => {
                        tokio::time::sleep_until(due).await;
                        if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                            return;
                        }
                    }
                    Msg::Close(due) => {
                        tokio::time::sleep_until(due).await;
                        let _ = w.close().await;
                        return;
                    }
                }
            }
            let _ = w.close().await;
        });
        Self {
            incoming: in_rx,
            current: None,
            waiting: None,
            eof: false,
            outgoing: out_tx,
            one_way,
        }
    }
}

impl AsyncRead for Delayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some((bytes, off)) = self.current.as_mut() {
                let n = (bytes.len() - *off).min(buf.len());
                buf[..n].copy_from_slice(&bytes[*off..*off + n]);
                *off += n;
                if *off == bytes.len() {
                    self.current = None;
                }
                return Poll::Ready(Ok(n));
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            if let Some((sleep, _)) = self.waiting.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match self.waiting.take().map(|(_, m)| m) {
                    Some(Msg::Data(_, bytes)) => self.current = Some((bytes, 0)),
                    Some(Msg::Close(_)) | None => self.eof = true,
                }
                continue;
            }
            match self.incoming.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.eof = true,
                Poll::Ready(Some(m)) => {
                    let due = match &m {
                        Msg::Data(d, _) | Msg::Close(d) => *d,
                    };
                    self.waiting = Some((Box::pin(tokio::time::sleep_until(due)), m));
                }
            }
        }
    }
}

impl AsyncWrite for Delayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.outgoing.poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Poll::Ready(Ok(())) => {}
        }
        let n = buf.len().min(CHUNK);
        let due = Instant::now() + (self.one_way)();
        self.outgoing
            .start_send(Msg::Data(due, buf[..n].to_vec()))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued bytes leave when they are due; there is nothing to wait for here.
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.outgoing.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => {
                let due = Instant::now() + (self.one_way)();
                let _ = self.outgoing.start_send(Msg::Close(due));
                self.outgoing.close_channel();
                Poll::Ready(Ok(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use duplex::pair;

    mod duplex {
        //! A minimal in-memory duplex over futures' AsyncRead/AsyncWrite, built from two
        //! bounded channels (no extra dependency).
        use super::super::*;

        pub struct Duplex {
            pub(super) tx: mpsc::Sender<Vec<u8>>,
            pub(super) rx: mpsc::Receiver<Vec<u8>>,
            pub(super) buf: Vec<u8>,
        }

        pub fn pair() -> (Duplex, Duplex) {
            let (a_tx, b_rx) = mpsc::channel(16);
            let (b_tx, a_rx) = mpsc::channel(16);
            (
                Duplex {
                    tx: a_tx,
                    rx: a_rx,
                    buf: Vec::new(),
                },
                Duplex {
                    tx: b_tx,
                    rx: b_rx,
                    buf: Vec::new(),
                },
            )
        }

        impl AsyncRead for Duplex {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                out: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                if self.buf.is_empty() {
                    match self.rx.poll_next_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => return Poll::Ready(Ok(0)),
                        Poll::Ready(Some(b)) => self.buf = b,
                    }
                }
                let n = self.buf.len().min(out.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                Poll::Ready(Ok(n))
            }
        }

        impl AsyncWrite for Duplex {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                b: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.tx.poll_ready(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(_)) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                    Poll::Ready(Ok(())) => {
                        let _ = self.tx.start_send(b.to_vec());
                        Poll::Ready(Ok(b.len()))
                    }
                }
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.tx.close_channel();
                Poll::Ready(Ok(()))
            }
        }
    }

    #[tokio::test]
    async fn a_round_trip_takes_twice_the_one_way_delay() {
        let (a, mut b) = pair();
        let mut a = Delayed::new(a, Duration::from_millis(40));
        // An echo on the far end.
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                let n = b.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                b.write_all(&buf[..n]).await.unwrap();
            }
        });
        for _ in 0..3 {
            let t = std::time::Instant::now();
            a.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            a.read_exact(&mut got).await.unwrap();
            let rtt = t.elapsed();
            assert_eq!(&got, b"ping");
            assert!(rtt >= Duration::from_millis(80), "{rtt:?}");
            assert!(rtt < Duration::from_millis(200), "{rtt:?}");
        }
        a.close().await.unwrap();
    }

    #[tokio::test]
    async fn bytes_keep_their_order_and_eof_arrives() {
        let (a, mut b) = pair();
        let mut a = Delayed::new(a, Duration::from_millis(5));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let d2 = data.clone();
        let w = tokio::spawn(async move {
            a.write_all(&d2).await.unwrap();
            a.close().await.unwrap();
            a
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        drop(w.await.unwrap());
    }
}
