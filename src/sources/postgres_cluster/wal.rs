//! The write-ahead log's own vocabulary, as PostgreSQL defines it: log sequence numbers
//! (`0/3000028`), segment file names (`000000010000000000000003`: timeline, then the segment
//! number split in two), timeline history files, and the long header on a segment's first
//! page, which names the cluster (system identifier) and the format (the major version's
//! page magic). Pure functions: unit-tested against values read from real clusters.

use std::fmt;

/// A log sequence number: a byte position in the (timeline-independent) WAL address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/3000028` → Lsn(0x3000028), the form PostgreSQL prints.
    pub fn parse(s: &str) -> Option<Lsn> {
        let (hi, lo) = s.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(d)?;
        Lsn::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not an LSN like 0/3000028")))
    }
}

/// One WAL segment file: timeline and segment number (in units of the cluster's segment size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// Segments per 4 GiB "log id": the high half of the file name's segment part.
    fn per_log(seg_size: u64) -> u64 {
        0x1_0000_0000 / seg_size
    }

    /// The segment holding `lsn` on `timeline`.
    pub fn containing(timeline: u32, lsn: Lsn, seg_size: u64) -> Segment {
        Segment {
            timeline,
            number: lsn.0 / seg_size,
        }
    }

    /// `000000010000000000000003` (16 MiB segments: the last 8 digits run 00..FF).
    pub fn name(&self, seg_size: u64) -> String {
        let per = Self::per_log(seg_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per,
            self.number % per
        )
    }

    /// The inverse of `name`; None for anything else (history files, `.partial`, `.backup`).
    pub fn parse(name: &str, seg_size: u64) -> Option<Segment> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()) {
            return None;
        }
        let timeline = u32::from_str_radix(&name[..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..], 16).ok()?;
        let per = Self::per_log(seg_size);
        (seg < per).then_some(Segment {
            timeline,
            number: log * per + seg,
        })
    }

    pub fn next(&self) -> Segment {
        Segment {
            timeline: self.timeline,
            number: self.number + 1,
        }
    }

    /// The first LSN in this segment.
    pub fn start(&self, seg_size: u64) -> Lsn {
        Lsn(self.number * seg_size)
    }
}

/// What PostgreSQL asks `archive_command` / `restore_command` to move, by file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalFile {
    /// `000000010000000000000003`
    Segment(String),
    /// `00000002.history`: how a timeline branched off its parent.
    History(u32),
    /// `000000010000000000000003.00000028.backup`: a base backup's start and stop.
    BackupLabel(String),
    /// `000000010000000000000003.partial`: the last, incomplete segment of an old timeline.
    Partial(String),
}

impl WalFile {
    pub fn parse(name: &str) -> Option<WalFile> {
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase());
        if hex(name, 24) {
            return Some(WalFile::Segment(name.to_string()));
        }
        if let Some(t) = name.strip_suffix(".history") {
            if hex(t, 8) {
                return u32::from_str_radix(t, 16).ok().map(WalFile::History);
            }
        }
        if let Some(t) = name.strip_suffix(".partial") {
            if hex(t, 24) {
                return Some(WalFile::Partial(name.to_string()));
            }
        }
        if let Some(t) = name.strip_suffix(".backup") {
            if let Some((seg, off)) = t.split_once('.') {
                if hex(seg, 24) && hex(off, 8) {
                    return Some(WalFile::BackupLabel(name.to_string()));
                }
            }
        }
        None
    }

    /// The timeline a file belongs to (its first 8 hex digits).
    pub fn timeline(&self) -> u32 {
        match self {
            WalFile::History(t) => *t,
            WalFile::Segment(n) | WalFile::BackupLabel(n) | WalFile::Partial(n) => {
                u32::from_str_radix(&n[..8], 16).unwrap_or(0)
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            WalFile::History(t) => format!("{t:08X}.history"),
            WalFile::Segment(n) | WalFile::BackupLabel(n) | WalFile::Partial(n) => n.clone(),
        }
    }
}

/// The long page header at the start of every segment (`XLogLongPageHeaderData`): page magic
/// (one per WAL format, i.e. per major version), timeline, page address, the system identifier
/// of the cluster that wrote it, and the segment and block sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub magic: u16,
    pub timeline: u32,
    pub page_address: u64,
    pub system_identifier: u64,
    pub segment_size: u32,
    pub block_size: u32,
}

/// `XLP_LONG_HEADER` in `xlp_info`: set on a segment's first page.
const XLP_LONG_HEADER: u16 = 0x0002;

impl SegmentHeader {
    /// Reads the header from the first 40 bytes of a segment (little-endian: the platforms
    /// drctl runs on). None when the bytes are not a segment's first page.
    pub fn parse(b: &[u8]) -> Option<SegmentHeader> {
        if b.len() < 40 {
            return None;
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let info = u16_at(2);
        if info & XLP_LONG_HEADER == 0 {
            return None;
        }
        // XLogPageHeaderData is 20 bytes padded to 24 (8-byte alignment of the u64 that follows).
        Some(SegmentHeader {
            magic: u16_at(0),
            timeline: u32_at(4),
            page_address: u64_at(8),
            system_identifier: u64_at(24),
            segment_size: u32_at(32),
            block_size: u32_at(36),
        })
    }

    /// The major version whose WAL format this page magic is (`XLOG_PAGE_MAGIC`).
    pub fn major(&self) -> Option<u32> {
        major_of_magic(self.magic)
    }
}

/// `XLOG_PAGE_MAGIC` of each release (src/include/access/xlog_internal.h).
pub fn major_of_magic(magic: u16) -> Option<u32> {
    Some(match magic {
        0xD101 => 11,
        0xD104 => 12,
        0xD106 => 13,
        0xD10D => 14,
        0xD110 => 15,
        0xD113 => 16,
        0xD116 => 17,
        0xD118 => 18,
        _ => return None,
    })
}

/// One line of a timeline history file: `parent_tli <TAB> switchpoint <TAB> reason`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Branch {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where the next timeline of this history forked off it.
    pub switchpoint: Lsn,
}

/// Parses a `NNNNNNNN.history` file: the ancestors of timeline NNNNNNNN, oldest first.
pub fn parse_history(text: &str) -> Result<Vec<Branch>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (f.next(), f.next()) else {
            return Err(format!("bad history line '{line}'"));
        };
        let timeline = tli
            .parse()
            .map_err(|_| format!("bad timeline in history line '{line}'"))?;
        let switchpoint = Lsn::parse(lsn).ok_or_else(|| format!("bad LSN in history line '{line}'"))?;
        out.push(Branch { timeline, switchpoint });
    }
    Ok(out)
}

/// The segments recovery reads to go from `start` on timeline `start_tli` to the end of the
/// archive along the history of `target_tli` (`history`: its ancestors, oldest first), up to
/// `last` — the newest segment the archive has on the target timeline. On a switch, the
/// segment holding the switchpoint is read on the new timeline (PostgreSQL copies the old
/// timeline's part of it there), so the old timeline's list ends one before.
pub fn chain(
    start_tli: u32,
    start: Lsn,
    history: &[Branch],
    target_tli: u32,
    last: Option<u64>,
    seg_size: u64,
) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut from = start.0 / seg_size;
    let mut tli = start_tli;
    // The branches after the backup's timeline, in order: (timeline that ends, where).
    let path: Vec<&Branch> = history.iter().filter(|b| b.timeline >= start_tli).collect();
    for b in path {
        if b.timeline != tli {
            continue;
        }
        let switch_seg = b.switchpoint.0 / seg_size;
        for n in from..switch_seg {
            out.push(Segment {
                timeline: tli,
                number: n,
            });
        }
        from = switch_seg.max(from);
        // The next timeline is the next branch's, or the target.
        tli = history
            .iter()
            .map(|x| x.timeline)
            .find(|t| *t > b.timeline)
            .unwrap_or(target_tli);
    }
    if let Some(last) = last {
        for n in from..=last {
            out.push(Segment {
                timeline: tli,
                number: n,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 * 1024 * 1024;

    #[test]
    fn lsn_and_segment_names_round_trip() {
        let l = Lsn::parse("0/3000028").unwrap();
        assert_eq!(l.0, 0x3000028);
        assert_eq!(l.to_string(), "0/3000028");
        assert_eq!(Lsn::parse("1A/FF000000").unwrap().to_string(), "1A/FF000000");
        assert!(Lsn::parse("3000028").is_none());
        let s = Segment::containing(1, l, MB16);
        assert_eq!(s.name(MB16), "000000010000000000000003");
        assert_eq!(Segment::parse("000000010000000000000003", MB16), Some(s));
        // Crossing a log id: segment FF is followed by the next log's 00.
        let s = Segment::parse("0000000200000001000000FF", MB16).unwrap();
        assert_eq!(s.next().name(MB16), "000000020000000200000000");
        assert!(Segment::parse("000000010000000100000100", MB16).is_none());
        assert!(Segment::parse("00000001000000000000000a", MB16).is_none());
        // 64 MiB segments: 64 per log id.
        let big = 64 * 1024 * 1024;
        assert_eq!(
            Segment {
                timeline: 1,
                number: 64
            }
            .name(big),
            "000000010000000100000000"
        );
    }

    #[test]
    fn file_kinds_are_recognised() {
        assert_eq!(WalFile::parse("00000002.history"), Some(WalFile::History(2)));
        assert_eq!(WalFile::parse("00000002.history").unwrap().name(), "00000002.history");
        assert!(matches!(
            WalFile::parse("000000010000000000000003.00000028.backup"),
            Some(WalFile::BackupLabel(_))
        ));
        assert!(matches!(
            WalFile::parse("000000010000000000000003.partial"),
            Some(WalFile::Partial(_))
        ));
        assert_eq!(WalFile::parse("000000030000000000000003").unwrap().timeline(), 3);
        for bad in [
            "RECOVERYXLOG",
            "../000000010000000000000003",
            "00000001.history.x",
            "0000000100000000000003",
        ] {
            assert_eq!(WalFile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_header_names_the_cluster() {
        // The first 40 bytes of a PostgreSQL 15 segment (initdb'd on x86-64).
        let mut b = vec![0u8; 40];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&0x3000000u64.to_le_bytes());
        b[24..32].copy_from_slice(&7_345_118_399_238_152_214u64.to_le_bytes());
        b[32..36].copy_from_slice(&(MB16 as u32).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        let h = SegmentHeader::parse(&b).unwrap();
        assert_eq!(h.system_identifier, 7_345_118_399_238_152_214);
        assert_eq!(h.major(), Some(15));
        assert_eq!(h.segment_size as u64, MB16);
        b[2] = 0; // not a long header: not a segment's first page
        assert!(SegmentHeader::parse(&b).is_none());
        assert!(SegmentHeader::parse(&b[..20]).is_none());
    }

    #[test]
    fn chains_follow_timeline_switches() {
        let h =
            parse_history("1\t0/50000A0\tno recovery target specified\n\n2\t0/8000000\tat restore point\n").unwrap();
        assert_eq!(h.len(), 2);
        // A backup starting in segment 3 of timeline 1, target timeline 3 whose newest segment is 9.
        let c: Vec<String> = chain(1, Lsn(0x3000028), &h, 3, Some(9), MB16)
            .iter()
            .map(|s| s.name(MB16))
            .collect();
        assert_eq!(
            c,
            vec![
                "000000010000000000000003",
                "000000010000000000000004",
                // Switch inside segment 5: it is read on timeline 2.
                "000000020000000000000005",
                "000000020000000000000006",
                "000000020000000000000007",
                "000000030000000000000008",
                "000000030000000000000009",
            ]
        );
        // No switch: straight to the last segment.
        assert_eq!(chain(1, Lsn(0x3000028), &[], 1, Some(4), MB16).len(), 2);
        // A backup taken on timeline 2 ignores the branch of timeline 1.
        assert_eq!(
            chain(2, Lsn(0x6000000), &h, 3, Some(8), MB16)
                .iter()
                .map(|s| s.name(MB16))
                .collect::<Vec<_>>(),
            vec![
                "000000020000000000000006",
                "000000020000000000000007",
                "000000030000000000000008"
            ]
        );
        assert!(parse_history("x y").is_err());
    }
}
