//! Argument parsing helpers: a cursor over arguments and Redis's number
//! rules.

use bytes::Bytes;

use crate::db::parse_i64;
use crate::error;
use crate::resp::Reply;

/// A cursor over a command's arguments. `finish` rejects leftovers.
pub struct Cursor<'a> {
    args: &'a [Bytes],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(args: &'a [Bytes]) -> Cursor<'a> {
        Cursor { args, pos: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.pos >= self.args.len()
    }

    pub fn remaining(&self) -> usize {
        self.args.len().saturating_sub(self.pos)
    }

    pub fn next_arg(&mut self) -> Option<&'a Bytes> {
        let arg = self.args.get(self.pos)?;
        self.pos += 1;
        Some(arg)
    }

    /// The next argument, or a syntax error.
    pub fn required(&mut self) -> Result<&'a Bytes, Reply> {
        self.next_arg().ok_or(Reply::Error(error::SYNTAX))
    }

    /// Consumes the next argument if it equals `word` (case-insensitively).
    pub fn eat(&mut self, word: &str) -> bool {
        match self.args.get(self.pos) {
            Some(a) if a.eq_ignore_ascii_case(word.as_bytes()) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    pub fn next_i64(&mut self) -> Result<i64, Reply> {
        int(self.required()?)
    }

    pub fn finish(&self) -> Result<(), Reply> {
        if self.is_done() {
            Ok(())
        } else {
            Err(Reply::Error(error::SYNTAX))
        }
    }
}

/// A Redis integer argument.
pub fn int(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or(Reply::Error(error::NOT_INTEGER))
}

/// A Redis float argument (strtold-like: no spaces, no NaN).
pub fn float(arg: &[u8]) -> Result<f64, Reply> {
    parse_f64(arg).ok_or(Reply::Error(error::NOT_FLOAT))
}

pub fn parse_f64(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_whitespace()) || text.ends_with(|c: char| c.is_whitespace()) {
        return None;
    }
    let v: f64 = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => text.parse().ok()?,
    };
    if v.is_nan() { None } else { Some(v) }
}

/// Formats a float the way INCRBYFLOAT and HINCRBYFLOAT reply: plain
/// decimal, no exponent, no trailing zeros.
pub fn format_float(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let text = format!("{v}");
    if text.contains('e') {
        format!("{v:.17}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        text
    }
}

/// Upper-cased ASCII of an argument, for matching option names.
pub fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

/// Redis glob-style pattern matching (`*`, `?`, `[...]`, `\`), as KEYS,
/// SCAN MATCH and friends use it.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    fn go(p: &[u8], t: &[u8], depth: usize) -> bool {
        if depth > 1000 {
            return false;
        }
        let (mut pi, mut ti) = (0, 0);
        while pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi + 1 < p.len() && p[pi + 1] == b'*' {
                        pi += 1;
                    }
                    if pi + 1 == p.len() {
                        return true;
                    }
                    for start in ti..=t.len() {
                        if go(&p[pi + 1..], &t[start..], depth + 1) {
                            return true;
                        }
                    }
                    return false;
                }
                b'?' => {
                    if ti >= t.len() {
                        return false;
                    }
                    ti += 1;
                }
                b'[' => {
                    if ti >= t.len() {
                        return false;
                    }
                    pi += 1;
                    let negate = pi < p.len() && p[pi] == b'^';
                    if negate {
                        pi += 1;
                    }
                    let mut matched = false;
                    loop {
                        if pi >= p.len() {
                            pi -= 1;
                            break;
                        }
                        if p[pi] == b'\\' && pi + 1 < p.len() {
                            pi += 1;
                            if p[pi] == t[ti] {
                                matched = true;
                            }
                        } else if p[pi] == b']' {
                            break;
                        } else if pi + 2 < p.len() && p[pi + 1] == b'-' {
                            let (mut lo, mut hi) = (p[pi], p[pi + 2]);
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            if t[ti] >= lo && t[ti] <= hi {
                                matched = true;
                            }
                            pi += 2;
                        } else if p[pi] == t[ti] {
                            matched = true;
                        }
                        pi += 1;
                    }
                    if negate {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    ti += 1;
                }
                b'\\' if pi + 1 < p.len() => {
                    pi += 1;
                    if ti >= t.len() || p[pi] != t[ti] {
                        return false;
                    }
                    ti += 1;
                }
                c => {
                    if ti >= t.len() || c != t[ti] {
                        return false;
                    }
                    ti += 1;
                }
            }
            pi += 1;
        }
        ti == t.len()
    }
    go(pattern, text, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns_match_like_redis() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(glob_match(b"h*llo", b"heeeello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"conj:t:*", b"conj:t:id=1"));
        assert!(!glob_match(b"conj:t:*", b"conj:u:id=1"));
        assert!(glob_match(b"a\\*b", b"a*b"));
        assert!(!glob_match(b"a\\*b", b"axb"));
    }

    #[test]
    fn floats_format_without_exponent() {
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(5.0e3), "5000");
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
    }
}
