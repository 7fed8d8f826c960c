//! Minimal levelled logging to stderr, in Redis's style of line.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Debug,
    Verbose,
    Notice,
    Warning,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Notice as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mark = match level {
        Level::Debug => '.',
        Level::Verbose => '-',
        Level::Notice => '*',
        Level::Warning => '#',
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}:M {}.{:03} {} {}",
        std::process::id(),
        now.as_secs(),
        now.subsec_millis(),
        mark,
        args
    );
}

#[macro_export]
macro_rules! log_notice {
    ($($arg:tt)*) => { $crate::logging::write($crate::logging::Level::Notice, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! log_warning {
    ($($arg:tt)*) => { $crate::logging::write($crate::logging::Level::Warning, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! log_verbose {
    ($($arg:tt)*) => { $crate::logging::write($crate::logging::Level::Verbose, format_args!($($arg)*)) };
}
