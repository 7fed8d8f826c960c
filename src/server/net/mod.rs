//! The socket layer, kept behind this one small module so it can change.
//!
//! Two backends share one interface (bind, accept, read into a buffer,
//! write a batch of replies, a raw fd for CLIENT KILL):
//!
//! * `uring` (the default): sockets on a per-executor io_uring ring of our
//!   own, set up with SINGLE_ISSUER and DEFER_TASKRUN. Completions run only
//!   when this executor asks for them, so a request costs no task-work
//!   interrupt. On this 2-core VM the stock glommio path costs about 3x
//!   Redis's CPU per request for exactly that reason (see
//!   `shared/REFERENCE.md` and bench/RESULTS.md).
//! * `glommio`: glommio's own TCP types, kept for comparison.

mod glommio_tcp;
mod uring;

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;

/// Which socket implementation the executors use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Uring,
    Glommio,
}

pub enum Listener {
    Uring(uring::Listener),
    Glommio(glommio_tcp::Listener),
}

/// What a connection's socket calls with received bytes that start a
/// request, before the connection's reader runs (`Stream::set_hint`).
pub type Hint = Box<dyn Fn(&[u8])>;

pub enum Stream {
    Uring(uring::Stream),
    Glommio(glommio_tcp::Stream),
}

thread_local! {
    /// Polls of tasks spawned through `spawn` on this thread.
    static TASK_POLLS: Cell<u64> = const { Cell::new(0) };
}

/// How many times this thread's tasks have been polled. The uring driver
/// blocks only after a round in which this did not move: then no other
/// task was queued when it last yielded.
pub fn task_polls() -> u64 {
    TASK_POLLS.with(|c| c.get())
}

/// Spawns a detached task on this executor. Every Mayfly task goes through
/// here, so that `task_polls` sees it run.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(Counted(future)).detach();
}

/// `future`, counted in `task_polls`: for an executor's main future.
pub fn counted<F: Future>(future: F) -> impl Future<Output = F::Output> {
    Counted(future)
}

struct Counted<F>(F);

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        TASK_POLLS.with(|c| c.set(c.get() + 1));
        // SAFETY: the inner future is never moved out of its pinned wrapper.
        unsafe { self.map_unchecked_mut(|c| &mut c.0) }.poll(cx)
    }
}

/// Waits for `duration`: on the uring driver's ring when this executor
/// runs it (glommio's timers fire late there), else with glommio's timer.
pub async fn sleep(duration: std::time::Duration) {
    match uring::sleep(duration) {
        Ok(sleep) => sleep.await,
        Err(_) => {
            glommio::timer::sleep(duration).await;
        }
    }
}

/// Starts the per-executor machinery a backend needs (the uring driver).
/// `alone`: this is the only executor.
pub fn start_executor(backend: Backend, spin: std::time::Duration, wake_batch_us: u32, alone: bool) -> io::Result<()> {
    match backend {
        Backend::Uring => uring::start(spin, wake_batch_us, alone),
        Backend::Glommio => Ok(()),
    }
}

/// Every executor's listening socket, for `close_listeners`.
static LISTENERS: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());

/// Stops every listening socket from accepting (from any thread).
pub fn close_listeners() {
    for &fd in LISTENERS.lock().expect("listeners").iter() {
        shutdown_fd(fd);
    }
}

impl Listener {
    /// Binds with SO_REUSEPORT, so every executor can bind the same port.
    /// The uring backend's socket accepts nothing before `listen`.
    pub fn bind(backend: Backend, addr: &str) -> io::Result<Listener> {
        let listener = match backend {
            Backend::Uring => Listener::Uring(uring::Listener::bind(addr)?),
            Backend::Glommio => Listener::Glommio(glommio_tcp::Listener::bind(addr)?),
        };
        // glommio's listener keeps its descriptor to itself; its sockets
        // close with the process anyway.
        if let Listener::Uring(l) = &listener {
            LISTENERS.lock().expect("listeners").push(l.raw_fd());
        }
        Ok(listener)
    }

    /// Starts accepting connections (glommio's listener already does).
    pub fn listen(&self) -> io::Result<()> {
        match self {
            Listener::Uring(l) => l.listen(),
            Listener::Glommio(_) => Ok(()),
        }
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            Listener::Uring(l) => Stream::Uring(l.accept().await?),
            Listener::Glommio(l) => Stream::Glommio(l.accept().await?),
        })
    }
}

impl Stream {
    /// Reads whatever has arrived, appending it to `buf`. Ok(0) is EOF.
    pub async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Uring(s) => s.read_into(buf).await,
            Stream::Glommio(s) => s.read_into(buf).await,
        }
    }

    /// Sets what to call with received bytes that start a request, before
    /// the reader runs (the uring backend only; see `uring::Stream`).
    pub fn set_hint(&mut self, hint: Hint) {
        if let Stream::Uring(s) = self {
            s.set_hint(hint);
        }
    }

    /// Queues `data` for sending. It may return before the bytes are on the
    /// wire; closing the stream still delivers them.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Uring(s) => s.write_all(data).await,
            Stream::Glommio(s) => s.write_all(data).await,
        }
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Uring(s) => s.peer_addr(),
            Stream::Glommio(s) => s.peer_addr(),
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Uring(s) => s.local_addr(),
            Stream::Glommio(s) => s.local_addr(),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Uring(s) => s.raw_fd(),
            Stream::Glommio(s) => s.raw_fd(),
        }
    }
}

/// What `tcp_socket` does after binding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// SO_REUSEPORT: one of the executors' shared listeners, which starts
    /// listening only with `listen` (once every executor is ready).
    Listen,
    /// Bind only, without SO_REUSEPORT: a probe that fails while anyone
    /// listens on the address. It never listens, so no client can connect
    /// to it and be reset when it closes.
    Probe,
}

/// A non-blocking TCP socket with SO_REUSEADDR, bound to `addr`.
pub fn tcp_socket(addr: SocketAddr, how: Bind) -> io::Result<RawFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket syscalls on a descriptor we create; every result
    // is checked and the descriptor closed on failure.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fail = |fd| {
            let e = io::Error::last_os_error();
            libc::close(fd);
            Err(e)
        };
        let one: libc::c_int = 1;
        let opts: &[libc::c_int] = match how {
            Bind::Listen => &[libc::SO_REUSEADDR, libc::SO_REUSEPORT],
            Bind::Probe => &[libc::SO_REUSEADDR],
        };
        for &opt in opts {
            let p = &one as *const _ as *const libc::c_void;
            if libc::setsockopt(fd, libc::SOL_SOCKET, opt, p, std::mem::size_of_val(&one) as u32) != 0 {
                return fail(fd);
            }
        }
        let rc = match addr {
            SocketAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as u16;
                sa.sin_port = a.port().to_be();
                sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                libc::bind(
                    fd,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&sa) as u32,
                )
            }
            SocketAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as u16;
                sa.sin6_port = a.port().to_be();
                sa.sin6_addr.s6_addr = a.ip().octets();
                libc::bind(
                    fd,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&sa) as u32,
                )
            }
        };
        if rc != 0 {
            return fail(fd);
        }
        Ok(fd)
    }
}

/// Starts a bound socket listening.
pub fn listen(fd: RawFd) -> io::Result<()> {
    // SAFETY: listen on a descriptor this process owns.
    if unsafe { libc::listen(fd, 511) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Fails with the bind error when another socket listens on `addr`.
pub fn probe_port(addr: &str) -> io::Result<()> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let fd = tcp_socket(addr, Bind::Probe)?;
    // SAFETY: the descriptor was just created and is ours.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Wakes a connection blocked in read by shutting its socket down.
pub fn shutdown_fd(fd: RawFd) {
    // SAFETY: shutdown on a descriptor this process owns; worst case EBADF.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// The address of a socket, from getsockname or getpeername.
fn sockaddr_of(fd: RawFd, peer: bool) -> Option<SocketAddr> {
    // SAFETY: the storage is large enough for any address family; the
    // kernel writes at most `len` bytes.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let ptr = &mut storage as *mut _ as *mut libc::sockaddr;
        let rc = if peer {
            libc::getpeername(fd, ptr, &mut len)
        } else {
            libc::getsockname(fd, ptr, &mut len)
        };
        if rc != 0 {
            return None;
        }
        match storage.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(ptr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                let a = &*(ptr as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }
}
