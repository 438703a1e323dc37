//! `drctl check`.

use super::*;

pub(super) async fn check(cfg: &Config, a: &CheckArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let read = match (a.read_data, &a.read_data_subset) {
        (true, _) => crate::check::ReadData::All,
        (false, Some(p)) => {
            let n: u8 = p
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| anyhow::anyhow!("--read-data-subset: '{p}' is not a percentage like 10%"))?;
            crate::check::ReadData::Subset(n)
        }
        _ => crate::check::ReadData::No,
    };
    let r = crate::check::check(cfg, &storages, read).await?;
    for n in &r.notes {
        println!("note: {n}");
    }
    for p in &r.problems {
        println!("PROBLEM {p}");
    }
    println!(
        "checked {} backup(s) on {} storage(s), read {} object(s): {} problem(s)",
        r.backups,
        storages.len(),
        r.objects_read,
        r.problems.len()
    );
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}
