/// Why platform staff did something to an account (a suspension), as they wrote it: one
/// line, trimmed, 1 to [`Reason::MAX_CHARS`] characters, no control characters. It is
/// kept with the record and shown to the person it concerns, so nothing in it can hide
/// text or break a line of a log or a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reason must be one line of 1 to 200 characters")]
pub struct ReasonError;

impl Reason {
    /// The database's CHECK holds the same bound.
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: &str) -> Result<Self, ReasonError> {
        let text = text.trim();
        let fits = (1..=Self::MAX_CHARS).contains(&text.chars().count());
        if fits && !text.chars().any(char::is_control) {
            Ok(Self(text.to_owned()))
        } else {
            Err(ReasonError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_reason_is_one_trimmed_line_of_1_to_200_characters() {
        assert_eq!(Reason::parse("  刷单  ").unwrap().as_str(), "刷单");
        assert!(Reason::parse(&"字".repeat(200)).is_ok());
        for bad in ["", "   ", "two\nlines", "tab\there", "nul\u{0}", "\u{85}"] {
            assert_eq!(Reason::parse(bad), Err(ReasonError), "{bad:?}");
        }
        assert_eq!(Reason::parse(&"字".repeat(201)), Err(ReasonError));
    }

    proptest! {
        /// Whatever a client sends: accepted exactly when its trimmed text fits and holds
        /// no control character; what is accepted parses to itself again.
        #[test]
        fn parsing_is_exactly_the_rule(text in "\\PC{0,3}[\\s\\x00-\\x1f\\x7f]?\\PC{0,250}") {
            let trimmed = text.trim();
            let ok = (1..=Reason::MAX_CHARS).contains(&trimmed.chars().count())
                && !trimmed.chars().any(char::is_control);
            match Reason::parse(&text) {
                Ok(reason) => {
                    prop_assert!(ok);
                    prop_assert_eq!(reason.as_str(), trimmed);
                    prop_assert_eq!(Reason::parse(reason.as_str()), Ok(reason.clone()));
                }
                Err(_) => prop_assert!(!ok),
            }
        }
    }
}
