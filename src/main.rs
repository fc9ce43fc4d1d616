//! The `locallife` binary: parses the command line and hands over to [`locallife::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    locallife::cli::main()
}
