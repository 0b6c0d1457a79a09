//! Closed sets of label values, and payload strings made fit for a label.
//!
//! Every label whose values come from a fixed list (a state, a failure reason, an event name) is
//! declared once with [`closed_set!`]: the enum, its label strings and the full list come from one
//! place, so the compiler checks that they agree. Strings that come from a payload and cannot be
//! listed in advance go through [`plain`] or [`text`] before they become a label.

/// A closed set of label values: every value, its label, and the one that stands for the rest.
pub trait LabelSet: Copy + Eq + 'static {
    /// Every value, in the order it is exposed.
    const ALL: &'static [Self];
    /// The label of every value, in the order of [`LabelSet::ALL`].
    const LABELS: &'static [&'static str];
    fn as_str(self) -> &'static str;
    /// Where in [`LabelSet::ALL`] the value stands, for counters kept in arrays.
    fn index(self) -> usize;
}

/// Declares an enum whose variants are label values.
///
/// `catch_all` names the variant that an unknown label maps to in `from_label`; sets without one
/// get no `from_label` (unknown values have no place in them).
macro_rules! closed_set {
    (@from_label $name:ident, $other:ident, [$($variant:ident => $label:literal),+]) => {
        impl $name {
            /// The value with this exact label, else the catch-all.
            pub fn from_label(s: &str) -> Self {
                match s { $($label => $name::$variant,)+ _ => $name::$other }
            }
        }
    };
    (@from_label $name:ident, , [$($variant:ident => $label:literal),+]) => {};
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)? }
        $(catch_all = $other:ident;)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::labels::LabelSet for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            const LABELS: &'static [&'static str] = &[$($label),+];
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
            fn index(self) -> usize {
                self as usize
            }
        }

        impl $name {
            pub const COUNT: usize = <$name as $crate::labels::LabelSet>::ALL.len();

            pub fn as_str(self) -> &'static str {
                <$name as $crate::labels::LabelSet>::as_str(self)
            }
        }

        $crate::labels::closed_set!(@from_label $name, $($other)?, [$($variant => $label),+]);

        /// Tests and callers compare with the label itself.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The value whose label is `s`, in any case.
pub fn find_ignoring_case<S: LabelSet>(s: &str) -> Option<S> {
    S::ALL
        .iter()
        .copied()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
}

pub(crate) use closed_set;

/// A label value from a payload in a plain alphabet: ASCII letters, digits and `extra`, anything
/// else replaced by `_`, surrounding whitespace dropped, at most `max` characters.
pub fn plain(raw: &str, max: usize, extra: &str) -> String {
    raw.trim()
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || extra.contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value from a payload in the user's own words (a department name in Portuguese):
/// any printable character, control characters dropped, whitespace trimmed, at most `max`
/// characters.
pub fn text(raw: &str, max: usize) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(max * 4)
        .collect();
    cleaned
        .trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::labels::closed_set! {
        enum Colour { Red => "red", Green => "green", Other => "other" }
        catch_all = Other;
    }

    #[test]
    fn labels_and_values_agree() {
        assert_eq!(Colour::LABELS, ["red", "green", "other"]);
        assert_eq!(Colour::ALL.len(), Colour::COUNT);
        for (v, l) in Colour::ALL.iter().zip(Colour::LABELS) {
            assert_eq!(v.as_str(), *l);
            assert_eq!(Colour::from_label(l), *v);
            assert_eq!(Colour::ALL[v.index()], *v);
        }
        assert_eq!(Colour::from_label("blue"), Colour::Other);
    }

    #[test]
    fn plain_labels() {
        assert_eq!(plain("v2.41.3", 64, "._:+-"), "v2.41.3");
        assert_eq!(plain("a\"b\nc{d}", 64, "._:+-"), "a_b_c_d_");
        assert_eq!(plain(&"x".repeat(500), 16, "").len(), 16);
    }

    #[test]
    fn text_labels() {
        assert_eq!(text("a\u{0}b\u{7f}c  \t ", 50), "abc");
        assert_eq!(text("Atendimento ção", 50), "Atendimento ção");
        assert_eq!(text(&"é".repeat(100), 50).chars().count(), 50);
    }
}
