//! `cjson`: JSON encoding and decoding with lua-cjson's observable rules.
//!
//! * Numbers encode with `%.14g` (`1e14` -> `1e+14`); NaN and infinity are
//!   refused.
//! * `/` is escaped as `\/`; control characters as `\uXXXX` or short forms.
//! * A table whose keys are exactly 1..n encodes as an array, an empty table
//!   as `{}`, any other as an object (number keys become strings); arrays
//!   sparser than lua-cjson allows are refused.
//! * `null` decodes to `cjson.null`, a NULL light userdata, so
//!   `tostring(cjson.null)` is always `userdata: (nil)` as in Redis.
//! * Parse errors read like lua-cjson's: `Expected comma or array end but
//!   found T_END at character 5`.

use mlua::{LightUserData, Lua, MultiValue, Table, Value};

use super::{add_fallible, fail, ok};

const MAX_DEPTH: usize = 1000;

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.raw_set("null", Value::LightUserData(LightUserData(std::ptr::null_mut())))?;
    add_fallible(
        lua,
        &cjson,
        "encode",
        lua.create_function(|lua, v: Value| {
            let mut out = Vec::new();
            match encode(&v, &mut out, 0) {
                Ok(()) => ok(lua, lua.create_string(out)?),
                Err(e) => fail(lua, &e),
            }
        })?,
    )?;
    add_fallible(
        lua,
        &cjson,
        "decode",
        lua.create_function(|lua, v: Value| {
            let text = match &v {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Number(n) => super::super::convert::number_to_arg(*n).to_vec(),
                Value::Integer(i) => i.to_string().into_bytes(),
                _ => return fail(lua, "bad argument #1 to 'decode' (string expected)"),
            };
            let mut parser = Parser {
                lua,
                text: &text,
                pos: 0,
            };
            match parser.document() {
                Ok(v) => ok(lua, v),
                Err(e) => fail(lua, &e),
            }
        })?,
    )?;
    // Configuration functions: accepted, settings fixed at the defaults.
    for name in [
        "encode_keep_buffer",
        "encode_max_depth",
        "decode_max_depth",
        "encode_number_precision",
        "encode_sparse_array",
        "encode_invalid_numbers",
        "decode_invalid_numbers",
    ] {
        cjson.raw_set(name, lua.create_function(|_, args: MultiValue| Ok(args))?)?;
    }
    cjson.raw_set("_NAME", "cjson")?;
    cjson.raw_set("_VERSION", "2.1.0")?;
    Ok(cjson)
}

/// `%.14g`, as lua-cjson formats numbers.
pub fn format_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let exp = n.abs().log10().floor() as i32;
    let sci = format!("{:.13e}", n);
    let (mantissa, e) = sci.split_once('e').expect("exponent form");
    let e: i32 = e.parse().unwrap_or(exp);
    if !(-5..14).contains(&e) {
        let m = trim_zeros(mantissa);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        let decimals = (13 - e).max(0) as usize;
        trim_zeros(&format!("{n:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            c if c < 0x20 || c == 0x7f => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

fn encode(v: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if !n.is_finite() {
                return Err("Cannot serialise number: must not be NaN or Inf".into());
            }
            out.extend_from_slice(format_g14(*n).as_bytes());
        }
        Value::Integer(i) => out.extend_from_slice(format_g14(*i as f64).as_bytes()),
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(format!("Cannot serialise, excessive nesting ({})", depth + 1));
            }
            encode_table(t, out, depth + 1)?;
        }
        other => return Err(format!("Cannot serialise {}: type not supported", other.type_name())),
    }
    Ok(())
}

/// The array length of `t` if it is an array by lua-cjson's rules.
fn array_length(t: &Table) -> Result<Option<usize>, String> {
    let mut max = 0usize;
    let mut count = 0usize;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        match k {
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => {
                max = max.max(n as usize);
                count += 1;
            }
            Value::Integer(i) if i >= 1 => {
                max = max.max(i as usize);
                count += 1;
            }
            _ => return Ok(None),
        }
    }
    // lua-cjson's defaults: ratio 2, safe 10.
    if max > 10 && max > count * 2 {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok(Some(max))
}

fn encode_table(t: &Table, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    match array_length(t)? {
        Some(len) if len > 0 => {
            out.push(b'[');
            for i in 1..=len {
                if i > 1 {
                    out.push(b',');
                }
                let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                encode(&v, out, depth)?;
            }
            out.push(b']');
        }
        _ => {
            out.push(b'{');
            let mut first = true;
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                if !first {
                    out.push(b',');
                }
                first = false;
                match &k {
                    Value::String(s) => encode_string(&s.as_bytes(), out),
                    Value::Number(n) => encode_string(format_g14(*n).as_bytes(), out),
                    Value::Integer(i) => encode_string(i.to_string().as_bytes(), out),
                    _ => return Err("Cannot serialise table: table key must be a number or string".into()),
                }
                out.push(b':');
                encode(&v, out, depth)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

struct Parser<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    pos: usize,
}

type ParseResult<T> = Result<T, String>;

impl Parser<'_> {
    fn document(&mut self) -> ParseResult<Value> {
        let v = self.value(0)?;
        self.skip_ws();
        if self.pos < self.text.len() {
            return Err(self.expected("the end", self.pos));
        }
        Ok(v)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.text.len() && matches!(self.text[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// lua-cjson's name for the token starting at `at`.
    fn token_name(&self, at: usize) -> &'static str {
        match self.text.get(at) {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b',') => "T_COMMA",
            Some(b':') => "T_COLON",
            Some(b'"') => "T_STRING",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            Some(b't' | b'f') if self.text[at..].starts_with(b"true") || self.text[at..].starts_with(b"false") => {
                "T_BOOLEAN"
            }
            Some(b'n') if self.text[at..].starts_with(b"null") => "T_NULL",
            _ => "invalid token",
        }
    }

    fn expected(&self, what: &str, at: usize) -> String {
        format!(
            "Expected {what} but found {} at character {}",
            self.token_name(at),
            at + 1
        )
    }

    fn value(&mut self, depth: usize) -> ParseResult<Value> {
        self.skip_ws();
        let at = self.pos;
        match self.text.get(at) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self
                .string()
                .and_then(|s| self.lua.create_string(s).map(Value::String).map_err(|e| e.to_string())),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.text[at..].starts_with(b"true") => {
                self.pos += 4;
                Ok(Value::Boolean(true))
            }
            _ if self.text[at..].starts_with(b"false") => {
                self.pos += 5;
                Ok(Value::Boolean(false))
            }
            _ if self.text[at..].starts_with(b"null") => {
                self.pos += 4;
                Ok(Value::LightUserData(LightUserData(std::ptr::null_mut())))
            }
            _ => Err(self.expected("value", at)),
        }
    }

    fn nested(&self, depth: usize) -> ParseResult<()> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.pos + 1
            ));
        }
        Ok(())
    }

    fn array(&mut self, depth: usize) -> ParseResult<Value> {
        self.nested(depth)?;
        self.pos += 1;
        let t = self.lua.create_table().map_err(|e| e.to_string())?;
        self.skip_ws();
        if self.text.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        let mut i = 1;
        loop {
            let v = self.value(depth)?;
            t.raw_set(i, v).map_err(|e| e.to_string())?;
            i += 1;
            self.skip_ws();
            match self.text.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return Err(self.expected("comma or array end", self.pos)),
            }
        }
    }

    fn object(&mut self, depth: usize) -> ParseResult<Value> {
        self.nested(depth)?;
        self.pos += 1;
        let t = self.lua.create_table().map_err(|e| e.to_string())?;
        self.skip_ws();
        if self.text.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        loop {
            self.skip_ws();
            if self.text.get(self.pos) != Some(&b'"') {
                return Err(self.expected("object key string", self.pos));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.text.get(self.pos) != Some(&b':') {
                return Err(self.expected("colon", self.pos));
            }
            self.pos += 1;
            let v = self.value(depth)?;
            let key = self.lua.create_string(key).map_err(|e| e.to_string())?;
            t.raw_set(key, v).map_err(|e| e.to_string())?;
            self.skip_ws();
            match self.text.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return Err(self.expected("comma or object end", self.pos)),
            }
        }
    }

    fn string(&mut self) -> ParseResult<Vec<u8>> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.text.get(self.pos) else {
                return Err(format!(
                    "Expected value but found invalid token at character {}",
                    start + 1
                ));
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.text.get(self.pos) else {
                        return Err(format!(
                            "Expected value but found invalid token at character {}",
                            start + 1
                        ));
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let cp = self.unicode_escape(start)?;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            return Err(format!(
                                "Expected value but found invalid escape code at character {}",
                                start + 1
                            ));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self, start: usize) -> ParseResult<u32> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| {
                format!(
                    "Expected value but found invalid unicode escape code at character {}",
                    start + 1
                )
            })?;
        self.pos += 4;
        Ok(digits)
    }

    fn unicode_escape(&mut self, start: usize) -> ParseResult<u32> {
        let hi = self.hex4(start)?;
        if (0xD800..0xDC00).contains(&hi) && self.text[self.pos..].starts_with(b"\\u") {
            self.pos += 2;
            let lo = self.hex4(start)?;
            if (0xDC00..0xE000).contains(&lo) {
                return Ok(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
            }
        }
        Ok(hi)
    }

    fn number(&mut self) -> ParseResult<Value> {
        let start = self.pos;
        let end = self.text[start..]
            .iter()
            .position(|c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            .map_or(self.text.len(), |n| start + n);
        let n: f64 = std::str::from_utf8(&self.text[start..end])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("Expected value but found invalid number at character {}", start + 1))?;
        self.pos = end;
        Ok(Value::Number(n))
    }
}

#[cfg(test)]
mod tests {
    use super::format_g14;

    #[test]
    fn numbers_format_like_percent_14g() {
        assert_eq!(format_g14(1.0), "1");
        assert_eq!(format_g14(1.5), "1.5");
        assert_eq!(format_g14(0.1), "0.1");
        assert_eq!(format_g14(1e14), "1e+14");
        assert_eq!(format_g14(12345678901234.0), "12345678901234");
        assert_eq!(format_g14(1.0 / 3.0), "0.33333333333333");
        assert_eq!(format_g14(-2.5e-7), "-2.5e-07");
        assert_eq!(format_g14(100.0), "100");
    }
}
