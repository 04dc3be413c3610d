//! The `jlp-rts` binary: parse, run, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = jlp_rts::cli::Cli::parse();
    if let Err(error) = jlp_rts::logging::init(&cli.output) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    match jlp_rts::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
