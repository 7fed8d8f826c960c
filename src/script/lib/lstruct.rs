//! `struct`: packing Lua values into binary strings and back, following
//! the format language of Redis's bundled struct library:
//!
//! `<` `>` `=` set the byte order, `!n` the maximum alignment (default 1:
//! none); `b B h H l L T` are the C integer types (`l`, `L`, `T`: 8 bytes),
//! `iN IN` integers of N bytes (default 4), `f d` floats, `s` a
//! zero-terminated string, `cN` a string of N bytes (`c0`: its own length
//! when packing, the previous value when unpacking), `x` a pad byte.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::{add_fallible, fail, number, ok};

const MAX_INT_SIZE: usize = 32;

#[derive(Clone, Copy)]
struct Header {
    little: bool,
    align: usize,
}

struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
    h: Header,
    /// The Lua function being served, for error messages.
    func: &'static str,
}

enum Item {
    Int { size: usize, signed: bool },
    Float,
    Double,
    Chars(usize),
    Zstr,
    Pad,
}

impl<'a> Format<'a> {
    fn new(fmt: &'a [u8], func: &'static str) -> Format<'a> {
        Format {
            fmt,
            pos: 0,
            h: Header { little: true, align: 1 },
            func,
        }
    }

    fn num(&mut self, default: usize) -> usize {
        let start = self.pos;
        while self.pos < self.fmt.len() && self.fmt[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        if start == self.pos {
            return default;
        }
        std::str::from_utf8(&self.fmt[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    }

    /// The next data item, after applying any control options.
    fn next_item(&mut self) -> Result<Option<(Item, usize)>, String> {
        loop {
            let Some(&opt) = self.fmt.get(self.pos) else {
                return Ok(None);
            };
            self.pos += 1;
            let item = match opt {
                b' ' => continue,
                b'<' | b'=' => {
                    self.h.little = true;
                    continue;
                }
                b'>' => {
                    self.h.little = false;
                    continue;
                }
                b'!' => {
                    self.h.align = self.num(8);
                    continue;
                }
                b'b' | b'B' => Item::Int {
                    size: 1,
                    signed: opt == b'b',
                },
                b'h' | b'H' => Item::Int {
                    size: 2,
                    signed: opt == b'h',
                },
                b'l' | b'L' => Item::Int {
                    size: 8,
                    signed: opt == b'l',
                },
                b'T' => Item::Int { size: 8, signed: false },
                b'i' | b'I' => {
                    let size = self.num(4);
                    if size > MAX_INT_SIZE {
                        return Err(format!(
                            "bad argument #1 to '{}' (integral size {size} is larger than limit of {MAX_INT_SIZE})",
                            self.func
                        ));
                    }
                    Item::Int {
                        size,
                        signed: opt == b'i',
                    }
                }
                b'f' => Item::Float,
                b'd' => Item::Double,
                b'c' => Item::Chars(self.num(1)),
                b's' => Item::Zstr,
                b'x' => Item::Pad,
                other => {
                    return Err(format!(
                        "bad argument #1 to '{}' (invalid format option '{}')",
                        self.func, other as char
                    ));
                }
            };
            let size = match item {
                Item::Int { size, .. } => size,
                Item::Float => 4,
                Item::Double => 8,
                _ => 0,
            };
            return Ok(Some((item, size)));
        }
    }

    /// Padding needed before an item of `size` at offset `len`.
    fn padding(&self, len: usize, size: usize) -> usize {
        let size = size.min(self.h.align);
        if size <= 1 {
            return 0;
        }
        (size - (len & (size - 1))) & (size - 1)
    }
}

fn put_int(out: &mut Vec<u8>, n: f64, size: usize, little: bool) {
    let v: u64 = if n < 0.0 { n as i64 as u64 } else { n as u64 };
    let mut bytes: Vec<u8> = (0..size)
        .map(|i| {
            if i < 8 {
                (v >> (8 * i)) as u8
            } else if n < 0.0 {
                0xff
            } else {
                0
            }
        })
        .collect();
    if !little {
        bytes.reverse();
    }
    out.extend_from_slice(&bytes);
}

fn pack(fmt: &[u8], args: &[Value]) -> Result<Vec<u8>, String> {
    let mut f = Format::new(fmt, "pack");
    let mut out = Vec::new();
    let mut args = args.iter().enumerate();
    let mut next_arg = |what: &str| -> Result<(usize, Value), String> {
        args.next()
            .map(|(i, v)| (i + 2, v.clone()))
            .ok_or_else(|| format!("bad argument to 'pack' ({what} expected, got no value)"))
    };
    while let Some((item, size)) = f.next_item()? {
        out.resize(out.len() + f.padding(out.len(), size), 0);
        match item {
            Item::Int { size, .. } => {
                let (i, v) = next_arg("number")?;
                let n = number(&v).ok_or_else(|| format!("bad argument #{i} to 'pack' (number expected)"))?;
                put_int(&mut out, n, size, f.h.little);
            }
            Item::Float | Item::Double => {
                let (i, v) = next_arg("number")?;
                let n = number(&v).ok_or_else(|| format!("bad argument #{i} to 'pack' (number expected)"))?;
                let mut bytes = if matches!(item, Item::Float) {
                    (n as f32).to_le_bytes().to_vec()
                } else {
                    n.to_le_bytes().to_vec()
                };
                if !f.h.little {
                    bytes.reverse();
                }
                out.extend_from_slice(&bytes);
            }
            Item::Chars(n) => {
                let (i, v) = next_arg("string")?;
                let s = string_arg(&v).ok_or_else(|| format!("bad argument #{i} to 'pack' (string expected)"))?;
                let n = if n == 0 { s.len() } else { n };
                if s.len() < n {
                    return Err(format!("bad argument #{i} to 'pack' (string too short)"));
                }
                out.extend_from_slice(&s[..n]);
            }
            Item::Zstr => {
                let (i, v) = next_arg("string")?;
                let s = string_arg(&v).ok_or_else(|| format!("bad argument #{i} to 'pack' (string expected)"))?;
                if s.contains(&0) {
                    return Err(format!("bad argument #{i} to 'pack' (string contains zeros)"));
                }
                out.extend_from_slice(&s);
                out.push(0);
            }
            Item::Pad => out.push(0),
        }
    }
    Ok(out)
}

fn string_arg(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Number(n) => Some(super::super::convert::number_to_arg(*n).to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn unpack(lua: &Lua, fmt: &[u8], data: &[u8], init: usize) -> Result<MultiValue, String> {
    let mut f = Format::new(fmt, "unpack");
    let mut pos = init;
    let mut out = MultiValue::new();
    let short = || "data string too short".to_string();
    while let Some((item, size)) = f.next_item()? {
        pos += f.padding(pos, size);
        match item {
            Item::Int { size, signed } => {
                let mut bytes = data.get(pos..pos + size).ok_or_else(short)?.to_vec();
                if !f.h.little {
                    bytes.reverse();
                }
                let mut v: u64 = 0;
                for (i, b) in bytes.iter().enumerate().take(8) {
                    v |= (*b as u64) << (8 * i);
                }
                let n = if signed && size < 8 && size > 0 {
                    let shift = 64 - 8 * size as u32;
                    ((v << shift) as i64 >> shift) as f64
                } else if signed {
                    v as i64 as f64
                } else {
                    v as f64
                };
                out.push_back(Value::Number(n));
                pos += size;
            }
            Item::Float | Item::Double => {
                let n = size;
                let mut bytes = data.get(pos..pos + n).ok_or_else(short)?.to_vec();
                if !f.h.little {
                    bytes.reverse();
                }
                let v = if n == 4 {
                    f32::from_le_bytes(bytes.try_into().expect("4 bytes")) as f64
                } else {
                    f64::from_le_bytes(bytes.try_into().expect("8 bytes"))
                };
                out.push_back(Value::Number(v));
                pos += n;
            }
            Item::Chars(n) => {
                let n = if n == 0 {
                    match out.pop_back() {
                        Some(Value::Number(prev)) => prev as usize,
                        _ => return Err("format `c0' needs a previous size".into()),
                    }
                } else {
                    n
                };
                let s = data.get(pos..pos + n).ok_or_else(short)?;
                out.push_back(Value::String(lua.create_string(s).map_err(|e| e.to_string())?));
                pos += n;
            }
            Item::Zstr => {
                let rest = data.get(pos..).ok_or_else(short)?;
                let end = rest.iter().position(|&b| b == 0).ok_or("unfinished string in data")?;
                out.push_back(Value::String(
                    lua.create_string(&rest[..end]).map_err(|e| e.to_string())?,
                ));
                pos += end + 1;
            }
            Item::Pad => pos += 1,
        }
    }
    out.push_back(Value::Number((pos + 1) as f64));
    Ok(out)
}

fn size(fmt: &[u8]) -> Result<usize, String> {
    let mut f = Format::new(fmt, "size");
    let mut total = 0;
    while let Some((item, size)) = f.next_item()? {
        total += f.padding(total, size);
        total += match item {
            Item::Zstr | Item::Chars(0) => return Err("options 'c0' - 's' have undefined sizes".into()),
            Item::Chars(n) => n,
            Item::Pad => 1,
            _ => size,
        };
    }
    Ok(total)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    add_fallible(
        lua,
        &m,
        "pack",
        lua.create_function(|lua, (fmt, args): (mlua::LuaString, Variadic<Value>)| {
            match pack(&fmt.as_bytes(), &args) {
                Ok(bytes) => ok(lua, lua.create_string(bytes)?),
                Err(e) => fail(lua, &e),
            }
        })?,
    )?;
    add_fallible(
        lua,
        &m,
        "unpack",
        lua.create_function(
            |lua, (fmt, data, init): (mlua::LuaString, mlua::LuaString, Option<i64>)| {
                let data = data.as_bytes().to_vec();
                let init = init.unwrap_or(1);
                if init < 1 || init as usize > data.len() + 1 {
                    return fail(lua, "bad argument #3 to 'unpack' (offset must be 1 or greater)");
                }
                match unpack(lua, &fmt.as_bytes(), &data, init as usize - 1) {
                    Ok(values) => ok(lua, values),
                    Err(e) => fail(lua, &e),
                }
            },
        )?,
    )?;
    add_fallible(
        lua,
        &m,
        "size",
        lua.create_function(|lua, fmt: mlua::LuaString| match size(&fmt.as_bytes()) {
            Ok(n) => ok(lua, n as f64),
            Err(e) => fail(lua, &e),
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_the_struct_library() {
        assert_eq!(pack(b">I2", &[Value::Number(258.0)]).unwrap(), vec![1, 2]);
        assert_eq!(
            pack(b"<i4", &[Value::Number(-5.0)]).unwrap(),
            vec![0xfb, 0xff, 0xff, 0xff]
        );
        assert_eq!(size(b">iIh").unwrap(), 10);
        assert_eq!(size(b"!4 b i").unwrap(), 8);
        assert!(pack(b"q", &[]).unwrap_err().contains("invalid format option 'q'"));
    }
}
