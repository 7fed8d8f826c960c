//! The set family.

use std::collections::HashSet;

use bytes::Bytes;

use super::generic::ScanArgs;
use super::parse::{Cursor, glob_match, int, upper};
use super::{BoxFut, CommandSpec, Exec, OpCtx, group_by_shard, numkeys_at, run_grouped, spec};
use crate::cmd::flags::*;
use crate::db::{HashBuilder, Set, Value, ValueMut};
use crate::error;
use crate::resp::Reply;
use crate::server::Session;

pub const COMMANDS: &[CommandSpec] = &[
    spec("sadd", -3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(sadd)),
    spec("srem", -3, WRITE | FAST, (1, 1, 1), Exec::Key(srem)),
    spec("smembers", 2, READONLY, (1, 1, 1), Exec::Key(smembers)),
    spec("sismember", 3, READONLY | FAST, (1, 1, 1), Exec::Key(sismember)),
    spec("smismember", -3, READONLY | FAST, (1, 1, 1), Exec::Key(smismember)),
    spec("scard", 2, READONLY | FAST, (1, 1, 1), Exec::Key(scard)),
    spec("spop", -2, WRITE | FAST, (1, 1, 1), Exec::Key(spop)),
    spec("srandmember", -2, READONLY, (1, 1, 1), Exec::Key(srandmember)),
    spec("sscan", -3, READONLY, (1, 1, 1), Exec::Key(sscan)),
    spec("smove", 4, WRITE | FAST, (1, 2, 1), Exec::Conn(smove)),
    spec("sunion", -2, READONLY, (1, -1, 1), Exec::Conn(sunion)),
    spec("sinter", -2, READONLY, (1, -1, 1), Exec::Conn(sinter)),
    spec("sdiff", -2, READONLY, (1, -1, 1), Exec::Conn(sdiff)),
    spec("sunionstore", -3, WRITE | DENYOOM, (1, -1, 1), Exec::Conn(sunionstore)),
    spec("sinterstore", -3, WRITE | DENYOOM, (1, -1, 1), Exec::Conn(sinterstore)),
    spec("sdiffstore", -3, WRITE | DENYOOM, (1, -1, 1), Exec::Conn(sdiffstore)),
    spec("sintercard", -3, READONLY, (2, -1, 1), Exec::Conn(sintercard)).with_keys(|a| Some(numkeys_at(a, 1))),
];

/// The set at `key`: Ok(None) if missing, WRONGTYPE if not a set.
fn set_at<'a>(ctx: &'a mut OpCtx<'_>, key: &[u8]) -> Result<Option<&'a mut Set>, Reply> {
    match ctx.value(key) {
        None => Ok(None),
        Some(ValueMut::Set(s)) => Ok(Some(s)),
        Some(_) => Err(Reply::Error(error::WRONGTYPE)),
    }
}

/// Removes `key` if its set (or other collection) became empty.
pub fn drop_if_empty(ctx: &mut OpCtx<'_>, key: &[u8]) {
    let empty = match ctx.value(key) {
        Some(ValueMut::Set(s)) => s.is_empty(),
        Some(ValueMut::Hash(h)) => h.is_empty(),
        Some(ValueMut::List(l)) => l.is_empty(),
        _ => false,
    };
    if empty {
        ctx.db().remove(key);
    }
}

fn members_reply(members: impl Iterator<Item = Bytes>) -> Reply {
    Reply::Set(members.map(Reply::Bulk).collect())
}

/// SADD key member [member ...]
fn sadd(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let ValueMut::Set(set) = ctx.value_or_insert(&args[1], Value::new_set) else {
        return Reply::Error(error::WRONGTYPE);
    };
    let added = args[2..].iter().filter(|m| set.insert(m)).count();
    Reply::Int(added as i64)
}

/// SREM key member [member ...]
fn srem(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let removed = match set_at(ctx, &args[1]) {
        Ok(Some(set)) => args[2..].iter().filter(|m| set.remove(m.as_ref())).count(),
        Ok(None) => 0,
        Err(e) => return e,
    };
    drop_if_empty(ctx, &args[1]);
    Reply::Int(removed as i64)
}

/// SMEMBERS key
fn smembers(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match set_at(ctx, &args[1]) {
        Ok(Some(set)) => members_reply(set.iter().map(Bytes::copy_from_slice)),
        Ok(None) => Reply::Set(vec![]),
        Err(e) => e,
    }
}

/// SISMEMBER key member
fn sismember(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match set_at(ctx, &args[1]) {
        Ok(set) => Reply::Int(set.is_some_and(|s| s.contains(args[2].as_ref())) as i64),
        Err(e) => e,
    }
}

/// SMISMEMBER key member [member ...]
fn smismember(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match set_at(ctx, &args[1]) {
        Ok(set) => Reply::Array(
            args[2..]
                .iter()
                .map(|m| Reply::Int(set.as_ref().is_some_and(|s| s.contains(m.as_ref())) as i64))
                .collect(),
        ),
        Err(e) => e,
    }
}

/// SCARD key
fn scard(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match set_at(ctx, &args[1]) {
        Ok(set) => Reply::Int(set.map_or(0, |s| s.len()) as i64),
        Err(e) => e,
    }
}

/// Picks `count` distinct members at random (all when count >= len).
fn pick_distinct(rng: &mut dyn FnMut() -> u64, set: &Set, count: usize) -> Vec<Bytes> {
    let mut all: Vec<Bytes> = set.iter().map(Bytes::copy_from_slice).collect();
    if count >= all.len() {
        return all;
    }
    for i in 0..count {
        let j = i + (rng() % (all.len() - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(count);
    all
}

/// The optional count argument of SPOP / SRANDMEMBER / HRANDFIELD.
fn count_arg(args: &[Bytes], at: usize) -> Result<Option<i64>, Reply> {
    match args.len() {
        n if n == at => Ok(None),
        n if n == at + 1 => int(&args[at]).map(Some),
        _ => Err(Reply::Error(error::SYNTAX)),
    }
}

/// SPOP key [count]
fn spop(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let count = match count_arg(args, 2) {
        Ok(Some(n)) if n < 0 => return Reply::Error(error::NOT_POSITIVE),
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut seed = ctx.shard.random();
    let mut rng = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let key = &args[1];
    let picked = match set_at(ctx, key) {
        Ok(Some(set)) => {
            let picked = pick_distinct(&mut rng, set, count.unwrap_or(1) as usize);
            for m in &picked {
                set.remove(m);
            }
            picked
        }
        Ok(None) => Vec::new(),
        Err(e) => return e,
    };
    drop_if_empty(ctx, key);
    match count {
        None => picked.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
        Some(_) => members_reply(picked.into_iter()),
    }
}

/// SRANDMEMBER key [count]
fn srandmember(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let count = match count_arg(args, 2) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut seed = ctx.shard.random();
    let mut rng = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let set = match set_at(ctx, &args[1]) {
        Ok(Some(set)) => set,
        Ok(None) => {
            return if count.is_some() {
                Reply::Array(vec![])
            } else {
                Reply::Nil
            };
        }
        Err(e) => return e,
    };
    match count {
        None => pick_distinct(&mut rng, set, 1)
            .into_iter()
            .next()
            .map_or(Reply::Nil, Reply::Bulk),
        Some(n) if n >= 0 => Reply::Array(
            pick_distinct(&mut rng, set, n as usize)
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        ),
        Some(n) => {
            let all: Vec<&[u8]> = set.iter().collect();
            let n = n.unsigned_abs() as usize;
            Reply::Array(
                (0..n)
                    .map(|_| Reply::bulk(all[(rng() % all.len() as u64) as usize]))
                    .collect(),
            )
        }
    }
}

/// The SSCAN/HSCAN cursor: a position in the collection's iteration order.
pub fn scan_cursor(arg: &[u8]) -> Result<usize, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|c| c as usize)
        .ok_or(Reply::Error(error::INVALID_CURSOR))
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]
fn sscan(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let (cursor, opts) = match (scan_cursor(&args[2]), ScanArgs::parse(&args[3..])) {
        (Ok(c), Ok(o)) => (c, o),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if opts.kind.is_some() {
        return Reply::Error(error::SYNTAX);
    }
    let set = match set_at(ctx, &args[1]) {
        Ok(Some(s)) => s,
        Ok(None) => return Reply::Array(vec![Reply::bulk(b"0"), Reply::Array(vec![])]),
        Err(e) => return e,
    };
    let (members, next) = set.scan(cursor, opts.count);
    let page: Vec<Reply> = members
        .into_iter()
        .filter(|m| opts.pattern.as_ref().is_none_or(|p| glob_match(p, m)))
        .map(Reply::bulk)
        .collect();
    Reply::Array(vec![Reply::bulk_str(&next.to_string()), Reply::Array(page)])
}

/// Reads the sets at `keys` (in order) atomically across shards.
/// None stands for a missing key.
async fn read_sets(session: &Session, keys: &[Bytes]) -> Result<Vec<Option<Vec<Bytes>>>, Reply> {
    let groups = group_by_shard(session, keys.iter().enumerate());
    let results = run_grouped(session, false, groups, |ctx, items| {
        items
            .iter()
            .map(|(pos, key)| {
                (
                    *pos,
                    set_at(ctx, key).map(|s| s.map(|s| s.iter().map(Bytes::copy_from_slice).collect::<Vec<_>>())),
                )
            })
            .collect::<Vec<_>>()
    })
    .await;
    let mut out = vec![None; keys.len()];
    for (pos, r) in results.into_iter().flatten() {
        out[pos] = r?;
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

fn combine(op: SetOp, sets: Vec<Option<Vec<Bytes>>>) -> Vec<Bytes> {
    type Scratch = HashSet<Bytes, HashBuilder>;
    let mut iter = sets.into_iter();
    let first: Scratch = iter.next().flatten().unwrap_or_default().into_iter().collect();
    let mut acc = first;
    for next in iter {
        let next: Scratch = next.unwrap_or_default().into_iter().collect();
        match op {
            SetOp::Union => acc.extend(next),
            SetOp::Inter => acc.retain(|m| next.contains(m)),
            SetOp::Diff => acc.retain(|m| !next.contains(m)),
        }
    }
    acc.into_iter().collect()
}

fn set_op(session: &mut Session, args: Vec<Bytes>, op: SetOp) -> BoxFut<'_> {
    Box::pin(async move {
        match read_sets(session, &args[1..]).await {
            Ok(sets) => members_reply(combine(op, sets).into_iter()),
            Err(e) => e,
        }
    })
}

/// SUNION key [key ...]
fn sunion(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    set_op(session, args, SetOp::Union)
}

/// SINTER key [key ...]
fn sinter(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    set_op(session, args, SetOp::Inter)
}

/// SDIFF key [key ...]
fn sdiff(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    set_op(session, args, SetOp::Diff)
}

/// The STORE forms: `S*STORE destination key [key ...]`, atomic across
/// shards: every key is locked while the result is computed and stored.
fn set_op_store(session: &mut Session, args: Vec<Bytes>, op: SetOp) -> BoxFut<'_> {
    Box::pin(async move {
        let db = session.db;
        let core = session.core();
        let held = session.lock_keys(db, true, &args[1..]).await;
        let sets = {
            // Read the sources under the locks.
            let mut sets = Vec::new();
            for key in &args[2..] {
                let k = key.clone();
                let r = held
                    .run(core.shard_of(key), move |sh| {
                        let mut ctx = OpCtx::new(sh, db);
                        set_at(&mut ctx, &k)
                            .map(|s| s.map(|s| s.iter().map(Bytes::copy_from_slice).collect::<Vec<_>>()))
                    })
                    .await;
                match r {
                    Ok(s) => sets.push(s),
                    Err(e) => return e,
                }
            }
            sets
        };
        let result = combine(op, sets);
        let n = result.len() as i64;
        let dest = args[1].clone();
        held.run(core.shard_of(&dest), move |sh| {
            let mut ctx = OpCtx::new(sh, db);
            if result.is_empty() {
                ctx.db().remove(&dest);
            } else {
                ctx.db().set(&dest, Value::Set(result.into_iter().collect()));
            }
        })
        .await;
        Reply::Int(n)
    })
}

/// SUNIONSTORE destination key [key ...]
fn sunionstore(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    set_op_store(session, args, SetOp::Union)
}

/// SINTERSTORE destination key [key ...]
fn sinterstore(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    set_op_store(session, args, SetOp::Inter)
}

/// SDIFFSTORE destination key [key ...]
fn sdiffstore(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    set_op_store(session, args, SetOp::Diff)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
fn sintercard(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let numkeys = match int(&args[1]) {
            Ok(n) if n > 0 => n as usize,
            Ok(_) => return Reply::Error(error::NUMKEYS_ZERO),
            Err(_) => return Reply::Error(error::NUMKEYS_ZERO),
        };
        if numkeys > args.len() - 2 {
            return Reply::Error(error::NUMKEYS_TOO_BIG);
        }
        let mut limit = 0usize;
        let mut cur = Cursor::new(&args[2 + numkeys..]);
        while let Some(opt) = cur.next_arg() {
            if upper(opt) != "LIMIT" {
                return Reply::Error(error::SYNTAX);
            }
            match cur.next_i64() {
                Ok(n) if n >= 0 => limit = n as usize,
                Ok(_) => return Reply::Error(error::LIMIT_NEGATIVE),
                Err(e) => return e,
            }
        }
        match read_sets(session, &args[2..2 + numkeys]).await {
            Ok(sets) => {
                let n = combine(SetOp::Inter, sets).len();
                Reply::Int(if limit > 0 { n.min(limit) } else { n } as i64)
            }
            Err(e) => e,
        }
    })
}

/// SMOVE source destination member
fn smove(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let db = session.db;
        let core = session.core();
        let (src, dst, member) = (args[1].clone(), args[2].clone(), args[3].clone());
        let held = session.lock_keys(db, true, &[src.clone(), dst.clone()]).await;
        // Type-check the destination before touching the source.
        let d = dst.clone();
        let dst_ok = held
            .run(core.shard_of(&dst), move |sh| {
                set_at(&mut OpCtx::new(sh, db), &d).map(|_| ())
            })
            .await;
        let (s, m) = (src.clone(), member.clone());
        let removed = held
            .run(core.shard_of(&src), move |sh| {
                let mut ctx = OpCtx::new(sh, db);
                let set = set_at(&mut ctx, &s)?;
                dst_ok?;
                let removed = set.is_some_and(|set| set.remove(m.as_ref()));
                drop_if_empty(&mut ctx, &s);
                Ok::<bool, Reply>(removed)
            })
            .await;
        match removed {
            Err(e) => e,
            Ok(false) => Reply::Int(0),
            Ok(true) => {
                held.run(core.shard_of(&dst), move |sh| {
                    if let ValueMut::Set(set) = OpCtx::new(sh, db).value_or_insert(&dst, Value::new_set) {
                        set.insert(&member);
                    }
                })
                .await;
                Reply::Int(1)
            }
        }
    })
}
