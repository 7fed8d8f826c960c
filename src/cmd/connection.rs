//! The connection family: PING, ECHO, QUIT, SELECT, AUTH, HELLO, RESET and
//! CLIENT.

use bytes::Bytes;

use super::parse::{Cursor, int, upper};
use super::{BoxFut, CommandSpec, Exec, spec};
use crate::cmd::flags::*;
use crate::error;
use crate::resp::{Protocol, Reply};
use crate::server::{self, Session};

pub const COMMANDS: &[CommandSpec] = &[
    spec("ping", -1, FAST | STALE, (0, 0, 0), Exec::Conn(ping)),
    spec("echo", 2, FAST, (0, 0, 0), Exec::Conn(echo)),
    spec(
        "quit",
        -1,
        FAST | NO_AUTH | NOSCRIPT | STALE | LOADING,
        (0, 0, 0),
        Exec::Conn(quit),
    ),
    spec("select", 2, FAST | LOADING | STALE, (0, 0, 0), Exec::Conn(select)),
    spec(
        "auth",
        -2,
        FAST | NO_AUTH | NOSCRIPT | STALE | LOADING,
        (0, 0, 0),
        Exec::Conn(auth),
    ),
    spec(
        "hello",
        -1,
        FAST | NO_AUTH | NOSCRIPT | STALE | LOADING,
        (0, 0, 0),
        Exec::Conn(hello),
    ),
    spec(
        "reset",
        1,
        FAST | NO_AUTH | NOSCRIPT | STALE | LOADING,
        (0, 0, 0),
        Exec::Conn(reset),
    ),
    spec("client", -2, NOSCRIPT | LOADING | STALE, (0, 0, 0), Exec::Conn(client)),
];

/// PING [message]
fn ping(_session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        match args.len() {
            1 => Reply::Status("PONG"),
            2 => Reply::Bulk(args[1].clone()),
            _ => error::wrong_arity("ping"),
        }
    })
}

/// ECHO message
fn echo(_session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move { Reply::Bulk(args[1].clone()) })
}

/// QUIT
fn quit(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        session.quit = true;
        Reply::OK
    })
}

/// SELECT index
fn select(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let Ok(index) = int(&args[1]) else {
            return Reply::Error(error::NOT_INTEGER);
        };
        if index < 0 || index >= session.node.shared.config.dbnum as i64 {
            return Reply::Error(error::DB_INDEX_OUT_OF_RANGE);
        }
        session.db = index as u16;
        session.info.borrow_mut().db = session.db;
        Reply::OK
    })
}

/// Checks a username/password pair against the configured password.
fn check_password(session: &Session, user: Option<&[u8]>, password: &[u8]) -> Result<(), Reply> {
    let required = session
        .node
        .shared
        .runtime
        .lock()
        .expect("runtime config")
        .requirepass
        .clone();
    if user.is_some_and(|u| u != b"default") {
        return Err(Reply::Error(error::WRONGPASS));
    }
    match required {
        None if user.is_none() => Err(Reply::Error(error::AUTH_NOT_CONFIGURED)),
        None => Ok(()),
        Some(p) if p.as_bytes() == password => Ok(()),
        Some(_) => Err(Reply::Error(error::WRONGPASS)),
    }
}

/// AUTH [username] password
fn auth(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let result = match args.len() {
            2 => check_password(session, None, &args[1]),
            3 => check_password(session, Some(&args[1]), &args[2]),
            _ => return Reply::Error(error::SYNTAX),
        };
        match result {
            Ok(()) => {
                session.authed = true;
                Reply::OK
            }
            Err(e) => e,
        }
    })
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
fn hello(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let mut cur = Cursor::new(&args[1..]);
        let mut proto = None;
        if let Some(ver) = cur.next_arg() {
            proto = match int(ver) {
                Ok(2) => Some(Protocol::Resp2),
                Ok(3) => Some(Protocol::Resp3),
                Ok(_) => return Reply::Error(error::NOPROTO),
                Err(_) => return Reply::Error("ERR Protocol version is not an integer or out of range"),
            };
        }
        let mut name = None;
        let mut credentials = None;
        while let Some(opt) = cur.next_arg() {
            match upper(opt).as_str() {
                "AUTH" if cur.remaining() >= 2 => {
                    let user = cur.next_arg().expect("counted");
                    let pass = cur.next_arg().expect("counted");
                    credentials = Some((user.clone(), pass.clone()));
                }
                "SETNAME" if cur.remaining() >= 1 => name = Some(cur.next_arg().expect("counted").clone()),
                _ => {
                    return Reply::ErrorOwned(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(opt)
                    ));
                }
            }
        }
        if let Some((user, pass)) = credentials {
            if let Err(e) = check_password(session, Some(&user), &pass) {
                return e;
            }
            session.authed = true;
        }
        if !session.authed {
            return Reply::Error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = name {
            if let Err(e) = valid_client_text(&name) {
                return e;
            }
            session.info.borrow_mut().name = String::from_utf8_lossy(&name).into_owned();
        }
        if let Some(p) = proto {
            session.proto = p;
            session.info.borrow_mut().resp = if p == Protocol::Resp3 { 3 } else { 2 };
        }
        let version = if session.proto == Protocol::Resp3 { 3 } else { 2 };
        Reply::Map(vec![
            (Reply::bulk_str("server"), Reply::bulk_str("redis")),
            (Reply::bulk_str("version"), Reply::bulk_str(crate::REDIS_VERSION)),
            (Reply::bulk_str("proto"), Reply::Int(version)),
            (Reply::bulk_str("id"), Reply::Int(session.id as i64)),
            (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
            (Reply::bulk_str("role"), Reply::bulk_str("master")),
            (Reply::bulk_str("modules"), Reply::Array(vec![])),
        ])
    })
}

/// RESET
fn reset(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        session.db = 0;
        session.proto = Protocol::Resp2;
        session.authed = session
            .node
            .shared
            .runtime
            .lock()
            .expect("runtime config")
            .requirepass
            .is_none();
        let mut info = session.info.borrow_mut();
        info.db = 0;
        info.resp = 2;
        info.name.clear();
        Reply::Status("RESET")
    })
}

/// Client names and library names may not contain spaces or control
/// characters.
fn valid_client_text(text: &[u8]) -> Result<(), Reply> {
    if text.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(Reply::Error(error::INVALID_CLIENT_NAME))
    }
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, LADDR <ip:port>, SKIPME (YES|NO).",
    "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [...]]",
    "    Return information about client connections.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are LIB-NAME and LIB-VER.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
];

/// CLIENT <subcommand> ...
fn client(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let sub = upper(&args[1]);
        let argc = args.len();
        let arity_err = || error::wrong_arity(&format!("client|{}", sub.to_ascii_lowercase()));
        match sub.as_str() {
            "ID" if argc == 2 => Reply::Int(session.id as i64),
            "GETNAME" if argc == 2 => {
                let name = session.info.borrow().name.clone();
                if name.is_empty() {
                    Reply::Nil
                } else {
                    Reply::bulk_str(&name)
                }
            }
            "SETNAME" if argc == 3 => {
                if let Err(e) = valid_client_text(&args[2]) {
                    return e;
                }
                session.info.borrow_mut().name = String::from_utf8_lossy(&args[2]).into_owned();
                Reply::OK
            }
            "SETINFO" if argc == 4 => {
                let attr = upper(&args[2]);
                if attr != "LIB-NAME" && attr != "LIB-VER" {
                    return Reply::ErrorOwned(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&args[2])
                    ));
                }
                if valid_client_text(&args[3]).is_err() {
                    return Reply::ErrorOwned(format!(
                        "ERR {} cannot contain spaces, newlines or special characters.",
                        attr.to_ascii_lowercase()
                    ));
                }
                let value = String::from_utf8_lossy(&args[3]).into_owned();
                let mut info = session.info.borrow_mut();
                if attr == "LIB-NAME" {
                    info.lib_name = value;
                } else {
                    info.lib_ver = value;
                }
                Reply::OK
            }
            "INFO" if argc == 2 => Reply::Verbatim(session.info.borrow().list_line() + "\n"),
            "LIST" => client_list(session, &args[2..]).await,
            "KILL" if argc >= 3 => client_kill(session, &args[2..]).await,
            "NO-EVICT" | "NO-TOUCH" if argc == 3 => match upper(&args[2]).as_str() {
                "ON" | "OFF" => Reply::OK,
                _ => Reply::Error(error::SYNTAX),
            },
            "HELP" if argc == 2 => Reply::Array(CLIENT_HELP.iter().map(|l| Reply::Status(l)).collect()),
            "ID" | "GETNAME" | "SETNAME" | "SETINFO" | "INFO" | "KILL" | "NO-EVICT" | "NO-TOUCH" | "HELP" => {
                arity_err()
            }
            _ => error::unknown_subcommand("client", &args[1]),
        }
    })
}

/// CLIENT LIST [TYPE type] [ID id ...]
async fn client_list(session: &Session, args: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut cur = Cursor::new(args);
    while let Some(opt) = cur.next_arg() {
        match upper(opt).as_str() {
            "TYPE" => match cur.next_arg().map(|t| upper(t)) {
                Some(t) if t == "NORMAL" => {}
                Some(t) if matches!(t.as_str(), "MASTER" | "REPLICA" | "SLAVE" | "PUBSUB") => {
                    return Reply::Verbatim(String::new());
                }
                Some(t) => return Reply::ErrorOwned(format!("ERR Unknown client type '{}'", t.to_lowercase())),
                None => return Reply::Error(error::SYNTAX),
            },
            "ID" => {
                let mut list = Vec::new();
                while let Some(id) = cur.next_arg() {
                    match int(id) {
                        Ok(n) if n > 0 => list.push(n as u64),
                        _ => return Reply::Error("ERR Invalid client ID"),
                    }
                }
                ids = Some(list);
            }
            _ => return Reply::Error(error::SYNTAX),
        }
    }
    let lines = session
        .run_on_all(move |_| {
            server::with_local_clients(|clients| {
                let mut v: Vec<(u64, String)> = clients
                    .values()
                    .map(|c| c.borrow())
                    .filter(|c| ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
                    .map(|c| (c.id, c.list_line()))
                    .collect();
                v.sort();
                v
            })
        })
        .await;
    let mut all: Vec<(u64, String)> = lines.into_iter().flatten().collect();
    all.sort();
    let mut text = String::new();
    for (_, line) in all {
        text.push_str(&line);
        text.push('\n');
    }
    Reply::Verbatim(text)
}

/// CLIENT KILL ip:port | CLIENT KILL [ID id] [ADDR ip:port] [LADDR ip:port] [SKIPME yes/no]
async fn client_kill(session: &Session, args: &[Bytes]) -> Reply {
    let legacy = args.len() == 1;
    let mut filter = server::KillFilter {
        id: None,
        addr: None,
        laddr: None,
        skip: if legacy { None } else { Some(session.id) },
    };
    if legacy {
        filter.addr = Some(String::from_utf8_lossy(&args[0]).into_owned());
    } else {
        if !args.len().is_multiple_of(2) {
            return Reply::Error(error::SYNTAX);
        }
        for pair in args.chunks(2) {
            let value = String::from_utf8_lossy(&pair[1]).into_owned();
            match upper(&pair[0]).as_str() {
                "ID" => match int(&pair[1]) {
                    Ok(n) if n > 0 => filter.id = Some(n as u64),
                    _ => return Reply::Error("ERR client-id should be greater than 0"),
                },
                "ADDR" => filter.addr = Some(value),
                "LADDR" => filter.laddr = Some(value),
                "SKIPME" => match upper(&pair[1]).as_str() {
                    "YES" => filter.skip = Some(session.id),
                    "NO" => filter.skip = None,
                    _ => return Reply::Error(error::SYNTAX),
                },
                "USER" | "TYPE" | "MAXAGE" => {}
                _ => return Reply::Error(error::SYNTAX),
            }
        }
    }
    let killed: usize = session
        .run_on_all(move |_| server::kill_local_clients(&filter))
        .await
        .into_iter()
        .sum();
    if legacy {
        if killed == 0 {
            Reply::Error(error::NO_SUCH_CLIENT)
        } else {
            Reply::OK
        }
    } else {
        Reply::Int(killed as i64)
    }
}
