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
//! When nothing is WATCHed and every queued command is a single-key one,
//! EXEC instead sends each shard its commands as one job, and the jobs run
//! as one multi-shard transaction (`tx::run_atomic`): a hop per shard in
//! all, rather than a lock round trip per shard and a hop per command.
//! Commands on different shards touch different keys, so running each
//! shard's share in order gives the replies the queue's order would.
//!
//! WATCH registers a key on its shard, which bumps the key's version on every
//! write to it. EXEC fails (a null reply) if any watched version moved.

use bytes::Bytes;

use super::{BoxFut, CommandSpec, Exec, KeyOp, OpCtx, execute, spec};
use crate::cmd::flags::*;
use crate::resp::Reply;
use crate::server::Session;
use crate::shard::locks::Access;
use crate::shard::{Shard, tx};

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
        if session.watched.is_empty()
            && let Some(batches) = single_key_batches(session, &state.queue)
        {
            return Reply::Array(run_batches(session, batches, state.queue.len()).await);
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

/// One queued single-key command: its place in the queue, its op and
/// arguments, and where its key is.
struct Queued {
    index: usize,
    op: KeyOp,
    args: Vec<Bytes>,
    key_at: usize,
    write: bool,
}

/// The queue's commands grouped by the shard of their key, in queue order
/// within each shard; None unless every command has exactly one key.
fn single_key_batches(
    session: &Session,
    queue: &[(&'static CommandSpec, Vec<Bytes>)],
) -> Option<Vec<(usize, Vec<Queued>)>> {
    if queue.is_empty() {
        return None;
    }
    let core = session.core();
    let mut batches: Vec<(usize, Vec<Queued>)> = Vec::new();
    for (index, (spec, args)) in queue.iter().enumerate() {
        let Exec::Key(op) = spec.exec else { return None };
        let key_at = spec.first_key as usize;
        if spec.key_args(args)?.len() != 1 || args.len() <= key_at {
            return None;
        }
        let shard = core.shard_of(&args[key_at]);
        let queued = Queued {
            index,
            op,
            args: args.clone(),
            key_at,
            write: spec.is_write(),
        };
        match batches.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, batch)) => batch.push(queued),
            None => batches.push((shard, vec![queued])),
        }
    }
    Some(batches)
}

/// Runs each shard's batch as a part of one transaction; replies in queue
/// order.
async fn run_batches(session: &Session, batches: Vec<(usize, Vec<Queued>)>, count: usize) -> Vec<Reply> {
    let db = session.db;
    let write = batches.iter().flat_map(|(_, b)| b).any(|q| q.write);
    let parts = batches
        .into_iter()
        .map(|(shard, batch)| {
            let mut keys: Vec<Bytes> = batch.iter().map(|q| q.args[q.key_at].clone()).collect();
            keys.sort();
            keys.dedup();
            let op = move |sh: &mut Shard| {
                let replies: Vec<(usize, Reply)> = batch
                    .into_iter()
                    .map(|q| {
                        let reply = (q.op)(&mut OpCtx::new(sh, db), &q.args);
                        if q.write {
                            sh.touch_watched(db, &q.args[q.key_at]);
                        }
                        (q.index, reply)
                    })
                    .collect();
                replies
            };
            tx::Part { shard, keys, op }
        })
        .collect();
    let mut replies: Vec<Option<Reply>> = (0..count).map(|_| None).collect();
    for (index, reply) in session.run_parts(write, parts).await.into_iter().flatten() {
        replies[index] = Some(reply);
    }
    replies
        .into_iter()
        .map(|r| r.expect("every queued command ran"))
        .collect()
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
