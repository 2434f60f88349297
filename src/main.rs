//! The `backwork` binary: parse the command line, then run a command or open the window.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = backwork::cli::Cli::parse();
    let result = match cli.command {
        Some(command) => backwork::cli::run(command, &cli.app),
        None => backwork::app::run(&cli.app),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming the file or option and the problem; no backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
