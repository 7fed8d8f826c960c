use clap::Parser;

use mayfly::config::Config;

fn main() {
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
