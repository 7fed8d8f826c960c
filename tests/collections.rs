//! Sets, hashes and lists over TCP.

mod common;

use std::collections::{BTreeSet, HashMap};

use redis::{Commands, Value, cmd};

#[test]
fn sets_add_remove_and_combine_across_shards() {
    let server = common::mayfly();
    let mut c = server.conn();
    let (a, b) = common::keys_on_two_shards("set");
    let n: i64 = c.sadd(&a, &["x", "y", "z"]).unwrap();
    assert_eq!(n, 3);
    let n: i64 = c.sadd(&a, &["x", "w"]).unwrap();
    assert_eq!(n, 1);
    let _: i64 = c.sadd(&b, &["y", "q"]).unwrap();
    let union: BTreeSet<String> = c.sunion(&[&a, &b]).unwrap();
    assert_eq!(union, ["q", "w", "x", "y", "z"].iter().map(|s| s.to_string()).collect());
    let inter: BTreeSet<String> = c.sinter(&[&a, &b]).unwrap();
    assert_eq!(inter, ["y".to_string()].into());
    let diff: BTreeSet<String> = c.sdiff(&[&a, &b]).unwrap();
    assert_eq!(diff, ["w", "x", "z"].iter().map(|s| s.to_string()).collect());
    let n: i64 = c.sunionstore("{dest}u", &[&a, &b]).unwrap();
    assert_eq!(n, 5);
    let card: i64 = c.scard("{dest}u").unwrap();
    assert_eq!(card, 5);
    let n: i64 = cmd("SINTERCARD").arg(2).arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(n, 1);
    let moved: bool = c.smove(&a, &b, "x").unwrap();
    assert!(moved);
    let is: bool = c.sismember(&b, "x").unwrap();
    assert!(is);
    let flags: Vec<bool> = cmd("SMISMEMBER").arg(&a).arg("x").arg("w").query(&mut c).unwrap();
    assert_eq!(flags, vec![false, true]);
    let removed: i64 = c.srem(&a, &["w", "y", "z"]).unwrap();
    assert_eq!(removed, 3);
    let exists: bool = c.exists(&a).unwrap();
    assert!(!exists, "an emptied set is deleted");
    let popped: Vec<String> = cmd("SPOP").arg(&b).arg(10).query(&mut c).unwrap();
    assert_eq!(popped.len(), 3);
    let _: () = c.set("str", "v").unwrap();
    let err = c.sadd::<_, _, i64>("str", "m").unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
    let err = c.sunion::<_, Vec<String>>(&[&b, &"str".to_string()]).unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
}

#[test]
fn srandmember_counts_follow_redis() {
    let server = common::mayfly();
    let mut c = server.conn();
    let _: i64 = c.sadd("s", &["a", "b", "c"]).unwrap();
    let v: Vec<String> = c.srandmember_multiple("s", 2).unwrap();
    assert_eq!(v.len(), 2);
    assert_ne!(v[0], v[1]);
    let v: Vec<String> = cmd("SRANDMEMBER").arg("s").arg(-7).query(&mut c).unwrap();
    assert_eq!(v.len(), 7);
    let v: Vec<String> = c.srandmember_multiple("s", 10).unwrap();
    assert_eq!(v.len(), 3);
}

#[test]
fn sscan_visits_every_member() {
    let server = common::mayfly();
    let mut c = server.conn();
    for i in 0..300 {
        let _: i64 = c.sadd("big", i).unwrap();
    }
    let seen: BTreeSet<i64> = c.sscan("big").unwrap().collect();
    assert_eq!(seen.len(), 300);
    // Past the packed limits: tables, walked page by page with a cursor.
    for i in 0..1000 {
        let _: i64 = c.sadd("table", format!("m{i}")).unwrap();
        let _: i64 = c.hset("htable", format!("f{i}"), i).unwrap();
    }
    let members: Vec<String> = c.sscan("table").unwrap().collect();
    assert_eq!(members.len(), 1000, "each member once");
    assert_eq!(members.iter().collect::<BTreeSet<_>>().len(), 1000);
    let matched: BTreeSet<String> = c.sscan_match("table", "m99*").unwrap().collect();
    let want: BTreeSet<String> = ["m99".to_string()]
        .into_iter()
        .chain((0..10).map(|i| format!("m99{i}")))
        .collect();
    assert_eq!(matched, want);
    let pairs: Vec<(String, i64)> = c.hscan("htable").unwrap().collect();
    assert_eq!(pairs.len(), 1000);
    assert!(pairs.iter().all(|(f, v)| f == &format!("f{v}")));
}

/// Past 57,344 items a set's or hash's table grows a step at a time (see
/// `db::growth`); at 60,000 the old table still holds most of them.
#[test]
fn large_sets_and_hashes_keep_every_item_while_their_tables_grow() {
    let server = common::mayfly();
    let mut c = server.conn();
    let n = 60_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let members: Vec<String> = chunk.iter().map(|i| format!("m{i}")).collect();
        let _: i64 = c.sadd("growing", &members).unwrap();
        let mut hset = cmd("HSET");
        hset.arg("hgrowing");
        for i in chunk {
            hset.arg(format!("f{i}")).arg(i);
        }
        let _: i64 = hset.query(&mut c).unwrap();
    }
    let card: i64 = c.scard("growing").unwrap();
    assert_eq!(card, n);
    // Every member is found, wherever it sits; some go, some fields change.
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut ask = cmd("SMISMEMBER");
        ask.arg("growing");
        for i in chunk {
            ask.arg(format!("m{i}"));
        }
        let found: Vec<i64> = ask.query(&mut c).unwrap();
        assert!(found.iter().all(|&f| f == 1), "a member of {chunk:?} is missing");
    }
    let gone: Vec<String> = (0..n).step_by(7).map(|i| format!("m{i}")).collect();
    let removed: i64 = c.srem("growing", &gone).unwrap();
    assert_eq!(removed, gone.len() as i64);
    for i in (0..n).step_by(11) {
        let _: i64 = c.hset("hgrowing", format!("f{i}"), -i).unwrap();
    }
    for i in (0..n).step_by(13) {
        let v: i64 = c.hget("hgrowing", format!("f{i}")).unwrap();
        assert_eq!(v, if i % 11 == 0 { -i } else { i }, "field f{i}");
    }
    let members: BTreeSet<String> = c.sscan("growing").unwrap().collect();
    let want: BTreeSet<String> = (0..n).filter(|i| i % 7 != 0).map(|i| format!("m{i}")).collect();
    assert_eq!(members, want);
    let pairs: HashMap<String, i64> = c.hscan("hgrowing").unwrap().collect();
    assert_eq!(pairs.len(), n as usize);
    assert!(pairs.iter().all(|(f, v)| f == &format!("f{}", v.abs())));
    let len: i64 = c.hlen("hgrowing").unwrap();
    assert_eq!(len, n);
}

#[test]
fn hashes_store_count_and_increment() {
    let server = common::mayfly();
    let mut c = server.conn();
    let n: i64 = cmd("HSET")
        .arg("h")
        .arg("a")
        .arg(1)
        .arg("b")
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = cmd("HSET")
        .arg("h")
        .arg("a")
        .arg(5)
        .arg("c")
        .arg(3)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let all: HashMap<String, i64> = c.hgetall("h").unwrap();
    assert_eq!(all, HashMap::from([("a".into(), 5), ("b".into(), 2), ("c".into(), 3)]));
    let v: i64 = c.hincr("h", "a", 10).unwrap();
    assert_eq!(v, 15);
    let v: String = cmd("HINCRBYFLOAT").arg("h").arg("f").arg("1.5").query(&mut c).unwrap();
    assert_eq!(v, "1.5");
    let _: () = c.hset("h", "s", "text").unwrap();
    let err = c.hincr::<_, _, _, i64>("h", "s", 1).unwrap_err();
    assert_eq!(err.detail(), Some("hash value is not an integer"));
    let v: Vec<Option<String>> = c.hget("h", &["a", "zz"]).unwrap();
    assert_eq!(v, vec![Some("15".into()), None]);
    let n: i64 = c.hlen("h").unwrap();
    assert_eq!(n, 5);
    let n: i64 = c.hdel("h", &["a", "b", "zz"]).unwrap();
    assert_eq!(n, 2);
    let set: bool = c.hset_nx("h", "c", "new").unwrap();
    assert!(!set);
    let n: i64 = cmd("HSTRLEN").arg("h").arg("s").query(&mut c).unwrap();
    assert_eq!(n, 4);
    let err = cmd("HSET").arg("h").arg("lonely").query::<i64>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("wrong number of arguments for 'hset' command"));
    let pairs: Vec<String> = cmd("HRANDFIELD")
        .arg("h")
        .arg(-4)
        .arg("WITHVALUES")
        .query(&mut c)
        .unwrap();
    assert_eq!(pairs.len(), 8);
    let _: i64 = c.hdel("h", &["c", "f", "s"]).unwrap();
    let exists: bool = c.exists("h").unwrap();
    assert!(!exists);
}

#[test]
fn lists_push_pop_range_and_edit() {
    let server = common::mayfly();
    let mut c = server.conn();
    let n: i64 = c.rpush("l", &["a", "b", "c"]).unwrap();
    assert_eq!(n, 3);
    let n: i64 = c.lpush("l", "z").unwrap();
    assert_eq!(n, 4);
    let v: Vec<String> = c.lrange("l", 0, -1).unwrap();
    assert_eq!(v, ["z", "a", "b", "c"]);
    let v: Vec<String> = c.lrange("l", -2, 100).unwrap();
    assert_eq!(v, ["b", "c"]);
    let v: Option<String> = c.lindex("l", -1).unwrap();
    assert_eq!(v.as_deref(), Some("c"));
    let _: () = c.lset("l", 1, "A").unwrap();
    let err = c.lset::<_, _, ()>("l", 10, "x").unwrap_err();
    assert_eq!(err.detail(), Some("index out of range"));
    let err = c.lset::<_, _, ()>("nolist", 0, "x").unwrap_err();
    assert_eq!(err.detail(), Some("no such key"));
    let n: i64 = c.linsert_before("l", "b", "B").unwrap();
    assert_eq!(n, 5);
    let n: i64 = c.linsert_after("l", "missing", "x").unwrap();
    assert_eq!(n, -1);
    let _: i64 = c.rpush("l", &["b", "b"]).unwrap();
    let n: i64 = c.lrem("l", -1, "b").unwrap();
    assert_eq!(n, 1);
    let pos: Option<i64> = cmd("LPOS").arg("l").arg("b").query(&mut c).unwrap();
    assert_eq!(pos, Some(3));
    let all: Vec<i64> = cmd("LPOS").arg("l").arg("b").arg("COUNT").arg(0).query(&mut c).unwrap();
    assert_eq!(all, vec![3, 5]);
    let _: () = c.ltrim("l", 1, 2).unwrap();
    let v: Vec<String> = c.lrange("l", 0, -1).unwrap();
    assert_eq!(v, ["A", "B"]);
    let v: Vec<String> = cmd("RPOP").arg("l").arg(5).query(&mut c).unwrap();
    assert_eq!(v, ["B", "A"]);
    let exists: bool = c.exists("l").unwrap();
    assert!(!exists);
    let v: Value = cmd("LPOP").arg("l").arg(2).query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let n: i64 = c.lpush_exists("l", "x").unwrap();
    assert_eq!(n, 0);
}

#[test]
fn list_moves_cross_shards() {
    let server = common::mayfly();
    let mut c = server.conn();
    let (a, b) = common::keys_on_two_shards("mv");
    let _: i64 = c.rpush(&a, &["1", "2", "3"]).unwrap();
    let v: String = c.rpoplpush(&a, &b).unwrap();
    assert_eq!(v, "3");
    let v: String = cmd("LMOVE")
        .arg(&a)
        .arg(&b)
        .arg("LEFT")
        .arg("RIGHT")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "1");
    let v: Vec<String> = c.lrange(&b, 0, -1).unwrap();
    assert_eq!(v, ["3", "1"]);
    let v: (String, Vec<String>) = cmd("LMPOP")
        .arg(2)
        .arg("empty")
        .arg(&b)
        .arg("LEFT")
        .arg("COUNT")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, (b.clone(), vec!["3".into(), "1".into()]));
    let _: () = c.set("str", "x").unwrap();
    let err = c.rpoplpush::<_, _, String>(&a, "str").unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
    let v: Vec<String> = c.lrange(&a, 0, -1).unwrap();
    assert_eq!(v, ["2"], "a failed move must not lose the element");
}
