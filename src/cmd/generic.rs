//! The generic (keyspace) family: existence, deletion, expiry, renaming and
//! iteration over keys.

use bytes::Bytes;

use super::parse::{Cursor, glob_match, int, upper};
use super::{BoxFut, CommandSpec, Exec, OpCtx, group_by_shard, run_grouped, spec};
use crate::cmd::flags::*;
use crate::db::{Entry, ValueKind};
use crate::error;
use crate::resp::Reply;
use crate::server::Session;

pub const COMMANDS: &[CommandSpec] = &[
    spec("del", -2, WRITE, (1, -1, 1), Exec::Conn(del)),
    spec("unlink", -2, WRITE | FAST, (1, -1, 1), Exec::Conn(del)),
    spec("exists", -2, READONLY | FAST, (1, -1, 1), Exec::Conn(exists)),
    spec("touch", -2, READONLY | FAST, (1, -1, 1), Exec::Conn(exists)),
    spec("type", 2, READONLY | FAST, (1, 1, 1), Exec::Key(type_)),
    spec("expire", -3, WRITE | FAST, (1, 1, 1), Exec::Key(expire)),
    spec("pexpire", -3, WRITE | FAST, (1, 1, 1), Exec::Key(pexpire)),
    spec("expireat", -3, WRITE | FAST, (1, 1, 1), Exec::Key(expireat)),
    spec("pexpireat", -3, WRITE | FAST, (1, 1, 1), Exec::Key(pexpireat)),
    spec("ttl", 2, READONLY | FAST, (1, 1, 1), Exec::Key(ttl)),
    spec("pttl", 2, READONLY | FAST, (1, 1, 1), Exec::Key(pttl)),
    spec("expiretime", 2, READONLY | FAST, (1, 1, 1), Exec::Key(expiretime)),
    spec("pexpiretime", 2, READONLY | FAST, (1, 1, 1), Exec::Key(pexpiretime)),
    spec("persist", 2, WRITE | FAST, (1, 1, 1), Exec::Key(persist)),
    spec("move", 3, WRITE | FAST, (1, 1, 1), Exec::Key(move_)),
    spec("keys", 2, READONLY, (0, 0, 0), Exec::Conn(keys)),
    spec("scan", -2, READONLY, (0, 0, 0), Exec::Conn(scan)),
    spec("randomkey", 1, READONLY, (0, 0, 0), Exec::Conn(randomkey)),
    spec("rename", 3, WRITE, (1, 2, 1), Exec::Conn(rename)),
    spec("renamenx", 3, WRITE | FAST, (1, 2, 1), Exec::Conn(renamenx)),
    spec("copy", -3, WRITE | DENYOOM, (1, 2, 1), Exec::Conn(copy)),
];

/// DEL key [key ...] and UNLINK key [key ...]
fn del(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let groups = group_by_shard(session, args[1..].iter().enumerate());
        let counts = run_grouped(session, true, groups, |ctx, items| {
            let now = ctx.lookup_now();
            items.iter().filter(|(_, k)| ctx.db().remove_live(k, now)).count() as i64
        })
        .await;
        Reply::Int(counts.into_iter().sum())
    })
}

/// EXISTS key [key ...] and TOUCH key [key ...]
fn exists(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let groups = group_by_shard(session, args[1..].iter().enumerate());
        let counts = run_grouped(session, false, groups, |ctx, items| {
            let now = ctx.lookup_now();
            items.iter().filter(|(_, k)| ctx.db().contains(k, now)).count() as i64
        })
        .await;
        Reply::Int(counts.into_iter().sum())
    })
}

/// TYPE key
fn type_(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    Reply::Status(ctx.value(&args[1]).map_or("none", |v| v.as_ref().kind().name()))
}

#[derive(Clone, Copy, PartialEq)]
enum ExpireCond {
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
}

/// `EXPIRE key seconds [NX|XX|GT|LT]` and its three siblings.
fn expire_generic(ctx: &mut OpCtx<'_>, args: &[Bytes], millis: bool, absolute: bool, name: &str) -> Reply {
    let mut cond = ExpireCond::Always;
    for arg in &args[3..] {
        let next = match upper(arg).as_str() {
            "NX" => ExpireCond::Nx,
            "XX" => ExpireCond::Xx,
            "GT" => ExpireCond::Gt,
            "LT" => ExpireCond::Lt,
            _ => return Reply::ErrorOwned(format!("ERR Unsupported option {}", String::from_utf8_lossy(arg))),
        };
        if cond != ExpireCond::Always && cond != next {
            return if cond == ExpireCond::Nx || next == ExpireCond::Nx {
                Reply::Error(error::NX_XX_GT_LT)
            } else if matches!(
                (cond, next),
                (ExpireCond::Gt, ExpireCond::Lt) | (ExpireCond::Lt, ExpireCond::Gt)
            ) {
                Reply::Error("ERR GT and LT options at the same time are not compatible")
            } else {
                Reply::Error(error::NX_XX_GT_LT)
            };
        }
        cond = next;
    }
    let when = match int(&args[2]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let now = ctx.now() as i64;
    let mut at = when;
    if !millis {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&at) {
            return error::invalid_expire(name);
        }
        at *= 1000;
    }
    if !absolute {
        match at.checked_add(now) {
            Some(v) => at = v,
            None => return error::invalid_expire(name),
        }
    }
    let key = &args[1];
    let Some(entry) = ctx.db().get(key, now as u64) else {
        return Reply::Int(0);
    };
    let current = entry.expire_at();
    let allowed = match cond {
        ExpireCond::Always => true,
        ExpireCond::Nx => current == 0,
        ExpireCond::Xx => current != 0,
        ExpireCond::Gt => current != 0 && at > current as i64,
        ExpireCond::Lt => current == 0 || at < current as i64,
    };
    if !allowed {
        return Reply::Int(0);
    }
    if at <= now {
        ctx.db().remove(key);
    } else {
        ctx.db().set_expire(key, at as u64);
    }
    Reply::Int(1)
}

fn expire(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, false, false, "expire")
}

fn pexpire(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, true, false, "pexpire")
}

fn expireat(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, false, true, "expireat")
}

fn pexpireat(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, true, true, "pexpireat")
}

/// TTL and its siblings: -2 for a missing key, -1 for no TTL.
fn ttl_generic(ctx: &mut OpCtx<'_>, key: &[u8], millis: bool, absolute: bool) -> Reply {
    let now = ctx.lookup_now();
    let Some(entry) = ctx.db().get(key, now) else {
        return Reply::Int(-2);
    };
    let at = entry.expire_at();
    if at == 0 {
        return Reply::Int(-1);
    }
    let t = if absolute {
        at as i64
    } else {
        (at as i64 - now as i64).max(0)
    };
    Reply::Int(if millis { t } else { (t + 500) / 1000 })
}

/// TTL key
fn ttl(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], false, false)
}

/// PTTL key
fn pttl(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], true, false)
}

/// EXPIRETIME key
fn expiretime(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], false, true)
}

/// PEXPIRETIME key
fn pexpiretime(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], true, true)
}

/// PERSIST key
fn persist(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.lookup_now();
    if ctx.db().get(&args[1], now).is_none() {
        return Reply::Int(0);
    }
    Reply::Int(ctx.db().persist(&args[1]) as i64)
}

/// Parses a database index argument against the configured count.
pub fn db_index(arg: &[u8], dbnum: usize) -> Result<u16, Reply> {
    let n = int(arg)?;
    if n < 0 || n >= dbnum as i64 {
        return Err(Reply::Error(error::DB_INDEX_OUT_OF_RANGE));
    }
    Ok(n as u16)
}

/// MOVE key db: a key keeps its shard in every database, so this is local.
fn move_(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let target = match db_index(&args[2], ctx.shard.dbs.len()) {
        Ok(t) => t,
        Err(e) => return e,
    };
    if target == ctx.db {
        return Reply::Error(error::SAME_OBJECT);
    }
    let now = ctx.now();
    let key = &args[1];
    if !ctx.db().contains(key, now) || ctx.shard.db(target).contains(key, now) {
        return Reply::Int(0);
    }
    let entry = ctx.db().remove(key).expect("checked above");
    ctx.shard.db(target).set_with_expire(key, entry.value, entry.expire_at);
    ctx.shard.signal_key(target, key);
    ctx.shard.touch_watched(target, key);
    Reply::Int(1)
}

/// KEYS pattern
fn keys(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let db = session.db;
        let pattern = args[1].clone();
        let per_shard = session
            .run_on_all(move |sh| {
                let mut ctx = OpCtx::new(sh, db);
                let now = ctx.lookup_now();
                let all = pattern.as_ref() == b"*";
                ctx.db()
                    .keys(now)
                    .map(|n| n.key())
                    .filter(|k| all || glob_match(&pattern, k))
                    .map(|k| Reply::Bulk(Bytes::copy_from_slice(k)))
                    .collect::<Vec<_>>()
            })
            .await;
        Reply::Array(per_shard.into_iter().flatten().collect())
    })
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
///
/// The cursor packs the shard in its low part and the position within that
/// shard's table above it, so it stays valid between calls.
fn scan(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let Ok(cursor) = std::str::from_utf8(&args[1]).unwrap_or("x").parse::<u64>() else {
            return Reply::Error(error::INVALID_CURSOR);
        };
        let opts = match ScanArgs::parse(&args[2..]) {
            Ok(o) => o,
            Err(e) => return e,
        };
        let core = session.core();
        let nshards = core.nshards() as u64;
        let mut shard = (cursor % nshards) as usize;
        let mut pos = (cursor / nshards) as usize;
        let db = session.db;
        let mut found = Vec::new();
        loop {
            let count = opts.count;
            let (page, next) = session
                .run_on(shard, move |sh| {
                    let now = crate::db::now_ms();
                    sh.db(db).scan_page(pos, count, now)
                })
                .await;
            for (key, kind) in page {
                let type_ok = opts.kind.is_none_or(|k| k == kind);
                let match_ok = opts.pattern.as_ref().is_none_or(|p| glob_match(p, &key));
                if type_ok && match_ok {
                    found.push(Reply::Bulk(key));
                }
            }
            if next != 0 {
                pos = next;
                break;
            }
            shard += 1;
            pos = 0;
            if shard as u64 >= nshards || found.len() >= opts.count {
                break;
            }
        }
        let next_cursor = if shard as u64 >= nshards {
            0
        } else {
            pos as u64 * nshards + shard as u64
        };
        Reply::Array(vec![
            Reply::Bulk(Bytes::from(next_cursor.to_string())),
            Reply::Array(found),
        ])
    })
}

/// MATCH / COUNT / TYPE options shared by the SCAN family.
pub struct ScanArgs {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub kind: Option<ValueKind>,
}

impl ScanArgs {
    pub fn parse(args: &[Bytes]) -> Result<ScanArgs, Reply> {
        let mut out = ScanArgs {
            pattern: None,
            count: 10,
            kind: None,
        };
        let mut cur = Cursor::new(args);
        while let Some(arg) = cur.next_arg() {
            match upper(arg).as_str() {
                "MATCH" => {
                    let p = cur.required()?;
                    out.pattern = if p.as_ref() == b"*" { None } else { Some(p.clone()) };
                }
                "COUNT" => {
                    let n = cur.next_i64()?;
                    if n < 1 {
                        return Err(Reply::Error(error::SYNTAX));
                    }
                    out.count = n as usize;
                }
                "TYPE" => {
                    let name = cur.required()?;
                    out.kind = Some(ValueKind::from_name(name).ok_or_else(|| {
                        Reply::ErrorOwned(format!("ERR unknown type name '{}'", String::from_utf8_lossy(name)))
                    })?);
                }
                _ => return Err(Reply::Error(error::SYNTAX)),
            }
        }
        Ok(out)
    }
}

/// RANDOMKEY
fn randomkey(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let db = session.db;
        let core = session.core();
        let sizes = session.run_on_all(move |sh| sh.db(db).len()).await;
        let total: usize = sizes.iter().sum();
        if total == 0 {
            return Reply::Nil;
        }
        let random = session.run_on(core.id, |sh| sh.random()).await;
        let mut pick = (random % total as u64) as usize;
        for (shard, size) in sizes.into_iter().enumerate() {
            if pick < size {
                return session
                    .run_on(shard, move |sh| {
                        let slot = sh.random();
                        Reply::from(sh.db(db).random_key(slot).map(Bytes::copy_from_slice))
                    })
                    .await;
            }
            pick -= size;
        }
        Reply::Nil
    })
}

/// RENAME key newkey
fn rename(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move { transfer(session, &args[1], session.db, &args[2], session.db, Transfer::Rename).await })
}

/// RENAMENX key newkey
fn renamenx(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move { transfer(session, &args[1], session.db, &args[2], session.db, Transfer::RenameNx).await })
}

/// COPY source destination [DB destination-db] [REPLACE]
fn copy(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let mut dst_db = session.db;
        let mut replace = false;
        let mut cur = Cursor::new(&args[3..]);
        while let Some(arg) = cur.next_arg() {
            match upper(arg).as_str() {
                "REPLACE" => replace = true,
                "DB" => match cur
                    .required()
                    .and_then(|a| db_index(a, session.node.shared.config.dbnum as usize))
                {
                    Ok(d) => dst_db = d,
                    Err(e) => return e,
                },
                _ => return Reply::Error(error::SYNTAX),
            }
        }
        let mode = if replace { Transfer::CopyReplace } else { Transfer::Copy };
        transfer(session, &args[1], session.db, &args[2], dst_db, mode).await
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Transfer {
    Rename,
    RenameNx,
    Copy,
    CopyReplace,
}

/// Moves or copies the value at `src` to `dst` atomically, wherever the two
/// keys live.
async fn transfer(session: &Session, src: &Bytes, src_db: u16, dst: &Bytes, dst_db: u16, mode: Transfer) -> Reply {
    let is_copy = matches!(mode, Transfer::Copy | Transfer::CopyReplace);
    if is_copy && src == dst && src_db == dst_db {
        return Reply::Error(error::SAME_OBJECT);
    }
    let core = session.core();
    let mut keys = vec![src.clone()];
    if dst_db == src_db {
        keys.push(dst.clone());
    }
    let held = session.lock_keys(src_db, true, &keys).await;
    let dst_held = if dst_db != src_db {
        Some(session.lock_keys(dst_db, true, std::slice::from_ref(dst)).await)
    } else {
        None
    };
    let (src_shard, dst_shard) = (core.shard_of(src), core.shard_of(dst));
    let src_key = src.clone();
    let source: Option<Entry> = held
        .run(src_shard, move |sh| {
            let now = crate::db::now_ms();
            sh.db(src_db).get(&src_key, now).map(|e| Entry {
                value: e.to_value(),
                expire_at: e.expire_at(),
            })
        })
        .await;
    let Some(source) = source else {
        return if is_copy {
            Reply::Int(0)
        } else {
            Reply::Error(error::NO_SUCH_KEY)
        };
    };
    if !is_copy && src == dst {
        return if mode == Transfer::RenameNx {
            Reply::Int(0)
        } else {
            Reply::OK
        };
    }
    let dst_key = dst.clone();
    let may_overwrite = matches!(mode, Transfer::Rename | Transfer::CopyReplace);
    let placed = session
        .run_on(dst_shard, move |sh| {
            let now = crate::db::now_ms();
            let db = sh.db(dst_db);
            if !may_overwrite && db.contains(&dst_key, now) {
                return false;
            }
            db.set_with_expire(&dst_key, source.value, source.expire_at);
            sh.signal_key(dst_db, &dst_key);
            // Inside EXEC or a script no lock of this command's tells the
            // WATCHers, and COPY ... DB writes another database.
            sh.touch_watched(dst_db, &dst_key);
            true
        })
        .await;
    if placed && !is_copy {
        let src_key = src.clone();
        held.run(src_shard, move |sh| {
            sh.db(src_db).remove(&src_key);
            sh.touch_watched(src_db, &src_key);
        })
        .await;
    }
    drop(dst_held);
    drop(held);
    match mode {
        Transfer::Rename => Reply::OK,
        _ => Reply::Int(placed as i64),
    }
}
