//! [`StoredId`]: how ids become bytes on the server and back.

/// An id type the Redis recorder can store: it is written to the server as bytes and
/// read back from them.
///
/// Implemented for `String`, `str`, `Arc<str>`, `Rc<str>` and `Box<str>` (UTF-8);
/// `Vec<u8>`, `[u8]`, `Arc<[u8]>`, `Box<[u8]>` and byte arrays (the bytes as they are);
/// and the integer types (decimal digits). An owned type and its
/// borrowed form encode alike, so a `RedisRecorder<String>` is queried with `&str`, as
/// a `HashMap<String, _>` is.
///
/// Any bytes are safe: ids are never part of a key name (they are fields of the
/// namespace's hashes), so an id with `{`, `}`, `:` or a newline cannot reach another
/// namespace or another slot.
///
/// ```
/// use async_tasks_recorder::redis::StoredId;
///
/// let mut bytes = Vec::new();
/// "md5-of-file".encode(&mut bytes);
/// assert_eq!(String::decode(&bytes), Some("md5-of-file".to_string()));
///
/// bytes.clear();
/// 42u64.encode(&mut bytes);
/// assert_eq!(bytes, b"42");
/// assert_eq!(u64::decode(b"x"), None);
/// ```
pub trait StoredId {
    /// Appends the id's bytes to `out`. Equal ids must give equal bytes, and different
    /// ids different bytes.
    fn encode(&self, out: &mut Vec<u8>);

    /// The id that [`encode`](Self::encode) wrote as `bytes`, or `None` if these bytes
    /// are not one.
    fn decode(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized;
}

impl StoredId for str {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StoredId for String {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_str().encode(out);
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Shared and boxed strings and bytes encode as the text or bytes they hold.
macro_rules! stored_like {
    ($($owned:ty => $borrowed:ty, $from:expr;)*) => {
        $(
            impl StoredId for $owned {
                fn encode(&self, out: &mut Vec<u8>) {
                    <$borrowed as StoredId>::encode(self, out);
                }

                fn decode(bytes: &[u8]) -> Option<Self> {
                    #[allow(clippy::redundant_closure_call)]
                    $from(bytes)
                }
            }
        )*
    };
}

stored_like! {
    std::sync::Arc<str> => str, |b: &[u8]| std::str::from_utf8(b).ok().map(Into::into);
    Box<str> => str, |b: &[u8]| std::str::from_utf8(b).ok().map(Into::into);
    std::rc::Rc<str> => str, |b: &[u8]| std::str::from_utf8(b).ok().map(Into::into);
    std::sync::Arc<[u8]> => [u8], |b: &[u8]| Some(b.into());
    Box<[u8]> => [u8], |b: &[u8]| Some(b.into());
}

impl StoredId for [u8] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl StoredId for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

impl<const N: usize> StoredId for [u8; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok()
    }
}

/// Decimal digits, as `Display` writes them; decoding accepts exactly what encoding
/// writes (no sign on unsigned types, no leading `+` or zeros), so that one id has one
/// encoding.
macro_rules! stored_integer {
    ($($int:ty),*) => {
        $(
            impl StoredId for $int {
                fn encode(&self, out: &mut Vec<u8>) {
                    use std::io::Write;
                    // Writing to a Vec cannot fail.
                    let _ = write!(out, "{self}");
                }

                fn decode(bytes: &[u8]) -> Option<Self> {
                    let text = std::str::from_utf8(bytes).ok()?;
                    let value: $int = text.parse().ok()?;
                    (value.to_string() == text).then_some(value)
                }
            }
        )*
    };
}

stored_integer!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

/// The slot group of an encoded id: FNV-1a over its bytes, so that every process
/// places an id in the same group whatever its hasher.
pub(crate) fn group_of(bytes: &[u8], groups: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The remainder is below `groups`, so it fits.
    (hash % u64::from(groups)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: StoredId + ?Sized>(id: &T) -> Vec<u8> {
        let mut out = Vec::new();
        id.encode(&mut out);
        out
    }

    #[test]
    fn shared_forms_agree_with_their_contents() {
        let shared: std::sync::Arc<str> = "md5".into();
        assert_eq!(bytes(&shared), bytes("md5"));
        assert_eq!(<std::sync::Arc<str>>::decode(b"md5"), Some(shared));
        assert_eq!(<Box<[u8]>>::decode(&[0, 1]).as_deref(), Some(&[0u8, 1][..]));
    }

    #[test]
    fn owned_and_borrowed_forms_agree() {
        assert_eq!(bytes("abc"), bytes(&"abc".to_string()));
        assert_eq!(bytes(&b"ab"[..]), bytes(&b"ab".to_vec()));
        assert_eq!(bytes(b"ab"), bytes(&b"ab".to_vec()));
    }

    #[test]
    fn integers_have_one_encoding() {
        assert_eq!(bytes(&-7i32), b"-7");
        assert_eq!(i32::decode(b"-7"), Some(-7));
        assert_eq!(u32::decode(b"+7"), None);
        assert_eq!(u32::decode(b"07"), None);
        assert_eq!(u8::decode(b"256"), None);
        assert_eq!(u128::decode(&bytes(&u128::MAX)), Some(u128::MAX));
    }

    #[test]
    fn awkward_bytes_round_trip() {
        let id = "{ns}:x\r\n*1\r\n$4\r\nPING".to_string();
        assert_eq!(String::decode(&bytes(&id)), Some(id));
        assert_eq!(String::decode(&[0xff, 0xfe]), None);
        assert_eq!(<[u8; 2]>::decode(b"abc"), None);
    }

    #[test]
    fn groups_are_stable_and_spread() {
        assert_eq!(group_of(b"", 16), group_of(b"", 16));
        let mut seen = [0u32; 16];
        for i in 0..1600u32 {
            seen[usize::from(group_of(&bytes(&i), 16))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
