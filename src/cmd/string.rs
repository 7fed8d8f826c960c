//! The string family.

use bytes::{Bytes, BytesMut};

use super::parse::{Cursor, float, format_float, int};
use super::{BoxFut, CommandSpec, Exec, OpCtx, group_by_shard, run_grouped, spec};
use crate::cmd::flags::*;
use crate::db::{Node, Value, ValueRef, parse_i64};
use crate::error;
use crate::resp::Reply;
use crate::server::Session;

/// The largest string value (proto-max-bulk-len).
const MAX_STRING: usize = 512 * 1024 * 1024;

pub const COMMANDS: &[CommandSpec] = &[
    spec("get", 2, READONLY | FAST, (1, 1, 1), Exec::Key(get)),
    spec("set", -3, WRITE | DENYOOM, (1, 1, 1), Exec::Key(set)),
    spec("setnx", 3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(setnx)),
    spec("setex", 4, WRITE | DENYOOM, (1, 1, 1), Exec::Key(setex)),
    spec("psetex", 4, WRITE | DENYOOM, (1, 1, 1), Exec::Key(psetex)),
    spec("getset", 3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(getset)),
    spec("getdel", 2, WRITE | FAST, (1, 1, 1), Exec::Key(getdel)),
    spec("getex", -2, WRITE | FAST, (1, 1, 1), Exec::Key(getex)),
    spec("incr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(incr)),
    spec("decr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(decr)),
    spec("incrby", 3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(incrby)),
    spec("decrby", 3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(decrby)),
    spec(
        "incrbyfloat",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        Exec::Key(incrbyfloat),
    ),
    spec("append", 3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(append)),
    spec("strlen", 2, READONLY | FAST, (1, 1, 1), Exec::Key(strlen)),
    spec("getrange", 4, READONLY, (1, 1, 1), Exec::Key(getrange)),
    spec("substr", 4, READONLY, (1, 1, 1), Exec::Key(getrange)),
    spec("setrange", 4, WRITE | DENYOOM, (1, 1, 1), Exec::Key(setrange)),
    spec("mget", -2, READONLY | FAST, (1, -1, 1), Exec::Conn(mget)),
    spec("mset", -3, WRITE | DENYOOM, (1, -1, 2), Exec::Conn(mset)),
    spec("msetnx", -3, WRITE | DENYOOM, (1, -1, 2), Exec::Conn(msetnx)),
];

/// The string at `key`: Ok(None) if missing, Err(WRONGTYPE) if not a string.
fn string_at(ctx: &mut OpCtx<'_>, key: &[u8]) -> Result<Option<Bytes>, Reply> {
    let now = ctx.lookup_now();
    match ctx.db().get(key, now) {
        None => Ok(None),
        Some(node) => node.string().map(Some).ok_or(Reply::Error(error::WRONGTYPE)),
    }
}

/// GET key
fn get(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match string_at(ctx, &args[1]) {
        Ok(Some(v)) => {
            ctx.shard.stats.keyspace_hits += 1;
            Reply::Bulk(v)
        }
        Ok(None) => {
            ctx.shard.stats.keyspace_misses += 1;
            Reply::Nil
        }
        Err(e) => e,
    }
}

/// How a write sets the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ttl {
    /// Drop any TTL (the default for writes).
    Clear,
    /// Keep the current TTL (KEEPTTL).
    Keep,
    /// An absolute deadline in unix milliseconds.
    At(u64),
}

#[derive(Clone, Copy, PartialEq)]
pub enum TimeUnit {
    Seconds,
    Millis,
}

/// Turns an EX/PX/EXAT/PXAT argument into an absolute deadline, with
/// Redis's validation.
pub fn deadline(arg: &[u8], unit: TimeUnit, absolute: bool, now: u64, cmd: &str) -> Result<u64, Reply> {
    let v = int(arg)?;
    if v <= 0 || (unit == TimeUnit::Seconds && v > i64::MAX / 1000) {
        return Err(error::invalid_expire(cmd));
    }
    let ms = if unit == TimeUnit::Seconds { v * 1000 } else { v };
    if absolute {
        return Ok(ms as u64);
    }
    if ms > i64::MAX - now as i64 {
        return Err(error::invalid_expire(cmd));
    }
    Ok(now + ms as u64)
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`
struct SetArgs {
    nx: bool,
    xx: bool,
    get: bool,
    ttl: Ttl,
}

impl SetArgs {
    fn parse(args: &[Bytes], now: u64) -> Result<SetArgs, Reply> {
        let mut out = SetArgs {
            nx: false,
            xx: false,
            get: false,
            ttl: Ttl::Clear,
        };
        let mut has_expire = false;
        let mut cur = Cursor::new(args);
        while let Some(arg) = cur.next_arg() {
            let word = arg.to_ascii_uppercase();
            match word.as_slice() {
                b"NX" if !out.xx => out.nx = true,
                b"XX" if !out.nx => out.xx = true,
                b"GET" => out.get = true,
                b"KEEPTTL" if !has_expire => {
                    has_expire = true;
                    out.ttl = Ttl::Keep;
                }
                b"EX" | b"PX" | b"EXAT" | b"PXAT" if !has_expire => {
                    has_expire = true;
                    let value = cur.required()?;
                    let unit = if word[0] == b'E' {
                        TimeUnit::Seconds
                    } else {
                        TimeUnit::Millis
                    };
                    out.ttl = Ttl::At(deadline(value, unit, word.len() == 4, now, "set")?);
                }
                _ => return Err(Reply::Error(error::SYNTAX)),
            }
        }
        Ok(out)
    }
}

fn set(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    // Only the expiry options need the clock.
    let now = if args.len() > 3 { ctx.now() } else { 0 };
    let opts = match SetArgs::parse(&args[3..], now) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let key = &args[1];
    let now = ctx.lookup_now();
    let (exists, old_value, old_ttl) = match ctx.db().get(key, now) {
        None => (false, None, 0),
        Some(entry) => match entry.value() {
            ValueRef::Str(_) => (true, entry.string(), entry.expire_at()),
            _ if opts.get => return Reply::Error(error::WRONGTYPE),
            _ => (true, None, entry.expire_at()),
        },
    };
    let old_reply = || {
        if opts.get {
            Reply::from(old_value.clone())
        } else {
            Reply::Nil
        }
    };
    if (opts.nx && exists) || (opts.xx && !exists) {
        return old_reply();
    }
    let expire_at = match opts.ttl {
        Ttl::Clear => 0,
        Ttl::Keep => old_ttl,
        Ttl::At(t) => t,
    };
    ctx.db()
        .set_with_expire(key, Value::Str(Bytes::copy_from_slice(&args[2])), expire_at);
    if opts.get { old_reply() } else { Reply::OK }
}

/// SETNX key value
fn setnx(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.lookup_now();
    if ctx.db().contains(&args[1], now) {
        return Reply::Int(0);
    }
    ctx.db().set(&args[1], Value::Str(Bytes::copy_from_slice(&args[2])));
    Reply::Int(1)
}

fn set_with_ttl(ctx: &mut OpCtx<'_>, args: &[Bytes], unit: TimeUnit, name: &str) -> Reply {
    let at = match deadline(&args[2], unit, false, ctx.now(), name) {
        Ok(at) => at,
        Err(e) => return e,
    };
    ctx.db()
        .set_with_expire(&args[1], Value::Str(Bytes::copy_from_slice(&args[3])), at);
    Reply::OK
}

/// SETEX key seconds value
fn setex(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    set_with_ttl(ctx, args, TimeUnit::Seconds, "setex")
}

/// PSETEX key milliseconds value
fn psetex(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    set_with_ttl(ctx, args, TimeUnit::Millis, "psetex")
}

/// GETSET key value
fn getset(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let old = match string_at(ctx, &args[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    ctx.db().set(&args[1], Value::Str(Bytes::copy_from_slice(&args[2])));
    Reply::from(old)
}

/// GETDEL key
fn getdel(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match string_at(ctx, &args[1]) {
        Ok(Some(v)) => {
            ctx.db().remove(&args[1]);
            Reply::Bulk(v)
        }
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

/// GETEX key [EX s|PX ms|EXAT ts|PXAT ts|PERSIST]
fn getex(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now();
    let mut ttl = None;
    let mut persist = false;
    let mut cur = Cursor::new(&args[2..]);
    while let Some(arg) = cur.next_arg() {
        let word = arg.to_ascii_uppercase();
        match word.as_slice() {
            b"PERSIST" if ttl.is_none() && !persist => persist = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if ttl.is_none() && !persist => {
                let Some(value) = cur.next_arg() else {
                    return Reply::Error(error::SYNTAX);
                };
                let unit = if word[0] == b'E' {
                    TimeUnit::Seconds
                } else {
                    TimeUnit::Millis
                };
                match deadline(value, unit, word.len() == 4, now, "getex") {
                    Ok(at) => ttl = Some(at),
                    Err(e) => return e,
                }
            }
            _ => return Reply::Error(error::SYNTAX),
        }
    }
    let value = match string_at(ctx, &args[1]) {
        Ok(Some(v)) => v,
        Ok(None) => return Reply::Nil,
        Err(e) => return e,
    };
    if let Some(at) = ttl {
        if at <= now {
            ctx.db().remove(&args[1]);
        } else {
            ctx.db().set_expire(&args[1], at);
        }
    } else if persist {
        ctx.db().persist(&args[1]);
    }
    Reply::Bulk(value)
}

/// Replaces the string at `key` (None: missing) with what `next` makes of
/// it, keeping its TTL, in one lookup. WRONGTYPE if it holds something else.
fn update_string<T>(
    ctx: &mut OpCtx<'_>,
    key: &[u8],
    next: impl FnOnce(Option<&[u8]>) -> Result<(Bytes, T), Reply>,
) -> Result<T, Reply> {
    let now = ctx.lookup_now();
    let db = ctx.db();
    match db.get_mut(key, now) {
        Some(entry) => {
            let ValueRef::Str(current) = entry.value() else {
                return Err(Reply::Error(error::WRONGTYPE));
            };
            let (text, out) = next(Some(current))?;
            entry.set_value(Value::Str(text));
            Ok(out)
        }
        None => {
            let (text, out) = next(None)?;
            db.set(key, Value::Str(text));
            Ok(out)
        }
    }
}

/// Adds `delta` to the integer at `key`, keeping its TTL.
fn incr_by(ctx: &mut OpCtx<'_>, key: &[u8], delta: i64) -> Reply {
    let result = update_string(ctx, key, |current| {
        let current = match current {
            None => 0,
            Some(s) => parse_i64(s).ok_or(Reply::Error(error::NOT_INTEGER))?,
        };
        let next = current.checked_add(delta).ok_or(Reply::Error(error::OVERFLOW))?;
        Ok((Bytes::from(next.to_string()), next))
    });
    result.map_or_else(|e| e, Reply::Int)
}

/// INCR key
fn incr(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    incr_by(ctx, &args[1], 1)
}

/// DECR key
fn decr(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    incr_by(ctx, &args[1], -1)
}

/// INCRBY key increment
fn incrby(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match int(&args[2]) {
        Ok(d) => incr_by(ctx, &args[1], d),
        Err(e) => e,
    }
}

/// DECRBY key decrement
fn decrby(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match int(&args[2]) {
        Ok(i64::MIN) => Reply::Error("ERR decrement would overflow"),
        Ok(d) => incr_by(ctx, &args[1], -d),
        Err(e) => e,
    }
}

/// INCRBYFLOAT key increment
fn incrbyfloat(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let delta = match float(&args[2]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let result = update_string(ctx, &args[1], |current| {
        let current = match current {
            None => 0.0,
            Some(s) => super::parse::parse_f64(s).ok_or(Reply::Error(error::NOT_FLOAT))?,
        };
        let next = current + delta;
        if !next.is_finite() {
            return Err(Reply::Error(error::INCR_NAN_OR_INF));
        }
        let text = Bytes::from(format_float(next));
        Ok((text.clone(), text))
    });
    result.map_or_else(|e| e, Reply::Bulk)
}

/// Edits the string at `key` in place, creating it when missing. The
/// closure gets a uniquely owned buffer. Returns the new length.
fn edit_string(
    ctx: &mut OpCtx<'_>,
    key: &[u8],
    create: bool,
    edit: impl FnOnce(&mut BytesMut),
) -> Result<Option<usize>, Reply> {
    let now = ctx.lookup_now();
    match ctx.db().get_mut(key, now) {
        Some(entry) => {
            let Some(owned) = entry.take_string() else {
                return Err(Reply::Error(error::WRONGTYPE));
            };
            let mut buf = owned.try_into_mut().unwrap_or_else(|b| BytesMut::from(&b[..]));
            edit(&mut buf);
            let len = buf.len();
            entry.set_value(Value::Str(buf.freeze()));
            Ok(Some(len))
        }
        None if create => {
            let mut buf = BytesMut::new();
            edit(&mut buf);
            let len = buf.len();
            ctx.db().set(key, Value::Str(buf.freeze()));
            Ok(Some(len))
        }
        None => Ok(None),
    }
}

/// APPEND key value
fn append(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let add = &args[2];
    let now = ctx.lookup_now();
    if let Some(ValueRef::Str(s)) = ctx.db().get(&args[1], now).map(Node::value)
        && s.len() + add.len() > MAX_STRING
    {
        return Reply::Error(error::STRING_TOO_LONG);
    }
    match edit_string(ctx, &args[1], true, |buf| buf.extend_from_slice(add)) {
        Ok(len) => Reply::Int(len.unwrap_or(0) as i64),
        Err(e) => e,
    }
}

/// STRLEN key
fn strlen(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match string_at(ctx, &args[1]) {
        Ok(v) => Reply::Int(v.map_or(0, |s| s.len() as i64)),
        Err(e) => e,
    }
}

/// GETRANGE key start end
fn getrange(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let (start, end) = match (int(&args[2]), int(&args[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let s = match string_at(ctx, &args[1]) {
        Ok(Some(s)) => s,
        Ok(None) => return Reply::Bulk(Bytes::new()),
        Err(e) => return e,
    };
    if start < 0 && end < 0 && start > end {
        return Reply::Bulk(Bytes::new());
    }
    let len = s.len() as i64;
    let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (norm(start), norm(end).min(len - 1));
    if start > end || len == 0 {
        return Reply::Bulk(Bytes::new());
    }
    Reply::Bulk(s.slice(start as usize..=end as usize))
}

/// SETRANGE key offset value
fn setrange(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let offset = match int(&args[2]) {
        Ok(o) if o >= 0 => o as usize,
        Ok(_) => return Reply::Error(error::OFFSET_OUT_OF_RANGE),
        Err(e) => return e,
    };
    let value = &args[3];
    if offset + value.len() > MAX_STRING {
        return Reply::Error(error::STRING_TOO_LONG);
    }
    if value.is_empty() {
        return match string_at(ctx, &args[1]) {
            Ok(v) => Reply::Int(v.map_or(0, |s| s.len() as i64)),
            Err(e) => e,
        };
    }
    let edit = |buf: &mut BytesMut| {
        if buf.len() < offset + value.len() {
            buf.resize(offset + value.len(), 0);
        }
        buf[offset..offset + value.len()].copy_from_slice(value);
    };
    match edit_string(ctx, &args[1], true, edit) {
        Ok(len) => Reply::Int(len.unwrap_or(0) as i64),
        Err(e) => e,
    }
}

/// MGET key [key ...]
fn mget(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let groups = group_by_shard(session, args[1..].iter().enumerate());
        let results = run_grouped(session, false, groups, |ctx, items| {
            items
                .iter()
                .map(|(pos, key)| {
                    let now = ctx.lookup_now();
                    let reply = Reply::from(ctx.db().get(key, now).and_then(Node::string));
                    (*pos, reply)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let mut out = vec![Reply::Nil; args.len() - 1];
        for (pos, reply) in results.into_iter().flatten() {
            out[pos] = reply;
        }
        Reply::Array(out)
    })
}

/// Key/value pairs of MSET-like commands, grouped by shard; each item holds
/// the key and the index of its value in `args`.
fn pairs_by_shard(session: &Session, args: &[Bytes]) -> Vec<(usize, Vec<(usize, Bytes)>)> {
    group_by_shard(session, (1..args.len()).step_by(2).map(|i| (i + 1, &args[i])))
}

/// MSET key value [key value ...]
fn mset(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if args.len().is_multiple_of(2) {
            return error::wrong_arity("mset");
        }
        let groups = pairs_by_shard(session, &args);
        let values = std::sync::Arc::new(args);
        run_grouped(session, true, groups, move |ctx, items| {
            for (value_index, key) in items {
                let value = Bytes::copy_from_slice(&values[*value_index]);
                ctx.db().set(key, Value::Str(value));
            }
        })
        .await;
        Reply::OK
    })
}

/// MSETNX key value [key value ...]
fn msetnx(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if args.len().is_multiple_of(2) {
            return error::wrong_arity("msetnx");
        }
        let db = session.db;
        let keys: Vec<Bytes> = (1..args.len()).step_by(2).map(|i| args[i].clone()).collect();
        let held = session.lock_keys(db, true, &keys).await;
        let groups = pairs_by_shard(session, &args);
        for (shard, items) in &groups {
            let items = items.clone();
            let any = held
                .run(*shard, move |sh| {
                    let mut ctx = OpCtx::new(sh, db);
                    items.iter().any(|(_, k)| {
                        let now = ctx.lookup_now();
                        ctx.db().contains(k, now)
                    })
                })
                .await;
            if any {
                return Reply::Int(0);
            }
        }
        let values = std::sync::Arc::new(args.clone());
        for (shard, items) in groups {
            let values = values.clone();
            held.run(shard, move |sh| {
                let mut ctx = OpCtx::new(sh, db);
                for (value_index, key) in items {
                    ctx.db()
                        .set(&key, Value::Str(Bytes::copy_from_slice(&values[value_index])));
                }
            })
            .await;
        }
        Reply::Int(1)
    })
}
