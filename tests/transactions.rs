//! MULTI / EXEC / DISCARD / WATCH across shards.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use redis::{Commands, Value, cmd};

#[test]
fn exec_runs_the_queue_and_reports_each_reply() {
    let server = common::mayfly();
    let mut c = server.conn();
    let (a, b) = common::keys_on_two_shards("tx");
    let (r1, r2, r3): (String, i64, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&a)
        .arg(1)
        .cmd("INCR")
        .arg(&a)
        .cmd("RPUSH")
        .arg(&b)
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!((r1.as_str(), r2, r3), ("OK", 2, 1));
    // A runtime error is one reply among the others, not an abort.
    let req = format!("MULTI\r\nINCR {b}\r\nINCR {a}\r\nEXEC\r\n");
    let out = common::raw_exchange(server.port, req.as_bytes(), b":3\r\n");
    assert!(
        out.ends_with("*2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:3\r\n"),
        "{out}"
    );
}

#[test]
fn queuing_errors_abort_exec() {
    let server = common::mayfly();
    let mut c = server.conn();
    let _: () = cmd("MULTI").query(&mut c).unwrap();
    let q: String = cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    assert_eq!(q, "QUEUED");
    assert!(cmd("SET").arg("k").query::<()>(&mut c).is_err());
    let err = cmd("EXEC").query::<Value>(&mut c).unwrap_err();
    assert_eq!(err.code(), Some("EXECABORT"));
    let v: Option<String> = c.get("k").unwrap();
    assert_eq!(v, None);
    let err = cmd("EXEC").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("EXEC without MULTI"));
    let _: () = cmd("MULTI").query(&mut c).unwrap();
    let err = cmd("MULTI").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("MULTI calls can not be nested"));
    let err = cmd("WATCH").arg("x").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("WATCH inside MULTI is not allowed"));
    let _: () = cmd("DISCARD").query(&mut c).unwrap();
    let err = cmd("DISCARD").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("DISCARD without MULTI"));
}

#[test]
fn watch_fails_exec_after_a_write_on_another_shard() {
    let server = common::mayfly();
    let mut c = server.conn();
    let mut other = server.conn();
    let (a, b) = common::keys_on_two_shards("w");
    let _: () = c.set(&a, 1).unwrap();
    let _: () = cmd("WATCH").arg(&a).arg(&b).query(&mut c).unwrap();
    let _: () = other.set(&b, "changed").unwrap();
    let _: () = cmd("MULTI").query(&mut c).unwrap();
    let _: String = cmd("SET").arg(&a).arg(2).query(&mut c).unwrap();
    let v: Value = cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil, "EXEC must fail after a watched key changed");
    let now: i64 = c.get(&a).unwrap();
    assert_eq!(now, 1);
    // Without interference the same transaction goes through.
    let _: () = cmd("WATCH").arg(&a).arg(&b).query(&mut c).unwrap();
    let _: () = cmd("MULTI").query(&mut c).unwrap();
    let _: String = cmd("SET").arg(&a).arg(2).query(&mut c).unwrap();
    let v: Vec<String> = cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(v, ["OK"]);
    // UNWATCH forgets; a multi-key write (MSET, DEL) counts as a write.
    let _: () = cmd("WATCH").arg(&a).query(&mut c).unwrap();
    let _: () = cmd("UNWATCH").query(&mut c).unwrap();
    let _: () = other.set(&a, 9).unwrap();
    let v: Vec<Value> = redis::pipe().atomic().cmd("GET").arg(&a).query(&mut c).unwrap();
    assert_eq!(v.len(), 1);
    let _: () = cmd("WATCH").arg(&b).query(&mut c).unwrap();
    let _: i64 = other.del(&[&a, &b]).unwrap();
    let _: () = cmd("MULTI").query(&mut c).unwrap();
    let _: String = cmd("PING").query(&mut c).unwrap();
    let v: Value = cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
}

#[test]
fn exec_is_atomic_across_shards_under_concurrency() {
    let server = common::mayfly();
    let (a, b) = common::keys_on_two_shards("atom");
    let mut init = server.conn();
    let _: () = init.mset(&[(&a, 0), (&b, 0)]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let client = server.client();
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        readers.push(thread::spawn(move || {
            let mut c = client.get_connection().unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let (x, y): (i64, i64) = redis::pipe().atomic().get(&a).get(&b).query(&mut c).unwrap();
                assert_eq!(x, y, "a transaction saw half of another");
                n += 1;
            }
        }));
    }
    let mut c = server.conn();
    for _ in 0..300 {
        let _: () = redis::pipe()
            .atomic()
            .incr(&a, 1)
            .ignore()
            .incr(&b, 1)
            .ignore()
            .query(&mut c)
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let (x, y): (i64, i64) = c.mget(&[&a, &b]).unwrap();
    assert_eq!((x, y), (300, 300));
}

#[test]
fn keyless_commands_in_exec_take_the_global_barrier() {
    let server = common::mayfly();
    let mut c = server.conn();
    for i in 0..20 {
        let _: () = c.set(format!("g{i}"), i).unwrap();
    }
    let (n, keys, _): (i64, Vec<String>, ()) = redis::pipe()
        .atomic()
        .cmd("DBSIZE")
        .cmd("KEYS")
        .arg("g1*")
        .cmd("FLUSHDB")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 20);
    assert_eq!(keys.len(), 11);
    let n: i64 = cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
    // Blocking commands do not block inside EXEC.
    let v: Vec<Value> = redis::pipe()
        .atomic()
        .cmd("BLPOP")
        .arg("none")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec![Value::Nil]);
}

#[test]
fn transactions_match_redis() {
    let Some(redis) = common::redis_server() else { return };
    let mayfly = common::mayfly();
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "a", "1"],
        &["INCR", "a"],
        &["LPUSH", "a", "x"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "a"],
        &["EXEC"],
        &["MULTI"],
        &["NOSUCH"],
        &["DISCARD"],
        &["WATCH", "a"],
        &["MULTI"],
        &["GET", "a"],
        &["EXEC"],
        &["EXEC"],
        // Single-key commands over keys of both shards, interleaved, with
        // a runtime error among them: each shard's share runs as one job.
        &["MULTI"],
        &["SET", "k1", "10"],
        &["INCR", "k2"],
        &["RPUSH", "k3", "x", "y"],
        &["INCRBY", "k1", "5"],
        &["LPUSH", "k1", "z"],
        &["SADD", "k4", "m"],
        &["APPEND", "k2", "0"],
        &["LRANGE", "k3", "0", "-1"],
        &["GET", "k1"],
        &["EXPIRE", "k4", "100"],
        &["TTL", "k4"],
        &["DEL", "k2"],
        &["EXISTS", "k2"],
        &["GET", "k5"],
        &["EXEC"],
        &["MULTI"],
        &["GET", "k1"],
        &["EXEC"],
    ];
    let shards: std::collections::HashSet<usize> = ["k1", "k2", "k3", "k4", "k5"]
        .iter()
        .map(|k| mayfly::shard::shard_of(k.as_bytes(), 2))
        .collect();
    assert_eq!(shards.len(), 2, "the transaction's keys should span both shards");
    let mut r = redis.conn();
    let mut m = mayfly.conn();
    for args in script {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let want = format!("{:?}", common::raw(&mut r, &bytes));
        let got = format!("{:?}", common::raw(&mut m, &bytes));
        assert_eq!(got, want, "{args:?}");
    }
}

/// Whether an EXEC of `SET watched` fails after `script` ran (with `keys`)
/// on another connection while `watched` was WATCHed.
fn exec_fails_after_script(server: &common::Server, watched: &str, script: &str, keys: &[&str]) -> bool {
    let mut c = server.conn();
    let mut other = server.conn();
    let _: () = cmd("WATCH").arg(watched).query(&mut c).unwrap();
    let _: Value = cmd("EVAL")
        .arg(script)
        .arg(keys.len())
        .arg(keys)
        .query(&mut other)
        .unwrap();
    let _: () = cmd("MULTI").query(&mut c).unwrap();
    let _: String = cmd("SET").arg(watched).arg("mine").query(&mut c).unwrap();
    let v: Value = cmd("EXEC").query(&mut c).unwrap();
    v == Value::Nil
}

#[test]
fn scripts_fail_only_the_watches_on_keys_they_write() {
    let Some(redis) = common::redis_server() else { return };
    let mayfly = common::mayfly();
    let (a, b) = common::keys_on_two_shards("sw");
    let both = "redis.call('set', KEYS[1], 1); redis.call('set', KEYS[2], 2); return 1";
    let smove = "redis.call('sadd', KEYS[1], 'm'); return redis.call('smove', KEYS[1], KEYS[2], 'm')";
    let global_smove = "--!df flags=allow-undeclared-keys\n\
        redis.call('sadd', '{t}gsrc', 'm'); return redis.call('smove', '{t}gsrc', '{t}gdst', 'm')"
        .to_string();
    // COPY into another database. (A WATCH on the same name in the
    // script's own database also fails, where Redis's does not.)
    let global_copy = "--!df flags=allow-undeclared-keys\n\
        redis.call('set', '{t}gsrc2', 'v'); return redis.call('copy', '{t}gsrc2', '{t}gcopy', 'DB', 1, 'REPLACE')"
        .to_string();
    let cases: &[(&str, &str, &[&str])] = &[
        // Declared keys on both shards, the watched key not among them.
        ("elsewhere", both, &[&a, &b]),
        // The same script writing the watched key.
        (&a, both, &[&a, &b]),
        (&b, both, &[&a, &b]),
        // A command that moves a member, on one shard.
        ("{t}dst", smove, &["{t}src", "{t}dst"]),
        ("{t}other", smove, &["{t}src2", "{t}dst2"]),
        // A script that may touch any key, moving a member into the
        // watched key, or writing others only.
        ("{t}gdst", &global_smove, &[]),
        ("{t}gother", &global_smove, &[]),
        ("{t}gother", &global_copy, &[]),
    ];
    for (watched, script, keys) in cases {
        let want = exec_fails_after_script(&redis, watched, script, keys);
        let got = exec_fails_after_script(&mayfly, watched, script, keys);
        assert_eq!(got, want, "WATCH {watched}, then {script} on {keys:?}");
    }
}
