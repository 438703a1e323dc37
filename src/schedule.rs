//! Cron schedules: standard 5-field (`0 3 * * *`) or 6-field with seconds (`*/10 * * * * *`),
//! evaluated in a time zone. A [`Schedule`] is parsed once when the config loads; the daemon
//! sleeps until [`Schedule::next_after`] and `drctl status` shows the same value, so what
//! validates, what status promises and what runs are one computation.
//!
//! Day-of-month and day-of-week follow Vixie cron (and POSIX): when both are restricted, a
//! day matches if EITHER matches (`0 3 1 * 1` runs on the 1st and on every Monday); when
//! either field starts with `*` (`*`, `*/2`), both must match. croner implements both rules;
//! which one applies is chosen per expression here.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use chrono_tz::Tz;
use std::fmt;

/// The 6-field form (seconds first).
pub fn normalize(expr: &str) -> String {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() == 5 {
        format!("0 {}", fields.join(" "))
    } else {
        fields.join(" ")
    }
}

const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Range check per field, so the message names the field and its range; croner does the rest.
fn check_ranges(six: &str) -> Result<(), String> {
    for (value, (name, lo, hi)) in six.split_whitespace().zip(FIELDS) {
        for part in value.split(',') {
            let base = part.split('/').next().unwrap_or(part);
            for n in base.split('-') {
                if let Ok(v) = n.parse::<u32>() {
                    if v < lo || v > hi {
                        return Err(format!("{name} {v} out of range ({lo}-{hi})"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A cron expression, parsed.
#[derive(Clone)]
pub struct Schedule {
    six: String,
    cron: croner::Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.six)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.six)
    }
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let n = expr.split_whitespace().count();
        if n != 5 && n != 6 {
            return Err(format!(
                "has {n} fields; use 5 (minute hour day month weekday, e.g. '0 3 * * *') or 6 with seconds first"
            ));
        }
        let six = normalize(expr);
        check_ranges(&six)?;
        let fields: Vec<&str> = six.split_whitespace().collect();
        // Vixie cron's rule (see the module comment). croner's `?` means `*`.
        let starred = |f: &str| f.starts_with('*') || f.starts_with('?');
        let and = starred(fields[3]) || starred(fields[5]);
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(and)
            .build()
            .parse(&six)
            .map_err(|e| e.to_string())?;
        let (dom, month) = (fields[3].to_string(), fields[4].to_string());
        let s = Schedule { six, cron };
        s.check_runs_at_all(&dom, &month)?;
        Ok(s)
    }

    /// The 6-field form, as normalized.
    pub fn as_str(&self) -> &str {
        &self.six
    }

    /// `0 3 30 2 *` parses, and would never run. 28 years from a leap year cover every
    /// combination of leap day and weekday (no century year in between), so a date
    /// pattern without a match in 2000–2027 has none at all.
    fn check_runs_at_all(&self, dom: &str, month: &str) -> Result<(), String> {
        let p = &self.cron.pattern;
        let mut date = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date");
        while date.year() < 2028 {
            if p.month_match(date.month()).unwrap_or(false)
                && p.day_match(date.year(), date.month(), date.day()).unwrap_or(false)
            {
                return Ok(());
            }
            date = date.succ_opt().expect("a date");
        }
        let months: Vec<&str> = (1..=12u32)
            .filter(|m| p.month_match(*m).unwrap_or(false))
            .map(|m| MONTHS[m as usize - 1])
            .collect();
        // ALL_BIT (1): the plain "this day" bit, as opposed to L/W flags.
        let days: Vec<String> = (1..=31u16)
            .filter(|d| p.days.is_bit_set(*d, 1).unwrap_or(false))
            .map(|d| d.to_string())
            .collect();
        if !months.is_empty() && !days.is_empty() {
            let have = if months.len() == 1 { "has" } else { "have" };
            return Err(format!(
                "never runs: {} {have} no day {} (check the day-of-month '{dom}' and month '{month}' fields)",
                join(&months, "and"),
                join(&days, "or")
            ));
        }
        Err(format!(
            "never runs: no date matches day-of-month '{dom}' in month '{month}' together with the day of week"
        ))
    }

    /// The first time strictly after `after` that the schedule fires, in `tz`. DST: a time
    /// in the spring-forward gap runs at the first valid time after the gap, and a time in
    /// the repeated fall-back hour runs once, at its first occurrence (as Vixie cron does).
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner steps whole seconds; a fractional start would leak into the result.
        let after = after.trunc_subsecs(0);
        let mut from = after.with_timezone(&tz);
        // croner searches in local wall-clock time. Started inside a repeated hour, it can
        // answer with that hour's first pass, which is already over: search on from there.
        for _ in 0..10_000 {
            let t = self.cron.find_next_occurrence(&from, false).ok()?;
            if t.with_timezone(&Utc) > after {
                return Some(t.with_timezone(&Utc));
            }
            from = t;
        }
        None
    }
}

fn join(items: &[impl AsRef<str>], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., end] => format!(
            "{} {last} {}",
            init.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(", "),
            end.as_ref()
        ),
    }
}

pub fn validate(expr: &str) -> Result<(), String> {
    Schedule::parse(expr).map(|_| ())
}

pub fn parse_tz(tz: &str) -> Result<Tz, String> {
    tz.parse::<Tz>()
        .map_err(|_| format!("'{tz}' is not an IANA time zone (e.g. UTC, Europe/Berlin)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn next(expr: &str, tz: &str, after: &str) -> DateTime<Utc> {
        Schedule::parse(expr)
            .unwrap()
            .next_after(parse_tz(tz).unwrap(), utc(after))
            .unwrap()
    }

    /// The first `n` runs after `after`.
    fn runs(expr: &str, tz: &str, after: &str, n: usize) -> Vec<DateTime<Utc>> {
        let s = Schedule::parse(expr).unwrap();
        let tz = parse_tz(tz).unwrap();
        let mut t = utc(after);
        (0..n)
            .map(|_| {
                t = s.next_after(tz, t).unwrap();
                t
            })
            .collect()
    }

    #[test]
    fn five_and_six_fields() {
        assert_eq!(normalize("0 3 * * *"), "0 0 3 * * *");
        assert_eq!(normalize("*/5 * * * * *"), "*/5 * * * * *");
        assert!(validate("0 3 * * *").is_ok());
        assert!(validate("*/2 * * * * *").is_ok());
        assert!(validate("0 5 1 * *").is_ok());
    }

    #[test]
    fn errors_name_field_and_range() {
        assert_eq!(validate("61 3 * * *").unwrap_err(), "minute 61 out of range (0-59)");
        // 5 fields are minute hour day month weekday: the second field is the hour.
        assert_eq!(validate("0 61 * * *").unwrap_err(), "hour 61 out of range (0-23)");
        assert_eq!(validate("0 61 * * * *").unwrap_err(), "minute 61 out of range (0-59)");
        assert_eq!(validate("0 3 * 13 *").unwrap_err(), "month 13 out of range (1-12)");
        assert!(validate("0 3 * *").unwrap_err().contains("has 4 fields"));
        assert!(validate("0 3 * * blursday").is_err());
    }

    #[test]
    fn a_date_that_never_comes_is_rejected() {
        let e = validate("0 3 30 2 *").unwrap_err();
        assert!(e.starts_with("never runs: February has no day 30"), "{e}");
        let e = validate("0 3 31 2,4 *").unwrap_err();
        assert!(e.starts_with("never runs: February and April have no day 31"), "{e}");
        let e = validate("0 3 30,31 2 *").unwrap_err();
        assert!(e.contains("February has no day 30 or 31"), "{e}");
        // Leap days come, rarely; the last day always does; with a weekday (OR) Feb runs on Mondays.
        assert!(validate("0 3 29 2 *").is_ok());
        assert!(validate("0 3 L 2 *").is_ok());
        assert!(validate("0 3 30 2 1").is_ok());
        assert_eq!(
            next("0 3 29 2 *", "UTC", "2026-03-01T00:00:00Z"),
            utc("2028-02-29T03:00:00Z")
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_are_ored_like_vixie_cron() {
        // 2026-06-01 is a Monday; the 1st and every Monday after it.
        assert_eq!(
            runs("0 3 1 * 1", "UTC", "2026-05-28T00:00:00Z", 4),
            vec![
                utc("2026-06-01T03:00:00Z"),
                utc("2026-06-08T03:00:00Z"),
                utc("2026-06-15T03:00:00Z"),
                utc("2026-06-22T03:00:00Z"),
            ]
        );
        // 2026-07-01 is a Wednesday: it runs although it is no Monday.
        assert_eq!(
            runs("0 3 1 * 1", "UTC", "2026-06-28T00:00:00Z", 2),
            vec![utc("2026-06-29T03:00:00Z"), utc("2026-07-01T03:00:00Z")]
        );
        // A field starting with '*' makes it AND (Vixie's DOM_STAR): odd days that are Mondays.
        assert_eq!(
            runs("0 3 */2 * 1", "UTC", "2026-06-01T04:00:00Z", 2),
            vec![utc("2026-06-15T03:00:00Z"), utc("2026-06-29T03:00:00Z")]
        );
        // Plain '*' in either field: the other one alone decides.
        assert_eq!(
            next("0 3 * * 1", "UTC", "2026-06-02T00:00:00Z"),
            utc("2026-06-08T03:00:00Z")
        );
        assert_eq!(
            next("0 3 15 * *", "UTC", "2026-06-02T00:00:00Z"),
            utc("2026-06-15T03:00:00Z")
        );
    }

    #[test]
    fn next_run_respects_the_time_zone() {
        // 03:00 in Berlin (CET, UTC+1) is 02:00 UTC.
        assert_eq!(
            next("0 3 * * *", "Europe/Berlin", "2026-11-23T01:00:00Z"),
            utc("2026-11-23T02:00:00Z")
        );
        assert_eq!(
            next("0 3 * * *", "UTC", "2026-11-23T01:00:00Z"),
            utc("2026-11-23T03:00:00Z")
        );
        assert!(parse_tz("Mars/Base").is_err());
    }

    #[test]
    fn dst_keeps_local_time_runs_a_skipped_time_after_the_gap_and_a_repeated_one_once() {
        // Spring forward in Berlin: 2026-03-29 02:00 CET -> 03:00 CEST.
        assert_eq!(
            runs("0 3 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            vec![
                utc("2026-03-28T02:00:00Z"), // 03:00 CET
                utc("2026-03-29T01:00:00Z"), // 03:00 CEST
                utc("2026-03-30T01:00:00Z"),
            ]
        );
        // 02:30 does not exist on the 29th: it runs when the clock reaches 03:00 CEST.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
            vec![utc("2026-03-29T01:00:00Z"), utc("2026-03-30T00:30:00Z")]
        );
        // Fall back: 2026-10-25 03:00 CEST -> 02:00 CET; 02:30 happens twice, runs once.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
        // Asked during the second pass of the repeated hour (02:15 CET), after the run at
        // 02:30 CEST: the next one is tomorrow, not the pass already over.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-10-25T01:15:00Z"),
            utc("2026-10-26T01:30:00Z")
        );
    }

    #[test]
    fn next_is_strictly_after_and_on_whole_seconds() {
        let after = utc("2026-06-01T10:00:00.300Z");
        assert_eq!(
            next("* * * * * *", "UTC", "2026-06-01T10:00:00.300Z"),
            utc("2026-06-01T10:00:01Z")
        );
        assert!(next("*/2 * * * * *", "UTC", "2026-06-01T10:00:00Z") > after);
    }
}
