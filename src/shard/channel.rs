//! Cross-core plumbing: a shard's inbox, one-shot replies and wake signals.
//!
//! All three keep their waiter's waker behind a tiny mutex, as a `CoreWaker`:
//! the waker plus the `Doorbell` of the executor it belongs to.
//!
//! # Waking a task on another core
//!
//! glommio's own path for a wake from a foreign thread queues the waker and
//! only looks at that queue between task-queue runs, or after parking with
//! a membarrier and an eventfd read. Both are slow on this VM, and the
//! socket driver (`server::net`) keeps its executor busy or blocked in its
//! own io_uring ring, where glommio's eventfd cannot reach it.
//!
//! So an executor running the socket driver installs a doorbell: a queue of
//! wakers plus an eventfd that the driver keeps a READ armed on. A wake from
//! another core pushes the waker onto the owner's doorbell and writes the
//! eventfd only when the driver is blocked. The driver wakes the queued
//! tasks locally on its next pass. Without a doorbell (the glommio socket
//! backend, unit tests) a wake goes to glommio as before.

use std::cell::Cell;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::Shard;

/// Where other cores leave wake-ups for one executor.
pub struct Doorbell {
    eventfd: RawFd,
    /// The owner is blocked waiting for I/O: a wake must write the eventfd.
    blocked: AtomicBool,
    /// `wakes` may be non-empty: lets the owner skip the lock when idle.
    pending: AtomicBool,
    wakes: Mutex<Vec<Waker>>,
}

thread_local! {
    static DOORBELL: Cell<Option<&'static Doorbell>> = const { Cell::new(None) };
}

impl Doorbell {
    /// Creates this thread's doorbell. It lives as long as the process.
    pub fn install() -> std::io::Result<&'static Doorbell> {
        // SAFETY: plain syscall; the result is checked.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if eventfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let bell: &'static Doorbell = Box::leak(Box::new(Doorbell {
            eventfd,
            blocked: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            wakes: Mutex::new(Vec::new()),
        }));
        DOORBELL.with(|d| d.set(Some(bell)));
        Ok(bell)
    }

    /// This thread's doorbell, if it has one.
    pub fn current() -> Option<&'static Doorbell> {
        DOORBELL.with(|d| d.get())
    }

    /// The eventfd that a wake writes while the owner is blocked.
    pub fn eventfd(&self) -> RawFd {
        self.eventfd
    }

    /// Leaves `waker` for the owner (called from another thread).
    fn ring(&self, waker: Waker) {
        self.wakes.lock().expect("doorbell").push(waker);
        self.pending.store(true, Ordering::SeqCst);
        if self.blocked.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: an 8-byte write to an eventfd this process owns.
            unsafe { libc::write(self.eventfd, &one as *const u64 as *const libc::c_void, 8) };
        }
    }

    /// Moves the wakers left by other cores into `into`.
    pub fn take_wakes(&self, into: &mut Vec<Waker>) {
        if !self.pending.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut wakes = self.wakes.lock().expect("doorbell");
        into.append(&mut wakes);
    }

    /// Announces that the owner is about to block. False if wakes are
    /// already waiting, in which case it must not block.
    pub fn prepare_to_block(&self) -> bool {
        self.blocked.store(true, Ordering::SeqCst);
        if !self.pending.load(Ordering::SeqCst) {
            return true;
        }
        self.blocked.store(false, Ordering::SeqCst);
        false
    }

    pub fn unblocked(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

/// A task's waker together with its executor's doorbell.
pub struct CoreWaker {
    waker: Waker,
    bell: Option<&'static Doorbell>,
}

impl CoreWaker {
    /// The waker of the task polling with `cx`, on this thread.
    pub fn new(cx: &Context<'_>) -> CoreWaker {
        CoreWaker {
            waker: cx.waker().clone(),
            bell: Doorbell::current(),
        }
    }

    /// Wakes the task, from its own thread or any other.
    pub fn wake(self) {
        match self.bell {
            Some(bell) if !Doorbell::current().is_some_and(|own| std::ptr::eq(own, bell)) => bell.ring(self.waker),
            _ => self.waker.wake(),
        }
    }
}

/// Work sent to the core that owns a shard.
pub type Job = Box<dyn FnOnce(&mut Shard) + Send>;

/// The entry a job will look up first, as (database, `db::key_hash`): the
/// owner prefetches the entries of a batch of jobs before running them.
pub type Hint = Option<(u16, u64)>;

/// A shard's inbox: any core may send, only the owner drains.
pub struct Inbox {
    tx: crossbeam_channel::Sender<(Job, Hint)>,
    rx: crossbeam_channel::Receiver<(Job, Hint)>,
    waker: Mutex<Option<CoreWaker>>,
    sleeping: AtomicBool,
    /// The owner has lent its shard out (barrier.rs) and has work waiting
    /// for it to come home.
    homesick: AtomicBool,
}

impl Default for Inbox {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Inbox {
            tx,
            rx,
            waker: Mutex::new(None),
            sleeping: AtomicBool::new(false),
            homesick: AtomicBool::new(false),
        }
    }
}

impl Inbox {
    pub fn send(&self, job: Job) {
        self.send_hinted(job, None);
    }

    /// Sends a job that will look up the entry `hint` names.
    pub fn send_hinted(&self, job: Job, hint: Hint) {
        // The receiver lives as long as the inbox, so send cannot fail.
        let _ = self.tx.send((job, hint));
        if self.sleeping.swap(false, Ordering::SeqCst)
            && let Some(w) = self.waker.lock().expect("inbox waker").take()
        {
            w.wake();
        }
    }

    /// Whether no job waits here.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    pub fn set_homesick(&self, homesick: bool) {
        self.homesick.store(homesick, Ordering::SeqCst);
    }

    pub fn is_homesick(&self) -> bool {
        self.homesick.load(Ordering::SeqCst)
    }

    /// Takes one job, if any, without waiting.
    pub fn try_take(&self) -> Option<Job> {
        self.rx.try_recv().ok().map(|(job, _)| job)
    }

    /// Takes up to `max` jobs; registers `cx`'s waker when there are none.
    /// Returns Ready(jobs) when there was work, Pending when asleep.
    pub fn poll_drain(&self, cx: &mut Context<'_>, max: usize, into: &mut Vec<(Job, Hint)>) -> Poll<()> {
        loop {
            while into.len() < max {
                match self.rx.try_recv() {
                    Ok(job) => into.push(job),
                    Err(_) => break,
                }
            }
            if !into.is_empty() {
                return Poll::Ready(());
            }
            *self.waker.lock().expect("inbox waker") = Some(CoreWaker::new(cx));
            self.sleeping.store(true, Ordering::SeqCst);
            if self.rx.is_empty() {
                return Poll::Pending;
            }
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

struct OneshotState<T> {
    value: Option<T>,
    waker: Option<CoreWaker>,
    sender_gone: bool,
}

/// The sending half of a one-shot reply.
pub struct ReplyTx<T> {
    state: Arc<Mutex<OneshotState<T>>>,
    sent: bool,
}

/// The receiving half: a future of `Option<T>` (None if the sender vanished).
pub struct ReplyRx<T> {
    state: Arc<Mutex<OneshotState<T>>>,
}

pub fn oneshot<T>() -> (ReplyTx<T>, ReplyRx<T>) {
    let state = Arc::new(Mutex::new(OneshotState {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (
        ReplyTx {
            state: state.clone(),
            sent: false,
        },
        ReplyRx { state },
    )
}

impl<T> ReplyTx<T> {
    pub fn send(mut self, value: T) {
        self.sent = true;
        let waker = {
            let mut st = self.state.lock().expect("oneshot");
            st.value = Some(value);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for ReplyTx<T> {
    fn drop(&mut self) {
        if self.sent {
            return;
        }
        let waker = {
            let mut st = self.state.lock().expect("oneshot");
            st.sender_gone = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> ReplyRx<T> {
    /// The value if it has arrived; Some(None) if the sender vanished.
    pub fn try_take(&self) -> Option<Option<T>> {
        let mut st = self.state.lock().expect("oneshot");
        if let Some(v) = st.value.take() {
            return Some(Some(v));
        }
        st.sender_gone.then_some(None)
    }
}

impl<T> Future for ReplyRx<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut st = self.state.lock().expect("oneshot");
        if let Some(v) = st.value.take() {
            return Poll::Ready(Some(v));
        }
        if st.sender_gone {
            return Poll::Ready(None);
        }
        st.waker = Some(CoreWaker::new(cx));
        Poll::Pending
    }
}

/// A one-time wake-up, e.g. "a key you are blocked on got a push".
#[derive(Default)]
pub struct Signal {
    fired: AtomicBool,
    waker: Mutex<Option<CoreWaker>>,
}

impl Signal {
    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().expect("signal").take() {
            w.wake();
        }
    }

    pub fn wait(self: &Arc<Self>) -> SignalWait {
        SignalWait(self.clone())
    }
}

pub struct SignalWait(Arc<Signal>);

impl Future for SignalWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        *self.0.waker.lock().expect("signal") = Some(CoreWaker::new(cx));
        if self.0.fired.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
