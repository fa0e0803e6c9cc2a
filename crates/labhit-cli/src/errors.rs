//! The one-line text of a fatal error: the message and its causes, each said once.
//!
//! Library errors often name their cause in their own message (`cannot read `x`: {source}`)
//! and also return it as [`std::error::Error::source`], so anyhow's alternate form (`{:#}`)
//! would print the cause twice. [`message`] walks the chain and appends a cause only when
//! the text so far does not already end with it.

/// `err` and its causes, joined with `": "`, without repeating a cause a message already
/// includes.
pub(crate) fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::message;

    /// An error that names its cause in its message and returns it as its source, as
    /// `thiserror`'s `#[error("…: {source}")]` does.
    #[derive(Debug)]
    struct Wrap(&'static str, Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }

    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.1)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let read = Wrap("cannot read `x`", Box::new(io));
        let err = anyhow::Error::new(Wrap("cannot create the run workspace", Box::new(read)));
        assert_eq!(
            message(&err),
            "cannot create the run workspace: cannot read `x`: no such file"
        );
    }

    #[test]
    fn context_and_causes_not_in_the_message_are_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io).context("opening `pipeline.yaml`");
        assert_eq!(message(&err), "opening `pipeline.yaml`: no such file");
    }
}
