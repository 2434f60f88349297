//! The `backwork` binary: parse the command line, then run a command or open the window.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match backwork::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's first line names the flag and the problem.
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            return std::process::ExitCode::from(2);
        }
    };
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
