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
//!   takes the bytes that RECV completions left for the connection; a write
//!   appends to the connection's send queue and, when no SEND is in flight,
//!   queues one. Both only push SQEs.
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
//! * **Hints.** A connection may give its stream a hint (`set_hint`). When
//!   bytes arrive for a reader that is waiting, with nothing left over
//!   from before, the pass hands them to the hint once every completion is
//!   in and before any woken task runs: the server notes which entries
//!   the requests will read, so the first task to run can load them all at
//!   once (`cmd::note_arrived`).
//! * **Timers.** glommio looks at its timers only between task-queue runs,
//!   which a driver that never parks makes rare, so `sleep` is a TIMEOUT
//!   in this ring: the kernel keeps the time and its completion wakes the
//!   sleeper, blocked driver included.
//!
//! # Buffers
//!
//! Each connection keeps one multishot RECV armed; the kernel fills
//! buffers from a ring shared by the executor's connections
//! (`RecvBuffers`), and the driver copies each into the connection's
//! `inbound` bytes and returns the buffer at once. A SEND reads from the
//! connection's `sending` vector, which nothing touches while the SEND is
//! in flight. Sockets are also registered in the ring's file table, which
//! spares the kernel a descriptor lookup per operation. A dropped stream
//! cancels its RECV, lets its SENDs finish (so QUIT's reply is delivered),
//! and only then closes the descriptor and frees the slot, so no completion
//! can reach a reused slot.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::shard::Doorbell;

const RING_ENTRIES: u32 = 4096;
/// Slots of the ring's registered-file table. A connection whose slot
/// number is below this uses its registered file, which spares the kernel
/// a descriptor lookup and a reference count on every RECV and SEND.
const FIXED_FILES: u32 = 16 * 1024;
/// Receive buffers the kernel picks from (a provided-buffer ring), and the
/// size of each: a RECV fills at most one, as Redis reads at most 16 KiB.
const RECV_BUFS: u16 = 128;
const RECV_BUF: usize = 16 * 1024;
const _: () = assert!(RECV_BUFS.is_power_of_two(), "the ring's index is a mask");
/// The ring's buffer group for receives.
const RECV_GROUP: u16 = 0;
/// A connection's `inbound` buffer larger than this is freed once emptied.
const INBOUND_KEEP: usize = 1 << 20;
/// Received bytes a connection may hold before its reader takes them. Past
/// this the RECV is cancelled, so a client that sends faster than its
/// commands run is held back by TCP instead of filling the server's memory;
/// the reader re-arms it once it has taken the bytes.
const INBOUND_HIGH_WATER: usize = 256 << 10;
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
/// `alone`: this is the only executor (see `Batching`).
pub fn start(spin: Duration, wake_batch_us: u32, alone: bool) -> io::Result<()> {
    let reactor = Rc::new(Reactor::new()?);
    REACTOR.with(|r| *r.borrow_mut() = Some(reactor.clone()));
    glommio::spawn_local(drive(reactor, spin, wake_batch_us, alone)).detach();
    Ok(())
}

/// Receive buffers shared by all of a ring's connections.
///
/// One multishot RECV per connection stays armed; each time data arrives the
/// kernel copies it into a buffer it takes from this ring and posts its id.
/// The driver copies the bytes to the connection's `inbound` and gives the
/// buffer back at once, so no buffer is ever held by a slow reader, and a
/// connection needs no receive buffer of its own while it waits.
struct RecvBuffers {
    /// RECV_BUFS entries, page-aligned as the kernel requires; the tail
    /// the kernel reads lives inside the first entry.
    entries: *mut types::BufRingEntry,
    /// RECV_BUFS buffers of RECV_BUF bytes, written by the kernel: Rust
    /// code only ever reads them, through `data`, after a completion.
    memory: *mut u8,
    tail: Cell<u16>,
}

impl RecvBuffers {
    fn entries_layout() -> std::alloc::Layout {
        let size = RECV_BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        std::alloc::Layout::from_size_align(size, 4096).expect("buffer ring layout")
    }

    fn memory_layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(RECV_BUFS as usize * RECV_BUF, 4096).expect("buffer layout")
    }

    /// Allocates the buffers and registers them with `ring`.
    fn register(ring: &IoUring) -> io::Result<RecvBuffers> {
        // SAFETY: both layouts have non-zero sizes; null results are
        // checked. Neither allocation is ever freed: the kernel may write a
        // buffer until its asynchronous teardown of the ring has finished,
        // and a reactor lives as long as its thread anyway.
        let bufs = unsafe {
            RecvBuffers {
                entries: std::alloc::alloc_zeroed(Self::entries_layout()).cast(),
                memory: std::alloc::alloc(Self::memory_layout()),
                tail: Cell::new(0),
            }
        };
        if bufs.entries.is_null() || bufs.memory.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // SAFETY: the entries and buffers are never freed (see above).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.entries as u64, RECV_BUFS, RECV_GROUP, 0)?;
        }
        for bid in 0..RECV_BUFS {
            bufs.give_back(bid);
        }
        Ok(bufs)
    }

    /// The first `len` bytes of buffer `bid`, as the kernel filled them.
    fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < RECV_BUFS, "buffer id out of range");
        // SAFETY: in bounds; the kernel wrote these bytes before posting
        // the completion and writes this buffer again only after
        // `give_back`, by which time the slice is gone.
        unsafe { std::slice::from_raw_parts(self.memory.add(bid as usize * RECV_BUF), len.min(RECV_BUF)) }
    }

    /// Returns buffer `bid` to the kernel.
    fn give_back(&self, bid: u16) {
        let tail = self.tail.get();
        let index = (tail & (RECV_BUFS - 1)) as usize;
        // SAFETY: index < RECV_BUFS; the kernel reads entries only between
        // its head and the published tail, and this one is past the tail.
        unsafe {
            let entry = &mut *self.entries.add(index);
            entry.set_addr(self.memory.add(bid as usize * RECV_BUF) as u64);
            entry.set_len(RECV_BUF as u32);
            entry.set_bid(bid);
            let published = types::BufRingEntry::tail(self.entries).cast_mut();
            (*(published as *const std::sync::atomic::AtomicU16)).store(tail.wrapping_add(1), Ordering::Release);
        }
        self.tail.set(tail.wrapping_add(1));
    }
}

struct ConnState {
    fd: RawFd,
    /// `fd` is also registered in the ring's file table, at the slot's index.
    fixed: bool,
    /// Bytes received and not yet taken by the reader.
    inbound: BytesMut,
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
    /// The last activity period in which this connection was counted.
    seen: u32,
    /// Called with the received bytes when they start a new request (see
    /// `Stream::set_hint`).
    hint: Option<super::Hint>,
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
    recv_buffers: RecvBuffers,
    slots: RefCell<Slots>,
    doorbell: &'static Doorbell,
    /// Where the doorbell's READ lands; only the kernel writes it.
    doorbell_buf: Box<Cell<u64>>,
    completions: RefCell<Vec<(u64, i32, u32)>>,
    woken: RefCell<Vec<Waker>>,
    /// Connections whose received bytes the pass hands to their hint.
    hinted: RefCell<Vec<usize>>,
    activity: Cell<Activity>,
    /// The ring has a sparse file table of FIXED_FILES slots.
    files: bool,
}

/// Runs `$body` with `$t` bound to the connection's socket as the ring
/// should name it: its registered file when it has one, else its descriptor.
macro_rules! with_socket {
    ($c:expr, $slot:expr, |$t:ident| $body:expr) => {
        if $c.fixed {
            let $t = types::Fixed($slot as u32);
            $body
        } else {
            let $t = types::Fd($c.fd);
            $body
        }
    };
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
        // Without a file table every socket is named by its descriptor.
        let files = ring.submitter().register_files_sparse(FIXED_FILES).is_ok();
        let recv_buffers = RecvBuffers::register(&ring)?;
        let reactor = Reactor {
            ring: RefCell::new(ring),
            recv_buffers,
            slots: RefCell::new(Slots::default()),
            doorbell: Doorbell::install()?,
            doorbell_buf: Box::new(Cell::new(0)),
            completions: RefCell::new(Vec::with_capacity(256)),
            woken: RefCell::new(Vec::new()),
            hinted: RefCell::new(Vec::new()),
            activity: Cell::new(Activity::default()),
            files,
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
        self.run_hints();
        n
    }

    /// Blocks the thread until a completion, a doorbell or `timeout`; with
    /// `batch` = (us, n), until n completions or, once `us` has passed, the
    /// first one.
    fn block(&self, timeout: Duration, batch: Option<(u32, usize)>) {
        if !self.doorbell.prepare_to_block() {
            return;
        }
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        let (want, args) = match batch {
            Some((us, n)) => (n, args.min_wait_usec(us)),
            None => (1, args),
        };
        // ETIME on timeout, EINTR on a signal: both just end the wait.
        let _ = self.ring.borrow_mut().submitter().submit_with_args(want, &args);
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
                let bid = cqueue::buffer_select(flags);
                let Some(c) = slots.conn(slot) else {
                    if let Some(bid) = bid {
                        self.recv_buffers.give_back(bid);
                    }
                    return;
                };
                if res > 0 {
                    self.count_sender(c);
                }
                if let Some(bid) = bid {
                    if res > 0 && !c.dropped {
                        if c.inbound.is_empty() && c.reader.is_some() && c.hint.is_some() {
                            self.hinted.borrow_mut().push(slot);
                        }
                        c.inbound.extend_from_slice(self.recv_buffers.data(bid, res as usize));
                    }
                    self.recv_buffers.give_back(bid);
                }
                if !cqueue::more(flags) {
                    c.recv_inflight = false;
                } else if c.inbound.len() > INBOUND_HIGH_WATER {
                    self.cancel_recv(c, slot);
                }
                match res {
                    n if n > 0 => {}
                    0 => c.eof = true,
                    // ENOBUFS: every buffer was taken at once; the reader
                    // re-arms once it has taken what it has.
                    e if e == -libc::ECANCELED || e == -libc::ENOBUFS => {}
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

    /// Hands the bytes of each connection that just received a request
    /// to its hint, after every completion of the pass has been seen and
    /// before any task they woke runs.
    fn run_hints(&self) {
        let mut hinted = self.hinted.borrow_mut();
        if hinted.is_empty() {
            return;
        }
        let mut slots = self.slots.borrow_mut();
        for slot in hinted.drain(..) {
            if let Some(c) = slots.conn(slot)
                && let Some(hint) = &c.hint
            {
                hint(&c.inbound);
            }
        }
    }

    /// Counts `c` among this period's senders, once.
    fn count_sender(&self, c: &mut ConnState) {
        let mut a = self.activity.get();
        if c.seen != a.period {
            c.seen = a.period;
            a.senders += 1;
            self.activity.set(a);
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

    /// Arms the connection's multishot RECV, which stays armed until EOF,
    /// an error, a cancel or a moment with no free buffer.
    fn arm_recv(&self, c: &mut ConnState, slot: usize) {
        c.recv_inflight = true;
        let sqe = with_socket!(c, slot, |s| opcode::RecvMulti::new(s, RECV_GROUP)
            .build()
            .user_data(user_data(slot, OP_RECV)));
        // SAFETY: the buffers it fills belong to the reactor's ring, which
        // the reactor keeps registered as long as the ring lives.
        unsafe { self.push(sqe) };
    }

    /// Cancels the connection's RECV, unless a cancel is already on its way.
    fn cancel_recv(&self, c: &mut ConnState, slot: usize) {
        if !c.recv_inflight || c.cancel_inflight {
            return;
        }
        c.cancel_inflight = true;
        let sqe = opcode::AsyncCancel::new(user_data(slot, OP_RECV))
            .build()
            .user_data(user_data(slot, OP_CANCEL));
        // SAFETY: a cancel names no buffer.
        unsafe { self.push(sqe) };
    }

    /// Sends `c.sending[c.sent..]`.
    fn start_send(&self, c: &mut ConnState, slot: usize) {
        c.send_inflight = true;
        let rest = &c.sending[c.sent..];
        let sqe = with_socket!(c, slot, |s| opcode::Send::new(s, rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(slot, OP_SEND)));
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
        if c.fixed {
            // Drops the table's reference to the socket; a failure would
            // leave it open until the slot is reused, which replaces it.
            let _ = self.ring.borrow().submitter().register_files_update(slot as u32, &[-1]);
        }
        // SAFETY: the descriptor is ours and no operation uses it any more.
        unsafe { libc::close(c.fd) };
        slots.free(slot);
    }
}

/// What the reactor saw in the current activity period (see `Batching`).
#[derive(Clone, Copy, Default)]
struct Activity {
    period: u32,
    /// Connections that received bytes, each counted once.
    senders: u32,
}

/// How long an activity period lasts, in microseconds.
const PERIOD_US: u64 = 400;

/// Wake-ups batch once they find this many completions each, on average.
const BATCH_FROM: u32 = 4;

/// An executor alone waits for a quarter of the connections sending.
const SENDERS_PER_BATCHED: u32 = 4;

/// The most completions a batched wake-up waits for. Sixteen saved no
/// more CPU than eight at 50 clients, and widened p99 at 100 clients from
/// 1.07x Redis's to 1.22x.
const WAKE_BATCH_MAX: usize = 8;

/// The longest window of one of several executors, in microseconds.
const SHARED_WINDOW_US: u32 = 20;

/// How a busy driver batches its wake-ups.
///
/// Each wake-up of a blocked executor costs a context switch and, on a VM,
/// interrupts that are a large part of a request's CPU; the replies it
/// sends in a burst also wake each client once rather than per reply. So a
/// busy executor asks the kernel to wake it only once several completions
/// are ready, or once a window has passed since it blocked (and then at the
/// first completion).
///
/// Batching trades latency for CPU, so it is used only while wake-ups
/// already find several completions each (BATCH_FROM, on average): a
/// lightly loaded executor, whose wake-ups find one request each, wakes at
/// the first completion.
///
/// * **An executor alone** (one thread) waits for a quarter of the
///   connections that sent anything in the last period (PERIOD_US), at
///   most WAKE_BATCH_MAX, within `--wake_batch_us`. Clients that wait for
///   each reply before sending again come back in about one round trip of
///   all of them, so waiting for a quarter holds the first request of a
///   batch for about a quarter of that round trip, or less: seven clients
///   or fewer, who would stall waiting for each other, do not batch.
/// * **One of several executors** also serves hops from the other cores,
///   which wait on it, and a doorbell counts as one completion however
///   much work it brings. It waits for as many completions as its wake-ups
///   have been finding (at most WAKE_BATCH_MAX), within SHARED_WINDOW_US
///   or `--wake_batch_us` if that is shorter. Deeper batching measured
///   about 4% fewer GET/SET requests per second at two threads.
struct Batching {
    /// The window, from `--wake_batch_us`; 0 turns batching off.
    window_us: u32,
    alone: bool,
    period_ticks: u64,
    period_start: u64,
    /// Senders per period, as last measured.
    senders: u32,
    /// Completions found per wake-up, times 8, as a moving average.
    per_wake_x8: u32,
}

impl Batching {
    fn new(window_us: u32, alone: bool, now: u64) -> Batching {
        Batching {
            window_us,
            alone,
            period_ticks: crate::clock::us_to_ticks(PERIOD_US).max(1),
            period_start: now,
            senders: 0,
            per_wake_x8: 0,
        }
    }

    /// Ends the current period once it is over: learns from `seen`, what
    /// the reactor saw in it, and returns the activity to start the next
    /// one with.
    fn roll(&mut self, now: u64, seen: Activity) -> Option<Activity> {
        let elapsed = now.wrapping_sub(self.period_start);
        if elapsed < self.period_ticks {
            return None;
        }
        // A period stretched by a long block is scaled back to one.
        self.senders = (seen.senders as u64 * self.period_ticks / elapsed) as u32;
        self.period_start = now;
        Some(Activity {
            period: seen.period.wrapping_add(1),
            senders: 0,
        })
    }

    /// Learns from the first pass after a wake-up, which found `found`.
    fn woke(&mut self, found: usize) {
        self.per_wake_x8 = self.per_wake_x8 - self.per_wake_x8 / 8 + found.min(64) as u32;
    }

    /// The (window, completions) to block for, or None to wake at the first.
    fn plan(&self) -> Option<(u32, usize)> {
        if self.window_us == 0 || self.per_wake_x8 < BATCH_FROM * 8 {
            return None;
        }
        if !self.alone {
            let want = ((self.per_wake_x8 / 8) as usize).min(WAKE_BATCH_MAX);
            return Some((self.window_us.min(SHARED_WINDOW_US), want));
        }
        let want = ((self.senders / SENDERS_PER_BATCHED) as usize).min(WAKE_BATCH_MAX);
        (want >= 2).then_some((self.window_us, want))
    }
}

/// Runs passes while there is work; when idle for `spin` and alone on the
/// executor, blocks in the ring (see the module page).
///
/// Before it blocks, the driver gives the CPU away once (sched_yield) and
/// looks again. When another thread is runnable on this CPU (a client, or
/// the other executor of a 2-core box), it runs first, and its work (a
/// request, a job for this shard, a reply) is often there when the driver
/// looks again: no sleep, and no wake-up, which on a VM costs tens of
/// microseconds of latency and a context switch each. With two executors
/// and redis-benchmark sharing two cores, this took pipeline-1 GET from
/// 0.58x to about 1.0x of Redis's requests per second, and the CPU per
/// request from 1.8x to 0.9x. Alone on its CPU, the yield returns at once.
///
/// A busy driver blocks for a batch of completions (`Batching`).
async fn drive(reactor: Rc<Reactor>, spin: Duration, wake_batch_us: u32, alone: bool) {
    let spin_ticks = crate::clock::us_to_ticks(spin.as_micros() as u64);
    let mut idle_since: Option<u64> = None;
    let mut polls = super::task_polls();
    let mut batching = Batching::new(wake_batch_us, alone, crate::clock::ticks());
    let mut yielded = false;
    let mut just_woke = false;
    loop {
        let work = reactor.pass();
        if just_woke {
            batching.woke(work);
            just_woke = false;
        }
        let now = crate::clock::ticks();
        if let Some(next) = batching.roll(now, reactor.activity.get()) {
            reactor.activity.set(next);
        }
        let others_ran = super::task_polls() != polls;
        if work > 0 || others_ran {
            idle_since = None;
            yielded = false;
        } else {
            let since = *idle_since.get_or_insert(now);
            if now.wrapping_sub(since) >= spin_ticks {
                if !yielded {
                    std::thread::yield_now();
                    yielded = true;
                } else {
                    reactor.block(IDLE_WAIT, batching.plan());
                    idle_since = None;
                    yielded = false;
                    just_woke = true;
                }
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
        let mut slots = reactor.slots.borrow_mut();
        let slot = slots.insert(Slot::Conn(Box::new(ConnState {
            fd,
            fixed: false,
            inbound: BytesMut::new(),
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
            seen: u32::MAX,
            hint: None,
        })));
        if reactor.files
            && slot < FIXED_FILES as usize
            && reactor
                .ring
                .borrow()
                .submitter()
                .register_files_update(slot as u32, &[fd])
                .is_ok()
        {
            slots.conn(slot).expect("connection slot").fixed = true;
        }
        drop(slots);
        Stream { reactor, slot, fd }
    }

    /// Sets what to call with received bytes that start a request, while
    /// the reader waits for them: a chance to warm the cache for it before
    /// the reader runs. It must not use this stream.
    pub fn set_hint(&mut self, hint: super::Hint) {
        let mut slots = self.reactor.slots.borrow_mut();
        slots.conn(self.slot).expect("connection slot").hint = Some(hint);
    }

    pub async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut slots = self.reactor.slots.borrow_mut();
            let c = slots.conn(self.slot).expect("connection slot");
            if !c.inbound.is_empty() {
                let n = c.inbound.len();
                if buf.is_empty() {
                    std::mem::swap(buf, &mut c.inbound);
                } else {
                    buf.extend_from_slice(&c.inbound);
                    c.inbound.clear();
                }
                if c.inbound.capacity() > INBOUND_KEEP {
                    c.inbound = BytesMut::new();
                }
                if !c.recv_inflight && !c.eof && c.error.is_none() {
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
        self.reactor.cancel_recv(c, self.slot);
        self.reactor.maybe_close(&mut slots, self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One period in which `senders` connections sent.
    fn period(b: &mut Batching, senders: u32) {
        let now = b.period_start + b.period_ticks;
        b.roll(now, Activity { period: 0, senders })
            .expect("the period is over");
    }

    /// Wake-ups that found `found` completions each, for a while.
    fn wakes(b: &mut Batching, found: usize) {
        for _ in 0..64 {
            b.woke(found);
        }
    }

    fn busy(alone: bool, senders: u32) -> Batching {
        let mut b = Batching::new(200, alone, 0);
        period(&mut b, senders);
        wakes(&mut b, 12);
        b
    }

    #[test]
    fn an_executor_alone_waits_for_a_quarter_of_its_senders() {
        assert_eq!(busy(true, 24).plan(), Some((200, 6)));
        assert_eq!(busy(true, 8).plan(), Some((200, 2)));
        assert_eq!(busy(true, 500).plan(), Some((200, WAKE_BATCH_MAX)));
        // Seven or fewer would wait for each other.
        assert_eq!(busy(true, 7).plan(), None);
    }

    #[test]
    fn one_of_several_waits_for_what_its_wake_ups_find_briefly() {
        assert_eq!(busy(false, 50).plan(), Some((SHARED_WINDOW_US, WAKE_BATCH_MAX)));
        let mut b = busy(false, 50);
        wakes(&mut b, 5);
        assert_eq!(b.plan(), Some((SHARED_WINDOW_US, 5)));
        let mut short = Batching::new(10, false, 0);
        wakes(&mut short, 12);
        assert_eq!(short.plan(), Some((10, WAKE_BATCH_MAX)));
    }

    #[test]
    fn wake_ups_that_find_little_do_not_batch() {
        for alone in [true, false] {
            let mut b = busy(alone, 50);
            wakes(&mut b, 1);
            assert_eq!(b.plan(), None);
            // Load arriving: wake-ups find more, and batching returns.
            wakes(&mut b, 12);
            assert!(b.plan().is_some());
        }
    }

    #[test]
    fn a_long_block_scales_its_senders_to_one_period() {
        let mut b = busy(true, 50);
        // Ten periods' time in one, with 40 senders.
        let now = b.period_start + b.period_ticks * 10;
        b.roll(now, Activity { period: 0, senders: 40 }).expect("over");
        assert_eq!(b.senders, 4);
        assert_eq!(b.plan(), None);
    }

    #[test]
    fn no_window_means_no_batching() {
        for alone in [true, false] {
            let mut b = Batching::new(0, alone, 0);
            period(&mut b, 50);
            wakes(&mut b, 12);
            assert_eq!(b.plan(), None);
        }
    }

    #[test]
    fn a_period_rolls_only_once_over() {
        let mut b = Batching::new(200, true, 0);
        let seen = Activity { period: 7, senders: 3 };
        assert!(b.roll(b.period_ticks - 1, seen).is_none());
        let next = b.roll(b.period_ticks, seen).expect("over");
        assert_eq!((next.period, next.senders), (8, 0));
    }
}
