//! One key, its deadline and its value in a single heap block.
//!
//! The keyspace table holds one pointer per key (8 bytes), and the block
//! it points to holds everything else, so a small string key costs one
//! allocation sized to its bytes, as Redis's embstr does, instead of a
//! wide table slot plus separate key and value buffers.
//!
//! ```text
//! tag: u8 | key_len: varint | [value_len: varint] | [deadline: u64 LE] | key | value
//! ```
//!
//! - `tag` bit 0: the value is boxed (a collection, or a string longer
//!   than `INLINE_MAX`); the value part is then a `*mut Value` from
//!   `Box::into_raw`, stored unaligned. Otherwise the value part is the
//!   string's bytes and `value_len` gives their length.
//! - `tag` bit 1: a deadline is present.
//!
//! A block's size follows from its header alone, so it is freed without
//! storing its size. Changing a deadline's presence or a string value
//! builds a new block; the caller's table slot is updated in place.

use std::alloc::{self, Layout};
use std::ptr::{self, NonNull};

use bytes::Bytes;

use super::value::{Value, ValueMut, ValueRef};

/// Strings up to this length live inside the block; longer ones are boxed
/// as `Bytes`, so reading them shares the buffer instead of copying it.
const INLINE_MAX: usize = 512;

const BOXED: u8 = 1;
const HAS_DEADLINE: u8 = 2;

pub struct Node(NonNull<u8>);

// A Node owns its block and the boxed value in it, exactly as a Box would.
unsafe impl Send for Node {}

/// Where the parts of a block are.
struct Parts {
    tag: u8,
    key_at: usize,
    key_len: usize,
    deadline_at: usize,
    value_at: usize,
    value_len: usize,
}

impl Parts {
    fn size(&self) -> usize {
        self.value_at + self.value_len
    }
}

/// The value part a new block gets.
enum Payload<'a> {
    Inline(&'a [u8]),
    Boxed(*mut Value),
}

fn write_varint(buf: &mut [u8], mut n: usize) -> usize {
    let mut i = 0;
    while n >= 0x80 {
        buf[i] = (n as u8) | 0x80;
        n >>= 7;
        i += 1;
    }
    buf[i] = n as u8;
    i + 1
}

/// Reads a varint at `p`; returns it and its length.
///
/// # Safety
/// `p` must point at a varint written by `write_varint`.
unsafe fn read_varint(p: *const u8) -> (usize, usize) {
    let mut n = 0usize;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let b = unsafe { *p.add(i) };
        n |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b < 0x80 {
            return (n, i);
        }
        shift += 7;
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 1).expect("block size fits a layout")
}

impl Node {
    pub fn new(key: &[u8], value: Value, deadline: u64) -> Node {
        match value {
            Value::Str(s) if s.len() <= INLINE_MAX => Node::build(key, Payload::Inline(&s), deadline),
            value => Node::build(key, Payload::Boxed(Box::into_raw(Box::new(value))), deadline),
        }
    }

    fn build(key: &[u8], payload: Payload<'_>, deadline: u64) -> Node {
        let mut head = [0u8; 1 + 10 + 10 + 8];
        let mut tag = 0;
        let mut n = 1 + write_varint(&mut head[1..], key.len());
        let value_len = match payload {
            Payload::Inline(bytes) => {
                n += write_varint(&mut head[n..], bytes.len());
                bytes.len()
            }
            Payload::Boxed(_) => {
                tag |= BOXED;
                size_of::<*mut Value>()
            }
        };
        if deadline != 0 {
            tag |= HAS_DEADLINE;
            head[n..n + 8].copy_from_slice(&deadline.to_le_bytes());
            n += 8;
        }
        head[0] = tag;
        let size = n + key.len() + value_len;
        // SAFETY: size > 0 (the tag byte); every byte is written below
        // before the block is read.
        unsafe {
            let p = alloc::alloc(layout(size));
            let Some(block) = NonNull::new(p) else {
                alloc::handle_alloc_error(layout(size));
            };
            ptr::copy_nonoverlapping(head.as_ptr(), p, n);
            ptr::copy_nonoverlapping(key.as_ptr(), p.add(n), key.len());
            let at = p.add(n + key.len());
            match payload {
                Payload::Inline(bytes) => ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len()),
                Payload::Boxed(value) => ptr::write_unaligned(at as *mut *mut Value, value),
            }
            Node(block)
        }
    }

    fn parts(&self) -> Parts {
        let p = self.0.as_ptr();
        // SAFETY: the header was written by `build`.
        unsafe {
            let tag = *p;
            let (key_len, a) = read_varint(p.add(1));
            let mut at = 1 + a;
            let value_len = if tag & BOXED != 0 {
                size_of::<*mut Value>()
            } else {
                let (len, b) = read_varint(p.add(at));
                at += b;
                len
            };
            let deadline_at = at;
            if tag & HAS_DEADLINE != 0 {
                at += 8;
            }
            Parts {
                tag,
                key_at: at,
                key_len,
                deadline_at,
                value_at: at + key_len,
                value_len,
            }
        }
    }

    fn boxed(&self, parts: &Parts) -> Option<*mut Value> {
        (parts.tag & BOXED != 0)
            // SAFETY: a boxed block stores the pointer at value_at.
            .then(|| unsafe { ptr::read_unaligned(self.0.as_ptr().add(parts.value_at) as *const *mut Value) })
    }

    /// A hint to load the block into the cache; no effect on meaning.
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetching never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(self.0.as_ptr() as *const i8)
        };
    }

    pub fn key(&self) -> &[u8] {
        let parts = self.parts();
        // SAFETY: the key bytes lie inside the block.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(parts.key_at), parts.key_len) }
    }

    /// The deadline in unix milliseconds, 0 for none.
    pub fn expire_at(&self) -> u64 {
        let parts = self.parts();
        if parts.tag & HAS_DEADLINE == 0 {
            return 0;
        }
        let mut b = [0u8; 8];
        // SAFETY: a block with a deadline holds 8 bytes at deadline_at.
        unsafe { ptr::copy_nonoverlapping(self.0.as_ptr().add(parts.deadline_at), b.as_mut_ptr(), 8) };
        u64::from_le_bytes(b)
    }

    pub fn value(&self) -> ValueRef<'_> {
        let parts = self.parts();
        match self.boxed(&parts) {
            // SAFETY: the box is owned by this block and lives as long.
            Some(v) => ValueRef::of(unsafe { &*v }),
            None => ValueRef::Str(self.inline(&parts)),
        }
    }

    /// The bytes of an inline string.
    fn inline(&self, parts: &Parts) -> &[u8] {
        // SAFETY: an inline string's bytes lie inside the block.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(parts.value_at), parts.value_len) }
    }

    pub fn value_mut(&mut self) -> ValueMut<'_> {
        let parts = self.parts();
        match self.boxed(&parts) {
            // SAFETY: as in `value`; `&mut self` makes the borrow unique.
            Some(v) => ValueMut::of(unsafe { &mut *v }),
            None => ValueMut::Str(self.inline(&parts)),
        }
    }

    /// The string value as `Bytes`: shared when boxed, copied when inline.
    pub fn string(&self) -> Option<Bytes> {
        let parts = self.parts();
        match self.boxed(&parts) {
            // SAFETY: as in `value`.
            Some(v) => match unsafe { &*v } {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            },
            None => Some(Bytes::copy_from_slice(self.inline(&parts))),
        }
    }

    /// Takes the string value out for editing, leaving an empty string
    /// (shared buffers move out without a copy); None if not a string.
    pub fn take_string(&mut self) -> Option<Bytes> {
        let parts = self.parts();
        match self.boxed(&parts) {
            // SAFETY: as in `value_mut`.
            Some(v) => match unsafe { &mut *v } {
                Value::Str(s) => Some(std::mem::take(s)),
                _ => None,
            },
            None => self.string(),
        }
    }

    /// An owned copy of the value.
    pub fn to_value(&self) -> Value {
        self.value().to_owned()
    }

    /// Replaces the value, keeping the key and the deadline.
    pub fn set_value(&mut self, value: Value) {
        let parts = self.parts();
        if let Some(v) = self.boxed(&parts)
            && !matches!(value, Value::Str(ref s) if s.len() <= INLINE_MAX)
        {
            // SAFETY: the box is ours; replace its contents in place.
            unsafe { *v = value };
            return;
        }
        let fresh = Node::new(self.key(), value, self.expire_at());
        *self = fresh;
    }

    /// Sets the deadline (0: none): in place when the block has one
    /// already and keeps it, else by rebuilding the block, moving the value.
    pub(super) fn set_expire_at(&mut self, deadline: u64) {
        let parts = self.parts();
        if parts.tag & HAS_DEADLINE != 0 && deadline != 0 {
            let b = deadline.to_le_bytes();
            // SAFETY: a block with a deadline holds 8 bytes at deadline_at.
            unsafe { ptr::copy_nonoverlapping(b.as_ptr(), self.0.as_ptr().add(parts.deadline_at), 8) };
            return;
        }
        let fresh = match self.boxed(&parts) {
            Some(v) => Node::build(self.key(), Payload::Boxed(v), deadline),
            None => Node::build(self.key(), Payload::Inline(self.inline(&parts)), deadline),
        };
        let old = std::mem::replace(self, fresh);
        old.free_block();
    }

    /// Takes the value out, freeing the block.
    pub fn into_value(self) -> Value {
        let parts = self.parts();
        let value = match self.boxed(&parts) {
            // SAFETY: the box came from Box::into_raw, and the block is
            // freed below without dropping it again.
            Some(v) => *unsafe { Box::from_raw(v) },
            None => self.to_value(),
        };
        self.free_block();
        value
    }

    /// Frees the block without dropping a boxed value it points to.
    fn free_block(self) {
        let size = self.parts().size();
        // SAFETY: allocated in `build` with this layout.
        unsafe { alloc::dealloc(self.0.as_ptr(), layout(size)) };
        std::mem::forget(self);
    }

    /// Heap bytes the block itself takes (without a boxed value).
    pub fn block_size(&self) -> usize {
        self.parts().size()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let parts = self.parts();
        if let Some(v) = self.boxed(&parts) {
            // SAFETY: the box came from Box::into_raw and is dropped once.
            drop(unsafe { Box::from_raw(v) });
        }
        // SAFETY: allocated in `build` with this layout.
        unsafe { alloc::dealloc(self.0.as_ptr(), layout(parts.size())) };
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("key", &Bytes::copy_from_slice(self.key()))
            .field("expire_at", &self.expire_at())
            .field("value", &self.value().kind())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &[u8]) -> Value {
        Value::Str(Bytes::copy_from_slice(text))
    }

    #[test]
    fn parts_round_trip_for_every_shape() {
        let long_key = vec![b'k'; 300];
        let long_value = vec![b'v'; INLINE_MAX + 1];
        for key in [&b""[..], b"key:1", &long_key] {
            for deadline in [0, 1, u64::MAX] {
                for value in [&b""[..], b"value", &long_value[..INLINE_MAX], &long_value] {
                    let node = Node::new(key, s(value), deadline);
                    assert_eq!(node.key(), key);
                    assert_eq!(node.expire_at(), deadline);
                    assert_eq!(node.value(), ValueRef::Str(value));
                    assert_eq!(node.string().as_deref(), Some(value));
                }
            }
        }
    }

    #[test]
    fn deadlines_and_values_change_in_place() {
        let mut node = Node::new(b"k", Value::new_set(), 0);
        if let ValueMut::Set(set) = node.value_mut() {
            set.insert(b"m");
        }
        node.set_expire_at(42);
        assert_eq!(node.expire_at(), 42);
        node.set_expire_at(43);
        assert_eq!(node.expire_at(), 43);
        assert_eq!(node.key(), b"k");
        assert!(matches!(node.value(), ValueRef::Set(set) if set.len() == 1));
        node.set_value(s(b"now a string"));
        assert_eq!(node.expire_at(), 43);
        assert_eq!(node.value(), ValueRef::Str(b"now a string"));
        node.set_expire_at(0);
        assert_eq!(node.expire_at(), 0);
        assert_eq!(node.string().as_deref(), Some(&b"now a string"[..]));
        let big = vec![7u8; 4000];
        node.set_value(s(&big));
        assert_eq!(node.value(), ValueRef::Str(&big));
        match node.into_value() {
            Value::Str(b) => assert_eq!(&b[..], &big[..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strings_move_out_for_editing() {
        let big = vec![1u8; INLINE_MAX * 2];
        let mut node = Node::new(b"k", s(&big), 9);
        let taken = node.take_string().unwrap();
        assert_eq!(&taken[..], &big[..]);
        assert_eq!(node.value(), ValueRef::Str(b""));
        node.set_value(Value::Str(taken));
        let mut small = Node::new(b"k", s(b"abc"), 0);
        assert_eq!(small.take_string().as_deref(), Some(&b"abc"[..]));
        assert!(matches!(small.into_value(), Value::Str(b) if &b[..] == b"abc"));
        let mut set = Node::new(b"k", Value::new_set(), 0);
        assert_eq!(set.take_string(), None);
        assert_eq!(set.string(), None);
        assert!(matches!(node.into_value(), Value::Str(b) if b.len() == INLINE_MAX * 2));
    }

    #[test]
    fn a_small_string_key_is_one_small_block() {
        let node = Node::new(b"key:000000123456", s(&[b'x'; 32]), 0);
        assert_eq!(node.block_size(), 1 + 1 + 1 + 16 + 32);
    }
}
