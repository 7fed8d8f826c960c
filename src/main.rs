use clap::Parser;

use mayfly::config::Config;

fn main() {
    let config = Config::parse();
    mayfly::logging::set_level(config.loglevel);
    if let Err(e) = mayfly::server::run(config) {
        eprintln!("mayfly: {e}");
        std::process::exit(1);
    }
}
