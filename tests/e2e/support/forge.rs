//! Hostile artifacts: a tar built by a Python `tarfile` script, encrypted with stock zstd and
//! age in place of a real backup's artifact, with the manifest's sizes and hashes re-pointed at
//! it, so it passes every integrity check and only the extraction's own checks stand between it
//! and the restore directory.

use super::{files_under, sh, Workspace};

/// Replaces the artifact of the only backup in the workspace's fs storage `storage` with the
/// tar that `python` writes to `x.tar` (in a scratch dir; `tarfile`, `io` are imported).
pub fn forge_tar_artifact(ws: &Workspace, storage: &str, python: &str) {
    use sha2::Digest;
    let root = ws.fs_root(storage);
    let files = files_under(&root);
    let obj = root.join(files.iter().find(|f| f.starts_with("data/")).unwrap());
    let manifest = root.join(files.iter().find(|f| f.starts_with("manifests/")).unwrap());
    let evil = tempfile::tempdir().unwrap();
    std::fs::write(evil.path().join("make.py"), format!("import tarfile, io\n{python}\n")).unwrap();
    sh(
        &format!(
            "cd '{}' && python3 make.py && zstd -q x.tar -o x.tar.zst && age -r {} -o '{}' x.tar.zst",
            evil.path().display(),
            ws.recipient,
            obj.display()
        ),
        &[],
    );
    let plain = std::fs::read(evil.path().join("x.tar")).unwrap();
    let stored = std::fs::read(&obj).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["plain"] = serde_json::json!({"size": plain.len(), "sha256": hex::encode(sha2::Sha256::digest(&plain))});
    m["stored"] = serde_json::json!({"size": stored.len(), "sha256": hex::encode(sha2::Sha256::digest(&stored))});
    m["objects"][0]["size"] = serde_json::json!(stored.len());
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
}
