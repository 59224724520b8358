//! Bounds on the connections a listener keeps, so that sockets which never
//! send a request cannot hold a process's open files: at most
//! [`MAX_CONNECTIONS`] at once (past it, new ones wait in the kernel's
//! accept queue), and a connection that has sent no byte within
//! [`FIRST_BYTE_TIMEOUT`] of being accepted is closed. Once bytes flow,
//! the protocol's own limits take over (HTTP/2 keepalive, header limits,
//! the interceptors that authenticate every call).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Connections one listener keeps open at once.
pub const MAX_CONNECTIONS: usize = 2048;
/// How long a new connection may stay silent.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection that holds its place among the listener's
/// connections until it is dropped, and fails its first read if no byte
/// arrives in time.
pub struct Guarded {
    inner: TcpStream,
    _place: OwnedSemaphorePermit,
    /// Until the first byte arrives.
    silence: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.silence = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let silent_too_long = self
                    .silence
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if silent_too_long {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the time a new connection may stay silent",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts on `listener` within the bounds above.
pub struct GuardedListener {
    listener: TcpListener,
    places: Arc<Semaphore>,
    silence: Duration,
}

impl GuardedListener {
    pub fn new(listener: TcpListener) -> Self {
        Self::with_silence(listener, FIRST_BYTE_TIMEOUT)
    }

    fn with_silence(listener: TcpListener, silence: Duration) -> Self {
        Self {
            listener,
            places: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            silence,
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, once there is a place for it.
    pub async fn accept(&self) -> io::Result<Guarded> {
        let place = self
            .places
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("the listener is closed"))?;
        let (inner, _) = self.listener.accept().await?;
        // Small requests and answers go out at once (raft, sessions).
        let _ = inner.set_nodelay(true);
        Ok(Guarded {
            inner,
            _place: place,
            silence: Some(Box::pin(tokio::time::sleep(self.silence))),
        })
    }

    /// The next connection; an accept that fails (the process is out of
    /// files) is retried after a pause rather than ending the server.
    async fn accept_retrying(&self) -> Guarded {
        loop {
            match self.accept().await {
                Ok(connection) => return connection,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Connections as a stream, for `tonic`'s `serve_with_incoming`.
    pub fn incoming(self) -> impl Stream<Item = io::Result<Guarded>> + Send + 'static {
        futures::stream::unfold(self, |listener| async move {
            let connection = listener.accept_retrying().await;
            Some((Ok(connection), listener))
        })
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let connection = self.accept_retrying().await;
        let addr = connection
            .peer_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        (connection, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const SILENCE: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_frees_its_place() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let guarded = GuardedListener::with_silence(listener, SILENCE);
        let places = guarded.places.clone();
        let _client = TcpStream::connect(addr).await.expect("connect");
        let mut connection = guarded.accept().await.expect("accept");
        assert_eq!(places.available_permits(), MAX_CONNECTIONS - 1);
        let mut byte = [0u8; 1];
        let silent = connection.read(&mut byte).await.expect_err("closed");
        assert_eq!(silent.kind(), io::ErrorKind::TimedOut);
        drop(connection);
        assert_eq!(places.available_permits(), MAX_CONNECTIONS);
    }

    #[tokio::test]
    async fn a_connection_that_speaks_is_not_timed_out() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let guarded = GuardedListener::with_silence(listener, SILENCE);
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let mut connection = guarded.accept().await.expect("accept");
        client.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        assert_eq!(connection.read(&mut byte).await.expect("a byte"), 1);
        // Past the deadline, a connection that has spoken stays open: a
        // read waits for its data instead of failing.
        let waited = tokio::time::timeout(SILENCE * 3, connection.read(&mut byte)).await;
        assert!(
            waited.is_err(),
            "a read past the deadline ended: {waited:?}"
        );
        drop(client);
        assert_eq!(connection.read(&mut byte).await.expect("end of stream"), 0);
    }
}
