//! The Lua libraries Redis provides to scripts, written for Mayfly:
//! `cjson`, `cmsgpack`, `struct` and `bit`.
//!
//! Fallible functions return `(true, values...)` or `(false, message)`;
//! the VM's prelude turns the second form into a Lua error, so scripts see
//! plain string errors as they do in Redis.

pub mod bit;
pub mod cjson;
pub mod cmsgpack;
pub mod lstruct;

use std::ffi::c_int;

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Table, Value, ffi};

/// `user_script:<line>: ` for the innermost user-script frame, as Lua's own
/// errors are prefixed.
pub fn position(lua: &Lua) -> String {
    for level in 1..64 {
        let found = lua.inspect_stack(level, |d| {
            let src = d.source();
            (src.source.as_deref() == Some("@user_script")).then(|| d.current_line())
        });
        match found {
            None => break,
            Some(Some(line)) => return format!("user_script:{}: ", line.unwrap_or(0)),
            Some(None) => continue,
        }
    }
    String::new()
}

/// The failure form of a fallible function: (false, "<position><msg>").
pub fn fail(lua: &Lua, msg: &str) -> mlua::Result<MultiValue> {
    let text = format!("{}{msg}", position(lua));
    (false, text).into_lua_multi(lua)
}

/// The success form: (true, values...).
pub fn ok(lua: &Lua, values: impl IntoLuaMulti) -> mlua::Result<MultiValue> {
    let mut out = values.into_lua_multi(lua)?;
    out.push_front(Value::Boolean(true));
    Ok(out)
}

/// Registers fallible `f` as `name` in `module`, wrapped so that a
/// failure raises its message as a plain Lua string error.
pub fn add_fallible(lua: &Lua, module: &Table, name: &str, f: Function) -> mlua::Result<()> {
    module.raw_set(name, c_closure(lua, f, call_or_raise)?)
}

/// Calls upvalue 1 with the arguments; it answers `(true, values...)` or
/// `(false, message)`. Returns the values, or raises the message.
///
/// A C function, not Lua: `return f(...)` in a script is then no tail call
/// that would erase the script's frame, so errors name the script's line
/// as Redis's do.
pub unsafe extern "C-unwind" fn call_or_raise(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua with a valid state; this frame owns nothing
    // with a destructor, so lua_error's longjmp skips no cleanup.
    unsafe {
        let n = ffi::lua_gettop(state);
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, n, ffi::LUA_MULTRET);
        let got = ffi::lua_gettop(state);
        if got >= 1 && ffi::lua_toboolean(state, 1) != 0 {
            return got - 1;
        }
        ffi::lua_settop(state, 2);
        ffi::lua_error(state)
    }
}

/// Like `call_or_raise`, but a failure returns `{err = message}`
/// (`redis.pcall`).
pub unsafe extern "C-unwind" fn call_or_err_table(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: as in call_or_raise; nothing here raises.
    unsafe {
        let n = ffi::lua_gettop(state);
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, n, ffi::LUA_MULTRET);
        let got = ffi::lua_gettop(state);
        if got >= 1 && ffi::lua_toboolean(state, 1) != 0 {
            return got - 1;
        }
        ffi::lua_settop(state, 2);
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_pushvalue(state, 2);
        ffi::lua_setfield(state, -2, c"err".as_ptr());
        1
    }
}

/// A C closure of `body` with `f` as its one upvalue.
pub fn c_closure(lua: &Lua, f: Function, body: ffi::lua_CFunction) -> mlua::Result<Function> {
    // SAFETY: `f` is pushed as the only argument; pushcclosure pops it as
    // the upvalue and leaves the closure as the only result.
    unsafe { lua.exec_raw(f, |state| ffi::lua_pushcclosure(state, body, 1)) }
}

/// A Lua number argument, as LuaBitOp and struct read numbers.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::Integer(i) => Some(*i as f64),
        Value::String(s) => std::str::from_utf8(&s.as_bytes()).ok()?.trim().parse().ok(),
        _ => None,
    }
}
