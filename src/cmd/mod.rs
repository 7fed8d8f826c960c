//! The command table and dispatch.
//!
//! Every command is one row of metadata (`CommandSpec`): name, arity, flags
//! and key positions, plus how it executes. Dispatch derives everything from
//! the row: the arity check, the auth check, which shard runs it, and
//! whether it is a write.
//!
//! Two ways to execute:
//! * `Exec::Key`: a single-key operation. It runs on the shard that owns the
//!   key, synchronously, and never yields (`op_*` style): the same function
//!   serves a local call and a call shipped to another core.
//! * `Exec::Conn`: coordinated on the connection's core: multi-key commands
//!   (which hop to several shards atomically), connection and server
//!   commands.

mod access;
mod connection;
mod generic;
mod hash;
mod list;
mod parse;
mod scripting;
mod server;
mod set;
mod string;
pub mod transaction;

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::db::{Db, Map, Value, ValueMut, now_ms};
use crate::error;
use crate::resp::Reply;
use crate::server::Session;
use crate::shard::{ReplyRx, Shard};

pub use parse::Cursor;

/// Command flags, as in Redis's command table.
pub mod flags {
    pub const WRITE: u32 = 1;
    pub const READONLY: u32 = 1 << 1;
    pub const FAST: u32 = 1 << 2;
    /// Not allowed inside scripts.
    pub const NOSCRIPT: u32 = 1 << 3;
    /// Allowed before AUTH.
    pub const NO_AUTH: u32 = 1 << 4;
    pub const ADMIN: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const DENYOOM: u32 = 1 << 7;
    pub const LOADING: u32 = 1 << 8;
    pub const STALE: u32 = 1 << 9;
    /// Not allowed inside MULTI.
    pub const NO_MULTI: u32 = 1 << 10;

    /// The names COMMAND INFO reports.
    pub fn names(bits: u32) -> Vec<&'static str> {
        let table = [
            (WRITE, "write"),
            (READONLY, "readonly"),
            (DENYOOM, "denyoom"),
            (ADMIN, "admin"),
            (NOSCRIPT, "noscript"),
            (BLOCKING, "blocking"),
            (LOADING, "loading"),
            (STALE, "stale"),
            (NO_AUTH, "no_auth"),
            (FAST, "fast"),
            (NO_MULTI, "no_multi"),
        ];
        table.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect()
    }
}

/// A future returned by a connection-side command.
pub type BoxFut<'a> = Pin<Box<dyn Future<Output = Reply> + 'a>>;

/// A connection-side command.
pub type ConnHandler = for<'a> fn(&'a mut Session, Vec<Bytes>) -> BoxFut<'a>;

/// A single-key operation run on the key's shard.
pub type KeyOp = fn(&mut OpCtx<'_>, &[Bytes]) -> Reply;

/// Finds the keys of a command whose key positions depend on its arguments
/// (numkeys). None: the keys cannot be known, lock everything.
pub type KeysFn = fn(&[Bytes]) -> Option<Vec<Bytes>>;

#[derive(Clone, Copy)]
pub enum Exec {
    Key(KeyOp),
    Conn(ConnHandler),
}

/// One row of the command table.
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis's convention: N means exactly N arguments including the name,
    /// -N means at least N.
    pub arity: i32,
    pub flags: u32,
    /// Position of the first key (0: no keys), the last (-1: the last
    /// argument), and the step between keys.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub exec: Exec,
    /// For commands with movable keys (EVAL, LMPOP, ...).
    pub keys_fn: Option<KeysFn>,
}

impl CommandSpec {
    pub fn is_write(&self) -> bool {
        self.flags & flags::WRITE != 0
    }

    /// Declares how to find this command's keys from its arguments.
    pub const fn with_keys(self, keys_fn: KeysFn) -> CommandSpec {
        CommandSpec {
            keys_fn: Some(keys_fn),
            ..self
        }
    }

    /// Every key a call touches, or None when that cannot be known in
    /// advance (a keyless command that reads or writes data).
    pub fn key_args(&self, args: &[Bytes]) -> Option<Vec<Bytes>> {
        if let Some(f) = self.keys_fn {
            return f(args);
        }
        if self.first_key == 0 {
            let touches_data = self.flags & (flags::WRITE | flags::READONLY) != 0;
            return if touches_data { None } else { Some(Vec::new()) };
        }
        Some(self.keys(args).into_iter().cloned().collect())
    }

    /// The key arguments of a call, from the row's key positions.
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> Vec<&'a Bytes> {
        if self.first_key <= 0 || args.len() <= self.first_key as usize {
            return Vec::new();
        }
        let last = if self.last_key < 0 {
            args.len() as i32 + self.last_key
        } else {
            self.last_key.min(args.len() as i32 - 1)
        };
        let step = self.step.max(1) as usize;
        (self.first_key as usize..=last.max(0) as usize)
            .step_by(step)
            .filter_map(|i| args.get(i))
            .collect()
    }
}

/// Shorthand for table rows.
pub const fn spec(name: &'static str, arity: i32, flags: u32, keys: (i32, i32, i32), exec: Exec) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        exec,
        keys_fn: None,
    }
}

/// Keys given as `numkeys key...` starting at argument `at`.
pub fn numkeys_at(args: &[Bytes], at: usize) -> Vec<Bytes> {
    let n = args
        .get(at)
        .and_then(|a| crate::db::parse_i64(a))
        .filter(|n| *n > 0)
        .unwrap_or(0) as usize;
    args.iter().skip(at + 1).take(n).cloned().collect()
}

thread_local! {
    /// When the script running on this thread started, in unix
    /// milliseconds; 0 when none runs.
    static SCRIPT_STARTED_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Stops the clock that operations on this thread see (`OpCtx::now`) at
/// the present moment, until the guard drops. As in Redis, a script's
/// commands judge expiry against the time the script started, so no key
/// expires halfway through a script; it also spares a clock read per call.
pub fn stop_clock_for_script() -> ClockStopped {
    SCRIPT_STARTED_MS.set(now_ms());
    ClockStopped
}

pub struct ClockStopped;

impl Drop for ClockStopped {
    fn drop(&mut self) {
        SCRIPT_STARTED_MS.set(0);
    }
}

/// What a shard operation sees: the shard, the selected database, and a
/// clock read at most once, and only when needed.
pub struct OpCtx<'a> {
    pub shard: &'a mut Shard,
    pub db: u16,
    now: u64,
}

impl<'a> OpCtx<'a> {
    pub fn new(shard: &'a mut Shard, db: u16) -> OpCtx<'a> {
        OpCtx {
            shard,
            db,
            now: SCRIPT_STARTED_MS.get(),
        }
    }

    /// The time in unix milliseconds, read once per operation.
    pub fn now(&mut self) -> u64 {
        if self.now == 0 {
            self.now = now_ms();
        }
        self.now
    }

    /// The time to check expiry against in the selected database: the
    /// clock when the database holds keys with a TTL, else 0 (no key can
    /// be due, so the clock is not read).
    pub fn lookup_now(&mut self) -> u64 {
        if self.shard.dbs[self.db as usize].expires_len() == 0 {
            0
        } else {
            self.now()
        }
    }

    pub fn db(&mut self) -> &mut Db {
        &mut self.shard.dbs[self.db as usize]
    }

    /// The live value at `key`, created with `make` when missing.
    pub fn value_or_insert(&mut self, key: &[u8], make: fn() -> Value) -> ValueMut<'_> {
        let now = self.lookup_now();
        let db = self.db();
        if db.get(key, now).is_none() {
            db.set(key, make());
        }
        ticked(db.get_mut(key, now).expect("just inserted").value_mut())
    }

    /// The live value at `key`, if any.
    pub fn value(&mut self, key: &[u8]) -> Option<ValueMut<'_>> {
        let now = self.lookup_now();
        self.db().get_mut(key, now).map(|e| ticked(e.value_mut()))
    }
}

/// A set or hash that a command is about to use moves a step of its
/// table's growth along, as each access to a Redis dictionary does.
fn ticked(value: ValueMut<'_>) -> ValueMut<'_> {
    match value {
        ValueMut::Set(s) => {
            s.tick();
            ValueMut::Set(s)
        }
        ValueMut::Hash(h) => {
            h.tick();
            ValueMut::Hash(h)
        }
        other => other,
    }
}

/// All rows, by name.
pub fn table() -> &'static Map<&'static str, &'static CommandSpec> {
    static TABLE: OnceLock<Map<&'static str, &'static CommandSpec>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let families: [&'static [CommandSpec]; 9] = [
            transaction::COMMANDS,
            scripting::COMMANDS,
            string::COMMANDS,
            generic::COMMANDS,
            set::COMMANDS,
            hash::COMMANDS,
            list::COMMANDS,
            connection::COMMANDS,
            server::COMMANDS,
        ];
        let mut map = Map::default();
        for family in families {
            for row in family {
                let old = map.insert(row.name, row);
                assert!(old.is_none(), "command {} registered twice", row.name);
            }
        }
        map
    })
}

/// Finds a command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&buf[..name.len()]).ok()?;
    table().get(lower).copied()
}

pub fn arity_ok(arity: i32, argc: usize) -> bool {
    if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= (-arity) as usize
    }
}

/// Checks and runs one command for a connection; `spec` is what `lookup`
/// found for its name (None: unknown).
pub async fn dispatch(session: &mut Session, spec: Option<&'static CommandSpec>, args: Vec<Bytes>) -> Reply {
    let spec = match check(session, spec, &args) {
        Ok(spec) => spec,
        Err(reply) => return reply,
    };
    if let Some(multi) = session.multi.as_mut()
        && !transaction::runs_inside_multi(spec.name)
    {
        if spec.flags & flags::NO_MULTI != 0 {
            multi.failed = true;
            return Reply::Error("ERR Command not allowed inside a transaction");
        }
        multi.queue.push((spec, args));
        return Reply::Status("QUEUED");
    }
    let started = crate::clock::ticks();
    let reply = execute(session, spec, args).await;
    record(session, spec, started, &reply);
    reply
}

/// The checks every command passes before it runs or is queued.
fn check(
    session: &mut Session,
    spec: Option<&'static CommandSpec>,
    args: &[Bytes],
) -> Result<&'static CommandSpec, Reply> {
    let Some(spec) = spec else {
        flag_transaction(session);
        return Err(error::unknown_command(&args[0], &args[1..]));
    };
    if !arity_ok(spec.arity, args.len()) {
        flag_transaction(session);
        return Err(error::wrong_arity(spec.name));
    }
    if !session.authed && spec.flags & flags::NO_AUTH == 0 {
        flag_transaction(session);
        return Err(Reply::Error(error::NOAUTH));
    }
    if crate::script::busy::is_busy() && !scripting::busy_allows(spec.name, args) {
        return Err(scripting::busy_reply());
    }
    Ok(spec)
}

/// Counts a finished command for INFO commandstats and CLIENT LIST.
fn record(session: &Session, spec: &'static CommandSpec, started: u64, reply: &Reply) {
    let mut stats = session.node.stats.borrow_mut();
    stats.commands += 1;
    let stat = stats.per_command.entry(spec.name).or_default();
    stat.calls += 1;
    stat.ticks += crate::clock::ticks().wrapping_sub(started);
    if reply.is_error() {
        stat.failed += 1;
    }
    session.info.borrow_mut().last_command = spec.name;
}

/// A single-key command sent to another core, its reply still to come.
pub struct Sent {
    spec: &'static CommandSpec,
    started: u64,
    reply: ReplyRx<Reply>,
}

/// Starts loading, into the cache, the entries that a batch of pipelined
/// commands will read on this core's shard, so that their memory
/// latencies overlap instead of following one another.
pub fn prefetch(session: &Session, batch: &[(Option<&'static CommandSpec>, Vec<Bytes>)]) {
    let core = session.core();
    let Some(shard) = core.try_own_shard() else { return };
    let Some(db) = shard.dbs.get(session.db as usize) else {
        return;
    };
    for (spec, args) in batch {
        if let Some(spec) = spec
            && let Some(key) = args.get(spec.first_key as usize)
            && reads_here(core, spec, key)
        {
            db.prefetch(key);
        }
    }
}

/// Whether `spec` is a single-key command whose key, `key`, is on this
/// core's shard: one whose entry is worth loading ahead.
fn reads_here(core: &crate::shard::Core, spec: &CommandSpec, key: &[u8]) -> bool {
    matches!(spec.exec, Exec::Key(_)) && core.shard_of(key) == core.id
}

/// Entries noted by `note_arrived` and not yet warmed, at most.
const ARRIVED_MAX: usize = 1024;

thread_local! {
    /// Entries that requests which just arrived will read: (db, key hash).
    static ARRIVED: std::cell::RefCell<Vec<(u16, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes the entry that the command at the front of `input`, which a
/// connection using `db` just received, will read, if it is a single-key
/// command on this core's shard. The socket layer calls this as the bytes
/// arrive, before any connection woken with them runs; the first of them
/// to run loads every noted entry at once (`warm_arrived`).
pub fn note_arrived(core: &crate::shard::Core, db: u16, input: &[u8]) {
    let Some((name, key)) = crate::resp::peek_name_and_first(input) else {
        return;
    };
    if let Some(spec) = lookup(name)
        && spec.first_key == 1
        && reads_here(core, spec, key)
    {
        let hash = crate::db::key_hash(key);
        ARRIVED.with(|a| {
            let mut arrived = a.borrow_mut();
            if arrived.len() < ARRIVED_MAX {
                arrived.push((db, hash));
            }
        });
    }
}

/// Starts loading, into the cache, the entries that `note_arrived` noted.
/// One loop over them all lets the CPU overlap their memory latencies,
/// which each command alone would wait for in turn.
pub fn warm_arrived(core: &crate::shard::Core) {
    ARRIVED.with(|a| {
        let mut arrived = a.borrow_mut();
        if arrived.is_empty() {
            return;
        }
        if let Some(shard) = core.try_own_shard() {
            for &(db, hash) in arrived.iter() {
                if let Some(db) = shard.dbs.get(db as usize) {
                    db.prefetch_hash(hash);
                }
            }
        }
        arrived.clear();
    });
}

/// Sends `args` to the core owning its key and returns at once, when it is
/// a single-key command on another core's shard that would run now (not
/// queued by MULTI, not in a script or EXEC). Anything else is None: the
/// caller collects what it sent, then dispatches the command as usual.
///
/// Pipelined commands of one connection may so run on several shards at
/// once, and still in order for every observer: each shard runs the work
/// sent to it in order, and a core runs the work other cores sent before
/// any task woken later (see the `server::net` driver), so whoever sees the
/// effect of a later command of the batch also sees the earlier ones.
pub fn send_if_remote(
    session: &mut Session,
    spec: Option<&'static CommandSpec>,
    args: Vec<Bytes>,
) -> Result<Sent, Vec<Bytes>> {
    if session.core().nshards() == 1 || session.multi.is_some() || session.atomic {
        return Err(args);
    }
    let Some(spec) = spec else { return Err(args) };
    let Exec::Key(op) = spec.exec else { return Err(args) };
    if check(session, Some(spec), &args).is_err() {
        return Err(args);
    }
    let shard = session.core().shard_of(&args[spec.first_key as usize]);
    if shard == session.core().id {
        return Err(args);
    }
    let started = crate::clock::ticks();
    let db = session.db;
    let (key_at, write) = (spec.first_key as usize, spec.is_write());
    let reply = session
        .core()
        .send_args(shard, db, key_at, write, args, move |sh, args| {
            let reply = op(&mut OpCtx::new(sh, db), args);
            if write {
                sh.touch_watched(db, &args[key_at]);
            }
            reply
        });
    Ok(Sent { spec, started, reply })
}

impl Sent {
    /// Waits for the reply and counts the command.
    pub async fn collect(self, session: &Session) -> Reply {
        let reply = self.reply.await.expect("a shard dropped a reply");
        record(session, self.spec, self.started, &reply);
        reply
    }
}

/// A command rejected while queuing makes EXEC abort.
fn flag_transaction(session: &mut Session) {
    if let Some(multi) = session.multi.as_mut() {
        multi.failed = true;
    }
}

/// Runs a checked command.
pub async fn execute(session: &mut Session, spec: &'static CommandSpec, args: Vec<Bytes>) -> Reply {
    match spec.exec {
        Exec::Key(op) => run_key_op(session, spec, op, args).await,
        Exec::Conn(handler) => handler(session, args).await,
    }
}

async fn run_key_op(session: &Session, spec: &CommandSpec, op: KeyOp, args: Vec<Bytes>) -> Reply {
    let core = session.core();
    let key = &args[spec.first_key as usize];
    let shard = core.shard_of(key);
    let db = session.db;
    // The inline path; an atomic session goes through `run_keyed`, which
    // may reach this shard through a barrier's loan instead.
    if shard == core.id && !session.atomic && core.is_home() {
        let mut sh = core.own_shard();
        if sh.locks.is_idle() {
            let reply = op(&mut OpCtx::new(&mut sh, db), &args);
            if spec.is_write() {
                sh.touch_watched(db, key);
            }
            return reply;
        }
    }
    let key = key.clone();
    session
        .run_keyed(shard, &[key], spec.is_write(), move |sh| {
            op(&mut OpCtx::new(sh, db), &args)
        })
        .await
}

/// Keys grouped by owning shard, with each key's position in the request.
pub fn group_by_shard<'a>(
    session: &Session,
    keys: impl Iterator<Item = (usize, &'a Bytes)>,
) -> Vec<(usize, Vec<(usize, Bytes)>)> {
    let core = session.core();
    let mut groups: Vec<(usize, Vec<(usize, Bytes)>)> = Vec::new();
    for (pos, key) in keys {
        let shard = core.shard_of(key);
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, list)) => list.push((pos, key.clone())),
            None => groups.push((shard, vec![(pos, key.clone())])),
        }
    }
    groups
}

/// Runs `op` over the keys of each shard, atomically across shards, and
/// returns the per-shard results in shard-group order.
pub async fn run_grouped<R, F>(
    session: &Session,
    write: bool,
    groups: Vec<(usize, Vec<(usize, Bytes)>)>,
    op: F,
) -> Vec<R>
where
    R: Send + 'static,
    F: Fn(&mut OpCtx<'_>, &[(usize, Bytes)]) -> R + Send + Clone + 'static,
{
    use crate::shard::tx::Part;
    let db = session.db;
    let parts = groups
        .into_iter()
        .map(|(shard, items)| {
            let op = op.clone();
            Part {
                shard,
                keys: items.iter().map(|(_, k)| k.clone()).collect(),
                op: move |sh: &mut Shard| {
                    let result = op(&mut OpCtx::new(sh, db), &items);
                    if write {
                        items.iter().for_each(|(_, k)| sh.touch_watched(db, k));
                    }
                    result
                },
            }
        })
        .collect();
    session.run_parts(write, parts).await
}

/// Every command row, for COMMAND.
pub fn all_commands() -> Vec<&'static CommandSpec> {
    let mut rows: Vec<_> = table().values().copied().collect();
    rows.sort_by_key(|r| r.name);
    rows
}
