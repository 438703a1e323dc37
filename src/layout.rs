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

/// Names become part of object keys: 1-64 of a-z, A-Z, 0-9, '-', '_', each used once.
pub fn check_names<'a>(what: &str, names: impl Iterator<Item = &'a str>, errors: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.enumerate() {
        let ok = !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            errors.push(format!(
                "{what}[{i}].name: '{n}' must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_' (it becomes part of object keys)"
            ));
        }
        if !seen.insert(n) {
            errors.push(format!("{what}[{i}].name: '{n}' is used twice; names must be unique"));
        }
    }
}

pub fn new_id(at: chrono::DateTime<chrono::Utc>) -> String {
    use rand::Rng;
    let r: u32 = rand::thread_rng().gen();
    format!("{}-{:08x}", at.format("%Y%m%dT%H%M%SZ"), r)
}
