//! The glommio backend: glommio's own TCP listener and streams.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

/// Bytes requested per read.
const READ_CHUNK: usize = 16 * 1024;

pub struct Listener(TcpListener);

impl Listener {
    /// Binds with SO_REUSEPORT, so every executor can bind the same port.
    pub fn bind(addr: &str) -> io::Result<Listener> {
        TcpListener::bind(addr)
            .map(Listener)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        let stream = self.0.accept().await.map_err(|e| io::Error::other(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(Stream(stream))
    }
}

pub struct Stream(TcpStream);

impl Stream {
    /// Reads whatever has arrived, appending it to `buf`. Ok(0) is EOF.
    pub async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let len = buf.len();
        buf.resize(len + READ_CHUNK, 0);
        let result = self.0.read(&mut buf[len..]).await;
        let n = *result.as_ref().unwrap_or(&0);
        buf.truncate(len + n);
        result
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data).await
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer_addr().ok()
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.0.local_addr().ok()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
