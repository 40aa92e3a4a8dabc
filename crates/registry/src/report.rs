//! One way to print an error with its causes, used by `zoo`, `serve` and
//! `batch`: the outermost message, then each cause once. Many of our error
//! types embed their cause in their own message (`"cannot read the
//! checkpoint: {0}"`) and also report it as their source, so printing the
//! chain naively says the innermost message twice (or more); here a cause
//! whose text is already part of what was printed is skipped.

use std::error::Error;

/// `chain` (outermost first, as `anyhow::Error::chain` and
/// [`std::error::Error::source`] give it), joined by ": ", each text once.
pub fn join_causes<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut out = String::new();
    for e in chain {
        let text = e.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// [`join_causes`] of `e` and its sources.
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    join_causes(std::iter::successors(Some(e), |e: &&(dyn Error + 'static)| (*e).source()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("refusing global `posix.system` at byte 79")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    enum Middle {
        // Embeds its cause and reports it as its source: the usual thiserror pattern.
        #[error("cannot read the checkpoint: {0}")]
        Read(#[from] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("converting evil.pkl")]
    struct Outer(#[source] Middle);

    #[test]
    fn each_message_is_said_once() {
        let e = Outer(Middle::Read(Inner));
        assert_eq!(error_chain(&e), "converting evil.pkl: cannot read the checkpoint: refusing global `posix.system` at byte 79");
        let m = Middle::Read(Inner);
        assert_eq!(error_chain(&m), "cannot read the checkpoint: refusing global `posix.system` at byte 79");
        assert_eq!(error_chain(&Inner), "refusing global `posix.system` at byte 79");
    }
}
