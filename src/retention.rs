//! Retention as a pure function: `(policy, backups, now) -> decisions`, each with its reasons.
//! Nothing here reads the clock or touches storage; `prune` builds a plan from these decisions
//! and only `prune::apply` deletes.
//!
//! # Semantics
//!
//! * Buckets are calendar buckets in the policy's `timezone` (default UTC): hour, day, ISO week
//!   (Monday–Sunday, so 2026-12-31 is in 2026-W53), month, year.
//! * The newest backup of a bucket represents it. Buckets without backups do not use up a slot:
//!   `keep_daily = 7` keeps the 7 newest *days that have backups*, however far apart.
//! * Rules cascade in the order last → hourly → daily → weekly → monthly → yearly. A rule only
//!   looks at backups older than the oldest bucket kept by the rules before it, so a backup kept
//!   by an earlier rule never counts toward a later one. `keep_within` is independent: it keeps
//!   everything younger than the duration, measured from the newest backup (not from `now`, so
//!   a backup host that was down for a month does not come back and prune everything).
//! * The newest backup is always kept, and so is the newest backup whose restore verification
//!   passed while any newer one is unverified or failed. Backups dated after `now` (clock skew) are kept and
//!   reported; they take no part in the cascade.
//! * Pinned backups (`drctl backup --keep`) are kept whatever the policy says, and take no part
//!   in the cascade's counting beyond that.
//! * A policy that keeps nothing is an error, never "delete everything".
//!
//! # Worked example
//!
//! 7 daily / 4 weekly / 3 monthly, one backup a day at 03:00 UTC for 120 days up to Friday
//! 2026-11-20: daily keeps 11-14 … 11-20 (7 days). Weekly looks at backups before 11-14: the
//! newest of ISO week 2026-W46 before that day is 11-13, then 11-08 (W45), 11-01 (W44),
//! 10-25 (W43). Monthly looks at backups before Monday 10-19 (start of W43): 10-18 (October),
//! 09-30 (September), 08-31 (August). 14 backups in all.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// e.g. "2d", "36h", "1w"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<crate::units::Duration>,
    /// IANA name, e.g. "Europe/Berlin"; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<crate::units::TimeZone>,
}

/// `retention = "policies/db.toml"` or `retention = { keep_daily = 7, … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RetentionRef {
    File(std::path::PathBuf),
    Inline(Policy),
}

impl Policy {
    /// Everything from the last 24 hours, then 7 daily / 4 weekly / 3 monthly: the same as
    /// `policies/default.toml` (a test checks). The 24 hours keep a manual backup taken before
    /// a risky change, and frequent scheduled ones, from being pruned by the next run.
    pub fn default_policy() -> Policy {
        Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(3),
            keep_within: Some(crate::units::Duration::known("24h")),
            ..Policy::default()
        }
    }

    /// Every problem with the policy, for `validate`.
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        let keeps_something = counts.iter().any(|c| c.unwrap_or(0) > 0) || self.keep_within.is_some();
        if !keeps_something {
            errors.push("policy keeps nothing; set at least one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within (an empty policy is never read as \"delete everything\")".into());
        }
        if let Some(e) = self.keep_within.as_ref().and_then(|w| w.error()) {
            errors.push(format!("keep_within: {e}"));
        }
        if let Some(e) = self.timezone.as_ref().and_then(|t| t.error()) {
            errors.push(format!("timezone: {e}"));
        }
        errors
    }

    fn tz(&self) -> Tz {
        self.timezone.as_ref().map(|t| *t.get()).unwrap_or(Tz::UTC)
    }
}

/// What retention needs to know about a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub id: String,
    pub time: DateTime<Utc>,
    /// Result of the last restore verification: passed, failed, or never verified.
    pub verified: Option<bool>,
    /// `drctl backup --keep`: kept whatever the policy says, until unpinned.
    pub pinned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub time: DateTime<Utc>,
    pub keep: bool,
    pub reasons: Vec<String>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.time.format("%Y-%m-%d %H:%M"),
            if self.keep { "keep" } else { "drop" },
            self.reasons.join(", ")
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("retention policy is invalid: {0}")]
pub struct PolicyError(String);

#[derive(Clone, Copy)]
enum Rule {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    /// The bucket's label (also its identity) and the bucket's start, in the policy's zone.
    fn bucket(self, tz: Tz, t: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let local = t.with_timezone(&tz);
        let d = local.date_naive();
        let (label, start): (String, NaiveDateTime) = match self {
            Rule::Hourly => (
                format!("hourly {} {:02}h", d, local.hour()),
                d.and_hms_opt(local.hour(), 0, 0).expect("valid hour"),
            ),
            Rule::Daily => (format!("daily {d}"), d.and_hms_opt(0, 0, 0).expect("midnight")),
            Rule::Weekly => {
                let w = d.iso_week();
                let monday = NaiveDate::from_isoywd_opt(w.year(), w.week(), chrono::Weekday::Mon).expect("iso week");
                (
                    format!("weekly {}-W{:02}", w.year(), w.week()),
                    monday.and_hms_opt(0, 0, 0).expect("midnight"),
                )
            }
            Rule::Monthly => (
                format!("monthly {}-{:02}", d.year(), d.month()),
                NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
                    .expect("first")
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight"),
            ),
            Rule::Yearly => (
                format!("yearly {}", d.year()),
                NaiveDate::from_ymd_opt(d.year(), 1, 1)
                    .expect("jan 1")
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight"),
            ),
        };
        (label, local_to_utc(tz, start))
    }
}

/// A local wall-clock time to UTC. In a DST gap (the hour that does not exist) take the first
/// instant after it; in an overlap take the earlier instant, so a bucket starts as early as it can.
fn local_to_utc(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        chrono::LocalResult::None => local_to_utc(tz, naive + chrono::Duration::hours(1)),
    }
}

/// Decides, for every backup, keep or drop, with reasons. Output is newest first.
pub fn apply(policy: &Policy, backups: &[Backup], now: DateTime<Utc>) -> Result<Vec<Decision>, PolicyError> {
    let problems = policy.check();
    if !problems.is_empty() {
        return Err(PolicyError(problems.join("; ")));
    }
    let tz = policy.tz();
    let mut order: Vec<usize> = (0..backups.len()).collect();
    order.sort_by(|&a, &b| {
        backups[b]
            .time
            .cmp(&backups[a].time)
            .then(backups[b].id.cmp(&backups[a].id))
    });
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); backups.len()];

    // Future-dated backups: kept, flagged, and left out of everything else.
    let present: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| {
            if backups[i].time > now {
                reasons[i].push("in the future (clock skew?)".into());
                false
            } else {
                true
            }
        })
        .collect();
    if let Some(&newest) = present.first() {
        reasons[newest].push("newest".into());
        // Never drop the last backup known to restore while newer ones are unproven.
        if let Some(&nv) = present.iter().find(|&&i| backups[i].verified == Some(true)) {
            if nv != newest {
                reasons[nv].push("newest verified".into());
            }
        }
        if let Some(w) = &policy.keep_within {
            let d = w.chrono();
            let since = backups[newest].time - d;
            for &i in &present {
                if backups[i].time >= since {
                    reasons[i].push(format!("within {w}"));
                }
            }
        }
    }

    // Pinned backups (`drctl backup --keep`) stay until unpinned, outside the cascade.
    for &i in &order {
        if backups[i].pinned {
            reasons[i].push("pinned".into());
        }
    }

    // The cascade. `cutoff`: later rules see only backups strictly before it.
    let mut cutoff: Option<DateTime<Utc>> = None;
    let eligible = |cutoff: Option<DateTime<Utc>>, i: usize| cutoff.is_none_or(|c| backups[i].time < c);
    if let Some(n) = policy.keep_last.filter(|&n| n > 0) {
        let picked: Vec<usize> = present.iter().copied().take(n as usize).collect();
        for (k, &i) in picked.iter().enumerate() {
            reasons[i].push(format!("last {}", k + 1));
        }
        if let Some(&oldest) = picked.last() {
            cutoff = Some(backups[oldest].time);
        }
    }
    let rules = [
        (Rule::Hourly, policy.keep_hourly),
        (Rule::Daily, policy.keep_daily),
        (Rule::Weekly, policy.keep_weekly),
        (Rule::Monthly, policy.keep_monthly),
        (Rule::Yearly, policy.keep_yearly),
    ];
    for (rule, count) in rules {
        let Some(n) = count.filter(|&n| n > 0) else { continue };
        let mut last_label: Option<String> = None;
        let mut kept = 0u32;
        let mut oldest_start = None;
        for &i in present.iter().filter(|&&i| eligible(cutoff, i)) {
            let (label, start) = rule.bucket(tz, backups[i].time);
            if last_label.as_deref() == Some(label.as_str()) {
                continue; // not the newest of its bucket
            }
            if kept == n {
                break;
            }
            reasons[i].push(label.clone());
            last_label = Some(label);
            kept += 1;
            oldest_start = Some(start);
        }
        if oldest_start.is_some() {
            cutoff = oldest_start;
        }
    }

    Ok(order
        .into_iter()
        .map(|i| Decision {
            id: backups[i].id.clone(),
            time: backups[i].time,
            keep: !reasons[i].is_empty(),
            reasons: std::mem::take(&mut reasons[i]),
        })
        .collect())
}

#[cfg(test)]
mod tests;
