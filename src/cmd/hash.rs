//! The hash family.

use bytes::Bytes;

use super::generic::ScanArgs;
use super::parse::{float, format_float, glob_match, int, parse_f64, upper};
use super::set::{drop_if_empty, scan_cursor};
use super::{CommandSpec, Exec, OpCtx, spec};
use crate::cmd::flags::*;
use crate::db::{Hash, Value, ValueMut, parse_i64};
use crate::error;
use crate::resp::Reply;

pub const COMMANDS: &[CommandSpec] = &[
    spec("hset", -4, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(hset)),
    spec("hmset", -4, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(hmset)),
    spec("hsetnx", 4, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(hsetnx)),
    spec("hget", 3, READONLY | FAST, (1, 1, 1), Exec::Key(hget)),
    spec("hmget", -3, READONLY | FAST, (1, 1, 1), Exec::Key(hmget)),
    spec("hgetall", 2, READONLY, (1, 1, 1), Exec::Key(hgetall)),
    spec("hdel", -3, WRITE | FAST, (1, 1, 1), Exec::Key(hdel)),
    spec("hexists", 3, READONLY | FAST, (1, 1, 1), Exec::Key(hexists)),
    spec("hlen", 2, READONLY | FAST, (1, 1, 1), Exec::Key(hlen)),
    spec("hkeys", 2, READONLY, (1, 1, 1), Exec::Key(hkeys)),
    spec("hvals", 2, READONLY, (1, 1, 1), Exec::Key(hvals)),
    spec("hincrby", 4, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(hincrby)),
    spec(
        "hincrbyfloat",
        4,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        Exec::Key(hincrbyfloat),
    ),
    spec("hstrlen", 3, READONLY | FAST, (1, 1, 1), Exec::Key(hstrlen)),
    spec("hrandfield", -2, READONLY, (1, 1, 1), Exec::Key(hrandfield)),
    spec("hscan", -3, READONLY, (1, 1, 1), Exec::Key(hscan)),
];

/// The hash at `key`: Ok(None) if missing, WRONGTYPE if not a hash.
fn hash_at<'a>(ctx: &'a mut OpCtx<'_>, key: &[u8]) -> Result<Option<&'a mut Hash>, Reply> {
    match ctx.value(key) {
        None => Ok(None),
        Some(ValueMut::Hash(h)) => Ok(Some(h)),
        Some(_) => Err(Reply::Error(error::WRONGTYPE)),
    }
}

/// The hash at `key`, created when missing.
fn hash_or_create<'a>(ctx: &'a mut OpCtx<'_>, key: &[u8]) -> Result<&'a mut Hash, Reply> {
    match ctx.value_or_insert(key, Value::new_hash) {
        ValueMut::Hash(h) => Ok(h),
        _ => Err(Reply::Error(error::WRONGTYPE)),
    }
}

/// Stores the field/value pairs in `args[2..]`; returns how many were new.
fn store_pairs(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Result<i64, Reply> {
    if !args.len().is_multiple_of(2) {
        return Err(error::wrong_arity(std::str::from_utf8(&args[0]).unwrap_or("hset")));
    }
    let hash = hash_or_create(ctx, &args[1])?;
    let mut added = 0;
    for pair in args[2..].chunks(2) {
        if hash.insert(&pair[0], &pair[1]) {
            added += 1;
        }
    }
    Ok(added)
}

/// HSET key field value [field value ...]
fn hset(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    store_pairs(ctx, args).map_or_else(|e| e, Reply::Int)
}

/// HMSET key field value [field value ...]
fn hmset(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    store_pairs(ctx, args).map_or_else(|e| e, |_| Reply::OK)
}

/// HSETNX key field value
fn hsetnx(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_or_create(ctx, &args[1]) {
        Ok(h) if h.contains_key(args[2].as_ref()) => Reply::Int(0),
        Ok(h) => {
            h.insert(&args[2], &args[3]);
            Reply::Int(1)
        }
        Err(e) => e,
    }
}

/// HGET key field
fn hget(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::from(h.and_then(|h| h.get(args[2].as_ref()).map(Bytes::copy_from_slice))),
        Err(e) => e,
    }
}

/// HMGET key field [field ...]
fn hmget(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::Array(
            args[2..]
                .iter()
                .map(|f| Reply::from(h.as_ref().and_then(|h| h.get(f.as_ref()).map(Bytes::copy_from_slice))))
                .collect(),
        ),
        Err(e) => e,
    }
}

/// HGETALL key
fn hgetall(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::Map(
            h.into_iter()
                .flat_map(|h| h.iter())
                .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
                .collect(),
        ),
        Err(e) => e,
    }
}

/// HDEL key field [field ...]
fn hdel(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let removed = match hash_at(ctx, &args[1]) {
        Ok(Some(h)) => args[2..].iter().filter(|f| h.remove(f.as_ref())).count(),
        Ok(None) => 0,
        Err(e) => return e,
    };
    drop_if_empty(ctx, &args[1]);
    Reply::Int(removed as i64)
}

/// HEXISTS key field
fn hexists(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::Int(h.is_some_and(|h| h.contains_key(args[2].as_ref())) as i64),
        Err(e) => e,
    }
}

/// HLEN key
fn hlen(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::Int(h.map_or(0, |h| h.len()) as i64),
        Err(e) => e,
    }
}

/// HKEYS key
fn hkeys(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::Array(h.into_iter().flat_map(|h| h.keys()).map(Reply::bulk).collect()),
        Err(e) => e,
    }
}

/// HVALS key
fn hvals(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::Array(h.into_iter().flat_map(|h| h.values()).map(Reply::bulk).collect()),
        Err(e) => e,
    }
}

/// HINCRBY key field increment
fn hincrby(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let delta = match int(&args[3]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let hash = match hash_or_create(ctx, &args[1]) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let current = match hash.get(args[2].as_ref()) {
        None => 0,
        Some(v) => match parse_i64(v) {
            Some(n) => n,
            None => return Reply::Error(error::HASH_NOT_INTEGER),
        },
    };
    let Some(next) = current.checked_add(delta) else {
        return Reply::Error(error::OVERFLOW);
    };
    hash.insert(&args[2], next.to_string().as_bytes());
    Reply::Int(next)
}

/// HINCRBYFLOAT key field increment
fn hincrbyfloat(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let delta = match float(&args[3]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let hash = match hash_or_create(ctx, &args[1]) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let current = match hash.get(args[2].as_ref()) {
        None => 0.0,
        Some(v) => match parse_f64(v) {
            Some(n) => n,
            None => return Reply::Error(error::HASH_NOT_FLOAT),
        },
    };
    let next = current + delta;
    if !next.is_finite() {
        return Reply::Error(error::INCR_NAN_OR_INF);
    }
    let text = Bytes::from(format_float(next));
    hash.insert(&args[2], &text);
    Reply::Bulk(text)
}

/// HSTRLEN key field
fn hstrlen(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match hash_at(ctx, &args[1]) {
        Ok(h) => Reply::Int(h.and_then(|h| h.get(args[2].as_ref()).map(|v| v.len())).unwrap_or(0) as i64),
        Err(e) => e,
    }
}

/// HRANDFIELD key [count [WITHVALUES]]
fn hrandfield(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let (count, with_values) = match args.len() {
        2 => (None, false),
        3 | 4 => {
            let n = match int(&args[2]) {
                Ok(n) => n,
                Err(e) => return e,
            };
            if args.len() == 4 && upper(&args[3]) != "WITHVALUES" {
                return Reply::Error(error::SYNTAX);
            }
            if n.unsigned_abs() > (i64::MAX / 2) as u64 {
                return Reply::Error(error::RANDFIELD_RANGE);
            }
            (Some(n), args.len() == 4)
        }
        _ => return Reply::Error(error::SYNTAX),
    };
    let mut seed = ctx.shard.random() | 1;
    let hash = match hash_at(ctx, &args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return if count.is_some() {
                Reply::Array(vec![])
            } else {
                Reply::Nil
            };
        }
        Err(e) => return e,
    };
    let mut rng = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let entries: Vec<(&[u8], &[u8])> = hash.iter().collect();
    let picks: Vec<usize> = match count {
        None => vec![(rng() % entries.len() as u64) as usize],
        Some(n) if n >= 0 => {
            let mut idx: Vec<usize> = (0..entries.len()).collect();
            let n = (n as usize).min(idx.len());
            for i in 0..n {
                let j = i + (rng() % (idx.len() - i) as u64) as usize;
                idx.swap(i, j);
            }
            idx.truncate(n);
            idx
        }
        Some(n) => (0..n.unsigned_abs())
            .map(|_| (rng() % entries.len() as u64) as usize)
            .collect(),
    };
    if count.is_none() {
        return Reply::bulk(entries[picks[0]].0);
    }
    let mut out = Vec::new();
    for i in picks {
        out.push(Reply::bulk(entries[i].0));
        if with_values {
            out.push(Reply::bulk(entries[i].1));
        }
    }
    Reply::Array(out)
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
fn hscan(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let (cursor, opts) = match (scan_cursor(&args[2]), ScanArgs::parse(&args[3..])) {
        (Ok(c), Ok(o)) => (c, o),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if opts.kind.is_some() {
        return Reply::Error(error::SYNTAX);
    }
    let hash = match hash_at(ctx, &args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::Array(vec![Reply::bulk(b"0"), Reply::Array(vec![])]),
        Err(e) => return e,
    };
    let (pairs, next) = hash.scan(cursor, opts.count);
    let mut page = Vec::new();
    for (k, v) in pairs {
        if opts.pattern.as_ref().is_none_or(|p| glob_match(p, k)) {
            page.push(Reply::bulk(k));
            page.push(Reply::bulk(v));
        }
    }
    Reply::Array(vec![Reply::bulk_str(&next.to_string()), Reply::Array(page)])
}
