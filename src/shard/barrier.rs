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
//! holder core H                               every other core C, ascending
//! hold Global on its own shard (tx.rs)
//! ask C for Global and a loan  ------------>  queue for Global like any
//!                                             transaction; once granted, the
//! wait for the loan  <----------------------  loan task hands out &mut Shard
//!                                             and C stops touching its shard
//! run global scripts of H's connections,      C keeps serving its sockets and
//!   each reaching every shard directly        any work that needs no shard;
//!   (Core::lent, Core::call_sync)             work on its shard waits
//! return every loan  ---------------------->  C releases Global, runs what
//! release Global on its own shard             queued, and is home again
//! ```
//!
//! # One barrier, many scripts
//!
//! Taking the barrier costs a round trip per other core, far more than a
//! short script. So global scripts share it: they all run on one core,
//! `HOME` (script/mod.rs sends them there from other cores), the first one
//! takes the barrier (an *epoch*), scripts that arrive while it is being
//! taken or held join, up to `EPOCH_MAX`, and the last one to finish gives
//! it back. Scripts take numbered places as they arrive and each epoch
//! admits the next `EPOCH_MAX` places, so a script that waited for one
//! epoch is in the next: none can be overtaken for good. Joining never jumps a queue on another shard: work there waits
//! for the Global locks, which are released at the end of the epoch. Between
//! two scripts of an epoch the holder's core runs its other tasks; their
//! work on shards waits behind the Global locks.
//!
//! An epoch that ends while nothing else wants any shard keeps its loans:
//! the next epoch starts at once if scripts wait, else the barrier lingers
//! for `LINGER` in case more come. Work that then queues behind a Global
//! lock ends the linger at once: on the holder's core the lock table wakes
//! the reaper (`LoanDesk::recall`); a lender with work for its shard sends
//! the holder a recall. Under a steady stream of global scripts the loans
//! never travel.
//!
//! # Why it is safe
//!
//! * **Exclusive access.** While its shard is out, a lender runs no work on
//!   it: every place that reaches a core's own shard first waits until the
//!   shard is home (`Core::until_home`). The holder's scripts run one at a
//!   time, synchronously, so they are the only code touching any shard. The
//!   loan goes out and comes back through one-shot replies, whose mutex
//!   orders every write before the other side reads.
//! * **No deadlock.** Global locks are taken in ascending shard order, as
//!   any transaction takes its locks, and a lender's core keeps running:
//!   a coordinator there that holds locks elsewhere finishes its work and
//!   releases them, since it needs nothing from the lent shard (it holds no
//!   lock there, or Global would not have been granted). Two cores taking
//!   the barrier at once order themselves on the locks. An epoch ends once
//!   its admitted scripts finish (they wait for nothing but the barrier),
//!   and a lingering one within `LINGER`, sooner if work wants a shard. The
//!   reaper also ends a renewed epoch that nobody joins, so no epoch can
//!   be left held with no script to end it.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::ptr::NonNull;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::locks::{self, Access};
use super::tx::hold;
use super::{Core, ReplyTx, Shard, oneshot};

/// The core that global scripts run on, whichever core their client is on.
pub const HOME: usize = 0;

/// How long an epoch that ran out of scripts keeps the barrier, in case
/// more come, when nothing else wants any shard.
const LINGER: Duration = Duration::from_micros(200);

/// Scripts one epoch admits before later ones wait for the next.
const EPOCH_MAX: u64 = 32;

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

/// What a holder gets for a loan: the shard, and the way to give it back.
type Loan = (ShardPtr, ReplyTx<()>);

/// A shard's pending request for a loan: set by the Global lock's grant,
/// served by its core's loan task (`serve_loans`) once nothing on that core
/// has the shard borrowed.
#[derive(Default)]
pub struct LoanDesk {
    asked: Option<(ReplyTx<Loan>, usize)>,
    server: Option<Waker>,
    /// The holder's epoch reaper, while its epoch lingers (`reap_idle`).
    reaper: Option<Waker>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    #[default]
    Idle,
    Acquiring,
    Held,
}

/// One core's share of the barrier: the current epoch, and whether its own
/// shard is out on loan.
#[derive(Default)]
pub struct Gate {
    state: RefCell<GateState>,
    away: Cell<bool>,
    /// While away: the core holding the shard.
    lent_to: Cell<usize>,
    /// Tasks waiting for the shard to come home.
    homecoming: RefCell<Vec<Waker>>,
}

#[derive(Default)]
struct GateState {
    phase: Phase,
    /// When the epoch ran out of scripts, while it lingers.
    idle_since: Option<Instant>,
    /// The epoch reaper, waiting for an epoch to go idle.
    reaper: Option<Waker>,
    /// Tickets alive in this epoch.
    users: usize,
    /// Places handed out so far, one per `enter`.
    entered: u64,
    /// Places up to this one may join the current epoch (or start one).
    admit_upto: u64,
    /// Other cores' shards, while held.
    remote: Vec<Option<ShardPtr>>,
    /// How to give each of them back.
    returns: Vec<ReplyTx<()>>,
    waiters: Vec<Waker>,
}

/// A place in an epoch. Dropping the last one ends the epoch.
pub struct Ticket<'a> {
    core: &'a Core,
}

/// Waits until this core holds the barrier, taking it if nobody is.
pub async fn enter(core: &Core) -> Ticket<'_> {
    // Places go in order of arrival: join the current epoch if it admits
    // this place, else wait for one that does.
    let place = {
        let mut g = core.gate.state.borrow_mut();
        g.entered += 1;
        g.entered
    };
    let leader = poll_fn(|cx| {
        let mut g = core.gate.state.borrow_mut();
        if place > g.admit_upto && g.phase == Phase::Idle {
            // A new epoch takes the next places, this one at least.
            g.admit_upto = (g.admit_upto + EPOCH_MAX).max(place);
        }
        if place > g.admit_upto {
            g.waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        g.users += 1;
        if g.phase != Phase::Idle {
            return Poll::Ready(false);
        }
        g.phase = Phase::Acquiring;
        Poll::Ready(true)
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

/// Takes the Global lock of every shard, ascending, with a loan of each
/// other core's shard (see the module page).
async fn acquire(core: &Core) {
    let mut remote = vec![None; core.nshards()];
    let mut returns = Vec::new();
    for (shard, slot) in remote.iter_mut().enumerate() {
        if shard == core.id {
            hold(core, shard, Access::Global).await;
            continue;
        }
        let (tx, rx) = oneshot::<Loan>();
        let holder = core.id;
        core.mesh[shard].send(Box::new(move |sh| {
            locks::submit(sh, Access::Global, true, Box::new(move |sh| sh.loans.ask(tx, holder)));
        }));
        let (ptr, back) = rx.await.expect("a shard dropped a loan");
        *slot = Some(ptr);
        returns.push(back);
    }
    let mut g = core.gate.state.borrow_mut();
    g.remote = remote;
    g.returns = returns;
    g.phase = Phase::Held;
    g.waiters.drain(..).for_each(Waker::wake);
}

impl LoanDesk {
    /// Asks for this shard on loan; its Global lock is held for the asker.
    fn ask(&mut self, tx: ReplyTx<Loan>, holder: usize) {
        debug_assert!(self.asked.is_none(), "two loans of one shard");
        self.asked = Some((tx, holder));
        if let Some(server) = self.server.take() {
            server.wake();
        }
    }

    /// Work is waiting behind this shard's Global lock, here or on a
    /// lender: a lingering epoch should end now.
    pub fn recall(&mut self) {
        if let Some(reaper) = self.reaper.take() {
            reaper.wake();
        }
    }
}

/// A core's loan task: lends its shard when a barrier's holder asks, and
/// takes it back. Runs for the life of the executor.
pub async fn serve_loans(core: &Core) {
    loop {
        let (asked, holder) = poll_fn(|cx| {
            let mut sh = core.own_shard();
            match sh.loans.asked.take() {
                Some(tx) => Poll::Ready(tx),
                None => {
                    sh.loans.server = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        let (back, returned) = oneshot::<()>();
        core.gate.away.set(true);
        core.gate.lent_to.set(holder);
        // The pointer comes from the cell itself: nothing on this core
        // borrows the shard until it is home (`Core::until_home`).
        let shard = NonNull::new(core.shard.as_ptr()).expect("a shard has an address");
        asked.send((ShardPtr(shard), back));
        // A holder that died with the loan leaves nothing to wait for.
        let _ = returned.await;
        core.gate.away.set(false);
        core.mesh[core.id].set_homesick(false);
        // The scripts told the WATCHers of each key they wrote
        // (`Core::with_shard_in_hand`).
        locks::release(&mut core.own_shard(), &Access::Global);
        core.gate.homecoming.take().into_iter().for_each(Waker::wake);
        // Let the woken work queue behind the next holder's Global lock
        // before the shard can leave again, so it cannot be starved.
        futures_lite::future::yield_now().await;
    }
}

impl Core {
    /// Whether this core's shard is here, not lent to a barrier's holder.
    pub fn is_home(&self) -> bool {
        !self.gate.away.get()
    }

    /// Waits until this core's shard is home. Every place that borrows the
    /// shard waits here first, with no await between this and the borrow.
    pub async fn until_home(&self) {
        poll_fn(|cx| {
            if self.is_home() {
                return Poll::Ready(());
            }
            self.gate.homecoming.borrow_mut().push(cx.waker().clone());
            // The holder gives the shard back at the end of its epoch, or
            // at once if its epoch lingers.
            if !self.mesh[self.id].is_homesick() {
                self.mesh[self.id].set_homesick(true);
                self.mesh[self.gate.lent_to.get()].send(Box::new(|sh| sh.loans.recall()));
            }
            Poll::Pending
        })
        .await
    }
}

impl Ticket<'_> {
    /// Runs `f` with every shard in hand: `Core::call_sync` reaches each
    /// one directly while it runs.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let core = self.core;
        let mut local = core.own_shard();
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
        {
            let mut g = core.gate.state.borrow_mut();
            g.users -= 1;
            if g.users > 0 || g.phase != Phase::Held {
                return;
            }
        }
        // The scripts told the WATCHers of each key they wrote.
        let mut sh = core.own_shard();
        locks::release(&mut sh, &Access::Global);
        let mut g = core.gate.state.borrow_mut();
        if !(sh.locks.is_idle() && lenders_content(core, &g.remote)) {
            drop(sh);
            give_back(&mut g);
            return;
        }
        // Nothing else wants any shard: keep the barrier, for the scripts
        // that wait, or for a moment in case more come (`reap_idle`).
        locks::submit(&mut sh, Access::Global, true, Box::new(|_| {}));
        drop(sh);
        // The next epoch admits the next places: those of scripts that
        // wait, which join at once, or those of scripts yet to come.
        g.admit_upto = g.admit_upto.min(g.entered) + EPOCH_MAX;
        g.waiters.drain(..).for_each(Waker::wake);
        // Should no script join, the reaper ends the epoch.
        g.idle_since = Some(Instant::now());
        if let Some(reaper) = g.reaper.take() {
            reaper.wake();
        }
    }
}

/// A core's epoch reaper: ends an epoch that has run out of scripts once it
/// has lingered `LINGER`, or as soon as other work wants a shard. Runs for
/// the life of the executor.
pub async fn reap_idle(core: &Core) {
    loop {
        let since = poll_fn(|cx| {
            let mut g = core.gate.state.borrow_mut();
            match g.idle_since {
                Some(since) if g.phase == Phase::Held && g.users == 0 => Poll::Ready(since),
                _ => {
                    g.reaper = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        let wanted = poll_fn(|cx| {
            let g = core.gate.state.borrow();
            let mut sh = core.own_shard();
            if sh.locks.nothing_waits() && lenders_content(core, &g.remote) {
                sh.loans.reaper = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(())
        });
        let left = LINGER.saturating_sub(since.elapsed());
        futures_lite::future::or(wanted, crate::server::net::sleep(left)).await;
        core.own_shard().loans.reaper = None;
        {
            let g = core.gate.state.borrow();
            // A script may have joined meanwhile; the epoch's end decides again.
            if g.phase != Phase::Held || g.users > 0 || g.idle_since != Some(since) {
                continue;
            }
        }
        // As at an epoch's end, the released lock's queue runs with the
        // gate not borrowed.
        locks::release(&mut core.own_shard(), &Access::Global);
        give_back(&mut core.gate.state.borrow_mut());
    }
}

/// Ends an epoch whose own shard's Global lock is released: returns the
/// loans, each lender releasing its own lock once its shard is back.
fn give_back(g: &mut GateState) {
    g.idle_since = None;
    for back in g.returns.drain(..) {
        back.send(());
    }
    g.remote.clear();
    g.phase = Phase::Idle;
    g.waiters.drain(..).for_each(Waker::wake);
}

/// Whether no lender has work waiting for its shard: none queued for a
/// lock, none sent, and no task of its own waiting for the shard.
fn lenders_content(core: &Core, remote: &[Option<ShardPtr>]) -> bool {
    remote.iter().enumerate().all(|(shard, ptr)| {
        let Some(ptr) = ptr else { return true };
        // SAFETY: the shard is lent to this core, and no script runs now.
        let queued = !unsafe { ptr.get() }.locks.nothing_waits();
        !queued && core.mesh[shard].is_empty() && !core.mesh[shard].is_homesick()
    })
}
