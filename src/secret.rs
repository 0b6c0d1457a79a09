//! A string that must never be printed: tokens, passwords, webhook secrets; and the scrubber
//! that removes them, whole or in pieces, from text that came from elsewhere.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Holds a secret; `Debug` and `Display` print a placeholder, so a secret that ends up in a
/// formatted error, a log field or a panic message shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it (a header, a URL path).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A run of this many characters of a secret is a leak: it gives away a prefix, or narrows the
/// search for the rest.
pub const PIECE: usize = 8;

/// What replaces a secret or a piece of one.
pub const REDACTED: &str = "<redacted>";

/// Removes from text every run of [`PIECE`] or more bytes that also stands in one of its secrets
/// (and every whole occurrence of a secret shorter than that, down to 4 bytes): for text a
/// gateway sent back (an error message, a trace id, a label value), which may echo the token it
/// was sent in any part.
#[derive(Debug, Default, Clone)]
pub struct Scrubber {
    /// Every run of [`PIECE`] bytes of the secrets, as a little-endian `u64`.
    pieces: HashSet<u64, BuildHasherDefault<PieceHasher>>,
    short: Vec<Vec<u8>>,
}

/// Hashes a piece with one multiplication: every label value of every series is scrubbed at each
/// render, and SipHash over each 8-byte window cost more than the rest of a poll's render. The
/// set holds only pieces of the operator's own secrets; looking text up in it reveals nothing.
#[derive(Debug, Default, Clone, Copy)]
struct PieceHasher(u64);

impl Hasher for PieceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        let x = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }
}

fn piece_key(w: &[u8]) -> u64 {
    let mut k = [0u8; PIECE];
    k.copy_from_slice(w);
    u64::from_le_bytes(k)
}

impl Scrubber {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Scrubber::default();
        for secret in secrets {
            let b = secret.as_bytes();
            if b.len() >= PIECE {
                for w in b.windows(PIECE) {
                    s.pieces.insert(piece_key(w));
                }
            } else if b.len() >= 4 {
                s.short.push(b.to_vec());
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty() && self.short.is_empty()
    }

    /// `text` with every piece of a secret replaced by [`REDACTED`]; borrowed when it has none.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let b = text.as_bytes();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut mark = |start: usize, end: usize| match runs.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => runs.push((start, end)),
        };
        if !self.pieces.is_empty() && b.len() >= PIECE {
            for (i, w) in b.windows(PIECE).enumerate() {
                if self.pieces.contains(&piece_key(w)) {
                    mark(i, i + PIECE);
                }
            }
        }
        for short in &self.short {
            for i in 0..b.len().saturating_sub(short.len() - 1) {
                if b[i..].starts_with(short) {
                    mark(i, i + short.len());
                }
            }
        }
        if runs.is_empty() {
            return Cow::Borrowed(text);
        }
        // Short matches come after the pieces: put the runs in order and merge them.
        runs.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in runs {
            let (mut start, mut end) = (start.max(at), end.max(at));
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            while !text.is_char_boundary(end) {
                end += 1;
            }
            if start >= end {
                continue;
            }
            if start > at || at == 0 {
                out.push_str(&text[at..start]);
                out.push_str(REDACTED);
            } else if !out.ends_with(REDACTED) {
                out.push_str(REDACTED);
            }
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_secrets_are_scrubbed_whole_runs_at_a_time() {
        let s = Scrubber::new(["EAAGz9Qk2VwXr7TmPb4NcL8sYhJ3dFu6", "pw12"]);
        assert_eq!(s.scrub("nothing here"), "nothing here");
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
        assert_eq!(
            s.scrub("OAuthExceptionEAAGz9Qk2VwX trace=AwXr7TmPb4NcL"),
            "OAuthException<redacted> trace=A<redacted>"
        );
        // Seven characters are no piece; the whole token is one run.
        assert_eq!(s.scrub("EAAGz9Q"), "EAAGz9Q");
        assert_eq!(
            s.scrub("[EAAGz9Qk2VwXr7TmPb4NcL8sYhJ3dFu6]"),
            "[<redacted>]"
        );
        // A secret under eight characters is removed where it stands whole.
        assert_eq!(s.scrub("login pw12 refused"), "login <redacted> refused");
        // Two separate pieces, and multi-byte text around them.
        assert_eq!(
            s.scrub("é2VwXr7Tmé and ésYhJ3dFu6é"),
            "é<redacted>é and é<redacted>é"
        );
        assert!(Scrubber::new(["abc"]).is_empty());
    }

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("hunter2-token".into());
        assert!(!format!("{s:?} {s} {:?}", Some(&s)).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-token");
    }
}
