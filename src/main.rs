use clap::Parser;
use stackring::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    stackring::fuzzing::init_logging(cli.verbose);
    std::process::exit(cli::run(cli));
}
