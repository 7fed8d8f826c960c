//! One shard's part of one database: keys, typed values and expiry.
//!
//! Expiry is lazy on every lookup, and active: `expire_cycle` walks an index
//! of deadlines so that expired keys free their memory without being
//! touched. Nothing here is shared between threads.
//!
//! A large table grows a step at a time, as Redis rehashes
//! (`growth::Stepped`): every access to a key moves a few keys of the old
//! table across, and the expiry cycle moves more while the server is idle.

mod deadlines;
mod growth;
mod node;
mod packed;
mod value;

use std::collections::HashMap;

use bytes::Bytes;
use hashbrown::HashTable;

use deadlines::Deadlines;
use growth::Stepped;
pub use node::Node;
pub use packed::{Hash, Seeded, Set};
pub use value::{Value, ValueKind, ValueMut, ValueRef, parse_i64};

pub type HashBuilder = ahash::RandomState;
pub type Map<K, V> = HashMap<K, V, HashBuilder>;

/// A value and its absolute deadline in unix milliseconds (0: none), owned:
/// what a removed key leaves, and what moves between databases.
#[derive(Debug)]
pub struct Entry {
    pub value: Value,
    pub expire_at: u64,
}

/// The keys: one pointer per key in an open-addressing table, and the key,
/// deadline and value behind it in one block (`Node`).
#[derive(Default)]
pub struct Db {
    table: Stepped<Node>,
    /// (deadline, key) for every key with a TTL, oldest first.
    deadlines: Deadlines,
    /// Keys removed by expiry, lazily or actively.
    pub expired_count: u64,
}

/// Keys the active expiry cycle moves (every 100 ms, per database), so a
/// growth also ends on a quiet server: about a millisecond's work, as
/// Redis's active rehashing spends.
const GROWTH_IDLE_STEP: usize = 1024;

/// Key equality, inline for the usual short keys: a call to `memcmp` per
/// lookup cost more than the comparison itself.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if !(8..=64).contains(&n) {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    while at + 8 <= n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The tail, as the last 8 bytes (overlapping what was compared).
    at == n || word(a, n - 8) == word(b, n - 8)
}

/// A node's hash, for moving it between tables.
fn node_hash(n: &Node) -> u64 {
    key_hash(n.key())
}

/// Matches the entry of `key` in a table probe.
fn is_key(key: &[u8]) -> impl Fn(&Node) -> bool + '_ {
    move |n| same_key(n.key(), key)
}

/// Whether a deadline has not passed at `now` (0 for either: no check).
fn alive(deadline: u64, now: u64) -> bool {
    deadline == 0 || now == 0 || deadline > now
}

/// How many slots of a table one SCAN page may look at per item asked for.
const SCAN_EMPTY_PER_ITEM: usize = 10;

/// Walks `table` from slot `from`: up to `count` items, looking at no more
/// than ten empty slots per item asked for, as Redis does. Returns the items
/// and the slot to go on from (0: done), so a SCAN, SSCAN or HSCAN page
/// costs its COUNT, wherever the cursor stands.
pub(crate) fn scan_slots<T>(table: &HashTable<T>, from: usize, count: usize) -> (Vec<&T>, usize) {
    let slots = table.num_buckets();
    let mut out = Vec::new();
    let mut empty = 0;
    let mut slot = from;
    while slot < slots && out.len() < count && empty < count.saturating_mul(SCAN_EMPTY_PER_ITEM) {
        match table.get_bucket(slot) {
            Some(item) => out.push(item),
            None => empty += 1,
        }
        slot += 1;
    }
    (out, if slot >= slots { 0 } else { slot })
}

/// A key's hash in every database table: the same on every core (seeded
/// once per process), so a core sending work can name the entry the owner
/// should prefetch.
pub fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    Seeded.hash_one(key)
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Db {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn expires_len(&self) -> usize {
        self.deadlines.len()
    }

    /// Before an access to `key`: see `Stepped::settle`.
    fn settle(&mut self, hash: u64, key: &[u8]) {
        self.table.settle(hash, is_key(key), node_hash);
    }

    /// Starts loading the entry with this `key_hash` (see `prefetch`).
    pub fn prefetch_hash(&self, hash: u64) {
        let prefetch = |n: &Node| {
            n.prefetch();
            false
        };
        self.table.table().find(hash, prefetch);
        if let Some(old) = self.table.old() {
            old.find(hash, prefetch);
        }
    }

    /// Takes `key`'s entry out of the table and the deadline index.
    fn take(&mut self, key: &[u8]) -> Option<Node> {
        let hash = key_hash(key);
        self.settle(hash, key);
        let (node, _) = self.table.table_mut().find_entry(hash, is_key(key)).ok()?.remove();
        self.deadlines.change(key, hash, node.expire_at(), 0);
        Some(node)
    }

    /// Asks the CPU to start loading `key`'s entry (see `cmd::prefetch`).
    pub fn prefetch(&self, key: &[u8]) {
        // Every candidate slot's block is prefetched; none is taken.
        self.prefetch_hash(key_hash(key));
    }

    /// The live entry at `key`; one past its deadline (`now` 0: do not
    /// check) is dropped on the way.
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<&Node> {
        self.get_mut(key, now).map(|n| &*n)
    }

    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Node> {
        let hash = key_hash(key);
        self.settle(hash, key);
        let found = self.table.table_mut().find_entry(hash, is_key(key)).ok()?;
        let at = found.get().expire_at();
        if alive(at, now) {
            return Some(found.into_mut());
        }
        found.remove();
        self.deadlines.change(key, hash, at, 0);
        self.expired_count += 1;
        None
    }

    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.get(key, now).is_some()
    }

    /// Inserts or replaces `key`, dropping any TTL it had.
    pub fn set(&mut self, key: &[u8], value: Value) {
        self.set_with_expire(key, value, 0);
    }

    /// Inserts or replaces `key` with the given deadline (0: none).
    pub fn set_with_expire(&mut self, key: &[u8], value: Value, expire_at: u64) {
        let hash = key_hash(key);
        self.settle(hash, key);
        let old_deadline = match self.table.table_mut().find_mut(hash, is_key(key)) {
            Some(node) => {
                let old = node.expire_at();
                *node = Node::new(key, value, expire_at);
                old
            }
            None => {
                self.table.insert_new(hash, Node::new(key, value, expire_at), node_hash);
                0
            }
        };
        self.deadlines.change(key, hash, old_deadline, expire_at);
    }

    /// Sets the deadline of an existing key; false if the key is missing.
    pub fn set_expire(&mut self, key: &[u8], at: u64) -> bool {
        let hash = key_hash(key);
        self.settle(hash, key);
        let Some(node) = self.table.table_mut().find_mut(hash, is_key(key)) else {
            return false;
        };
        let old = node.expire_at();
        node.set_expire_at(at);
        self.deadlines.change(key, hash, old, at);
        true
    }

    /// Removes the TTL of `key`; true if it had one.
    pub fn persist(&mut self, key: &[u8]) -> bool {
        let hash = key_hash(key);
        self.settle(hash, key);
        let Some(node) = self.table.table_mut().find_mut(hash, is_key(key)) else {
            return false;
        };
        let old = node.expire_at();
        if old == 0 {
            return false;
        }
        node.set_expire_at(0);
        self.deadlines.change(key, hash, old, 0);
        true
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let node = self.take(key)?;
        let expire_at = node.expire_at();
        Some(Entry {
            value: node.into_value(),
            expire_at,
        })
    }

    /// Removes `key` unless it has already expired; true if a live key went.
    pub fn remove_live(&mut self, key: &[u8], now: u64) -> bool {
        let Some(node) = self.take(key) else {
            return false;
        };
        let live = alive(node.expire_at(), now);
        if !live {
            self.expired_count += 1;
        }
        live
    }

    pub fn clear(&mut self) {
        self.table = Stepped::default();
        self.deadlines.clear();
    }

    /// Removes up to `budget` keys whose deadline has passed.
    /// Returns how many were removed.
    pub fn expire_cycle(&mut self, now: u64, budget: usize) -> usize {
        self.table.step(GROWTH_IDLE_STEP, node_hash);
        let mut removed = 0;
        while removed < budget {
            let Some(key) = self.deadlines.pop_due(now) else {
                break;
            };
            let hash = key_hash(&key);
            if self.table.take_old(hash, is_key(&key)).is_none()
                && let Ok(found) = self.table.table_mut().find_entry(hash, is_key(&key))
            {
                found.remove();
            }
            removed += 1;
        }
        self.expired_count += removed as u64;
        removed
    }

    /// Every live key, in no particular order.
    pub fn keys(&self, now: u64) -> impl Iterator<Item = &Node> {
        self.table.iter().filter(move |n| alive(n.expire_at(), now))
    }

    /// A key picked at random (RANDOMKEY): the first one at or after a
    /// random slot of the table.
    pub fn random_key(&self, random: u64) -> Option<&[u8]> {
        // While a table grows, one of the two, in proportion to their keys.
        let new = self.table.table();
        let table = match self.table.old() {
            Some(old) if !old.is_empty() && (random >> 32) % self.len() as u64 >= new.len() as u64 => old,
            _ => new,
        };
        let slots = table.num_buckets();
        if table.is_empty() || slots == 0 {
            return None;
        }
        let start = (random % slots as u64) as usize;
        (0..slots)
            .find_map(|k| table.get_bucket((start + k) % slots))
            .map(Node::key)
    }

    /// A page of keys for SCAN from table slot `from` (see `scan_slots`).
    /// Returns the live keys and the slot to go on from (0: done).
    pub fn scan_page(&mut self, from: usize, count: usize, now: u64) -> (Vec<(Bytes, ValueKind)>, usize) {
        self.table.finish(node_hash);
        let (nodes, next) = scan_slots(self.table.table(), from, count);
        let live = nodes.into_iter().filter(|n| alive(n.expire_at(), now));
        (
            live.map(|n| (Bytes::copy_from_slice(n.key()), n.value().kind()))
                .collect(),
            next,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly_at_every_length() {
        for n in 0..80 {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same_key(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 1;
                assert!(!same_key(&a, &b), "length {n}, byte {i}");
            }
            assert!(!same_key(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn lazy_expiry_hides_and_drops_the_key() {
        let mut db = Db::default();
        db.set_with_expire(b"k", Value::Str(Bytes::from_static(b"v")), 100);
        assert!(db.get(b"k", 99).is_some());
        assert!(db.get(b"k", 100).is_none());
        assert_eq!(db.len(), 0);
        assert_eq!(db.expires_len(), 0);
    }

    #[test]
    fn active_expiry_removes_only_due_keys() {
        let mut db = Db::default();
        for i in 0..10u64 {
            db.set_with_expire(format!("k{i}").as_bytes(), Value::Str(Bytes::new()), 10 + i);
        }
        db.set(b"forever", Value::Str(Bytes::new()));
        assert_eq!(db.expire_cycle(14, 100), 5);
        assert_eq!(db.len(), 6);
        assert_eq!(db.expire_cycle(1000, 2), 2);
        assert_eq!(db.len(), 4);
    }

    fn key(i: usize) -> Vec<u8> {
        format!("key:{i}").into_bytes()
    }

    #[test]
    fn a_large_table_grows_a_step_at_a_time_and_loses_no_key() {
        let mut db = Db::default();
        let mut i = 0;
        // Fill until a growth starts.
        while db.table.old().is_none() {
            db.set(&key(i), Value::Str(Bytes::from(i.to_string())));
            i += 1;
            assert!(i < 1 << 20, "no growth started");
        }
        let filled = i;
        let left = db.table.old().expect("growing").len();
        assert!(left > filled - growth::STEP * 2, "one access moved only a step");
        assert_eq!(db.len(), filled);
        // While it grows: every key is found, overwritten, expired or
        // removed wherever it sits, and a key goes on counting once.
        db.set_with_expire(&key(1), Value::Str(Bytes::new()), 5);
        assert!(db.remove(&key(2)).is_some());
        assert!(db.persist(&key(1)));
        assert!(db.set_expire(&key(3), 5));
        assert_eq!(db.expire_cycle(10, 100), 1, "key 3 expired in the old table or the new");
        assert!(db.table.old().is_some(), "the cycle's idle step left some of the move");
        let mut seen = 0;
        for j in 0..filled {
            let want = j != 2 && j != 3;
            assert_eq!(db.get(&key(j), 1).is_some(), want, "key {j}");
            seen += want as usize;
        }
        assert_eq!(db.len(), seen);
        assert_eq!(db.keys(1).count(), seen);
        assert!(db.random_key(12345).is_some());
        // Reads moved the rest, and the table never had to grow at once.
        assert!(
            db.table.old().is_none(),
            "{} left",
            db.table.old().map_or(0, |t| t.len())
        );
        assert!(db.table.table().len() <= db.table.table().capacity());
        // Another growth, ended by SCAN, which pages over the one table.
        while db.table.old().is_none() {
            db.set(&key(i), Value::Str(Bytes::new()));
            i += 1;
        }
        let total = db.len();
        let (mut keys, mut cursor) = (std::collections::HashSet::new(), 0);
        loop {
            let (page, next) = db.scan_page(cursor, 1000, 1);
            keys.extend(page.into_iter().map(|(k, _)| k));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert!(db.table.old().is_none());
        assert_eq!(keys.len(), total);
    }

    #[test]
    fn overwrite_clears_ttl_and_deadline_index() {
        let mut db = Db::default();
        db.set_with_expire(b"k", Value::Str(Bytes::new()), 50);
        db.set(b"k", Value::Str(Bytes::new()));
        assert_eq!(db.expires_len(), 0);
        assert_eq!(db.get(b"k", 1000).unwrap().expire_at(), 0);
    }
}
