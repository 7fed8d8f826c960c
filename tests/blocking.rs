//! Blocking list pops, woken by pushes from other connections and cores.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use redis::{Commands, Value, cmd};

#[test]
fn blpop_is_woken_by_a_push_from_another_connection() {
    let server = common::mayfly();
    // Many pushers so that some land on the other core's connections.
    for round in 0..6 {
        let key = format!("q:{round}");
        let client = server.client();
        let k = key.clone();
        let waiter = thread::spawn(move || {
            let mut c = client.get_connection().unwrap();
            let started = Instant::now();
            let v: (String, String) = cmd("BLPOP").arg(&k).arg(5).query(&mut c).unwrap();
            (v, started.elapsed())
        });
        thread::sleep(Duration::from_millis(100));
        let mut pusher = server.conn();
        let _: i64 = pusher.rpush(&key, "item").unwrap();
        let ((k, v), waited) = waiter.join().unwrap();
        assert_eq!((k.as_str(), v.as_str()), (key.as_str(), "item"));
        assert!(waited < Duration::from_secs(4), "woke too late: {waited:?}");
        let left: i64 = pusher.llen(&key).unwrap();
        assert_eq!(left, 0);
    }
}

#[test]
fn brpoplpush_moves_across_shards_when_woken() {
    let server = common::mayfly();
    let (src, dst) = common::keys_on_two_shards("lock");
    let client = server.client();
    let (s, d) = (src.clone(), dst.clone());
    let waiter = thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        let v: String = c.brpoplpush(&s, &d, 5.0).unwrap();
        v
    });
    thread::sleep(Duration::from_millis(100));
    let mut c = server.conn();
    let _: i64 = c.lpush(&src, "token").unwrap();
    assert_eq!(waiter.join().unwrap(), "token");
    let v: Vec<String> = c.lrange(&dst, 0, -1).unwrap();
    assert_eq!(v, ["token"]);
}

#[test]
fn blocking_pops_time_out_with_nil() {
    let server = common::mayfly();
    let mut c = server.conn();
    let started = Instant::now();
    let v: Value = cmd("BLPOP").arg("none1").arg("none2").arg("0.2").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let v: Value = cmd("BRPOPLPUSH")
        .arg("none")
        .arg("dst")
        .arg("0.1")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::Nil);
    let err = cmd("BLPOP").arg("k").arg("-1").query::<Value>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("timeout is negative"));
    let err = cmd("BLPOP").arg("k").arg("abc").query::<Value>(&mut c).unwrap_err();
    assert_eq!(err.detail(), Some("timeout is not a float or out of range"));
}

#[test]
fn blpop_returns_at_once_when_data_is_there() {
    let server = common::mayfly();
    let mut c = server.conn();
    let _: i64 = c.rpush("ready", &["a", "b"]).unwrap();
    let v: (String, String) = cmd("BLPOP").arg("empty").arg("ready").arg(0).query(&mut c).unwrap();
    assert_eq!(v, ("ready".into(), "a".into()));
    let v: (String, Vec<String>) = cmd("BLMPOP")
        .arg(1)
        .arg(1)
        .arg("ready")
        .arg("RIGHT")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, ("ready".into(), vec!["b".into()]));
}

#[test]
fn a_killed_blocked_client_is_released() {
    let server = common::mayfly();
    let client = server.client();
    let waiter = thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        let _: () = cmd("CLIENT").arg("SETNAME").arg("blocked").query(&mut c).unwrap();
        cmd("BLPOP").arg("never").arg(0).query::<Value>(&mut c).is_err()
    });
    thread::sleep(Duration::from_millis(200));
    let mut c = server.conn();
    let list: String = cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    let line = list
        .lines()
        .find(|l| l.contains("name=blocked"))
        .expect("blocked client listed");
    let id = line.split_whitespace().next().unwrap().trim_start_matches("id=");
    let n: i64 = cmd("CLIENT").arg("KILL").arg("ID").arg(id).query(&mut c).unwrap();
    assert_eq!(n, 1);
    assert!(waiter.join().unwrap(), "the killed client's connection must close");
}
