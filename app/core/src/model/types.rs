//! Portal types and the registry assembled from modules at start-up.
//!
//! A module crate describes what it brings with one [`Module`] value: module folders
//! (ERP5's `data_stream_module`), portal types with their property schema, and scripts
//! (`DataStream_view`). The registry is built once, checked for consistency, then shared
//! read-only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::model::catalog_schema::CatalogSchema;
use crate::model::document::{Document, CORE_FIELDS, RESERVED_IDS};
use crate::model::error::{CoreError, CoreResult};
use crate::model::method::{Method, ScriptSource};
use crate::model::permission::{check_role, default_document_map, Permission, PermissionMap, User};
use crate::model::workflow::Workflow;
// The one edge up the layers: provisioning, computed columns, file sizes and purges run
// their own transactions through the portal.
use crate::run::portal::Portal;

/// The type of a property value, as declared in a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    /// A short, single-line string.
    String,
    /// Long text.
    Text,
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float.
    Float,
    /// true or false.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A point in time, RFC 3339; stored in UTC.
    DateTime,
    /// Any JSON value.
    Json,
    /// Named links to other documents, given by path; stored in the relations table.
    Relation,
}

/// One property of a portal type's schema.
#[derive(Debug, Clone, Serialize)]
pub struct PropertyDef {
    /// Property id, e.g. `size` or `source`.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: PropertyType,
    /// A create without this property (and without a default) is refused.
    pub required: bool,
    /// Value given at creation when the property is absent.
    pub default: Option<serde_json::Value>,
    /// The catalog keeps a column for it (used by the catalog issue).
    pub indexed: bool,
    /// Its text goes to the full-text index (used by the catalog issue).
    pub full_text: bool,
    /// For relations: whether several targets are allowed.
    pub multiple: bool,
    /// Human description, shown in forms and the OpenAPI document.
    pub description: String,
    /// Only a user holding this global role may set it (on creation or edit).
    pub set_by_role: Option<String>,
    /// For text: the language of its code (`rhai`, `javascript`, `html`, `css`,
    /// `markdown`), which forms edit in a code editor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For strings: the only values it may hold (empty: any). Forms show a choice list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

impl PropertyDef {
    /// A property of the given name and type, optional, not indexed.
    pub fn new(name: &str, kind: PropertyType) -> Self {
        PropertyDef {
            name: name.to_owned(),
            kind,
            required: false,
            default: None,
            indexed: false,
            full_text: false,
            multiple: false,
            description: String::new(),
            set_by_role: None,
            code: None,
            choices: Vec::new(),
        }
    }
    /// Restricts a string property to `values`: anything else is refused (422), and forms
    /// offer them as a choice list.
    pub fn choices(mut self, values: &[&str]) -> Self {
        self.choices = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }
    /// Marks a text property as code in `language`: forms edit it in a code editor.
    pub fn code(mut self, language: &str) -> Self {
        self.code = Some(language.to_owned());
        self
    }
    /// Marks the property as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Sets the default value.
    pub fn default_value(mut self, value: serde_json::Value) -> Self {
        self.default = Some(value);
        self
    }
    /// Marks the property as indexed by the catalog.
    pub fn indexed(mut self) -> Self {
        self.indexed = true;
        self
    }
    /// Marks the property for full-text indexing.
    pub fn full_text(mut self) -> Self {
        self.full_text = true;
        self
    }
    /// Allows several relation targets.
    pub fn multiple(mut self) -> Self {
        self.multiple = true;
        self
    }
    /// Sets the description.
    pub fn describe(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }
    /// Only users holding the global `role` may set the property (see
    /// [`PropertyDef::set_by_role`]).
    pub fn set_by(mut self, role: &str) -> Self {
        self.set_by_role = Some(role.to_owned());
        self
    }
}

/// A portal type: the class of a document, its schema and its built-in methods.
#[derive(Clone)]
pub struct PortalType {
    /// Type name, e.g. "Data Stream".
    pub name: String,
    /// Module folder its documents live in, e.g. `data_stream_module`.
    pub module: String,
    /// One-line description.
    pub description: String,
    /// Property schema (core fields title/reference/description are always present).
    pub properties: Vec<PropertyDef>,
    /// Workflow chain, by workflow id (definitions arrive with the security issue).
    pub workflows: Vec<String>,
    /// Portal types allowed as sub-documents.
    pub allowed_content_types: Vec<String>,
    /// Built-in methods of the type class, by method name (`getSize`).
    pub methods: BTreeMap<String, Arc<dyn Method>>,
    /// Role → permission map, overridden per permission by workflow states.
    pub permissions: PermissionMap,
    /// Catalog keys a listing of this type shows, in order (the admin UI's listbox
    /// columns); empty: the listing derives them from the schema. Checked at build to be
    /// catalog keys, so every column can be sorted and filtered.
    pub listbox_columns: Vec<String>,
    /// Removes the data a document of this type keeps outside the database (files,
    /// segments) once its deletion has committed; see [`OnDelete`].
    pub on_delete: Option<Arc<dyn OnDelete>>,
    /// Checks a document's properties as a whole (what one property's type cannot say,
    /// e.g. that an array's shape and chunks make a storable array), on creation and on
    /// every edit, before anything is written; an error is the client's (422).
    pub validate: Option<Arc<PropertyCheck>>,
    /// Listbox columns the module computes per document (a Data Stream's size), shown
    /// but neither sorted nor filtered: they are not catalog keys.
    pub computed_columns: Vec<ComputedColumn>,
    /// The file a document of this type holds, when it holds one (see [`FileSlot`]).
    pub file: Option<FileSlot>,
    /// How a document of this type is created when that means more than one document
    /// (see [`Provision`]); the generic UI's add form then shows its fields.
    pub provision: Option<Provision>,
    /// How the generic UI's upload form appends a file to a document of this type, when
    /// it takes uploads (see [`Upload`]).
    pub upload: Option<Upload>,
    /// Documents of this type may be created in any container (module folders and
    /// documents alike), besides the containers that allow them by name.
    pub anywhere: bool,
    /// Creating or editing a document of this type also needs this permission on the
    /// portal root (e.g. user scripts: *Manage portal*).
    pub edit_permission: Option<Permission>,
    /// The URL of a small picture of a document of this type (see [`ThumbnailFn`]);
    /// a listing of a folder holding such a type offers a gallery of them.
    pub thumbnail: Option<Arc<ThumbnailFn>>,
}

/// The URL of a document's thumbnail (a picture at most 128 pixels a side, served with
/// the document's own View check), `None` when the document has no picture yet.
pub type ThumbnailFn = dyn Fn(&Document) -> Option<String> + Send + Sync;

/// Appends an uploaded file's bytes at offset `at` to the document at `path` as `user`
/// (checking the user's permission); returns the document and its new size in bytes.
pub type UploadFn =
    dyn Fn(&Portal, &User, &str, &[u8], u64) -> CoreResult<(Document, u64)> + Send + Sync;

/// How large an upload may be, read when a request arrives (module settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest file.
    pub max_bytes: usize,
    /// Upload bytes handled at once before new requests are refused (503).
    pub max_inflight_bytes: usize,
    /// The setting that sets `max_bytes`, named in errors.
    pub setting: &'static str,
}

/// The generic UI's file upload into a document of a type (see
/// [`PortalType::accepts_upload`]).
#[derive(Clone)]
pub struct Upload {
    /// The limits in effect.
    pub limits: Arc<dyn Fn() -> UploadLimits + Send + Sync>,
    /// What appends the bytes.
    pub append: Arc<UploadFn>,
}

/// Creates what a new document of a type needs (an Ingestion Policy with its Data
/// Product, Data Supply and Data Operation) from the form's values, through the Portal
/// (its own transactions) as the given user; returns the path of the document to open.
pub type ProvisionFn = dyn Fn(&Portal, &User, &serde_json::Map<String, serde_json::Value>) -> CoreResult<String>
    + Send
    + Sync;

/// The add form of a type created by provisioning: its fields, and what creates it.
#[derive(Clone)]
pub struct Provision {
    /// The form's fields (typed, with defaults and `required`), parsed as properties are.
    pub fields: Vec<PropertyDef>,
    /// What the form's submission runs.
    pub create: Arc<ProvisionFn>,
}

/// A value computed per document for a listing (see [`PortalType::computed_columns`]).
pub type ComputeFn = dyn Fn(&Portal, &Document) -> CoreResult<String> + Send + Sync;

/// The size of the file a document holds (see [`FileSlot`]).
pub type SizeFn = dyn Fn(&Portal, &Document) -> CoreResult<u64> + Send + Sync;

/// A listbox column computed by the module.
#[derive(Clone)]
pub struct ComputedColumn {
    /// Key, used in `listbox_columns` (never a catalog key).
    pub key: String,
    /// Column heading.
    pub label: String,
    /// The cell of one document.
    pub value: Arc<ComputeFn>,
}

/// How the generic UI finds the file a document holds: its size, and the URL its bytes
/// are downloaded from and uploaded to (`PUT` with `Content-Range`, resumable).
#[derive(Clone)]
pub struct FileSlot {
    /// Current size in bytes.
    pub size: Arc<SizeFn>,
    /// Download and upload URL of a document.
    pub url: Arc<dyn Fn(&Document) -> String + Send + Sync>,
}

/// A whole-document check of the properties (see [`PortalType::validate`]).
pub type PropertyCheck =
    dyn Fn(&serde_json::Map<String, serde_json::Value>) -> CoreResult<()> + Send + Sync;

/// Cleans up after a deleted document: runs in an activity queued by the transaction
/// that deleted it, so it runs only if that transaction committed and runs again after a
/// crash (at least once): it must be idempotent. `uid` is never reused.
pub trait OnDelete: Send + Sync {
    /// Removes what the document with `uid` kept outside the database.
    fn purge(&self, portal: &Portal, uid: i64) -> CoreResult<()>;
}

impl<F> OnDelete for F
where
    F: Fn(&Portal, i64) -> CoreResult<()> + Send + Sync,
{
    fn purge(&self, portal: &Portal, uid: i64) -> CoreResult<()> {
        self(portal, uid)
    }
}

impl std::fmt::Debug for PortalType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalType")
            .field("name", &self.name)
            .field("module", &self.module)
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PortalType {
    /// A type with no properties, workflows, sub-types or methods yet.
    pub fn new(name: &str, module: &str) -> Self {
        PortalType {
            name: name.to_owned(),
            module: module.to_owned(),
            description: String::new(),
            properties: Vec::new(),
            workflows: Vec::new(),
            allowed_content_types: Vec::new(),
            methods: BTreeMap::new(),
            permissions: default_document_map(),
            on_delete: None,
            listbox_columns: Vec::new(),
            validate: None,
            computed_columns: Vec::new(),
            file: None,
            provision: None,
            upload: None,
            anywhere: false,
            edit_permission: None,
            thumbnail: None,
        }
    }

    /// Declares how a document of this type is pictured in a gallery (see
    /// [`PortalType::thumbnail`]).
    pub fn thumbnail(
        mut self,
        url: impl Fn(&Document) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.thumbnail = Some(Arc::new(url));
        self
    }

    /// Allows documents of this type in any container (see [`PortalType::anywhere`]).
    pub fn anywhere(mut self) -> Self {
        self.anywhere = true;
        self
    }
    /// Creating or editing a document of this type needs `permission` on the portal
    /// root too (see [`PortalType::edit_permission`]).
    pub fn edit_permission(mut self, permission: Permission) -> Self {
        self.edit_permission = Some(permission);
        self
    }

    /// Declares that the generic UI's upload form appends files to documents of this
    /// type through `append`, within `limits` (see [`Upload`]).
    pub fn accepts_upload(
        mut self,
        limits: impl Fn() -> UploadLimits + Send + Sync + 'static,
        append: impl Fn(&Portal, &User, &str, &[u8], u64) -> CoreResult<(Document, u64)>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.upload = Some(Upload {
            limits: Arc::new(limits),
            append: Arc::new(append),
        });
        self
    }

    /// Declares that documents of this type are created by `create` from `fields` (see
    /// [`Provision`]).
    pub fn provisioned_by(
        mut self,
        fields: Vec<PropertyDef>,
        create: impl Fn(&Portal, &User, &serde_json::Map<String, serde_json::Value>) -> CoreResult<String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.provision = Some(Provision {
            fields,
            create: Arc::new(create),
        });
        self
    }

    /// Adds a listbox column computed per document (see [`PortalType::computed_columns`]).
    pub fn computed_column(
        mut self,
        key: &str,
        label: &str,
        value: impl Fn(&Portal, &Document) -> CoreResult<String> + Send + Sync + 'static,
    ) -> Self {
        self.computed_columns.push(ComputedColumn {
            key: key.to_owned(),
            label: label.to_owned(),
            value: Arc::new(value),
        });
        self
    }

    /// Declares that documents of this type hold a file (see [`FileSlot`]).
    pub fn holds_file(
        mut self,
        size: impl Fn(&Portal, &Document) -> CoreResult<u64> + Send + Sync + 'static,
        url: impl Fn(&Document) -> String + Send + Sync + 'static,
    ) -> Self {
        self.file = Some(FileSlot {
            size: Arc::new(size),
            url: Arc::new(url),
        });
        self
    }

    /// The computed listbox column `key`, if the type declares one.
    pub fn computed(&self, key: &str) -> Option<&ComputedColumn> {
        self.computed_columns.iter().find(|c| c.key == key)
    }

    /// Declares the whole-document property check (see [`PortalType::validate`]).
    pub fn validate(
        mut self,
        check: impl Fn(&serde_json::Map<String, serde_json::Value>) -> CoreResult<()>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.validate = Some(Arc::new(check));
        self
    }
    /// Sets what removes a deleted document's data outside the database.
    pub fn on_delete(mut self, hook: impl OnDelete + 'static) -> Self {
        self.on_delete = Some(Arc::new(hook));
        self
    }
    /// Declares the columns a listing of this type shows (catalog keys, in order).
    pub fn listbox_columns(mut self, keys: &[&str]) -> Self {
        self.listbox_columns = keys.iter().map(|k| (*k).to_owned()).collect();
        self
    }
    /// Sets which roles hold `permission` on documents of this type.
    pub fn permission(mut self, permission: Permission, roles: &[&str]) -> Self {
        self.permissions
            .insert(permission, roles.iter().map(|r| (*r).to_owned()).collect());
        self
    }
    /// Sets the description.
    pub fn describe(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }
    /// Adds a property to the schema.
    pub fn property(mut self, def: PropertyDef) -> Self {
        self.properties.push(def);
        self
    }
    /// Appends a workflow to the chain.
    pub fn workflow(mut self, id: &str) -> Self {
        self.workflows.push(id.to_owned());
        self
    }
    /// Allows a sub-document type.
    pub fn allow(mut self, portal_type: &str) -> Self {
        self.allowed_content_types.push(portal_type.to_owned());
        self
    }
    /// Adds a built-in method of the type class.
    pub fn method(mut self, name: &str, method: impl Method + 'static) -> Self {
        self.methods.insert(name.to_owned(), Arc::new(method));
        self
    }
    /// The schema entry of a property.
    pub fn property_def(&self, name: &str) -> Option<&PropertyDef> {
        self.properties.iter().find(|p| p.name == name)
    }
    /// The type name without spaces, the prefix of its scripts: "Data Stream" → "DataStream".
    pub fn script_prefix(&self) -> String {
        script_prefix(&self.name)
    }
}

/// "Data Stream" → "DataStream": the prefix of a type's scripts.
pub fn script_prefix(type_name: &str) -> String {
    type_name.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A module folder (ERP5's `data_stream_module`): a top-level container of documents.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleFolder {
    /// Folder id, the first path segment: `data_stream_module`.
    pub id: String,
    /// Human title: "Data Streams".
    pub title: String,
    /// Portal types that may be created directly in the folder.
    pub allowed_content_types: Vec<String>,
}

/// Everything one module crate contributes; returned by its `module()` function.
#[derive(Default)]
pub struct Module {
    /// Crate-level name, e.g. "data_stream".
    pub name: String,
    /// Module folders it owns.
    pub folders: Vec<ModuleFolder>,
    /// Portal types it declares.
    pub types: Vec<PortalType>,
    /// Named scripts (`DataStream_view`, `Base_getSize`), found by exact name.
    pub scripts: Vec<(String, Arc<dyn Method>)>,
    /// Workflow definitions it owns.
    pub workflows: Vec<Workflow>,
    /// Path segments its routes claim after a document's path (`data`, `zarr`, …): no
    /// document may have such an id, so none is shadowed by a route.
    pub reserved_ids: Vec<String>,
    /// Sources of scripts asked before every module's own scripts (user scripts).
    pub script_sources: Vec<Arc<dyn ScriptSource>>,
}

impl Module {
    /// An empty module contribution.
    pub fn new(name: &str) -> Self {
        Module {
            name: name.to_owned(),
            ..Module::default()
        }
    }
    /// Adds a module folder.
    pub fn folder(mut self, id: &str, title: &str, allowed: &[&str]) -> Self {
        self.folders.push(ModuleFolder {
            id: id.to_owned(),
            title: title.to_owned(),
            allowed_content_types: allowed.iter().map(|s| (*s).to_owned()).collect(),
        });
        self
    }
    /// Adds a portal type.
    pub fn portal_type(mut self, portal_type: PortalType) -> Self {
        self.types.push(portal_type);
        self
    }
    /// Adds a named script.
    pub fn script(mut self, name: &str, method: impl Method + 'static) -> Self {
        self.scripts.push((name.to_owned(), Arc::new(method)));
        self
    }
    /// Adds a workflow definition.
    pub fn workflow(mut self, workflow: Workflow) -> Self {
        self.workflows.push(workflow);
        self
    }
    /// Adds a source of scripts (see [`Registry::add_script_source`]).
    pub fn script_source(mut self, source: Arc<dyn ScriptSource>) -> Self {
        self.script_sources.push(source);
        self
    }
    /// Claims path segments for the module's routes (see [`Module::reserved_ids`]).
    pub fn reserve_ids(mut self, ids: &[&str]) -> Self {
        self.reserved_ids
            .extend(ids.iter().map(|s| (*s).to_owned()));
        self
    }
}

/// The portal type of the portal root object.
pub const PORTAL_TYPE: &str = "Portal";
/// The portal type of module folders.
pub const MODULE_FOLDER_TYPE: &str = "Module";

/// Every portal type, folder and script, assembled once at start-up.
pub struct Registry {
    types: BTreeMap<String, PortalType>,
    folders: BTreeMap<String, ModuleFolder>,
    scripts: BTreeMap<String, Arc<dyn Method>>,
    sources: Vec<Arc<dyn ScriptSource>>,
    modules: Vec<String>,
    workflows: BTreeMap<String, Workflow>,
    catalog: CatalogSchema,
    reserved_ids: std::collections::BTreeSet<String>,
}

impl Registry {
    /// Whether `id` is claimed by the kernel's or a module's routes.
    pub fn is_reserved_id(&self, id: &str) -> bool {
        self.reserved_ids.contains(id)
    }

    /// Every id claimed by routes, in order.
    pub fn reserved_ids(&self) -> impl Iterator<Item = &str> {
        self.reserved_ids.iter().map(String::as_str)
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("modules", &self.modules)
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Assembles the registry from module contributions and checks it: names are unique,
    /// every type lives in a declared folder, every allowed sub-type exists.
    pub fn build(modules: Vec<Module>) -> CoreResult<Registry> {
        let mut registry = Registry {
            types: BTreeMap::new(),
            folders: BTreeMap::new(),
            scripts: BTreeMap::new(),
            sources: Vec::new(),
            modules: Vec::new(),
            workflows: BTreeMap::new(),
            catalog: Default::default(),
            reserved_ids: RESERVED_IDS.iter().map(|s| (*s).to_owned()).collect(),
        };
        for module in modules {
            registry.modules.push(module.name.clone());
            registry.reserved_ids.extend(module.reserved_ids);
            registry.sources.extend(module.script_sources);
            for folder in module.folders {
                if registry.folders.contains_key(&folder.id) {
                    return Err(CoreError::Internal(format!(
                        "module folder {} declared twice (again by module {})",
                        folder.id, module.name
                    )));
                }
                registry.folders.insert(folder.id.clone(), folder);
            }
            for portal_type in module.types {
                if registry.types.contains_key(&portal_type.name) {
                    return Err(CoreError::Internal(format!(
                        "portal type {} declared twice (again by module {})",
                        portal_type.name, module.name
                    )));
                }
                registry.types.insert(portal_type.name.clone(), portal_type);
            }
            for wf in module.workflows {
                wf.check()?;
                if registry.workflows.contains_key(&wf.id) {
                    return Err(CoreError::Internal(format!(
                        "workflow {} declared twice (again by module {})",
                        wf.id, module.name
                    )));
                }
                registry.workflows.insert(wf.id.clone(), wf);
            }
            for (name, method) in module.scripts {
                if registry.scripts.insert(name.clone(), method).is_some() {
                    return Err(CoreError::Internal(format!(
                        "script {name} declared twice (again by module {})",
                        module.name
                    )));
                }
            }
        }
        registry.check()?;
        registry.catalog = CatalogSchema::from_registry(&registry)?;
        for t in registry.types.values() {
            for c in &t.computed_columns {
                if registry.catalog.column(&c.key).is_ok() {
                    return Err(CoreError::Internal(format!(
                        "portal type {} computes column {}, which is a catalog key",
                        t.name, c.key
                    )));
                }
            }
            for key in &t.listbox_columns {
                if registry.catalog.column(key).is_err() && t.computed(key).is_none() {
                    return Err(CoreError::Internal(format!(
                        "portal type {} lists column {key}, which is not a catalog key \
                         (core fields, indexed properties, workflow states) nor a column it computes",
                        t.name
                    )));
                }
            }
        }
        Ok(registry)
    }

    fn check(&self) -> CoreResult<()> {
        for t in self.types.values() {
            if !self.folders.contains_key(&t.module) {
                return Err(CoreError::Internal(format!(
                    "portal type {} names undeclared module folder {}",
                    t.name, t.module
                )));
            }
            for sub in &t.allowed_content_types {
                if !self.types.contains_key(sub) {
                    return Err(CoreError::Internal(format!(
                        "portal type {} allows unknown type {sub}",
                        t.name
                    )));
                }
            }
            for wf in &t.workflows {
                if !self.workflows.contains_key(wf) {
                    return Err(CoreError::Internal(format!(
                        "portal type {} names undeclared workflow {wf}",
                        t.name
                    )));
                }
            }
            for roles in t.permissions.values() {
                for r in roles {
                    check_role(r)?;
                }
            }
            for p in &t.properties {
                if CORE_FIELDS.contains(&p.name.as_str()) {
                    return Err(CoreError::Internal(format!(
                        "portal type {} redeclares core field {}",
                        t.name, p.name
                    )));
                }
            }
        }
        for f in self.folders.values() {
            for sub in &f.allowed_content_types {
                if !self.types.contains_key(sub) {
                    return Err(CoreError::Internal(format!(
                        "module folder {} allows unknown type {sub}",
                        f.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds a source of scripts consulted before the modules' own scripts (user scripts).
    pub fn add_script_source(&mut self, source: Arc<dyn ScriptSource>) {
        self.sources.push(source);
    }

    /// A portal type by name.
    pub fn portal_type(&self, name: &str) -> Option<&PortalType> {
        self.types.get(name)
    }
    /// All portal types, by name.
    pub fn portal_types(&self) -> impl Iterator<Item = &PortalType> {
        self.types.values()
    }
    /// A module folder by id.
    pub fn folder(&self, id: &str) -> Option<&ModuleFolder> {
        self.folders.get(id)
    }
    /// All module folders, by id.
    pub fn folders(&self) -> impl Iterator<Item = &ModuleFolder> {
        self.folders.values()
    }
    /// Names of the modules the registry was built from, in order.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }
    /// A script by exact name as seen from `doc` (see [`ScriptSource::find_in`]):
    /// pluggable sources first, then the modules' scripts.
    pub fn script_in(
        &self,
        conn: &mut crate::model::connection::DbConnection,
        doc: &crate::model::document::Document,
        name: &str,
    ) -> CoreResult<Option<Arc<dyn Method>>> {
        for source in &self.sources {
            if let Some(found) = source.find_in(conn, doc, name)? {
                return Ok(Some(found));
            }
        }
        Ok(self.scripts.get(name).cloned())
    }
    /// A script by exact name: pluggable sources first, then the modules' scripts.
    pub fn script(&self, name: &str) -> Option<Arc<dyn Method>> {
        self.sources
            .iter()
            .find_map(|s| s.find(name))
            .or_else(|| self.scripts.get(name).cloned())
    }
    /// The catalog's keys and columns.
    pub fn catalog(&self) -> &CatalogSchema {
        &self.catalog
    }
    /// A workflow definition by id.
    pub fn workflow(&self, id: &str) -> Option<&Workflow> {
        self.workflows.get(id)
    }
    /// All workflow definitions, by id.
    pub fn workflows(&self) -> impl Iterator<Item = &Workflow> {
        self.workflows.values()
    }
    /// Names of the modules' own scripts.
    pub fn script_names(&self) -> impl Iterator<Item = &String> {
        self.scripts.keys()
    }
}
