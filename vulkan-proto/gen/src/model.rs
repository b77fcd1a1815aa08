//! The protocol model: which commands and structs are on the wire, and the wire shape
//! (`Kind`) of every member and parameter.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy;
use crate::xml::{Category, Member, Origin, Registry};

/// A scalar value on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sc {
    /// `uint8_t`, padded to 4 bytes.
    U8,
    /// `uint16_t`, padded to 4 bytes.
    U16,
    /// `uint32_t` and 32-bit aliases.
    U32,
    /// `int32_t`.
    I32,
    /// `uint64_t` and 64-bit aliases.
    U64,
    /// `int64_t`.
    I64,
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// `size_t`, always 8 bytes on the wire.
    Size,
    /// An enum: (registry name, Rust path).
    Enum(String, String),
    /// A 32-bit flags type (Rust path).
    Flags(String),
    /// A 64-bit flags type (Rust path).
    Flags64(String),
}

impl Sc {
    /// Bytes on the wire.
    pub fn wire(&self) -> usize {
        match self {
            Sc::U64 | Sc::I64 | Sc::F64 | Sc::Size | Sc::Flags64(_) => 8,
            _ => 4,
        }
    }
}

/// How a length is computed.
#[derive(Debug, Clone)]
pub enum Len {
    /// A sibling member or parameter holding the count (its scalar type).
    Member(String, Sc),
    /// A pointer parameter holding the count (`*pCount`).
    Deref(String, Sc),
    /// A member of a struct pointer parameter (`pAllocateInfo->commandBufferCount`).
    Field(String, String, Sc),
    /// `codeSize / 4` style: a sibling divided by a constant.
    Div(String, Sc, u64),
    /// `(rasterizationSamples + 31) / 32`.
    SampleMask(String),
}

/// A handle type.
#[derive(Debug, Clone)]
pub struct HandleTy {
    /// Rust path (`vk::Buffer`).
    pub path: String,
    /// VkObjectType value.
    pub objtype: i64,
    /// Dispatchable.
    pub dispatchable: bool,
}

/// Wire shape of a member or parameter.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `sType` with its required value.
    SType(i64),
    /// `pNext`.
    PNext,
    /// A scalar by value.
    Scalar(Sc),
    /// A handle by value.
    Handle(HandleTy),
    /// A struct by value.
    Struct(String),
    /// A union by value.
    Union(String),
    /// `T x[N]` of scalars, handles or structs.
    Fixed(Box<Kind>, u64),
    /// `char x[N]`.
    Chars(u64),
    /// `uint8_t x[N]`.
    Bytes(u64),
    /// Pointer to one struct.
    PtrStruct(String),
    /// Pointer to one scalar.
    PtrScalar(Sc),
    /// Pointer to one handle.
    PtrHandle(HandleTy),
    /// Dynamic array of scalars, handles or structs.
    Array(Box<Kind>, Len),
    /// Sized `void*`/`uint8_t*` blob.
    Blob(Len),
    /// `const char*`.
    Str,
    /// `const char* const*` with a count.
    StrArray(Len),
    /// `pAllocator`: always NULL on the wire.
    Allocator,
}

/// A resolved member or parameter.
#[derive(Debug, Clone)]
pub struct Field {
    /// C name.
    pub name: String,
    /// Rust field name.
    pub rust: String,
    /// Shape.
    pub kind: Kind,
    /// `const` pointee (inputs) vs non-const (outputs, for parameters).
    pub is_const: bool,
    /// NULL may stand for a non-zero count (`optional` or ignorable).
    pub nullable: bool,
    /// Encoded only under a condition.
    pub ignorable: Option<policy::Cond>,
    /// For parameters: direction.
    pub dir: Dir,
}

/// Parameter direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Input only.
    In,
    /// Output only (partial in the request, full in the reply).
    Out,
    /// Both (full in request and reply).
    InOut,
}

/// A struct or union on the wire.
#[derive(Debug, Clone)]
pub struct StructDef {
    /// Registry name.
    pub name: String,
    /// Rust path without lifetime (`vk::BufferCreateInfo`, `types::RingCreateInfoMESA`).
    pub path: String,
    /// Whether the Rust type takes a lifetime.
    pub lifetime: bool,
    /// Union?
    pub is_union: bool,
    /// sType value if extensible.
    pub stype: Option<i64>,
    /// sType value name.
    pub stype_name: Option<String>,
    /// Members.
    pub fields: Vec<Field>,
    /// Structs that may be chained into this one (on the wire), in sType order.
    pub extenders: Vec<String>,
    /// Extension number gating it in pNext chains (None = core ≤ 1.2, always on).
    pub gate: Gate,
    /// Defined by us (MESA), not by ash.
    pub own: bool,
    /// Reachable as (part of) an output.
    pub output: bool,
    /// Object family (file) it is emitted into.
    pub family: String,
}

/// When a chained struct is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Always.
    Always,
    /// If the renderer has this extension number.
    Ext(u32),
    /// If the renderer's vk_xml_version ≥ 1.3.
    Api13,
}

/// A command on the wire.
#[derive(Debug, Clone)]
pub struct CommandDef {
    /// Registry name.
    pub name: String,
    /// Command type number.
    pub ty: u32,
    /// Return scalar (None = void).
    pub ret: Option<Sc>,
    /// Parameters.
    pub params: Vec<Field>,
    /// Family (file).
    pub family: String,
    /// Aliases sharing the number.
    pub aliases: Vec<String>,
}

/// An extension in the protocol table.
#[derive(Debug, Clone)]
pub struct ExtDef {
    /// Name.
    pub name: String,
    /// Number.
    pub number: u32,
    /// Spec version as encoded.
    pub spec: u32,
}

/// Everything the emitters need.
#[derive(Debug, Default)]
pub struct Proto {
    /// Commands by type number.
    pub commands: Vec<CommandDef>,
    /// Structs and unions by name.
    pub structs: BTreeMap<String, StructDef>,
    /// Enums used (registry name → (Rust path, known values)).
    pub enums: BTreeMap<String, (String, BTreeSet<i64>)>,
    /// Protocol extensions.
    pub extensions: Vec<ExtDef>,
    /// Every command type number Mesa 25.0.7 knows (name, number), aliases included.
    pub all_command_types: Vec<(String, u32)>,
    /// Commands that are known but deliberately not on the wire.
    pub not_serialized: Vec<(String, u32)>,
}

/// ash's snake_case (heck 0.4 rules) for field names.
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    #[derive(PartialEq, Clone, Copy)]
    enum Mode {
        Boundary,
        Lower,
        Upper,
    }
    let mut mode = Mode::Boundary;
    for i in 0..chars.len() {
        let c = chars[i];
        cur.push(c);
        if let Some(&next) = chars.get(i + 1) {
            let next_mode = if c.is_lowercase() {
                Mode::Lower
            } else if c.is_uppercase() {
                Mode::Upper
            } else {
                mode
            };
            if next_mode == Mode::Lower && next.is_uppercase() {
                words.push(std::mem::take(&mut cur));
                mode = Mode::Boundary;
            } else if mode == Mode::Upper && c.is_uppercase() && next.is_lowercase() {
                let last = cur.pop();
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                if let Some(l) = last {
                    cur.push(l);
                }
                mode = next_mode;
            } else {
                mode = next_mode;
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let s = words
        .iter()
        .map(|w| w.to_lowercase())
        .collect::<Vec<_>>()
        .join("_");
    match s.as_str() {
        "type" => "ty".to_owned(),
        _ => s,
    }
}

/// Rust path of a registry type name.
pub fn rust_path(reg: &Registry, name: &str) -> String {
    let name = reg.resolve(name);
    let short = name.strip_prefix("Vk").unwrap_or(name);
    let own = reg.types.get(name).is_some_and(|t| t.origin_file != "vk")
        || policy::EXTRA_STRUCTS.iter().any(|e| e.name == name);
    if own {
        format!("types::{short}")
    } else {
        format!("vk::{short}")
    }
}

struct Ctx<'r> {
    reg: &'r Registry,
    proto_exts: BTreeMap<u32, String>,
}

impl Ctx<'_> {
    /// Evaluates a registry `depends` expression (`+` = and, `,` = or) against core ≤ 1.3
    /// and the protocol extensions.
    fn depends_ok(&self, expr: &str) -> bool {
        let clean: String = expr.chars().filter(|c| !matches!(c, '(' | ')')).collect();
        clean.split(',').any(|term| {
            term.split('+').all(|name| {
                let name = name.trim();
                if let Some(v) = name.strip_prefix("VK_VERSION_") {
                    matches!(v, "1_0" | "1_1" | "1_2" | "1_3")
                } else {
                    self.proto_exts.values().any(|e| e == name)
                }
            })
        })
    }

    fn origin_ok(&self, o: &Origin) -> bool {
        match o {
            Origin::Core(1, m) => *m <= 3,
            Origin::Core(..) => false,
            Origin::Ext(n, dep) => {
                self.proto_exts.contains_key(n) && dep.as_deref().is_none_or(|d| self.depends_ok(d))
            }
        }
    }

    fn in_protocol(&self, origins: Option<&Vec<Origin>>) -> bool {
        origins.is_some_and(|os| os.iter().any(|o| self.origin_ok(o)))
    }

    fn type_in_protocol(&self, name: &str) -> bool {
        if policy::EXTRA_STRUCTS.iter().any(|e| e.name == name) {
            return true;
        }
        // A type is on the wire if it, or any alias of it, is required by core ≤ 1.3 or a
        // protocol extension.
        let canon = self.reg.resolve(name);
        self.reg.types.iter().any(|(n, t)| {
            (n == canon || t.alias.as_deref() == Some(canon))
                && self.in_protocol(self.reg.type_origin.get(n.as_str()))
        })
    }

    fn gate(&self, name: &str) -> Gate {
        let canon = self.reg.resolve(name);
        let mut best: Option<Gate> = None;
        for (n, t) in &self.reg.types {
            if n != canon && t.alias.as_deref() != Some(canon) {
                continue;
            }
            for o in self.reg.type_origin.get(n.as_str()).into_iter().flatten() {
                if !self.origin_ok(o) {
                    continue;
                }
                let g = match o {
                    Origin::Core(1, m) if *m <= 2 => Gate::Always,
                    Origin::Core(1, 3) => Gate::Api13,
                    Origin::Core(..) => continue,
                    Origin::Ext(e, _) => Gate::Ext(*e),
                };
                best = Some(match (best, g) {
                    (Some(Gate::Always), _) | (_, Gate::Always) => Gate::Always,
                    (Some(Gate::Ext(a)), _) => Gate::Ext(a),
                    (_, Gate::Ext(b)) => Gate::Ext(b),
                    _ => Gate::Api13,
                });
            }
        }
        best.unwrap_or(Gate::Always)
    }

    fn scalar(&self, ty: &str) -> Option<Sc> {
        Some(match ty {
            "uint8_t" => Sc::U8,
            "uint16_t" => Sc::U16,
            "uint32_t" | "VkBool32" | "VkSampleMask" | "VkFlags" => Sc::U32,
            "int32_t" => Sc::I32,
            "uint64_t" | "VkDeviceSize" | "VkDeviceAddress" | "VkFlags64" => Sc::U64,
            "int64_t" => Sc::I64,
            "float" => Sc::F32,
            "double" => Sc::F64,
            "size_t" => Sc::Size,
            _ => {
                let canon = self.reg.resolve(ty);
                let t = self.reg.types.get(canon)?;
                match t.category {
                    Category::Enum if canon.contains("FlagBits") => {
                        let flags = canon.replacen("FlagBits", "Flags", 1);
                        return self.scalar(&flags);
                    }
                    Category::Enum => Sc::Enum(canon.to_owned(), rust_path(self.reg, canon)),
                    Category::Bitmask if t.origin_file != "vk" => Sc::U32,
                    Category::Bitmask => match t.base.as_deref() {
                        Some("VkFlags64") => Sc::Flags64(rust_path(self.reg, canon)),
                        _ => Sc::Flags(rust_path(self.reg, canon)),
                    },
                    _ => return None,
                }
            }
        })
    }

    fn handle(&self, ty: &str) -> Option<HandleTy> {
        let canon = self.reg.resolve(ty);
        let t = self.reg.types.get(canon)?;
        if t.category != Category::Handle {
            return None;
        }
        let objtype = self.reg.enum_value("VkObjectType", t.objtype.as_deref()?)?;
        Some(HandleTy {
            path: rust_path(self.reg, canon),
            objtype,
            dispatchable: t.dispatchable,
        })
    }

    fn category(&self, ty: &str) -> Option<Category> {
        if policy::EXTRA_STRUCTS.iter().any(|e| e.name == ty) {
            return Some(Category::Struct);
        }
        self.reg.types.get(self.reg.resolve(ty)).map(|t| t.category)
    }

    fn constant(&self, name: &str) -> Option<u64> {
        if let Ok(n) = name.parse() {
            return Some(n);
        }
        self.reg
            .constants
            .get(name)?
            .trim_end_matches('U')
            .parse()
            .ok()
    }

    fn elem(&self, ty: &str) -> Result<Kind, String> {
        if let Some(s) = self.scalar(ty) {
            return Ok(Kind::Scalar(s));
        }
        if let Some(h) = self.handle(ty) {
            return Ok(Kind::Handle(h));
        }
        match self.category(ty) {
            Some(Category::Struct) => Ok(Kind::Struct(self.reg.resolve(ty).to_owned())),
            Some(Category::Union) => Ok(Kind::Union(self.reg.resolve(ty).to_owned())),
            _ => Err(format!("type {ty} has no wire form")),
        }
    }

    fn len(
        &self,
        l: &str,
        alt: Option<&str>,
        sibs: &[Member],
        params: bool,
    ) -> Result<Len, String> {
        let first = l.split(',').next().unwrap_or(l);
        if first.starts_with("latexmath") {
            let alt = alt.ok_or_else(|| format!("latexmath len without altlen: {l}"))?;
            if let Some(m) = alt
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(" + 31) / 32"))
            {
                return Ok(Len::SampleMask(m.to_owned()));
            }
            if let Some((m, d)) = alt.split_once(" / ") {
                let sm = sibs.iter().find(|s| s.name == m).ok_or(format!("no {m}"))?;
                let sc = self.scalar(&sm.ty).ok_or(format!("len {m} not scalar"))?;
                return Ok(Len::Div(
                    m.to_owned(),
                    sc,
                    d.parse().map_err(|_| alt.to_owned())?,
                ));
            }
            return Err(format!("unsupported altlen {alt}"));
        }
        if let Some((p, f)) = first.split_once("->") {
            let pm = sibs.iter().find(|s| s.name == p).ok_or(format!("no {p}"))?;
            let st = self
                .reg
                .types
                .get(self.reg.resolve(&pm.ty))
                .ok_or(format!("no {}", pm.ty))?;
            let fm = st
                .members
                .iter()
                .find(|m| m.name == f)
                .ok_or(format!("no {f}"))?;
            let sc = self.scalar(&fm.ty).ok_or(format!("len {f} not scalar"))?;
            return Ok(Len::Field(p.to_owned(), f.to_owned(), sc));
        }
        let sm = sibs
            .iter()
            .find(|s| s.name == first)
            .ok_or(format!("len {first} not found"))?;
        let sc = self
            .scalar(&sm.ty)
            .ok_or(format!("len {first} not scalar"))?;
        if sm.ptr_depth == 1 && params {
            Ok(Len::Deref(first.to_owned(), sc))
        } else if sm.ptr_depth == 0 {
            Ok(Len::Member(first.to_owned(), sc))
        } else {
            Err(format!("len {first} has unsupported shape"))
        }
    }

    fn kind(&self, m: &Member, sibs: &[Member], params: bool) -> Result<Kind, String> {
        if m.bitfield {
            return Err(format!("{}: bitfield", m.name));
        }
        if m.name == "sType" && m.ty == "VkStructureType" {
            let vname = m.values.as_deref().unwrap_or("");
            let v = self
                .reg
                .enum_value("VkStructureType", vname)
                .or_else(|| {
                    policy::EXTRA_STRUCTS
                        .iter()
                        .find(|e| e.stype.0 == vname)
                        .map(|e| e.stype.1)
                })
                .ok_or(format!("sType value {vname} unknown"))?;
            return Ok(Kind::SType(v));
        }
        if m.name == "pNext" {
            return Ok(Kind::PNext);
        }
        if m.name == "pAllocator" && m.ty == "VkAllocationCallbacks" {
            return Ok(Kind::Allocator);
        }
        if !m.fixed.is_empty() {
            if m.fixed.len() > 1 || m.ptr_depth > 0 {
                return Err(format!("{}: multi-dimensional array", m.name));
            }
            let n = self
                .constant(&m.fixed[0])
                .ok_or(format!("bad array size {}", m.fixed[0]))?;
            return Ok(match m.ty.as_str() {
                "char" => Kind::Chars(n),
                "uint8_t" => Kind::Bytes(n),
                t => Kind::Fixed(Box::new(self.elem(t)?), n),
            });
        }
        match m.ptr_depth {
            0 => self.elem(&m.ty),
            1 => {
                if m.ty == "char" {
                    let l = m.len.as_deref().unwrap_or("");
                    return if l.ends_with("null-terminated") && !l.contains(',') {
                        Ok(Kind::Str)
                    } else {
                        Err(format!("{}: char* without null-terminated len", m.name))
                    };
                }
                if let Some(l) = &m.len {
                    let len = self.len(l, m.altlen.as_deref(), sibs, params)?;
                    if m.ty == "void" || m.ty == "uint8_t" {
                        return Ok(Kind::Blob(len));
                    }
                    return Ok(Kind::Array(Box::new(self.elem(&m.ty)?), len));
                }
                if m.ty == "void" {
                    return Err(format!("{}: void* without length", m.name));
                }
                match self.elem(&m.ty)? {
                    Kind::Scalar(s) => Ok(Kind::PtrScalar(s)),
                    Kind::Handle(h) => Ok(Kind::PtrHandle(h)),
                    Kind::Struct(s) | Kind::Union(s) => Ok(Kind::PtrStruct(s)),
                    _ => Err(format!("{}: unsupported pointer", m.name)),
                }
            }
            2 if m.ty == "char" => {
                let l = m
                    .len
                    .as_deref()
                    .ok_or(format!("{}: char** without len", m.name))?;
                let count = l.split(',').next().unwrap_or("");
                Ok(Kind::StrArray(self.len(count, None, sibs, params)?))
            }
            _ => Err(format!("{}: unsupported pointer depth", m.name)),
        }
    }
}

/// Assigns a command or struct to an object-family file.
pub fn family_of_command(name: &str, params: &[Member]) -> String {
    if name.ends_with("MESA") {
        return "transport".into();
    }
    if name.starts_with("vkCmd") {
        return "command_buffer".into();
    }
    let n = name.trim_start_matches("vk");
    let table: &[(&[&str], &str)] = &[
        (&["Instance", "ToolProperties"], "instance"),
        (
            &["PhysicalDevice", "CalibrateableTimeDomains"],
            "physical_device",
        ),
        (&["Memory", "MemoryCommitment"], "memory"),
        (&["BufferView"], "buffer"),
        (&["Buffer"], "buffer"),
        (&["ImageView", "Sampler", "SamplerYcbcr"], "image"),
        (&["Image", "Subresource"], "image"),
        (&["Fence", "Semaphore", "Event"], "sync"),
        (&["Queue"], "queue"),
        (&["QueryPool", "Query"], "query"),
        (
            &[
                "PipelineCache",
                "Pipeline",
                "ShaderModule",
                "RenderPass",
                "Framebuffer",
                "RenderArea",
            ],
            "pipeline",
        ),
        (&["Descriptor"], "descriptor"),
        (&["CommandPool", "CommandBuffer"], "command_buffer"),
        (&["PrivateData"], "device"),
        (&["Device"], "device"),
    ];
    for (keys, fam) in table {
        if keys.iter().any(|k| n.contains(k)) {
            return (*fam).to_owned();
        }
    }
    if params.first().is_some_and(|p| p.ty == "VkPhysicalDevice") {
        return "physical_device".into();
    }
    "device".into()
}

fn family_of_struct(name: &str) -> String {
    if name.ends_with("MESA") {
        return "transport".into();
    }
    let n = name.trim_start_matches("Vk");
    let table: &[(&[&str], &str)] = &[
        (
            &[
                "PhysicalDevice",
                "FormatProperties",
                "QueueFamily",
                "ImageFormatProperties",
                "ExternalMemoryProperties",
                "ExternalFenceProperties",
                "ExternalSemaphoreProperties",
                "ExternalBufferProperties",
                "ExternalImageFormat",
                "DrmFormatModifier",
            ],
            "physical_device",
        ),
        (
            &[
                "Instance",
                "ApplicationInfo",
                "LayerProperties",
                "ExtensionProperties",
            ],
            "instance",
        ),
        (&["Memory"], "memory"),
        (&["Buffer"], "buffer"),
        (
            &[
                "Image",
                "Sampler",
                "ComponentMapping",
                "Subresource",
                "Extent",
                "Offset",
            ],
            "image",
        ),
        (
            &[
                "Fence",
                "Semaphore",
                "Event",
                "Barrier",
                "Dependency",
                "Timeline",
            ],
            "sync",
        ),
        (&["Submit", "Queue", "BindSparse", "Sparse"], "queue"),
        (&["Query"], "query"),
        (
            &[
                "Pipeline",
                "Shader",
                "Specialization",
                "VertexInput",
                "RenderPass",
                "Subpass",
                "Attachment",
                "Framebuffer",
                "Rendering",
                "StencilOp",
                "Viewport",
                "Rect",
            ],
            "pipeline",
        ),
        (
            &["Descriptor", "WriteDescriptor", "CopyDescriptor"],
            "descriptor",
        ),
        (
            &[
                "Command",
                "Clear",
                "Copy",
                "Blit",
                "Resolve",
                "DrawIndirect",
                "Dispatch",
                "MultiDraw",
                "ConditionalRendering",
                "ColorBlend",
            ],
            "command_buffer",
        ),
    ];
    for (keys, fam) in table {
        if keys.iter().any(|k| n.contains(k)) {
            return (*fam).to_owned();
        }
    }
    "device".into()
}

/// Builds the protocol model.
pub fn build(reg: &Registry) -> Result<Proto, String> {
    let mut proto = Proto::default();
    let mut proto_exts = BTreeMap::new();
    for (name, _why) in policy::PROTOCOL_EXTENSIONS {
        let e = reg
            .extensions
            .get(*name)
            .ok_or(format!("extension {name} not in registry"))?;
        let spec = policy::SPEC_VERSION_OVERRIDES
            .iter()
            .find(|o| o.0 == *name)
            .map_or(e.spec_version, |o| o.1);
        proto.extensions.push(ExtDef {
            name: (*name).to_owned(),
            number: e.number,
            spec,
        });
        proto_exts.insert(e.number, (*name).to_owned());
    }
    proto.extensions.sort_by(|a, b| a.name.cmp(&b.name));
    let cx = Ctx { reg, proto_exts };

    // Commands: every command type ≤ MAX that the registries define, minus NOT_SERIALIZED.
    let mut by_number: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (name, &num) in &reg.command_types {
        if num <= policy::MAX_COMMAND_TYPE {
            by_number.entry(num).or_default().push(name.clone());
            proto.all_command_types.push((name.clone(), num));
        }
    }
    proto
        .all_command_types
        .sort_by_key(|(n, v)| (*v, n.clone()));
    let mut errors = Vec::new();
    let mut struct_roots: Vec<(String, bool)> = Vec::new();
    for (num, names) in &by_number {
        // The canonical definition: a name that is defined (not an alias) and in protocol.
        let defined: Vec<&String> = names
            .iter()
            .filter(|n| reg.commands.contains_key(n.as_str()))
            .filter(|n| {
                cx.in_protocol(reg.command_origin.get(n.as_str()))
                    || names
                        .iter()
                        .any(|a| cx.in_protocol(reg.command_origin.get(a.as_str())))
            })
            .collect();
        let Some(canon) = defined.first() else {
            continue;
        };
        if let Some(ns) = policy::NOT_SERIALIZED.iter().find(|(n, _)| n == canon) {
            proto.not_serialized.push((ns.0.to_owned(), *num));
            continue;
        }
        let c = &reg.commands[canon.as_str()];
        let mut params = Vec::new();
        let mut ok = true;
        let len_targets: BTreeSet<String> = c
            .params
            .iter()
            .filter_map(|p| p.len.as_deref())
            .map(|l| l.split(',').next().unwrap_or("").to_owned())
            .collect();
        for p in &c.params {
            match cx.kind(p, &c.params, true) {
                Ok(kind) => {
                    let out = p.ptr_depth > 0 && !p.is_const;
                    let forced = policy::INOUT_FIXUPS
                        .iter()
                        .any(|f| f.0 == c.name && f.1 == p.name);
                    let dir = if !out {
                        Dir::In
                    } else if len_targets.contains(&p.name) || forced {
                        Dir::InOut
                    } else {
                        Dir::Out
                    };
                    params.push(Field {
                        rust: snake(&p.name),
                        name: p.name.clone(),
                        nullable: p.optional.as_deref().is_some_and(|o| o.starts_with("true"))
                            || p.noautovalidity,
                        ignorable: None,
                        is_const: !out,
                        kind,
                        dir,
                    });
                }
                Err(e) => {
                    errors.push(format!("{}: {e}", c.name));
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        let ret = match c.ret.as_str() {
            "void" => None,
            r => Some(cx.scalar(r).ok_or(format!("{}: return type {r}", c.name))?),
        };
        for p in &params {
            collect_struct_roots(&p.kind, p.dir != Dir::In, &mut struct_roots);
        }
        proto.commands.push(CommandDef {
            name: (*canon).clone(),
            ty: *num,
            ret,
            family: family_of_command(canon, &c.params),
            params,
            aliases: names.iter().filter(|n| n != canon).cloned().collect(),
        });
    }
    if !errors.is_empty() {
        return Err(format!(
            "commands that cannot be serialized and are not in policy::NOT_SERIALIZED:\n  {}",
            errors.join("\n  ")
        ));
    }

    // Structs: reachable from commands, plus protocol extenders of reachable structs.
    let mut work = struct_roots;
    while let Some((name, output)) = work.pop() {
        if let Some(s) = proto.structs.get_mut(&name) {
            if output && !s.output {
                s.output = true;
                let fields = s.fields.clone();
                let ext = s.extenders.clone();
                for f in &fields {
                    collect_struct_roots(&f.kind, true, &mut work);
                }
                for e in ext {
                    work.push((e, true));
                }
            }
            continue;
        }
        let def = build_struct(&cx, &name, output)?;
        for f in &def.fields {
            collect_struct_roots(&f.kind, output, &mut work);
        }
        for e in &def.extenders {
            work.push((e.clone(), output));
        }
        proto.structs.insert(name, def);
    }
    // Enums used anywhere.
    let mut enums = BTreeMap::new();
    let mut note = |k: &Kind| {
        if let Kind::Scalar(Sc::Enum(n, p)) | Kind::PtrScalar(Sc::Enum(n, p)) = k {
            let vals: BTreeSet<i64> = reg
                .enum_values
                .get(n)
                .map(|m| m.values().copied().collect())
                .unwrap_or_default();
            enums.insert(n.clone(), (p.clone(), vals));
        }
        if let Kind::Array(e, _) | Kind::Fixed(e, _) = k {
            if let Kind::Scalar(Sc::Enum(n, p)) = e.as_ref() {
                let vals: BTreeSet<i64> = reg
                    .enum_values
                    .get(n)
                    .map(|m| m.values().copied().collect())
                    .unwrap_or_default();
                enums.insert(n.clone(), (p.clone(), vals));
            }
        }
    };
    for c in &proto.commands {
        c.params.iter().for_each(|p| note(&p.kind));
    }
    for s in proto.structs.values() {
        s.fields.iter().for_each(|f| note(&f.kind));
    }
    proto.enums = enums;
    Ok(proto)
}

fn collect_struct_roots(k: &Kind, output: bool, out: &mut Vec<(String, bool)>) {
    match k {
        Kind::Struct(s) | Kind::Union(s) | Kind::PtrStruct(s) => out.push((s.clone(), output)),
        Kind::Fixed(e, _) | Kind::Array(e, _) => collect_struct_roots(e, output, out),
        _ => {}
    }
}

fn build_struct(cx: &Ctx<'_>, name: &str, output: bool) -> Result<StructDef, String> {
    let reg = cx.reg;
    let (members, is_union, own): (Vec<Member>, bool, bool) =
        if let Some(e) = policy::EXTRA_STRUCTS.iter().find(|e| e.name == name) {
            let mut ms = vec![
                Member {
                    name: "sType".into(),
                    ty: "VkStructureType".into(),
                    is_const: false,
                    ptr_depth: 0,
                    fixed: vec![],
                    len: None,
                    altlen: None,
                    values: Some(e.stype.0.into()),
                    optional: None,
                    bitfield: false,
                    noautovalidity: false,
                },
                Member {
                    name: "pNext".into(),
                    ty: "void".into(),
                    is_const: true,
                    ptr_depth: 1,
                    fixed: vec![],
                    len: None,
                    altlen: None,
                    values: None,
                    optional: Some("true".into()),
                    bitfield: false,
                    noautovalidity: false,
                },
            ];
            for (ty, n) in e.members {
                ms.push(Member {
                    name: (*n).into(),
                    ty: (*ty).into(),
                    is_const: false,
                    ptr_depth: 0,
                    fixed: vec![],
                    len: None,
                    altlen: None,
                    values: None,
                    optional: None,
                    bitfield: false,
                    noautovalidity: false,
                });
            }
            (ms, false, true)
        } else {
            let t = reg
                .types
                .get(name)
                .ok_or(format!("struct {name} not found"))?;
            (
                t.members.clone(),
                t.category == Category::Union,
                t.origin_file != "vk",
            )
        };
    let mut fields = Vec::new();
    let mut stype = None;
    let mut stype_name = None;
    for m in &members {
        let kind = cx
            .kind(m, &members, false)
            .map_err(|e| format!("{name}.{e}"))?;
        if let Kind::SType(v) = kind {
            stype = Some(v);
            stype_name = m.values.clone();
        }
        let ignorable = policy::IGNORABLE
            .iter()
            .find(|i| i.0 == name && i.1 == m.name)
            .map(|i| i.2);
        fields.push(Field {
            rust: snake(&m.name),
            name: m.name.clone(),
            nullable: m.optional.as_deref().is_some_and(|o| o.starts_with("true"))
                || m.noautovalidity
                || ignorable.is_some(),
            ignorable,
            is_const: m.is_const,
            kind,
            dir: Dir::In,
        });
    }
    let mut extenders: Vec<(i64, String)> = Vec::new();
    if stype.is_some() {
        for (n, t) in &reg.types {
            if t.alias.is_none()
                && t.category == Category::Struct
                && t.extends.iter().any(|p| reg.resolve(p) == name)
                && cx.type_in_protocol(n)
                && !policy::STRUCTS_NOT_SERIALIZED.iter().any(|x| x.0 == n)
            {
                let v = t
                    .members
                    .iter()
                    .find(|m| m.name == "sType")
                    .and_then(|m| reg.enum_value("VkStructureType", m.values.as_deref()?))
                    .ok_or(format!("{n}: no sType"))?;
                extenders.push((v, n.clone()));
            }
        }
        for e in policy::EXTRA_STRUCTS {
            if e.extends == name {
                extenders.push((e.stype.1, e.name.to_owned()));
            }
        }
    }
    extenders.sort();
    extenders.dedup_by(|a, b| a.0 == b.0);
    let lifetime = members.iter().any(|m| m.ptr_depth > 0);
    Ok(StructDef {
        name: name.to_owned(),
        path: rust_path(reg, name),
        lifetime,
        is_union,
        stype,
        stype_name,
        fields,
        extenders: extenders.into_iter().map(|(_, n)| n).collect(),
        gate: cx.gate(name),
        own,
        output,
        family: family_of_struct(name),
    })
}

/// Fixes struct lifetimes transitively (a struct embedding a lifetime struct by value needs
/// one too).
pub fn settle_lifetimes(proto: &mut Proto) {
    loop {
        let mut changed = false;
        let names: Vec<String> = proto.structs.keys().cloned().collect();
        for n in names {
            let needs = proto.structs[&n].fields.iter().any(|f| match &f.kind {
                Kind::Struct(s) | Kind::Union(s) => {
                    proto.structs.get(s).is_some_and(|x| x.lifetime)
                }
                Kind::Fixed(e, _) => match e.as_ref() {
                    Kind::Struct(s) | Kind::Union(s) => {
                        proto.structs.get(s).is_some_and(|x| x.lifetime)
                    }
                    _ => false,
                },
                _ => false,
            });
            if needs && !proto.structs[&n].lifetime {
                if let Some(s) = proto.structs.get_mut(&n) {
                    s.lifetime = true;
                }
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::snake;

    #[test]
    fn snake_case_matches_ash_field_names() {
        for (c, rust) in [
            ("sType", "s_type"),
            ("pNext", "p_next"),
            ("ppEnabledExtensionNames", "pp_enabled_extension_names"),
            (
                "residencyStandard2DBlockShape",
                "residency_standard2_d_block_shape",
            ),
            ("textureCompressionETC2", "texture_compression_etc2"),
            ("shaderFloat64", "shader_float64"),
            ("deviceLUIDValid", "device_luid_valid"),
            ("maxImageDimension2D", "max_image_dimension2_d"),
            ("type", "ty"),
            ("RingCreateInfoMESA", "ring_create_info_mesa"),
        ] {
            assert_eq!(snake(c), rust, "{c}");
        }
    }
}
