//! Cross-core plumbing: a shard's inbox, one-shot replies and wake signals.
//!
//! All three use a waker stored behind a tiny mutex. Glommio accepts wakes
//! from foreign threads (it queues them and kicks the parked executor through
//! its eventfd), so a sender on core A can wake a task on core B.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::Shard;

/// Work sent to the core that owns a shard.
pub type Job = Box<dyn FnOnce(&mut Shard) + Send>;

/// A shard's inbox: any core may send, only the owner drains.
pub struct Inbox {
    tx: crossbeam_channel::Sender<Job>,
    rx: crossbeam_channel::Receiver<Job>,
    waker: Mutex<Option<Waker>>,
    sleeping: AtomicBool,
}

impl Default for Inbox {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Inbox {
            tx,
            rx,
            waker: Mutex::new(None),
            sleeping: AtomicBool::new(false),
        }
    }
}

impl Inbox {
    pub fn send(&self, job: Job) {
        // The receiver lives as long as the inbox, so send cannot fail.
        let _ = self.tx.send(job);
        if self.sleeping.swap(false, Ordering::SeqCst)
            && let Some(w) = self.waker.lock().expect("inbox waker").take()
        {
            w.wake();
        }
    }

    /// Takes one job, if any, without waiting.
    pub fn try_take(&self) -> Option<Job> {
        self.rx.try_recv().ok()
    }

    /// Takes up to `max` jobs; registers `cx`'s waker when there are none.
    /// Returns Ready(jobs) when there was work, Pending when asleep.
    pub fn poll_drain(&self, cx: &mut Context<'_>, max: usize, into: &mut Vec<Job>) -> Poll<()> {
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
            *self.waker.lock().expect("inbox waker") = Some(cx.waker().clone());
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
    waker: Option<Waker>,
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
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A one-time wake-up, e.g. "a key you are blocked on got a push".
#[derive(Default)]
pub struct Signal {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
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
        *self.0.waker.lock().expect("signal") = Some(cx.waker().clone());
        if self.0.fired.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
