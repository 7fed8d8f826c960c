//! One Lua VM per core, and the `redis.*` bridge.
//!
//! **Why Lua 5.1 (PUC).** Redis embeds Lua 5.1, and scripts depend on its
//! number formatting (`%.14g`: `tostring(3.0)` is `3`) and semantics. mlua's
//! vendored Lua 5.1 and LuaJIT both build; measured on this machine both
//! cost about 0.45 µs per EVAL-like call with a stub `redis.call`
//! (`../shared/REFERENCE.md`), so nothing pays for LuaJIT's differences. Mayfly
//! never yields a coroutine across `redis.call` (a call that reaches another
//! shard blocks, see `Core::call_sync`), so PUC Lua's inability to yield
//! across `pcall` does not matter.
//!
//! **Errors.** mlua would hand a Rust error to Lua as userdata, while Redis
//! scripts see plain strings (`pcall(redis.call, ...)`) or `{err=...}`
//! tables (`redis.pcall`). So the Rust side of every fallible function
//! returns a status, and a few lines of Lua (`PRELUDE`) raise or wrap.
//!
//! **Globals.** As in Redis 7, scripts cannot create globals ("Attempt to
//! modify a readonly table") nor read undefined ones; `os`, `io`, `print`,
//! `loadfile`, `dofile` and `debug` are absent.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use super::convert::{lua_to_reply, number_to_arg, reply_to_lua};
use super::store::{Script, sha1_hex, store};
use super::{busy, lib};
use crate::cmd::{self, flags};
use crate::resp::Reply;
use crate::server::Session;

/// Lua run once per VM: wrappers that raise like Redis, the protected
/// global table, and the runner that reports where an error happened.
const PRELUDE: &str = r#"
local error, setmetatable, tostring, xpcall = error, setmetatable, tostring, xpcall
local getinfo, setfenv = debug.getinfo, setfenv

local real = _G
local proxy = setmetatable({}, {
  __index = real,
  __newindex = function() error('Attempt to modify a readonly table', 2) end,
  __metatable = false,
})
setmetatable(real, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __metatable = false,
})
real._G = proxy

local function line_of_user_code()
  for level = 2, 200 do
    local info = getinfo(level, 'Sl')
    if not info then return 0 end
    if info.source == '@user_script' then return info.currentline end
  end
  return 0
end
local function handler(e)
  return {e = e, line = line_of_user_code()}
end

return {
  run = function(f) return xpcall(f, handler) end,
  bind = function(f) setfenv(f, proxy) return f end,
}
"#;

/// What a running script's `redis.call` needs. Stored in the VM's app
/// data for the duration of one script.
pub struct CallCtx {
    /// The session commands run in (its own db, atomic when locks are held).
    pub session: Session,
    /// In lock-ahead modes, the only keys calls may touch.
    pub declared: Option<Vec<Bytes>>,
    pub read_only: bool,
    /// `redis.setresp(3)` was called.
    pub resp3: bool,
    /// Text of the last failed `redis.call`, to tell it from Lua errors.
    pub last_error: Option<String>,
    /// A write command ran (SCRIPT KILL then refuses).
    pub wrote: bool,
}

pub struct Vm {
    lua: Lua,
    globals: Table,
    run: Function,
    bind: Function,
    compiled: RefCell<HashMap<String, Function>>,
    generation: Cell<u64>,
}

thread_local! {
    static VM: RefCell<Option<Rc<Vm>>> = const { RefCell::new(None) };
}

/// This core's VM, created on first use.
pub fn vm() -> Rc<Vm> {
    VM.with(|slot| {
        slot.borrow_mut()
            .get_or_insert_with(|| Rc::new(Vm::new().expect("the Lua VM starts")))
            .clone()
    })
}

impl Vm {
    fn new() -> mlua::Result<Vm> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG;
        // SAFETY: `debug` is the one unsafe library; the prelude keeps only
        // `debug.getinfo` (to name the line of an error) and the library is
        // removed from the globals before any script runs.
        let lua = unsafe { Lua::unsafe_new_with(libs, LuaOptions::default()) };
        let globals = lua.globals();
        for name in ["dofile", "loadfile", "print", "module", "require"] {
            globals.raw_set(name, Value::Nil)?;
        }
        let redis = redis_table(&lua)?;
        let raw = lua.create_function(raw_call)?;
        redis.raw_set("call", lib::c_closure(&lua, raw.clone(), lib::call_or_raise)?)?;
        redis.raw_set("pcall", lib::c_closure(&lua, raw, lib::call_or_err_table)?)?;
        globals.raw_set("redis", redis)?;
        globals.raw_set("cjson", lib::cjson::module(&lua)?)?;
        globals.raw_set("cmsgpack", lib::cmsgpack::module(&lua)?)?;
        globals.raw_set("struct", lib::lstruct::module(&lua)?)?;
        globals.raw_set("bit", lib::bit::module(&lua)?)?;
        let exports: Table = lua.load(PRELUDE).set_name("=mayfly").call(())?;
        for name in ["debug", "setfenv", "getfenv"] {
            globals.raw_set(name, Value::Nil)?;
        }
        busy::install_hook(&lua)?;
        Ok(Vm {
            run: exports.raw_get("run")?,
            bind: exports.raw_get("bind")?,
            lua,
            globals,
            compiled: RefCell::new(HashMap::new()),
            generation: Cell::new(store().generation()),
        })
    }

    /// Compiles `script` for this VM (once).
    fn function_for(&self, script: &Script) -> Result<Function, String> {
        let generation = store().generation();
        if self.generation.get() != generation {
            self.compiled.borrow_mut().clear();
            self.generation.set(generation);
        }
        if let Some(f) = self.compiled.borrow().get(&script.sha) {
            return Ok(f.clone());
        }
        let mut source = script.body.to_vec();
        if script.header.shebang {
            // Keep the line count (errors name lines) but hide the shebang.
            let end = source.iter().position(|&b| b == b'\n').unwrap_or(source.len());
            source.splice(0..end, b"--".iter().copied());
        }
        let f = self
            .lua
            .load(&source[..])
            .set_name("@user_script")
            .into_function()
            .map_err(|e| format!("ERR Error compiling script (new function): {}", lua_error_text(&e)))?;
        let f: Function = self.bind.call(f).map_err(|e| format!("ERR {e}"))?;
        self.compiled.borrow_mut().insert(script.sha.clone(), f.clone());
        Ok(f)
    }

    /// Runs `script` with KEYS and ARGV; returns its reply and the context
    /// (whose session may hold state the caller wants back).
    pub fn run(&self, script: &Script, keys: &[Bytes], argv: &[Bytes], ctx: CallCtx) -> (Reply, CallCtx) {
        let f = match self.function_for(script) {
            Ok(f) => f,
            Err(e) => return (Reply::ErrorOwned(e), ctx),
        };
        if let Err(e) = self.set_args(keys, argv) {
            return (Reply::ErrorOwned(format!("ERR {e}")), ctx);
        }
        let client_resp3 = ctx.session.proto == crate::resp::Protocol::Resp3;
        self.lua.set_app_data(ctx);
        busy::script_started(&script.sha);
        let clock = crate::cmd::stop_clock_for_script();
        let result = self.run.call::<MultiValue>(f);
        drop(clock);
        busy::script_finished();
        let ctx = self.lua.remove_app_data::<CallCtx>().expect("context set above");
        let reply = match result {
            Ok(values) => {
                let mut it = values.into_iter();
                match (it.next(), it.next()) {
                    (Some(Value::Boolean(true)), value) => lua_to_reply(&value.unwrap_or(Value::Nil), client_resp3),
                    (_, Some(Value::Table(err))) => script_error(&err, &script.sha, ctx.last_error.as_deref()),
                    _ => Reply::ErrorOwned("ERR script failed".into()),
                }
            }
            Err(e) => Reply::ErrorOwned(format!("ERR {}", lua_error_text(&e))),
        };
        (reply, ctx)
    }

    fn set_args(&self, keys: &[Bytes], argv: &[Bytes]) -> mlua::Result<()> {
        let lua = &self.lua;
        let to_table = |items: &[Bytes]| -> mlua::Result<Table> {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, lua.create_string(item)?)?;
            }
            Ok(t)
        };
        self.globals.raw_set("KEYS", to_table(keys)?)?;
        self.globals.raw_set("ARGV", to_table(argv)?)?;
        Ok(())
    }
}

/// The first line of an mlua error, without mlua's decorations.
fn lua_error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_error_text(cause),
        other => other.to_string(),
    }
    .lines()
    .next()
    .unwrap_or("")
    .to_string()
}

/// Formats an error that escaped the script, as Redis 7 does:
/// `<message> script: <sha>, on @user_script:<line>.`
fn script_error(info: &Table, sha: &str, last_call_error: Option<&str>) -> Reply {
    let line: i64 = info.raw_get("line").unwrap_or(0);
    let message = match info.raw_get::<Value>("e") {
        Ok(Value::Table(t)) => match t.raw_get::<Value>("err") {
            Ok(Value::String(s)) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "ERR unknown error".into(),
        },
        Ok(Value::String(s)) => {
            let text = String::from_utf8_lossy(&s.as_bytes()).into_owned();
            if last_call_error == Some(text.as_str()) {
                text
            } else {
                format!("ERR {text}")
            }
        }
        Ok(Value::Number(n)) => format!("ERR {n}"),
        Ok(other) => format!("ERR {}", other.type_name()),
        Err(_) => "ERR unknown error".into(),
    };
    Reply::ErrorOwned(format!("{message} script: {sha}, on @user_script:{line}."))
}

/// The `redis` table: everything but `call`/`pcall` (set by the prelude).
fn redis_table(lua: &Lua) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    let add_fallible = |name: &str, f: Function| lib::add_fallible(lua, &redis, name, f);
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, s: Value| match s {
            Value::String(s) => Ok(Value::String(lua.create_string(sha1_hex(&s.as_bytes()))?)),
            Value::Number(n) => Ok(Value::String(lua.create_string(sha1_hex(&number_to_arg(n)))?)),
            Value::Integer(i) => Ok(Value::String(lua.create_string(sha1_hex(i.to_string().as_bytes()))?)),
            _ => Ok(Value::String(lua.create_string(sha1_hex(b""))?)),
        })?,
    )?;
    redis.raw_set(
        "error_reply",
        lua.create_function(|lua, msg: String| {
            let t = lua.create_table()?;
            t.raw_set("err", msg)?;
            Ok(t)
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(|lua, msg: String| {
            let t = lua.create_table()?;
            t.raw_set("ok", msg)?;
            Ok(t)
        })?,
    )?;
    add_fallible(
        "log",
        lua.create_function(|_, (level, msg): (Value, MultiValue)| {
            let Some(level) = lib::number(&level) else {
                return Ok((false, Value::Nil));
            };
            let level = level as i64;
            let text: Vec<String> = msg.iter().map(|v| v.to_string().unwrap_or_default()).collect();
            let level = match level {
                0 => crate::logging::Level::Debug,
                1 => crate::logging::Level::Verbose,
                2 => crate::logging::Level::Notice,
                _ => crate::logging::Level::Warning,
            };
            crate::logging::write(level, format_args!("{}", text.join(" ")));
            Ok((true, Value::Nil))
        })?,
    )?;
    add_fallible(
        "setresp",
        lua.create_function(|lua, v: Value| {
            let version = match v {
                Value::Number(n) => n as i64,
                Value::Integer(i) => i,
                _ => 0,
            };
            if version != 2 && version != 3 {
                return Ok((false, Value::String(lua.create_string("RESP version must be 2 or 3.")?)));
            }
            if let Some(mut ctx) = lua.app_data_mut::<CallCtx>() {
                ctx.resp3 = version == 3;
            }
            Ok((true, Value::Nil))
        })?,
    )?;
    redis.raw_set("set_repl", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    redis.raw_set("replicate_commands", lua.create_function(|_, _: MultiValue| Ok(true))?)?;
    for (name, v) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
    ] {
        redis.raw_set(name, v)?;
    }
    for (name, v) in [
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.raw_set(name, v)?;
    }
    redis.raw_set("REDIS_VERSION", crate::REDIS_VERSION)?;
    let num = crate::REDIS_VERSION
        .split('.')
        .fold(0i64, |acc, part| acc * 256 + part.parse::<i64>().unwrap_or(0));
    redis.raw_set("REDIS_VERSION_NUM", num)?;
    Ok(redis)
}

/// The Rust half of `redis.call`/`redis.pcall`: runs one command.
/// Returns (true, value) or (false, error text).
fn raw_call(lua: &Lua, args: MultiValue) -> mlua::Result<(bool, Value)> {
    let Some(mut ctx) = lua.app_data_mut::<CallCtx>() else {
        return Ok((
            false,
            Value::String(lua.create_string("ERR redis.call outside a script")?),
        ));
    };
    let reply = match call_command(&mut ctx, args) {
        Ok(reply) => reply,
        Err(text) => Reply::ErrorOwned(text),
    };
    if let Some(text) = reply.error_text() {
        let text = text.to_string();
        ctx.last_error = Some(text.clone());
        return Ok((false, Value::String(lua.create_string(text)?)));
    }
    let value = reply_to_lua(lua, &reply, ctx.resp3)?;
    Ok((true, value))
}

fn call_command(ctx: &mut CallCtx, args: MultiValue) -> Result<Reply, String> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".into());
    }
    let mut argv = Vec::with_capacity(args.len());
    for v in args.iter() {
        argv.push(match v {
            Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
            Value::Number(n) => number_to_arg(*n),
            Value::Integer(i) => Bytes::from(i.to_string()),
            _ => return Err("ERR Lua redis lib command arguments must be strings or integers".into()),
        });
    }
    let Some(spec) = cmd::lookup(&argv[0]) else {
        return Err("ERR Unknown Redis command called from script".into());
    };
    if !cmd::arity_ok(spec.arity, argv.len()) {
        return Err("ERR Wrong number of args calling Redis command from script".into());
    }
    if spec.flags & flags::NOSCRIPT != 0 {
        return Err("ERR This Redis command is not allowed from script".into());
    }
    if spec.is_write() {
        if ctx.read_only {
            return Err("ERR Write commands are not allowed from read-only scripts.".into());
        }
        ctx.wrote = true;
        busy::note_write();
    }
    if let Some(declared) = &ctx.declared
        && let Some(keys) = spec.key_args(&argv)
        && let Some(key) = keys.iter().find(|k| !declared.contains(k))
    {
        return Err(format!(
            "ERR script tried accessing undeclared key, key: {}",
            String::from_utf8_lossy(key)
        ));
    }
    // A command that locks its keys itself (SMOVE, RENAME, S*STORE) leaves
    // telling their WATCHers to the release of its locks, which a script's
    // call does not take: the keys of each write are told here. A key on
    // a shard not in hand is declared and locked for the whole script
    // (lock-ahead), and the release of that lock tells its WATCHers.
    let written = if spec.is_write() && ctx.session.core().watchers_in_hand() {
        spec.key_args(&argv)
    } else {
        None
    };
    let db = ctx.session.db;
    let node = ctx.session.node.clone();
    let reply = run_sync(&node.core, cmd::execute(&mut ctx.session, spec, argv));
    for key in written.into_iter().flatten() {
        let shard = node.core.shard_of(&key);
        node.core.with_shard_in_hand(shard, |sh| sh.touch_watched(db, &key));
    }
    Ok(reply)
}

/// Drives a command's future to completion without yielding the executor.
///
/// In atomic mode every shard access is synchronous, so the future is ready
/// on its first poll. In non-atomic mode it may wait for other cores; this
/// core keeps serving its own shard's inbox meanwhile.
fn run_sync<F: Future>(core: &crate::shard::Core, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    core.wait_sync(|| match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    })
}
