//! The script cache, shared by every core: SHA1 -> body, plus the flags
//! that SCRIPT FLAGS, `--lua_undeclared_keys_shas` and the built-in list add.
//!
//! This is configuration, not keyspace data, so a mutex guards it; it is
//! read once per EVAL. Each core compiles a script into its own Lua VM on
//! first use (`vm.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::flags::{CACHEOPS_SHAS, Flags, Header, parse_header};

pub struct Script {
    pub sha: String,
    pub body: Bytes,
    pub header: Header,
}

#[derive(Default)]
struct Inner {
    scripts: HashMap<String, Arc<Script>>,
    /// Flags added by SCRIPT FLAGS, kept even before the script is loaded.
    added: HashMap<String, Flags>,
    /// `--lua_undeclared_keys_shas`, also settable with CONFIG SET.
    undeclared_shas: HashSet<String>,
    /// `--default_lua_flags`: for scripts that state no flags of their own.
    default_flags: Flags,
    /// Bumped by SCRIPT FLUSH so that cores drop their compiled functions.
    generation: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
}

/// The process's script store.
pub fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| Store {
        inner: Mutex::new(Inner::default()),
    })
}

pub fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Caches `body` (if new) and returns it. Err: a bad flags line.
    pub fn load(&self, body: &[u8]) -> Result<Arc<Script>, String> {
        let sha = sha1_hex(body);
        if let Some(s) = self.lock().scripts.get(&sha) {
            return Ok(s.clone());
        }
        let header = parse_header(body)?;
        let script = Arc::new(Script {
            sha: sha.clone(),
            body: Bytes::copy_from_slice(body),
            header,
        });
        self.lock().scripts.entry(sha).or_insert(script.clone());
        Ok(script)
    }

    pub fn get(&self, sha: &str) -> Option<Arc<Script>> {
        self.lock().scripts.get(&sha.to_ascii_lowercase()).cloned()
    }

    pub fn exists(&self, sha: &str) -> bool {
        self.lock().scripts.contains_key(&sha.to_ascii_lowercase())
    }

    /// Every cached script, for SCRIPT LIST.
    pub fn list(&self) -> Vec<Arc<Script>> {
        let mut all: Vec<_> = self.lock().scripts.values().cloned().collect();
        all.sort_by(|a, b| a.sha.cmp(&b.sha));
        all
    }

    /// SCRIPT FLUSH: forgets scripts and every flag added to them.
    pub fn flush(&self) {
        let mut inner = self.lock();
        inner.scripts.clear();
        inner.added.clear();
        inner.generation += 1;
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// SCRIPT FLAGS: adds flags to a script, loaded or not.
    pub fn add_flags(&self, sha: &str, flags: Flags) {
        let mut inner = self.lock();
        let entry = inner.added.entry(sha.to_ascii_lowercase()).or_default();
        *entry = entry.union(flags);
    }

    pub fn set_default_flags(&self, flags: Flags) {
        self.lock().default_flags = flags;
    }

    pub fn set_undeclared_shas(&self, list: &str) {
        self.lock().undeclared_shas = parse_sha_list(list);
    }

    pub fn undeclared_shas_text(&self) -> String {
        let mut v: Vec<String> = self.lock().undeclared_shas.iter().cloned().collect();
        v.sort();
        v.join(",")
    }

    /// Everything that applies to `script`: its own flags (or the default
    /// when it states none), SCRIPT FLAGS, and the undeclared-keys lists.
    pub fn effective_flags(&self, script: &Script) -> Flags {
        let inner = self.lock();
        let mut flags = if script.header.declares_flags {
            script.header.flags
        } else {
            script.header.flags.union(inner.default_flags)
        };
        if let Some(added) = inner.added.get(&script.sha) {
            flags = flags.union(*added);
        }
        if inner.undeclared_shas.contains(&script.sha) || CACHEOPS_SHAS.iter().any(|(s, _)| *s == script.sha) {
            flags = flags.union(Flags::ALLOW_UNDECLARED_KEYS);
        }
        flags
    }
}

fn parse_sha_list(list: &str) -> HashSet<String> {
    list.split([',', ' ', ';'])
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_redis() {
        assert_eq!(sha1_hex(b"return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn flags_combine_from_every_source() {
        let store = Store {
            inner: Mutex::new(Inner::default()),
        };
        let plain = store.load(b"return 1").unwrap();
        assert_eq!(store.effective_flags(&plain), Flags::NONE);
        store.add_flags(&sha1_hex(b"return 2"), Flags::ALLOW_UNDECLARED_KEYS);
        let later = store.load(b"return 2").unwrap();
        assert!(store.effective_flags(&later).contains(Flags::ALLOW_UNDECLARED_KEYS));
        store.set_default_flags(Flags::DISABLE_ATOMICITY);
        assert!(store.effective_flags(&plain).contains(Flags::DISABLE_ATOMICITY));
        let own = store.load(b"--!df flags=no-writes\nreturn 3").unwrap();
        assert!(!store.effective_flags(&own).contains(Flags::DISABLE_ATOMICITY));
        store.set_undeclared_shas(&plain.sha);
        assert!(store.effective_flags(&plain).contains(Flags::ALLOW_UNDECLARED_KEYS));
        store.flush();
        assert!(!store.exists(&later.sha));
    }
}
