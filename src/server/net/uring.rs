//! Sockets on a per-executor io_uring ring of our own.
//!
//! # Why
//!
//! glommio's rings are set up without COOP_TASKRUN or DEFER_TASKRUN, so every
//! socket completion arrives as task work that interrupts the thread; on a VM
//! each interrupt is expensive. This ring is created with SINGLE_ISSUER and
//! DEFER_TASKRUN: the kernel queues completion work and runs it only when
//! this thread enters the ring asking for events. No interrupts.
//!
//! # Who does what
//!
//! * **Connection tasks** (glommio tasks) never make socket syscalls. A read
//!   takes bytes that a completed RECV left in the connection's buffer and
//!   re-arms the RECV; a write appends to the connection's send queue and,
//!   when no SEND is in flight, queues one. Both only push SQEs.
//! * **The driver task** (`drive`) makes one `io_uring_enter` per pass: it
//!   submits everything queued and runs the deferred completions, then hands
//!   each CQE to its connection or listener and wakes the task waiting on it.
//!   With TASKRUN_FLAG the kernel marks the ring when completions are
//!   pending, so an idle pass costs no syscall at all.
//! * **Blocking.** After `spin` of idle passes, and only when no other task
//!   ran during its last round (see `net::spawn`), the driver blocks the
//!   thread in `io_uring_enter` until a completion arrives, another core
//!   rings this executor's doorbell (`shard::Doorbell`, whose eventfd has a
//!   READ armed in this ring), or `IDLE_WAIT` passes. glommio itself
//!   therefore never parks: its park costs a membarrier IPI, a timer re-arm
//!   and an eventfd read delivered as task work, which dominated the
//!   profile at two threads.
//! * **Timers.** glommio looks at its timers only between task-queue runs,
//!   which a driver that never parks makes rare, so `sleep` is a TIMEOUT
//!   in this ring: the kernel keeps the time and its completion wakes the
//!   sleeper, blocked driver included.
//!
//! # Buffers
//!
//! A RECV writes into the connection's own 16 KiB buffer, and a SEND reads
//! from the connection's `sending` vector; neither is touched by anything
//! else while its operation is in flight. A dropped stream cancels its RECV,
//! lets its SENDs finish (so QUIT's reply is delivered), and only then closes
//! the descriptor and frees the slot, so no completion can reach a reused
//! slot.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::shard::Doorbell;

const RING_ENTRIES: u32 = 4096;
const RECV_BUF: usize = 16 * 1024;
/// A writer waits once this many bytes are queued behind an in-flight send.
const SEND_HIGH_WATER: usize = 8 << 20;
/// `IORING_ENTER_GETEVENTS`: run deferred completion work.
const ENTER_GETEVENTS: u32 = 1;

const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_CANCEL: u64 = 4;
const OP_DOORBELL: u64 = 5;
const OP_TIMER: u64 = 6;
const OP_TIMER_REMOVE: u64 = 7;

/// The longest the driver blocks at a time, so that glommio still gets a
/// look at its own reactor now and then.
const IDLE_WAIT: Duration = Duration::from_millis(100);

fn user_data(slot: usize, op: u64) -> u64 {
    ((slot as u64) << 4) | op
}

thread_local! {
    static REACTOR: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

fn reactor() -> io::Result<Rc<Reactor>> {
    REACTOR
        .with(|r| r.borrow().clone())
        .ok_or_else(|| io::Error::other("the io_uring socket driver is not running on this thread"))
}

/// Creates this executor's ring and starts its driver task.
pub fn start(spin: Duration) -> io::Result<()> {
    let reactor = Rc::new(Reactor::new()?);
    REACTOR.with(|r| *r.borrow_mut() = Some(reactor.clone()));
    glommio::spawn_local(drive(reactor, spin)).detach();
    Ok(())
}

/// The kernel's flag for a RECV that polls before it reads (io_uring.h);
/// the io-uring crate does not re-export it.
const IORING_RECVSEND_POLL_FIRST: u16 = 1;

struct ConnState {
    fd: RawFd,
    buf: Box<[u8]>,
    /// Bytes of `buf` filled by the last RECV and not yet taken.
    filled: usize,
    recv_inflight: bool,
    eof: bool,
    error: Option<i32>,
    reader: Option<Waker>,
    sending: Vec<u8>,
    sent: usize,
    send_inflight: bool,
    queued: Vec<u8>,
    writer: Option<Waker>,
    cancel_inflight: bool,
    /// The stream handle is gone: close once no operation is in flight.
    dropped: bool,
}

struct ListenState {
    fd: RawFd,
    accepted: VecDeque<RawFd>,
    error: Option<i32>,
    waker: Option<Waker>,
}

struct TimerState {
    /// Read by the kernel when the TIMEOUT is submitted.
    _when: Box<types::Timespec>,
    fired: bool,
    waker: Option<Waker>,
    /// The `Sleep` is gone: free the slot when the TIMEOUT completes.
    dropped: bool,
}

enum Slot {
    Conn(Box<ConnState>),
    Listener(ListenState),
    Timer(TimerState),
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<Slot>>,
    free: Vec<usize>,
}

impl Slots {
    fn insert(&mut self, slot: Slot) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(slot);
                i
            }
            None => {
                self.entries.push(Some(slot));
                self.entries.len() - 1
            }
        }
    }

    fn conn(&mut self, i: usize) -> Option<&mut ConnState> {
        match self.entries.get_mut(i) {
            Some(Some(Slot::Conn(c))) => Some(c),
            _ => None,
        }
    }

    fn listener(&mut self, i: usize) -> Option<&mut ListenState> {
        match self.entries.get_mut(i) {
            Some(Some(Slot::Listener(l))) => Some(l),
            _ => None,
        }
    }

    fn timer(&mut self, i: usize) -> Option<&mut TimerState> {
        match self.entries.get_mut(i) {
            Some(Some(Slot::Timer(t))) => Some(t),
            _ => None,
        }
    }

    fn free(&mut self, i: usize) {
        self.entries[i] = None;
        self.free.push(i);
    }
}

struct Reactor {
    ring: RefCell<IoUring>,
    slots: RefCell<Slots>,
    doorbell: &'static Doorbell,
    /// Where the doorbell's READ lands; only the kernel writes it.
    doorbell_buf: Box<Cell<u64>>,
    completions: RefCell<Vec<(u64, i32, u32)>>,
    woken: RefCell<Vec<Waker>>,
}

impl Reactor {
    fn new() -> io::Result<Reactor> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_submit_all()
            .setup_cqsize(RING_ENTRIES * 4)
            .build(RING_ENTRIES)?;
        let reactor = Reactor {
            ring: RefCell::new(ring),
            slots: RefCell::new(Slots::default()),
            doorbell: Doorbell::install()?,
            doorbell_buf: Box::new(Cell::new(0)),
            completions: RefCell::new(Vec::with_capacity(256)),
            woken: RefCell::new(Vec::new()),
        };
        reactor.arm_doorbell();
        Ok(reactor)
    }

    /// Submits queued SQEs and runs deferred completion work.
    fn enter(ring: &mut IoUring) {
        let to_submit = ring.submission().len() as u32;
        // SAFETY: no argument struct is passed; flags are valid.
        let _ = unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(to_submit, 0, ENTER_GETEVENTS, None)
        };
    }

    /// Queues an SQE. The caller keeps every buffer it names alive and
    /// untouched until its completion arrives.
    unsafe fn push(&self, sqe: squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: forwarded to the caller's contract.
            if unsafe { ring.submission().push(&sqe) }.is_ok() {
                break;
            }
            Self::enter(&mut ring);
        }
    }

    /// One pass: submit, run completions, dispatch them. Returns how many
    /// completions were handled.
    fn pass(&self) -> usize {
        let mut done = self.completions.borrow_mut();
        {
            let mut ring = self.ring.borrow_mut();
            let (pending, taskrun) = {
                let sq = ring.submission();
                (sq.len(), sq.taskrun())
            };
            if pending > 0 || taskrun {
                Self::enter(&mut ring);
            }
            done.extend(ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        }
        // Tasks that other cores woke go first: whatever woke them (a job
        // sent to this shard, a reply) happened before these completions'
        // data arrived, and must be seen by the tasks those wake (see
        // `cmd::send_if_remote`).
        let mut woken = self.woken.borrow_mut();
        self.doorbell.take_wakes(&mut woken);
        let n = done.len() + woken.len();
        woken.drain(..).for_each(|w| w.wake());
        drop(woken);
        for (ud, res, flags) in done.drain(..) {
            self.complete(ud, res, flags);
        }
        n
    }

    /// Blocks the thread until a completion, a doorbell or `timeout`.
    fn block(&self, timeout: Duration) {
        if !self.doorbell.prepare_to_block() {
            return;
        }
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        // ETIME on timeout, EINTR on a signal: both just end the wait.
        let _ = self.ring.borrow_mut().submitter().submit_with_args(1, &args);
        self.doorbell.unblocked();
    }

    fn arm_doorbell(&self) {
        let sqe = opcode::Read::new(types::Fd(self.doorbell.eventfd()), self.doorbell_buf.as_ptr().cast(), 8)
            .build()
            .user_data(user_data(0, OP_DOORBELL));
        // SAFETY: the buffer is boxed in the reactor, which lives as long as
        // the thread; only the kernel writes it.
        unsafe { self.push(sqe) };
    }

    fn complete(&self, ud: u64, res: i32, flags: u32) {
        let slot = (ud >> 4) as usize;
        let mut slots = self.slots.borrow_mut();
        match ud & 0xf {
            OP_ACCEPT => {
                let Some(l) = slots.listener(slot) else { return };
                if res >= 0 {
                    l.accepted.push_back(res);
                } else if res != -libc::ECANCELED {
                    l.error = Some(-res);
                }
                let rearm = !cqueue::more(flags);
                let fd = l.fd;
                if let Some(w) = l.waker.take() {
                    w.wake();
                }
                drop(slots);
                if rearm {
                    self.arm_accept(slot, fd);
                }
            }
            OP_RECV => {
                let Some(c) = slots.conn(slot) else { return };
                c.recv_inflight = false;
                match res {
                    n if n > 0 => c.filled = n as usize,
                    0 => c.eof = true,
                    e if e == -libc::ECANCELED => {}
                    e => c.error = Some(-e),
                }
                if let Some(w) = c.reader.take() {
                    w.wake();
                }
                self.maybe_close(&mut slots, slot);
            }
            OP_SEND => {
                let Some(c) = slots.conn(slot) else { return };
                c.send_inflight = false;
                if res < 0 {
                    c.error = Some(-res);
                    c.sending.clear();
                    c.queued.clear();
                    if let Some(w) = c.reader.take() {
                        w.wake();
                    }
                } else {
                    c.sent += res as usize;
                    if c.sent >= c.sending.len() {
                        c.sending.clear();
                        c.sent = 0;
                        if !c.queued.is_empty() {
                            std::mem::swap(&mut c.sending, &mut c.queued);
                        }
                    }
                    if !c.sending.is_empty() {
                        self.start_send(c, slot);
                    }
                }
                if c.queued.len() < SEND_HIGH_WATER / 2
                    && let Some(w) = c.writer.take()
                {
                    w.wake();
                }
                self.maybe_close(&mut slots, slot);
            }
            OP_TIMER => {
                let Some(t) = slots.timer(slot) else { return };
                if t.dropped {
                    slots.free(slot);
                } else {
                    t.fired = true;
                    if let Some(w) = t.waker.take() {
                        w.wake();
                    }
                }
            }
            OP_DOORBELL => {
                drop(slots);
                self.arm_doorbell();
            }
            OP_CANCEL => {
                if let Some(c) = slots.conn(slot) {
                    c.cancel_inflight = false;
                }
                self.maybe_close(&mut slots, slot);
            }
            _ => {}
        }
    }

    fn arm_accept(&self, slot: usize, fd: RawFd) {
        let sqe = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(slot, OP_ACCEPT));
        // SAFETY: multishot accept names no buffer.
        unsafe { self.push(sqe) };
    }

    fn arm_recv(&self, c: &mut ConnState, slot: usize) {
        c.recv_inflight = true;
        // The RECV is armed as soon as the last data is taken, before the
        // request is answered, so the socket is almost always empty: poll
        // first instead of trying (and failing) to read at once.
        let sqe = opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), c.buf.len() as u32)
            .ioprio(IORING_RECVSEND_POLL_FIRST)
            .build()
            .user_data(user_data(slot, OP_RECV));
        // SAFETY: `buf` is a boxed slice owned by the slot, which lives until
        // this RECV completes (see maybe_close), and nothing else touches it
        // while `recv_inflight` is set.
        unsafe { self.push(sqe) };
    }

    /// Sends `c.sending[c.sent..]`.
    fn start_send(&self, c: &mut ConnState, slot: usize) {
        c.send_inflight = true;
        let rest = &c.sending[c.sent..];
        let sqe = opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(slot, OP_SEND));
        // SAFETY: `sending` is neither resized nor dropped while
        // `send_inflight` is set; new bytes go to `queued`.
        unsafe { self.push(sqe) };
    }

    /// Closes and frees a dropped connection once nothing is in flight.
    fn maybe_close(&self, slots: &mut Slots, slot: usize) {
        let Some(c) = slots.conn(slot) else { return };
        if !c.dropped || c.recv_inflight || c.send_inflight || c.cancel_inflight {
            return;
        }
        // SAFETY: the descriptor is ours and no operation uses it any more.
        unsafe { libc::close(c.fd) };
        slots.free(slot);
    }
}

/// Runs passes while there is work; when idle for `spin` and alone on the
/// executor, blocks in the ring (see the module page).
async fn drive(reactor: Rc<Reactor>, spin: Duration) {
    let spin_ticks = crate::clock::us_to_ticks(spin.as_micros() as u64);
    let mut idle_since: Option<u64> = None;
    let mut polls = super::task_polls();
    loop {
        let work = reactor.pass();
        let others_ran = super::task_polls() != polls;
        if work > 0 || others_ran {
            idle_since = None;
        } else {
            let since = *idle_since.get_or_insert_with(crate::clock::ticks);
            if crate::clock::ticks().wrapping_sub(since) >= spin_ticks {
                reactor.block(IDLE_WAIT);
                idle_since = None;
            }
        }
        polls = super::task_polls();
        futures_lite::future::yield_now().await;
    }
}

/// Completes after `duration`, timed by a TIMEOUT in this executor's ring.
pub fn sleep(duration: Duration) -> io::Result<Sleep> {
    let reactor = reactor()?;
    let when = Box::new(types::Timespec::from(duration));
    let ptr: *const types::Timespec = &*when;
    let slot = reactor.slots.borrow_mut().insert(Slot::Timer(TimerState {
        _when: when,
        fired: false,
        waker: None,
        dropped: false,
    }));
    let sqe = opcode::Timeout::new(ptr).build().user_data(user_data(slot, OP_TIMER));
    // SAFETY: the timespec is boxed in the slot, which is freed only after
    // the TIMEOUT completes.
    unsafe { reactor.push(sqe) };
    Ok(Sleep { reactor, slot })
}

pub struct Sleep {
    reactor: Rc<Reactor>,
    slot: usize,
}

impl std::future::Future for Sleep {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut slots = self.reactor.slots.borrow_mut();
        let t = slots.timer(self.slot).expect("timer slot");
        if t.fired {
            return Poll::Ready(());
        }
        t.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let mut slots = self.reactor.slots.borrow_mut();
        let t = slots.timer(self.slot).expect("timer slot");
        if t.fired {
            slots.free(self.slot);
            return;
        }
        t.dropped = true;
        t.waker = None;
        let sqe = opcode::TimeoutRemove::new(user_data(self.slot, OP_TIMER))
            .build()
            .user_data(user_data(self.slot, OP_TIMER_REMOVE));
        // SAFETY: a timeout removal names no buffer.
        unsafe { self.reactor.push(sqe) };
    }
}

pub struct Listener {
    reactor: Rc<Reactor>,
    slot: usize,
}

impl Listener {
    pub fn bind(addr: &str) -> io::Result<Listener> {
        let reactor = reactor()?;
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let fd = super::tcp_socket(addr, super::Bind::Listen)?;
        let slot = reactor.slots.borrow_mut().insert(Slot::Listener(ListenState {
            fd,
            accepted: VecDeque::new(),
            error: None,
            waker: None,
        }));
        Ok(Listener { reactor, slot })
    }

    /// Starts listening and arms the multishot ACCEPT.
    pub fn listen(&self) -> io::Result<()> {
        let fd = self.raw_fd();
        super::listen(fd)?;
        self.reactor.arm_accept(self.slot, fd);
        Ok(())
    }

    pub fn raw_fd(&self) -> RawFd {
        self.reactor
            .slots
            .borrow_mut()
            .listener(self.slot)
            .expect("listener slot")
            .fd
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        let fd = poll_fn(|cx| {
            let mut slots = self.reactor.slots.borrow_mut();
            let l = slots.listener(self.slot).expect("listener slot");
            if let Some(fd) = l.accepted.pop_front() {
                return Poll::Ready(Ok(fd));
            }
            if let Some(e) = l.error.take() {
                return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
            }
            l.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(Stream::new(self.reactor.clone(), fd))
    }
}

pub struct Stream {
    reactor: Rc<Reactor>,
    slot: usize,
    fd: RawFd,
}

impl Stream {
    fn new(reactor: Rc<Reactor>, fd: RawFd) -> Stream {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a descriptor we own; failure is harmless.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of_val(&one) as u32,
            );
        }
        let slot = reactor.slots.borrow_mut().insert(Slot::Conn(Box::new(ConnState {
            fd,
            buf: vec![0u8; RECV_BUF].into_boxed_slice(),
            filled: 0,
            recv_inflight: false,
            eof: false,
            error: None,
            reader: None,
            sending: Vec::new(),
            sent: 0,
            send_inflight: false,
            queued: Vec::new(),
            writer: None,
            cancel_inflight: false,
            dropped: false,
        })));
        Stream { reactor, slot, fd }
    }

    pub async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut slots = self.reactor.slots.borrow_mut();
            let c = slots.conn(self.slot).expect("connection slot");
            if c.filled > 0 {
                let n = c.filled;
                buf.extend_from_slice(&c.buf[..n]);
                c.filled = 0;
                if !c.eof && c.error.is_none() {
                    self.reactor.arm_recv(c, self.slot);
                }
                return Poll::Ready(Ok(n));
            }
            if let Some(e) = c.error {
                return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
            }
            if c.eof {
                return Poll::Ready(Ok(0));
            }
            if !c.recv_inflight {
                self.reactor.arm_recv(c, self.slot);
            }
            c.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        {
            let mut slots = self.reactor.slots.borrow_mut();
            let c = slots.conn(self.slot).expect("connection slot");
            if let Some(e) = c.error {
                return Err(io::Error::from_raw_os_error(e));
            }
            if c.send_inflight {
                c.queued.extend_from_slice(data);
            } else {
                c.sending.extend_from_slice(data);
                c.sent = 0;
                self.reactor.start_send(c, self.slot);
            }
            if c.queued.len() < SEND_HIGH_WATER {
                return Ok(());
            }
        }
        // Back-pressure: wait for the socket to drain.
        poll_fn(|cx| {
            let mut slots = self.reactor.slots.borrow_mut();
            let c = slots.conn(self.slot).expect("connection slot");
            if let Some(e) = c.error {
                return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
            }
            if c.queued.len() < SEND_HIGH_WATER / 2 {
                return Poll::Ready(Ok(()));
            }
            c.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        super::sockaddr_of(self.fd, true)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        super::sockaddr_of(self.fd, false)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut slots = self.reactor.slots.borrow_mut();
        let Some(c) = slots.conn(self.slot) else { return };
        c.dropped = true;
        c.reader = None;
        c.writer = None;
        if c.recv_inflight && !c.cancel_inflight {
            c.cancel_inflight = true;
            let sqe = opcode::AsyncCancel::new(user_data(self.slot, OP_RECV))
                .build()
                .user_data(user_data(self.slot, OP_CANCEL));
            // SAFETY: a cancel names no buffer.
            unsafe { self.reactor.push(sqe) };
        }
        self.reactor.maybe_close(&mut slots, self.slot);
    }
}
