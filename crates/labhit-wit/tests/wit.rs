//! Checks of the WIT contract itself: it parses, it is the version `labhit-protocol` names,
//! its worlds have the shape hosts and guests rely on, every item carries documentation, and
//! its surface matches a reviewed snapshot (`tests/snapshots/`), so that any change to the
//! contract shows up as a failing test and a diff to review.
//!
//! Two copies are checked: the crate's own `wit/` (what gets published) and, when the crate is
//! built inside the workspace, `wit/` at the workspace root (the source of truth). The copy
//! must equal the source file for file; `cargo xtask codegen` refreshes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wit_parser::{
    Docs, Function, Handle, IndexMap, InterfaceId, PackageId, Resolve, Type, TypeDefKind, TypeId,
    TypeOwner, WorldId, WorldItem, WorldKey,
};

/// The WASI 0.2 interfaces every host provides, exactly as the world `extension-with-wasi`
/// imports them. Changing this list is a contract change.
const PROVIDED_WASI: &[&str] = &[
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:random/random@0.2.12",
    "wasi:random/insecure@0.2.12",
    "wasi:random/insecure-seed@0.2.12",
    "wasi:filesystem/types@0.2.12",
    "wasi:filesystem/preopens@0.2.12",
    "wasi:cli/environment@0.2.12",
    "wasi:cli/exit@0.2.12",
    "wasi:cli/stdin@0.2.12",
    "wasi:cli/stdout@0.2.12",
    "wasi:cli/stderr@0.2.12",
    "wasi:cli/terminal-input@0.2.12",
    "wasi:cli/terminal-output@0.2.12",
    "wasi:cli/terminal-stdin@0.2.12",
    "wasi:cli/terminal-stdout@0.2.12",
    "wasi:cli/terminal-stderr@0.2.12",
    // Granted only to extensions whose manifest lists `capabilities.network`.
    "wasi:http/types@0.2.12",
    "wasi:http/outgoing-handler@0.2.12",
];

/// The crate's own copy, the one that is published.
fn crate_wit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wit")
}

/// `wit/` at the workspace root, when the crate is built inside the workspace.
fn workspace_wit() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    dir.join("labhit-extension.wit").is_file().then_some(dir)
}

/// Every WIT directory to check: the crate's copy, then the workspace source if present.
fn wit_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![crate_wit()];
    dirs.extend(workspace_wit());
    dirs
}

/// Parses a WIT directory (with its `deps/`) and returns the resolve and the main package.
fn load(dir: &Path) -> (Resolve, PackageId) {
    let mut resolve = Resolve::default();
    let (pkg, _sources) = resolve
        .push_dir(dir)
        .unwrap_or_else(|err| panic!("{} does not parse: {err:#}", dir.display()));
    (resolve, pkg)
}

fn world(resolve: &Resolve, pkg: PackageId, name: &str) -> WorldId {
    resolve
        .select_world(&[pkg], Some(name))
        .unwrap_or_else(|err| panic!("world `{name}` missing: {err:#}"))
}

/// The fully qualified names of a world's imports or exports, in declaration order.
fn names(resolve: &Resolve, items: &IndexMap<WorldKey, WorldItem>) -> Vec<String> {
    items
        .keys()
        .map(|key| resolve.name_world_key(key))
        .collect()
}

/// The interface a type was brought in from with `use`, if it was; `None` for a type
/// defined in `iface` itself.
fn used_from(resolve: &Resolve, iface: InterfaceId, ty: TypeId) -> Option<InterfaceId> {
    match resolve.types[ty].kind {
        TypeDefKind::Type(Type::Id(orig)) => match resolve.types[orig].owner {
            TypeOwner::Interface(owner) if owner != iface => Some(owner),
            _ => None,
        },
        _ => None,
    }
}

fn labhit(name: &str) -> String {
    let (package, version) = labhit_protocol::WIT_PACKAGE
        .split_once('@')
        .expect("WIT_PACKAGE has a version");
    format!("{package}/{name}@{version}")
}

#[test]
fn package_is_the_protocol_contract_version() {
    for dir in wit_dirs() {
        let (resolve, pkg) = load(&dir);
        let name = &resolve.packages[pkg].name;
        assert_eq!(
            name.to_string(),
            labhit_protocol::WIT_PACKAGE,
            "{}",
            dir.display()
        );
        assert_eq!(
            name.version.as_ref().map(ToString::to_string).as_deref(),
            Some(labhit_protocol::CONTRACT_VERSION),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn world_extension_exports_execute_and_imports_the_host_interfaces() {
    for dir in wit_dirs() {
        let (resolve, pkg) = load(&dir);
        let world = &resolve.worlds[world(&resolve, pkg, "extension")];

        assert_eq!(names(&resolve, &world.exports), [labhit("pipeline-step")]);
        let imports = names(&resolve, &world.imports);
        assert_eq!(
            imports,
            [
                labhit("types"),
                labhit("log"),
                labhit("secrets"),
                labhit("cancellation")
            ],
            "the world `extension` imports only LabHit interfaces; WASI is in `extension-with-wasi`"
        );

        let step = interface(&resolve, pkg, "pipeline-step");
        let execute = resolve.interfaces[step]
            .functions
            .get("execute")
            .expect("pipeline-step.execute exists");
        assert_eq!(
            signature(&resolve, execute),
            "func(input: step-input) -> result<step-output, step-error>"
        );

        let log = &resolve.interfaces[interface(&resolve, pkg, "log")];
        assert!(log.functions.contains_key("log"));
        let secrets = &resolve.interfaces[interface(&resolve, pkg, "secrets")];
        assert_eq!(
            signature(&resolve, &secrets.functions["get"]),
            "func(name: string) -> result<string, secret-error>"
        );
        let cancellation = &resolve.interfaces[interface(&resolve, pkg, "cancellation")];
        assert_eq!(
            signature(&resolve, &cancellation.functions["is-cancelled"]),
            "func() -> bool"
        );
    }
}

#[test]
fn world_extension_with_wasi_adds_exactly_the_provided_wasi_interfaces() {
    for dir in wit_dirs() {
        let (resolve, pkg) = load(&dir);
        let base = &resolve.worlds[world(&resolve, pkg, "extension")];
        let full = &resolve.worlds[world(&resolve, pkg, "extension-with-wasi")];

        assert_eq!(
            names(&resolve, &full.exports),
            names(&resolve, &base.exports)
        );
        let mut expected: Vec<String> = PROVIDED_WASI.iter().map(ToString::to_string).collect();
        expected.extend(names(&resolve, &base.imports));
        expected.sort();
        let mut imports = names(&resolve, &full.imports);
        imports.sort();
        assert_eq!(imports, expected, "{}", dir.display());
        assert!(
            imports
                .iter()
                .all(|name| !name.starts_with("wasi:sockets/")),
            "no raw sockets in the contract (the network is `wasi:http`)"
        );
    }
}

/// The `wasi:sockets` interfaces hosts link but deny, exactly as the world
/// `extension-with-wasi-sockets` adds them. Changing this list is a contract change.
const LINKED_DENIED_WASI: &[&str] = &[
    "wasi:sockets/network@0.2.12",
    "wasi:sockets/instance-network@0.2.12",
    "wasi:sockets/ip-name-lookup@0.2.12",
    "wasi:sockets/tcp@0.2.12",
    "wasi:sockets/tcp-create-socket@0.2.12",
    "wasi:sockets/udp@0.2.12",
    "wasi:sockets/udp-create-socket@0.2.12",
];

#[test]
fn world_extension_with_wasi_sockets_adds_exactly_the_linked_socket_interfaces() {
    for dir in wit_dirs() {
        let (resolve, pkg) = load(&dir);
        let wasi = &resolve.worlds[world(&resolve, pkg, "extension-with-wasi")];
        let full = &resolve.worlds[world(&resolve, pkg, "extension-with-wasi-sockets")];

        assert_eq!(
            names(&resolve, &full.exports),
            names(&resolve, &wasi.exports)
        );
        let mut expected: Vec<String> =
            LINKED_DENIED_WASI.iter().map(ToString::to_string).collect();
        expected.extend(names(&resolve, &wasi.imports));
        expected.sort();
        let mut imports = names(&resolve, &full.imports);
        imports.sort();
        assert_eq!(imports, expected, "{}", dir.display());
    }
}

#[test]
fn wit_constant_is_self_contained() {
    let mut resolve = Resolve::default();
    let pkg = resolve
        .push_str("labhit-extension.wit", labhit_wit::WIT)
        .expect("labhit_wit::WIT parses without deps");
    assert_eq!(
        resolve.packages[pkg].name.to_string(),
        labhit_protocol::WIT_PACKAGE
    );
    let on_disk = std::fs::read_to_string(crate_wit().join("labhit-extension.wit"))
        .expect("wit/labhit-extension.wit readable");
    assert_eq!(labhit_wit::WIT, on_disk);
}

#[test]
fn crate_copy_equals_workspace_source() {
    let Some(source) = workspace_wit() else {
        return; // packaged crate: there is no workspace source to compare with
    };
    let mut copy = files(&crate_wit());
    // The copy's marker file, written by `cargo xtask codegen`.
    assert!(
        copy.remove(Path::new("README.md")).is_some(),
        "wit/README.md marker missing"
    );
    let source = files(&source);
    assert_eq!(
        copy.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>(),
        "crates/labhit-wit/wit has other files than wit/; run `cargo xtask codegen` and delete stale copies"
    );
    for (path, bytes) in &source {
        assert!(
            copy[path] == *bytes,
            "crates/labhit-wit/wit/{} differs from wit/{0}; run `cargo xtask codegen`",
            path.display()
        );
    }
}

/// Every file under `dir` (recursively, dot files skipped like the generator does), by
/// relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("directory readable") {
            let path = entry.expect("directory entry").path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let bytes = std::fs::read(&path).expect("file readable");
                let relative = path.strip_prefix(base).expect("under base").to_path_buf();
                out.insert(relative, bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn every_item_of_the_labhit_package_is_documented() {
    for dir in wit_dirs() {
        let (resolve, pkg) = load(&dir);
        let missing = undocumented(&resolve, pkg);
        assert!(
            missing.is_empty(),
            "{}: these items of the contract have no `///` documentation:\n  {}",
            dir.display(),
            missing.join("\n  ")
        );
    }
}

#[test]
fn the_documentation_check_finds_undocumented_items() {
    let mut resolve = Resolve::default();
    let pkg = resolve
        .push_str(
            "sample.wit",
            "/// docs\npackage a:b@1.0.0;\n\
             /// docs\ninterface i {\n\
               /// docs\nrecord r { /// docs\nx: u8, y: u8 }\n\
               enum e { /// docs\np, q }\n\
               /// docs\nf: func();\n\
               g: func();\n\
             }\n\
             world w { import i; }\n",
        )
        .expect("sample parses");
    assert_eq!(
        undocumented(&resolve, pkg),
        [
            "field i.r.y",
            "type i.e",
            "case i.e.q",
            "function i.g",
            "world w",
            "world w: import a:b/i@1.0.0",
        ]
    );
}

/// The names of every item of the package without documentation: the package, its
/// interfaces and worlds, every type, field, case and function, and every import or export
/// statement of its worlds.
fn undocumented(resolve: &Resolve, pkg: PackageId) -> Vec<String> {
    let mut missing = Vec::new();
    let mut check = |docs: &Docs, what: String| {
        if docs
            .contents
            .as_deref()
            .is_none_or(|text| text.trim().is_empty())
        {
            missing.push(what);
        }
    };
    let package = &resolve.packages[pkg];
    check(&package.docs, format!("package {}", package.name));

    for (name, &id) in &package.interfaces {
        let iface = &resolve.interfaces[id];
        check(&iface.docs, format!("interface {name}"));
        for (ty_name, &ty) in &iface.types {
            let def = &resolve.types[ty];
            // Types brought in with `use` are documented in the interface that defines them.
            if used_from(resolve, id, ty).is_some() {
                continue;
            }
            let path = format!("{name}.{ty_name}");
            check(&def.docs, format!("type {path}"));
            match &def.kind {
                TypeDefKind::Record(record) => {
                    for field in &record.fields {
                        check(&field.docs, format!("field {path}.{}", field.name));
                    }
                }
                TypeDefKind::Variant(variant) => {
                    for case in &variant.cases {
                        check(&case.docs, format!("case {path}.{}", case.name));
                    }
                }
                TypeDefKind::Enum(enum_) => {
                    for case in &enum_.cases {
                        check(&case.docs, format!("case {path}.{}", case.name));
                    }
                }
                TypeDefKind::Flags(flags) => {
                    for flag in &flags.flags {
                        check(&flag.docs, format!("flag {path}.{}", flag.name));
                    }
                }
                _ => {}
            }
        }
        for (func_name, func) in &iface.functions {
            check(&func.docs, format!("function {name}.{func_name}"));
        }
    }

    for (name, &id) in &package.worlds {
        let world = &resolve.worlds[id];
        check(&world.docs, format!("world {name}"));
        for (direction, items) in [("import", &world.imports), ("export", &world.exports)] {
            for (key, item) in items {
                let what = format!("world {name}: {direction} {}", resolve.name_world_key(key));
                match item {
                    WorldItem::Interface { docs, .. } => check(docs, what),
                    WorldItem::Function(func) => check(&func.docs, what),
                    WorldItem::Type { id, .. } => check(&resolve.types[*id].docs, what),
                }
            }
        }
    }
    missing
}

/// The contract surface, reviewed: any change to a type, field, case, function or world of
/// the package shows up here as a snapshot diff. Documentation is not part of the summary.
#[test]
fn contract_summary() {
    let (resolve, pkg) = load(&crate_wit());
    insta::assert_snapshot!("contract", summary(&resolve, pkg));
    if let Some(source) = workspace_wit() {
        let (resolve, pkg) = load(&source);
        insta::assert_snapshot!("contract", summary(&resolve, pkg));
    }
}

/// A stable, WIT-like rendering of the package's interfaces and worlds, without docs.
fn summary(resolve: &Resolve, pkg: PackageId) -> String {
    let package = &resolve.packages[pkg];
    let mut out = format!("package {}\n", package.name);
    for (name, &id) in &package.interfaces {
        let iface = &resolve.interfaces[id];
        let _ = writeln!(out, "\ninterface {name}");
        for (ty_name, &ty) in &iface.types {
            match used_from(resolve, id, ty) {
                Some(from) => {
                    let from = resolve.interfaces[from].name.as_deref().unwrap_or("?");
                    let _ = writeln!(out, "  use {from}.{ty_name}");
                }
                None => {
                    let _ = writeln!(out, "  {}", typedef(resolve, ty_name, ty));
                }
            }
        }
        for (func_name, func) in &iface.functions {
            let _ = writeln!(out, "  {func_name}: {}", signature(resolve, func));
        }
    }
    for (name, &id) in &package.worlds {
        let world = &resolve.worlds[id];
        let _ = writeln!(out, "\nworld {name}");
        for import in names(resolve, &world.imports) {
            let _ = writeln!(out, "  import {import}");
        }
        for export in names(resolve, &world.exports) {
            let _ = writeln!(out, "  export {export}");
        }
    }
    out
}

fn interface(resolve: &Resolve, pkg: PackageId, name: &str) -> InterfaceId {
    *resolve.packages[pkg]
        .interfaces
        .get(name)
        .unwrap_or_else(|| panic!("interface `{name}` missing"))
}

/// One type definition, on one line.
fn typedef(resolve: &Resolve, name: &str, ty: TypeId) -> String {
    let list = |items: Vec<String>| items.join(", ");
    match &resolve.types[ty].kind {
        TypeDefKind::Record(record) => format!(
            "record {name} {{ {} }}",
            list(
                record
                    .fields
                    .iter()
                    .map(|f| format!("{}: {}", f.name, type_name(resolve, &f.ty)))
                    .collect()
            )
        ),
        TypeDefKind::Variant(variant) => format!(
            "variant {name} {{ {} }}",
            list(
                variant
                    .cases
                    .iter()
                    .map(|c| match &c.ty {
                        Some(ty) => format!("{}({})", c.name, type_name(resolve, ty)),
                        None => c.name.clone(),
                    })
                    .collect()
            )
        ),
        TypeDefKind::Enum(enum_) => format!(
            "enum {name} {{ {} }}",
            list(enum_.cases.iter().map(|c| c.name.clone()).collect())
        ),
        TypeDefKind::Flags(flags) => format!(
            "flags {name} {{ {} }}",
            list(flags.flags.iter().map(|f| f.name.clone()).collect())
        ),
        TypeDefKind::Resource => format!("resource {name}"),
        _ => format!("type {name} = {}", anonymous(resolve, ty)),
    }
}

/// A function's signature: `func(a: T, b: U) -> R`.
fn signature(resolve: &Resolve, func: &Function) -> String {
    let params = func
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, type_name(resolve, &p.ty)))
        .collect::<Vec<_>>()
        .join(", ");
    match &func.result {
        Some(result) => format!("func({params}) -> {}", type_name(resolve, result)),
        None => format!("func({params})"),
    }
}

/// A type as written at a use site: a name for named types, the structure otherwise.
fn type_name(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => match &resolve.types[*id].name {
            Some(name) => name.clone(),
            None => anonymous(resolve, *id),
        },
    }
}

/// The structure of a type definition (`option<T>`, `list<T>`, ...).
fn anonymous(resolve: &Resolve, id: TypeId) -> String {
    let name = |ty: &Type| type_name(resolve, ty);
    let maybe = |ty: &Option<Type>| ty.as_ref().map_or_else(|| "_".to_owned(), name);
    match &resolve.types[id].kind {
        TypeDefKind::Type(ty) => name(ty),
        TypeDefKind::Option(ty) => format!("option<{}>", name(ty)),
        TypeDefKind::List(ty) => format!("list<{}>", name(ty)),
        TypeDefKind::FixedLengthList(ty, len) => format!("list<{}, {len}>", name(ty)),
        TypeDefKind::Map(key, value) => format!("map<{}, {}>", name(key), name(value)),
        TypeDefKind::Tuple(tuple) => format!(
            "tuple<{}>",
            tuple.types.iter().map(name).collect::<Vec<_>>().join(", ")
        ),
        TypeDefKind::Result(result) => match (&result.ok, &result.err) {
            (None, None) => "result".to_owned(),
            (ok, err) => format!("result<{}, {}>", maybe(ok), maybe(err)),
        },
        TypeDefKind::Future(ty) => format!("future<{}>", maybe(ty)),
        TypeDefKind::Stream(ty) => format!("stream<{}>", maybe(ty)),
        TypeDefKind::Handle(Handle::Own(ty)) => format!("own<{}>", name(&Type::Id(*ty))),
        TypeDefKind::Handle(Handle::Borrow(ty)) => format!("borrow<{}>", name(&Type::Id(*ty))),
        other => other.as_str().to_owned(),
    }
}
