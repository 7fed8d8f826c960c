//! Connection and server commands, the CLI and expiry.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::thread;
use std::time::Duration;

use redis::{Commands, Value, cmd};

#[test]
fn info_reports_a_three_part_version_and_the_keyspace() {
    let server = common::mayfly();
    let mut c = server.conn();
    for i in 0..50 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    let _: () = cmd("SET").arg("ttl").arg(1).arg("EX").arg(100).query(&mut c).unwrap();
    let info: String = cmd("INFO").query(&mut c).unwrap();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("redis_version");
    assert_eq!(version.split('.').count(), 3, "{version}");
    assert!(version.starts_with("7."));
    assert!(info.contains("mayfly_version:"));
    assert!(info.contains("thread_count:2"));
    assert!(info.contains("db0:keys=51,expires=1,avg_ttl=0"), "{info}");
    for section in ["# Server", "# Clients", "# Memory", "# Stats", "# CPU", "# Keyspace"] {
        assert!(info.contains(section), "missing {section}");
    }
    assert!(!info.contains("# Commandstats"));
    let stats: String = cmd("INFO").arg("commandstats").query(&mut c).unwrap();
    assert!(stats.contains("cmdstat_set:calls=51"), "{stats}");
    let server_only: String = cmd("INFO").arg("server").query(&mut c).unwrap();
    assert!(!server_only.contains("# Keyspace"));
}

fn info_number(info: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

#[test]
fn info_memory_follows_the_allocator() {
    let server = common::mayfly();
    let mut c = server.conn();
    let before: String = cmd("INFO").arg("memory").query(&mut c).unwrap();
    let used_before = info_number(&before, "used_memory");
    assert!(used_before > 0);
    let value = "v".repeat(100);
    let mut pipe = redis::pipe();
    for i in 0..100_000 {
        pipe.cmd("SET").arg(format!("mem:{i}")).arg(&value).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    let after: String = cmd("INFO").arg("memory").query(&mut c).unwrap();
    let used_after = info_number(&after, "used_memory");
    assert!(
        used_after >= used_before + 100_000 * 100,
        "100,000 values of 100 bytes, and used_memory went from {used_before} to {used_after}"
    );
    assert!(info_number(&after, "used_memory_peak") >= used_after);
    assert!(info_number(&after, "used_memory_rss") > 0);
    assert!(after.contains("mem_allocator:mimalloc"));
}

#[test]
fn keys_scan_dbsize_and_flush_cover_all_shards() {
    let server = common::mayfly();
    let mut c = server.conn();
    for i in 0..100 {
        let _: () = c.set(format!("user:{i}"), i).unwrap();
    }
    let _: i64 = c.sadd("aset", "m").unwrap();
    let n: i64 = cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 101);
    let keys: Vec<String> = c.keys("user:*").unwrap();
    assert_eq!(keys.len(), 100);
    let scanned: BTreeSet<String> = c.scan_match("user:1*").unwrap().collect();
    assert_eq!(scanned.len(), 11);
    let scan_all = |c: &mut redis::Connection| {
        let mut cursor = 0u64;
        let mut all = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = cmd("SCAN").arg(cursor).arg("COUNT").arg(7).query(c).unwrap();
            all.extend(batch);
            cursor = next;
            if cursor == 0 {
                return all;
            }
        }
    };
    let all = scan_all(&mut c);
    assert_eq!(all.len(), 101, "each key once");
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 101);
    for _ in 0..50 {
        let k: String = cmd("RANDOMKEY").query(&mut c).unwrap();
        assert!(k == "aset" || k.starts_with("user:"), "{k}");
    }
    // A sparse table (most keys deleted): a full scan still finds the rest.
    for i in 0..2000 {
        let _: () = c.set(format!("tmp:{i}"), i).unwrap();
    }
    for i in 0..2000 {
        let _: i64 = c.del(format!("tmp:{i}")).unwrap();
    }
    let all = scan_all(&mut c);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 101);
    let (_, typed): (u64, Vec<String>) = cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("set")
        .arg("COUNT")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert_eq!(typed, vec!["aset".to_string()]);
    let _: () = cmd("SELECT").arg(3).query(&mut c).unwrap();
    let _: () = c.set("other-db", 1).unwrap();
    let _: () = cmd("FLUSHDB").query(&mut c).unwrap();
    let n: i64 = cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
    let _: () = cmd("SELECT").arg(0).query(&mut c).unwrap();
    let n: i64 = cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 101, "FLUSHDB only empties the selected database");
    let _: () = cmd("FLUSHALL").arg("ASYNC").query(&mut c).unwrap();
    let n: i64 = cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
    let k: Value = cmd("RANDOMKEY").query(&mut c).unwrap();
    assert_eq!(k, Value::Nil);
}

#[test]
fn active_expiry_frees_untouched_keys() {
    let server = common::mayfly();
    let mut c = server.conn();
    for i in 0..200 {
        let _: () = cmd("SET")
            .arg(format!("e{i}"))
            .arg(i)
            .arg("PX")
            .arg(50)
            .query(&mut c)
            .unwrap();
    }
    let _: () = c.set("stays", 1).unwrap();
    thread::sleep(Duration::from_millis(400));
    // DBSIZE counts stored keys without touching them: only active expiry
    // can have removed the others.
    let n: i64 = cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let info: String = cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(info.contains("expired_keys:200"), "{info}");
}

#[test]
fn lazy_expiry_hides_keys_at_once() {
    let server = common::mayfly();
    let mut c = server.conn();
    let _: () = cmd("SET").arg("soon").arg(1).arg("PX").arg(30).query(&mut c).unwrap();
    thread::sleep(Duration::from_millis(60));
    let v: Option<i64> = c.get("soon").unwrap();
    assert_eq!(v, None);
    let ttl: i64 = c.ttl("soon").unwrap();
    assert_eq!(ttl, -2);
}

#[test]
fn client_commands_name_list_and_kill() {
    let server = common::mayfly();
    let mut c = server.conn();
    let _: () = cmd("CLIENT").arg("SETNAME").arg("me").query(&mut c).unwrap();
    let _: () = cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("tests")
        .query(&mut c)
        .unwrap();
    let id: i64 = cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    let info: String = cmd("CLIENT").arg("INFO").query(&mut c).unwrap();
    assert!(info.contains(&format!("id={id} ")));
    assert!(info.contains("name=me"));
    assert!(info.contains("lib-name=tests"));
    let mut others: Vec<redis::Connection> = (0..6).map(|_| server.conn()).collect();
    for o in &mut others {
        let _: () = cmd("PING").query(o).unwrap();
    }
    let list: String = cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert_eq!(list.lines().count(), 7, "{list}");
    let err = cmd("CLIENT")
        .arg("KILL")
        .arg("1.2.3.4:5")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(err.detail(), Some("No such client"));
    let n: i64 = cmd("CLIENT").arg("KILL").arg("ID").arg(id).query(&mut c).unwrap();
    assert_eq!(n, 0, "SKIPME defaults to yes");
    let victim_id: i64 = cmd("CLIENT").arg("ID").query(&mut others[0]).unwrap();
    let n: i64 = cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(victim_id)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    assert!(cmd("PING").query::<String>(&mut others[0]).is_err());
}

#[test]
fn client_list_shows_how_long_each_connection_has_been_idle() {
    let server = common::mayfly();
    let mut quiet = server.conn();
    let _: () = cmd("CLIENT").arg("SETNAME").arg("quiet").query(&mut quiet).unwrap();
    thread::sleep(Duration::from_millis(1200));
    let mut c = server.conn();
    let _: () = cmd("CLIENT").arg("SETNAME").arg("busy").query(&mut c).unwrap();
    let list: String = cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    let idle = |name: &str| -> u64 {
        let line = list
            .lines()
            .find(|l| l.contains(&format!(" name={name} ")))
            .unwrap_or_else(|| panic!("no {name} in {list}"));
        let field = line
            .split(' ')
            .find_map(|f| f.strip_prefix("idle="))
            .expect("idle field");
        field.parse().expect("idle seconds")
    };
    assert_eq!(idle("quiet"), 1, "{list}");
    assert_eq!(idle("busy"), 0, "{list}");
}

#[test]
fn transparent_huge_pages_are_off_for_the_server() {
    let server = common::mayfly();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    // Kernels before 6.x do not show the flag; there is nothing to check.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}

#[test]
fn requirepass_gates_commands_until_auth() {
    let server = common::mayfly_with(2, &["--requirepass", "sekret"]);
    let mut c = server.conn();
    let err = cmd("GET").arg("x").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"));
    let err = cmd("AUTH").arg("wrong").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.code(), Some("WRONGPASS"));
    let _: () = cmd("AUTH").arg("sekret").query(&mut c).unwrap();
    let _: () = c.set("x", 1).unwrap();
    let authed = redis::Client::open(format!("redis://:sekret@127.0.0.1:{}/", server.port)).unwrap();
    let mut c2 = authed.get_connection().unwrap();
    let v: i64 = c2.get("x").unwrap();
    assert_eq!(v, 1);
    let mut c3 = server.conn();
    let v: Value = cmd("HELLO")
        .arg(3)
        .arg("AUTH")
        .arg("default")
        .arg("sekret")
        .query(&mut c3)
        .unwrap();
    assert!(matches!(v, Value::Map(_)), "{v:?}");
}

#[test]
fn command_and_config_introspection() {
    let server = common::mayfly();
    let mut c = server.conn();
    let count: i64 = cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(count > 100);
    let info: Vec<Value> = cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .arg("nosuch")
        .query(&mut c)
        .unwrap();
    assert_eq!(info.len(), 2);
    assert_eq!(info[1], Value::Nil);
    let keys: Vec<String> = cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["a", "b"]);
    let cfg: Vec<String> = cmd("CONFIG").arg("GET").arg("port").query(&mut c).unwrap();
    assert_eq!(cfg, ["port".to_string(), server.port.to_string()]);
    let err = cmd("CONFIG")
        .arg("SET")
        .arg("nosuch")
        .arg("1")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(
        err.detail(),
        Some("Unknown option or number of arguments for CONFIG SET - 'nosuch'")
    );
    let t: Vec<String> = cmd("TIME").query(&mut c).unwrap();
    assert!(t[0].parse::<u64>().unwrap() > 1_700_000_000);
    let _: () = c.set("k", "12345").unwrap();
    let enc: String = cmd("OBJECT").arg("ENCODING").arg("k").query(&mut c).unwrap();
    assert_eq!(enc, "int");
    let usage: i64 = cmd("MEMORY").arg("USAGE").arg("k").query(&mut c).unwrap();
    assert!(usage > 0);
}

#[test]
fn quit_and_shutdown() {
    let mut server = common::mayfly();
    let mut c = server.conn();
    let ok: String = cmd("QUIT").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let mut c = server.conn();
    let _ = cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut c);
    for _ in 0..100 {
        if !server.is_alive() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("server still running after SHUTDOWN");
}

#[test]
fn sigterm_exits_cleanly_and_stops_listening_at_once() {
    let mut server = common::mayfly();
    let mut c = server.conn();
    let pong: String = cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let status = server.terminate();
    assert!(status.success(), "{status}");
    // No listener may outlive the process (an io_uring ACCEPT kept one
    // listening until the kernel tore the ring down).
    let err = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn cli_accepts_both_flag_forms_and_rejects_bad_values() {
    let bin = env!("CARGO_BIN_EXE_mayfly");
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(bin).args(["--port", "notaport"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
    let out = Command::new(bin).arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
    let server = common::mayfly_with(1, &["--dbnum", "4"]);
    let mut c = server.conn();
    let err = cmd("SELECT").arg(4).query::<()>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("DB index is out of range"));
}

#[test]
fn a_second_server_cannot_take_a_port_in_use() {
    let first = common::mayfly();
    let out = Command::new(env!("CARGO_BIN_EXE_mayfly"))
        .arg(format!("--port={}", first.port))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Address already in use"));
    let mut c = first.conn();
    let pong: String = cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

/// The threads of server `pid` named for an executor, from their status
/// and sched files: (Cpus_allowed_list, se.slice if the kernel shows it).
fn executor_threads(pid: u32) -> Vec<(String, Option<u64>)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // Executors are named mayfly-<shard>; other threads have words.
        if !comm
            .trim()
            .strip_prefix("mayfly-")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        let sched = std::fs::read_to_string(dir.join("sched")).unwrap_or_default();
        let slice = sched
            .lines()
            .find(|l| l.starts_with("se.slice"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok());
        out.push((cpus, slice));
    }
    out
}

#[test]
fn executors_are_pinned_unless_told_and_take_the_slice_asked_for() {
    let process_cpus = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_string()))
        .unwrap();
    let many_cpus = process_cpus.contains(['-', ',']);

    let pinned = common::mayfly_with(2, &[]);
    let threads = executor_threads(pinned.pid());
    assert!(threads.len() >= 2, "{threads:?}");
    if many_cpus {
        for (cpus, _) in &threads {
            assert!(!cpus.contains(['-', ',']), "an executor on {cpus}, not one CPU");
        }
    }
    let default_slice = threads[0].1;

    let free = common::mayfly_with(2, &["--proactor_affinity_mode", "off", "--sched_slice_us", "300"]);
    let mut c = free.conn();
    let _: () = c.set("k", "v").unwrap();
    let v: String = c.get("k").unwrap();
    assert_eq!(v, "v");
    let threads = executor_threads(free.pid());
    assert!(threads.len() >= 2, "{threads:?}");
    for (cpus, _) in &threads {
        assert_eq!(cpus, &process_cpus);
    }
    // Kernels before 6.12 neither show nor honour a slice. Each executor
    // has a helper thread of the same name, which keeps the default.
    if default_slice.is_some() {
        let asked = threads.iter().filter(|(_, slice)| *slice == Some(300_000)).count();
        assert_eq!(asked, 2, "{threads:?}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_mayfly"))
        .args(["--sched_slice_us", "50"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sched_slice_us"));
}
