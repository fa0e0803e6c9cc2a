//! From a YAML tree to the pipeline model, collecting every problem on the way (rules 1, 2,
//! 3, 5 and 6 of the design, plus types and forms).
//!
//! The walker never stops at the first problem: a bad stage is reported and the next one is
//! still read, so `labhit validate` shows everything at once. It also remembers where each
//! stage, `after` entry, `use` and `with` sits, for the graph and extension checks that run
//! afterwards.

use indexmap::IndexMap;

use super::model::{
    After, Approval, EngineVersion, Gate, Pipeline, PipelineFile, Resources, Sandbox, Stage, Stages,
};
use super::yaml::{Node, NodeValue, Scalar};
use crate::diagnostic::{Diagnostic, Rule, Span, SuggestionBudget, Suggestions};
use crate::forms::{
    ByteSize, Cpu, DurationSpec, FormError, PipelineName, PolicyName, StageId, UseRef,
};
use crate::glob::InputGlob;
use crate::manifest::SecretName;
use crate::value::{Map, Value};

/// The keys a stage may have: the six keywords.
pub const STAGE_KEYS: &[&str] = &["use", "after", "with", "sandbox", "gate", "run"];

/// Locations of a stage's parts, for checks that run after the model is built.
#[derive(Debug, Clone)]
pub(crate) struct StageSite<'n> {
    pub(crate) key: Span,
    pub(crate) after: Vec<(StageId, Span)>,
    pub(crate) uses: Option<Span>,
    pub(crate) with: Option<&'n Node>,
    pub(crate) run: Option<&'n Node>,
    /// The parts of the stage that parsed, even when others did not (so checks against
    /// extension manifests run while other problems exist).
    pub(crate) parts: Stage,
}

/// What the walk produced: the model (possibly partial), the sites and the problems.
pub(crate) struct Walked<'n> {
    pub(crate) file: Option<PipelineFile>,
    pub(crate) sites: IndexMap<StageId, StageSite<'n>>,
}

pub(crate) fn walk<'n>(
    root: Option<&'n Node>,
    diags: &mut Vec<Diagnostic>,
    budget: &mut SuggestionBudget,
) -> Walked<'n> {
    let mut walker = Walker {
        diags,
        budget,
        sites: IndexMap::new(),
    };
    let file = match root {
        None => {
            walker.diags.push(
                Diagnostic::error(
                    Rule::MissingKey,
                    Span::file_start(),
                    "the pipeline file is empty",
                )
                .with_help("start with `engine: \"1\"` and a `pipeline:` mapping"),
            );
            None
        }
        Some(root) => walker.file(root),
    };
    Walked {
        file,
        sites: walker.sites,
    }
}

struct Walker<'n, 'd> {
    diags: &'d mut Vec<Diagnostic>,
    /// "Did you mean" work left for this file.
    budget: &'d mut SuggestionBudget,
    sites: IndexMap<StageId, StageSite<'n>>,
}

/// The entries of a mapping whose keys passed the checks: `(key, key span, value)`.
struct Fields<'n> {
    entries: Vec<(&'n str, Span, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<(Span, &'n Node)> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, span, node)| (*span, *node))
    }
}

impl<'n> Walker<'n, '_> {
    fn push(&mut self, diag: Diagnostic) {
        self.diags.push(diag);
    }

    fn type_error(&mut self, node: &Node, what: &str, expected: &str) {
        self.push(Diagnostic::error(
            Rule::InvalidType,
            node.span,
            format!("{what} must be {expected}, found {}", describe(node)),
        ));
    }

    fn form_error(&mut self, span: Span, err: FormError) {
        self.push(Diagnostic::error(err.rule, span, err.message));
    }

    /// Checks that `node` is a mapping with string keys drawn from `known`.
    fn fields(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Fields<'n>> {
        let NodeValue::Map(pairs) = &node.value else {
            self.type_error(node, what, "a mapping");
            return None;
        };
        let mut entries = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let Some(name) = key.as_str() else {
                self.push(Diagnostic::error(
                    Rule::NonStringKey,
                    key.span,
                    format!("keys of {what} must be strings, found {}", describe(key)),
                ));
                continue;
            };
            if !known.contains(&name) {
                let mut diag = Diagnostic::error(
                    Rule::UnknownKey,
                    key.span,
                    format!("unknown key `{name}` in {what}"),
                );
                let near = Suggestions::new(known.iter().copied()).nearest(name, self.budget);
                diag = match near {
                    Some(near) => diag.with_help(format!("did you mean `{near}`?")),
                    None => diag.with_help(format!("expected one of: {}", known.join(", "))),
                };
                self.push(diag);
                continue;
            }
            entries.push((name, key.span, value));
        }
        Some(Fields { entries })
    }

    fn require(
        &mut self,
        fields: &Fields<'n>,
        key: &str,
        owner: Span,
        what: &str,
    ) -> Option<&'n Node> {
        let found = fields.get(key).map(|(_, node)| node);
        if found.is_none() {
            self.push(Diagnostic::error(
                Rule::MissingKey,
                owner,
                format!("{what} is missing the required key `{key}`"),
            ));
        }
        found
    }

    /// The string value of `node`; `what` (built only on error) names it in the message.
    fn string(&mut self, node: &'n Node, what: impl FnOnce() -> String) -> Option<&'n str> {
        let s = node.as_str();
        if s.is_none() {
            self.type_error(node, &what(), "a string");
        }
        s
    }

    fn file(&mut self, root: &'n Node) -> Option<PipelineFile> {
        let fields = self.fields(root, "the pipeline file", &["engine", "pipeline"])?;
        let owner = Span::point(root.span.start);
        let engine = self
            .require(&fields, "engine", owner, "the pipeline file")
            .and_then(|node| self.engine(node));
        let pipeline = self
            .require(&fields, "pipeline", owner, "the pipeline file")
            .and_then(|node| self.pipeline(node, fields.get("pipeline").map_or(owner, |f| f.0)));
        Some(PipelineFile {
            engine: engine?,
            pipeline: pipeline?,
        })
    }

    fn engine(&mut self, node: &Node) -> Option<EngineVersion> {
        match &node.value {
            NodeValue::Scalar(Scalar::Str(s)) if s == crate::ENGINE_FORMAT => {
                Some(EngineVersion::V1)
            }
            NodeValue::Scalar(Scalar::Str(s)) => {
                self.push(
                    Diagnostic::error(
                        Rule::EngineVersion,
                        node.span,
                        format!(
                            "unsupported engine format `{s}`; this version understands only \"1\""
                        ),
                    )
                    .with_help("write `engine: \"1\"`"),
                );
                None
            }
            NodeValue::Scalar(Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_)) => {
                self.push(
                    Diagnostic::error(
                        Rule::EngineVersion,
                        node.span,
                        format!(
                            "`engine` must be the string \"1\", found {}",
                            describe(node)
                        ),
                    )
                    .with_help("quote it: `engine: \"1\"`"),
                );
                None
            }
            _ => {
                self.push(Diagnostic::error(
                    Rule::EngineVersion,
                    node.span,
                    format!(
                        "`engine` must be the string \"1\", found {}",
                        describe(node)
                    ),
                ));
                None
            }
        }
    }

    fn pipeline(&mut self, node: &'n Node, key: Span) -> Option<Pipeline> {
        let fields = self.fields(node, "`pipeline`", &["name", "stages"])?;
        let name = self
            .require(&fields, "name", key, "`pipeline`")
            .and_then(|n| {
                let s = self.string(n, || "`pipeline.name`".into())?;
                PipelineName::new(s)
                    .map_err(|e| self.form_error(n.span, e))
                    .ok()
            });
        let stages_key = fields.get("stages").map_or(key, |f| f.0);
        let stages = self
            .require(&fields, "stages", key, "`pipeline`")
            .and_then(|n| self.stages(n, stages_key));
        Some(Pipeline {
            name: name?,
            stages: stages?,
        })
    }

    fn stages(&mut self, node: &'n Node, key: Span) -> Option<Stages> {
        let NodeValue::Map(pairs) = &node.value else {
            self.type_error(
                node,
                "`pipeline.stages`",
                "a mapping of stage ids to stages",
            );
            return None;
        };
        if pairs.is_empty() {
            self.push(
                Diagnostic::error(
                    Rule::NoStages,
                    key,
                    "`pipeline.stages` is empty; a pipeline needs at least one stage",
                )
                .with_help("add a stage, e.g. `build: {run: make}`"),
            );
            return None;
        }
        let mut stages = IndexMap::with_capacity(pairs.len());
        let mut complete = true;
        for (key_node, value) in pairs {
            let Some(raw) = key_node.as_str() else {
                self.push(Diagnostic::error(
                    Rule::NonStringKey,
                    key_node.span,
                    format!("stage ids must be strings, found {}", describe(key_node)),
                ));
                complete = false;
                continue;
            };
            let id = match StageId::new(raw) {
                Ok(id) => id,
                Err(err) => {
                    self.push(
                        Diagnostic::error(err.rule, key_node.span, err.message)
                            .with_help("stage ids are lowercase letters, digits, `_` and `-`, starting with a letter"),
                    );
                    complete = false;
                    continue;
                }
            };
            match self.stage(&id, key_node.span, value) {
                Some(stage) => {
                    stages.insert(id, stage);
                }
                None => complete = false,
            }
        }
        complete.then_some(Stages(stages))
    }

    fn stage(&mut self, id: &StageId, key: Span, node: &'n Node) -> Option<Stage> {
        let what = format!("stage `{id}`");
        let mut site = StageSite {
            key,
            after: Vec::new(),
            uses: None,
            with: None,
            run: None,
            parts: Stage::default(),
        };
        let fields = self.fields(node, &what, STAGE_KEYS);
        let Some(fields) = fields else {
            self.sites.insert(id.clone(), site);
            return None;
        };
        let mut ok = true;
        let mut stage = Stage::default();

        let use_field = fields.get("use");
        if let Some((_, n)) = use_field {
            site.uses = Some(n.span);
            match self.string(n, || format!("`use` of {what}")) {
                Some(s) => match s.parse::<UseRef>() {
                    Ok(r) => stage.uses = Some(r),
                    Err(e) => {
                        self.form_error(n.span, e);
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        let run_field = fields.get("run");
        if let Some((_, n)) = run_field {
            site.run = Some(n);
            match self.string(n, || format!("`run` of {what}")) {
                Some("") => {
                    self.push(Diagnostic::error(
                        Rule::InvalidValue,
                        n.span,
                        format!("`run` of {what} is empty"),
                    ));
                    ok = false;
                }
                Some(s) => stage.run = Some(s.to_owned()),
                None => ok = false,
            }
        }
        if use_field.is_none() && run_field.is_none() {
            self.push(
                Diagnostic::error(
                    Rule::StageShape,
                    key,
                    format!("{what} has neither `use` nor `run`"),
                )
                .with_help(
                    "add `use: category/name` to run an extension, or `run:` with a shell script",
                ),
            );
            ok = false;
        }
        if let Some((with_key, n)) = fields.get("with") {
            site.with = Some(n);
            if use_field.is_none() {
                self.push(
                    Diagnostic::error(
                        Rule::StageShape,
                        with_key,
                        format!("{what} has `with` but no `use`; `with` configures an extension"),
                    )
                    .with_help("add `use: category/name`, or remove `with`"),
                );
                ok = false;
            }
            match self.with(n, &what) {
                Some(map) => stage.with = Some(map),
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("after") {
            match self.after(n, &what) {
                Some(after) => {
                    stage.after = After(after.iter().map(|(id, _)| id.clone()).collect());
                    site.after = after;
                }
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("sandbox") {
            if run_field.is_none()
                && let Some((inputs_key, _)) = sandbox_key(n, "inputs")
            {
                self.push(
                    Diagnostic::error(
                        Rule::StageShape,
                        inputs_key,
                        format!(
                            "{what} has `sandbox.inputs` but no `run`; it narrows the cache key \
                             of a `run` script"
                        ),
                    )
                    .with_help("remove `sandbox.inputs`, or add `run:`"),
                );
                ok = false;
            }
            if run_field.is_none()
                && let Some((secrets_key, _)) = sandbox_secrets(n)
            {
                self.push(
                    Diagnostic::error(
                        Rule::StageShape,
                        secrets_key,
                        format!(
                            "{what} has `sandbox.secrets` but no `run`; it grants secrets to a \
                             `run` script"
                        ),
                    )
                    .with_help(
                        "an extension gets the secrets its manifest declares; remove \
                         `sandbox.secrets`, or add `run:`",
                    ),
                );
                ok = false;
            }
            match self.sandbox(n, &what) {
                Some(s) => stage.sandbox = Some(s),
                None => ok = false,
            }
        }
        if let Some((gate_key, n)) = fields.get("gate") {
            match self.gate(n, gate_key, &what) {
                Some(g) => stage.gate = Some(g),
                None => ok = false,
            }
        }
        ok &= fields.entries.len() == count_pairs(node);
        site.parts = stage.clone();
        self.sites.insert(id.clone(), site);
        ok.then_some(stage)
    }

    fn after(&mut self, node: &'n Node, what: &str) -> Option<Vec<(StageId, Span)>> {
        let items: Vec<&Node> = match &node.value {
            NodeValue::Scalar(Scalar::Str(_)) => vec![node],
            NodeValue::Seq(items) => items.iter().collect(),
            _ => {
                self.type_error(
                    node,
                    &format!("`after` of {what}"),
                    "a stage id or a list of stage ids",
                );
                return None;
            }
        };
        let mut out: Vec<(StageId, Span)> = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(s) = self.string(item, || format!("an `after` entry of {what}")) else {
                ok = false;
                continue;
            };
            let id = match StageId::new(s) {
                Ok(id) => id,
                Err(e) => {
                    self.form_error(item.span, e);
                    ok = false;
                    continue;
                }
            };
            if let Some((_, first)) = out.iter().find(|(seen, _)| *seen == id) {
                self.push(
                    Diagnostic::error(
                        Rule::DuplicateAfter,
                        item.span,
                        format!("{what} lists `{id}` in `after` twice"),
                    )
                    .with_related(*first, "first listed here"),
                );
                ok = false;
                continue;
            }
            out.push((id, item.span));
        }
        ok.then_some(out)
    }

    fn with(&mut self, node: &Node, what: &str) -> Option<Map> {
        match &node.value {
            NodeValue::Map(_) => match self.value(node, &|| format!("`with` of {what}")) {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            },
            _ => {
                self.type_error(node, &format!("`with` of {what}"), "a mapping");
                None
            }
        }
    }

    /// Converts any subtree to a JSON-compatible [`Value`].
    fn value(&mut self, node: &Node, what: &dyn Fn() -> String) -> Option<Value> {
        match &node.value {
            NodeValue::Scalar(s) => match s {
                Scalar::Null => Some(Value::Null),
                Scalar::Bool(b) => Some(Value::Bool(*b)),
                Scalar::Int(i) => Some(Value::Int(*i)),
                Scalar::UInt(u) => Some(Value::from_u64(*u)),
                Scalar::Float(f) if f.is_finite() => Some(Value::Float(*f)),
                Scalar::Float(_) => {
                    self.push(Diagnostic::error(
                        Rule::InvalidValue,
                        node.span,
                        format!(
                            "{} contains a number JSON cannot represent (infinity or NaN)",
                            what()
                        ),
                    ));
                    None
                }
                Scalar::Str(s) => Some(Value::String(s.clone())),
            },
            NodeValue::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.value(item, what) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Array(out))
            }
            NodeValue::Map(pairs) => {
                let mut out = Map::new();
                let mut ok = true;
                for (key, value) in pairs {
                    let Some(name) = key.as_str() else {
                        self.push(
                            Diagnostic::error(
                                Rule::NonStringKey,
                                key.span,
                                format!(
                                    "keys in {} must be strings, found {}",
                                    what(),
                                    describe(key)
                                ),
                            )
                            .with_help("quote the key"),
                        );
                        ok = false;
                        continue;
                    };
                    match self.value(value, what) {
                        Some(v) => {
                            out.insert(name.to_owned(), v);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Object(out))
            }
        }
    }

    fn sandbox(&mut self, node: &'n Node, what: &str) -> Option<Sandbox> {
        let ctx = format!("`sandbox` of {what}");
        let fields = self.fields(
            node,
            &ctx,
            &["image", "resources", "timeout", "secrets", "inputs"],
        )?;
        let mut ok = fields.entries.len() == count_pairs(node);
        let mut sandbox = Sandbox::default();
        if let Some((_, n)) = fields.get("image") {
            match self.string(n, || format!("`sandbox.image` of {what}")) {
                Some("") => {
                    self.push(Diagnostic::error(
                        Rule::InvalidValue,
                        n.span,
                        format!("`sandbox.image` of {what} is empty"),
                    ));
                    ok = false;
                }
                Some(s) => sandbox.image = Some(s.to_owned()),
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("timeout") {
            let parsed = match &n.value {
                NodeValue::Scalar(Scalar::Str(s)) => s
                    .parse::<DurationSpec>()
                    .map_err(|e| self.form_error(n.span, e))
                    .ok(),
                NodeValue::Scalar(Scalar::Int(_) | Scalar::UInt(_)) => {
                    self.push(
                        Diagnostic::error(
                            Rule::InvalidType,
                            n.span,
                            format!("`sandbox.timeout` of {what} must be a string with a unit, found {}", describe(n)),
                        )
                        .with_help("add a unit, e.g. `90s`, `30m` or `1h30m`"),
                    );
                    None
                }
                _ => {
                    self.type_error(
                        n,
                        &format!("`sandbox.timeout` of {what}"),
                        "a duration like `30m`",
                    );
                    None
                }
            };
            match parsed {
                Some(d) => sandbox.timeout = Some(d),
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("resources") {
            match self.resources(n, what) {
                Some(r) => sandbox.resources = Some(r),
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("secrets") {
            match self.secret_names(n, what) {
                Some(names) => sandbox.secrets = names,
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("inputs") {
            match self.input_globs(n, what) {
                Some(globs) => sandbox.inputs = Some(globs),
                None => ok = false,
            }
        }
        ok.then_some(sandbox)
    }

    /// `sandbox.inputs`: a list of distinct workspace-relative globs.
    fn input_globs(&mut self, node: &'n Node, what: &str) -> Option<Vec<InputGlob>> {
        let NodeValue::Seq(items) = &node.value else {
            self.type_error(
                node,
                &format!("`sandbox.inputs` of {what}"),
                "a list of globs like `src/**`",
            );
            return None;
        };
        let mut out: Vec<(InputGlob, Span)> = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(s) = self.string(item, || format!("a `sandbox.inputs` entry of {what}"))
            else {
                ok = false;
                continue;
            };
            let glob = match InputGlob::new(s) {
                Ok(glob) => glob,
                Err(e) => {
                    self.push(
                        Diagnostic::error(
                            e.rule,
                            item.span,
                            format!("`sandbox.inputs` of {what}: {}", e.message),
                        )
                        .with_help(
                            "write a path relative to the workspace root, with `*`, `?` or `**`, \
                             like `package-lock.json`, `src` or `**/*.rs`",
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some((_, first)) = out.iter().find(|(seen, _)| *seen == glob) {
                self.push(
                    Diagnostic::error(
                        Rule::InvalidValue,
                        item.span,
                        format!("{what} lists `{glob}` in `sandbox.inputs` twice"),
                    )
                    .with_related(*first, "first listed here"),
                );
                ok = false;
                continue;
            }
            out.push((glob, item.span));
        }
        ok.then(|| out.into_iter().map(|(glob, _)| glob).collect())
    }

    /// `sandbox.secrets`: a list of distinct secret names.
    fn secret_names(&mut self, node: &'n Node, what: &str) -> Option<Vec<SecretName>> {
        let NodeValue::Seq(items) = &node.value else {
            self.type_error(
                node,
                &format!("`sandbox.secrets` of {what}"),
                "a list of secret names",
            );
            return None;
        };
        let mut out: Vec<(SecretName, Span)> = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(s) = self.string(item, || format!("a `sandbox.secrets` entry of {what}"))
            else {
                ok = false;
                continue;
            };
            let name = match SecretName::new(s) {
                Ok(name) => name,
                Err(e) => {
                    self.push(
                        Diagnostic::error(
                            Rule::InvalidValue,
                            item.span,
                            format!("`sandbox.secrets` of {what}: {e}"),
                        )
                        .with_help("secret names are upper-case letters, digits and `_`, like `DEPLOY_TOKEN`"),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some((_, first)) = out.iter().find(|(seen, _)| *seen == name) {
                self.push(
                    Diagnostic::error(
                        Rule::InvalidValue,
                        item.span,
                        format!("{what} lists `{name}` in `sandbox.secrets` twice"),
                    )
                    .with_related(*first, "first listed here"),
                );
                ok = false;
                continue;
            }
            out.push((name, item.span));
        }
        ok.then(|| out.into_iter().map(|(name, _)| name).collect())
    }

    fn resources(&mut self, node: &'n Node, what: &str) -> Option<Resources> {
        let ctx = format!("`sandbox.resources` of {what}");
        let fields = self.fields(node, &ctx, &["cpu", "memory"])?;
        let mut ok = fields.entries.len() == count_pairs(node);
        let mut resources = Resources::default();
        if let Some((_, n)) = fields.get("cpu") {
            let parsed = match &n.value {
                NodeValue::Scalar(Scalar::Int(i)) => Some(Cpu::from_cores(*i as f64)),
                NodeValue::Scalar(Scalar::UInt(u)) => Some(Cpu::from_cores(*u as f64)),
                NodeValue::Scalar(Scalar::Float(f)) => Some(Cpu::from_cores(*f)),
                NodeValue::Scalar(Scalar::Str(s)) => Some(s.parse()),
                _ => {
                    self.type_error(
                        n,
                        &format!("`cpu` of {what}"),
                        "a number of cores or millicores like `500m`",
                    );
                    None
                }
            };
            match parsed {
                Some(Ok(cpu)) => resources.cpu = Some(cpu),
                Some(Err(e)) => {
                    self.form_error(n.span, e.context(&format!("`cpu` of {what}")));
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("memory") {
            let parsed = match &n.value {
                NodeValue::Scalar(Scalar::Int(i)) => Some(
                    u64::try_from(*i)
                        .map_err(|_| FormError {
                            rule: Rule::InvalidValue,
                            message: format!("must be larger than zero, not {i}"),
                        })
                        .and_then(ByteSize::from_bytes),
                ),
                NodeValue::Scalar(Scalar::UInt(u)) => Some(ByteSize::from_bytes(*u)),
                // JSON Schema counts `2.0` as an integer; so does the validator.
                NodeValue::Scalar(Scalar::Float(f))
                    if f.fract() == 0.0 && *f >= 1.0 && *f < u64::MAX as f64 =>
                {
                    Some(ByteSize::from_bytes(*f as u64))
                }
                NodeValue::Scalar(Scalar::Str(s)) => Some(s.parse()),
                _ => {
                    self.type_error(
                        n,
                        &format!("`memory` of {what}"),
                        "bytes or a size like `4Gi`",
                    );
                    None
                }
            };
            match parsed {
                Some(Ok(m)) => resources.memory = Some(m),
                Some(Err(e)) => {
                    self.form_error(n.span, e.context(&format!("`memory` of {what}")));
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(resources)
    }

    fn gate(&mut self, node: &'n Node, key: Span, what: &str) -> Option<Gate> {
        let ctx = format!("`gate` of {what}");
        let fields = self.fields(node, &ctx, &["approval", "policy"])?;
        let mut ok = fields.entries.len() == count_pairs(node);
        let mut gate = Gate::default();
        if let Some((_, n)) = fields.get("approval") {
            match n.as_str() {
                Some("required") => gate.approval = Some(Approval::Required),
                Some("none") => gate.approval = Some(Approval::NotRequired),
                _ => {
                    let rule = if n.as_str().is_some() {
                        Rule::InvalidValue
                    } else {
                        Rule::InvalidType
                    };
                    self.push(
                        Diagnostic::error(
                            rule,
                            n.span,
                            format!(
                                "`gate.approval` of {what} must be `required` or `none`, found {}",
                                describe(n)
                            ),
                        )
                        .with_help("write `approval: required`"),
                    );
                    ok = false;
                }
            }
        }
        if let Some((_, n)) = fields.get("policy") {
            match self.string(n, || format!("`gate.policy` of {what}")) {
                Some(s) => match PolicyName::new(s) {
                    Ok(p) => gate.policy = Some(p),
                    Err(e) => {
                        self.form_error(n.span, e);
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        if ok && !gate.is_effective() {
            self.push(
                Diagnostic::error(
                    Rule::EmptyGate,
                    key,
                    format!(
                        "{ctx} asks for nothing; it needs `approval: required`, a `policy`, or both"
                    ),
                )
                .with_help("add `approval: required` or `policy: <name>`, or remove the gate"),
            );
            ok = false;
        }
        ok.then_some(gate)
    }
}

/// The `secrets` key of a `sandbox` mapping and its value, if it has one.
fn sandbox_secrets(sandbox: &Node) -> Option<(Span, &Node)> {
    sandbox_key(sandbox, "secrets")
}

/// The key `name` of a `sandbox` mapping and its value, if it has one.
fn sandbox_key<'s>(sandbox: &'s Node, name: &str) -> Option<(Span, &'s Node)> {
    let NodeValue::Map(pairs) = &sandbox.value else {
        return None;
    };
    pairs
        .iter()
        .find(|(key, _)| key.as_str() == Some(name))
        .map(|(key, value)| (key.span, value))
}

fn count_pairs(node: &Node) -> usize {
    match &node.value {
        NodeValue::Map(pairs) => pairs.len(),
        _ => 0,
    }
}

/// "a list", "the integer 1", "the string `x`" — what a node is, for messages.
fn describe(node: &Node) -> String {
    match &node.value {
        NodeValue::Scalar(Scalar::Null) => "nothing (null)".into(),
        NodeValue::Scalar(Scalar::Bool(b)) => format!("the boolean {b}"),
        NodeValue::Scalar(Scalar::Int(i)) => format!("the integer {i}"),
        NodeValue::Scalar(Scalar::UInt(u)) => format!("the integer {u}"),
        NodeValue::Scalar(Scalar::Float(f)) => format!("the number {f:?}"),
        NodeValue::Scalar(Scalar::Str(s)) => format!("the string `{s}`"),
        NodeValue::Seq(_) => "a list".into(),
        NodeValue::Map(_) => "a mapping".into(),
    }
}
