//! What a client may send as a git ref or a file path, checked before git sees it.
//!
//! Git's revision syntax is far richer than "a branch, a tag, a full ref or a commit id"
//! (`main~3`, `HEAD@{yesterday}`, `main:path`, `a..b`, `:/message`), and an argument starting
//! with `-` would be read as an option. Only the four documented forms get through.

/// The longest ref accepted, in bytes.
pub const MAX_REF_LEN: usize = 256;

/// The longest file path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// What a valid ref text is, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefForm {
    /// `HEAD`.
    Head,
    /// Starts with `refs/`: resolved as exactly that ref.
    Full,
    /// A short name: tried as a branch, then a tag, then (when it is hex) a commit id.
    Short {
        /// Whether the text could be a (possibly abbreviated) commit id.
        hex: bool,
    },
}

/// Checks a ref against git's ref-name rules (`git check-ref-format`) plus "no leading `-`",
/// returning its form or why it is refused.
pub(crate) fn check_ref(text: &str) -> Result<RefForm, String> {
    if text.is_empty() {
        return Err("the ref is empty".to_owned());
    }
    if text.len() > MAX_REF_LEN {
        return Err(format!(
            "the ref is {} bytes long, the limit is {MAX_REF_LEN}",
            text.len()
        ));
    }
    if text == "HEAD" {
        return Ok(RefForm::Head);
    }
    if text.starts_with('-') {
        return Err("a ref cannot start with `-`".to_owned());
    }
    if let Some(c) = text.chars().find(|c| {
        c.is_control() || c.is_whitespace() || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Err(format!(
            "a ref cannot contain {c:?}; give a branch, a tag, a full ref (`refs/heads/main`) or a commit id"
        ));
    }
    if text.contains("..") {
        return Err("a ref cannot contain `..`".to_owned());
    }
    if text.contains("@{") || text == "@" {
        return Err("a ref cannot contain `@{` or be `@`".to_owned());
    }
    if text.starts_with('/') || text.ends_with('/') || text.contains("//") {
        return Err("a ref cannot start or end with `/` or contain `//`".to_owned());
    }
    if text.ends_with('.') {
        return Err("a ref cannot end with `.`".to_owned());
    }
    for component in text.split('/') {
        if component.starts_with('.') {
            return Err(format!("the ref component {component:?} starts with `.`"));
        }
        if component.ends_with(".lock") {
            return Err(format!("the ref component {component:?} ends with `.lock`"));
        }
    }
    if text.starts_with("refs/") {
        return Ok(RefForm::Full);
    }
    let hex = (4..=64).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit());
    Ok(RefForm::Short { hex })
}

/// Checks a repository-relative file path: `/`-separated, not absolute, no empty, `.` or
/// `..` components, no backslash, NUL or other control character.
pub(crate) fn check_path(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the path is empty".to_owned());
    }
    if text.len() > MAX_PATH_LEN {
        return Err(format!(
            "the path is {} bytes long, the limit is {MAX_PATH_LEN}",
            text.len()
        ));
    }
    if text.starts_with('/') {
        return Err("the path must be relative to the repository root".to_owned());
    }
    if let Some(c) = text.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!(
            "the path cannot contain {c:?}; use `/` as separator"
        ));
    }
    for component in text.split('/') {
        match component {
            "" => return Err("the path has an empty component (`//` or a trailing `/`)".to_owned()),
            "." | ".." => {
                return Err(format!("the path cannot contain a `{component}` component"));
            }
            _ => {}
        }
    }
    Ok(())
}
