//! How a command reaches shards.
//!
//! Normally through the lock protocol (`shard::tx`): single-key work waits
//! behind locks, multi-shard work takes them in order. Inside EXEC and Lua
//! scripts the session already holds every lock it needs (or the global
//! barrier); it is then `atomic`, and the same calls reach shards directly
//! and synchronously (`Core::call_sync`), so a command's future completes
//! on its first poll. Commands use only these methods, never the core's
//! directly, so one command body serves both worlds.

use bytes::Bytes;

use crate::server::Session;
use crate::shard::tx::{self, Held};
use crate::shard::{Core, Shard};

impl Session {
    pub fn core(&self) -> &Core {
        &self.node.core
    }

    /// Runs `f` on the shard owning `keys` once they are free.
    pub async fn run_keyed<R, F>(&self, shard: usize, keys: &[Bytes], write: bool, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let f = self.touching(keys, write, f);
        if self.atomic {
            return self.core().call_sync(shard, f);
        }
        self.core().run_keyed(shard, self.db, keys, write, f).await
    }

    /// `f`, followed by telling WATCHers of `keys` when it writes.
    fn touching<R, F>(&self, keys: &[Bytes], write: bool, f: F) -> impl FnOnce(&mut Shard) -> R + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let db = self.db;
        let touched = if write { keys.to_vec() } else { Vec::new() };
        move |sh: &mut Shard| {
            let result = f(sh);
            touched.iter().for_each(|k| sh.touch_watched(db, k));
            result
        }
    }

    /// Runs `f` on `shard` without regard to locks (counters, iteration).
    pub async fn run_on<R, F>(&self, shard: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        if self.atomic {
            return self.core().call_sync(shard, f);
        }
        self.core().run_on(shard, f).await
    }

    /// Runs `f` on every shard; results in shard order.
    pub async fn run_on_all<R, F>(&self, f: F) -> Vec<R>
    where
        R: Send + 'static,
        F: Fn(&mut Shard) -> R + Send + Clone + 'static,
    {
        if self.atomic {
            let core = self.core();
            return (0..core.nshards()).map(|s| core.call_sync(s, f.clone())).collect();
        }
        self.core().run_on_all(f).await
    }

    /// Runs `f` on every shard behind the global barrier.
    pub async fn run_global<R, F>(&self, f: F) -> Vec<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + Clone + 'static,
    {
        if self.atomic {
            let core = self.core();
            return (0..core.nshards()).map(|s| core.call_sync(s, f.clone())).collect();
        }
        tx::run_global(self.core(), f).await
    }

    /// Locks `keys` of database `db` for a multi-round operation.
    pub async fn lock_keys(&self, db: u16, write: bool, keys: &[Bytes]) -> Held<'_> {
        if self.atomic {
            return tx::already_held(self.core());
        }
        tx::lock_keys(self.core(), db, write, keys).await
    }

    /// Runs one op per part atomically across shards; results in part order.
    pub async fn run_parts<R, F>(&self, write: bool, parts: Vec<tx::Part<F>>) -> Vec<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        if self.atomic {
            let core = self.core();
            return parts.into_iter().map(|p| core.call_sync(p.shard, p.op)).collect();
        }
        tx::run_atomic(self.core(), self.db, write, parts).await
    }
}
