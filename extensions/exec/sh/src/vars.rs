//! Shell variables: the granted environment (exported) plus the script's assignments.

use std::collections::BTreeMap;

/// One variable.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Var {
    /// `None` for a name that is exported but not set (`export NAME`).
    value: Option<String>,
    exported: bool,
}

/// The variables of a shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    map: BTreeMap<String, Var>,
}

impl Vars {
    /// Variables from the granted environment, all exported.
    pub fn from_env<'a>(env: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map = env
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_owned(),
                    Var {
                        value: Some(value.to_owned()),
                        exported: true,
                    },
                )
            })
            .collect();
        Self { map }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(|var| var.value.as_deref())
    }

    /// Sets `name`, keeping whether it is exported.
    pub fn set(&mut self, name: &str, value: String) {
        match self.map.get_mut(name) {
            Some(var) => var.value = Some(value),
            None => {
                self.map.insert(
                    name.to_owned(),
                    Var {
                        value: Some(value),
                        exported: false,
                    },
                );
            }
        }
    }

    /// Marks `name` exported (an unset name stays unset but is exported once assigned).
    pub fn export(&mut self, name: &str, value: Option<String>) {
        let var = self.map.entry(name.to_owned()).or_insert_with(|| Var {
            value: None,
            exported: true,
        });
        var.exported = true;
        if value.is_some() {
            var.value = value;
        }
    }

    /// Unsets `name`.
    pub fn unset(&mut self, name: &str) {
        self.map.remove(name);
    }

    /// The exported variables, sorted by name, with their value if set.
    pub fn exported(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.map
            .iter()
            .filter(|(_, var)| var.exported)
            .map(|(name, var)| (name.as_str(), var.value.as_deref()))
    }

    /// Every set variable, sorted by name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map
            .iter()
            .filter_map(|(name, var)| Some((name.as_str(), var.value.as_deref()?)))
    }
}

/// `value` quoted for reuse as shell input: `'it'\''s'`.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_keep_the_export_flag() {
        let mut vars = Vars::from_env([("CI", "true")]);
        vars.set("CI", "1".into());
        vars.set("LOCAL", "x".into());
        assert_eq!(vars.exported().collect::<Vec<_>>(), vec![("CI", Some("1"))]);
        vars.export("LOCAL", None);
        assert_eq!(vars.exported().count(), 2);
        vars.export("LATER", None);
        assert_eq!(vars.get("LATER"), None);
        vars.set("LATER", "now".into());
        assert!(vars.exported().any(|v| v == ("LATER", Some("now"))));
        vars.unset("CI");
        assert_eq!(vars.get("CI"), None);
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
