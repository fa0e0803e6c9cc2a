//! `labhit ext new CATEGORY/NAME`: scaffold an extension project that builds outside this
//! repository, in Rust (a crate depending on `labhit-sdk`) or Python (a `componentize-py`
//! project carrying the contract's WIT).
//!
//! Every project has a manifest whose `[inputs]` agrees with the code, a test, a README and
//! a `.gitignore`; `labhit ext build` builds it as it is. The templates live in
//! `templates/` beside this file, with `{{placeholders}}` filled in here. Nothing is
//! overwritten: when any file the template would write exists, nothing is written.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;
use labhit_protocol::forms::ExtensionIdent;

use crate::{ColorWhen, Exit};

/// The environment variable that stands for `--sdk-path`.
pub(crate) const SDK_PATH_ENV: &str = "LABHIT_SDK_PATH";

/// Arguments of `labhit ext new`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit ext new util/hello                      a Rust crate in ./hello\n",
    "  labhit ext new util/hello --lang python        a Python project in ./hello\n",
    "  labhit ext new deploy/notify --dir ext/notify  somewhere else\n",
    "  labhit ext new util/hello --sdk-path ~/src/labhit-contracts/crates/labhit-sdk\n",
    "\n",
    "A Rust project depends on `labhit-sdk` by version requirement; `--sdk-path PATH` (or\n",
    "`LABHIT_SDK_PATH`) writes a path dependency on a local checkout instead. A Python\n",
    "project carries the contract's WIT in `wit/` and builds with `componentize-py`.\n",
    "Both have extension.toml with `[inputs]`, the code, a test and a README; build them\n",
    "with `labhit ext build DIR`. CATEGORY and NAME follow the manifest's rules: lowercase\n",
    "letters, digits and `-`, starting with a letter, at most 63 characters. Existing files\n",
    "are never overwritten: if one is in the way, nothing is written.\n",
    "\n",
    "Exit codes:\n",
    "  0  the project was written\n",
    "  1  a file is in the way\n",
    "  2  bad usage (an invalid CATEGORY/NAME)\n",
    "  3  fatal: `--sdk-path` is not the labhit-sdk crate, or a file cannot be written\n",
))]
pub(crate) struct Args {
    /// The extension's `category/name`, as a stage's `use:` will name it
    #[arg(value_name = "CATEGORY/NAME", value_parser = parse_id)]
    id: (ExtensionIdent, ExtensionIdent),

    /// The language of the project
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,

    /// The directory to write into (default: `./NAME`)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Depend on the `labhit-sdk` crate at PATH (a local checkout) instead of the version
    /// requirement; default `$LABHIT_SDK_PATH` (Rust only)
    #[arg(long, value_name = "PATH")]
    sdk_path: Option<PathBuf>,
}

/// The language of a new project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    /// A crate depending on `labhit-sdk`, built for `wasm32-wasip2`.
    Rust,
    /// `app.py` built with `componentize-py` from the contract's WIT.
    Python,
}

/// `category/name`, each half checked by the manifest's own rule.
fn parse_id(text: &str) -> Result<(ExtensionIdent, ExtensionIdent), String> {
    let Some((category, name)) = text.split_once('/') else {
        return Err(format!(
            "`{text}` is not `category/name` (for example `util/hello`)"
        ));
    };
    let category = ExtensionIdent::new(category).map_err(|e| format!("category: {e}"))?;
    let name = ExtensionIdent::new(name).map_err(|e| format!("name: {e}"))?;
    Ok((category, name))
}

/// A template file: where it goes in the project and its text.
struct File {
    path: &'static str,
    text: &'static str,
}

const RUST: &[File] = &[
    File {
        path: "Cargo.toml",
        text: include_str!("templates/rust/Cargo.toml.tmpl"),
    },
    File {
        path: "extension.toml",
        text: include_str!("templates/rust/extension.toml.tmpl"),
    },
    File {
        path: "src/lib.rs",
        text: include_str!("templates/rust/lib.rs.tmpl"),
    },
    File {
        path: "README.md",
        text: include_str!("templates/rust/README.md.tmpl"),
    },
    File {
        path: ".gitignore",
        text: include_str!("templates/rust/gitignore.tmpl"),
    },
];

const PYTHON: &[File] = &[
    File {
        path: "extension.toml",
        text: include_str!("templates/python/extension.toml.tmpl"),
    },
    File {
        path: "app.py",
        text: include_str!("templates/python/app.py.tmpl"),
    },
    File {
        path: "greeting.py",
        text: include_str!("templates/python/greeting.py.tmpl"),
    },
    File {
        path: "test_greeting.py",
        text: include_str!("templates/python/test_greeting.py.tmpl"),
    },
    File {
        path: "README.md",
        text: include_str!("templates/python/README.md.tmpl"),
    },
    File {
        path: ".gitignore",
        text: include_str!("templates/python/gitignore.tmpl"),
    },
    // The contract's world `extension`, as this `labhit` implements it (the file defines the
    // whole package; the WASI worlds beside it in the repository are not needed).
    File {
        path: "wit/labhit-extension.wit",
        text: include_str!("../../../labhit-wit/wit/labhit-extension.wit"),
    },
];

/// The contract requirement new manifests carry: `^MAJOR.MINOR` of the contract this
/// `labhit` implements.
fn contract_requirement() -> String {
    let version = labhit_protocol::version::CONTRACT_VERSION;
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("^{major}.{minor}"),
        _ => format!("^{version}"),
    }
}

/// The `labhit-sdk` line of a new `Cargo.toml`.
fn sdk_dependency(sdk_path: Option<&Path>) -> Result<String> {
    let Some(path) = sdk_path else {
        return Ok(format!("labhit-sdk = \"{}\"", env!("CARGO_PKG_VERSION")));
    };
    if !path.join("Cargo.toml").is_file() {
        bail!(
            "`{}` is not the labhit-sdk crate (no `Cargo.toml` there); give the `crates/labhit-sdk` directory of a labhit-contracts checkout",
            path.display()
        );
    }
    let absolute = std::path::absolute(path)
        .with_context(|| format!("cannot make `{}` absolute", path.display()))?;
    let text = absolute.to_str().with_context(|| {
        format!(
            "`{}` is not UTF-8, which Cargo.toml needs",
            absolute.display()
        )
    })?;
    Ok(format!(
        "labhit-sdk = {{ path = {} }}",
        serde_json::Value::from(text)
    ))
}

/// `text` with every placeholder filled in.
fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// Runs `labhit ext new`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    let (category, name) = &args.id;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(name.as_str()));
    let sdk = match args.lang {
        Lang::Rust => {
            let from_env = std::env::var_os(SDK_PATH_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
            sdk_dependency(args.sdk_path.clone().or(from_env).as_deref())?
        }
        Lang::Python => String::new(),
    };
    let lib = name.as_str().replace('-', "_");
    let contract = contract_requirement();
    let values = [
        ("category", category.as_str()),
        ("name", name.as_str()),
        ("lib", lib.as_str()),
        ("contract", contract.as_str()),
        ("sdk", sdk.as_str()),
        ("wit_package", labhit_protocol::version::WIT_PACKAGE),
    ];
    let files = match args.lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
    };
    let mut err = crate::stdio::stderr(color.choice());
    let in_the_way: Vec<PathBuf> = files
        .iter()
        .map(|f| dir.join(f.path))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if !in_the_way.is_empty() {
        for path in &in_the_way {
            writeln!(
                err,
                "labhit: error: `{}` exists; `labhit ext new` never overwrites: choose another `--dir` or move it away",
                path.display()
            )?;
        }
        return Ok(Exit::Problems);
    }
    for file in files {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        // `create_new`: a file that appeared since the check above is not overwritten either.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        out.write_all(fill(file.text, &values).as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    let mut out = crate::stdio::stdout(color.choice());
    writeln!(
        out,
        "created {} extension `{}/{}` in {}",
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
        },
        category,
        name,
        dir.display()
    )?;
    writeln!(
        out,
        "next: labhit ext build {}   (then `labhit ext check` and `labhit ext install` the bundle it prints)",
        dir.display()
    )?;
    Ok(Exit::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_manifest_rules() {
        assert!(parse_id("util/hello-world").is_ok());
        for bad in ["hello", "Util/hello", "util/1x", "util/", "/x", "a/b/c"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        let err = parse_id("util/Hello").expect_err("uppercase");
        assert!(err.starts_with("name: "), "{err}");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let values = [
            ("category", "util"),
            ("name", "hello"),
            ("lib", "hello"),
            ("contract", "^0.1"),
            ("sdk", "labhit-sdk = \"0.1.0\""),
            ("wit_package", "labhit:extension@0.1.0"),
        ];
        for file in RUST.iter().chain(PYTHON) {
            let text = fill(file.text, &values);
            assert!(!text.contains("{{"), "{}: {text}", file.path);
        }
    }

    #[test]
    fn the_contract_requirement_accepts_this_contract() {
        let req = semver::VersionReq::parse(&contract_requirement()).expect("a requirement");
        let version =
            semver::Version::parse(labhit_protocol::version::CONTRACT_VERSION).expect("semver");
        assert!(req.matches(&version));
    }
}
