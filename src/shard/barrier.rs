//! The global barrier that scripts touching undeclared keys run behind.
//!
//! Such a script may touch any key of any shard, with many small calls. As
//! messages, each call would cost a cross-core round trip, plus a wake-up
//! when the owner sleeps. Instead the other cores *lend* their shards: the
//! script reaches every shard directly, with no message per call.
//!
//! # Who sends what to whom
//!
//! ```text
//! holder core H                             every other core C
//! hold Global on every shard, ascending --  as any transaction (tx.rs);
//!                                           no core is parked yet
//! send a lend job to each C  ------------>  lend: reply with its &mut Shard,
//! wait for every loan  <-----------------   then park the thread until the
//!                                           loan comes back
//! run global scripts of H's connections,
//!   each reaching every shard directly
//!   (Core::lent, Core::call_sync)
//! return every loan: flag + unpark  ----->  the lend job ends; C's loop
//! release the Global locks  ------------->  resumes and runs what queued
//! ```
//!
//! # One barrier, many scripts
//!
//! Taking the barrier costs two round trips and wakes every core, far more
//! than a short script. So the global scripts of one core share it: the
//! first one takes it (an *epoch*), scripts that arrive while it is being
//! taken or held join, up to `EPOCH_MAX`, and the last one to finish gives
//! it back. Joining never jumps a queue on another core: scripts of other
//! cores wait for the Global locks, which are released at the end of the
//! epoch, like any other work. Between two scripts of an epoch the holder's
//! core runs its other tasks; their work waits behind the Global locks.
//!
//! # Why it is safe
//!
//! * **Exclusive access.** A lender hands out the `&mut Shard` its job was
//!   given and does nothing until the loan comes back. The holder's scripts
//!   run one at a time, synchronously, so they are the only code touching
//!   any shard. The return flag is stored with Release and read with
//!   Acquire, so the lender sees every write.
//! * **No deadlock.** Loans are asked for only once every Global lock is
//!   held, so no transaction anywhere holds a lock, and no coordinator on a
//!   parked lender can be one the holder waits for. Two cores taking the
//!   barrier at once order themselves on the locks like any transactions.
//!   A lend job that reaches a core spinning in `call_sync` or a script's
//!   `run_sync` runs there; that core was waiting on a shard the holder has
//!   locked anyway. An epoch ends once its admitted scripts finish, and
//!   they wait for nothing but the barrier.

use std::cell::RefCell;
use std::future::poll_fn;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use super::locks::{self, Access};
use super::tx::hold;
use super::{Core, ReplyTx, Shard, oneshot};

/// Scripts one epoch admits before later ones wait for the next.
const EPOCH_MAX: usize = 32;

/// A shard lent across cores under the barrier.
#[derive(Clone, Copy)]
pub struct ShardPtr(NonNull<Shard>);

// SAFETY: a ShardPtr is only created by a lender that then stops touching
// its shard until the loan returns (see the module page); `Shard` itself is
// `Send` (checked below), so another thread may use it meanwhile.
unsafe impl Send for ShardPtr {}

const _: () = {
    const fn shard_is_send<T: Send>() {}
    shard_is_send::<Shard>();
};

impl ShardPtr {
    pub fn new(shard: &mut Shard) -> ShardPtr {
        ShardPtr(NonNull::from(shard))
    }

    /// # Safety
    /// The caller holds the loan (or the shard's own `RefMut`) and nothing
    /// else touches the shard meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut Shard {
        // SAFETY: forwarded to the caller.
        unsafe { &mut *self.0.as_ptr() }
    }
}

/// The lender's side of a loan: set when its shard comes back.
struct Loan {
    returned: AtomicBool,
    lender: std::thread::Thread,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    #[default]
    Idle,
    Acquiring,
    Held,
}

/// One core's share of the barrier: the current epoch.
#[derive(Default)]
pub struct Gate {
    state: RefCell<GateState>,
}

#[derive(Default)]
struct GateState {
    phase: Phase,
    /// Tickets alive in this epoch.
    users: usize,
    /// Tickets this epoch has handed out.
    admitted: usize,
    /// Other cores' shards, while held.
    remote: Vec<Option<ShardPtr>>,
    loans: Vec<Arc<Loan>>,
    waiters: Vec<Waker>,
}

/// A place in an epoch. Dropping the last one ends the epoch.
pub struct Ticket<'a> {
    core: &'a Core,
}

/// Waits until this core holds the barrier, taking it if nobody is.
pub async fn enter(core: &Core) -> Ticket<'_> {
    // Join the current epoch, or wait for one that admits us.
    let leader = poll_fn(|cx| {
        let mut g = core.gate.state.borrow_mut();
        match g.phase {
            Phase::Idle => {
                g.phase = Phase::Acquiring;
                g.users = 1;
                g.admitted = 1;
                Poll::Ready(true)
            }
            _ if g.admitted < EPOCH_MAX => {
                g.users += 1;
                g.admitted += 1;
                Poll::Ready(false)
            }
            _ => {
                g.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await;
    let ticket = Ticket { core };
    if leader {
        acquire(core).await;
    } else {
        poll_fn(|cx| {
            let mut g = core.gate.state.borrow_mut();
            if g.phase == Phase::Held {
                return Poll::Ready(());
            }
            g.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
    ticket
}

/// Takes the Global locks, then the loans (see the module page).
async fn acquire(core: &Core) {
    for shard in 0..core.nshards() {
        hold(core, shard, Access::Global).await;
    }
    let mut pending = Vec::new();
    for shard in (0..core.nshards()).filter(|&s| s != core.id) {
        let (tx, rx) = oneshot::<(ShardPtr, Arc<Loan>)>();
        core.mesh[shard].send(Box::new(move |sh| lend(sh, tx)));
        pending.push((shard, rx));
    }
    let mut remote = vec![None; core.nshards()];
    let mut loans = Vec::new();
    for (shard, rx) in pending {
        let (ptr, loan) = rx.await.expect("a shard dropped a loan");
        remote[shard] = Some(ptr);
        loans.push(loan);
    }
    let mut g = core.gate.state.borrow_mut();
    g.remote = remote;
    g.loans = loans;
    g.phase = Phase::Held;
    g.waiters.drain(..).for_each(Waker::wake);
}

/// Runs on a lender's core: hands out its shard and waits for it back.
fn lend(shard: &mut Shard, tx: ReplyTx<(ShardPtr, Arc<Loan>)>) {
    let loan = Arc::new(Loan {
        returned: AtomicBool::new(false),
        lender: std::thread::current(),
    });
    tx.send((ShardPtr(NonNull::from(&mut *shard)), loan.clone()));
    while !loan.returned.load(Ordering::Acquire) {
        std::thread::park();
    }
}

impl Ticket<'_> {
    /// Runs `f` with every shard in hand: `Core::call_sync` reaches each
    /// one directly while it runs.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let core = self.core;
        let mut local = core.shard.borrow_mut();
        let shards = {
            let g = core.gate.state.borrow();
            let mut shards = g.remote.clone();
            shards[core.id] = Some(ShardPtr(NonNull::from(&mut *local)));
            shards
        };
        *core.lent.borrow_mut() = Some(shards);
        let result = f();
        *core.lent.borrow_mut() = None;
        drop(local);
        result
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let core = self.core;
        let mut g = core.gate.state.borrow_mut();
        g.users -= 1;
        if g.users > 0 || g.phase != Phase::Held {
            return;
        }
        for loan in g.loans.drain(..) {
            loan.returned.store(true, Ordering::Release);
            loan.lender.unpark();
        }
        g.remote.clear();
        g.phase = Phase::Idle;
        g.admitted = 0;
        g.waiters.drain(..).for_each(Waker::wake);
        drop(g);
        // Scripts may have written anything: every shard's WATCHers hear so.
        let release = |sh: &mut Shard| {
            sh.touch_access(&Access::Global);
            locks::release(sh, &Access::Global);
        };
        for shard in 0..core.nshards() {
            if shard == core.id {
                release(&mut core.shard.borrow_mut());
            } else {
                core.mesh[shard].send(Box::new(release));
            }
        }
    }
}
