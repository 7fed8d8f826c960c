//! MULTI, EXEC, DISCARD, WATCH and UNWATCH.
//!
//! Between MULTI and EXEC commands are checked (name, arity) and queued. EXEC
//! works out every key the queued commands and the WATCHed keys touch, locks
//! them all on their shards in ascending shard order (`shard::tx`), or takes
//! the global barrier when a command's keys cannot be known in advance (KEYS,
//! FLUSHDB, a script that touches undeclared keys, several databases). Under
//! those locks it checks the WATCHed versions, then runs the queue with the
//! session in atomic mode, so each command reaches its shard directly. No
//! other client can see part of the transaction.
//!
//! WATCH registers a key on its shard, which bumps the key's version on every
//! write to it. EXEC fails (a null reply) if any watched version moved.

use bytes::Bytes;

use super::{BoxFut, CommandSpec, Exec, execute, spec};
use crate::cmd::flags::*;
use crate::resp::Reply;
use crate::server::Session;
use crate::shard::locks::Access;
use crate::shard::tx;

pub const COMMANDS: &[CommandSpec] = &[
    spec(
        "multi",
        1,
        FAST | NOSCRIPT | LOADING | STALE,
        (0, 0, 0),
        Exec::Conn(multi),
    ),
    spec("exec", 1, NOSCRIPT | LOADING | STALE, (0, 0, 0), Exec::Conn(exec)),
    spec(
        "discard",
        1,
        FAST | NOSCRIPT | LOADING | STALE,
        (0, 0, 0),
        Exec::Conn(discard),
    ),
    spec(
        "watch",
        -2,
        FAST | NOSCRIPT | LOADING | STALE,
        (1, -1, 1),
        Exec::Conn(watch),
    ),
    spec(
        "unwatch",
        1,
        FAST | NOSCRIPT | LOADING | STALE,
        (0, 0, 0),
        Exec::Conn(unwatch),
    ),
];

/// Commands that run at once even inside MULTI.
pub fn runs_inside_multi(name: &str) -> bool {
    matches!(name, "exec" | "discard" | "multi" | "watch" | "quit" | "reset")
}

/// A transaction being queued.
#[derive(Default)]
pub struct MultiState {
    pub queue: Vec<(&'static CommandSpec, Vec<Bytes>)>,
    /// A command was rejected while queuing: EXEC must abort.
    pub failed: bool,
}

/// A key this session WATCHes, with its version when watched.
#[derive(Clone, Debug)]
pub struct Watched {
    pub db: u16,
    pub key: Bytes,
    pub version: u64,
}

/// MULTI
fn multi(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if session.multi.is_some() {
            return Reply::Error("ERR MULTI calls can not be nested");
        }
        session.multi = Some(MultiState::default());
        session.info.borrow_mut().multi = 0;
        Reply::OK
    })
}

/// DISCARD
fn discard(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if session.multi.take().is_none() {
            return Reply::Error("ERR DISCARD without MULTI");
        }
        session.info.borrow_mut().multi = -1;
        unwatch_all(session).await;
        Reply::OK
    })
}

/// WATCH key [key ...]
fn watch(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if session.multi.is_some() {
            return Reply::Error("ERR WATCH inside MULTI is not allowed");
        }
        let db = session.db;
        for key in &args[1..] {
            if session.watched.iter().any(|w| w.db == db && w.key == key) {
                continue;
            }
            let shard = session.core().shard_of(key);
            let k = key.clone();
            let version = session.run_on(shard, move |sh| sh.watch(db, k)).await;
            session.watched.push(Watched {
                db,
                key: key.clone(),
                version,
            });
        }
        Reply::OK
    })
}

/// UNWATCH
fn unwatch(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        unwatch_all(session).await;
        Reply::OK
    })
}

/// Drops every WATCH of this session.
pub async fn unwatch_all(session: &mut Session) {
    for w in std::mem::take(&mut session.watched) {
        let shard = session.core().shard_of(&w.key);
        session.run_on(shard, move |sh| sh.unwatch(w.db, &w.key)).await;
    }
}

/// What EXEC must lock: keys of one database, or everything.
enum LockSet {
    Keys { db: u16, keys: Vec<Bytes>, write: bool },
    Global,
}

fn lock_set(session: &Session, queue: &[(&'static CommandSpec, Vec<Bytes>)]) -> LockSet {
    let mut db = session.db;
    let mut dbs_seen = vec![db];
    let mut keys: Vec<Bytes> = session
        .watched
        .iter()
        .inspect(|w| dbs_seen.push(w.db))
        .map(|w| w.key.clone())
        .collect();
    let mut write = false;
    for (spec, args) in queue {
        if spec.name == "select" {
            if let Ok(n) = super::parse::int(&args[1]) {
                db = n as u16;
                dbs_seen.push(db);
            }
            continue;
        }
        match spec.key_args(args) {
            Some(ks) => keys.extend(ks),
            None => return LockSet::Global,
        }
        write |= spec.is_write();
    }
    dbs_seen.dedup();
    if dbs_seen.iter().any(|d| *d != dbs_seen[0]) {
        return LockSet::Global;
    }
    keys.sort();
    keys.dedup();
    LockSet::Keys {
        db: dbs_seen[0],
        keys,
        write,
    }
}

/// EXEC
fn exec(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let Some(state) = session.multi.take() else {
            return Reply::Error("ERR EXEC without MULTI");
        };
        session.info.borrow_mut().multi = -1;
        if state.failed {
            unwatch_all(session).await;
            return Reply::Error("EXECABORT Transaction discarded because of previous errors.");
        }
        let node = session.node.clone();
        let core = &node.core;
        let parts = match lock_set(session, &state.queue) {
            LockSet::Global => (0..core.nshards()).map(|s| (s, Access::Global)).collect(),
            LockSet::Keys { db, keys, write } => tx::group_keys(core, &keys)
                .into_iter()
                .map(|(shard, keys)| (shard, Access::Keys { db, keys, write }))
                .collect(),
        };
        let held = tx::lock(core, parts).await;
        let replies = if watched_changed(session) {
            None
        } else {
            Some(run_queue(session, state.queue).await)
        };
        drop(held);
        unwatch_all(session).await;
        match replies {
            None => Reply::NilArray,
            Some(r) => Reply::Array(r),
        }
    })
}

/// Whether a watched key was written since WATCH. Runs under EXEC's locks.
fn watched_changed(session: &Session) -> bool {
    let core = session.core();
    session.watched.iter().any(|w| {
        let (db, key, version) = (w.db, w.key.clone(), w.version);
        core.call_sync(core.shard_of(&key), move |sh| sh.watch_version(db, &key) != version)
    })
}

/// Runs queued commands with the session in atomic mode.
async fn run_queue(session: &mut Session, queue: Vec<(&'static CommandSpec, Vec<Bytes>)>) -> Vec<Reply> {
    session.atomic = true;
    let mut replies = Vec::with_capacity(queue.len());
    for (spec, args) in queue {
        replies.push(execute(session, spec, args).await);
    }
    session.atomic = false;
    replies
}
