use super::FilesFacts;
use crate::verification::{check, extract, Check};
use anyhow::anyhow;
use std::path::Path;
use std::time::Instant;

pub async fn verify(facts: &FilesFacts, tarfile: &Path, work: &Path, t0: Instant) -> (Vec<Check>, Option<f64>) {
    let mut checks = Vec::new();
    let dest = work.join("files");
    let (c, ok) = extract(tarfile, &dest, "extract").await;
    checks.push(c);
    if !ok {
        return (checks, None);
    }
    let rto = t0.elapsed().as_secs_f64();
    // Names that are not UTF-8 are recorded apart (by their bytes in hex): both are checked.
    let files = facts.tar.file_facts();
    let mut bad = Vec::new();
    for (name, want) in &files {
        use sha2::Digest;
        let name_shown = name.display();
        match std::fs::read(dest.join(name)) {
            Ok(b) => {
                let got = hex::encode(sha2::Sha256::digest(&b));
                if got != want.sha256 {
                    bad.push(format!("{name_shown}: SHA-256 {got}, recorded \"{}\"", want.sha256));
                }
            }
            Err(e) => bad.push(format!("{name_shown}: {e}")),
        }
    }
    checks.push(check(
        "file hashes",
        if bad.is_empty() {
            Ok(format!("{} files, every SHA-256 equal to the manifest's", files.len()))
        } else {
            Err(anyhow!("{}", bad.join("; ")))
        },
    ));
    (checks, Some(rto))
}
