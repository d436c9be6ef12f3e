//! The `airlock` binary: parse the command line, hand over to the CLI.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    cli::run(cli::Cli::parse())
}
