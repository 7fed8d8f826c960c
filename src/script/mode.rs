//! How a script runs, decided by one pure function.
//!
//! | atomic | undeclared keys | mode |
//! |---|---|---|
//! | yes | yes | `Global`: every shard pauses at a barrier |
//! | yes | no, keys on one shard | `OneShard`: run on that shard's core once they are free, no hops |
//! | yes | no, keys on every shard (two or more) | `EveryShard`: behind the barrier, declared keys only |
//! | yes | no, keys on some shards | `LockAhead`: lock the declared keys, hop per call |
//! | no | either | `NonAtomic`: each call stands alone |
//!
//! A script whose declared keys span every shard needs every shard, as a
//! global one does. The barrier hands it each one (no message per call,
//! no core blocked waiting for another's reply) and lets such scripts
//! share an epoch; locking the keys instead would block this core for a
//! round trip per call to another shard. At two shards this is any script
//! whose keys are not all on one shard: 0.56x Redis's EVALSHA ops/s by
//! lock-ahead, as a global script runs 0.93x (bench/RESULTS.md).

use super::flags::Flags;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Global,
    EveryShard,
    OneShard(usize),
    LockAhead,
    NonAtomic,
}

/// The mode for a script with `flags` whose declared keys live on
/// `key_shards` (one entry per key), on a server of `nshards` shards.
pub fn decide(flags: Flags, key_shards: &[usize], nshards: usize) -> Mode {
    if flags.contains(Flags::DISABLE_ATOMICITY) {
        return Mode::NonAtomic;
    }
    if flags.contains(Flags::ALLOW_UNDECLARED_KEYS) {
        return Mode::Global;
    }
    match key_shards.split_first() {
        Some((first, rest)) if rest.iter().all(|s| s == first) => Mode::OneShard(*first),
        _ if spans_every_shard(key_shards, nshards) => Mode::EveryShard,
        _ => Mode::LockAhead,
    }
}

fn spans_every_shard(key_shards: &[usize], nshards: usize) -> bool {
    let mut seen = vec![false; nshards];
    key_shards.iter().for_each(|&s| seen[s] = true);
    seen.iter().all(|&s| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_table() {
        let undeclared = Flags::ALLOW_UNDECLARED_KEYS;
        let nonatomic = Flags::DISABLE_ATOMICITY;
        let both = undeclared.union(nonatomic);
        // (flags, key shards, shard count, mode)
        let cases: &[(Flags, &[usize], usize, Mode)] = &[
            (Flags::NONE, &[], 2, Mode::LockAhead),
            (Flags::NONE, &[0], 2, Mode::OneShard(0)),
            (Flags::NONE, &[1, 1, 1], 2, Mode::OneShard(1)),
            (Flags::NONE, &[0, 1], 2, Mode::EveryShard),
            (Flags::NONE, &[1, 0, 1], 2, Mode::EveryShard),
            (Flags::NONE, &[0, 2], 3, Mode::LockAhead),
            (Flags::NONE, &[2, 0, 1], 3, Mode::EveryShard),
            (undeclared, &[], 2, Mode::Global),
            (undeclared, &[0], 2, Mode::Global),
            (undeclared, &[0, 1], 2, Mode::Global),
            (nonatomic, &[0], 2, Mode::NonAtomic),
            (nonatomic, &[0, 1], 2, Mode::NonAtomic),
            (both, &[0, 1], 2, Mode::NonAtomic),
            (Flags::NO_WRITES, &[1], 2, Mode::OneShard(1)),
            (Flags::LEGACY_FLOAT, &[0, 1], 2, Mode::EveryShard),
            (Flags::LEGACY_FLOAT, &[0, 1], 4, Mode::LockAhead),
        ];
        for (flags, shards, nshards, want) in cases {
            assert_eq!(
                decide(*flags, shards, *nshards),
                *want,
                "{flags:?} {shards:?} {nshards}"
            );
        }
    }
}
