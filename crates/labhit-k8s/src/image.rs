//! Container image references (`[registry[:port]/]path[:tag][@algorithm:hex]`), checked
//! before they reach a Job: a bad one would otherwise leave a pod pending in
//! `InvalidImageName` until the deadline.

/// Why `image` is not an image reference; `None` when it is one.
pub fn problem(image: &str) -> Option<String> {
    if image.is_empty() {
        return Some("it is empty".to_owned());
    }
    if image.len() > 1024 {
        return Some("it is longer than 1024 characters".to_owned());
    }
    if let Some(c) = image.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("it contains {c:?}"));
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(digest) = digest
        && let Some(why) = digest_problem(digest)
    {
        return Some(why);
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Some(format!(
                "tag `{tag}` is not 1-128 of `A-Z a-z 0-9 _ . -` starting with a letter, digit or `_`"
            ));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // The first component is a registry when it looks like a host (`.`, `:` or `localhost`).
    if components.len() > 1
        && let Some(first) = components.first()
        && (first.contains('.') || first.contains(':') || *first == "localhost")
    {
        let host = first.split(':').next().unwrap_or_default();
        let port = first.split_once(':').map(|(_, p)| p);
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
        if !host_ok || !port_ok {
            return Some(format!("`{first}` is not a registry host[:port]"));
        }
        components.remove(0);
    }
    for component in components {
        let ok = !component.is_empty()
            && component.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Some(format!(
                "repository path component `{component}` must be lower-case letters and digits, separated by `.`, `_` or `-`"
            ));
        }
    }
    None
}

fn digest_problem(digest: &str) -> Option<String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Some(format!("digest `{digest}` is not `algorithm:hex`"));
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => {
            return Some(format!(
                "digest algorithm `{other}` is not sha256 or sha512"
            ));
        }
    };
    if hex.len() != want
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Some(format!(
            "a {algorithm} digest is {want} lower-case hex digits"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn image_references() {
        for good in [
            "rust:1.95-slim",
            "debian",
            "ghcr.io/labhit/worker:0.2.0",
            "localhost:5000/a/b_c.d-e:latest",
            "registry.example.com/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
        for bad in [
            "",
            "Rust:1",
            "rust:",
            "rust:1 slim",
            "rust@sha256:abc",
            "a//b",
            "host:99999/x",
            "rust:-x",
        ] {
            assert!(problem(bad).is_some(), "{bad}");
        }
    }
}
