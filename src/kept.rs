//! [`Kept`]: a small value kept with a record for any reader, and how it is made from
//! a task's output or failure.

use std::fmt::{self, Write as _};
use std::sync::Arc;

/// The most bytes a kept value has by default (8 KiB); see
/// [`Builder::max_kept_len`](crate::Builder::max_kept_len).
pub(crate) const DEFAULT_MAX_KEPT_LEN: usize = 8 * 1024;

/// What a launch made with [`launch_kept`](crate::AsyncTasksRecorder::launch_kept)
/// leaves with its record, for every reader of
/// [`status`](crate::AsyncTasksRecorder::status) and
/// [`wait`](crate::AsyncTasksRecorder::wait), in any clone (or, on Redis, any
/// process): the output of a success, or the message of a failure.
///
/// It is text: the `Display` of the task's output or error, or the message of its
/// panic. Keep it small (an URL, a file name, a short JSON document, an error message:
/// bytes to a few KiB); the recorder's limit, 8 KiB unless
/// [`Builder::max_kept_len`](crate::Builder::max_kept_len) says otherwise, is enforced
/// when the task ends: a message beyond it is cut (at a character boundary, ending in
/// `…`), and an output beyond it is not kept at all ([`Kept::TooLarge`] says so: a cut
/// output would read as a whole one).
///
/// It lives as long as the record's phase: a relaunch of a failed id, a revoke that
/// succeeds, and retention (a tombstone keeps none of it) remove it. A failed revoke
/// puts the success back with its output.
///
/// ```
/// use async_tasks_recorder::Kept;
///
/// let kept = Kept::Output("s3://bucket/f.bin".into());
/// assert_eq!(kept.as_str(), Some("s3://bucket/f.bin"));
/// assert_eq!(kept.to_string(), "s3://bucket/f.bin");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Kept {
    /// The output of a task that succeeded (its `Display`).
    Output(Arc<str>),
    /// Why a task failed: its error's `Display`, or its panic's message.
    Message(Arc<str>),
    /// The task succeeded with an output of `len` bytes, more than the recorder's
    /// `limit`, so none of it was kept.
    TooLarge {
        /// The output's length in bytes.
        len: usize,
        /// The recorder's limit.
        limit: usize,
    },
}

impl Kept {
    /// The kept text: the output or the message; `None` for [`TooLarge`](Kept::TooLarge).
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Kept::Output(text) | Kept::Message(text) => Some(text),
            Kept::TooLarge { .. } => None,
        }
    }

    /// The output, if this is one.
    #[must_use]
    pub fn output(&self) -> Option<&str> {
        match self {
            Kept::Output(text) => Some(text),
            _ => None,
        }
    }

    /// The failure's message, if this is one.
    #[must_use]
    pub fn message(&self) -> Option<&str> {
        match self {
            Kept::Message(text) => Some(text),
            _ => None,
        }
    }

    /// The output of a success, `Display`ed, or [`TooLarge`](Kept::TooLarge).
    pub(crate) fn output_of(value: &dyn fmt::Display, limit: usize) -> Kept {
        let (text, len) = shown(value, limit);
        if len > limit {
            Kept::TooLarge { len, limit }
        } else {
            Kept::Output(text.into())
        }
    }

    /// The message of a failure, `Display`ed, cut to `limit` bytes.
    pub(crate) fn message_of(value: &dyn fmt::Display, limit: usize) -> Kept {
        let (text, len) = shown(value, limit);
        Kept::Message(cut(text, len, limit).into())
    }

    /// The message of a panic: its payload when it is a string.
    pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send), limit: usize) -> Kept {
        let text = payload
            .downcast_ref::<&'static str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("the task panicked (with a payload that is not a string)");
        Kept::message_of(&text, limit)
    }
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kept::Output(text) | Kept::Message(text) => f.pad(text),
            Kept::TooLarge { len, limit } => {
                write!(f, "(an output of {len} bytes, over the limit of {limit})")
            }
        }
    }
}

/// An output that [`launch_kept`](crate::AsyncTasksRecorder::launch_kept) can keep:
/// what to show of it, or `None` to keep nothing for a success (a task that returns
/// `()` keeps only its failures' messages).
///
/// Implemented for `()`, strings, numbers, `bool`, `char`, the address types,
/// references, boxes, `Arc`s and `Option`s of these, and [`Shown`] for any other
/// `Display` type. For a type of your own, point at what to show:
///
/// ```
/// use std::fmt::Display;
/// use async_tasks_recorder::KeptOutput;
///
/// struct Uploaded {
///     url: String,
///     bytes: u64,
/// }
///
/// impl KeptOutput for Uploaded {
///     fn kept_display(&self) -> Option<&dyn Display> {
///         Some(&self.url)
///     }
/// }
/// ```
pub trait KeptOutput {
    /// What to keep of this output, shown with `Display`; `None` keeps nothing.
    fn kept_display(&self) -> Option<&dyn fmt::Display>;
}

impl KeptOutput for () {
    fn kept_display(&self) -> Option<&dyn fmt::Display> {
        None
    }
}

/// Implements [`KeptOutput`] for `Display` types that show themselves.
macro_rules! shown_as_is {
    ($($t:ty),* $(,)?) => {
        $(
            impl KeptOutput for $t {
                fn kept_display(&self) -> Option<&dyn fmt::Display> {
                    Some(self)
                }
            }
        )*
    };
}

shown_as_is!(
    &str,
    Box<str>,
    Arc<str>,
    String,
    std::borrow::Cow<'_, str>,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    std::net::IpAddr,
    std::net::SocketAddr,
);

impl<T: KeptOutput + ?Sized> KeptOutput for &T {
    fn kept_display(&self) -> Option<&dyn fmt::Display> {
        (**self).kept_display()
    }
}

impl<T: KeptOutput + ?Sized> KeptOutput for Box<T> {
    fn kept_display(&self) -> Option<&dyn fmt::Display> {
        (**self).kept_display()
    }
}

impl<T: KeptOutput + ?Sized> KeptOutput for Arc<T> {
    fn kept_display(&self) -> Option<&dyn fmt::Display> {
        (**self).kept_display()
    }
}

impl<T: KeptOutput> KeptOutput for Option<T> {
    fn kept_display(&self) -> Option<&dyn fmt::Display> {
        self.as_ref()?.kept_display()
    }
}

/// Keeps any `Display` value as an output: `Ok(Shown(url))` for a type from another
/// crate (a `Url`, a `Uuid`) that [`KeptOutput`] does not cover.
///
/// ```
/// use async_tasks_recorder::{KeptOutput, Shown};
///
/// let shown = Shown(std::path::Path::new("/var/f.bin").display().to_string());
/// assert_eq!(shown.kept_display().map(|d| d.to_string()), Some("/var/f.bin".into()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shown<T>(pub T);

impl<T: fmt::Display> KeptOutput for Shown<T> {
    fn kept_display(&self) -> Option<&dyn fmt::Display> {
        Some(&self.0)
    }
}

/// `value`'s `Display`, up to `limit + 1` bytes of it (so that an oversized value
/// costs no more memory than the limit), and its whole length.
fn shown(value: &dyn fmt::Display, limit: usize) -> (String, usize) {
    struct Capped {
        text: String,
        len: usize,
        room: usize,
    }
    impl fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.len += s.len();
            let room = self.room.saturating_sub(self.text.len());
            if room > 0 {
                let mut end = s.len().min(room);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                self.text.push_str(&s[..end]);
            }
            Ok(())
        }
    }
    let mut out = Capped {
        text: String::new(),
        len: 0,
        room: limit.saturating_add(1),
    };
    // A `Display` that fails leaves what it wrote: the text is for people.
    let _ = write!(out, "{value}");
    (out.text, out.len)
}

/// `text` (the first bytes of a value `len` long) within `limit` bytes: whole if it
/// fits, otherwise cut at a character boundary and ended with `…`.
fn cut(mut text: String, len: usize, limit: usize) -> String {
    if len <= limit {
        return text;
    }
    const MARK: &str = "…";
    let mut end = limit.saturating_sub(MARK.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    if text.len() + MARK.len() <= limit {
        text.push_str(MARK);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_within_the_limit_are_kept_whole() {
        assert_eq!(Kept::output_of(&"abc", 3), Kept::Output("abc".into()));
        assert_eq!(Kept::output_of(&12345u32, 5).as_str(), Some("12345"));
        assert_eq!(
            Kept::output_of(&"abcd", 3),
            Kept::TooLarge { len: 4, limit: 3 }
        );
    }

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        assert_eq!(
            Kept::message_of(&"disk full", 9).as_str(),
            Some("disk full")
        );
        // 10 bytes into 8: 5 bytes and the 3-byte mark.
        assert_eq!(Kept::message_of(&"disk full!", 8).as_str(), Some("disk …"));
        // "é" is 2 bytes: no half of it is kept.
        assert_eq!(Kept::message_of(&"ééééé", 6).as_str(), Some("é…"));
        assert_eq!(Kept::message_of(&"abc", 2).as_str(), Some(""));
        assert_eq!(Kept::message_of(&"abc", 0).as_str(), Some(""));
    }

    #[test]
    fn an_oversized_display_is_not_held_whole() {
        struct Huge;
        impl fmt::Display for Huge {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..1000 {
                    f.write_str("0123456789")?;
                }
                Ok(())
            }
        }
        let (text, len) = shown(&Huge, 15);
        assert_eq!((text.len(), len), (16, 10_000));
        assert_eq!(
            Kept::output_of(&Huge, 15),
            Kept::TooLarge {
                len: 10_000,
                limit: 15
            }
        );
    }

    #[test]
    fn panic_messages() {
        let boxed: Box<dyn std::any::Any + Send> = Box::new(String::from("boom"));
        assert_eq!(Kept::panic_message(&*boxed, 100).as_str(), Some("boom"));
        let boxed: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(Kept::panic_message(&*boxed, 100).as_str(), Some("static"));
        let boxed: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert!(Kept::panic_message(&*boxed, 100)
            .as_str()
            .unwrap()
            .contains("not a string"));
    }
}
