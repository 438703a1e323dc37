//! What an RDB file's first bytes say about it, without loading it.
//!
//! Redis writes, in order: `REDIS00xx`, AUX fields (`redis-ver`, `ctime`, …), module AUX,
//! functions, then per non-empty database `SELECTDB n` and `RESIZEDB keys expires` — the sizes of
//! that database's key and expiry tables at the moment of the fork. So the prologue tells how many
//! keys the lowest non-empty database held when the file was written, which is enough to tell a
//! file of this server's save from a stale or foreign one. Anything after the first `RESIZEDB`
//! would need a full value parser (and module types cannot be skipped without the module), so
//! later databases are not read.

/// What the prologue says about the file's first database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstDb {
    /// The file holds no keys at all.
    Empty,
    /// The lowest non-empty database, its key count and how many of those keys have a TTL.
    Db { db: u64, keys: u64, expires: u64 },
    /// The prologue could not be read far enough (module AUX data, an old RDB without
    /// `RESIZEDB`, or more bytes than were given).
    Unknown,
}

pub(super) const OP_FUNCTION2: u8 = 245;
pub(super) const OP_FUNCTION_PRE_GA: u8 = 246;
pub(super) const OP_MODULE_AUX: u8 = 247;
pub(super) const OP_AUX: u8 = 250;
pub(super) const OP_RESIZEDB: u8 = 251;
pub(super) const OP_SELECTDB: u8 = 254;
pub(super) const OP_EOF: u8 = 255;

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        let end = self.at.checked_add(usize::try_from(n).ok()?)?;
        (end <= self.b.len()).then(|| self.at = end)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 8) | u64::from(self.byte()?);
        }
        Some(v)
    }

    /// A length, or `Err(enc)` for a special string encoding.
    fn len(&mut self) -> Option<Result<u64, u8>> {
        let first = self.byte()?;
        Some(match first >> 6 {
            0 => Ok(u64::from(first & 0x3f)),
            1 => Ok((u64::from(first & 0x3f) << 8) | u64::from(self.byte()?)),
            2 => match first {
                0x80 => Ok(self.be(4)?),
                0x81 => Ok(self.be(8)?),
                _ => return None,
            },
            _ => Err(first & 0x3f),
        })
    }

    fn length(&mut self) -> Option<u64> {
        self.len()?.ok()
    }

    fn skip_string(&mut self) -> Option<()> {
        match self.len()? {
            Ok(n) => self.skip(n),
            Err(0) => self.skip(1),
            Err(1) => self.skip(2),
            Err(2) => self.skip(4),
            Err(3) => {
                let compressed = self.length()?;
                self.length()?;
                self.skip(compressed)
            }
            Err(_) => None,
        }
    }
}

/// Reads the prologue in `head` (the file's first bytes, header included).
pub fn first_db(head: &[u8]) -> FirstDb {
    parse(head).unwrap_or(FirstDb::Unknown)
}

fn parse(head: &[u8]) -> Option<FirstDb> {
    let mut c = Cursor { b: head, at: 9 };
    if head.len() < 9 || &head[..5] != b"REDIS" {
        return None;
    }
    loop {
        match c.byte()? {
            OP_AUX => {
                c.skip_string()?;
                c.skip_string()?;
            }
            OP_FUNCTION2 | OP_FUNCTION_PRE_GA => c.skip_string()?,
            OP_MODULE_AUX => return None,
            OP_EOF => return Some(FirstDb::Empty),
            OP_SELECTDB => {
                let db = c.length()?;
                if c.byte()? != OP_RESIZEDB {
                    return None;
                }
                let keys = c.length()?;
                let expires = c.length()?;
                return Some(FirstDb::Db { db, keys, expires });
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_database_of_a_prologue() {
        let mut f = b"REDIS0010".to_vec();
        f.extend([OP_AUX, 9]);
        f.extend(b"redis-ver");
        f.extend([6]);
        f.extend(b"7.0.15");
        f.extend([OP_AUX, 5]);
        f.extend(b"ctime");
        f.extend([0xc2, 1, 2, 3, 4]); // int32
        f.extend([OP_FUNCTION2, 0x41, 0x02]); // a 258-byte string
        f.extend([b'x'; 258]);
        f.extend([OP_SELECTDB, 3, OP_RESIZEDB, 0x40 | 0x01, 0x02, 7]);
        f.extend([0, 1, b'k', 1, b'v']);
        assert_eq!(
            first_db(&f),
            FirstDb::Db {
                db: 3,
                keys: 258,
                expires: 7
            }
        );
        assert_eq!(first_db(&f[..f.len() - 8]), FirstDb::Unknown, "cut short");
        let mut empty = b"REDIS0010".to_vec();
        empty.extend([OP_EOF, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(first_db(&empty), FirstDb::Empty);
        let mut module = b"REDIS0010".to_vec();
        module.extend([OP_MODULE_AUX, 1, 2, 3]);
        assert_eq!(first_db(&module), FirstDb::Unknown);
    }
}
