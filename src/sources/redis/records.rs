//! An RDB file read key by key, each value handed out as the payload `DUMP` gives for it, so a
//! restore can send `RESTORE key ttl payload REPLACE ABSTTL` to any Redis without loading the
//! file into a redis-server first.
//!
//! Why not a throwaway redis-server: it needs Redis installed where drctl runs (the drctl image
//! and a fresh VPS have none), it must be at least as new as the server that wrote the file (a
//! `redis:7-alpine` container writes RDB 12, Debian bookworm's redis-server reads up to 10), and it
//! holds the whole data set in memory once more.
//!
//! A `DUMP` payload is the value exactly as the RDB stores it (its type byte and its encoding),
//! followed by the RDB version (2 bytes, little endian) and a CRC-64 (Jones, as Redis computes it)
//! of everything before. So the reader only has to find where each value ends, which needs the
//! layout of every type (strings, length-prefixed collections, the listpack/ziplist/intset blobs,
//! streams with their consumer groups, hashes with field TTLs, and module values, whose v2
//! encoding is self-describing), not their meaning. Keys are decoded (they may be stored as
//! integers or LZF-compressed); values are copied as they are. The file's own CRC-64 is checked
//! at its end. Function libraries come out as `FUNCTION RESTORE` payloads.

use std::io::Read;

use super::rdb::{OP_AUX, OP_EOF, OP_FUNCTION2, OP_FUNCTION_PRE_GA, OP_MODULE_AUX, OP_RESIZEDB, OP_SELECTDB};

const OP_SLOT_INFO: u8 = 244;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;

/// What a restore sends for one record of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Key {
        db: u64,
        key: Vec<u8>,
        /// Absolute expiry in Unix milliseconds.
        expire_at_ms: Option<i64>,
        payload: Vec<u8>,
    },
    /// One function library, as `FUNCTION DUMP` would give it.
    Library { payload: Vec<u8> },
}

#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("not an RDB file (it does not start with REDIS and a version)")]
    NotRdb,
    #[error("the RDB ends early, at byte {0}: the file is truncated")]
    Truncated(u64),
    #[error("the RDB is damaged at byte {at}: {what}")]
    Damaged { at: u64, what: String },
    #[error("the RDB's checksum does not match its contents (stored {stored:016x}, computed {computed:016x}): the file is damaged")]
    Checksum { stored: u64, computed: u64 },
    #[error("the RDB holds {what} at byte {at}, which drctl cannot copy key by key; restore with --output-dir and put dump.rdb in place of the stopped server's file")]
    Unsupported { at: u64, what: String },
    #[error("reading the RDB: {0}")]
    Io(std::io::Error),
}

/// A length, or the special string encoding that stands in its place.
enum Len {
    Len(u64),
    Enc(u8),
}

pub struct RdbReader<R> {
    r: R,
    /// Bytes read so far, for error positions.
    at: u64,
    crc: u64,
    version: u16,
    /// The value being copied, while inside one.
    capture: Option<Vec<u8>>,
    db: u64,
    expire: Option<i64>,
    done: bool,
}

impl<R: Read> RdbReader<R> {
    pub fn new(r: R) -> Result<Self, RdbError> {
        let mut me = RdbReader {
            r,
            at: 0,
            crc: 0,
            version: 0,
            capture: None,
            db: 0,
            expire: None,
            done: false,
        };
        let mut head = [0u8; 9];
        me.fill(&mut head).map_err(|_| RdbError::NotRdb)?;
        let digits = std::str::from_utf8(&head[5..])
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        match (&head[..5], digits.and_then(|d| d.parse::<u16>().ok())) {
            (b"REDIS", Some(v)) => me.version = v,
            _ => return Err(RdbError::NotRdb),
        }
        Ok(me)
    }

    /// The RDB format version the file was written in (the payloads carry it too).
    pub fn version(&self) -> u16 {
        self.version
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RdbError> {
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => RdbError::Truncated(self.at),
            _ => RdbError::Io(e),
        })?;
        self.at += buf.len() as u64;
        self.crc = crc64(self.crc, buf);
        if let Some(c) = &mut self.capture {
            c.extend_from_slice(buf);
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        Ok(b)
    }

    fn byte(&mut self) -> Result<u8, RdbError> {
        Ok(self.bytes::<1>()?[0])
    }

    /// `n` bytes passed over (copied into the capture when inside a value).
    fn skip(&mut self, mut n: u64) -> Result<(), RdbError> {
        let mut buf = [0u8; 64 * 1024];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn damaged(&self, what: impl Into<String>) -> RdbError {
        RdbError::Damaged {
            at: self.at,
            what: what.into(),
        }
    }

    fn len(&mut self) -> Result<Len, RdbError> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Len::Len(u64::from(first & 0x3f)),
            1 => Len::Len((u64::from(first & 0x3f) << 8) | u64::from(self.byte()?)),
            2 => match first {
                0x80 => Len::Len(u64::from(u32::from_be_bytes(self.bytes()?))),
                0x81 => Len::Len(u64::from_be_bytes(self.bytes()?)),
                _ => return Err(self.damaged(format!("bad length prefix {first:#04x}"))),
            },
            _ => Len::Enc(first & 0x3f),
        })
    }

    fn length(&mut self) -> Result<u64, RdbError> {
        match self.len()? {
            Len::Len(n) => Ok(n),
            Len::Enc(_) => Err(self.damaged("an encoded string where a length belongs")),
        }
    }

    fn skip_string(&mut self) -> Result<(), RdbError> {
        match self.len()? {
            Len::Len(n) => self.skip(n),
            Len::Enc(0) => self.skip(1),
            Len::Enc(1) => self.skip(2),
            Len::Enc(2) => self.skip(4),
            Len::Enc(3) => {
                let compressed = self.length()?;
                self.length()?;
                self.skip(compressed)
            }
            Len::Enc(e) => Err(self.damaged(format!("unknown string encoding {e}"))),
        }
    }

    /// A string decoded: integers as their decimal text, LZF expanded.
    fn string(&mut self) -> Result<Vec<u8>, RdbError> {
        let raw = |me: &mut Self, n: u64| -> Result<Vec<u8>, RdbError> {
            // Grown as bytes arrive: a damaged length ends at EOF, not in a huge allocation.
            let mut v = Vec::with_capacity(n.min(1 << 20) as usize);
            let mut left = n;
            let mut buf = [0u8; 64 * 1024];
            while left > 0 {
                let k = left.min(buf.len() as u64) as usize;
                me.fill(&mut buf[..k])?;
                v.extend_from_slice(&buf[..k]);
                left -= k as u64;
            }
            Ok(v)
        };
        match self.len()? {
            Len::Len(n) => raw(self, n),
            Len::Enc(0) => Ok(i8::from_le_bytes(self.bytes()?).to_string().into_bytes()),
            Len::Enc(1) => Ok(i16::from_le_bytes(self.bytes()?).to_string().into_bytes()),
            Len::Enc(2) => Ok(i32::from_le_bytes(self.bytes()?).to_string().into_bytes()),
            Len::Enc(3) => {
                let clen = self.length()?;
                let ulen = self.length()?;
                let c = raw(self, clen)?;
                lzf_decompress(&c, ulen).ok_or_else(|| self.damaged("an LZF-compressed string that does not expand"))
            }
            Len::Enc(e) => Err(self.damaged(format!("unknown string encoding {e}"))),
        }
    }

    /// A module value in the v2 encoding: typed fields up to an EOF opcode.
    fn skip_module_value(&mut self) -> Result<(), RdbError> {
        loop {
            match self.length()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.length()?;
                }
                3 => self.skip(4)?,
                4 => self.skip(8)?,
                5 => self.skip_string()?,
                op => return Err(self.damaged(format!("unknown module field opcode {op}"))),
            }
        }
    }

    /// Passes over one value of type `t` (the type byte already read).
    fn skip_value(&mut self, t: u8, at: u64) -> Result<(), RdbError> {
        match t {
            // A string, or a collection stored as one blob (zipmap, ziplist, intset, listpack).
            0 | 9..=13 | 16 | 17 | 20 | 23 => self.skip_string(),
            // Lists and sets of strings; quicklists of ziplists.
            1 | 2 | 14 => {
                for _ in 0..self.length()? {
                    self.skip_string()?;
                }
                Ok(())
            }
            // Sorted sets: member and score, the score as text (3) or a binary double (5).
            3 | 5 => {
                for _ in 0..self.length()? {
                    self.skip_string()?;
                    if t == 5 {
                        self.skip(8)?;
                    } else {
                        let n = self.byte()?;
                        if n < 253 {
                            self.skip(u64::from(n))?;
                        }
                    }
                }
                Ok(())
            }
            4 => {
                for _ in 0..self.length()? {
                    self.skip_string()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            7 => {
                self.length()?; // module type id
                self.skip_module_value()
            }
            // Quicklist 2: each node's container kind, then its listpack or plain element.
            18 => {
                for _ in 0..self.length()? {
                    self.length()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            15 | 19 | 21 => self.skip_stream(t),
            // Hash with field TTLs: [minimum expiry,] then TTL, field, value per field.
            22 | 24 => {
                if t == 24 {
                    self.skip(8)?;
                }
                for _ in 0..self.length()? {
                    self.length()?;
                    self.skip_string()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            25 => {
                self.skip(8)?;
                self.skip_string()
            }
            6 => Err(RdbError::Unsupported {
                at,
                what: "a value of a pre-release module format".into(),
            }),
            t => Err(RdbError::Unsupported {
                at,
                what: format!(
                    "a value of type {t}, newer than this drctl knows (RDB version {})",
                    self.version
                ),
            }),
        }
    }

    fn skip_stream(&mut self, t: u8) -> Result<(), RdbError> {
        for _ in 0..self.length()? {
            self.skip_string()?; // master ID
            self.skip_string()?; // listpack
        }
        // Length and last ID; then first ID, max deleted ID and entries added (v2+).
        let fields = if t >= 19 { 8 } else { 3 };
        for _ in 0..fields {
            self.length()?;
        }
        for _ in 0..self.length()? {
            self.skip_string()?; // group name
            self.length()?; // last delivered ID
            self.length()?;
            if t >= 19 {
                self.length()?; // entries read
            }
            for _ in 0..self.length()? {
                self.skip(16 + 8)?; // pending entry: raw ID, delivery time
                self.length()?; // delivery count
            }
            for _ in 0..self.length()? {
                self.skip_string()?; // consumer name
                self.skip(if t >= 21 { 16 } else { 8 })?; // seen time (and active time)
                let pending = self.length()?;
                for _ in 0..pending {
                    self.skip(16)?;
                }
            }
        }
        Ok(())
    }

    /// A payload: `body` (type byte and value), the RDB version, the CRC-64 of both.
    fn payload(&self, mut body: Vec<u8>) -> Vec<u8> {
        body.extend_from_slice(&self.version.to_le_bytes());
        let crc = crc64(0, &body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    /// The next key or function library; `None` after the file's end (its checksum checked).
    pub fn next_record(&mut self) -> Result<Option<Record>, RdbError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let at = self.at;
            let op = self.byte()?;
            match op {
                OP_EXPIRETIME_MS => self.expire = Some(i64::from_le_bytes(self.bytes()?)),
                OP_EXPIRETIME => self.expire = Some(i64::from(i32::from_le_bytes(self.bytes()?)) * 1000),
                OP_FREQ => {
                    self.byte()?;
                }
                OP_IDLE => {
                    self.length()?;
                }
                OP_SELECTDB => self.db = self.length()?,
                OP_RESIZEDB => {
                    self.length()?;
                    self.length()?;
                }
                OP_SLOT_INFO => {
                    for _ in 0..3 {
                        self.length()?;
                    }
                }
                OP_AUX => {
                    self.skip_string()?;
                    self.skip_string()?;
                }
                OP_MODULE_AUX => {
                    // Module-wide data (not a key): nothing RESTORE can carry.
                    self.length()?;
                    self.length()?;
                    self.length()?;
                    self.skip_module_value()?;
                    tracing::warn!("the RDB holds a module's auxiliary data; a key-by-key restore leaves it out");
                }
                OP_FUNCTION_PRE_GA => {
                    return Err(RdbError::Unsupported {
                        at,
                        what: "functions from a Redis 7.0 release candidate".into(),
                    })
                }
                OP_FUNCTION2 => {
                    self.capture = Some(vec![op]);
                    let r = self.skip_string();
                    let body = self.capture.take().unwrap_or_default();
                    r?;
                    return Ok(Some(Record::Library {
                        payload: self.payload(body),
                    }));
                }
                OP_EOF => {
                    let computed = self.crc;
                    if self.version >= 5 {
                        let stored = u64::from_le_bytes(self.bytes()?);
                        if stored != 0 && stored != computed {
                            return Err(RdbError::Checksum { stored, computed });
                        }
                    }
                    self.done = true;
                    return Ok(None);
                }
                t => {
                    let key = self.string()?;
                    self.capture = Some(vec![t]);
                    let r = self.skip_value(t, at);
                    let body = self.capture.take().unwrap_or_default();
                    r?;
                    return Ok(Some(Record::Key {
                        db: self.db,
                        key,
                        expire_at_ms: self.expire.take(),
                        payload: self.payload(body),
                    }));
                }
            }
        }
    }
}

/// CRC-64 as Redis computes it (Jones polynomial, reflected, no final xor).
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x95ac_9329_ac4b_c9b5
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    for &b in data {
        crc = table[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// LZF (liblzf's format, as Redis writes it) expanded to exactly `ulen` bytes.
fn lzf_decompress(input: &[u8], ulen: u64) -> Option<Vec<u8>> {
    let ulen = usize::try_from(ulen).ok()?;
    let mut out: Vec<u8> = Vec::with_capacity(ulen.min(input.len().saturating_mul(64)));
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            out.extend_from_slice(input.get(i..i + run)?);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(i)?);
                i += 1;
            }
            len += 2;
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            let from = out.len().checked_sub(back)?;
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
        if out.len() > ulen {
            return None;
        }
    }
    (out.len() == ulen).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: &str, body: &[u8]) -> Vec<u8> {
        let mut f = format!("REDIS{version}").into_bytes();
        f.extend_from_slice(body);
        f.push(OP_EOF);
        let crc = crc64(0, &f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }

    fn all(f: &[u8]) -> Result<Vec<Record>, RdbError> {
        let mut r = RdbReader::new(f)?;
        let mut v = Vec::new();
        while let Some(x) = r.next_record()? {
            v.push(x);
        }
        Ok(v)
    }

    #[test]
    fn crc64_is_redis_jones() {
        // Redis's own test vector (src/crc64.c).
        assert_eq!(crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn lzf_back_references_and_literals_expand() {
        // "abcabcabcabc": 3 literals, then a back reference of 9 bytes at distance 3.
        let c = [2, b'a', b'b', b'c', (7 << 5), 0, 2];
        assert_eq!(lzf_decompress(&c, 12).unwrap(), b"abcabcabcabc");
        assert!(lzf_decompress(&c, 11).is_none(), "wrong length");
        assert!(
            lzf_decompress(&[(1 << 5), 9], 3).is_none(),
            "reference before the start"
        );
        assert!(lzf_decompress(&[5, b'a'], 6).is_none(), "literal run past the end");
    }

    #[test]
    fn keys_come_out_as_dump_payloads_with_db_and_expiry() {
        let mut body = vec![OP_AUX, 3, b'a', b'b', b'c', 0xc0, 7];
        body.extend([OP_SELECTDB, 2, OP_RESIZEDB, 2, 1]);
        body.extend([OP_EXPIRETIME_MS]);
        body.extend(1_900_000_000_000i64.to_le_bytes());
        body.extend([0, 0xc1, 0x39, 0x30, 3, b'v', b'a', b'l']); // key 12345 (int16) = "val"
        body.extend([2, 1, b's', 2, 1, b'x', 0xc0, 5]); // set "s" {"x", 5}
        let f = file("0011", &body);
        let recs = all(&f).unwrap();
        assert_eq!(recs.len(), 2);
        let Record::Key {
            db,
            key,
            expire_at_ms,
            payload,
        } = &recs[0]
        else {
            panic!("{recs:?}")
        };
        assert_eq!(
            (*db, key.as_slice(), *expire_at_ms),
            (2, &b"12345"[..], Some(1_900_000_000_000))
        );
        let body = [0, 3, b'v', b'a', b'l', 11, 0];
        assert_eq!(&payload[..7], &body);
        assert_eq!(payload[7..], crc64(0, &body).to_le_bytes());
        let Record::Key {
            key,
            expire_at_ms,
            payload,
            ..
        } = &recs[1]
        else {
            panic!()
        };
        assert_eq!((key.as_slice(), *expire_at_ms), (&b"s"[..], None));
        assert_eq!(&payload[..7], &[2, 2, 1, b'x', 0xc0, 5, 11][..]);
    }

    #[test]
    fn damage_and_truncation_and_unknown_types_are_named() {
        let f = file("0010", &[0, 1, b'k', 1, b'v']);
        assert_eq!(all(&f).unwrap().len(), 1);
        let mut flipped = f.clone();
        flipped[13] ^= 1; // the value's byte
        assert!(
            matches!(all(&flipped), Err(RdbError::Checksum { .. })),
            "{:?}",
            all(&flipped)
        );
        assert!(matches!(all(&f[..f.len() - 3]), Err(RdbError::Truncated(_))));
        assert!(matches!(all(&f[..12]), Err(RdbError::Truncated(_))));
        assert!(matches!(all(b"RDB0010"), Err(RdbError::NotRdb)));
        let future = file("0099", &[77, 1, b'k', 1, b'v']);
        let e = all(&future).unwrap_err();
        assert!(matches!(e, RdbError::Unsupported { .. }), "{e}");
        assert!(
            e.to_string().contains("type 77") && e.to_string().contains("--output-dir"),
            "{e}"
        );
        // A checksum of zero means "not computed" (rdbchecksum no).
        let mut unchecked = f.clone();
        let n = unchecked.len();
        unchecked[n - 8..].fill(0);
        assert_eq!(all(&unchecked).unwrap().len(), 1);
    }

    #[test]
    fn streams_modules_and_field_ttl_hashes_are_passed_over_whole() {
        // A v3 stream: one listpack, 8 IDs/counters, one group with one pending entry and one
        // consumer owning it.
        let mut s = vec![21, 1, b'x', 1, 0, 2, 0xaa, 0xbb];
        s.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        s.extend([1, 1, b'g', 9, 9, 9, 1]);
        s.extend([0u8; 24]);
        s.extend([1, 1, 1, b'c']);
        s.extend([0u8; 16]);
        s.extend([1]);
        s.extend([0u8; 16]);
        // A module value: id, then a uint, a string, a double, EOF.
        let mut m = vec![7, 1, b'm', 5, 2, 7, 5, 2, b'h', b'i', 4];
        m.extend([0u8; 8]);
        m.push(0);
        // A hash with field TTLs (7.4): min expiry, one field with TTL 3.
        let mut h = vec![24, 1, b'h'];
        h.extend([0u8; 8]);
        h.extend([1, 3, 1, b'f', 1, b'v']);
        let mut body = s.clone();
        body.extend(&m);
        body.extend(&h);
        body.extend([OP_FUNCTION2, 2, b'f', b'n']);
        let recs = all(&file("0012", &body)).unwrap();
        assert_eq!(recs.len(), 4, "{recs:?}");
        for (r, raw) in recs.iter().zip([&s, &m, &h]) {
            let Record::Key { payload, .. } = r else {
                panic!("{r:?}")
            };
            // Type byte + value: the raw bytes minus the key (`1, <name>` after the type).
            let mut want = vec![raw[0]];
            want.extend(&raw[3..]);
            assert_eq!(&payload[..payload.len() - 10], want.as_slice());
        }
        let Record::Library { payload } = &recs[3] else {
            panic!()
        };
        assert_eq!(&payload[..4], &[OP_FUNCTION2, 2, b'f', b'n']);
    }
}
