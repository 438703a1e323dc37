//! Where things are under a storage's root: every key name drctl reads or writes is spelled
//! here and nowhere else (README "What is stored" documents the same layout for by-hand restores).
//!
//! ```text
//! data/<source>/<id>.<format>[.zst|.gz].age     the artifact: age(compress(dump))
//! manifests/<source>/<id>.json                  written last: its presence means "complete"
//! verify/<source>/<id>.json                     restore verification records
//! locks/<id>.json                               present only while a backup or prune runs
//! .tmp/                                         fs storages: uploads in progress
//! ```

pub const DATA: &str = "data/";
pub const MANIFESTS: &str = "manifests/";
pub const VERIFY: &str = "verify/";
pub const LOCKS: &str = "locks/";
/// OpenDAL's fs backend writes here first and renames on completion.
pub const FS_TEMP: &str = ".tmp/";

/// `data/<source>/`
pub fn data_prefix(source: &str) -> String {
    format!("{DATA}{source}/")
}

/// The artifact; `suffix` is the compression's file suffix (".zst", ".gz" or "").
pub fn data_key(source: &str, id: &str, format: &str, suffix: &str) -> String {
    format!("{DATA}{source}/{id}.{format}{suffix}.age")
}

/// `manifests/`, or `manifests/<source>/`.
pub fn manifest_prefix(source: Option<&str>) -> String {
    match source {
        Some(s) => format!("{MANIFESTS}{s}/"),
        None => MANIFESTS.to_string(),
    }
}

pub fn manifest_key(source: &str, id: &str) -> String {
    format!("{MANIFESTS}{source}/{id}.json")
}

pub fn verify_key(source: &str, id: &str) -> String {
    format!("{VERIFY}{source}/{id}.json")
}

pub fn lock_key(id: &str) -> String {
    format!("{LOCKS}{id}.json")
}
