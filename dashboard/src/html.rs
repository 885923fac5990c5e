//! Escaping, and the frame every page shares.
//!
//! Every text that comes from outside the dashboard's own code (ids, failure
//! messages, kept values, a search) goes through [`text`] before it is written into
//! a page, and through [`url_part`] before it is written into a URL; the page frame
//! loads only the dashboard's own script and stylesheet, and the
//! Content-Security-Policy forbids any other (inline scripts included).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The Content-Security-Policy of every page: nothing from other origins, no inline
/// script or style, no framing, forms and event streams to this origin only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// `s` as HTML text, also safe inside a double- or single-quoted attribute.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one component of a URL (a query value): every byte but the unreserved
/// ones (`A-Z a-z 0-9 - . _ ~`) percent-encoded, so that `/`, `?`, `&`, `#`, quotes
/// and `..` stay inside the value.
pub(crate) fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The text that [`url_part`] encoded, or `None` if `s` is not such a text (a `%`
/// without two hex digits, or bytes that are not UTF-8).
pub(crate) fn from_url_part(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A wall-clock time as UTC, `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(at: SystemTime) -> String {
    let Ok(since) = at.duration_since(UNIX_EPOCH) else {
        return "before 1970".to_string();
    };
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (an era is 400 years
/// of 146,097 days, counted from a March 1st so that the leap day comes last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A whole page: the frame (title, the navigation to the overview and the lists,
/// the dashboard's stylesheet and script) around `body`, which the caller escaped.
pub(crate) fn page(base: &str, title: &str, body: &str) -> String {
    let base = text(base);
    let title = text(title);
    let mut nav = String::new();
    for (name, label) in crate::pages::LISTED {
        let _ = write!(nav, r#" <a href="{base}/list?state={name}">{label}</a>"#);
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · tasks</title>
<link rel="stylesheet" href="{base}/assets/app.css">
<script src="{base}/assets/app.js" defer></script>
</head>
<body data-base="{base}">
<header><a class="home" href="{base}/">Tasks</a><nav>{nav}</nav></header>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn text_escapes_markup_and_quotes() {
        assert_eq!(
            text(r#"<script>alert(1)</script>"#),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            text(r#""><img src=x onerror='a'>&"#),
            "&quot;&gt;&lt;img src=x onerror=&#39;a&#39;&gt;&amp;"
        );
        assert_eq!(text("plain id 42"), "plain id 42");
    }

    #[test]
    fn url_part_keeps_a_value_inside_its_parameter() {
        assert_eq!(url_part("../../etc"), "..%2F..%2Fetc");
        assert_eq!(url_part("a b&c=d#e?f"), "a%20b%26c%3Dd%23e%3Ff");
        assert_eq!(url_part("é"), "%C3%A9");
        assert_eq!(url_part("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn url_parts_decode_back() {
        for s in ["../../etc", "a\r\nb\0c", "<x y='1'>", "é ü", ""] {
            assert_eq!(from_url_part(&url_part(s)).as_deref(), Some(s));
        }
        for bad in ["%", "%4", "%zz", "%ff"] {
            assert_eq!(from_url_part(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn utc_prints_the_calendar_date() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 (a leap day of a century year) 12:34:56.
        let at = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc(at), "2000-02-29 12:34:56 UTC");
        let at = UNIX_EPOCH + Duration::from_secs(1_796_083_200);
        assert_eq!(utc(at), "2026-12-01 00:00:00 UTC");
    }
}
