//! Shards, key routing, and running work on the core that owns a key.
//!
//! Core *i* owns shard *i* of every database. A key's shard comes from a
//! fixed hash of the key, or of its `{hash tag}` when it has one, so related
//! keys can be kept together. Work for another core's shard travels there as
//! a boxed closure through that shard's `Inbox`; the answer comes back
//! through a one-shot reply. With one core nothing crosses a thread.
//!
//! `Core::run_keyed` is the one door for single-shard work on keys: it runs
//! at once when the shard's lock table is idle, and otherwise waits its turn
//! behind locks that multi-shard operations hold (`locks.rs`, `tx.rs`).

pub mod barrier;
mod channel;
pub mod locks;
pub mod tx;

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;

pub use channel::{CoreWaker, Doorbell, Hint, Inbox, Job, ReplyRx, ReplyTx, Signal, oneshot};
use locks::Access;

use crate::db::{Db, Map};

/// Per-shard counters that INFO sums over all shards.
#[derive(Default, Clone, Debug)]
pub struct ShardStats {
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
}

pub struct Shard {
    pub id: usize,
    pub nshards: usize,
    pub dbs: Vec<Db>,
    pub locks: locks::LockTable,
    /// Clients blocked on a key (BLPOP and friends) wait on these.
    pub waiters: Map<(u16, Bytes), Vec<Arc<Signal>>>,
    /// WATCHed keys: how many sessions watch each, and its write version.
    watched: Map<(u16, Bytes), (u32, u64)>,
    /// Version source for watched keys; never repeats.
    watch_epoch: u64,
    pub stats: ShardStats,
    rng: u64,
    /// A barrier's request to borrow this shard (barrier.rs).
    pub loans: barrier::LoanDesk,
}

impl Shard {
    pub fn new(id: usize, nshards: usize, dbnum: usize) -> Shard {
        Shard {
            id,
            nshards,
            dbs: (0..dbnum).map(|_| Db::default()).collect(),
            locks: Default::default(),
            waiters: Default::default(),
            watched: Default::default(),
            watch_epoch: 0,
            stats: Default::default(),
            loans: Default::default(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (crate::db::now_ms() << 8) ^ id as u64,
        }
    }

    pub fn db(&mut self, index: u16) -> &mut Db {
        &mut self.dbs[index as usize]
    }

    /// A fast pseudo-random number (xorshift64*), for SPOP, RANDOMKEY etc.
    pub fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Starts watching `key`; returns its current version.
    pub fn watch(&mut self, db: u16, key: Bytes) -> u64 {
        let entry = self.watched.entry((db, key)).or_insert((0, 0));
        entry.0 += 1;
        entry.1
    }

    pub fn unwatch(&mut self, db: u16, key: &[u8]) {
        let id = (db, Bytes::copy_from_slice(key));
        if let Some(entry) = self.watched.get_mut(&id) {
            entry.0 -= 1;
            if entry.0 == 0 {
                self.watched.remove(&id);
            }
        }
    }

    pub fn watch_version(&self, db: u16, key: &[u8]) -> u64 {
        self.watched
            .get(&(db, Bytes::copy_from_slice(key)))
            .map_or(u64::MAX, |e| e.1)
    }

    pub fn has_watchers(&self) -> bool {
        !self.watched.is_empty()
    }

    /// Records a write to `key` for its WATCHers.
    pub fn touch_watched(&mut self, db: u16, key: &[u8]) {
        if self.watched.is_empty() {
            return;
        }
        if let Some(entry) = self.watched.get_mut(&(db, Bytes::copy_from_slice(key))) {
            self.watch_epoch += 1;
            entry.1 = self.watch_epoch;
        }
    }

    /// Records a write to every watched key of `db` (all databases: None).
    pub fn touch_all_watched(&mut self, db: Option<u16>) {
        for ((d, _), entry) in self.watched.iter_mut() {
            if db.is_none_or(|db| db == *d) {
                self.watch_epoch += 1;
                entry.1 = self.watch_epoch;
            }
        }
    }

    /// Records writes to everything a write lock covered.
    pub fn touch_access(&mut self, access: &Access) {
        match access {
            Access::Keys { db, keys, write: true } => keys.iter().for_each(|k| self.touch_watched(*db, k)),
            Access::Keys { .. } => {}
            Access::Global => self.touch_all_watched(None),
        }
    }

    /// Wakes every client blocked on `key`: it got new data.
    pub fn signal_key(&mut self, db: u16, key: &[u8]) {
        if self.waiters.is_empty() {
            return;
        }
        if let Some(list) = self.waiters.remove(&(db, Bytes::copy_from_slice(key))) {
            for s in list {
                s.fire();
            }
        }
    }

    /// Registers `signal` to fire on the next push to `key`.
    pub fn wait_for_key(&mut self, db: u16, key: Bytes, signal: Arc<Signal>) {
        let list = self.waiters.entry((db, key)).or_default();
        // Drop registrations whose clients gave up (only this map holds them).
        list.retain(|s| Arc::strong_count(s) > 1);
        list.push(signal);
    }
}

/// Hashes `key` to one of `nshards` shards, honouring `{hash tags}`.
pub fn shard_of(key: &[u8], nshards: usize) -> usize {
    if nshards == 1 {
        return 0;
    }
    (router_hash(hash_tag(key)) % nshards as u64) as usize
}

fn router_hash(data: &[u8]) -> u64 {
    // Fixed seeds: every core must route a key to the same shard.
    static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| ahash::RandomState::with_seeds(0x6d61_7966, 0x6c79_0001, 0x1234_5678, 0x0bad_cafe))
        .hash_one(data)
}

/// The part of `key` that decides its shard: the text between the first
/// `{` and the next `}`, when that is non-empty, else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// One executor's view: the shard it owns and the inboxes of all shards.
pub struct Core {
    pub id: usize,
    /// Reached through `own_shard`, never while lent out.
    shard: RefCell<Shard>,
    pub mesh: Arc<Vec<Inbox>>,
    /// Shards in hand while a script runs: every shard behind this core's
    /// global barrier (`barrier::Ticket::run`), or just this core's own for
    /// a script on its keys (`Core::with_own_shard`). `call_sync` reaches
    /// them directly.
    pub lent: RefCell<Option<Vec<Option<barrier::ShardPtr>>>>,
    /// This core's share of the global barrier.
    pub gate: barrier::Gate,
}

/// Empty polls a synchronous wait spins through before it starts yielding
/// the CPU between polls (a few microseconds).
const SPIN_POLLS: u32 = 256;

impl Core {
    pub fn new(id: usize, shard: Shard, mesh: Arc<Vec<Inbox>>) -> Core {
        Core {
            id,
            shard: RefCell::new(shard),
            mesh,
            lent: RefCell::new(None),
            gate: Default::default(),
        }
    }

    /// This core's shard. It must be home: every caller first waits in
    /// `until_home`, or holds a lock that keeps the shard from being lent.
    pub fn own_shard(&self) -> std::cell::RefMut<'_, Shard> {
        debug_assert!(self.is_home(), "this core's shard is lent out");
        self.shard.borrow_mut()
    }

    /// This core's shard if it is home and nothing here has it borrowed.
    pub fn try_own_shard(&self) -> Option<std::cell::RefMut<'_, Shard>> {
        if !self.is_home() {
            return None;
        }
        self.shard.try_borrow_mut().ok()
    }

    pub fn nshards(&self) -> usize {
        self.mesh.len()
    }

    pub fn shard_of(&self, key: &[u8]) -> usize {
        shard_of(key, self.nshards())
    }

    /// Runs `f` on shard `shard` regardless of locks (reads of counters,
    /// fan-outs that are not required to be atomic).
    pub async fn run_on<R, F>(&self, shard: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        if shard == self.id {
            self.until_home().await;
            return f(&mut self.own_shard());
        }
        let (tx, rx) = oneshot();
        self.mesh[shard].send(Box::new(move |sh| tx.send(f(sh))));
        rx.await.expect("a shard dropped a reply")
    }

    /// Runs `f` on the shard owning the keys once no lock blocks them.
    pub async fn run_keyed<R, F>(&self, shard: usize, db: u16, keys: &[Bytes], write: bool, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        if shard == self.id {
            self.until_home().await;
            let rx = {
                let mut sh = self.own_shard();
                if sh.locks.is_idle() {
                    return f(&mut sh);
                }
                let access = Access::Keys {
                    db,
                    keys: keys.to_vec(),
                    write,
                };
                let (tx, rx) = oneshot();
                locks::submit(&mut sh, access, false, Box::new(move |sh| tx.send(f(sh))));
                rx
            };
            return rx.await.expect("a shard dropped a reply");
        }
        self.send_keyed(shard, db, keys, write, f)
            .await
            .expect("a shard dropped a reply")
    }

    /// Sends `f` to another core's `shard`, to run once no lock blocks the
    /// keys; the reply comes back through the returned receiver.
    pub fn send_keyed<R, F>(&self, shard: usize, db: u16, keys: &[Bytes], write: bool, f: F) -> ReplyRx<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let hint = keys.first().map(|k| (db, crate::db::key_hash(k)));
        let keys = keys.to_vec();
        let (tx, rx) = oneshot();
        let job: Job = Box::new(move |sh| {
            locks::run_when_free(sh, || Access::Keys { db, keys, write }, move |sh| tx.send(f(sh)));
        });
        self.mesh[shard].send_hinted(job, hint);
        rx
    }

    /// Sends a single-key command's arguments to another core's `shard`:
    /// `f` runs there on them once the key (`args[key_at]`) is free. Like
    /// `send_keyed`, without a separate copy of the key for the common case
    /// where nothing is locked.
    pub fn send_args<R, F>(
        &self,
        shard: usize,
        db: u16,
        key_at: usize,
        write: bool,
        args: Vec<Bytes>,
        f: F,
    ) -> ReplyRx<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard, &[Bytes]) -> R + Send + 'static,
    {
        let hint = Some((db, crate::db::key_hash(&args[key_at])));
        let (tx, rx) = oneshot();
        let job: Job = Box::new(move |sh| {
            if sh.locks.is_idle() {
                tx.send(f(sh, &args));
            } else {
                let keys = vec![args[key_at].clone()];
                locks::submit(
                    sh,
                    Access::Keys { db, keys, write },
                    false,
                    Box::new(move |sh| tx.send(f(sh, &args))),
                );
            }
        });
        self.mesh[shard].send_hinted(job, hint);
        rx
    }

    /// Runs `f` on shard `shard` and waits for it, blocking this thread.
    ///
    /// Only for a caller that already holds what it needs (the locks of an
    /// EXEC or a script, or the global barrier), and cannot yield (a Lua
    /// callback). While it waits, this core keeps running work sent to its
    /// own shard, so two cores waiting on each other cannot deadlock. Under
    /// a global barrier every shard is in hand and nothing waits.
    pub fn call_sync<R, F>(&self, shard: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        if let Some(ptr) = self.lent_shard(shard) {
            // SAFETY: a lent shard is held exclusively by the script running
            // now (see `lent`), and this synchronous call is part of it.
            return f(unsafe { ptr.get() });
        }
        if shard == self.id {
            // Only a caller holding a lock here gets this far, and a shard
            // with a lock held is not lent.
            return f(&mut self.own_shard());
        }
        let (tx, rx) = oneshot();
        self.mesh[shard].send(Box::new(move |sh| tx.send(f(sh))));
        self.wait_sync(|| rx.try_take()).expect("a shard dropped a reply")
    }

    /// Polls `ready` until it gives a value, blocking this thread (see
    /// `call_sync`). Meanwhile it runs the jobs other cores send to this
    /// core's shard; with none, it spins a few microseconds, then yields
    /// the CPU between polls: the core it waits for may be waiting for this
    /// very CPU (two executors and a client on two cores).
    pub fn wait_sync<R>(&self, mut ready: impl FnMut() -> Option<R>) -> R {
        let mut idle_polls = 0u32;
        loop {
            if let Some(v) = ready() {
                return v;
            }
            if self.run_one_sent_job() {
                idle_polls = 0;
            } else if idle_polls < SPIN_POLLS {
                idle_polls += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Runs one job other cores sent to this core's shard, if any, from
    /// inside a synchronous wait. False when there was none.
    fn run_one_sent_job(&self) -> bool {
        if !self.is_home() {
            return false;
        }
        let Some(job) = self.mesh[self.id].try_take() else {
            return false;
        };
        match self.lent_shard(self.id) {
            // SAFETY: the shard is lent to the script waiting here, and the
            // job runs inside that same wait.
            Some(ptr) => job(unsafe { ptr.get() }),
            None => job(&mut self.own_shard()),
        }
        true
    }

    /// Runs `f` on `shard` if this core reaches it with no message: its
    /// own shard, at home or in the caller's hands, or one lent to it.
    pub fn with_shard_in_hand<R>(&self, shard: usize, f: impl FnOnce(&mut Shard) -> R) -> Option<R> {
        if let Some(ptr) = self.lent_shard(shard) {
            // SAFETY: as in `call_sync`, the running script holds the loan.
            return Some(f(unsafe { ptr.get() }));
        }
        (shard == self.id && self.is_home()).then(|| f(&mut self.own_shard()))
    }

    /// Whether a shard `with_shard_in_hand` reaches has a WATCHed key.
    pub fn watchers_in_hand(&self) -> bool {
        if let Some(shards) = self.lent.borrow().as_ref() {
            // SAFETY: as in `with_shard_in_hand`; this only reads.
            return shards.iter().flatten().any(|ptr| unsafe { ptr.get() }.has_watchers());
        }
        self.is_home() && self.own_shard().has_watchers()
    }

    fn lent_shard(&self, shard: usize) -> Option<barrier::ShardPtr> {
        self.lent.borrow().as_ref().and_then(|shards| shards[shard])
    }

    /// Runs `f` with this core's shard, which the caller holds as `shard`,
    /// in hand: `call_sync` reaches it through `shard` instead of borrowing
    /// it again. For a script running inside a job on its keys' shard.
    pub fn with_own_shard<R>(&self, shard: &mut Shard, f: impl FnOnce() -> R) -> R {
        let mut shards = vec![None; self.nshards()];
        shards[self.id] = Some(barrier::ShardPtr::new(shard));
        let saved = self.lent.replace(Some(shards));
        let result = f();
        *self.lent.borrow_mut() = saved;
        result
    }

    /// Runs `f` on every shard (not atomically) and collects the results in
    /// shard order.
    pub async fn run_on_all<R, F>(&self, f: F) -> Vec<R>
    where
        R: Send + 'static,
        F: Fn(&mut Shard) -> R + Send + Clone + 'static,
    {
        let mut pending = Vec::with_capacity(self.nshards());
        for shard in 0..self.nshards() {
            if shard != self.id {
                let (tx, rx) = oneshot();
                let f = f.clone();
                self.mesh[shard].send(Box::new(move |sh| tx.send(f(sh))));
                pending.push((shard, Some(rx)));
            } else {
                pending.push((shard, None));
            }
        }
        self.until_home().await;
        let local = f(&mut self.own_shard());
        let mut local = Some(local);
        let mut out = Vec::with_capacity(pending.len());
        for (_, rx) in pending {
            match rx {
                Some(rx) => out.push(rx.await.expect("a shard dropped a reply")),
                None => out.push(local.take().expect("one local shard")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_pick_the_braced_part() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"nobraces"), b"nobraces");
    }

    #[test]
    fn tagged_keys_share_a_shard() {
        for n in [2, 3, 8] {
            assert_eq!(shard_of(b"{t}a", n), shard_of(b"{t}b", n));
        }
        let spread: std::collections::HashSet<usize> =
            (0..100).map(|i| shard_of(format!("key:{i}").as_bytes(), 4)).collect();
        assert_eq!(spread.len(), 4);
    }
}
