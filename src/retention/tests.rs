use super::*;
use proptest::prelude::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn daily(from: &str, days: i64, hour: u32) -> Vec<Backup> {
    let start = t(from);
    (0..days)
        .map(|d| {
            let time = start + chrono::Duration::days(d) + chrono::Duration::hours(hour as i64);
            Backup {
                id: time.format("%Y%m%dT%H%M").to_string(),
                time,
                verified: None,
                pinned: false,
            }
        })
        .collect()
}

/// A year and more: one backup a day at 03:00 UTC, a second one at 15:00 every fifth day,
/// an 11-day gap in February, backups around both 2026 DST changes in Europe, and a run
/// through ISO week 2026-W53 into 2027.
fn timeline() -> Vec<Backup> {
    let mut v = daily("2025-10-01T00:00:00Z", 460, 3);
    v.extend(daily("2025-10-01T00:00:00Z", 460, 15).into_iter().step_by(5));
    v.retain(|b| !(b.time >= t("2026-02-10T00:00:00Z") && b.time < t("2026-02-21T00:00:00Z")));
    for s in [
        "2026-03-29T00:30:00Z",
        "2026-03-29T01:30:00Z", // Berlin: 01:30 CET, 03:30 CEST
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:30:00Z", // Berlin: 02:30 CEST, 02:30 CET
    ] {
        v.push(Backup {
            id: format!("dst-{s}"),
            time: t(s),
            verified: None,
            pinned: false,
        });
    }
    v
}

const NOW: &str = "2027-01-03T20:00:00Z";

fn render(decisions: &[Decision]) -> String {
    let dropped = decisions.iter().filter(|d| !d.keep).count();
    let mut s = format!(
        "{} backups, {} kept, {} dropped\n",
        decisions.len(),
        decisions.len() - dropped,
        dropped
    );
    for d in decisions.iter().filter(|d| d.keep) {
        s.push_str(&format!(
            "{} {}: {}\n",
            d.time.format("%Y-%m-%d %H:%M"),
            d.id,
            d.reasons.join(", ")
        ));
    }
    s
}

fn policy(text: &str) -> Policy {
    toml::from_str(text).unwrap()
}

#[test]
fn snapshot_default_policy_on_the_timeline() {
    let d = apply(&Policy::default_policy(), &timeline(), t(NOW)).unwrap();
    insta::assert_snapshot!("default_7_4_3", render(&d));
}

#[test]
fn snapshot_hourly_daily_in_berlin_across_dst() {
    // `now` right after the autumn DST change, to look at the buckets around it.
    let p = policy("keep_hourly = 6\nkeep_daily = 3\ntimezone = \"Europe/Berlin\"");
    let d = apply(&p, &timeline(), t("2026-10-25T16:00:00Z")).unwrap();
    let d: Vec<Decision> = d.into_iter().filter(|d| d.time <= t("2026-10-25T16:00:00Z")).collect();
    insta::assert_snapshot!("hourly_daily_berlin_dst", render(&d));
}

#[test]
fn snapshot_last_weekly_yearly_within() {
    let p = policy("keep_last = 3\nkeep_weekly = 2\nkeep_yearly = 5\nkeep_within = \"2d\"");
    let d = apply(&p, &timeline(), t(NOW)).unwrap();
    insta::assert_snapshot!("last_weekly_yearly_within", render(&d));
}

#[test]
fn iso_week_53_is_its_own_bucket() {
    let p = policy("keep_weekly = 2");
    let d = apply(&p, &timeline(), t(NOW)).unwrap();
    let kept: Vec<String> = d.iter().filter(|d| d.keep).flat_map(|d| d.reasons.clone()).collect();
    assert!(kept.contains(&"weekly 2026-W53".to_string()), "{kept:?}");
}

#[test]
fn worked_example_from_the_doc_comment() {
    let b = daily("2026-07-24T00:00:00Z", 120, 3);
    assert_eq!(b.last().unwrap().time, t("2026-11-20T03:00:00Z"));
    let d = apply(&Policy::default_policy(), &b, t("2026-11-20T12:00:00Z")).unwrap();
    let kept: Vec<String> = d
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.time.format("%m-%d").to_string())
        .collect();
    assert_eq!(
        kept,
        [
            "11-20", "11-19", "11-18", "11-17", "11-16", "11-15", "11-14", "11-13", "11-08", "11-01", "10-25", "10-18",
            "09-30", "08-31"
        ]
    );
}

#[test]
fn empty_policy_is_an_error_not_delete_everything() {
    let e = apply(&Policy::default(), &timeline(), t(NOW)).unwrap_err().to_string();
    assert!(e.contains("keeps nothing"), "{e}");
    let e = apply(&policy("keep_daily = 0"), &timeline(), t(NOW))
        .unwrap_err()
        .to_string();
    assert!(e.contains("keeps nothing"), "{e}");
    assert!(policy("keep_within = \"2 days\"").check()[0].contains("not a duration"));
    assert!(policy("keep_last = 1\ntimezone = \"Mars/Olympus\"").check()[0].contains("IANA"));
}

/// The kept backups as (month-day, reasons), newest first.
fn kept_days(d: &[Decision]) -> Vec<(String, Vec<String>)> {
    d.iter()
        .filter(|d| d.keep)
        .map(|d| (d.time.format("%m-%d").to_string(), d.reasons.clone()))
        .collect()
}

#[test]
fn the_newest_verified_backup_survives_newer_unverified_ones() {
    let mut b = daily("2026-11-01T00:00:00Z", 10, 3);
    b[2].verified = Some(true); // 11-03 passed verification
    b[8].verified = Some(false); // 11-09 failed
    let d = apply(&policy("keep_last = 2"), &b, t("2026-11-11T00:00:00Z")).unwrap();
    let kept = kept_days(&d);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept[2], ("11-03".to_string(), vec!["newest verified".to_string()]));
    // Once the newest is verified, the old one is no longer needed.
    b[9].verified = Some(true);
    let d = apply(&policy("keep_last = 2"), &b, t("2026-11-11T00:00:00Z")).unwrap();
    assert_eq!(d.iter().filter(|d| d.keep).count(), 2);
}

#[test]
fn future_backups_are_kept_and_flagged() {
    let mut b = daily("2026-11-01T00:00:00Z", 10, 3);
    b.push(Backup {
        id: "skewed".into(),
        time: t("2027-06-01T00:00:00Z"),
        verified: None,
        pinned: false,
    });
    let d = apply(&policy("keep_last = 1"), &b, t("2026-11-10T12:00:00Z")).unwrap();
    let skewed = d.iter().find(|d| d.id == "skewed").unwrap();
    assert!(skewed.keep && skewed.reasons[0].contains("future"));
    // The newest non-future backup is still the one kept as "newest".
    let newest = d.iter().find(|d| d.reasons.contains(&"newest".to_string())).unwrap();
    assert_eq!(newest.time, t("2026-11-10T03:00:00Z"));
}

#[test]
fn shipped_policy_files_parse_and_default_matches_builtin() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let pol: Policy =
            toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(pol.check().is_empty(), "{}: {:?}", p.display(), pol.check());
        if p.file_name().unwrap() == "default.toml" {
            assert_eq!(pol, Policy::default_policy());
        }
        n += 1;
    }
    assert!(n >= 2, "expected several shipped policies");
}

fn arb_backups() -> impl Strategy<Value = Vec<Backup>> {
    // Up to 300 backups within ~500 days, at any minute.
    prop::collection::vec(0i64..500 * 24 * 60, 1..300).prop_map(|mins| {
        let base = t("2025-06-01T00:00:00Z");
        let mut v: Vec<Backup> = mins
            .into_iter()
            .enumerate()
            .map(|(i, m)| Backup {
                id: format!("b{i:04}"),
                time: base + chrono::Duration::minutes(m),
                verified: None,
                pinned: false,
            })
            .collect();
        v.sort_by_key(|b| b.time);
        v
    })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        prop::option::of(0u32..5),
        prop::option::of(0u32..30),
        prop::option::of(0u32..10),
        prop::option::of(0u32..8),
        prop::option::of(0u32..3),
        prop::bool::ANY,
        prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    )
        .prop_map(|(last, hourly, daily, weekly, yearly, within, tz)| Policy {
            keep_last: last,
            keep_hourly: hourly,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: Some(2),
            keep_yearly: yearly,
            keep_within: within.then(|| crate::units::Duration::known("3d")),
            timezone: Some(crate::units::TimeZone::known(tz)),
        })
}

proptest! {
    #[test]
    fn newest_is_never_dropped(b in arb_backups(), p in arb_policy()) {
        let now = t("2027-01-01T00:00:00Z");
        let d = apply(&p, &b, now).unwrap();
        prop_assert!(d[0].keep);
        prop_assert_eq!(d[0].time, b.iter().map(|b| b.time).max().unwrap());
    }

    #[test]
    fn applying_twice_equals_once(b in arb_backups(), p in arb_policy()) {
        let now = t("2027-01-01T00:00:00Z");
        let first = apply(&p, &b, now).unwrap();
        let kept: Vec<Backup> = first.iter().filter(|d| d.keep).map(|d| Backup { id: d.id.clone(), time: d.time, verified: None, pinned: false }).collect();
        let second = apply(&p, &kept, now).unwrap();
        prop_assert!(second.iter().all(|d| d.keep), "second pass drops {:?}", second.iter().filter(|d| !d.keep).collect::<Vec<_>>());
    }

    #[test]
    fn decisions_do_not_depend_on_now_moving_forward(b in arb_backups(), p in arb_policy(), later in 0i64..(400 * 24 * 60)) {
        let newest = b.iter().map(|b| b.time).max().unwrap();
        let a = apply(&p, &b, newest).unwrap();
        let c = apply(&p, &b, newest + chrono::Duration::minutes(later)).unwrap();
        prop_assert_eq!(a, c);
    }

    #[test]
    fn one_a_day_for_120_days_keeps_14(start in 0i64..3000, hour in 0u32..24) {
        let from = t("2019-01-01T00:00:00Z") + chrono::Duration::days(start);
        let b = daily(&from.to_rfc3339(), 120, hour);
        let d = apply(&Policy::default_policy(), &b, b.last().unwrap().time).unwrap();
        prop_assert_eq!(d.iter().filter(|d| d.keep).count(), 14);
    }
}

#[test]
fn pinned_backups_are_kept_whatever_the_policy() {
    let mut b = daily("2026-11-01T00:00:00Z", 10, 3);
    b[1].pinned = true;
    let d = apply(&policy("keep_last = 2"), &b, t("2026-11-11T00:00:00Z")).unwrap();
    let kept = kept_days(&d);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept[2], ("11-02".to_string(), vec!["pinned".to_string()]));
}

#[test]
fn the_default_keeps_everything_from_the_last_day() {
    // Regression: with 7 daily alone, a manual backup at 14:00 dropped that morning's nightly,
    // and a schedule every few seconds kept exactly one backup.
    let b: Vec<Backup> = (0..20)
        .map(|i| Backup {
            id: format!("b{i:02}"),
            time: t("2026-11-20T03:00:00Z") + chrono::Duration::minutes(30 * i),
            verified: None,
            pinned: false,
        })
        .collect();
    let d = apply(&Policy::default_policy(), &b, t("2026-11-20T14:00:00Z")).unwrap();
    assert!(d.iter().all(|d| d.keep), "{d:?}");
}
