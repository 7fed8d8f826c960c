//! The server family: COMMAND, INFO, CONFIG, DBSIZE, FLUSHDB, FLUSHALL,
//! TIME, SHUTDOWN, MEMORY and OBJECT.

use std::fmt::Write as _;

use bytes::Bytes;

use super::parse::{Cursor, glob_match, upper};
use super::{BoxFut, CommandSpec, Exec, OpCtx, all_commands, flags, lookup, spec};
use crate::cmd::flags::*;
use crate::db::now_ms;
use crate::error;
use crate::resp::Reply;
use crate::server::{self, Session};

pub const COMMANDS: &[CommandSpec] = &[
    spec("command", -1, LOADING | STALE, (0, 0, 0), Exec::Conn(command)),
    spec("info", -1, LOADING | STALE, (0, 0, 0), Exec::Conn(info)),
    spec(
        "config",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        (0, 0, 0),
        Exec::Conn(config),
    ),
    spec("dbsize", 1, READONLY | FAST, (0, 0, 0), Exec::Conn(dbsize)),
    spec("flushdb", -1, WRITE, (0, 0, 0), Exec::Conn(flushdb)),
    spec("flushall", -1, WRITE, (0, 0, 0), Exec::Conn(flushall)),
    spec("time", 1, FAST | LOADING | STALE, (0, 0, 0), Exec::Conn(time)),
    spec(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI,
        (0, 0, 0),
        Exec::Conn(shutdown),
    ),
    spec("memory", -2, READONLY, (0, 0, 0), Exec::Conn(memory)),
    spec("object", -2, READONLY, (2, 2, 1), Exec::Conn(object)),
];

/// The ten fields of one COMMAND INFO entry (Redis 7 shape).
fn command_entry(row: &CommandSpec) -> Reply {
    Reply::Array(vec![
        Reply::bulk_str(row.name),
        Reply::Int(row.arity as i64),
        Reply::Set(flags::names(row.flags).into_iter().map(Reply::Status).collect()),
        Reply::Int(row.first_key as i64),
        Reply::Int(row.last_key as i64),
        Reply::Int(row.step as i64),
        Reply::Set(vec![]),
        Reply::Set(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

/// COMMAND [COUNT | INFO name... | DOCS [name...] | LIST | GETKEYS cmd args...]
fn command(_session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if args.len() == 1 {
            return Reply::Array(all_commands().into_iter().map(command_entry).collect());
        }
        match upper(&args[1]).as_str() {
            "COUNT" if args.len() == 2 => Reply::Int(all_commands().len() as i64),
            "LIST" => Reply::Array(all_commands().into_iter().map(|r| Reply::bulk_str(r.name)).collect()),
            "INFO" => {
                if args.len() == 2 {
                    return Reply::Array(all_commands().into_iter().map(command_entry).collect());
                }
                Reply::Array(
                    args[2..]
                        .iter()
                        .map(|name| lookup(name).map_or(Reply::NilArray, command_entry))
                        .collect(),
                )
            }
            "DOCS" => {
                let rows: Vec<&CommandSpec> = if args.len() == 2 {
                    all_commands()
                } else {
                    args[2..].iter().filter_map(|n| lookup(n)).collect()
                };
                Reply::Map(
                    rows.into_iter()
                        .map(|r| {
                            (
                                Reply::bulk_str(r.name),
                                Reply::Map(vec![
                                    (Reply::bulk_str("summary"), Reply::bulk_str("")),
                                    (Reply::bulk_str("since"), Reply::bulk_str("1.0.0")),
                                    (Reply::bulk_str("group"), Reply::bulk_str("generic")),
                                ]),
                            )
                        })
                        .collect(),
                )
            }
            "GETKEYS" if args.len() >= 3 => {
                let Some(row) = lookup(&args[2]) else {
                    return Reply::Error("ERR Invalid command specified");
                };
                if !super::arity_ok(row.arity, args.len() - 2) {
                    return Reply::Error("ERR Invalid number of arguments specified for command");
                }
                let keys = row.keys(&args[2..]);
                if keys.is_empty() {
                    return Reply::Error("ERR The command has no key arguments");
                }
                Reply::Array(keys.into_iter().map(|k| Reply::Bulk(k.clone())).collect())
            }
            "HELP" => Reply::Array(vec![Reply::Status(
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are: COUNT, DOCS, GETKEYS, INFO, LIST, HELP",
            )]),
            _ => error::unknown_subcommand("command", &args[1]),
        }
    })
}

/// Totals gathered from every shard for INFO.
#[derive(Default, Clone)]
struct ShardTotals {
    keys: Vec<(usize, usize)>,
    hits: u64,
    misses: u64,
    expired: u64,
    clients: usize,
    commands: u64,
    connections: u64,
    per_command: Vec<(&'static str, server::CommandStat)>,
}

async fn gather_totals(session: &Session) -> ShardTotals {
    let parts = session
        .run_on_all(|sh| {
            let node = server::local_node();
            let stats = node.stats.borrow();
            ShardTotals {
                keys: sh.dbs.iter().map(|d| (d.len(), d.expires_len())).collect(),
                hits: sh.stats.keyspace_hits,
                misses: sh.stats.keyspace_misses,
                expired: sh.dbs.iter().map(|d| d.expired_count).sum(),
                clients: node.clients.borrow().len(),
                commands: stats.commands,
                connections: stats.connections,
                per_command: stats.per_command.iter().map(|(k, v)| (*k, v.clone())).collect(),
            }
        })
        .await;
    let mut total = ShardTotals::default();
    for p in parts {
        if total.keys.is_empty() {
            total.keys = vec![(0, 0); p.keys.len()];
        }
        for (t, k) in total.keys.iter_mut().zip(&p.keys) {
            t.0 += k.0;
            t.1 += k.1;
        }
        total.hits += p.hits;
        total.misses += p.misses;
        total.expired += p.expired;
        total.clients += p.clients;
        total.commands += p.commands;
        total.connections += p.connections;
        for (name, stat) in p.per_command {
            match total.per_command.iter_mut().find(|(n, _)| *n == name) {
                Some((_, s)) => {
                    s.calls += stat.calls;
                    s.ticks += stat.ticks;
                    s.failed += stat.failed;
                }
                None => total.per_command.push((name, stat)),
            }
        }
    }
    total.per_command.sort_by_key(|(n, _)| *n);
    total
}

/// Resident set size in bytes, from /proc.
/// Bytes the allocator holds from the OS, and its peak: what Redis's
/// `used_memory` reports from its allocator. Constant time; walking the
/// keyspace instead took 50 ms at a million keys, with the shard stalled.
fn allocator_bytes() -> (usize, usize) {
    let (mut elapsed, mut user, mut system, mut rss, mut peak_rss) = (0, 0, 0, 0, 0);
    let (mut commit, mut peak_commit, mut faults) = (0, 0, 0);
    // SAFETY: mimalloc fills the eight counters it is given.
    unsafe {
        libmimalloc_sys::mi_process_info(
            &mut elapsed,
            &mut user,
            &mut system,
            &mut rss,
            &mut peak_rss,
            &mut commit,
            &mut peak_commit,
            &mut faults,
        )
    };
    (commit, peak_commit)
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// User and system CPU seconds of this process.
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage fills a plain struct.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "keyspace",
];

/// INFO [section ...]
fn info(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let mut wanted: Vec<String> = args[1..]
            .iter()
            .map(|a| String::from_utf8_lossy(a).to_lowercase())
            .collect();
        if wanted.is_empty() || wanted.iter().any(|w| w == "default") {
            wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string()));
        }
        if wanted.iter().any(|w| w == "all" || w == "everything") {
            wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string()));
            wanted.push("commandstats".into());
        }
        let has = |s: &str| wanted.iter().any(|w| w == s);
        let totals = gather_totals(session).await;
        let shared = &session.node.shared;
        let mut out = String::new();
        let mut section = |name: &str, body: String| {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            let _ = write!(out, "# {name}\r\n{body}");
        };
        if has("server") {
            let uptime = shared.started.elapsed().as_secs();
            let mut s = String::new();
            let _ = write!(
                s,
                "redis_version:{}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\n\
                 redis_mode:standalone\r\nos:Linux\r\narch_bits:64\r\nmultiplexing_api:io_uring\r\n\
                 process_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\n\
                 uptime_in_days:{}\r\nhz:10\r\nconfigured_hz:10\r\nexecutable:{}\r\nconfig_file:\r\n\
                 mayfly_version:{}\r\nthread_count:{}\r\n",
                crate::REDIS_VERSION,
                std::process::id(),
                run_id(),
                shared.config.port,
                now_ms() * 1000,
                uptime,
                uptime / 86400,
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                env!("CARGO_PKG_VERSION"),
                shared.threads,
            );
            section("Server", s);
        }
        if has("clients") {
            section(
                "Clients",
                format!(
                    "connected_clients:{}\r\ncluster_connections:0\r\nmaxclients:10000\r\nblocked_clients:0\r\ntracking_clients:0\r\n",
                    totals.clients
                ),
            );
        }
        if has("memory") {
            let rss = rss_bytes();
            let (used, peak) = allocator_bytes();
            section(
                "Memory",
                format!(
                    "used_memory:{used}\r\nused_memory_human:{mh:.2}M\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{rh:.2}M\r\n\
                     used_memory_peak:{peak}\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n\
                     mem_allocator:mimalloc\r\n",
                    mh = used as f64 / 1048576.0,
                    rh = rss as f64 / 1048576.0,
                ),
            );
        }
        if has("persistence") {
            section(
                "Persistence",
                "loading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\n\
                 aof_enabled:0\r\naof_rewrite_in_progress:0\r\n"
                    .into(),
            );
        }
        if has("stats") {
            section(
                "Stats",
                format!(
                    "total_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:0\r\n\
                     rejected_connections:0\r\nexpired_keys:{}\r\nevicted_keys:0\r\nkeyspace_hits:{}\r\n\
                     keyspace_misses:{}\r\npubsub_channels:0\r\npubsub_patterns:0\r\n",
                    totals.connections, totals.commands, totals.expired, totals.hits, totals.misses
                ),
            );
        }
        if has("replication") {
            section(
                "Replication",
                "role:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n".into(),
            );
        }
        if has("cpu") {
            let (user, sys) = cpu_times();
            section("CPU", format!("used_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n"));
        }
        if has("commandstats") {
            let mut s = String::new();
            for (name, st) in &totals.per_command {
                let usec = crate::clock::ticks_to_us(st.ticks);
                let per = if st.calls > 0 {
                    usec as f64 / st.calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    s,
                    "cmdstat_{name}:calls={},usec={},usec_per_call={per:.2},rejected_calls=0,failed_calls={}\r\n",
                    st.calls, usec, st.failed
                );
            }
            section("Commandstats", s);
        }
        if has("keyspace") {
            let mut s = String::new();
            for (i, (keys, expires)) in totals.keys.iter().enumerate() {
                if *keys > 0 {
                    let _ = write!(s, "db{i}:keys={keys},expires={expires},avg_ttl=0\r\n");
                }
            }
            section("Keyspace", s);
        }
        Reply::Verbatim(out)
    })
}

/// A stable 40-hex-digit id for this process's run.
fn run_id() -> String {
    use sha1::{Digest, Sha1};
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let seed = format!("{}-{}", std::process::id(), now_ms());
        Sha1::digest(seed.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
    .clone()
}

/// The parameters CONFIG GET knows, with their current values.
fn config_params(session: &Session) -> Vec<(&'static str, String)> {
    let shared = &session.node.shared;
    let c = &shared.config;
    let runtime = shared.runtime.lock().expect("runtime config").clone();
    vec![
        ("port", c.port.to_string()),
        ("bind", c.bind.clone()),
        ("databases", c.dbnum.to_string()),
        ("dbnum", c.dbnum.to_string()),
        ("proactor_threads", shared.threads.to_string()),
        ("requirepass", runtime.requirepass.unwrap_or_default()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxclients", "10000".into()),
        ("timeout", "0".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("proto-max-bulk-len", (512 * 1024 * 1024).to_string()),
        ("loglevel", format!("{:?}", c.loglevel).to_lowercase()),
        ("lua-time-limit", crate::script::busy::time_limit_ms().to_string()),
        ("busy-reply-threshold", crate::script::busy::time_limit_ms().to_string()),
        ("lua_time_limit", crate::script::busy::time_limit_ms().to_string()),
        ("default_lua_flags", c.default_lua_flags.clone()),
        (
            "lua_undeclared_keys_shas",
            crate::script::store::store().undeclared_shas_text(),
        ),
    ]
}

/// CONFIG GET parameter [parameter ...] | CONFIG SET parameter value [...] |
/// CONFIG RESETSTAT | CONFIG REWRITE
fn config(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let sub = upper(&args[1]);
        match sub.as_str() {
            "GET" if args.len() >= 3 => {
                let params = config_params(session);
                let mut pairs = Vec::new();
                for (name, value) in &params {
                    if args[2..]
                        .iter()
                        .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
                    {
                        pairs.push((Reply::bulk_str(name), Reply::bulk_str(value)));
                    }
                }
                Reply::Map(pairs)
            }
            "SET" if args.len() >= 4 && args.len().is_multiple_of(2) => {
                let mut runtime = session.node.shared.runtime.lock().expect("runtime config");
                for pair in args[2..].chunks(2) {
                    let name = String::from_utf8_lossy(&pair[0]).to_lowercase();
                    match name.as_str() {
                        "requirepass" => {
                            runtime.requirepass = if pair[1].is_empty() {
                                None
                            } else {
                                Some(String::from_utf8_lossy(&pair[1]).into_owned())
                            };
                        }
                        "lua_undeclared_keys_shas" => {
                            crate::script::store::store().set_undeclared_shas(&String::from_utf8_lossy(&pair[1]));
                        }
                        "lua-time-limit" | "busy-reply-threshold" | "lua_time_limit" => {
                            match crate::db::parse_i64(&pair[1]) {
                                Some(ms) if ms >= 0 => crate::script::busy::set_time_limit_ms(ms as u64),
                                _ => {
                                    return Reply::ErrorOwned(format!(
                                        "ERR Invalid argument '{}' for CONFIG SET '{name}'",
                                        String::from_utf8_lossy(&pair[1])
                                    ));
                                }
                            }
                        }
                        "maxmemory" | "maxmemory-policy" | "timeout" | "save" | "appendonly" | "loglevel" => {}
                        _ => {
                            return Reply::ErrorOwned(format!(
                                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                            ));
                        }
                    }
                }
                Reply::OK
            }
            "RESETSTAT" if args.len() == 2 => {
                session
                    .run_on_all(|sh| {
                        sh.stats = Default::default();
                        let node = server::local_node();
                        let mut stats = node.stats.borrow_mut();
                        stats.commands = 0;
                        stats.per_command.clear();
                    })
                    .await;
                Reply::OK
            }
            "REWRITE" if args.len() == 2 => Reply::Error("ERR The server is running without a config file"),
            "GET" | "SET" | "RESETSTAT" | "REWRITE" => error::wrong_arity(&format!("config|{}", sub.to_lowercase())),
            _ => error::unknown_subcommand("config", &args[1]),
        }
    })
}

/// DBSIZE
fn dbsize(session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let db = session.db;
        let sizes = session.run_on_all(move |sh| sh.db(db).len()).await;
        Reply::Int(sizes.into_iter().sum::<usize>() as i64)
    })
}

/// The optional ASYNC|SYNC argument of FLUSHDB and FLUSHALL.
fn flush_mode(args: &[Bytes]) -> Result<(), Reply> {
    match args.len() {
        1 => Ok(()),
        2 if matches!(upper(&args[1]).as_str(), "ASYNC" | "SYNC") => Ok(()),
        _ => Err(Reply::Error(error::SYNTAX)),
    }
}

/// FLUSHDB [ASYNC|SYNC]
fn flushdb(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if let Err(e) = flush_mode(&args) {
            return e;
        }
        let db = session.db;
        session
            .run_global(move |sh| {
                sh.db(db).clear();
                sh.touch_all_watched(Some(db));
            })
            .await;
        Reply::OK
    })
}

/// FLUSHALL [ASYNC|SYNC]
fn flushall(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        if let Err(e) = flush_mode(&args) {
            return e;
        }
        session
            .run_global(|sh| {
                sh.dbs.iter_mut().for_each(|d| d.clear());
                sh.touch_all_watched(None);
            })
            .await;
        Reply::OK
    })
}

/// TIME
fn time(_session: &mut Session, _args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Reply::Array(vec![
            Reply::bulk_str(&now.as_secs().to_string()),
            Reply::bulk_str(&now.subsec_micros().to_string()),
        ])
    })
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]
fn shutdown(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        for arg in &args[1..] {
            match upper(arg).as_str() {
                "NOSAVE" | "SAVE" | "NOW" | "FORCE" => {}
                "ABORT" => return Reply::Error("ERR No shutdown in progress."),
                _ => return Reply::Error(error::SYNTAX),
            }
        }
        server::shutdown(&session.node.shared)
    })
}

/// MEMORY USAGE key [SAMPLES count] | MEMORY DOCTOR | MEMORY HELP
fn memory(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        match upper(&args[1]).as_str() {
            "USAGE" if args.len() >= 3 => {
                let mut cur = Cursor::new(&args[3..]);
                while !cur.is_done() {
                    if !cur.eat("SAMPLES") {
                        return Reply::Error(error::SYNTAX);
                    }
                    if let Err(e) = cur.next_i64() {
                        return e;
                    }
                }
                let key = args[2].clone();
                let db = session.db;
                let core = session.core();
                let shard = core.shard_of(&key);
                let k = key.clone();
                session
                    .run_keyed(shard, &[key], false, move |sh| {
                        let mut ctx = OpCtx::new(sh, db);
                        match ctx.value(&k) {
                            Some(v) => Reply::Int((v.as_ref().heap_size() + k.len() + 16) as i64),
                            None => Reply::Nil,
                        }
                    })
                    .await
            }
            "DOCTOR" => Reply::Verbatim("Sam, I detected no issues in this Mayfly instance.\n".into()),
            "HELP" => Reply::Array(vec![
                Reply::Status("MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
                Reply::Status("USAGE <key> [SAMPLES <count>]"),
                Reply::Status("    Return memory in bytes used by <key> and its value."),
            ]),
            _ => error::unknown_subcommand("memory", &args[1]),
        }
    })
}

/// OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key | OBJECT HELP
fn object(session: &mut Session, args: Vec<Bytes>) -> BoxFut<'_> {
    Box::pin(async move {
        let sub = upper(&args[1]);
        if sub == "HELP" {
            return Reply::Array(vec![
                Reply::Status("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
                Reply::Status("ENCODING <key>"),
                Reply::Status("FREQ <key>"),
                Reply::Status("IDLETIME <key>"),
                Reply::Status("REFCOUNT <key>"),
            ]);
        }
        if !matches!(sub.as_str(), "ENCODING" | "FREQ" | "IDLETIME" | "REFCOUNT") {
            return error::unknown_subcommand("object", &args[1]);
        }
        if args.len() != 3 {
            return error::wrong_arity(&format!("object|{}", sub.to_lowercase()));
        }
        if sub == "FREQ" {
            return Reply::Error(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            );
        }
        let key = args[2].clone();
        let db = session.db;
        let core = session.core();
        let shard = core.shard_of(&key);
        let k = key.clone();
        session
            .run_keyed(shard, &[key], false, move |sh| {
                let mut ctx = OpCtx::new(sh, db);
                match ctx.value(&k) {
                    None => Reply::Nil,
                    Some(v) => match sub.as_str() {
                        "ENCODING" => Reply::bulk_str(v.as_ref().encoding()),
                        "REFCOUNT" => Reply::Int(1),
                        _ => Reply::Int(0),
                    },
                }
            })
            .await
    })
}
