//! Where things are under a storage's root: every key name drctl reads or writes is spelled
//! here and nowhere else (README "What is stored" documents the same layout for by-hand restores).
//!
//! ```text
//! data/<source>/<id>.<format>[.zst|.gz].age     the artifact: age(compress(dump))
//! manifests/<source>/<id>.json                  written last: its presence means "complete"
//! verify/<source>/<id>.json                     restore verification records
//! pins/<source>/<id>.json                       `backup --keep`: never pruned until `unpin`
//! locks/<id>.json                               present only while a backup or prune runs
//! index/<source>.json                           the source's manifests in one object: a cache
//! wal/<source>/archive.json                     the PostgreSQL cluster a WAL archive belongs to
//! wal/<source>/<TLI>/<file>[.zst|.gz].age       a WAL file (segment, timeline history, backup label)
//! wal/<source>/<TLI>/<file>.json                its record, written last: presence means "archived"
//! .tmp/                                         fs storages: uploads in progress
//! ```

pub const DATA: &str = "data/";
pub const MANIFESTS: &str = "manifests/";
pub const VERIFY: &str = "verify/";
pub const LOCKS: &str = "locks/";
pub const PINS: &str = "pins/";
pub const INDEX: &str = "index/";
pub const WAL: &str = "wal/";
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

/// `index/<source>.json`: a copy of the source's manifests (see `catalog::Index`).
pub fn index_key(source: &str) -> String {
    format!("{INDEX}{source}.json")
}

/// `wal/<source>/`: a `postgres_cluster` source's WAL archive.
pub fn wal_prefix(source: &str) -> String {
    format!("{WAL}{source}/")
}

/// `wal/<source>/archive.json`: the cluster the archive belongs to.
pub fn wal_archive_key(source: &str) -> String {
    format!("{WAL}{source}/archive.json")
}

/// `wal/<source>/<TLI>/`: the files of one timeline, in LSN order when listed by name.
pub fn wal_timeline_prefix(source: &str, timeline: u32) -> String {
    format!("{WAL}{source}/{timeline:08X}/")
}

/// A WAL file's data object (`suffix`: the compression's, ".zst", ".gz" or "").
pub fn wal_data_key(source: &str, timeline: u32, file: &str, suffix: &str) -> String {
    format!("{WAL}{source}/{timeline:08X}/{file}{suffix}.age")
}

/// A WAL file's record, written after its data.
pub fn wal_record_key(source: &str, timeline: u32, file: &str) -> String {
    format!("{WAL}{source}/{timeline:08X}/{file}.json")
}

pub fn verify_key(source: &str, id: &str) -> String {
    format!("{VERIFY}{source}/{id}.json")
}

pub fn pin_key(source: &str, id: &str) -> String {
    format!("{PINS}{source}/{id}.json")
}

/// (source, id) from `pins/<source>/<id>.json`.
pub fn parse_pin_key(key: &str) -> Option<(String, String)> {
    let (source, file) = key.strip_prefix(PINS)?.split_once('/')?;
    let id = file.strip_suffix(".json")?;
    is_id(id).then(|| (source.to_string(), id.to_string()))
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

/// `20261203T083757Z-789770bc`: what `new_id` makes.
pub fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 25
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Whether `key` is a name drctl gives an artifact or one of its parts:
/// `data/<source>/<id>.<format>[.zst|.gz].age[.partNNNNNN]`. The orphan sweep deletes only
/// these: a storage root may be shared, and what another tool put under `data/` is not ours.
pub fn is_artifact_key(key: &str) -> bool {
    artifact_owner(key).is_some()
}

/// (source, id) of the backup an artifact key belongs to, if `key` is one of drctl's names.
pub fn artifact_owner(key: &str) -> Option<(&str, &str)> {
    let (source, file) = key.strip_prefix(DATA)?.split_once('/')?;
    let name_ok = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !name_ok(source) || file.contains('/') {
        return None;
    }
    let file = match file.rsplit_once(".part") {
        Some((f, n)) if n.len() == 6 && n.bytes().all(|c| c.is_ascii_digit()) => f,
        _ => file,
    };
    let stem = file.strip_suffix(".age")?;
    let stem = stem
        .strip_suffix(".zst")
        .or_else(|| stem.strip_suffix(".gz"))
        .unwrap_or(stem);
    match stem.split_once('.') {
        Some((id, format)) if is_id(id) && name_ok(format) => Some((source, id)),
        _ => None,
    }
}

/// (source, id) from `manifests/<source>/<id>.json`.
pub fn parse_manifest_key(key: &str) -> Option<(&str, &str)> {
    let (source, file) = key.strip_prefix(MANIFESTS)?.split_once('/')?;
    let id = file.strip_suffix(".json")?;
    is_id(id).then_some((source, id))
}

/// Whether `key` is an fs temp file of one of drctl's own objects: OpenDAL writes
/// `.tmp/<file name>.<random>`, and every file name drctl writes starts with an id.
pub fn is_own_temp(key: &str) -> bool {
    key.strip_prefix(FS_TEMP)
        .is_some_and(|n| n.len() > 26 && n.is_char_boundary(25) && is_id(&n[..25]) && n[25..].starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drctl_names_are_artifacts() {
        let id = "20261203T083757Z-789770bc";
        for k in [
            format!("data/app-db/{id}.pgdump.zst.age"),
            format!("data/cache/{id}.rdb.gz.age"),
            format!("data/config/{id}.tar.age"),
            format!("data/events/{id}.tar.zst.age.part000012"),
        ] {
            assert!(is_artifact_key(&k), "{k}");
        }
        for k in [
            "data/photos/IMG_0001.jpg".to_string(),
            "data/notes.txt".to_string(),
            format!("data/app-db/{id}.pgdump.zst"),
            format!("data/app-db/sub/{id}.pgdump.zst.age"),
            format!("data/app-db/{id}.pgdump.zst.age.part12"),
            "data/app-db/20261203T083757Z-789770bZ.pgdump.zst.age".to_string(),
            format!("manifests/app-db/{id}.json"),
        ] {
            assert!(!is_artifact_key(&k), "{k}");
        }
        assert_eq!(
            artifact_owner(&format!("data/events/{id}.tar.zst.age.part000012")),
            Some(("events", id))
        );
        assert_eq!(
            parse_manifest_key(&format!("manifests/app-db/{id}.json")),
            Some(("app-db", id))
        );
        assert_eq!(parse_manifest_key("manifests/app-db/notes.json"), None);
        assert!(is_own_temp(&format!(".tmp/{id}.pgdump.zst.age.3a9f0c")));
        assert!(is_own_temp(&format!(".tmp/{id}.json.77")));
        assert!(!is_own_temp(".tmp/backup-of-my-thesis.odt"));
        assert!(!is_own_temp(&format!(".tmp/{id}")));
    }
}
