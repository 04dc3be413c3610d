//! The `jlp-rts` binary: parse, run, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = jlp_rts::cli::Cli::parse();
    if let Err(error) = jlp_rts::logging::init(&cli.output) {
        jlp_rts::complain(&format!("error: {error:#}"));
        return ExitCode::from(2);
    }
    match jlp_rts::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            jlp_rts::complain(&format!("error: {failure}"));
            ExitCode::from(failure.exit_code())
        }
    }
}
