//! Script flags: what they are, where they are written, and the scripts
//! that get `allow-undeclared-keys` without being asked.
//!
//! The flags follow Dragonfly's documentation:
//!
//! | flag | effect |
//! |---|---|
//! | `allow-undeclared-keys` | the script may touch any key: it runs as a global transaction |
//! | `disable-atomicity` | each call stands alone; no locks are held across calls |
//! | `legacy-float` | accepted (Mayfly's Lua 5.1 already truncates floats the Redis way) |
//! | `no-writes` | write commands fail (also Redis 7's shebang flag) |
//!
//! A script declares flags on its first non-blank line, either Dragonfly's
//! `--!df flags=a,b` or Redis 7's shebang `#!lua flags=no-writes,...`
//! (Redis's other shebang flags are accepted and have no effect here).

use std::fmt;

#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    pub const NONE: Flags = Flags(0);
    pub const ALLOW_UNDECLARED_KEYS: Flags = Flags(1);
    pub const DISABLE_ATOMICITY: Flags = Flags(1 << 1);
    pub const LEGACY_FLOAT: Flags = Flags(1 << 2);
    pub const NO_WRITES: Flags = Flags(1 << 3);

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Parses a list separated by commas, spaces or semicolons.
    /// Err carries the first unknown flag.
    pub fn parse_list(text: &str) -> Result<Flags, String> {
        let mut flags = Flags::NONE;
        for word in text.split([',', ' ', ';', '\t']).filter(|w| !w.is_empty()) {
            flags = flags.union(Flags::parse_one(word).ok_or_else(|| word.to_string())?);
        }
        Ok(flags)
    }

    pub fn parse_one(word: &str) -> Option<Flags> {
        Some(match word {
            "allow-undeclared-keys" => Flags::ALLOW_UNDECLARED_KEYS,
            "disable-atomicity" => Flags::DISABLE_ATOMICITY,
            "legacy-float" => Flags::LEGACY_FLOAT,
            "no-writes" => Flags::NO_WRITES,
            _ => return None,
        })
    }

    pub fn names(self) -> Vec<&'static str> {
        [
            (Flags::ALLOW_UNDECLARED_KEYS, "allow-undeclared-keys"),
            (Flags::DISABLE_ATOMICITY, "disable-atomicity"),
            (Flags::LEGACY_FLOAT, "legacy-float"),
            (Flags::NO_WRITES, "no-writes"),
        ]
        .into_iter()
        .filter(|(f, _)| self.contains(*f))
        .map(|(_, n)| n)
        .collect()
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({})", self.names().join(","))
    }
}

/// What a script's first line says about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    pub flags: Flags,
    /// The script states its own flags (a `--!df flags=` line or a shebang
    /// with `flags=`), so `--default_lua_flags` does not apply.
    pub declares_flags: bool,
    /// The first line is a `#!` shebang, which must not reach the compiler.
    pub shebang: bool,
}

/// Reads the flags line of a script body. Err is the client's error text.
pub fn parse_header(body: &[u8]) -> Result<Header, String> {
    let text = String::from_utf8_lossy(body);
    if let Some(rest) = text.strip_prefix("#!") {
        let line = rest.lines().next().unwrap_or("");
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        let engine = words.next().unwrap_or("");
        if engine != "lua" {
            return Err(format!("ERR Could not find engine '{engine}'"));
        }
        let mut header = Header {
            shebang: true,
            ..Header::default()
        };
        for word in words {
            let Some(list) = word.strip_prefix("flags=") else {
                return Err(format!("ERR Unknown lua shebang option: {word}"));
            };
            header.declares_flags = true;
            for flag in list.split(',').filter(|f| !f.is_empty()) {
                match flag {
                    "no-writes" => header.flags = header.flags.union(Flags::NO_WRITES),
                    "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                    _ => {
                        if let Some(f) = Flags::parse_one(flag) {
                            header.flags = header.flags.union(f);
                        } else {
                            return Err(format!("ERR Unexpected flag in script shebang: {flag}"));
                        }
                    }
                }
            }
        }
        return Ok(header);
    }
    let first = text.trim_start().lines().next().unwrap_or("");
    if let Some(rest) = first.strip_prefix("--!df") {
        let rest = rest.trim();
        let Some(list) = rest.strip_prefix("flags=") else {
            return Err(format!("ERR Invalid flag: {rest}"));
        };
        let flags = Flags::parse_list(list).map_err(|bad| format!("ERR Invalid flag: {bad}"))?;
        return Ok(Header {
            flags,
            declares_flags: true,
            shebang: false,
        });
    }
    Ok(Header::default())
}

/// SHA1s of django-cacheops's released scripts that build keys at run time
/// (`conj:...`, `schemes:...`) which they never declare. They get
/// `allow-undeclared-keys` with no configuration, so cacheops just works.
///
/// Each SHA1 is of the script text exactly as cacheops sends it: it reads
/// `cacheops/lua/NAME.lua` and deletes the `REDIS_4 ... /REDIS_4` blocks
/// when INFO's redis_version major is at least 7 (otherwise the `REDIS_7`
/// blocks). Sources: django-cacheops 7.2 as published on PyPI (see
/// `../shared/REFERENCE.md`), and Dragonfly's own list for 7.0.2.
pub const CACHEOPS_SHAS: &[(&str, &str)] = &[
    (
        "43c56897fe581fb7eefdc1f00d6db8bc0ed5318e",
        "cacheops 7.2 cache_thing.lua",
    ),
    (
        "93caee718597fa57f2c358b06f9d7f5cb05a233d",
        "cacheops 7.2 cache_thing_insideout.lua, Redis >= 7",
    ),
    (
        "76f365ace541416bbf41c63396d6f65797ca54e7",
        "cacheops 7.2 cache_thing_insideout.lua, Redis < 7",
    ),
    (
        "0605214935a9ffcd4b9e5779300302540ff08da4",
        "cacheops 7.2 invalidate.lua",
    ),
    (
        "3fc258d735c924d5652fceb90b41bea1f1f29e4b",
        "cacheops 7.2 invalidate_insideout.lua",
    ),
    (
        "8c4dafdf9b6b7bcf511a0d1ec0518bed9260e16d",
        "cacheops 7.0.2 cache_thing_insideout.lua (Dragonfly's list)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_lists_accept_three_separators_and_reject_unknown() {
        let f = Flags::parse_list("allow-undeclared-keys;disable-atomicity no-writes").unwrap();
        assert!(f.contains(Flags::ALLOW_UNDECLARED_KEYS));
        assert!(f.contains(Flags::DISABLE_ATOMICITY));
        assert!(f.contains(Flags::NO_WRITES));
        assert_eq!(Flags::parse_list("no-writes,bogus"), Err("bogus".to_string()));
    }

    #[test]
    fn headers_come_from_df_lines_and_shebangs() {
        let h = parse_header(b"\n  --!df flags=allow-undeclared-keys\nreturn 1").unwrap();
        assert!(h.declares_flags && h.flags.contains(Flags::ALLOW_UNDECLARED_KEYS));
        let h = parse_header(b"#!lua flags=no-writes,allow-cross-slot-keys\nreturn 1").unwrap();
        assert!(h.shebang && h.flags.contains(Flags::NO_WRITES));
        let h = parse_header(b"#!lua\nreturn 1").unwrap();
        assert!(h.shebang && !h.declares_flags);
        assert_eq!(
            parse_header(b"#!lua flags=bogus\n"),
            Err("ERR Unexpected flag in script shebang: bogus".into())
        );
        assert_eq!(
            parse_header(b"--!df flags=nope\n"),
            Err("ERR Invalid flag: nope".into())
        );
        assert_eq!(parse_header(b"return 1").unwrap(), Header::default());
    }
}
