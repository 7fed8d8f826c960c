//! The list family, including the blocking pops.
//!
//! A blocked client (BLPOP and friends) loops: try the non-blocking form
//! atomically; if every key is empty, register a `Signal` on each key's
//! shard (checking, in the same step, that the key is still empty) and
//! sleep until a push to any of them fires the signal or the timeout
//! passes. A push anywhere, from any core, fires the signals of its key.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::parse::{Cursor, float, int, upper};
use super::set::drop_if_empty;
use super::{BoxFut, CommandSpec, Exec, OpCtx, numkeys_at, spec};
use crate::cmd::flags::*;
use crate::db::{Value, ValueMut, ValueRef};
use crate::error;
use crate::resp::Reply;
use crate::server::Session;
use crate::shard::Signal;

pub const COMMANDS: &[CommandSpec] = &[
    spec("lpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(lpush)),
    spec("rpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(rpush)),
    spec("lpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(lpushx)),
    spec("rpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), Exec::Key(rpushx)),
    spec("lpop", -2, WRITE | FAST, (1, 1, 1), Exec::Key(lpop)),
    spec("rpop", -2, WRITE | FAST, (1, 1, 1), Exec::Key(rpop)),
    spec("llen", 2, READONLY | FAST, (1, 1, 1), Exec::Key(llen)),
    spec("lrange", 4, READONLY, (1, 1, 1), Exec::Key(lrange)),
    spec("lindex", 3, READONLY, (1, 1, 1), Exec::Key(lindex)),
    spec("lset", 4, WRITE | DENYOOM, (1, 1, 1), Exec::Key(lset)),
    spec("lrem", 4, WRITE, (1, 1, 1), Exec::Key(lrem)),
    spec("ltrim", 4, WRITE, (1, 1, 1), Exec::Key(ltrim)),
    spec("linsert", 5, WRITE | DENYOOM, (1, 1, 1), Exec::Key(linsert)),
    spec("lpos", -3, READONLY, (1, 1, 1), Exec::Key(lpos)),
    spec("rpoplpush", 3, WRITE | DENYOOM, (1, 2, 1), Exec::Conn(rpoplpush)),
    spec("lmove", 5, WRITE | DENYOOM, (1, 2, 1), Exec::Conn(lmove)),
    spec("lmpop", -4, WRITE, (2, -1, 1), Exec::Conn(lmpop)).with_keys(|a| Some(numkeys_at(a, 1))),
    spec("blpop", -3, WRITE | BLOCKING, (1, -2, 1), Exec::Conn(blpop)),
    spec("brpop", -3, WRITE | BLOCKING, (1, -2, 1), Exec::Conn(brpop)),
    spec(
        "brpoplpush",
        4,
        WRITE | DENYOOM | BLOCKING,
        (1, 2, 1),
        Exec::Conn(brpoplpush),
    ),
    spec("blmove", 6, WRITE | DENYOOM | BLOCKING, (1, 2, 1), Exec::Conn(blmove)),
    spec("blmpop", -5, WRITE | BLOCKING, (3, -1, 1), Exec::Conn(blmpop)).with_keys(|a| Some(numkeys_at(a, 2))),
];

type List = VecDeque<Bytes>;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum End {
    Left,
    Right,
}

impl End {
    fn parse(arg: &[u8]) -> Option<End> {
        match upper(arg).as_str() {
            "LEFT" => Some(End::Left),
            "RIGHT" => Some(End::Right),
            _ => None,
        }
    }
}

/// The list at `key`: Ok(None) if missing, WRONGTYPE if not a list.
fn list_at<'a>(ctx: &'a mut OpCtx<'_>, key: &[u8]) -> Result<Option<&'a mut List>, Reply> {
    match ctx.value(key) {
        None => Ok(None),
        Some(ValueMut::List(l)) => Ok(Some(l)),
        Some(_) => Err(Reply::Error(error::WRONGTYPE)),
    }
}

fn new_list() -> Value {
    Value::List(VecDeque::new())
}

/// Pushes `items` at `end`; with `only_existing`, does nothing to a missing
/// key. Wakes clients blocked on the key. Returns the new length.
fn push(ctx: &mut OpCtx<'_>, key: &[u8], items: &[Bytes], end: End, only_existing: bool) -> Reply {
    let list = if only_existing {
        match list_at(ctx, key) {
            Ok(Some(l)) => l,
            Ok(None) => return Reply::Int(0),
            Err(e) => return e,
        }
    } else {
        match ctx.value_or_insert(key, new_list) {
            ValueMut::List(l) => l,
            _ => return Reply::Error(error::WRONGTYPE),
        }
    };
    for item in items {
        let item = Bytes::copy_from_slice(item);
        match end {
            End::Left => list.push_front(item),
            End::Right => list.push_back(item),
        }
    }
    let len = list.len() as i64;
    let db = ctx.db;
    ctx.shard.signal_key(db, key);
    Reply::Int(len)
}

/// LPUSH key element [element ...]
fn lpush(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    push(ctx, &args[1], &args[2..], End::Left, false)
}

/// RPUSH key element [element ...]
fn rpush(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    push(ctx, &args[1], &args[2..], End::Right, false)
}

/// LPUSHX key element [element ...]
fn lpushx(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    push(ctx, &args[1], &args[2..], End::Left, true)
}

/// RPUSHX key element [element ...]
fn rpushx(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    push(ctx, &args[1], &args[2..], End::Right, true)
}

/// Pops up to `count` elements from `end`, dropping the key when emptied.
/// Ok(None) when the key is missing.
fn pop_n(ctx: &mut OpCtx<'_>, key: &[u8], end: End, count: usize) -> Result<Option<Vec<Bytes>>, Reply> {
    let out = match list_at(ctx, key)? {
        None => return Ok(None),
        Some(list) => {
            let n = count.min(list.len());
            (0..n)
                .filter_map(|_| match end {
                    End::Left => list.pop_front(),
                    End::Right => list.pop_back(),
                })
                .collect()
        }
    };
    drop_if_empty(ctx, key);
    Ok(Some(out))
}

/// LPOP/RPOP key [count]
fn pop_command(ctx: &mut OpCtx<'_>, args: &[Bytes], end: End) -> Reply {
    let count = match args.len() {
        2 => None,
        3 => match int(&args[2]) {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => return Reply::Error(error::NOT_POSITIVE),
        },
        _ => return Reply::Error(error::SYNTAX),
    };
    match (pop_n(ctx, &args[1], end, count.unwrap_or(1)), count) {
        (Err(e), _) => e,
        (Ok(None), None) => Reply::Nil,
        (Ok(None), Some(_)) => Reply::NilArray,
        (Ok(Some(v)), None) => v.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
        (Ok(Some(v)), Some(_)) => Reply::Array(v.into_iter().map(Reply::Bulk).collect()),
    }
}

fn lpop(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    pop_command(ctx, args, End::Left)
}

fn rpop(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    pop_command(ctx, args, End::Right)
}

/// LLEN key
fn llen(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    match list_at(ctx, &args[1]) {
        Ok(l) => Reply::Int(l.map_or(0, |l| l.len()) as i64),
        Err(e) => e,
    }
}

/// Normalises a Redis start/stop pair against `len`; None when empty.
fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
    if start > stop || start >= len {
        None
    } else {
        Some((start as usize, stop as usize))
    }
}

/// LRANGE key start stop
fn lrange(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let (start, stop) = match (int(&args[2]), int(&args[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match list_at(ctx, &args[1]) {
        Ok(Some(l)) => match range(start, stop, l.len()) {
            Some((a, b)) => Reply::Array(l.range(a..=b).map(|e| Reply::Bulk(e.clone())).collect()),
            None => Reply::Array(vec![]),
        },
        Ok(None) => Reply::Array(vec![]),
        Err(e) => e,
    }
}

fn list_index(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { len as i64 + index } else { index };
    (i >= 0 && i < len as i64).then_some(i as usize)
}

/// LINDEX key index
fn lindex(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let index = match int(&args[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    match list_at(ctx, &args[1]) {
        Ok(Some(l)) => Reply::from(list_index(index, l.len()).map(|i| l[i].clone())),
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

/// LSET key index element
fn lset(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let index = match int(&args[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    match list_at(ctx, &args[1]) {
        Ok(Some(l)) => match list_index(index, l.len()) {
            Some(i) => {
                l[i] = Bytes::copy_from_slice(&args[3]);
                Reply::OK
            }
            None => Reply::Error(error::INDEX_OUT_OF_RANGE),
        },
        Ok(None) => Reply::Error(error::NO_SUCH_KEY),
        Err(e) => e,
    }
}

/// LREM key count element
fn lrem(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let count = match int(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let target = &args[3];
    let removed = match list_at(ctx, &args[1]) {
        Ok(Some(l)) => {
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            let mut removed = 0;
            if count >= 0 {
                let mut i = 0;
                while i < l.len() && removed < limit {
                    if l[i] == target {
                        l.remove(i);
                        removed += 1;
                    } else {
                        i += 1;
                    }
                }
            } else {
                let mut i = l.len();
                while i > 0 && removed < limit {
                    i -= 1;
                    if l[i] == target {
                        l.remove(i);
                        removed += 1;
                    }
                }
            }
            removed
        }
        Ok(None) => 0,
        Err(e) => return e,
    };
    drop_if_empty(ctx, &args[1]);
    Reply::Int(removed as i64)
}

/// LTRIM key start stop
fn ltrim(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let (start, stop) = match (int(&args[2]), int(&args[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match list_at(ctx, &args[1]) {
        Ok(Some(l)) => match range(start, stop, l.len()) {
            Some((a, b)) => {
                l.truncate(b + 1);
                l.drain(..a);
            }
            None => l.clear(),
        },
        Ok(None) => {}
        Err(e) => return e,
    }
    drop_if_empty(ctx, &args[1]);
    Reply::OK
}

/// LINSERT key BEFORE|AFTER pivot element
fn linsert(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let after = match upper(&args[2]).as_str() {
        "BEFORE" => false,
        "AFTER" => true,
        _ => return Reply::Error(error::SYNTAX),
    };
    match list_at(ctx, &args[1]) {
        Ok(Some(l)) => match l.iter().position(|e| e == &args[3]) {
            Some(i) => {
                l.insert(if after { i + 1 } else { i }, Bytes::copy_from_slice(&args[4]));
                Reply::Int(l.len() as i64)
            }
            None => Reply::Int(-1),
        },
        Ok(None) => Reply::Int(0),
        Err(e) => e,
    }
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
fn lpos(ctx: &mut OpCtx<'_>, args: &[Bytes]) -> Reply {
    let mut rank: i64 = 1;
    let mut count: Option<usize> = None;
    let mut maxlen: usize = 0;
    let mut cur = Cursor::new(&args[3..]);
    while let Some(opt) = cur.next_arg() {
        let value = match cur.next_i64() {
            Ok(v) => v,
            Err(e) => return e,
        };
        match upper(opt).as_str() {
            "RANK" if value == 0 => return Reply::Error(error::RANK_ZERO),
            "RANK" if value == i64::MIN => {
                return Reply::Error(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                );
            }
            "RANK" => rank = value,
            "COUNT" if value < 0 => return Reply::Error("ERR COUNT can't be negative"),
            "COUNT" => count = Some(value as usize),
            "MAXLEN" if value < 0 => return Reply::Error(error::MAXLEN_NEGATIVE),
            "MAXLEN" => maxlen = value as usize,
            _ => return Reply::Error(error::SYNTAX),
        }
    }
    let list = match list_at(ctx, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return if count.is_some() {
                Reply::Array(vec![])
            } else {
                Reply::Nil
            };
        }
        Err(e) => return e,
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let limit = if maxlen == 0 {
        list.len()
    } else {
        maxlen.min(list.len())
    };
    let mut skip = rank.unsigned_abs() as usize - 1;
    let mut found = Vec::new();
    let indices: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..limit)
    } else {
        Box::new((list.len() - limit..list.len()).rev())
    };
    for i in indices {
        if list[i] == args[2] {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(i as i64);
            if found.len() >= want {
                break;
            }
        }
    }
    match count {
        None => found.first().map_or(Reply::Nil, |&i| Reply::Int(i)),
        Some(_) => Reply::Array(found.into_iter().map(Reply::Int).collect()),
    }
}

/// Moves one element from `src` (at `from`) to `dst` (at `to`) atomically.
/// Ok(None) when `src` is missing or empty.
async fn move_element(session: &Session, src: &Bytes, dst: &Bytes, from: End, to: End) -> Result<Option<Bytes>, Reply> {
    let db = session.db;
    let core = session.core();
    let held = session.lock_keys(db, true, &[src.clone(), dst.clone()]).await;
    let (s, d) = (src.clone(), dst.clone());
    let same_shard = core.shard_of(src) == core.shard_of(dst);
    if same_shard {
        return held
            .run(core.shard_of(src), move |sh| {
                let mut ctx = OpCtx::new(sh, db);
                list_at(&mut ctx, &d)?;
                let Some(item) = pop_n(&mut ctx, &s, from, 1)?.and_then(|v| v.into_iter().next()) else {
                    return Ok(None);
                };
                push(&mut ctx, &d, std::slice::from_ref(&item), to, false);
                Ok(Some(item))
            })
            .await;
    }
    let dst_type = held
        .run(core.shard_of(dst), move |sh| {
            list_at(&mut OpCtx::new(sh, db), &d).map(|_| ())
        })
        .await;
    let popped = held
        .run(core.shard_of(src), move |sh| {
            let mut ctx = OpCtx::new(sh, db);
            list_at(&mut ctx, &s)?;
            dst_type?;
            Ok::<_, Reply>(pop_n(&mut ctx, &s, from, 1)?.and_then(|v| v.into_iter().next()))
        })
        .await?;
    let Some(item) = popped else {
        return Ok(None);
    };
    let (d, it) = (dst.clone(), item.clone());
    held.run(core.shard_of(dst), move |sh| {
        push(&mut OpCtx::new(sh, db), &d, &[it], to, false)
    })
    .await;
    Ok(Some(item))
}

/// RPOPLPUSH source destination
fn rpoplpush(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        match move_element(session, &args[1], &args[2], End::Right, End::Left).await {
            Ok(v) => Reply::from(v),
            Err(e) => e,
        }
    })
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
fn lmove(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let (Some(from), Some(to)) = (End::parse(&args[3]), End::parse(&args[4])) else {
            return Reply::Error(error::SYNTAX);
        };
        match move_element(session, &args[1], &args[2], from, to).await {
            Ok(v) => Reply::from(v),
            Err(e) => e,
        }
    })
}

/// Pops from the first non-empty list of `keys`, atomically across shards.
/// Returns the key and the popped elements, or None when all are empty.
async fn pop_first(
    session: &Session,
    keys: &[Bytes],
    end: End,
    count: usize,
) -> Result<Option<(Bytes, Vec<Bytes>)>, Reply> {
    let db = session.db;
    let core = session.core();
    if keys.len() == 1 || keys.iter().all(|k| core.shard_of(k) == core.shard_of(&keys[0])) {
        // One shard: a single step on the owner.
        let keys_owned = keys.to_vec();
        return session
            .run_keyed(core.shard_of(&keys[0]), keys, true, move |sh| {
                let mut ctx = OpCtx::new(sh, db);
                for key in keys_owned {
                    if let Some(v) = pop_n(&mut ctx, &key, end, count)? {
                        return Ok(Some((key, v)));
                    }
                }
                Ok(None)
            })
            .await;
    }
    let held = session.lock_keys(db, true, keys).await;
    for key in keys {
        let k = key.clone();
        let popped = held
            .run(core.shard_of(key), move |sh| {
                pop_n(&mut OpCtx::new(sh, db), &k, end, count)
            })
            .await?;
        if let Some(v) = popped {
            return Ok(Some((key.clone(), v)));
        }
    }
    Ok(None)
}

/// The `numkeys key... LEFT|RIGHT [COUNT n]` tail of LMPOP and BLMPOP.
fn parse_mpop(args: &[Bytes]) -> Result<(Vec<Bytes>, End, usize), Reply> {
    let numkeys = match int(&args[0]) {
        Ok(n) if n > 0 => n as usize,
        _ => return Err(Reply::Error(error::NUMKEYS_ZERO)),
    };
    if numkeys + 1 >= args.len() {
        return Err(Reply::Error(error::SYNTAX));
    }
    let keys = args[1..=numkeys].to_vec();
    let end = End::parse(&args[numkeys + 1]).ok_or(Reply::Error(error::SYNTAX))?;
    let mut count = 1;
    let mut cur = Cursor::new(&args[numkeys + 2..]);
    if cur.eat("COUNT") {
        match cur.next_i64()? {
            n if n > 0 => count = n as usize,
            _ => return Err(Reply::Error(error::COUNT_ZERO)),
        }
    }
    cur.finish()?;
    Ok((keys, end, count))
}

fn mpop_reply(popped: Option<(Bytes, Vec<Bytes>)>) -> Reply {
    match popped {
        None => Reply::NilArray,
        Some((key, items)) => Reply::Array(vec![
            Reply::Bulk(key),
            Reply::Array(items.into_iter().map(Reply::Bulk).collect()),
        ]),
    }
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]
fn lmpop(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let (keys, end, count) = match parse_mpop(&args[1..]) {
            Ok(p) => p,
            Err(e) => return e,
        };
        match pop_first(session, &keys, end, count).await {
            Ok(p) => mpop_reply(p),
            Err(e) => e,
        }
    })
}

/// Parses a blocking timeout in seconds (0: forever).
fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Reply> {
    let secs = float(arg).map_err(|_| Reply::Error(error::TIMEOUT_NOT_FLOAT))?;
    if secs < 0.0 {
        return Err(Reply::Error(error::TIMEOUT_NEGATIVE));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    if !secs.is_finite() || secs > 1e10 {
        return Err(Reply::Error(error::TIMEOUT_NOT_FLOAT));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// Repeats `attempt` until it yields a value, sleeping between tries until
/// a push to one of `keys` or the deadline. None on timeout.
async fn block_on<T, F, Fut>(
    session: &Session,
    keys: &[Bytes],
    timeout: Option<Duration>,
    mut attempt: F,
) -> Result<Option<T>, Reply>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Reply>>,
{
    if session.atomic || session.in_script {
        // Inside EXEC or a script, blocking commands do not block.
        return attempt().await;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let db = session.db;
    let core = session.core();
    loop {
        if let Some(v) = attempt().await? {
            return Ok(Some(v));
        }
        let signal = Arc::new(Signal::default());
        for key in keys {
            let (k, s) = (key.clone(), signal.clone());
            session.run_on(core.shard_of(key), move |sh| {
                let ready = matches!(sh.db(db).get_mut(&k, crate::db::now_ms()), Some(e) if matches!(e.value(), ValueRef::List(l) if !l.is_empty()));
                if ready {
                    s.fire();
                } else {
                    sh.wait_for_key(db, k, s);
                }
            })
            .await;
        }
        session.info.borrow_mut().block_signal = Some(signal.clone());
        let woke = match deadline {
            None => {
                signal.wait().await;
                true
            }
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                futures_lite::future::or(
                    async {
                        signal.wait().await;
                        true
                    },
                    async {
                        crate::server::net::sleep(left).await;
                        false
                    },
                )
                .await
            }
        };
        session.info.borrow_mut().block_signal = None;
        if session.info.borrow().killed {
            return Ok(None);
        }
        if !woke {
            // One last try: a push may have raced with the timer.
            return attempt().await;
        }
    }
}

/// BLPOP/BRPOP key [key ...] timeout
fn blocking_pop(session: &mut Session, args: Vec<Bytes>, end: End) -> BoxFut<'_> {
    Box::pin(async move {
        let timeout = match parse_timeout(&args[args.len() - 1]) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let keys = args[1..args.len() - 1].to_vec();
        let s: &Session = session;
        let result = block_on(s, &keys, timeout, || pop_first(s, &keys, end, 1)).await;
        match result {
            Ok(Some((key, items))) => Reply::Array(vec![Reply::Bulk(key), Reply::Bulk(items[0].clone())]),
            Ok(None) => Reply::NilArray,
            Err(e) => e,
        }
    })
}

fn blpop(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    blocking_pop(session, args, End::Left)
}

fn brpop(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    blocking_pop(session, args, End::Right)
}

/// Shared body of BRPOPLPUSH and BLMOVE.
async fn blocking_move(session: &Session, src: Bytes, dst: Bytes, from: End, to: End, timeout: &[u8]) -> Reply {
    let timeout = match parse_timeout(timeout) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keys = [src.clone()];
    match block_on(session, &keys, timeout, || move_element(session, &src, &dst, from, to)).await {
        Ok(v) => Reply::from(v),
        Err(e) => e,
    }
}

/// BRPOPLPUSH source destination timeout
fn brpoplpush(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        blocking_move(
            session,
            args[1].clone(),
            args[2].clone(),
            End::Right,
            End::Left,
            &args[3],
        )
        .await
    })
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout
fn blmove(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let (Some(from), Some(to)) = (End::parse(&args[3]), End::parse(&args[4])) else {
            return Reply::Error(error::SYNTAX);
        };
        blocking_move(session, args[1].clone(), args[2].clone(), from, to, &args[5]).await
    })
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]
fn blmpop(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let timeout = match parse_timeout(&args[1]) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let (keys, end, count) = match parse_mpop(&args[2..]) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let s: &Session = session;
        match block_on(s, &keys, timeout, || pop_first(s, &keys, end, count)).await {
            Ok(p) => mpop_reply(p),
            Err(e) => e,
        }
    })
}
