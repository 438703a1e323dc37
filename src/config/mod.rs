//! The configuration file: a TOML model, `${VAR}` expansion and a `validate()` that gathers
//! every error in one pass instead of stopping at the first (vector's config compiler does
//! the same: an operator fixing a file wants the whole list).
//!
//! Relative paths in the file (fs storage roots, identity files, password files) are resolved
//! against the directory that holds the config file, so `drctl daemon` started from `/` and
//! `drctl restore` started from a shell agree on where things are.

mod build;
mod expand;
mod model;

pub use crate::retention::RetentionRef;
pub use crate::units::*;
pub use expand::Uses;
pub use model::*;
// Sections that live with their kind, re-exported so `config::X` names every config type.
pub use crate::sources::files::FilesSource;
pub use crate::sources::nats::{NatsAccess, NatsMode, NatsSource};
pub use crate::sources::postgres::{PostgresSource, SqlAssertion};
pub use crate::sources::postgres_cluster::ClusterSource;
pub use crate::sources::redis::{RedisMode, RedisSource};
pub use crate::sources::SourceConfig;
pub use crate::storage::config::*;

use std::fmt;
use std::path::{Path, PathBuf};

/// Every problem found in a config file, each naming the key and the bad value.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "config {}: {} problem{}",
            self.file.display(),
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where the config comes from: `--config`, else `$DRCTL_CONFIG`, else `./drctl.toml`.
/// (clap already folds `$DRCTL_CONFIG` into the flag.)
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("drctl.toml"))
}

/// Read, expand, parse and validate. Touches no network.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_for(path, Uses::All)
}

/// [`load`], expanding `${VAR}` only in the keys `uses` needs (see [`Uses`]).
pub fn load_for(path: &Path, uses: Uses) -> Result<Config, ConfigErrors> {
    let fail = |errors: Vec<String>| ConfigErrors {
        file: path.to_path_buf(),
        errors,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(vec![format!(
            "cannot read {}: {e} (pass --config FILE, set DRCTL_CONFIG, or run `drctl init` to write a starter config)",
            path.display()
        )])
    })?;
    if let Some(e) = crate::keys::check_private(path, "config") {
        return Err(fail(vec![e]));
    }
    let base = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    parse_for(&text, &base, uses).map_err(fail)
}

/// Parse config text; `base` resolves relative paths.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<String>> {
    parse_for(text, base, Uses::All)
}

pub fn parse_for(text: &str, base: &Path, uses: Uses) -> Result<Config, Vec<String>> {
    let mut value: toml::Table = toml::from_str(text).map_err(|e| vec![format!("not valid TOML: {e}")])?;
    let mut errors = Vec::new();
    let mut unexpanded = Vec::new();
    expand::expand_table(&mut value, "", uses, &mut errors, &mut unexpanded);
    let raw = build::RawSections::split(value, &mut errors);
    let config = raw.build(base, &mut errors);
    match config {
        Some(mut c) if errors.is_empty() => {
            for u in &unexpanded {
                tracing::debug!(detail = %u, "left as written: this command does not use it");
            }
            c.unexpanded = unexpanded;
            Ok(c)
        }
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests;
