//! Sets and hashes: small ones packed in one buffer, as Redis's listpack
//! and intset encodings are; large ones in a hash table.
//!
//! A packed collection is a run of `len: varint, bytes` items (a hash's
//! items alternate field, value), searched linearly. It becomes a table,
//! for good, once it outgrows Redis's default limits (server.h): a hash of
//! more than 512 fields, a set of more than 128 members (512 if all are
//! integers), or an item longer than 64 bytes.

use std::hash::BuildHasher;

use bytes::Bytes;

use hashbrown::hash_table::Entry;

use super::growth::{self, Stepped};
use super::{parse_i64, scan_slots};

/// Members a packed set may hold (`set-max-listpack-entries`).
const MAX_ENTRIES: usize = 128;
/// Fields a packed hash may hold (`hash-max-listpack-entries`).
const MAX_FIELDS: usize = 512;
/// Entries a packed set of integers may hold (`set-max-intset-entries`).
const MAX_INT_ENTRIES: usize = 512;
/// Longest item a packed collection may hold (`*-max-listpack-value`).
const MAX_ITEM: usize = 64;

/// The tables' hasher: ahash with this process's random keys, and no
/// per-table state (a `RandomState` in every table cost 32 bytes each).
#[derive(Clone, Copy, Default, Debug)]
pub struct Seeded;

impl BuildHasher for Seeded {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
        STATE.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// A member, field or value of a large collection: a boxed slice, half
/// the table slot of a `Bytes`.
pub type Item = Box<[u8]>;

fn item_hash(item: &[u8]) -> u64 {
    Seeded.hash_one(item)
}

/// Items every access to a large set or hash moves while its table grows
/// (see `growth::Stepped`), on top of what each write moves. A set or hash
/// has no idle step, as the keyspace has, so its growth ends only through
/// accesses: at 40 items a write, a table that filled at n items is done
/// by 1.03n, and a load that stops just past a growth's start does not
/// keep both tables for long.
const ACCESS_STEP: usize = 32;

fn member_hash(m: &Item) -> u64 {
    item_hash(m)
}

fn field_hash((f, _): &(Item, Item)) -> u64 {
    item_hash(f)
}

/// The members of a large set, in a table that grows a step at a time.
#[derive(Clone, Debug, Default)]
pub struct Members(Stepped<Item>);

impl Members {
    fn contains(&self, member: &[u8]) -> bool {
        self.0.find(item_hash(member), |m| &m[..] == member).is_some()
    }

    fn insert(&mut self, member: &[u8]) -> bool {
        let hash = item_hash(member);
        self.0.settle(hash, |m| &m[..] == member, member_hash);
        if let Some(entry) = self.0.entry_with_room(hash, |m| &m[..] == member, member_hash) {
            return match entry {
                Entry::Occupied(_) => false,
                Entry::Vacant(slot) => {
                    slot.insert(member.into());
                    true
                }
            };
        }
        if self.0.table().find(hash, |m| &m[..] == member).is_some() {
            return false;
        }
        self.0.insert_new(hash, member.into(), member_hash);
        true
    }

    fn remove(&mut self, member: &[u8]) -> bool {
        let hash = item_hash(member);
        self.0.settle(hash, |m| &m[..] == member, member_hash);
        match self.0.table_mut().find_entry(hash, |m| &m[..] == member) {
            Ok(found) => {
                found.remove();
                true
            }
            Err(_) => false,
        }
    }
}

/// The fields and values of a large hash, in a table that grows a step at
/// a time.
#[derive(Clone, Debug, Default)]
pub struct Fields(Stepped<(Item, Item)>);

impl Fields {
    fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.0
            .find(item_hash(field), |(f, _)| &f[..] == field)
            .map(|(_, v)| &v[..])
    }

    /// Sets `field`; true if it is new.
    fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        let hash = item_hash(field);
        self.0.settle(hash, |(f, _)| &f[..] == field, field_hash);
        if let Some(entry) = self.0.entry_with_room(hash, |(f, _)| &f[..] == field, field_hash) {
            return match entry {
                Entry::Occupied(mut found) => {
                    found.get_mut().1 = value.into();
                    false
                }
                Entry::Vacant(slot) => {
                    slot.insert((field.into(), value.into()));
                    true
                }
            };
        }
        if let Some((_, v)) = self.0.table_mut().find_mut(hash, |(f, _)| &f[..] == field) {
            *v = value.into();
            return false;
        }
        self.0.insert_new(hash, (field.into(), value.into()), field_hash);
        true
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        let hash = item_hash(field);
        self.0.settle(hash, |(f, _)| &f[..] == field, field_hash);
        match self.0.table_mut().find_entry(hash, |(f, _)| &f[..] == field) {
            Ok(found) => {
                found.remove();
                true
            }
            Err(_) => false,
        }
    }
}

/// Items packed as `len: varint, bytes`.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct Packed {
    buf: Vec<u8>,
    items: u32,
}

fn read_varint(buf: &[u8], at: usize) -> (usize, usize) {
    let mut n = 0usize;
    let mut shift = 0;
    let mut i = at;
    loop {
        let b = buf[i];
        n |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b < 0x80 {
            return (n, i);
        }
        shift += 7;
    }
}

fn push_varint(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// The items of a packed buffer, in order.
pub struct Items<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.at >= self.buf.len() {
            return None;
        }
        let (len, start) = read_varint(self.buf, self.at);
        self.at = start + len;
        Some(&self.buf[start..start + len])
    }
}

impl Packed {
    fn items(&self) -> Items<'_> {
        Items { buf: &self.buf, at: 0 }
    }

    fn push(&mut self, item: &[u8]) {
        let end = self.buf.len();
        self.splice(end..end, &[item], 1);
    }

    /// Replaces the bytes in `range` with `items`, encoded; `added` is how
    /// many items that adds. Growth is exact, as a listpack's: doubling
    /// would leave half of a small collection's buffer empty.
    fn splice(&mut self, range: std::ops::Range<usize>, items: &[&[u8]], added: u32) {
        let mut encoded = Vec::with_capacity(items.iter().map(|i| i.len() + 10).sum());
        for item in items {
            push_varint(&mut encoded, item.len());
            encoded.extend_from_slice(item);
        }
        self.buf.reserve_exact(encoded.len().saturating_sub(range.len()));
        self.buf.splice(range, encoded);
        self.items += added;
    }

    /// The byte range of the `step`-aligned group whose first item is
    /// `first`, if any (a hash's groups are field/value pairs).
    fn find(&self, first: &[u8], step: usize) -> Option<(usize, usize)> {
        let mut at = 0;
        while at < self.buf.len() {
            let start = at;
            let (len, data) = read_varint(&self.buf, at);
            let found = &self.buf[data..data + len] == first;
            at = data + len;
            for _ in 1..step {
                let (len, data) = read_varint(&self.buf, at);
                at = data + len;
            }
            if found {
                return Some((start, at));
            }
        }
        None
    }

    fn remove_range(&mut self, (start, end): (usize, usize), items: u32) {
        self.buf.drain(start..end);
        self.items -= items;
    }
}

/// A set of byte strings.
#[derive(Clone, Debug)]
pub enum Set {
    Packed { items: Packed, all_ints: bool },
    Table(Members),
}

impl PartialEq for Set {
    fn eq(&self, other: &Set) -> bool {
        self.len() == other.len() && self.iter().all(|m| other.contains(m))
    }
}

impl Default for Set {
    fn default() -> Set {
        Set::Packed {
            items: Packed::default(),
            all_ints: true,
        }
    }
}

/// The members of a set, in order.
pub enum MemberIter<'a> {
    Packed(Items<'a>),
    Table(growth::Iter<'a, Item>),
}

impl<'a> Iterator for MemberIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            MemberIter::Packed(items) => items.next(),
            MemberIter::Table(iter) => iter.next().map(|b| &b[..]),
        }
    }
}

impl Set {
    /// Moves a step of a growing table along (every command on the set
    /// calls this through `OpCtx`).
    pub fn tick(&mut self) {
        if let Set::Table(t) = self {
            t.0.step(ACCESS_STEP, member_hash);
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Set::Packed { items, .. } => items.items as usize,
            Set::Table(t) => t.0.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        match self {
            Set::Packed { items, .. } => items.find(member, 1).is_some(),
            Set::Table(t) => t.contains(member),
        }
    }

    /// Adds `member`; true if it was not there.
    pub fn insert(&mut self, member: &[u8]) -> bool {
        if let Set::Packed { items, all_ints } = self {
            if items.find(member, 1).is_some() {
                return false;
            }
            let ints = *all_ints && parse_i64(member).is_some();
            let n = items.items as usize + 1;
            let fits = if ints {
                n <= MAX_INT_ENTRIES
            } else {
                n <= MAX_ENTRIES && member.len() <= MAX_ITEM
            };
            if fits && ints {
                // An intset keeps its members in numeric order.
                let value = parse_i64(member);
                let mut at = 0;
                while at < items.buf.len() {
                    let (len, data) = read_varint(&items.buf, at);
                    if parse_i64(&items.buf[data..data + len]) > value {
                        break;
                    }
                    at = data + len;
                }
                items.splice(at..at, &[member], 1);
                return true;
            }
            if fits {
                items.push(member);
                *all_ints = false;
                return true;
            }
            let mut table = Members::default();
            items.items().for_each(|m| {
                table.insert(m);
            });
            *self = Set::Table(table);
        }
        match self {
            Set::Table(t) => t.insert(member),
            Set::Packed { .. } => unreachable!("converted above"),
        }
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self {
            Set::Packed { items, .. } => match items.find(member, 1) {
                Some(range) => {
                    items.remove_range(range, 1);
                    true
                }
                None => false,
            },
            Set::Table(t) => t.remove(member),
        }
    }

    pub fn iter(&self) -> MemberIter<'_> {
        match self {
            Set::Packed { items, .. } => MemberIter::Packed(items.items()),
            Set::Table(t) => MemberIter::Table(t.0.iter()),
        }
    }

    /// One SSCAN page from `cursor`: a packed set whole, as Redis does;
    /// a table from that slot on. Returns the members and the next cursor.
    /// A growing table finishes its growth first (see `growth::Stepped`).
    pub fn scan(&mut self, cursor: usize, count: usize) -> (Vec<&[u8]>, usize) {
        match self {
            Set::Packed { .. } => (self.iter().collect(), 0),
            Set::Table(t) => {
                t.0.finish(member_hash);
                let (members, next) = scan_slots(t.0.table(), cursor, count);
                (members.into_iter().map(|m| &m[..]).collect(), next)
            }
        }
    }

    /// What OBJECT ENCODING reports, as Redis 7 would.
    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Packed { all_ints: true, .. } => "intset",
            Set::Packed { .. } => "listpack",
            Set::Table(_) => "hashtable",
        }
    }

    /// Approximate heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            Set::Packed { items, .. } => items.buf.capacity(),
            Set::Table(t) => t.0.capacity() * 17 + t.0.iter().map(|m| m.len() + 16).sum::<usize>(),
        }
    }
}

impl FromIterator<Bytes> for Set {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Set {
        let mut set = Set::default();
        for m in iter {
            set.insert(&m);
        }
        set
    }
}

/// A hash: fields and their values.
#[derive(Clone, Debug)]
pub enum Hash {
    Packed(Packed),
    Table(Fields),
}

impl PartialEq for Hash {
    fn eq(&self, other: &Hash) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(f) == Some(v))
    }
}

impl Default for Hash {
    fn default() -> Hash {
        Hash::Packed(Packed::default())
    }
}

/// A field and its value.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// The field/value pairs of a hash.
pub enum Pairs<'a> {
    Packed(Items<'a>),
    Table(growth::Iter<'a, (Item, Item)>),
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        match self {
            Pairs::Packed(items) => Some((items.next()?, items.next()?)),
            Pairs::Table(iter) => iter.next().map(|(k, v)| (&k[..], &v[..])),
        }
    }
}

impl Hash {
    /// Moves a step of a growing table along (see `Set::tick`).
    pub fn tick(&mut self) {
        if let Hash::Table(t) = self {
            t.0.step(ACCESS_STEP, field_hash);
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Hash::Packed(p) => p.items as usize / 2,
            Hash::Table(t) => t.0.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Packed(p) => {
                let (start, _) = p.find(field, 2)?;
                let mut items = Items { buf: &p.buf, at: start };
                items.next();
                items.next()
            }
            Hash::Table(t) => t.get(field),
        }
    }

    pub fn contains_key(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Sets `field` to `value`; true if the field is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let Hash::Packed(p) = self {
            let old = p.find(field, 2);
            let n = p.items as usize / 2 + usize::from(old.is_none());
            if n <= MAX_FIELDS && field.len() <= MAX_ITEM && value.len() <= MAX_ITEM {
                match old {
                    // In place, as a listpack keeps a field's position.
                    Some((start, end)) => p.splice(start..end, &[field, value], 0),
                    None => {
                        p.push(field);
                        p.push(value);
                    }
                }
                return old.is_none();
            }
            let mut table = Fields(Stepped::with_capacity(n));
            let mut items = p.items();
            while let (Some(f), Some(v)) = (items.next(), items.next()) {
                table.insert(f, v);
            }
            *self = Hash::Table(table);
        }
        match self {
            Hash::Table(t) => t.insert(field, value),
            Hash::Packed(_) => unreachable!("converted above"),
        }
    }

    /// Removes `field`; true if it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Packed(p) => match p.find(field, 2) {
                Some(range) => {
                    p.remove_range(range, 2);
                    true
                }
                None => false,
            },
            Hash::Table(t) => t.remove(field),
        }
    }

    pub fn iter(&self) -> Pairs<'_> {
        match self {
            Hash::Packed(p) => Pairs::Packed(p.items()),
            Hash::Table(t) => Pairs::Table(t.0.iter()),
        }
    }

    /// One HSCAN page from `cursor`: a packed hash whole, as Redis does;
    /// a table from that slot on. Returns the pairs and the next cursor.
    /// A growing table finishes its growth first (see `growth::Stepped`).
    pub fn scan(&mut self, cursor: usize, count: usize) -> (Vec<Pair<'_>>, usize) {
        match self {
            Hash::Packed(_) => (self.iter().collect(), 0),
            Hash::Table(t) => {
                t.0.finish(field_hash);
                let (pairs, next) = scan_slots(t.0.table(), cursor, count);
                (pairs.into_iter().map(|(f, v)| (&f[..], &v[..])).collect(), next)
            }
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().map(|(_, v)| v)
    }

    /// What OBJECT ENCODING reports, as Redis 7 would.
    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Packed(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }

    /// Approximate heap bytes held.
    pub fn heap_size(&self) -> usize {
        match self {
            Hash::Packed(p) => p.buf.capacity(),
            Hash::Table(t) => t.0.capacity() * 33 + t.0.iter().map(|(k, v)| k.len() + v.len() + 32).sum::<usize>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_stay_packed_within_redis_limits_then_convert() {
        let mut s = Set::default();
        for i in 0..MAX_INT_ENTRIES {
            assert!(s.insert(i.to_string().as_bytes()));
        }
        assert!(!s.insert(b"7"));
        assert_eq!(s.iter().take(3).collect::<Vec<_>>(), vec![&b"0"[..], b"1", b"2"]);
        assert_eq!((s.len(), s.encoding()), (MAX_INT_ENTRIES, "intset"));
        assert!(s.insert(b"513"));
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), MAX_INT_ENTRIES + 1);
        assert!(s.contains(b"0") && s.contains(b"513") && !s.contains(b"x"));

        let mut s = Set::default();
        s.insert(b"1");
        s.insert(b"a");
        assert_eq!(s.encoding(), "listpack");
        assert!(s.remove(b"1") && !s.remove(b"1"));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![&b"a"[..]]);
        s.insert(&[b'x'; MAX_ITEM + 1]);
        assert_eq!((s.encoding(), s.len()), ("hashtable", 2));
        let mut s = Set::default();
        for i in 0..=MAX_ENTRIES {
            s.insert(format!("m{i}").as_bytes());
        }
        assert_eq!((s.encoding(), s.len()), ("hashtable", MAX_ENTRIES + 1));
    }

    #[test]
    fn integer_sets_stay_sorted_until_a_string_joins() {
        let mut s = Set::default();
        for m in ["5", "-3", "10", "0", "7"] {
            s.insert(m.as_bytes());
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![&b"-3"[..], b"0", b"5", b"7", b"10"]);
        s.insert(b"x");
        s.insert(b"1");
        assert_eq!(s.encoding(), "listpack");
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![&b"-3"[..], b"0", b"5", b"7", b"10", b"x", b"1"]
        );
    }

    #[test]
    fn hashes_replace_remove_and_convert() {
        let mut h = Hash::default();
        assert!(h.insert(b"f", b"1"));
        assert!(h.insert(b"g", b"2"));
        assert!(!h.insert(b"f", b"3"));
        assert_eq!(h.get(b"f"), Some(&b"3"[..]));
        assert_eq!(h.get(b"g"), Some(&b"2"[..]));
        assert_eq!(h.get(b"2"), None, "values are not fields");
        assert_eq!(h.len(), 2);
        assert_eq!(h.keys().collect::<Vec<_>>(), vec![&b"f"[..], &b"g"[..]], "order kept");
        assert!(h.remove(b"g") && !h.remove(b"g"));
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![(&b"f"[..], &b"3"[..])]);
        let long = vec![b'v'; 200];
        assert!(h.insert(b"long", &long));
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.get(b"long"), Some(&long[..]));
        assert_eq!(h.get(b"f"), Some(&b"3"[..]));
        let mut h = Hash::default();
        for i in 0..MAX_FIELDS {
            h.insert(format!("f{i}").as_bytes(), b"v");
        }
        assert_eq!(h.encoding(), "listpack");
        h.insert(b"one more", b"v");
        assert_eq!((h.encoding(), h.len()), ("hashtable", MAX_FIELDS + 1));
    }

    #[test]
    fn varints_round_trip_long_items() {
        let mut s = Set::default();
        let big = vec![b'z'; 300];
        s.insert(b"a");
        if let Set::Packed { items, .. } = &mut s {
            items.push(&big);
        }
        assert_eq!(s.iter().map(<[u8]>::len).collect::<Vec<_>>(), vec![1, 300]);
    }
}
