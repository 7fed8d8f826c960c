//! `bit`: LuaBitOp's operations on 32-bit integers.

use mlua::{Lua, Table, Value, Variadic};

use super::number;

/// LuaBitOp's normalisation: round to nearest and keep the low 32 bits,
/// by adding 2^52 + 2^51 and reading the low word of the double.
pub fn tobit(x: f64) -> i32 {
    (x + 6_755_399_441_055_744.0).to_bits() as u32 as i32
}

fn arg(v: &Value) -> mlua::Result<i32> {
    number(v)
        .map(tobit)
        .ok_or_else(|| mlua::Error::RuntimeError("bad argument to bit operation (number expected)".into()))
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    bit.raw_set("tobit", lua.create_function(|_, v: Value| Ok(arg(&v)? as f64))?)?;
    bit.raw_set("bnot", lua.create_function(|_, v: Value| Ok(!arg(&v)? as f64))?)?;
    let fold = |op: fn(i32, i32) -> i32| {
        move |_: &Lua, args: Variadic<Value>| -> mlua::Result<f64> {
            let mut it = args.iter();
            let first = arg(it.next().unwrap_or(&Value::Nil))?;
            it.try_fold(first, |acc, v| Ok(op(acc, arg(v)?))).map(|r| r as f64)
        }
    };
    bit.raw_set("band", lua.create_function(fold(|a, b| a & b))?)?;
    bit.raw_set("bor", lua.create_function(fold(|a, b| a | b))?)?;
    bit.raw_set("bxor", lua.create_function(fold(|a, b| a ^ b))?)?;
    let shift = |op: fn(i32, u32) -> i32| {
        move |_: &Lua, (x, n): (Value, Value)| -> mlua::Result<f64> { Ok(op(arg(&x)?, (arg(&n)? & 31) as u32) as f64) }
    };
    bit.raw_set("lshift", lua.create_function(shift(|x, n| ((x as u32) << n) as i32))?)?;
    bit.raw_set("rshift", lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?)?;
    bit.raw_set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    bit.raw_set(
        "rol",
        lua.create_function(shift(|x, n| (x as u32).rotate_left(n) as i32))?,
    )?;
    bit.raw_set(
        "ror",
        lua.create_function(shift(|x, n| (x as u32).rotate_right(n) as i32))?,
    )?;
    bit.raw_set(
        "bswap",
        lua.create_function(|_, v: Value| Ok((arg(&v)? as u32).swap_bytes() as i32 as f64))?,
    )?;
    bit.raw_set(
        "tohex",
        lua.create_function(|_, (v, n): (Value, Option<Value>)| {
            let x = arg(&v)? as u32;
            let n = match n {
                Some(n) => arg(&n)?,
                None => 8,
            };
            let upper = n < 0;
            let digits = (n.unsigned_abs() as usize).clamp(1, 8);
            let text = format!("{x:08x}");
            let text = &text[8 - digits..];
            Ok(if upper { text.to_uppercase() } else { text.to_string() })
        })?,
    )?;
    Ok(bit)
}

#[cfg(test)]
mod tests {
    use super::tobit;

    #[test]
    fn tobit_wraps_and_rounds_like_luabitop() {
        assert_eq!(tobit(4294967295.0), -1);
        assert_eq!(tobit(2147483648.0), i32::MIN);
        assert_eq!(tobit(1.5), 2);
        assert_eq!(tobit(2.5), 2);
        assert_eq!(tobit(-1.0), -1);
    }
}
