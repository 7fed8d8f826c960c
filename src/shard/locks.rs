//! A shard's key locks and its queue of work waiting for them.
//!
//! Locks exist only while a multi-shard operation is in flight (see
//! `tx.rs`). A lock is shared (readers) or exclusive (a writer) on one key of
//! one database, or global: the whole shard. Work that conflicts with a held
//! lock, or with earlier work still waiting, joins a FIFO queue; every
//! release re-scans the queue and runs what has become free, in order.
//!
//! When nothing is locked and nothing waits (`is_idle`), callers skip this
//! module entirely: the common single-key command pays one branch.

use std::collections::VecDeque;

use bytes::Bytes;

use super::Shard;
use crate::db::Map;

/// What a piece of work touches on one shard.
#[derive(Clone, Debug)]
pub enum Access {
    Keys {
        db: u16,
        keys: Vec<Bytes>,
        write: bool,
    },
    /// Every key of every database on the shard.
    Global,
}

#[derive(Default)]
struct KeyLock {
    readers: u32,
    writer: bool,
}

/// Work waiting in the queue. `hold` work takes its locks and keeps them
/// until a matching `release`; other work runs once and takes nothing.
struct Waiting {
    access: Access,
    hold: bool,
    job: super::Job,
}

#[derive(Default)]
pub struct LockTable {
    held: Map<(u16, Bytes), KeyLock>,
    global: bool,
    queue: VecDeque<Waiting>,
}

impl LockTable {
    pub fn is_idle(&self) -> bool {
        !self.global && self.held.is_empty() && self.queue.is_empty()
    }

    /// Whether no work waits for a lock.
    pub fn nothing_waits(&self) -> bool {
        self.queue.is_empty()
    }

    fn conflicts_with_held(&self, access: &Access) -> bool {
        if self.global {
            return true;
        }
        match access {
            Access::Global => !self.held.is_empty(),
            Access::Keys { db, keys, write } => keys.iter().any(|k| {
                self.held
                    .get(&(*db, k.clone()))
                    .is_some_and(|l| l.writer || (*write && l.readers > 0))
            }),
        }
    }

    fn conflicts_with_queue(&self, access: &Access, upto: usize) -> bool {
        self.queue
            .iter()
            .take(upto)
            .any(|w| accesses_conflict(&w.access, access))
    }

    fn acquire(&mut self, access: &Access) {
        match access {
            Access::Global => self.global = true,
            Access::Keys { db, keys, write } => {
                for k in keys {
                    let lock = self.held.entry((*db, k.clone())).or_default();
                    if *write {
                        lock.writer = true;
                    } else {
                        lock.readers += 1;
                    }
                }
            }
        }
    }

    fn release_locks(&mut self, access: &Access) {
        match access {
            Access::Global => self.global = false,
            Access::Keys { db, keys, write } => {
                for k in keys {
                    let id = (*db, k.clone());
                    if let Some(lock) = self.held.get_mut(&id) {
                        if *write {
                            lock.writer = false;
                        } else {
                            lock.readers = lock.readers.saturating_sub(1);
                        }
                        if !lock.writer && lock.readers == 0 {
                            self.held.remove(&id);
                        }
                    }
                }
            }
        }
    }

    /// Takes the first queued item that is free to run now.
    fn take_runnable(&mut self) -> Option<Waiting> {
        let index = (0..self.queue.len()).find(|&i| {
            let access = &self.queue[i].access;
            !self.conflicts_with_held(access) && !self.conflicts_with_queue(access, i)
        })?;
        self.queue.remove(index)
    }
}

fn accesses_conflict(a: &Access, b: &Access) -> bool {
    match (a, b) {
        (Access::Global, _) | (_, Access::Global) => true,
        (
            Access::Keys {
                db: da,
                keys: ka,
                write: wa,
            },
            Access::Keys {
                db: db_,
                keys: kb,
                write: wb,
            },
        ) => da == db_ && (*wa || *wb) && ka.iter().any(|k| kb.contains(k)),
    }
}

/// Whether work with `access` may run right now on `shard`.
pub fn can_run_now(shard: &Shard, access: &Access) -> bool {
    let locks = &shard.locks;
    locks.is_idle() || (!locks.conflicts_with_held(access) && !locks.conflicts_with_queue(access, locks.queue.len()))
}

/// Runs `job` at once when nothing is locked or waiting (one branch), else
/// once `access()` is free. For work that takes no lock.
pub fn run_when_free(
    shard: &mut Shard,
    access: impl FnOnce() -> Access,
    job: impl FnOnce(&mut Shard) + Send + 'static,
) {
    if shard.locks.is_idle() {
        job(shard);
    } else {
        submit(shard, access(), false, Box::new(job));
    }
}

/// Runs `job` now if `access` is free, else queues it. With `hold`, the
/// locks are taken first and kept until `release`.
pub fn submit(shard: &mut Shard, access: Access, hold: bool, job: super::Job) {
    if can_run_now(shard, &access) {
        if hold {
            shard.locks.acquire(&access);
        }
        job(shard);
    } else {
        shard.locks.queue.push_back(Waiting { access, hold, job });
        if shard.locks.global {
            shard.loans.recall();
        }
    }
}

/// Releases locks taken by held work, then runs whatever became free.
pub fn release(shard: &mut Shard, access: &Access) {
    shard.locks.release_locks(access);
    pump(shard);
}

fn pump(shard: &mut Shard) {
    while let Some(w) = shard.locks.take_runnable() {
        if w.hold {
            shard.locks.acquire(&w.access);
        }
        (w.job)(shard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn keys(write: bool, names: &[&str]) -> Access {
        Access::Keys {
            db: 0,
            keys: names.iter().map(|n| Bytes::copy_from_slice(n.as_bytes())).collect(),
            write,
        }
    }

    type Log = Arc<Mutex<Vec<&'static str>>>;

    fn log_job(log: &Log, name: &'static str) -> crate::shard::Job {
        let log = log.clone();
        Box::new(move |_| log.lock().unwrap().push(name))
    }

    #[test]
    fn writes_wait_for_held_locks_and_run_in_order() {
        let mut shard = Shard::new(0, 1, 16);
        let log: Log = Default::default();
        submit(&mut shard, keys(true, &["a", "b"]), true, log_job(&log, "tx"));
        submit(&mut shard, keys(true, &["a"]), false, log_job(&log, "w1"));
        submit(&mut shard, keys(false, &["c"]), false, log_job(&log, "other"));
        submit(&mut shard, keys(false, &["a"]), false, log_job(&log, "r1"));
        assert_eq!(*log.lock().unwrap(), vec!["tx", "other"]);
        release(&mut shard, &keys(true, &["a", "b"]));
        assert_eq!(*log.lock().unwrap(), vec!["tx", "other", "w1", "r1"]);
        assert!(shard.locks.is_idle());
    }

    #[test]
    fn readers_share_and_global_waits_for_all() {
        let mut shard = Shard::new(0, 1, 16);
        let log: Log = Default::default();
        submit(&mut shard, keys(false, &["a"]), true, log_job(&log, "r1"));
        submit(&mut shard, keys(false, &["a"]), true, log_job(&log, "r2"));
        submit(&mut shard, Access::Global, true, log_job(&log, "global"));
        submit(&mut shard, keys(false, &["z"]), false, log_job(&log, "after"));
        assert_eq!(*log.lock().unwrap(), vec!["r1", "r2"]);
        release(&mut shard, &keys(false, &["a"]));
        assert_eq!(log.lock().unwrap().len(), 2);
        release(&mut shard, &keys(false, &["a"]));
        assert_eq!(*log.lock().unwrap(), vec!["r1", "r2", "global"]);
        release(&mut shard, &Access::Global);
        assert_eq!(*log.lock().unwrap(), vec!["r1", "r2", "global", "after"]);
    }
}
