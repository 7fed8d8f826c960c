//! Multi-key commands are atomic across shards: no client ever sees half
//! of a write.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use redis::{Commands, cmd};

#[test]
fn mset_is_never_seen_torn_by_mget() {
    let server = common::mayfly();
    let (a, b) = common::keys_on_two_shards("torn");
    let mut init = server.conn();
    let _: () = init.mset(&[(&a, 0), (&b, 0)]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = server.client();
        let (a, b) = (a.clone(), b.clone());
        writers.push(thread::spawn(move || {
            let mut c = client.get_connection().unwrap();
            for i in 0..400 {
                let v = w * 100_000 + i;
                let _: () = c.mset(&[(&a, v), (&b, v)]).unwrap();
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..16 {
        let client = server.client();
        let (a, b) = (a.clone(), b.clone());
        let stop = stop.clone();
        readers.push(thread::spawn(move || {
            let mut c = client.get_connection().unwrap();
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) || reads < 50 {
                let (x, y): (i64, i64) = c.mget(&[&a, &b]).unwrap();
                assert_eq!(x, y, "MGET saw a torn MSET");
                reads += 1;
            }
            reads
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let total: i32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(total > 0);
}

#[test]
fn rename_across_shards_moves_value_and_ttl() {
    let server = common::mayfly();
    let (a, b) = common::keys_on_two_shards("rn");
    let mut c = server.conn();
    let _: () = cmd("SET").arg(&a).arg("v").arg("EX").arg(100).query(&mut c).unwrap();
    let _: () = c.rename(&a, &b).unwrap();
    let v: Option<String> = c.get(&a).unwrap();
    assert_eq!(v, None);
    let v: String = c.get(&b).unwrap();
    assert_eq!(v, "v");
    let ttl: i64 = c.ttl(&b).unwrap();
    assert!(ttl > 90);
    let err = c.rename::<_, _, ()>(&a, &b).unwrap_err();
    assert_eq!(err.detail(), Some("no such key"));
    let _: () = c.set(&a, "other").unwrap();
    let n: i64 = c.rename_nx(&a, &b).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn concurrent_cross_shard_transfers_conserve_the_total() {
    // Each client moves one unit between two counters on different shards
    // with SMOVE-like pairs of INCRBY inside one MSET: the sum must hold.
    let server = common::mayfly();
    let (a, b) = common::keys_on_two_shards("sum");
    let mut init = server.conn();
    let _: () = init.mset(&[(&a, 1000), (&b, 1000)]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..8 {
        let client = server.client();
        let (a, b) = (a.clone(), b.clone());
        threads.push(thread::spawn(move || {
            let mut c = client.get_connection().unwrap();
            for _ in 0..200 {
                let (x, y): (i64, i64) = c.mget(&[&a, &b]).unwrap();
                assert_eq!(x + y, 2000, "a reader saw a half-applied transfer");
            }
        }));
    }
    let client = server.client();
    let (wa, wb) = (a.clone(), b.clone());
    let stop2 = stop.clone();
    let writer = thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        let mut i = 0i64;
        while !stop2.load(Ordering::Relaxed) {
            i += 1;
            let _: () = c.mset(&[(&wa, 1000 - i % 500), (&wb, 1000 + i % 500)]).unwrap();
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
