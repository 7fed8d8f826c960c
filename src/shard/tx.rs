//! Atomic operations that span shards.
//!
//! A multi-key command (MSET, MGET, DEL, RENAME, SUNIONSTORE, ...) whose
//! keys live on several shards runs as a small transaction coordinated by
//! the connection's core:
//!
//! ```text
//! parts = keys grouped by shard, sorted by shard id: s1 < s2 < ... < sn
//! for s in s1 .. s(n-1):   hold(s, keys_s)          -- wait for the grant
//! run(sn, keys_sn, op_sn)                           -- lock-free when granted
//! for s in s1 .. s(n-1):   op_s; release(s)         -- all in parallel
//! ```
//!
//! * **Isolation.** While the transaction runs, every key it touches is
//!   either locked (others queue behind it), or already shows its new value
//!   with the shards before it still locked. Nobody can read a new value on
//!   one shard and then an old one on another: the old ones are locked until
//!   they become new.
//! * **No deadlock.** Locks are only ever taken in ascending shard order, and
//!   the last shard's step takes no lock at all, so no cycle of waiters can
//!   form. Waiting never blocks a core: a waiting coordinator is an async
//!   task, and the waiting work on a shard sits in its FIFO queue.
//! * **Reads and writes.** Reads take shared locks and writes exclusive ones;
//!   a single-key command waits only when its key is locked against it.
//! * **Global.** `Access::Global` locks a whole shard; taking it on every
//!   shard in order is the barrier behind FLUSHALL, and the first step of
//!   a global script's barrier (`barrier.rs`).
//!
//! Cost for two shards, coordinator on one of them: two hops.

use bytes::Bytes;

use super::locks::{self, Access};
use super::{Core, Shard, oneshot};

/// One shard's share of a transaction.
pub struct Part<F> {
    pub shard: usize,
    pub keys: Vec<Bytes>,
    pub op: F,
}

/// Runs every part's `op` atomically with respect to all other work on those
/// keys. Results come back in the order the parts were given.
pub async fn run_atomic<R, F>(core: &Core, db: u16, write: bool, parts: Vec<Part<F>>) -> Vec<R>
where
    R: Send + 'static,
    F: FnOnce(&mut Shard) -> R + Send + 'static,
{
    let access_of = |keys: Vec<Bytes>| Access::Keys { db, keys, write };
    run_parts(
        core,
        parts.into_iter().map(|p| (p.shard, access_of(p.keys), p.op)).collect(),
    )
    .await
}

/// Runs `op` on every shard at once, with every shard locked: a global
/// barrier. Results come back in shard order.
pub async fn run_global<R, F>(core: &Core, op: F) -> Vec<R>
where
    R: Send + 'static,
    F: FnOnce(&mut Shard) -> R + Send + Clone + 'static,
{
    let parts = (0..core.nshards()).map(|s| (s, Access::Global, op.clone())).collect();
    run_parts(core, parts).await
}

async fn run_parts<R, F>(core: &Core, parts: Vec<(usize, Access, F)>) -> Vec<R>
where
    R: Send + 'static,
    F: FnOnce(&mut Shard) -> R + Send + 'static,
{
    let n = parts.len();
    let mut order: Vec<(usize, (usize, Access, F))> = parts.into_iter().enumerate().collect();
    order.sort_by_key(|(_, (shard, _, _))| *shard);
    let mut results: Vec<Option<R>> = (0..n).map(|_| None).collect();

    let (last_index, (last_shard, last_access, last_op)) = order.pop().expect("at least one part");
    // Phase 1: hold every shard but the last, in ascending order.
    for (_, (shard, access, _)) in &order {
        hold(core, *shard, access.clone()).await;
    }
    // Phase 2: the last shard runs as soon as its keys are free.
    results[last_index] = Some(run_when_free(core, last_shard, last_access, last_op).await);
    // Phase 3: run on the held shards and release them, in parallel.
    let mut pending = Vec::new();
    let mut local = None;
    for (index, (shard, access, op)) in order {
        if shard == core.id {
            local = Some((index, access, op));
            continue;
        }
        let (tx, rx) = oneshot();
        core.mesh[shard].send(Box::new(move |sh| {
            let r = op(sh);
            locks::release(sh, &access);
            tx.send(r);
        }));
        pending.push((index, rx));
    }
    if let Some((index, access, op)) = local {
        // Held locks keep the shard home.
        let mut sh = core.own_shard();
        results[index] = Some(op(&mut sh));
        locks::release(&mut sh, &access);
    }
    for (index, rx) in pending {
        results[index] = Some(rx.await.expect("a shard dropped a reply"));
    }
    results.into_iter().map(|r| r.expect("every part ran")).collect()
}

/// Takes `access` on `shard` and keeps it; resolves once granted.
pub(super) async fn hold(core: &Core, shard: usize, access: Access) {
    let (tx, rx) = oneshot::<()>();
    let job = move |sh: &mut Shard| locks::submit(sh, access, true, Box::new(move |_| tx.send(())));
    if shard == core.id {
        core.until_home().await;
        job(&mut core.own_shard());
    } else {
        core.mesh[shard].send(Box::new(job));
    }
    rx.await.expect("a shard dropped a grant");
}

/// Runs `op` on `shard` once `access` is free, taking no lock.
async fn run_when_free<R, F>(core: &Core, shard: usize, access: Access, op: F) -> R
where
    R: Send + 'static,
    F: FnOnce(&mut Shard) -> R + Send + 'static,
{
    let (tx, rx) = oneshot();
    let job = move |sh: &mut Shard| locks::submit(sh, access, false, Box::new(move |sh| tx.send(op(sh))));
    if shard == core.id {
        core.until_home().await;
        job(&mut core.own_shard());
    } else {
        core.mesh[shard].send(Box::new(job));
    }
    rx.await.expect("a shard dropped a reply")
}

/// Locks held on several shards across several rounds of work: the form of
/// transaction that needs to look before it writes (MSETNX, RENAME, the
/// STORE commands). Dropping it releases every lock.
pub struct Held<'a> {
    core: &'a Core,
    parts: Vec<(usize, Access)>,
    /// The caller already holds every lock (EXEC, scripts): take none and
    /// reach shards synchronously.
    direct: bool,
}

/// Takes `parts` (any order; taken in ascending shard order) and keeps them.
pub async fn lock(core: &Core, mut parts: Vec<(usize, Access)>) -> Held<'_> {
    parts.sort_by_key(|(shard, _)| *shard);
    for (shard, access) in &parts {
        hold(core, *shard, access.clone()).await;
    }
    Held {
        core,
        parts,
        direct: false,
    }
}

/// A `Held` for a caller that already holds its locks: it takes none.
pub fn already_held(core: &Core) -> Held<'_> {
    Held {
        core,
        parts: Vec::new(),
        direct: true,
    }
}

/// Groups `keys` by owning shard.
pub fn group_keys(core: &Core, keys: &[Bytes]) -> Vec<(usize, Vec<Bytes>)> {
    let mut by_shard: Vec<(usize, Vec<Bytes>)> = Vec::new();
    for key in keys {
        let shard = core.shard_of(key);
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, ks)) => ks.push(key.clone()),
            None => by_shard.push((shard, vec![key.clone()])),
        }
    }
    by_shard
}

/// Locks `keys` (any shards) of one database for a multi-round operation.
pub async fn lock_keys<'a>(core: &'a Core, db: u16, write: bool, keys: &[Bytes]) -> Held<'a> {
    let parts = group_keys(core, keys)
        .into_iter()
        .map(|(shard, keys)| (shard, Access::Keys { db, keys, write }))
        .collect();
    lock(core, parts).await
}

impl Held<'_> {
    /// Runs `op` on `shard`, which must be one this transaction holds.
    pub async fn run<R, F>(&self, shard: usize, op: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        if self.direct {
            return self.core.call_sync(shard, op);
        }
        debug_assert!(self.parts.iter().any(|(s, _)| *s == shard));
        self.core.run_on(shard, op).await
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for (shard, access) in self.parts.drain(..) {
            // Writes under these locks may have changed any locked key:
            // WATCHers of those keys must see a new version.
            let release = move |sh: &mut Shard| {
                sh.touch_access(&access);
                locks::release(sh, &access);
            };
            if shard == self.core.id {
                release(&mut self.core.own_shard());
            } else {
                self.core.mesh[shard].send(Box::new(release));
            }
        }
    }
}
