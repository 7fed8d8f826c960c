//! The value types a key can hold.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use super::{HashBuilder, Map};

#[derive(Debug, Clone)]
pub enum Value {
    Str(Bytes),
    List(VecDeque<Bytes>),
    Set(HashSet<Bytes, HashBuilder>),
    Hash(Map<Bytes, Bytes>),
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

impl Value {
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Str(_) => ValueKind::Str,
            Value::List(_) => ValueKind::List,
            Value::Set(_) => ValueKind::Set,
            Value::Hash(_) => ValueKind::Hash,
        }
    }

    pub fn new_set() -> Value {
        Value::Set(HashSet::default())
    }

    pub fn new_hash() -> Value {
        Value::Hash(Map::default())
    }

    /// The encoding OBJECT ENCODING reports, following Redis's thresholds.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => {
                if s.len() <= 20 && parse_i64(s).is_some() {
                    "int"
                } else if s.len() <= 44 {
                    "embstr"
                } else {
                    "raw"
                }
            }
            Value::List(l) => {
                if l.len() <= 128 && l.iter().all(|e| e.len() <= 64) {
                    "listpack"
                } else {
                    "quicklist"
                }
            }
            Value::Set(s) => {
                if s.len() <= 512 && s.iter().all(|m| parse_i64(m).is_some()) {
                    "intset"
                } else if s.len() <= 128 && s.iter().all(|m| m.len() <= 64) {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
            Value::Hash(h) => {
                if h.len() <= 128 && h.iter().all(|(k, v)| k.len() <= 64 && v.len() <= 64) {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
        }
    }

    /// Approximate heap bytes held by the value.
    pub fn heap_size(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::List(l) => l.iter().map(|e| e.len() + 32).sum(),
            Value::Set(s) => s.iter().map(|m| m.len() + 40).sum(),
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len() + 72).sum(),
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
