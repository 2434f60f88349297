//! The `backwork` binary: parse the command line, then run a command or open the window.

use std::io::Write;

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
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                text.lines().next().unwrap_or("error: bad arguments")
            );
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Some(command) => {
            // A command's output piped into `head` ends it quietly, as any Unix tool does,
            // instead of println! panicking on the broken pipe (Rust ignores SIGPIPE).
            // SAFETY: restoring a signal's default action before any thread starts.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            backwork::cli::run(command, &cli.app)
        }
        None => backwork::app::run(&cli.app),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming the file or option and the problem; no backtrace.
            // Not eprintln!: after SIGHUP the terminal may be gone, and a failed write must not panic.
            // The chain of causes, each said once (an error that quotes its cause would
            // otherwise print the OS error twice).
            let mut text = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !text.contains(&c) {
                    text = format!("{text}: {c}");
                }
            }
            // Control characters (a newline in a file's name) escaped: one line, always.
            let text = backwork::util::one_line(&text);
            let _ = writeln!(std::io::stderr(), "error: {text}");
            match e.downcast_ref::<backwork::cli::stop::Stopped>() {
                Some(s) => std::process::ExitCode::from(s.exit_code()),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
