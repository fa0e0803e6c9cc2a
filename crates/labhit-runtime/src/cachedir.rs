//! Tags on the directories labhit owns (run bases, snapshot stores), so that copying a
//! project never copies them into a run, wherever `--run-dir` or `--cache-dir` put them.
//!
//! The tag is a `CACHEDIR.TAG` file in the [Cache Directory Tagging](https://bford.info/cachedir/)
//! format (backup tools skip such directories too) whose comment names labhit. Only
//! directories with labhit's tag are left out of a workspace copy: another tool's cache in a
//! project stays part of it.

use std::fs;
use std::io;
use std::path::Path;

/// The tag file's name.
pub const TAG_FILE: &str = "CACHEDIR.TAG";

/// The signature the format requires at the start of the file.
const SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// What marks the tag as labhit's.
const OWNER: &str = "# labhit:";

/// Tags `dir` (creating it) as labhit's, saying what it holds. Nothing is written when the
/// tag is already there.
pub fn tag(dir: &Path, what: &str) -> io::Result<()> {
    if is_tagged(dir) {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    let text = format!(
        "{SIGNATURE}\n{OWNER} {what}. Created by labhit; never copied into a run's workspace.\n"
    );
    let tmp = dir.join(format!(".{TAG_FILE}.tmp-{}", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, dir.join(TAG_FILE))
}

/// Whether `dir` holds labhit's tag.
pub fn is_tagged(dir: &Path) -> bool {
    let path = dir.join(TAG_FILE);
    // Only a small regular file can be a tag; do not read anything else.
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() <= 4096 => {}
        _ => return false,
    }
    fs::read_to_string(&path).is_ok_and(|text| text.starts_with(SIGNATURE) && text.contains(OWNER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_labhit_tags_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = dir.path().join("runs");
        tag(&ours, "labhit run directories").expect("tag");
        assert!(is_tagged(&ours));
        tag(&ours, "again").expect("idempotent");
        let theirs = dir.path().join("other-cache");
        fs::create_dir(&theirs).expect("mkdir");
        fs::write(theirs.join(TAG_FILE), format!("{SIGNATURE}\n# some tool\n")).expect("write");
        assert!(!is_tagged(&theirs));
        assert!(!is_tagged(dir.path()));
    }
}
