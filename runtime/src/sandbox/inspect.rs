//! `airlock backends inspect FILE`: what a component asks for, before anything is granted.
//!
//! Inspection compiles the component (through the cache) and reads its declared type; it
//! never instantiates it, so no guest code runs.

use std::fmt;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::types::{ComponentInstance, ComponentItem};

use super::engine::SandboxEngine;
use super::error::{SandboxError, error_chain};
use super::import_policy::{ImportVerdict, classify_import, missing_backend_export};

/// One import or export of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemReport {
    /// E.g. `airlock:backend/http@0.1.0`.
    pub name: String,
    /// `instance`, `func`, `resource`, `type`, `module` or `component`.
    pub kind: &'static str,
    /// For an instance: the names of its functions and resources, sorted.
    pub members: Vec<String>,
}

/// An import and what airlock does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub item: ItemReport,
    pub verdict: ImportVerdict,
}

/// Everything `inspect` found out about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReport {
    pub path: PathBuf,
    /// Lower-case hex SHA-256 of the file, usable as the `sha256` pin.
    pub sha256: String,
    pub size_bytes: u64,
    pub imports: Vec<ImportReport>,
    pub exports: Vec<ItemReport>,
    /// Why airlock cannot host it; empty when it can.
    pub problems: Vec<String>,
}

impl ComponentReport {
    /// Whether airlock can host the component.
    pub fn hostable(&self) -> bool {
        self.problems.is_empty()
    }
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

fn members(engine: &Engine, instance: &ComponentInstance) -> Vec<String> {
    let mut names: Vec<String> = instance
        .exports(engine)
        .filter(|(_, e)| {
            matches!(
                e.ty,
                ComponentItem::ComponentFunc(_) | ComponentItem::Resource(_)
            )
        })
        .map(|(name, _)| name.to_owned())
        .collect();
    names.sort();
    names
}

fn item_report(engine: &Engine, name: &str, item: &ComponentItem) -> ItemReport {
    ItemReport {
        name: name.to_owned(),
        kind: kind(item),
        members: match item {
            ComponentItem::ComponentInstance(i) => members(engine, i),
            _ => Vec::new(),
        },
    }
}

/// Compile the component at `path` and report its imports, its exports and whether airlock
/// can host it (every import provided, the `backend` export present, the types link).
pub fn inspect(sandbox: &SandboxEngine, path: &Path) -> Result<ComponentReport, SandboxError> {
    let engine = sandbox.engine();
    let loaded = sandbox.cache().load(engine, path, None)?;
    let ty = loaded.component.component_type();
    let mut problems = Vec::new();

    let mut imports = Vec::new();
    for (name, item) in ty.imports(engine) {
        let is_instance = matches!(item.ty, ComponentItem::ComponentInstance(_));
        let verdict = classify_import(name, is_instance);
        if let ImportVerdict::Refused(reason) = &verdict {
            problems.push(format!("import `{name}` is not provided: {reason}"));
        }
        imports.push(ImportReport {
            item: item_report(engine, name, &item.ty),
            verdict,
        });
    }
    let exports = ty
        .exports(engine)
        .map(|(name, item)| item_report(engine, name, &item.ty))
        .collect();
    if let Some(reason) = missing_backend_export(engine, &loaded.component) {
        problems.push(reason);
    }
    if problems.is_empty()
        && let Err(e) = sandbox.linker().instantiate_pre(&loaded.component)
    {
        problems.push(format!("linking fails: {}", error_chain(&e)));
    }
    Ok(ComponentReport {
        path: loaded.path,
        sha256: loaded.sha256,
        size_bytes: loaded.size_bytes,
        imports,
        exports,
        problems,
    })
}

impl fmt::Display for ComponentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "component: {}", self.path.display())?;
        writeln!(f, "sha256:    {}", self.sha256)?;
        writeln!(f, "size:      {} bytes", self.size_bytes)?;
        writeln!(f, "imports:")?;
        for import in &self.imports {
            let verdict = match &import.verdict {
                ImportVerdict::Airlock => "provided by airlock".to_owned(),
                ImportVerdict::Wasi(grants) => format!("WASI: {grants}"),
                ImportVerdict::Refused(reason) => format!("REFUSED: {reason}"),
            };
            writeln!(
                f,
                "  {} ({}) — {verdict}",
                import.item.name, import.item.kind
            )?;
            if !import.item.members.is_empty() {
                writeln!(f, "      {}", import.item.members.join(", "))?;
            }
        }
        writeln!(f, "exports:")?;
        for export in &self.exports {
            writeln!(f, "  {} ({})", export.name, export.kind)?;
            if !export.members.is_empty() {
                writeln!(f, "      {}", export.members.join(", "))?;
            }
        }
        if self.hostable() {
            writeln!(f, "hostable:  yes")
        } else {
            writeln!(f, "hostable:  no")?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
            Ok(())
        }
    }
}
