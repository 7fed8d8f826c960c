//! Lua scripting: EVAL, EVALSHA and SCRIPT, with Dragonfly's script flags.
//!
//! # How a script runs
//!
//! `mode::decide` maps a script's flags and the shards of its declared keys
//! to one of five modes:
//!
//! * **OneShard** (the default, when every declared key lives on one
//!   shard): the whole script runs on that shard's core, in one job, once
//!   no lock covers its keys (`on_owner`). Nothing else runs there
//!   meanwhile, and its calls reach the shard with no hops.
//! * **EveryShard** (the default when the declared keys live on every
//!   shard, as any keys not all on one shard do at two shards): the script
//!   runs behind the global barrier, below, as a global script does.
//! * **LockAhead** (the default otherwise): the declared keys are locked on
//!   their shards, in ascending shard order, for the whole run
//!   (`shard::tx`), so the script is atomic.
//! * In these three, every `redis.call` must touch only declared keys, or
//!   it fails with `script tried accessing undeclared key`.
//! * **Global** (`allow-undeclared-keys`): a global transaction. The
//!   script travels to the barrier's home core, which takes
//!   `Access::Global` on every shard in ascending order: each shard first
//!   finishes the work ahead of it in its queue, then pauses, and its core
//!   lends the shard (`shard::barrier`), so the script, which may touch any
//!   key of any database, reaches every shard directly with no message per
//!   call; then every shard resumes. Global scripts share one barrier
//!   while they keep coming. Other connections stay connected and their
//!   commands wait in the shards' queues; none fails, and a lending core
//!   keeps answering what needs no shard.
//! * **NonAtomic** (`disable-atomicity`): Dragonfly lets each call stand
//!   alone. Mayfly runs such a script as if the flag were absent (behind
//!   the barrier when it may touch undeclared keys, else with its keys
//!   locked), which is stronger than asked. A call that waited for a lock
//!   would have to block this core from inside a Lua callback (PUC Lua 5.1
//!   cannot yield there), and the lock's holder may be a transaction this
//!   very core coordinates: a deadlock.
//!
//! In the atomic modes, the script's calls run in a session in atomic mode
//! (`cmd::access`): a call to a key on this core runs inline; a call to
//! another core's shard blocks this core in `Core::call_sync` until the
//! owner answers. Lua callbacks are synchronous, so blocking is the only
//! option without coroutines, and it is safe:
//!
//! * **Two global scripts at once** run one after the other on the home
//!   core, in one epoch or in two; only that core ever blocks in them.
//! * **A global script meets a MULTI in flight**: EXEC also locks in
//!   ascending order, so one of the two is entirely ahead of the other in
//!   every shard's queue.
//! * **Lock-ahead scripts on disjoint keys** can run at the same time on
//!   two cores and call into each other's shards: a core blocked in
//!   `call_sync` keeps running the work others send to its shard, so each
//!   answers the other.
//!
//! # Next step: no flag at all
//!
//! To make undeclared-key scripts work without flags, a lock-ahead script
//! that touches an undeclared key would be rolled back and run again as a
//! global transaction, its SHA remembered. Everything a script writes goes
//! through `cmd::execute` with the script's session, the one place where an
//! undo log of (key, previous entry) pairs can be recorded before each
//! write; `CallCtx` is where that log would live.

pub mod busy;
mod convert;
pub mod flags;
mod lib;
pub mod mode;
pub mod store;
mod vm;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::db::parse_i64;
use crate::error;
use crate::resp::{Protocol, Reply};
use crate::server::{ClientInfo, Node, Session};
use crate::shard::locks::{self, Access};
use crate::shard::{ReplyTx, Shard, barrier, oneshot, tx};
use flags::Flags;
use mode::Mode;
use store::{Script, store};

/// The error for an unknown SHA.
pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// The keys an EVAL-family call declares, or None when it must lock
/// everything (its script may touch undeclared keys).
pub fn eval_keys(args: &[Bytes], by_sha: bool) -> Option<Vec<Bytes>> {
    let sha = if by_sha {
        String::from_utf8_lossy(&args[1]).to_ascii_lowercase()
    } else {
        store::sha1_hex(&args[1])
    };
    if let Some(script) = store().get(&sha)
        && store().effective_flags(&script).contains(Flags::ALLOW_UNDECLARED_KEYS)
    {
        return None;
    }
    Some(crate::cmd::numkeys_at(args, 2))
}

/// EVAL / EVALSHA / EVAL_RO / EVALSHA_RO.
pub async fn eval(session: &mut Session, args: Vec<Bytes>, by_sha: bool, read_only: bool) -> Reply {
    let numkeys = match parse_i64(&args[2]) {
        None => return Reply::Error(error::NOT_INTEGER),
        Some(n) if n < 0 => return Reply::Error("ERR Number of keys can't be negative"),
        Some(n) if n as usize > args.len() - 3 => return Reply::Error(error::NUMKEYS_TOO_BIG),
        Some(n) => n as usize,
    };
    let script = if by_sha {
        match store().get(&String::from_utf8_lossy(&args[1])) {
            Some(s) => s,
            None => return Reply::Error(NOSCRIPT),
        }
    } else {
        match store().load(&args[1]) {
            Ok(s) => s,
            Err(e) => return Reply::ErrorOwned(e),
        }
    };
    let keys = args[3..3 + numkeys].to_vec();
    let argv = args[3 + numkeys..].to_vec();
    let flags = store().effective_flags(&script);
    let read_only = read_only || flags.contains(Flags::NO_WRITES);
    let core = session.core();
    let key_shards: Vec<usize> = keys.iter().map(|k| core.shard_of(k)).collect();
    let mode = mode::decide(flags, &key_shards, core.nshards());
    let run = Run {
        script,
        keys,
        argv,
        flags,
        read_only,
    };
    if session.atomic {
        // Inside EXEC, which already holds what the script needs.
        return run.here(session, true);
    }
    let undeclared = flags.contains(Flags::ALLOW_UNDECLARED_KEYS);
    match mode {
        // With one shard, every key is on it: the barrier is that shard.
        Mode::Global if core.nshards() == 1 => on_owner(run, session, 0).await,
        Mode::Global | Mode::EveryShard => global(run, session).await,
        Mode::OneShard(shard) => on_owner(run, session, shard).await,
        Mode::LockAhead => lock_ahead(&run, session).await,
        // Stronger than asked, on purpose: see the module page.
        Mode::NonAtomic if undeclared => global(run, session).await,
        Mode::NonAtomic => lock_ahead(&run, session).await,
    }
}

/// Runs a global script behind the barrier, on the barrier's home core
/// (`barrier::HOME`): global scripts from every core share its epochs, so
/// under a steady stream of them the barrier changes hands rarely.
async fn global(run: Run, session: &Session) -> Reply {
    let core = session.core();
    if core.id == barrier::HOME {
        let ticket = barrier::enter(core).await;
        return ticket.run(|| run.here(session, true));
    }
    let (reply, rx) = oneshot();
    let caller = Caller::of(session);
    core.mesh[barrier::HOME].send(Box::new(move |_| {
        // glommio polls a task as it spawns it, and this job runs with the
        // shard borrowed: the script starts on the task's next poll.
        crate::server::net::spawn(async move {
            futures_lite::future::yield_now().await;
            let node = crate::server::local_node();
            let ticket = barrier::enter(&node.core).await;
            let result = ticket.run(|| run.for_caller(node.clone(), caller));
            drop(ticket);
            reply.send(result);
        });
    }));
    rx.await.expect("the barrier's core dropped a script")
}

async fn lock_ahead(run: &Run, session: &Session) -> Reply {
    let held = tx::lock_keys(session.core(), session.db, !run.read_only, &run.keys).await;
    let reply = run.here(session, true);
    drop(held);
    reply
}

/// The fast path: every declared key lives on `shard`, so the whole script
/// runs on that shard's core, in one job, as soon as its keys are free.
/// Nothing else runs on that core meanwhile, so it needs no locks, and its
/// calls reach the shard with no hops.
async fn on_owner(run: Run, session: &Session, shard: usize) -> Reply {
    let (reply, rx) = oneshot();
    let job = OwnerJob {
        caller: Caller::of(session),
        run,
        reply,
    };
    let core = session.core();
    if shard == core.id {
        core.until_home().await;
        job.submit(&mut core.own_shard());
    } else {
        core.mesh[shard].send(Box::new(move |sh| job.submit(sh)));
    }
    rx.await.expect("a shard dropped a script")
}

/// A script sent to the core owning its keys.
struct OwnerJob {
    caller: Caller,
    run: Run,
    reply: ReplyTx<Reply>,
}

impl OwnerJob {
    /// Runs now if no lock covers the keys, else once they are free.
    fn submit(self, shard: &mut Shard) {
        let access = Access::Keys {
            db: self.caller.db,
            keys: self.run.keys.clone(),
            write: !self.run.read_only,
        };
        locks::run_when_free(shard, || access, move |sh| self.run_now(sh));
    }

    fn run_now(self, shard: &mut Shard) {
        let node = crate::server::local_node();
        if busy::running_here() {
            // This core is inside another script, waiting in a synchronous
            // call and serving sent work meanwhile; the Lua VM is taken.
            // Go to the back of the inbox (and, then, of the lock queue).
            node.core.mesh[node.core.id].send(Box::new(move |sh| self.submit(sh)));
            return;
        }
        let reply = node
            .core
            .with_own_shard(shard, || self.run.for_caller(node.clone(), self.caller));
        self.reply.send(reply);
    }
}

/// What a script's session takes from its caller's.
#[derive(Clone, Copy)]
struct Caller {
    id: u64,
    db: u16,
    proto: Protocol,
}

impl Caller {
    fn of(session: &Session) -> Caller {
        Caller {
            id: session.id,
            db: session.db,
            proto: session.proto,
        }
    }
}

/// One script call, ready to run.
struct Run {
    script: Arc<Script>,
    keys: Vec<Bytes>,
    argv: Vec<Bytes>,
    flags: Flags,
    read_only: bool,
}

impl Run {
    /// Runs on this core in the caller's session, with `atomic` telling
    /// whether locks are held.
    fn here(&self, session: &Session, atomic: bool) -> Reply {
        self.in_session(session.node.clone(), session.info.clone(), Caller::of(session), atomic)
    }

    /// Runs, holding what it needs, on a core other than its caller's: in
    /// a session of its own that takes the caller's id, database and
    /// protocol.
    fn for_caller(&self, node: Rc<Node>, caller: Caller) -> Reply {
        let info = Rc::new(RefCell::new(ClientInfo::new(caller.id, -1, None, None)));
        self.in_session(node, info, caller, true)
    }

    fn in_session(&self, node: Rc<Node>, info: Rc<RefCell<ClientInfo>>, caller: Caller, atomic: bool) -> Reply {
        let mut script_session = Session::new(node, info);
        script_session.db = caller.db;
        script_session.proto = caller.proto;
        script_session.authed = true;
        script_session.atomic = atomic;
        script_session.in_script = true;
        let declared = if self.flags.contains(Flags::ALLOW_UNDECLARED_KEYS) {
            None
        } else {
            Some(self.keys.clone())
        };
        let ctx = vm::CallCtx {
            session: script_session,
            declared,
            read_only: self.read_only,
            resp3: false,
            last_error: None,
            wrote: false,
        };
        let (reply, _) = vm::vm().run(&self.script, &self.keys, &self.argv, ctx);
        if busy::was_killed() {
            return Reply::Error(busy::KILLED_ERROR);
        }
        reply
    }
}

/// SCRIPT LOAD|EXISTS|FLUSH|LIST|FLAGS|KILL|HELP
pub fn script_command(args: &[Bytes]) -> Reply {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_uppercase();
    let arity = || error::wrong_arity(&format!("script|{}", sub.to_lowercase()));
    match sub.as_str() {
        "LOAD" if args.len() == 3 => match store().load(&args[2]) {
            Ok(s) => Reply::bulk_str(&s.sha),
            Err(e) => Reply::ErrorOwned(e),
        },
        "EXISTS" if args.len() >= 3 => Reply::Array(
            args[2..]
                .iter()
                .map(|sha| Reply::Int(store().exists(&String::from_utf8_lossy(sha)) as i64))
                .collect(),
        ),
        "FLUSH" if args.len() <= 3 => {
            if args.len() == 3
                && !matches!(
                    String::from_utf8_lossy(&args[2]).to_uppercase().as_str(),
                    "ASYNC" | "SYNC"
                )
            {
                return Reply::Error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            store().flush();
            Reply::OK
        }
        "LIST" if args.len() == 2 => Reply::Array(
            store()
                .list()
                .into_iter()
                .map(|s| Reply::Array(vec![Reply::bulk_str(&s.sha), Reply::Bulk(s.body.clone())]))
                .collect(),
        ),
        "FLAGS" if args.len() >= 3 => {
            let sha = String::from_utf8_lossy(&args[2]).into_owned();
            if sha.len() != 40 {
                return Reply::Error(error::SYNTAX);
            }
            let mut flags = Flags::NONE;
            for word in &args[3..] {
                match Flags::parse_list(&String::from_utf8_lossy(word)) {
                    Ok(f) => flags = flags.union(f),
                    Err(bad) => {
                        return Reply::ErrorOwned(format!("ERR Invalid config format: Invalid flag: {bad}"));
                    }
                }
            }
            store().add_flags(&sha, flags);
            Reply::OK
        }
        "KILL" if args.len() == 2 => match busy::kill() {
            Ok(()) => Reply::OK,
            Err(e) => Reply::Error(e),
        },
        "HELP" if args.len() == 2 => Reply::Array(
            [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "FLAGS <sha1> <flag> [<flag> ...]",
                "FLUSH [ASYNC|SYNC]",
                "KILL",
                "LIST",
                "LOAD <script>",
                "HELP",
            ]
            .into_iter()
            .map(Reply::Status)
            .collect(),
        ),
        "LOAD" | "EXISTS" | "FLUSH" | "LIST" | "FLAGS" | "KILL" | "HELP" => arity(),
        _ => error::unknown_subcommand("script", &args[1]),
    }
}
