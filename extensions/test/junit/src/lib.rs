//! `test/junit`: reads the JUnit XML reports matching `reports`, reports the counts as
//! outputs, keeps the reports as artifacts, and fails the stage (a non-zero exit code, with
//! outputs and artifacts still reported) when a test failed or errored — or was skipped, with
//! `fail-on-skipped`.
//!
//! Counts are per `<testcase>` (a case with `<failure>` is a failure, with `<error>` an error,
//! with `<skipped>` skipped, otherwise passed), so nested `<testsuites>` and suites whose
//! summary attributes disagree with their cases are counted correctly.
//!
//! Host imports used: the read-only workspace, `log` (each failed test at error level),
//! `cancellation`, outputs, artifacts and a failing exit.

use labhit_sdk::{Context, Error, Extension, Input, Output, TypedOutputs, error, info, warn};
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many failed tests are logged one by one; the rest are counted.
const MAX_LOGGED_FAILURES: usize = 50;

/// The stage's `with`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Glob patterns of the reports.
    pub reports: Vec<String>,
    /// Fail the stage when a test was skipped.
    #[serde(default)]
    pub fail_on_skipped: bool,
    /// Succeed with zero counts when no report matches.
    #[serde(default)]
    pub allow_no_reports: bool,
}

/// The outcome of one test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Neither failed, errored nor skipped.
    Passed,
    /// Has `<skipped>`.
    Skipped,
    /// Has `<failure>`.
    Failed,
    /// Has `<error>`.
    Errored,
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// `classname.name`, or `name` alone.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
    /// The `message` of the failure, error or skip, if any.
    pub message: Option<String>,
}

/// Counts over test cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Test cases.
    pub tests: u64,
    /// Passed cases.
    pub passed: u64,
    /// Failed cases.
    pub failures: u64,
    /// Errored cases.
    pub errors: u64,
    /// Skipped cases.
    pub skipped: u64,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        self.tests += 1;
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failures += 1,
            Outcome::Errored => self.errors += 1,
        }
    }

    fn merge(&mut self, other: Counts) {
        self.tests += other.tests;
        self.passed += other.passed;
        self.failures += other.failures;
        self.errors += other.errors;
        self.skipped += other.skipped;
    }
}

/// Parses one JUnit XML report into its test cases.
///
/// # Errors
///
/// A message (with the byte offset) when the text is not well-formed XML or its root
/// element is neither `<testsuites>` nor `<testsuite>`.
pub fn parse_report(xml: &str) -> Result<Vec<Case>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;
    let mut cases = Vec::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut current: Option<(usize, Case)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|err| format!("malformed XML at byte {}: {err}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                depth += 1;
                let local = start.local_name();
                let name = local.as_ref();
                if depth == 1 {
                    if name != "testsuites" && name != "testsuite" {
                        return Err(format!(
                            "not a JUnit report: the root element is <{}>, not <testsuites> or <testsuite>",
                            name
                        ));
                    }
                    seen_root = true;
                }
                match (name, current.as_mut()) {
                    ("testcase", None) => {
                        let case = Case {
                            name: case_name(&start)?,
                            outcome: Outcome::Passed,
                            message: None,
                        };
                        current = Some((depth, case));
                    }
                    ("failure" | "error" | "skipped", Some((case_depth, case)))
                        if depth == *case_depth + 1 =>
                    {
                        let outcome = match name {
                            "failure" => Outcome::Failed,
                            "error" => Outcome::Errored,
                            _ => Outcome::Skipped,
                        };
                        // Keep the most severe outcome: error > failure > skipped.
                        if outcome > case.outcome {
                            case.outcome = outcome;
                            case.message = attribute(&start, "message")?;
                        }
                    }
                    _ => {}
                }
            }
            Event::End(_) => {
                if let Some((case_depth, _)) = &current
                    && *case_depth == depth
                    && let Some((_, case)) = current.take()
                {
                    cases.push(case);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err("not a JUnit report: no root element".to_owned());
    }
    if depth > 0 {
        return Err("malformed XML: the document ends inside an element".to_owned());
    }
    Ok(cases)
}

fn attribute(start: &BytesStart<'_>, key: &str) -> Result<Option<String>, String> {
    for attr in start.attributes() {
        let attr = attr.map_err(|err| format!("malformed attribute: {err}"))?;
        if attr.key.local_name().as_ref() == key {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| format!("malformed attribute value: {err}"))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn case_name(start: &BytesStart<'_>) -> Result<String, String> {
    let name = attribute(start, "name")?.unwrap_or_else(|| "(unnamed)".to_owned());
    Ok(match attribute(start, "classname")? {
        Some(class) if !class.is_empty() => format!("{class}.{name}"),
        _ => name,
    })
}

/// `1 test`, `2 tests`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The named outputs: the source of the manifest's `[outputs]` (`labhit ext build` checks
/// one against the other).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Outputs {
    /// Number of report files read.
    pub reports: usize,
    /// Number of test cases.
    pub tests: u64,
    /// Test cases that neither failed, errored nor were skipped.
    pub passed: u64,
    /// Test cases with a `<failure>`.
    pub failures: u64,
    /// Test cases with an `<error>`.
    pub errors: u64,
    /// Test cases with `<skipped>`.
    pub skipped: u64,
}

/// The extension.
pub struct Junit;

impl Extension for Junit {
    type Config = Config;

    fn execute(ctx: &Context, input: Input<Config>) -> Result<Output, Error> {
        let config = input.config;
        if config.reports.is_empty() {
            return Err(Error::invalid_config(
                "`reports` is empty: name the report files",
            ));
        }
        let paths = ctx.glob(&config.reports)?;
        if paths.is_empty() && !config.allow_no_reports {
            return Err(Error::failed(format!(
                "no report matches {} (set `allow-no-reports: true` if that is expected)",
                config.reports.join(", ")
            )));
        }

        let mut total = Counts::default();
        let mut artifacts = Vec::new();
        let mut logged = 0usize;
        for path in &paths {
            ctx.check_cancelled(&format!("reading `{path}`"))?;
            let text = ctx.read_to_string(path)?;
            let cases =
                parse_report(&text).map_err(|err| Error::failed(format!("`{path}`: {err}")))?;
            let mut counts = Counts::default();
            for case in &cases {
                counts.add(case.outcome);
                if matches!(case.outcome, Outcome::Failed | Outcome::Errored) {
                    if logged < MAX_LOGGED_FAILURES {
                        let verb = if case.outcome == Outcome::Failed {
                            "failed"
                        } else {
                            "errored"
                        };
                        match &case.message {
                            Some(message) => error!(ctx, "{verb}: {}: {message}", case.name),
                            None => error!(ctx, "{verb}: {}", case.name),
                        }
                    }
                    logged += 1;
                }
            }
            info!(
                ctx,
                "{path}: {}, {}, {}, {} skipped",
                count(counts.tests, "test"),
                count(counts.failures, "failure"),
                count(counts.errors, "error"),
                counts.skipped
            );
            total.merge(counts);
            artifacts.push(ctx.artifact(path)?);
        }
        if logged > MAX_LOGGED_FAILURES {
            error!(ctx, "... and {} more", logged - MAX_LOGGED_FAILURES);
        }

        let failed = total.failures + total.errors > 0;
        let skipped_fails = config.fail_on_skipped && total.skipped > 0;
        let summary = format!(
            "{} in {}: {} passed, {} failed, {} errored, {} skipped",
            count(total.tests, "test"),
            count(paths.len() as u64, "report"),
            total.passed,
            total.failures,
            total.errors,
            total.skipped
        );
        if failed {
            error!(ctx, "{summary}");
        } else if skipped_fails {
            error!(
                ctx,
                "{summary}; skipped tests fail this stage (`fail-on-skipped`)"
            );
        } else if total.skipped > 0 {
            warn!(ctx, "{summary}");
        } else {
            info!(ctx, "{summary}");
        }

        let mut output = Self::output(&Outputs {
            reports: paths.len(),
            tests: total.tests,
            passed: total.passed,
            failures: total.failures,
            errors: total.errors,
            skipped: total.skipped,
        })?;
        for artifact in artifacts {
            output = output.artifact(artifact);
        }
        Ok(output.exit_code(if failed || skipped_fails { 1 } else { 0 }))
    }
}

impl TypedOutputs for Junit {
    type Outputs = Outputs;
}

labhit_sdk::export_extension!(Junit);

#[cfg(test)]
mod tests {
    use super::*;
    use labhit_sdk::testing::{MockHost, json};

    /// The report `prepare` writes in `examples/pipeline.yaml`.
    const UNIT: &str = r#"<testsuite name="unit" tests="3" failures="0" errors="0" skipped="1">
  <testcase classname="core" name="parses"/>
  <testcase classname="core" name="validates"/>
  <testcase classname="core" name="renders"><skipped/></testcase>
</testsuite>
"#;

    const FAILING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="db">
    <testcase classname="db" name="connects" time="0.1"/>
    <testcase classname="db" name="migrates">
      <failure message="expected 3 &lt; 2" type="AssertionError">trace</failure>
      <system-out>noise</system-out>
    </testcase>
    <testcase name="boots"><error message="segfault"/></testcase>
    <testsuite name="nested">
      <testcase classname="db.nested" name="inner"><skipped message="later"/></testcase>
    </testsuite>
  </testsuite>
</testsuites>
"#;

    fn host() -> MockHost {
        labhit_sdk::mock_host!().file("reports/unit.xml", UNIT)
    }

    #[test]
    fn example_pipeline_report_passes() {
        let host = host();
        let out = host
            .run::<Junit>(json!({"reports": ["reports/*.xml"], "fail-on-skipped": false}))
            .unwrap();
        assert!(out.is_success());
        for (name, value) in [
            ("reports", "1"),
            ("tests", "3"),
            ("passed", "2"),
            ("failures", "0"),
            ("errors", "0"),
            ("skipped", "1"),
        ] {
            assert_eq!(out.get(name), Some(value), "{name}");
        }
        let artifact = &out.artifacts()[0];
        assert_eq!(
            (artifact.path(), artifact.mime()),
            ("reports/unit.xml", "application/xml")
        );
        assert!(host.logged("3 tests in 1 report: 2 passed, 0 failed, 0 errored, 1 skipped"));
        assert!(host.logged("reports/unit.xml: 3 tests, 0 failures, 0 errors, 1 skipped"));
    }

    #[test]
    fn skipped_tests_fail_on_request() {
        let out = host()
            .run::<Junit>(json!({"reports": ["reports/*.xml"], "fail-on-skipped": true}))
            .unwrap();
        assert_eq!(out.exit_status(), 1);
        assert_eq!(out.get("skipped"), Some("1"));
    }

    #[test]
    fn failed_tests_fail_the_stage_and_keep_the_reports() {
        let host = host().file("reports/it/db.xml", FAILING);
        let out = host
            .run::<Junit>(json!({"reports": ["reports/**/*.xml"]}))
            .unwrap();
        assert_eq!(out.exit_status(), 1);
        assert_eq!(out.get("tests"), Some("7"));
        assert_eq!(out.get("failures"), Some("1"));
        assert_eq!(out.get("errors"), Some("1"));
        assert_eq!(out.get("skipped"), Some("2"));
        assert_eq!(out.artifacts().len(), 2);
        assert!(host.logged("failed: db.migrates: expected 3 < 2"));
        assert!(host.logged("errored: boots: segfault"));
        assert!(
            host.logs()
                .iter()
                .any(|e| e.level == labhit_sdk::Level::Error && e.message.starts_with("7 tests"))
        );
    }

    #[test]
    fn parses_cases() {
        let cases = parse_report(FAILING).unwrap();
        let outcomes: Vec<_> = cases.iter().map(|c| (c.name.as_str(), c.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("db.connects", Outcome::Passed),
                ("db.migrates", Outcome::Failed),
                ("boots", Outcome::Errored),
                ("db.nested.inner", Outcome::Skipped),
            ]
        );
        assert_eq!(cases[3].message.as_deref(), Some("later"));
    }

    #[test]
    fn malformed_reports_fail_with_the_file_name() {
        for (xml, expected) in [
            ("<testsuite><testcase></testsuite>", "malformed XML"),
            ("<testsuite><testcase>", "ends inside an element"),
            ("<html><body/></html>", "root element is <html>"),
            ("", "no root element"),
            (
                "<testsuite><testcase name='a' name='b'/></testsuite>",
                "malformed attribute",
            ),
        ] {
            let host = host().file("reports/bad.xml", xml);
            let err = host
                .run::<Junit>(json!({"reports": ["reports/bad.xml"]}))
                .unwrap_err();
            assert_eq!(err.kind(), "failed");
            assert!(err.message().starts_with("`reports/bad.xml`: "), "{err}");
            assert!(err.message().contains(expected), "{xml}: {err}");
        }
    }

    #[test]
    fn missing_reports() {
        let err = host()
            .run::<Junit>(json!({"reports": ["out/*.xml"]}))
            .unwrap_err();
        assert_eq!(err.kind(), "failed");
        assert!(err.message().contains("allow-no-reports"), "{err}");
        let out = host()
            .run::<Junit>(json!({"reports": ["out/*.xml"], "allow-no-reports": true}))
            .unwrap();
        assert_eq!((out.get("tests"), out.exit_status()), (Some("0"), 0));
    }

    #[test]
    fn read_only_is_enough_and_config_is_checked() {
        assert_eq!(
            host().context().workspace_access(),
            labhit_sdk::WorkspaceAccess::ReadOnly
        );
        let err = host()
            .run::<Junit>(json!({"reports": ["a"], "fail-on-skiped": true}))
            .unwrap_err();
        assert_eq!(err.kind(), "invalid-config");
        assert!(
            err.message().contains("unknown field `fail-on-skiped`"),
            "{err}"
        );
    }
}
