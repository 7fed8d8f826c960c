//! One shard's part of one database: keys, typed values and expiry.
//!
//! Expiry is lazy on every lookup, and active: `expire_cycle` walks an index
//! of deadlines so that expired keys free their memory without being
//! touched. Nothing here is shared between threads.

mod value;

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

pub use value::{Value, ValueKind, parse_i64};

pub type HashBuilder = ahash::RandomState;
pub type Map<K, V> = HashMap<K, V, HashBuilder>;

/// A stored value and its absolute deadline in unix milliseconds (0: none).
#[derive(Debug)]
pub struct Entry {
    pub value: Value,
    pub expire_at: u64,
}

#[derive(Default)]
pub struct Db {
    entries: Map<Bytes, Entry>,
    /// (deadline, key) for every key with a TTL, oldest first.
    deadlines: BTreeSet<(u64, Bytes)>,
    /// Keys removed by expiry, lazily or actively.
    pub expired_count: u64,
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
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn expires_len(&self) -> usize {
        self.deadlines.len()
    }

    /// Drops `key` if its deadline has passed. Returns true if it was dropped.
    fn expire_if_due(&mut self, key: &[u8], now: u64) -> bool {
        if self.deadlines.is_empty() {
            return false;
        }
        let due = matches!(self.entries.get(key), Some(e) if e.expire_at != 0 && e.expire_at <= now);
        if due {
            self.remove(key);
            self.expired_count += 1;
        }
        due
    }

    pub fn get(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        self.expire_if_due(key, now);
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.expire_if_due(key, now);
        self.entries.get_mut(key)
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
        match self.entries.get_mut(key) {
            Some(entry) => {
                if entry.expire_at != 0 {
                    let old = entry.expire_at;
                    entry.expire_at = 0;
                    self.deadlines.remove(&(old, Bytes::copy_from_slice(key)));
                }
                entry.value = value;
                if expire_at != 0 {
                    self.set_expire(key, expire_at);
                }
            }
            None => {
                let key = Bytes::copy_from_slice(key);
                if expire_at != 0 {
                    self.deadlines.insert((expire_at, key.clone()));
                }
                self.entries.insert(key, Entry { value, expire_at });
            }
        }
    }

    /// Sets the deadline of an existing key; false if the key is missing.
    pub fn set_expire(&mut self, key: &[u8], at: u64) -> bool {
        let Some((k, entry)) = self.entries.get_key_value(key) else {
            return false;
        };
        let k = k.clone();
        let old = entry.expire_at;
        if old != 0 {
            self.deadlines.remove(&(old, k.clone()));
        }
        self.deadlines.insert((at, k));
        if let Some(entry) = self.entries.get_mut(key) {
            entry.expire_at = at;
        }
        true
    }

    /// Removes the TTL of `key`; true if it had one.
    pub fn persist(&mut self, key: &[u8]) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) if entry.expire_at != 0 => {
                let old = entry.expire_at;
                entry.expire_at = 0;
                self.deadlines.remove(&(old, Bytes::copy_from_slice(key)));
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (k, entry) = self.entries.remove_entry(key)?;
        if entry.expire_at != 0 {
            self.deadlines.remove(&(entry.expire_at, k));
        }
        Some(entry)
    }

    /// Removes `key` unless it has already expired; true if a live key went.
    pub fn remove_live(&mut self, key: &[u8], now: u64) -> bool {
        !self.expire_if_due(key, now) && self.remove(key).is_some()
    }

    pub fn clear(&mut self) {
        self.entries = Map::default();
        self.deadlines = BTreeSet::new();
    }

    /// Removes up to `budget` keys whose deadline has passed.
    /// Returns how many were removed.
    pub fn expire_cycle(&mut self, now: u64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            let Some((at, _)) = self.deadlines.first() else {
                break;
            };
            if *at > now {
                break;
            }
            let (_, key) = self.deadlines.pop_first().expect("checked above");
            self.entries.remove(&key);
            removed += 1;
        }
        self.expired_count += removed as u64;
        removed
    }

    /// Every live key, in no particular order.
    pub fn keys(&self, now: u64) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.entries
            .iter()
            .filter(move |(_, e)| e.expire_at == 0 || e.expire_at > now)
    }

    /// The key at position `index` of the table's iteration order.
    pub fn nth_key(&self, index: usize) -> Option<&Bytes> {
        self.entries.keys().nth(index)
    }

    /// A page of keys for SCAN: up to `count` keys from position `from`.
    /// Returns the keys and the next position (0 when done).
    pub fn scan_page(&self, from: usize, count: usize, now: u64) -> (Vec<(Bytes, ValueKind)>, usize) {
        let mut out = Vec::new();
        let mut pos = from;
        for (key, entry) in self.entries.iter().skip(from).take(count) {
            pos += 1;
            if entry.expire_at == 0 || entry.expire_at > now {
                out.push((key.clone(), entry.value.kind()));
            }
        }
        let next = if pos >= self.entries.len() { 0 } else { pos };
        (out, next)
    }

    /// Approximate heap bytes used by this database's data.
    pub fn memory_estimate(&self) -> usize {
        let per_entry = std::mem::size_of::<(Bytes, Entry)>() + 8;
        self.entries
            .iter()
            .map(|(k, e)| per_entry + k.len() + e.value.heap_size())
            .sum::<usize>()
            + self.deadlines.len() * 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn overwrite_clears_ttl_and_deadline_index() {
        let mut db = Db::default();
        db.set_with_expire(b"k", Value::Str(Bytes::new()), 50);
        db.set(b"k", Value::Str(Bytes::new()));
        assert_eq!(db.expires_len(), 0);
        assert_eq!(db.get(b"k", 1000).unwrap().expire_at, 0);
    }
}
