//! The index of keys with a TTL, ordered by deadline, for active expiry.
//!
//! Lookups take the key as a borrowed slice (through `dyn Due`), so
//! removing or moving a deadline allocates nothing; a moved deadline keeps
//! its key's allocation.
//!
//! Many keys share a deadline to the millisecond (a burst of SETEX with one
//! TTL), so deadlines order by time, then by the key's hash, and compare
//! key bytes only when both tie.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;

#[derive(Default)]
pub struct Deadlines {
    set: BTreeSet<Deadline>,
}

/// One key's deadline, ordered by time, then the key's hash, then key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: u64,
    hash: u64,
    key: Box<[u8]>,
}

/// A deadline as a lookup sees it, owned or borrowed.
trait Due {
    fn parts(&self) -> (u64, u64, &[u8]);
}

impl Due for Deadline {
    fn parts(&self) -> (u64, u64, &[u8]) {
        (self.at, self.hash, &self.key)
    }
}

impl Due for (u64, u64, &[u8]) {
    fn parts(&self) -> (u64, u64, &[u8]) {
        *self
    }
}

impl<'a> Borrow<dyn Due + 'a> for Deadline {
    fn borrow(&self) -> &(dyn Due + 'a) {
        self
    }
}

impl PartialEq for dyn Due + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Due + '_ {}

impl PartialOrd for dyn Due + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn Due + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl Deadlines {
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn clear(&mut self) {
        self.set = BTreeSet::new();
    }

    /// Moves `key`'s deadline from `old` to `new` (0: none on either side);
    /// `hash` is the key's `key_hash`.
    pub fn change(&mut self, key: &[u8], hash: u64, old: u64, new: u64) {
        if old == new {
            return;
        }
        let taken = if old != 0 {
            self.set.take(&(old, hash, key) as &dyn Due)
        } else {
            None
        };
        if new == 0 {
            return;
        }
        let key = match taken {
            Some(d) => d.key,
            None => key.into(),
        };
        self.set.insert(Deadline { at: new, hash, key });
    }

    /// Takes the key with the earliest deadline if that deadline is at or
    /// before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Box<[u8]>> {
        if self.set.first()?.at > now {
            return None;
        }
        self.set.pop_first().map(|d| d.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_move_and_fall_due_in_order() {
        let mut d = Deadlines::default();
        let mut change = |key: &[u8], old, new| d.change(key, crate::db::key_hash(key), old, new);
        change(b"b", 0, 20);
        change(b"a", 0, 20);
        change(b"c", 0, 10);
        change(b"c", 10, 30);
        change(b"b", 20, 0);
        change(b"zz", 5, 0);
        assert_eq!(d.len(), 2);
        assert_eq!(d.pop_due(19), None);
        assert_eq!(d.pop_due(25).as_deref(), Some(&b"a"[..]));
        assert_eq!(d.pop_due(25), None);
        assert_eq!(d.pop_due(30).as_deref(), Some(&b"c"[..]));
        assert_eq!(d.len(), 0);
    }
}
