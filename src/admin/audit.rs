//! The audit trail: one `tracing` event per admin call, allowed or refused, on the
//! `jwtgate::audit` target, naming the caller, the method, what it was about and the outcome.
//! Targets name issuers, `jti`s and subjects, never a whole token.

use tonic::Status;

/// The log target of audit events.
pub const TARGET: &str = "jwtgate::audit";

/// Longest value (in characters) an audit target quotes; longer ones are cut.
const MAX_VALUE_CHARS: usize = 200;

/// A value for an audit target: quoted and escaped (so it stays on one line), cut when long.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_VALUE_CHARS) {
        Some((end, _)) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// Records one admin call: `outcome` is what was done, or the status it was refused with.
pub fn record(caller: &str, method: &str, target: &str, outcome: Result<&str, &Status>) {
    match outcome {
        Ok(done) => tracing::info!(target: TARGET, caller, method, target, outcome = done, "admin call"),
        Err(status) => tracing::warn!(
            target: TARGET,
            caller,
            method,
            target,
            outcome = "refused",
            code = ?status.code(),
            detail = status.message(),
            "admin call"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_on_one_line_and_cut_when_long() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "é".repeat(500);
        let q = quote(&long);
        assert!(q.ends_with('…'));
        assert_eq!(q.chars().count(), MAX_VALUE_CHARS + 3);
    }
}
