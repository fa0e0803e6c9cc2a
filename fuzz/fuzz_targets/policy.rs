//! Fuzz target `policy`: the gate policy file parser (`labhit_runtime::policy::Policies::parse`)
//! and the evaluation of every policy it defines.
//!
//! The input is the git ref of the run on the first line and the policy file after it, so the
//! fuzzer controls both sides of the glob matching. Invariants: no panic, no hang (libFuzzer's
//! `-timeout`); an unknown policy and a policy with `allow = false` are always denied; every
//! verdict has a reason that names the policy.

#![no_main]

use std::path::Path;

use labhit_runtime::policy::{GitRef, Policies};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (git_ref, file) = text.split_once('\n').unwrap_or(("main", text));
    let git_ref = GitRef::new(git_ref);
    let policies = Policies::parse(Path::new(".labhit/policies.toml"), file);
    let mut names = vec!["\u{1}no-such-policy".to_owned()];
    if let Policies::Loaded { policies: map, .. } = &policies {
        names.extend(map.keys().cloned());
    }
    for name in &names {
        for r in [Some(&git_ref), None] {
            let verdict = policies.evaluate(name, r);
            assert!(
                verdict.reason.contains(&format!("`{name}`")),
                "the reason does not name policy `{name}`: {}",
                verdict.reason
            );
            let defined = match &policies {
                Policies::Loaded { policies: map, .. } => map.get(name),
                _ => None,
            };
            match defined {
                None => assert!(!verdict.allowed, "undefined policy `{name}` allowed"),
                Some(p) if !p.allow => {
                    assert!(
                        !verdict.allowed,
                        "policy `{name}` with allow = false allowed"
                    )
                }
                Some(_) => {}
            }
        }
    }
});
