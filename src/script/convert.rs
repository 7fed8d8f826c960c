//! Conversions between Lua values and replies, exactly as Redis 7 does them.
//!
//! Command reply -> Lua (what `redis.call` returns), RESP2 rules:
//! integer -> number, bulk -> string, null -> false, status -> {ok=...},
//! error -> {err=...}, array -> table. Under `redis.setresp(3)`: null ->
//! nil, map -> {map={...}}, set -> {set={...}}, double -> {double=n},
//! boolean -> boolean.
//!
//! Lua -> reply (what a script returns): string -> bulk, number -> integer
//! (truncated), true -> 1 and false -> null (booleans in RESP3), table with
//! `err` -> error, with `ok` -> status, `double`/`map`/`set` -> those types,
//! any other table -> array up to the first nil, anything else -> null.

use bytes::Bytes;
use mlua::{Lua, Table, Value};

use crate::resp::Reply;

/// Deepest nesting converted; deeper parts become null.
const MAX_DEPTH: usize = 1000;

/// A Lua number as Redis turns it into an integer reply: truncation, with
/// the x86 result for NaN and out-of-range values.
pub fn number_to_int(n: f64) -> i64 {
    if n.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) {
        i64::MIN
    } else {
        n.trunc() as i64
    }
}

/// A Lua number as a command argument: integers without a fraction,
/// others in their shortest form (Redis uses fpconv_dtoa).
pub fn number_to_arg(n: f64) -> Bytes {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        Bytes::from(format!("{n:.0}"))
    } else {
        Bytes::from(format!("{n}"))
    }
}

/// Converts a script's return value into a reply for a client speaking
/// RESP3 (`resp3`) or RESP2.
pub fn lua_to_reply(value: &Value, resp3: bool) -> Reply {
    to_reply(value, resp3, 0)
}

fn to_reply(value: &Value, resp3: bool, depth: usize) -> Reply {
    match value {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Number(n) => Reply::Int(number_to_int(*n)),
        Value::Integer(i) => Reply::Int(*i),
        Value::Boolean(b) => match (b, resp3) {
            (_, true) => Reply::Bool(*b),
            (true, false) => Reply::Int(1),
            (false, false) => Reply::Nil,
        },
        Value::Table(t) if depth < MAX_DEPTH => table_to_reply(t, resp3, depth),
        _ => Reply::Nil,
    }
}

fn string_field(t: &Table, name: &str) -> Option<String> {
    match t.raw_get::<Value>(name).ok()? {
        Value::String(s) => Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
        _ => None,
    }
}

fn table_to_reply(t: &Table, resp3: bool, depth: usize) -> Reply {
    if let Some(err) = string_field(t, "err") {
        return Reply::ErrorOwned(err);
    }
    if let Some(ok) = string_field(t, "ok") {
        return Reply::StatusOwned(ok);
    }
    if let Ok(Value::Number(d)) = t.raw_get::<Value>("double") {
        return Reply::Double(d);
    }
    if let Ok(Value::Table(map)) = t.raw_get::<Value>("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| (to_reply(&k, resp3, depth + 1), to_reply(&v, resp3, depth + 1)))
            .collect();
        return Reply::Map(pairs);
    }
    if let Ok(Value::Table(set)) = t.raw_get::<Value>("set") {
        let members = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| to_reply(&k, resp3, depth + 1))
            .collect();
        return Reply::Set(members);
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(to_reply(&v, resp3, depth + 1)),
        }
    }
    Reply::Array(items)
}

/// Converts a command's reply into the Lua value `redis.call` returns.
/// Errors become {err=...} tables (the caller decides whether to raise).
pub fn reply_to_lua(lua: &Lua, reply: &Reply, resp3: bool) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Status(s) => single_field(lua, "ok", s)?,
        Reply::StatusOwned(s) => single_field(lua, "ok", s)?,
        Reply::Error(e) => single_field(lua, "err", e)?,
        Reply::ErrorOwned(e) => single_field(lua, "err", e)?,
        Reply::Int(n) => Value::Number(*n as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(b)?),
        Reply::Nil | Reply::NilArray => {
            if resp3 {
                Value::Nil
            } else {
                Value::Boolean(false)
            }
        }
        Reply::Array(items) => array(lua, items, resp3)?,
        Reply::Set(items) if resp3 => {
            let set = lua.create_table()?;
            for item in items {
                set.raw_set(reply_to_lua(lua, item, resp3)?, true)?;
            }
            let t = lua.create_table()?;
            t.raw_set("set", set)?;
            Value::Table(t)
        }
        Reply::Set(items) => array(lua, items, resp3)?,
        Reply::Map(pairs) if resp3 => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(reply_to_lua(lua, k, resp3)?, reply_to_lua(lua, v, resp3)?)?;
            }
            let t = lua.create_table()?;
            t.raw_set("map", map)?;
            Value::Table(t)
        }
        Reply::Map(pairs) => {
            let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                t.raw_set(2 * i + 1, reply_to_lua(lua, k, resp3)?)?;
                t.raw_set(2 * i + 2, reply_to_lua(lua, v, resp3)?)?;
            }
            Value::Table(t)
        }
        Reply::Double(d) if resp3 => {
            let t = lua.create_table()?;
            t.raw_set("double", *d)?;
            Value::Table(t)
        }
        Reply::Double(d) => Value::String(lua.create_string(crate::resp::format_double(*d))?),
        Reply::Bool(b) if resp3 => Value::Boolean(*b),
        Reply::Bool(b) => Value::Number(*b as i64 as f64),
        Reply::Verbatim(text) => Value::String(lua.create_string(text)?),
    })
}

fn single_field(lua: &Lua, name: &str, text: &str) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set(name, text)?;
    Ok(Value::Table(t))
}

fn array(lua: &Lua, items: &[Reply], resp3: bool) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, reply_to_lua(lua, item, resp3)?)?;
    }
    Ok(Value::Table(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_truncate_like_redis() {
        assert_eq!(number_to_int(3.99), 3);
        assert_eq!(number_to_int(-3.99), -3);
        assert_eq!(number_to_int(f64::INFINITY), i64::MIN);
        assert_eq!(number_to_int(f64::NAN), i64::MIN);
        assert_eq!(&number_to_arg(1e14)[..], b"100000000000000");
        assert_eq!(&number_to_arg(2.5)[..], b"2.5");
        assert_eq!(&number_to_arg(-7.0)[..], b"-7");
    }

    #[test]
    fn arrays_stop_at_the_first_nil() {
        let lua = Lua::new();
        let v: Value = lua.load("return {1, 'x', nil, 4}").eval().unwrap();
        assert_eq!(
            lua_to_reply(&v, false),
            Reply::Array(vec![Reply::Int(1), Reply::Bulk(Bytes::from_static(b"x"))])
        );
        let v: Value = lua.load("return {err='bad'}").eval().unwrap();
        assert_eq!(lua_to_reply(&v, false), Reply::ErrorOwned("bad".into()));
        assert_eq!(lua_to_reply(&Value::Boolean(false), false), Reply::Nil);
        assert_eq!(lua_to_reply(&Value::Boolean(false), true), Reply::Bool(false));
    }
}
