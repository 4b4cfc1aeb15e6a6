//! Tracing: structured logs on stderr, filtered by the configured `log` directive.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `filter`.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A full disk under a redirected stderr must not panic a handler (the fallback report
        // of a failed write is an `eprintln!`, which panics when stderr cannot be written).
        .log_internal_errors(false)
        .try_init();
}
