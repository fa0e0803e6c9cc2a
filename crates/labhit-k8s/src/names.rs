//! Kubernetes names and label values from LabHit identifiers: DNS-1123 labels for object
//! names, label values (63 characters, alphanumeric at both ends), with a short stable hash
//! suffix wherever an identifier had to be changed or cut, so two identifiers never meet in
//! one name.

/// Longest DNS-1123 label and longest label value.
pub const MAX_LABEL: usize = 63;

/// FNV-1a (64 bit) of `text`, as 8 lower-case hex digits (its low 32 bits): stable across
/// builds and platforms, which re-adoption by name relies on. Not a security hash.
pub fn short_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", hash & 0xffff_ffff)
}

/// `true` for a DNS-1123 label: 1-63 of `a-z`, `0-9`, `-`, alphanumeric at both ends.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS-1123 label made of `parts` joined by `-`, always ending in `-` and the
/// [`short_hash`] of `identity` (so it is unique per identity even where sanitising or
/// cutting made two parts equal): lower-cased, every other character `-`, runs of `-`
/// collapsed, cut to fit 63 characters.
pub fn job_name(parts: &[&str], identity: &str) -> String {
    let suffix = short_hash(identity);
    let mut base = sanitize(&parts.join("-"));
    let room = MAX_LABEL - suffix.len() - 1;
    base.truncate(room);
    let base = base.trim_matches('-');
    if base.is_empty() {
        format!("x-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// `value` as a label value: unchanged when it is one already (63 of `A-Z a-z 0-9 - _ .`,
/// alphanumeric at both ends), else sanitised and cut, with `-` and [`short_hash`] of the
/// original appended. The exact value then goes into an annotation.
pub fn label_value(value: &str) -> String {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends_ok = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    if value.len() <= MAX_LABEL && value.chars().all(valid_char) && ends_ok(value) {
        return value.to_owned();
    }
    let suffix = short_hash(value);
    let mut base: String = value
        .chars()
        .map(|c| if valid_char(c) { c } else { '-' })
        .collect();
    base.truncate(MAX_LABEL - suffix.len() - 1);
    let base = base.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if base.is_empty() {
        suffix
    } else {
        format!("{base}-{suffix}")
    }
}

/// Lower-cased, every character outside `a-z 0-9` a `-`, runs of `-` collapsed, no `-` at
/// the ends.
fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_differ_where_sanitising_made_them_equal() {
        let long = "p".repeat(100);
        for (parts, identity) in [
            (&["labhit", "Build.Release", "a_b"][..], "1"),
            (&["labhit", "build-release", "a-b"][..], "2"),
            (&["labhit", long.as_str(), "stage"][..], "3"),
            (&["---", "___"][..], "4"),
        ] {
            let name = job_name(parts, identity);
            assert!(is_dns_label(&name), "{name}");
        }
        assert_ne!(
            job_name(&["a_b"], "run/a_b/1"),
            job_name(&["a-b"], "run/a-b/1")
        );
    }

    #[test]
    fn label_values_stay_when_valid_and_are_hashed_when_not() {
        assert_eq!(label_value("build"), "build");
        assert_eq!(label_value("My.Pipeline_1"), "My.Pipeline_1");
        let ends_with_dash = label_value("stage-");
        assert!(ends_with_dash.starts_with("stage-"), "{ends_with_dash}");
        assert_ne!(ends_with_dash, "stage-");
        let long = label_value(&"a".repeat(100));
        assert_eq!(long.len(), MAX_LABEL);
    }
}
