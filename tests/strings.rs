//! The string family over TCP.

mod common;

use redis::{Commands, Value, cmd};

#[test]
fn get_and_set_round_trip_on_one_and_two_threads() {
    for threads in [1, 2] {
        let server = common::mayfly_with(threads, &[]);
        let mut c = server.conn();
        for i in 0..200 {
            let _: () = c.set(format!("key:{i}"), format!("value:{i}")).unwrap();
        }
        for i in 0..200 {
            let v: String = c.get(format!("key:{i}")).unwrap();
            assert_eq!(v, format!("value:{i}"));
        }
        let missing: Option<String> = c.get("nope").unwrap();
        assert_eq!(missing, None);
    }
}

#[test]
fn values_are_binary_safe() {
    let server = common::mayfly();
    let mut c = server.conn();
    let blob: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let _: () = c.set(b"bin\x00key", &blob).unwrap();
    let back: Vec<u8> = c.get(b"bin\x00key").unwrap();
    assert_eq!(back, blob);
}

#[test]
fn set_options_follow_redis() {
    let server = common::mayfly();
    let mut c = server.conn();
    let r: Option<String> = cmd("SET").arg("k").arg("v1").arg("NX").query(&mut c).unwrap();
    assert_eq!(r.as_deref(), Some("OK"));
    let r: Option<String> = cmd("SET").arg("k").arg("v2").arg("NX").query(&mut c).unwrap();
    assert_eq!(r, None);
    let r: Option<String> = cmd("SET").arg("missing").arg("v").arg("XX").query(&mut c).unwrap();
    assert_eq!(r, None);
    let old: Option<String> = cmd("SET").arg("k").arg("v3").arg("GET").query(&mut c).unwrap();
    assert_eq!(old.as_deref(), Some("v1"));
    // NX GET: returns the old value and does not overwrite.
    let old: Option<String> = cmd("SET")
        .arg("k")
        .arg("v4")
        .arg("NX")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(old.as_deref(), Some("v3"));
    let now: String = c.get("k").unwrap();
    assert_eq!(now, "v3");
    let _: () = cmd("SET").arg("t").arg("v").arg("EX").arg(100).query(&mut c).unwrap();
    let ttl: i64 = c.ttl("t").unwrap();
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    let _: () = cmd("SET").arg("t").arg("v2").arg("KEEPTTL").query(&mut c).unwrap();
    let ttl: i64 = c.ttl("t").unwrap();
    assert!(ttl > 0);
    let _: () = c.set("t", "v3").unwrap();
    let ttl: i64 = c.ttl("t").unwrap();
    assert_eq!(ttl, -1);
    let err = cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(0)
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(err.detail(), Some("invalid expire time in 'set' command"));
    let err = cmd("SET")
        .arg("k")
        .arg("v")
        .arg("NX")
        .arg("XX")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(err.code(), Some("ERR"));
    assert_eq!(err.detail(), Some("syntax error"));
    let _: () = c.sadd("aset", "m").unwrap();
    let err = cmd("SET")
        .arg("aset")
        .arg("v")
        .arg("GET")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
}

#[test]
fn counters_check_types_and_overflow() {
    let server = common::mayfly();
    let mut c = server.conn();
    let n: i64 = c.incr("n", 5).unwrap();
    assert_eq!(n, 5);
    let n: i64 = c.decr("n", 7).unwrap();
    assert_eq!(n, -2);
    let _: () = c.set("s", "abc").unwrap();
    let err = c.incr::<_, _, i64>("s", 1).unwrap_err();
    assert_eq!(err.detail(), Some("value is not an integer or out of range"));
    let _: () = c.set("big", i64::MAX).unwrap();
    let err = c.incr::<_, _, i64>("big", 1).unwrap_err();
    assert_eq!(err.detail(), Some("increment or decrement would overflow"));
    let f: String = cmd("INCRBYFLOAT").arg("f").arg("10.5").query(&mut c).unwrap();
    assert_eq!(f, "10.5");
    let f: String = cmd("INCRBYFLOAT").arg("f").arg("0.1").query(&mut c).unwrap();
    assert_eq!(f, "10.6");
    let _: () = cmd("SETEX").arg("e").arg(100).arg("v").query(&mut c).unwrap();
    let n: i64 = c.incr("e", 0).unwrap_or(-1);
    assert_eq!(n, -1, "non-integer value must not increment");
}

#[test]
fn append_strlen_and_ranges() {
    let server = common::mayfly();
    let mut c = server.conn();
    let n: i64 = c.append("a", "Hello").unwrap();
    assert_eq!(n, 5);
    let n: i64 = c.append("a", " World").unwrap();
    assert_eq!(n, 11);
    let s: String = c.getrange("a", 0, 4).unwrap();
    assert_eq!(s, "Hello");
    let s: String = c.getrange("a", -5, -1).unwrap();
    assert_eq!(s, "World");
    let n: i64 = c.setrange("a", 6, "Redis").unwrap();
    assert_eq!(n, 11);
    let s: String = c.get("a").unwrap();
    assert_eq!(s, "Hello Redis");
    let n: i64 = c.setrange("pad", 3, "x").unwrap();
    assert_eq!(n, 4);
    let v: Vec<u8> = c.get("pad").unwrap();
    assert_eq!(v, b"\0\0\0x");
    let n: i64 = c.strlen("a").unwrap();
    assert_eq!(n, 11);
}

#[test]
fn mset_mget_and_msetnx_span_shards() {
    let server = common::mayfly();
    let mut c = server.conn();
    let (a, b) = common::keys_on_two_shards("ms");
    let _: () = c.mset(&[(&a, "1"), (&b, "2")]).unwrap();
    let v: Vec<Option<String>> = c.mget(&[&a, &b, &"none".to_string()]).unwrap();
    assert_eq!(v, vec![Some("1".into()), Some("2".into()), None]);
    let n: i64 = cmd("MSETNX")
        .arg(&b)
        .arg("x")
        .arg("fresh")
        .arg("y")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let fresh: Option<String> = c.get("fresh").unwrap();
    assert_eq!(fresh, None, "MSETNX must set nothing when one key exists");
    let n: i64 = cmd("MSETNX")
        .arg("fresh")
        .arg("y")
        .arg("fresh2")
        .arg("z")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let err = cmd("MSET").arg("a").query::<()>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("wrong number of arguments for 'mset' command"));
}

#[test]
fn getex_getdel_getset() {
    let server = common::mayfly();
    let mut c = server.conn();
    let _: () = c.set("k", "v").unwrap();
    let v: String = cmd("GETEX").arg("k").arg("PX").arg(100000).query(&mut c).unwrap();
    assert_eq!(v, "v");
    let pttl: i64 = c.pttl("k").unwrap();
    assert!(pttl > 90000);
    let _: String = cmd("GETEX").arg("k").arg("PERSIST").query(&mut c).unwrap();
    let ttl: i64 = c.ttl("k").unwrap();
    assert_eq!(ttl, -1);
    let old: String = c.getset("k", "w").unwrap();
    assert_eq!(old, "v");
    let v: String = cmd("GETDEL").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "w");
    let exists: bool = c.exists("k").unwrap();
    assert!(!exists);
    let v: Value = cmd("GETDEL").arg("k").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
}
