//! The value types a key can hold.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Clone)]
pub enum Value {
    Str(Bytes),
    List(List),
    Set(Set),
    Hash(Hash),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Str,
    List,
    Set,
    Hash,
}

impl ValueKind {
    /// The name TYPE replies with.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Str => "string",
            ValueKind::List => "list",
            ValueKind::Set => "set",
            ValueKind::Hash => "hash",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<ValueKind> {
        match name.to_ascii_lowercase().as_slice() {
            b"string" => Some(ValueKind::Str),
            b"list" => Some(ValueKind::List),
            b"set" => Some(ValueKind::Set),
            b"hash" => Some(ValueKind::Hash),
            _ => None,
        }
    }
}

pub type List = VecDeque<Bytes>;
pub use super::packed::{Hash, Set};

/// A stored value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Str(&'a [u8]),
    List(&'a List),
    Set(&'a Set),
    Hash(&'a Hash),
}

/// A stored value, borrowed for change. Strings are replaced whole
/// (`Node::set_value`), collections change in place.
#[derive(Debug)]
pub enum ValueMut<'a> {
    Str(&'a [u8]),
    List(&'a mut List),
    Set(&'a mut Set),
    Hash(&'a mut Hash),
}

impl Value {
    pub fn kind(&self) -> ValueKind {
        self.as_ref().kind()
    }

    pub fn as_ref(&self) -> ValueRef<'_> {
        ValueRef::of(self)
    }

    pub fn new_set() -> Value {
        Value::Set(Set::default())
    }

    pub fn new_hash() -> Value {
        Value::Hash(Hash::default())
    }
}

impl<'a> ValueRef<'a> {
    pub fn of(value: &'a Value) -> ValueRef<'a> {
        match value {
            Value::Str(s) => ValueRef::Str(s),
            Value::List(l) => ValueRef::List(l),
            Value::Set(s) => ValueRef::Set(s),
            Value::Hash(h) => ValueRef::Hash(h),
        }
    }

    pub fn kind(self) -> ValueKind {
        match self {
            ValueRef::Str(_) => ValueKind::Str,
            ValueRef::List(_) => ValueKind::List,
            ValueRef::Set(_) => ValueKind::Set,
            ValueRef::Hash(_) => ValueKind::Hash,
        }
    }

    pub fn to_owned(self) -> Value {
        match self {
            ValueRef::Str(s) => Value::Str(Bytes::copy_from_slice(s)),
            ValueRef::List(l) => Value::List(l.clone()),
            ValueRef::Set(s) => Value::Set(s.clone()),
            ValueRef::Hash(h) => Value::Hash(h.clone()),
        }
    }

    /// The encoding OBJECT ENCODING reports, following Redis's thresholds.
    pub fn encoding(self) -> &'static str {
        match self {
            ValueRef::Str(s) => {
                if s.len() <= 20 && parse_i64(s).is_some() {
                    "int"
                } else if s.len() <= 44 {
                    "embstr"
                } else {
                    "raw"
                }
            }
            ValueRef::List(l) => {
                if l.len() <= 128 && l.iter().all(|e| e.len() <= 64) {
                    "listpack"
                } else {
                    "quicklist"
                }
            }
            ValueRef::Set(s) => s.encoding(),
            ValueRef::Hash(h) => h.encoding(),
        }
    }

    /// Approximate heap bytes held by the value outside its key's block.
    pub fn heap_size(self) -> usize {
        match self {
            ValueRef::Str(s) => s.len(),
            ValueRef::List(l) => l.iter().map(|e| e.len() + 32).sum(),
            ValueRef::Set(s) => s.heap_size(),
            ValueRef::Hash(h) => h.heap_size(),
        }
    }
}

impl<'a> ValueMut<'a> {
    pub fn of(value: &'a mut Value) -> ValueMut<'a> {
        match value {
            Value::Str(s) => ValueMut::Str(s),
            Value::List(l) => ValueMut::List(l),
            Value::Set(s) => ValueMut::Set(s),
            Value::Hash(h) => ValueMut::Hash(h),
        }
    }

    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            ValueMut::Str(s) => ValueRef::Str(s),
            ValueMut::List(l) => ValueRef::List(l),
            ValueMut::Set(s) => ValueRef::Set(s),
            ValueMut::Hash(h) => ValueRef::Hash(h),
        }
    }
}

/// Parses a decimal integer exactly as Redis's `string2ll` does: no spaces,
/// no plus sign, no leading zeros.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = if s[0] == b'-' { (true, &s[1..]) } else { (false, s) };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b""), None);
    }
}
