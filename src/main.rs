use clap::Parser;

use mayfly::config::Config;

/// mimalloc, as Redis ships jemalloc: with glibc's malloc, allocation was
/// a tenth of the CPU of a script workload and 6% of it went with mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Freed memory goes back to the OS at once. mimalloc delays that by a
/// second by default and acts on the delay only on a later allocation, so
/// an idle server kept, for instance, the old table of a resized set in its
/// RSS.
fn tune_allocator() {
    use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};
    // `mi_option_purge_delay` in mimalloc.h (v3); the bindings lack a name
    // for it. Only set it where it reads as v3's default (options.c: 1000).
    const PURGE_DELAY: mi_option_t = 15;
    // SAFETY: plain option reads and writes, before any thread starts.
    unsafe {
        if mi_option_get(PURGE_DELAY) == 1000 {
            mi_option_set(PURGE_DELAY, 0);
        }
    }
}

/// Transparent huge pages off for this process, as Redis's `disable-thp
/// yes` does by default. mimalloc asks for them, and the first touch of
/// each 2 MiB page then zeroes it whole inside whatever command touched
/// it: on this project's VM, stalls of about 5 ms each while the keyspace
/// grew, and 80-170 ms when a new hash table's pages all faulted at once.
fn disable_thp() {
    // SAFETY: a process-wide flag; no pointers are passed.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() {
    disable_thp();
    tune_allocator();
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("mayfly: {e}");
        std::process::exit(2);
    }
    mayfly::logging::set_level(config.loglevel);
    if let Err(e) = mayfly::server::run(config) {
        eprintln!("mayfly: {e}");
        std::process::exit(1);
    }
}
