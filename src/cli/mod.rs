//! The commands behind `jwtgate`'s command line (`main.rs` only parses arguments): [`serve`],
//! [`check`], [`token`] tooling and the [`admin`] API's client commands, plus what they share —
//! loading the config and starting a runtime. Exit codes: 0 success (or allow), 1 failure (or
//! deny), 2 unusable input (a config, a key, an argument).

pub mod admin;
pub mod check;
pub mod serve;
pub mod token;

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use jwtgate_core::config::{Config, ConfigError};

/// Exit code for input that cannot be used: a config, a key, an argument.
pub const UNUSABLE: u8 = 2;

/// Which runtime a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `serve`: one worker thread per CPU the process may run on.
    Server,
    /// One-shot commands: the current thread.
    OneShot,
}

/// Runs `command` to completion on a fresh runtime of `flavor`.
pub fn run(flavor: Flavor, command: impl Future<Output = ExitCode>) -> ExitCode {
    let mut builder = match flavor {
        Flavor::Server => tokio::runtime::Builder::new_multi_thread(),
        Flavor::OneShot => tokio::runtime::Builder::new_current_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => {
            eprintln!("jwtgate: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and validates a config file as `serve` and `validate-config` do: the config itself,
/// then what only the binary can check (TLS files).
pub fn checked_config(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    crate::tls::check(&config).map_err(|e| e.in_file(path))?;
    Ok(config)
}

/// [`checked_config`]; an unusable file is reported (file, field, reason) and answered with
/// exit code 2.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    checked_config(path).map_err(|e| config_error(&e))
}

/// `jwtgate validate-config FILE`.
pub fn validate_config(file: &Path) -> ExitCode {
    match load_config(file) {
        Ok(c) => {
            for s in &c.loose_secrets {
                eprintln!(
                    "jwtgate: warning: {}: {} (mode {:04o}) other users may read or change; chmod 0600, owned by jwtgate's user or root",
                    s.field,
                    s.path.display(),
                    s.mode
                );
            }
            println!("{}: ok ({} provider(s))", file.display(), c.providers.len());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("jwtgate: invalid config: {e}");
    ExitCode::from(UNUSABLE)
}
