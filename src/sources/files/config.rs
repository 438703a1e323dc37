//! The `[[source]] type = "files"` section.

use crate::retention::RetentionRef;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSource {
    pub name: String,
    /// Files and directories (absolute, or relative to the config file).
    pub paths: Vec<PathBuf>,
    /// Glob patterns matched against full paths, e.g. "**/*.log".
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub retention: Option<RetentionRef>,
}
