//! How a script runs, decided by one pure function.
//!
//! | atomic | undeclared keys | mode |
//! |---|---|---|
//! | yes | yes | `Global`: every shard pauses at a barrier |
//! | yes | no, keys on one shard | `OneShard`: run on that shard's core once they are free, no hops |
//! | yes | no, keys on several shards | `LockAhead`: lock the declared keys, hop per call |
//! | no | either | `NonAtomic`: each call stands alone |

use super::flags::Flags;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Global,
    OneShard(usize),
    LockAhead,
    NonAtomic,
}

/// The mode for a script with `flags` whose declared keys live on
/// `key_shards` (one entry per key).
pub fn decide(flags: Flags, key_shards: &[usize]) -> Mode {
    if flags.contains(Flags::DISABLE_ATOMICITY) {
        return Mode::NonAtomic;
    }
    if flags.contains(Flags::ALLOW_UNDECLARED_KEYS) {
        return Mode::Global;
    }
    match key_shards.split_first() {
        Some((first, rest)) if rest.iter().all(|s| s == first) => Mode::OneShard(*first),
        _ => Mode::LockAhead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_table() {
        let undeclared = Flags::ALLOW_UNDECLARED_KEYS;
        let nonatomic = Flags::DISABLE_ATOMICITY;
        let both = undeclared.union(nonatomic);
        let cases: &[(Flags, &[usize], Mode)] = &[
            (Flags::NONE, &[], Mode::LockAhead),
            (Flags::NONE, &[0], Mode::OneShard(0)),
            (Flags::NONE, &[1, 1, 1], Mode::OneShard(1)),
            (Flags::NONE, &[0, 1], Mode::LockAhead),
            (undeclared, &[], Mode::Global),
            (undeclared, &[0], Mode::Global),
            (undeclared, &[0, 1], Mode::Global),
            (nonatomic, &[0], Mode::NonAtomic),
            (nonatomic, &[0, 1], Mode::NonAtomic),
            (both, &[0, 1], Mode::NonAtomic),
            (Flags::NO_WRITES, &[1], Mode::OneShard(1)),
            (Flags::LEGACY_FLOAT, &[0, 1], Mode::LockAhead),
        ];
        for (flags, shards, want) in cases {
            assert_eq!(decide(*flags, shards), *want, "{flags:?} {shards:?}");
        }
    }
}
