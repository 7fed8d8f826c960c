//! `cmsgpack`: MessagePack encoding and decoding with lua-cmsgpack's rules.
//!
//! * Integral numbers use the smallest integer encoding; other numbers are
//!   float 32 when that loses nothing, else float 64.
//! * A table whose keys are exactly 1..n (or an empty table) is an array,
//!   any other a map. Nesting deeper than 16 encodes as nil.
//! * `pack(...)` concatenates its arguments; `unpack(s)` returns every
//!   object in `s`; `unpack_one(s [, offset])` and `unpack_limit(s, limit
//!   [, offset])` return the next offset (-1 at the end) and the objects.

use mlua::{Lua, MultiValue, Table, Value};

use super::{add_fallible, fail, ok};

const MAX_NESTING: usize = 16;

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                return Err(mlua::Error::RuntimeError("MessagePack pack needs input.".into()));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                encode(v, &mut out, 0);
            }
            lua.create_string(out)
        })?,
    )?;
    add_fallible(
        lua,
        &m,
        "unpack",
        lua.create_function(|lua, s: mlua::LuaString| {
            let bytes = s.as_bytes().to_vec();
            let mut d = Decoder {
                lua,
                data: &bytes,
                pos: 0,
            };
            let mut values = MultiValue::new();
            while d.pos < bytes.len() {
                match d.value(0) {
                    Ok(v) => values.push_back(v),
                    Err(e) => return fail(lua, e),
                }
            }
            ok(lua, values)
        })?,
    )?;
    let limited = |lua: &Lua, s: mlua::LuaString, limit: usize, offset: usize| -> mlua::Result<MultiValue> {
        let bytes = s.as_bytes().to_vec();
        let mut d = Decoder {
            lua,
            data: &bytes,
            pos: offset,
        };
        let mut values = MultiValue::new();
        while d.pos < bytes.len() && (limit == 0 || values.len() < limit) {
            match d.value(0) {
                Ok(v) => values.push_back(v),
                Err(e) => return fail(lua, e),
            }
        }
        let next = if d.pos >= bytes.len() { -1 } else { d.pos as i64 };
        values.push_front(Value::Number(next as f64));
        ok(lua, values)
    };
    add_fallible(
        lua,
        &m,
        "unpack_one",
        lua.create_function(move |lua, (s, offset): (mlua::LuaString, Option<i64>)| {
            limited(lua, s, 1, offset.unwrap_or(0).max(0) as usize)
        })?,
    )?;
    add_fallible(
        lua,
        &m,
        "unpack_limit",
        lua.create_function(move |lua, (s, limit, offset): (mlua::LuaString, i64, Option<i64>)| {
            limited(lua, s, limit.max(0) as usize, offset.unwrap_or(0).max(0) as usize)
        })?,
    )?;
    m.raw_set("_NAME", "cmsgpack")?;
    m.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    Ok(m)
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        let u = n as u64;
        if u <= 127 {
            out.push(u as u8);
        } else if u <= 0xff {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_len(len: usize, small: u8, small_max: usize, codes: [u8; 2], out: &mut Vec<u8>) {
    if len <= small_max {
        out.push(small | len as u8);
    } else if len <= 0xffff {
        out.push(codes[0]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(codes[1]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn encode(v: &Value, out: &mut Vec<u8>, depth: usize) {
    match v {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => encode_int(*i, out),
        Value::Number(n) => {
            if n.fract() == 0.0 && n.is_finite() && *n >= -9.2e18 && *n <= 1.8e19 {
                if *n > i64::MAX as f64 {
                    out.push(0xcf);
                    out.extend_from_slice(&(*n as u64).to_be_bytes());
                } else {
                    encode_int(*n as i64, out);
                }
            } else if (*n as f32) as f64 == *n || n.is_nan() {
                out.push(0xca);
                out.extend_from_slice(&(*n as f32).to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Value::String(s) => {
            let bytes = s.as_bytes();
            let len = bytes.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len <= 0xff {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else if len <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(&bytes);
        }
        Value::Table(t) if depth < MAX_NESTING => encode_table(t, out, depth + 1),
        _ => out.push(0xc0),
    }
}

fn encode_table(t: &Table, out: &mut Vec<u8>, depth: usize) {
    let pairs: Vec<(Value, Value)> = t.pairs::<Value, Value>().filter_map(Result::ok).collect();
    let mut max = 0usize;
    let is_array = pairs.iter().all(|(k, _)| match k {
        Value::Number(n) if *n >= 1.0 && n.fract() == 0.0 => {
            max = max.max(*n as usize);
            true
        }
        Value::Integer(i) if *i >= 1 => {
            max = max.max(*i as usize);
            true
        }
        _ => false,
    }) && max == pairs.len();
    if is_array {
        encode_len(max, 0x90, 15, [0xdc, 0xdd], out);
        for i in 1..=max {
            let v: Value = t.raw_get(i).unwrap_or(Value::Nil);
            encode(&v, out, depth);
        }
    } else {
        encode_len(pairs.len(), 0x80, 15, [0xde, 0xdf], out);
        for (k, v) in &pairs {
            encode(k, out, depth);
            encode(v, out, depth);
        }
    }
}

struct Decoder<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    pos: usize,
}

type DecodeResult<T> = Result<T, &'static str>;

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> DecodeResult<&[u8]> {
        let end = self.pos.checked_add(n).ok_or("Missing bytes in input.")?;
        let slice = self.data.get(self.pos..end).ok_or("Missing bytes in input.")?;
        self.pos = end;
        Ok(slice)
    }

    fn be(&mut self, n: usize) -> DecodeResult<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| acc << 8 | *b as u64))
    }

    fn string(&mut self, len: usize) -> DecodeResult<Value> {
        let bytes = self.take(len)?.to_vec();
        self.lua
            .create_string(bytes)
            .map(Value::String)
            .map_err(|_| "Bad data format in input.")
    }

    fn array(&mut self, len: usize, depth: usize) -> DecodeResult<Value> {
        let t = self.lua.create_table().map_err(|_| "Bad data format in input.")?;
        for i in 1..=len {
            let v = self.value(depth + 1)?;
            t.raw_set(i, v).map_err(|_| "Bad data format in input.")?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, len: usize, depth: usize) -> DecodeResult<Value> {
        let t = self.lua.create_table().map_err(|_| "Bad data format in input.")?;
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            if !matches!(k, Value::Nil) {
                t.raw_set(k, v).map_err(|_| "Bad data format in input.")?;
            }
        }
        Ok(Value::Table(t))
    }

    fn value(&mut self, depth: usize) -> DecodeResult<Value> {
        if depth > 1000 {
            return Err("Bad data format in input.");
        }
        let tag = self.take(1)?[0];
        Ok(match tag {
            0x00..=0x7f => Value::Number(tag as f64),
            0x80..=0x8f => return self.map((tag & 0x0f) as usize, depth),
            0x90..=0x9f => return self.array((tag & 0x0f) as usize, depth),
            0xa0..=0xbf => return self.string((tag & 0x1f) as usize),
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4 | 0xd9 => {
                let n = self.be(1)? as usize;
                return self.string(n);
            }
            0xc5 | 0xda => {
                let n = self.be(2)? as usize;
                return self.string(n);
            }
            0xc6 | 0xdb => {
                let n = self.be(4)? as usize;
                return self.string(n);
            }
            0xca => Value::Number(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => Value::Number(f64::from_bits(self.be(8)?)),
            0xcc => Value::Number(self.be(1)? as f64),
            0xcd => Value::Number(self.be(2)? as f64),
            0xce => Value::Number(self.be(4)? as f64),
            0xcf => Value::Number(self.be(8)? as f64),
            0xd0 => Value::Number(self.be(1)? as u8 as i8 as f64),
            0xd1 => Value::Number(self.be(2)? as u16 as i16 as f64),
            0xd2 => Value::Number(self.be(4)? as u32 as i32 as f64),
            0xd3 => Value::Number(self.be(8)? as i64 as f64),
            0xdc => {
                let n = self.be(2)? as usize;
                return self.array(n, depth);
            }
            0xdd => {
                let n = self.be(4)? as usize;
                return self.array(n, depth);
            }
            0xde => {
                let n = self.be(2)? as usize;
                return self.map(n, depth);
            }
            0xdf => {
                let n = self.be(4)? as usize;
                return self.map(n, depth);
            }
            0xe0..=0xff => Value::Number(tag as i8 as f64),
            _ => return Err("Bad data format in input."),
        })
    }
}
