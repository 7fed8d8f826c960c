//! Hash tables that grow a step at a time, as Redis's dictionaries do.
//!
//! hashbrown grows a full table by rebuilding it at once, rehashing every
//! item; for the keyspace that reads every key's block, hundreds of
//! milliseconds at millions of keys, and for a large set or hash as much
//! per million members. A `Stepped` table that is large and full is set
//! aside instead, for a table twice its size; writes then move a few of
//! its items across (`STEP` each), and lookups look in both tables until
//! the old one is empty. A table that filled up at n items has 2n of room,
//! so the move ends long before new items could fill it again.

use hashbrown::HashTable;

/// Tables with fewer slots than this grow at once: rebuilding them costs
/// less than a millisecond.
const STEP_FROM: usize = 1 << 16;

/// Items each write moves from the old table while a table grows.
pub const STEP: usize = 8;

/// Empty slots one step may pass over, per item it moves.
const EMPTY_PER_ITEM: usize = 10;

#[derive(Clone, Debug)]
pub struct Stepped<T> {
    /// Where new items go.
    table: HashTable<T>,
    /// The table being emptied into `table`, while a growth lasts; boxed,
    /// so that the small sets and hashes that never grow pay one word.
    growth: Option<Box<Growth<T>>>,
}

/// A table set aside when it filled up, and how far its items have moved.
#[derive(Clone, Debug)]
struct Growth<T> {
    from: HashTable<T>,
    /// The first of `from`'s slots not yet emptied.
    next: usize,
}

impl<T> Default for Stepped<T> {
    fn default() -> Self {
        Stepped {
            table: HashTable::new(),
            growth: None,
        }
    }
}

/// Every item of a `Stepped` table: the new table's, then the old one's.
pub type Iter<'a, T> = std::iter::Chain<
    hashbrown::hash_table::Iter<'a, T>,
    std::iter::Flatten<std::option::IntoIter<hashbrown::hash_table::Iter<'a, T>>>,
>;

impl<T> Stepped<T> {
    pub fn with_capacity(capacity: usize) -> Self {
        Stepped {
            table: HashTable::with_capacity(capacity),
            growth: None,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len() + self.growth.as_ref().map_or(0, |g| g.from.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items both tables can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.table.capacity() + self.growth.as_ref().map_or(0, |g| g.from.capacity())
    }

    /// The table new items go to. While a growth lasts, some items are
    /// still in the old one: `settle` an item before looking it up here.
    pub fn table(&self) -> &HashTable<T> {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut HashTable<T> {
        &mut self.table
    }

    /// The table a growth is emptying, if one is.
    pub fn old(&self) -> Option<&HashTable<T>> {
        self.growth.as_ref().map(|g| &g.from)
    }

    pub fn iter(&self) -> Iter<'_, T> {
        self.table
            .iter()
            .chain(self.old().map(HashTable::iter).into_iter().flatten())
    }

    /// Looks in both tables.
    pub fn find(&self, hash: u64, eq: impl Fn(&T) -> bool) -> Option<&T> {
        self.table.find(hash, &eq).or_else(|| self.old()?.find(hash, &eq))
    }

    /// Takes an item out of a growth's old table, if it is there.
    pub fn take_old(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<T> {
        let growth = self.growth.as_mut()?;
        let (item, _) = growth.from.find_entry(hash, eq).ok()?.remove();
        Some(item)
    }

    /// Before a write to an item: moves a step of a growth along, and the
    /// item itself into the new table if it is still in the old one, so
    /// that what follows need only look at `table`.
    pub fn settle(&mut self, hash: u64, eq: impl FnMut(&T) -> bool, hasher: impl Fn(&T) -> u64) {
        if self.growth.is_none() {
            return;
        }
        if let Some(item) = self.take_old(hash, eq) {
            self.table.insert_unique(hash, item, &hasher);
        }
        self.step(STEP, hasher);
    }

    /// The new table's entry for an item, in one probe, when inserting
    /// there cannot start a growth or rebuild it: the table has room and no
    /// growth is under way. `settle` the item first.
    pub fn entry_with_room(
        &mut self,
        hash: u64,
        eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
    ) -> Option<hashbrown::hash_table::Entry<'_, T>> {
        if self.growth.is_some() || self.table.len() >= self.table.capacity() {
            return None;
        }
        Some(self.table.entry(hash, eq, hasher))
    }

    /// Inserts an item known to be in neither table.
    pub fn insert_new(&mut self, hash: u64, item: T, hasher: impl Fn(&T) -> u64) {
        if self.growth.is_none() && self.table.len() == self.table.capacity() && self.table.num_buckets() >= STEP_FROM {
            let bigger = HashTable::with_capacity(self.table.capacity() * 2);
            let from = std::mem::replace(&mut self.table, bigger);
            self.growth = Some(Box::new(Growth { from, next: 0 }));
        }
        self.table.insert_unique(hash, item, hasher);
    }

    /// Moves up to `items` items of a growth's old table into the new one;
    /// ends the growth once the old table is empty.
    pub fn step(&mut self, items: usize, hasher: impl Fn(&T) -> u64) {
        let Some(growth) = self.growth.as_mut() else { return };
        let slots = growth.from.num_buckets();
        let mut moved = 0;
        let mut passed = 0;
        while growth.next < slots && moved < items && passed < items.saturating_mul(EMPTY_PER_ITEM) {
            match growth.from.get_bucket_entry(growth.next) {
                Ok(entry) => {
                    let (item, _) = entry.remove();
                    self.table.insert_unique(hasher(&item), item, &hasher);
                    moved += 1;
                }
                Err(_) => passed += 1,
            }
            growth.next += 1;
        }
        if growth.next >= slots || growth.from.is_empty() {
            self.growth = None;
        }
    }

    /// Moves every item a growth has left (a SCAN pages over the slots of
    /// one table, which must hold every item).
    pub fn finish(&mut self, hasher: impl Fn(&T) -> u64) {
        while self.growth.is_some() {
            self.step(usize::MAX, &hasher);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: &u64) -> u64 {
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn a_large_table_grows_in_steps_and_keeps_every_item() {
        let mut t: Stepped<u64> = Stepped::default();
        let mut n = 0u64;
        while t.old().is_none() {
            t.insert_new(h(&n), n, h);
            n += 1;
            assert!(n < 1 << 20, "no growth started");
        }
        assert!(n as usize > STEP_FROM / 2, "small tables grow at once");
        assert_eq!(t.len(), n as usize);
        assert!(t.old().expect("growing").len() >= n as usize - 1);
        for i in 0..n {
            assert_eq!(t.find(h(&i), |x| *x == i), Some(&i), "item {i}");
        }
        // A settled item is in the new table; the growth moved a step.
        let left = t.old().expect("growing").len();
        t.settle(h(&5), |x| *x == 5, h);
        assert!(t.table().find(h(&5), |x| *x == 5).is_some());
        assert!(t.old().expect("growing").len() <= left - STEP);
        assert_eq!(t.iter().count(), n as usize);
        t.finish(h);
        assert!(t.old().is_none());
        assert_eq!(t.table().len(), n as usize);
        assert!(t.table().len() <= t.table().capacity());
    }
}
