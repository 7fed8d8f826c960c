//! django-cacheops's own scripts, byte for byte as cacheops 7.2 sends them,
//! run at a two-shard Mayfly with no script flags at all: the built-in SHA
//! list is what lets them touch the `conj:` and `schemes:` keys they build.
//!
//! The Lua text is not part of this repository. `ci/cacheops.sh --fetch`
//! downloads cacheops's sdist (sha256-checked) and prints the directory of
//! its scripts; `ci/test.sh` passes it here as MAYFLY_CACHEOPS_LUA. Without
//! it the test is skipped, except in CI, where it must run.
//!
//! The same flow runs at redis-server, and both must observe the same.

mod common;

use std::path::PathBuf;

use redis::{Commands, Script, Value, cmd};

fn sha1(text: &str) -> String {
    mayfly::script::store::sha1_hex(text.as_bytes())
}

fn lua_dir() -> Option<PathBuf> {
    match std::env::var_os("MAYFLY_CACHEOPS_LUA") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "MAYFLY_CACHEOPS_LUA must name cacheops's lua directory in CI (ci/test.sh sets it)"
            );
            eprintln!("MAYFLY_CACHEOPS_LUA not set; skipping (run `bash ci/cacheops.sh --fetch`)");
            None
        }
    }
}

/// Drops every `TAG ... /TAG` section (shortest match), as cacheops's
/// `load_script` does for the sections of the other Redis generation.
fn strip_sections(code: &str, tag: &str) -> String {
    let end_tag = format!("/{tag}");
    let mut out = String::new();
    let mut rest = code;
    while let Some(start) = rest.find(tag) {
        let Some(len) = rest[start + tag.len()..].find(&end_tag) else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = &rest[start + tag.len() + len + end_tag.len()..];
    }
    out.push_str(rest);
    out
}

/// The four scripts as cacheops 7.2 sends them to a Redis 7 server, plus
/// cache_thing_insideout as it sends it to older servers.
struct Scripts {
    cache_thing: String,
    cache_thing_insideout: String,
    cache_thing_insideout_redis4: String,
    invalidate: String,
    invalidate_insideout: String,
}

impl Scripts {
    fn load(dir: &std::path::Path) -> Scripts {
        let read = |name: &str| {
            let path = dir.join(format!("{name}.lua"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let for_redis7 = |name: &str| strip_sections(&read(name), "REDIS_4");
        Scripts {
            cache_thing: for_redis7("cache_thing"),
            cache_thing_insideout: for_redis7("cache_thing_insideout"),
            cache_thing_insideout_redis4: strip_sections(&read("cache_thing_insideout"), "REDIS_7"),
            invalidate: for_redis7("invalidate"),
            invalidate_insideout: for_redis7("invalidate_insideout"),
        }
    }
}

/// A cache key that lives on the other shard from the conj key the
/// scripts build, so every run crosses shards.
fn cache_key_away_from(conj_key: &str) -> String {
    let conj_shard = mayfly::shard::shard_of(conj_key.as_bytes(), 2);
    (0..1000)
        .map(|i| format!("q:{i:032x}"))
        .find(|k| mayfly::shard::shard_of(k.as_bytes(), 2) != conj_shard)
        .expect("a key on the other shard")
}

const CONJ: &str = "conj:tests_post:category_id=1";
const SCHEMES: &str = "schemes:tests_post";

/// cacheops's two ways of caching and invalidating, as its Python code
/// calls them. Returns what a client observes after each step.
fn flow(c: &mut redis::Connection, s: &Scripts, key: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let look = |c: &mut redis::Connection, step: &str| {
        let value: Option<String> = c.get(key).unwrap();
        let ttl: i64 = c.ttl(key).unwrap();
        // In insideout mode the conj key holds a stamp, not a set.
        let members = match c.smembers::<_, Vec<String>>(CONJ) {
            Ok(mut members) => {
                members.sort();
                format!("{members:?}")
            }
            Err(e) => e.code().unwrap_or("?").to_string(),
        };
        let conj_ttl: i64 = c.ttl(CONJ).unwrap();
        let schemes: Vec<String> = c.smembers(SCHEMES).unwrap();
        format!("{step}: value={value:?} ttl={ttl} conj={members} conj_ttl={conj_ttl} schemes={schemes:?}")
    };

    // Plain mode: cache_thing(prefix, key, precall_key; data, dnfs, timeout).
    // The dnf's number 1 must become "category_id=1", never "=1.0".
    let reply: Value = Script::new(&s.cache_thing)
        .key("")
        .key(key)
        .key("")
        .arg("pickled-queryset")
        .arg(r#"{"tests_post": [{"category_id": 1}]}"#)
        .arg(60)
        .invoke(c)
        .unwrap();
    assert_eq!(reply, Value::Nil);
    seen.push(look(c, "cache_thing"));
    // invalidate(prefix; db_table, obj) drops the conj set and what it names.
    let _: Value = Script::new(&s.invalidate)
        .key("")
        .arg("tests_post")
        .arg(r#"{"category_id": 1, "title": "x"}"#)
        .invoke(c)
        .unwrap();
    seen.push(look(c, "invalidate"));

    // Insideout mode: stamps in conj keys, a checksum of them in the value.
    let insideout = |c: &mut redis::Connection, body: &str, rnd: &str, expected: &str| -> Value {
        Script::new(body)
            .key("")
            .key(key)
            .arg("pickled-queryset")
            .arg(r#"{"tests_post": ["category_id"]}"#)
            .arg(format!(r#"["{CONJ}"]"#))
            .arg(60)
            .arg(rnd)
            .arg(expected)
            .invoke(c)
            .unwrap()
    };
    let reply = insideout(c, &s.cache_thing_insideout, "stamp-1", "");
    seen.push(format!("cache_thing_insideout: {reply:?}"));
    let stamp: Option<String> = c.get(CONJ).unwrap();
    seen.push(format!("stamp: {stamp:?}"));
    seen.push(look(c, "cache_thing_insideout"));
    // A second write with the right checksum keeps the stamp.
    let reply = insideout(c, &s.cache_thing_insideout, "stamp-2", &sha1("stamp-1"));
    seen.push(format!("again with the checksum: {reply:?}"));
    // invalidate_insideout unlinks the conj key; a write that expected the
    // old stamp is now refused and told the new checksum.
    let _: Value = Script::new(&s.invalidate_insideout)
        .key("")
        .arg("tests_post")
        .arg(r#"{"category_id": "1"}"#)
        .invoke(c)
        .unwrap();
    seen.push(look(c, "invalidate_insideout"));
    let reply = insideout(c, &s.cache_thing_insideout_redis4, "stamp-3", &sha1("stamp-1"));
    seen.push(format!("stale write, older servers' script: {reply:?}"));
    seen.push(look(c, "after the stale write"));
    seen
}

#[test]
fn cacheops_scripts_run_with_no_flags() {
    let Some(dir) = lua_dir() else { return };
    let s = Scripts::load(&dir);
    // Byte for byte what cacheops sends: the SHAs the issue lists, and all
    // of them in Mayfly's built-in list.
    let shas = [
        (&s.cache_thing, "43c56897fe581fb7eefdc1f00d6db8bc0ed5318e"),
        (&s.cache_thing_insideout, "93caee718597fa57f2c358b06f9d7f5cb05a233d"),
        (
            &s.cache_thing_insideout_redis4,
            "76f365ace541416bbf41c63396d6f65797ca54e7",
        ),
        (&s.invalidate, "0605214935a9ffcd4b9e5779300302540ff08da4"),
        (&s.invalidate_insideout, "3fc258d735c924d5652fceb90b41bea1f1f29e4b"),
    ];
    for (body, want) in shas {
        assert_eq!(sha1(body), want);
        assert!(
            mayfly::script::flags::CACHEOPS_SHAS.iter().any(|(sha, _)| *sha == want),
            "{want} is not built in"
        );
    }

    let key = cache_key_away_from(CONJ);
    let server = common::mayfly();
    let mut c = server.conn();
    let seen = flow(&mut c, &s, &key);
    let expect_first = format!(
        "cache_thing: value=Some(\"pickled-queryset\") ttl=60 conj=[\"{key}\"] conj_ttl=130 schemes=[\"category_id\"]"
    );
    assert_eq!(seen[0], expect_first);
    assert!(
        seen[1].starts_with("invalidate: value=None ttl=-2 conj=[] conj_ttl=-2"),
        "{}",
        seen[1]
    );
    assert_eq!(seen[3], "stamp: Some(\"stamp-1\")");
    assert!(
        seen[4].contains(&format!("value=Some(\"{}:pickled-queryset\")", sha1("stamp-1"))),
        "{}",
        seen[4]
    );
    assert!(seen[4].contains("conj=WRONGTYPE conj_ttl=130"), "{}", seen[4]);
    assert!(seen[6].contains("conj=[] conj_ttl=-2"), "{}", seen[6]);
    assert_eq!(
        seen[7],
        format!(
            "stale write, older servers' script: bulk-string('\"{}\"')",
            sha1("stamp-3")
        )
    );

    // The built-in list is what makes them work: the same script with one
    // more byte is refused at its first undeclared key.
    let changed = format!("{}\n", s.invalidate);
    let err = cmd("EVAL")
        .arg(&changed)
        .arg(1)
        .arg("")
        .arg("tests_post")
        .arg(r#"{"category_id": 1}"#)
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("undeclared key"), "{err}");

    // Redis observes exactly the same.
    if let Some(redis) = common::redis_server() {
        let mut r = redis.conn();
        assert_eq!(flow(&mut r, &s, &key), seen);
    }
}
