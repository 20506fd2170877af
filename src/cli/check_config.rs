//! `postback-relay check-config`: validates a configuration file.

use std::path::Path;
use std::process::ExitCode;

/// Success and the number of destinations when the config is valid; otherwise the error,
/// printed, and exit code 2.
pub fn check(path: &Path) -> ExitCode {
    match super::load(path) {
        Ok(c) => {
            println!(
                "{}: valid ({} destination{})",
                path.display(),
                c.destinations.len(),
                if c.destinations.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
