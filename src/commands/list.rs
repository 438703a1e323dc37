//! `drctl list`.

use super::*;

pub(super) async fn list(cfg: &Config, a: &ListArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    // Whatever can be read is listed; what cannot is named on stderr and makes the exit code 1.
    let listing = catalog::list(&storages, a.source.as_deref()).await;
    for p in &listing.problems {
        eprintln!("warning: {p}");
    }
    let code = if listing.problems.is_empty() { 0 } else { 1 };
    let readable: Vec<&Storage> = storages.iter().filter(|s| !listing.storage_failed(&s.name)).collect();
    let mut entries = listing.entries;
    if let Some(path) = &a.identity {
        let identities = crate::keys::load_identities(path)?;
        for e in &mut entries {
            // The private facts are in the manifest objects, not in the index.
            catalog::reload(&storages, e).await?;
            e.manifest.open_private(&identities)?;
        }
    }
    let entries = &entries;
    // The latest verification of each backup, from whichever storage recorded it.
    let mut verified: std::collections::HashMap<(String, String), crate::verification::Record> = Default::default();
    for st in &readable {
        for (k, r) in crate::verification::records(st).await? {
            match verified.get(&k) {
                Some(old) if old.at >= r.at => {}
                _ => {
                    verified.insert(k, r);
                }
            }
        }
    }
    let verification = |m: &catalog::Manifest| verified.get(&(m.source.clone(), m.id.clone()));
    let mut pins = std::collections::HashMap::new();
    for st in &readable {
        pins.extend(crate::pin::pins(st).await?);
    }
    let pin = |m: &catalog::Manifest| pins.get(&(m.source.clone(), m.id.clone()));
    if a.json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let mut m = serde_json::to_value(&e.manifest).expect("manifest serializes");
                m["held_by"] = serde_json::json!(e.storages);
                m["verification"] = serde_json::to_value(verification(&e.manifest)).expect("record serializes");
                m["pin"] = serde_json::to_value(pin(&e.manifest)).expect("pin serializes");
                m
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    if entries.is_empty() {
        println!("no backups yet");
        return Ok(code);
    }
    // Grouped by run: the sources backed up together are one recovery point.
    let mut runs: Vec<&str> = Vec::new();
    for e in entries {
        if !runs.contains(&e.manifest.run_id.as_str()) {
            runs.push(&e.manifest.run_id);
        }
    }
    for run in runs {
        let members: Vec<&catalog::Entry> = entries.iter().filter(|e| e.manifest.run_id == run).collect();
        println!("run {run}");
        println!(
            "  {:<28} {:<16} {:<20} {:>10} {:>10}  {:<9} STORAGES",
            "ID", "SOURCE", "TIME (UTC)", "SIZE", "STORED", "VERIFIED"
        );
        for e in members {
            let m = &e.manifest;
            let v = match verification(m) {
                Some(r) if r.ok => "verified",
                Some(_) => "FAILED",
                None => "never",
            };
            println!(
                "  {:<28} {:<16} {:<20} {:>10} {:>10}  {:<9} {}",
                m.id,
                m.source,
                m.started_at.format("%Y-%m-%d %H:%M:%S"),
                catalog::human_bytes(m.plain.size),
                catalog::human_bytes(m.stored.size),
                v,
                e.storages.join(",")
            );
            if let Some(p) = pin(m) {
                println!(
                    "    pinned {}: {}",
                    p.at.format("%Y-%m-%d %H:%M"),
                    p.note.as_deref().unwrap_or("(no note)")
                );
            }
        }
    }
    Ok(code)
}
