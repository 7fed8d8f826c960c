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
/// Each SHA1 is of the script text exactly as that release sends it: it
/// reads `cacheops/lua/NAME.lua`; 7.x deletes the `REDIS_4 ... /REDIS_4`
/// blocks when INFO's redis_version major is at least 7 (otherwise the
/// `REDIS_7` blocks); 4.x-6.x delete `TOSTRIP ... /TOSTRIP` blocks when
/// CACHEOPS_LRU is set (cache_thing) or UNLINK is available (invalidate).
/// `scripts/cacheops_shas.py` recomputes the list from the packages
/// published on PyPI.
pub const CACHEOPS_SHAS: &[(&str, &str)] = &[
    ("43c56897fe581fb7eefdc1f00d6db8bc0ed5318e", "7.1, 7.2 cache_thing"),
    (
        "93caee718597fa57f2c358b06f9d7f5cb05a233d",
        "7.1, 7.2 cache_thing_insideout, Redis >= 7",
    ),
    (
        "76f365ace541416bbf41c63396d6f65797ca54e7",
        "7.1, 7.2 cache_thing_insideout, Redis < 7",
    ),
    ("0605214935a9ffcd4b9e5779300302540ff08da4", "5.0 - 7.2 invalidate"),
    (
        "3fc258d735c924d5652fceb90b41bea1f1f29e4b",
        "7.0 - 7.2 invalidate_insideout",
    ),
    (
        "8c4dafdf9b6b7bcf511a0d1ec0518bed9260e16d",
        "7.0.2 cache_thing_insideout, Redis >= 7",
    ),
    (
        "92143cfceff4022e1b15e58dbc883b44171a638a",
        "7.0.2 cache_thing_insideout, Redis < 7",
    ),
    (
        "8661ee8a6eebce058183c5fc3c68b4a5635964a1",
        "7.0.2 cache_thing, Redis >= 7",
    ),
    (
        "584808dc8ea8d370057a553be46a8404371a3943",
        "7.0.2 cache_thing, Redis < 7",
    ),
    (
        "f8195e277f9f2c2fe7d26010d530f3707042c761",
        "7.0.1 cache_thing_insideout, Redis >= 7",
    ),
    (
        "0ddead8550435c11fe4c969ce05d86595a096d97",
        "7.0.1 cache_thing_insideout, Redis < 7",
    ),
    (
        "bfed57da6c77721caa94c95162a30f9da98f82d8",
        "7.0.1 cache_thing, Redis >= 7",
    ),
    (
        "6e829bdf16da88c0651734416322bf406a856b2e",
        "7.0.1 cache_thing, Redis < 7",
    ),
    ("1880dea5c524f6a37a650f715fa630416a2fe1fd", "7.0 cache_thing"),
    ("af393c71b4185a7601811a87f5d196d767921270", "7.0 cache_thing_insideout"),
    ("48f6ff98e648e4e33abd0de6769a9673304154b1", "6.1, 6.2 cache_thing"),
    (
        "42c3ffad82416d88b7f96d188072c5c750528a09",
        "6.1, 6.2 cache_thing, TOSTRIP removed",
    ),
    ("f6b93ec749d56aefa37c49bbc5e7a6eedd0d4ec3", "4.2 - 6.0 cache_thing"),
    (
        "f32ccc995438e06ea3041413dd18df7fa6c8645e",
        "4.2 - 6.0 cache_thing, TOSTRIP removed",
    ),
    ("c7572545be307e3217961e97ef8725ae23e24775", "4.2 invalidate"),
    (
        "f8cc03e09db7ac73d320499db3d80945b1b5b0fc",
        "4.2 invalidate, TOSTRIP removed",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_shas_are_well_formed_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for (sha, _) in CACHEOPS_SHAS {
            assert_eq!(sha.len(), 40);
            assert!(sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(seen.insert(*sha), "{sha} listed twice");
        }
    }

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
