//! The scripting family: EVAL, EVALSHA, their _RO forms, and SCRIPT.
//! The machinery lives in `crate::script`.

use bytes::Bytes;

use super::{BoxFut, CommandSpec, Exec, spec};
use crate::cmd::flags::*;
use crate::resp::Reply;
use crate::script;
use crate::server::Session;

pub const COMMANDS: &[CommandSpec] = &[
    spec("eval", -3, NOSCRIPT | STALE, (0, 0, 0), Exec::Conn(eval)).with_keys(|a| script::eval_keys(a, false)),
    spec("evalsha", -3, NOSCRIPT | STALE, (0, 0, 0), Exec::Conn(evalsha)).with_keys(|a| script::eval_keys(a, true)),
    spec(
        "eval_ro",
        -3,
        NOSCRIPT | STALE | READONLY,
        (0, 0, 0),
        Exec::Conn(eval_ro),
    )
    .with_keys(|a| script::eval_keys(a, false)),
    spec(
        "evalsha_ro",
        -3,
        NOSCRIPT | STALE | READONLY,
        (0, 0, 0),
        Exec::Conn(evalsha_ro),
    )
    .with_keys(|a| script::eval_keys(a, true)),
    spec("script", -2, NOSCRIPT | STALE, (0, 0, 0), Exec::Conn(script_cmd)),
];

/// EVAL script numkeys [key ...] [arg ...]
fn eval(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(script::eval(session, args, false, false))
}

/// EVALSHA sha1 numkeys [key ...] [arg ...]
fn evalsha(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(script::eval(session, args, true, false))
}

/// EVAL_RO script numkeys [key ...] [arg ...]
fn eval_ro(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(script::eval(session, args, false, true))
}

/// EVALSHA_RO sha1 numkeys [key ...] [arg ...]
fn evalsha_ro(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(script::eval(session, args, true, true))
}

/// SCRIPT LOAD|EXISTS|FLUSH|LIST|FLAGS|KILL|HELP ...
fn script_cmd(_session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move { script::script_command(&args) })
}

/// Reply for a command refused while a script is busy.
pub fn busy_allows(name: &str, args: &[Bytes]) -> bool {
    let first = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_uppercase());
    match name {
        "script" => first(1).as_deref() == Some("KILL"),
        "shutdown" => first(1).as_deref() == Some("NOSAVE"),
        _ => false,
    }
}

pub fn busy_reply() -> Reply {
    Reply::Error(script::busy::BUSY_ERROR)
}
