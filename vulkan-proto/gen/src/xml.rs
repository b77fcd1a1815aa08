//! Reads the registry XML (vk.xml plus the two Venus XMLs) into a small model.
//!
//! Only what the Venus wire format needs is kept: types (structs, unions, handles, enums,
//! bitmasks, base types), API constants, enum values of `VkStructureType`, commands, and
//! which feature or extension requires each type and command.

use std::collections::BTreeMap;
use std::fmt;

/// A parse failure with enough context to find the element.
#[derive(Debug)]
pub struct XmlError(pub String);

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XmlError {}

/// One member of a struct or union, or one command parameter.
#[derive(Debug, Clone)]
pub struct Member {
    /// C name (`pNext`, `flags`, ...).
    pub name: String,
    /// Base type name (`uint32_t`, `VkFormat`, `VkBufferCreateInfo`, ...).
    pub ty: String,
    /// Whether the outermost pointee is `const`.
    pub is_const: bool,
    /// Number of `*` in the declaration.
    pub ptr_depth: usize,
    /// Fixed array dimensions (`[VK_UUID_SIZE]`, `[4]`), outermost first.
    pub fixed: Vec<String>,
    /// The `len` attribute.
    pub len: Option<String>,
    /// The `altlen` attribute (a C expression for latexmath lengths).
    pub altlen: Option<String>,
    /// The `values` attribute (sType value name).
    pub values: Option<String>,
    /// The `optional` attribute.
    pub optional: Option<String>,
    /// Whether a bitfield width (`:8`) follows the name.
    pub bitfield: bool,
    /// The `noautovalidity` attribute: Vulkan ignores the member in some states, so a
    /// NULL array with a non-zero count is legal (e.g. `VkWriteDescriptorSet.pImageInfo`).
    pub noautovalidity: bool,
}

/// Category of a registry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `struct`.
    Struct,
    /// `union`.
    Union,
    /// `handle`.
    Handle,
    /// `enum`.
    Enum,
    /// `bitmask`.
    Bitmask,
    /// `basetype`.
    BaseType,
    /// `funcpointer`.
    FuncPointer,
    /// Anything else (`include`, `define`, platform types).
    Other,
}

/// A registry type.
#[derive(Debug, Clone)]
pub struct Type {
    /// Category.
    pub category: Category,
    /// Alias target, if this is an alias.
    pub alias: Option<String>,
    /// Struct/union members.
    pub members: Vec<Member>,
    /// `structextends` parents.
    pub extends: Vec<String>,
    /// For bitmasks: underlying `VkFlags` or `VkFlags64`; for base types the typedef target.
    pub base: Option<String>,
    /// For handles: the `objtypeenum` value name.
    pub objtype: Option<String>,
    /// For handles: dispatchable (`VK_DEFINE_HANDLE`).
    pub dispatchable: bool,
    /// Which file defined it (`vk`, `ext`, `mesa`).
    pub origin_file: &'static str,
}

/// A command definition.
#[derive(Debug, Clone)]
pub struct Command {
    /// Name.
    pub name: String,
    /// Return type.
    pub ret: String,
    /// Parameters.
    pub params: Vec<Member>,
}

/// Where a type or command was required from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A core version feature, e.g. (1, 2).
    Core(u32, u32),
    /// An extension by number, with the `depends` expression of its require block.
    Ext(u32, Option<String>),
}

/// An extension as declared in the registry.
#[derive(Debug, Clone)]
pub struct Extension {
    /// Registry number.
    pub number: u32,
    /// `SPEC_VERSION` value.
    pub spec_version: u32,
}

/// One plane of a multi-planar format (`<plane>`).
#[derive(Debug, Clone)]
pub struct FormatPlane {
    /// `index`.
    pub index: u32,
    /// `widthDivisor`.
    pub width_divisor: u32,
    /// `heightDivisor`.
    pub height_divisor: u32,
    /// `compatible`: the single-plane format the plane is copied as.
    pub compatible: String,
}

/// One component of a format (`<component>`).
#[derive(Debug, Clone)]
pub struct FormatComponent {
    /// `name` (`R`, `G`, `B`, `A`, `D`, `S`).
    pub name: String,
    /// `bits`, 0 for compressed formats (`bits="compressed"`).
    pub bits: u32,
}

/// One `<format>` of the `<formats>` element.
#[derive(Debug, Clone)]
pub struct Format {
    /// Enum value name (`VK_FORMAT_R8G8B8A8_UNORM`).
    pub name: String,
    /// `class`.
    pub class: String,
    /// `blockSize` in bytes.
    pub block_size: u32,
    /// `texelsPerBlock`.
    pub texels_per_block: u32,
    /// `blockExtent` (1,1,1 when absent).
    pub block_extent: [u32; 3],
    /// `packed` bits (0 when absent).
    pub packed: u32,
    /// `compressed` scheme (`BC`, `ETC2`, `ASTC LDR`, …).
    pub compressed: Option<String>,
    /// `<component>`s in order.
    pub components: Vec<FormatComponent>,
    /// `<plane>`s in index order.
    pub planes: Vec<FormatPlane>,
}

/// Everything read from the XML files.
#[derive(Debug, Default)]
pub struct Registry {
    /// Types by name.
    pub types: BTreeMap<String, Type>,
    /// Commands by name (aliases resolved in `command_alias`).
    pub commands: BTreeMap<String, Command>,
    /// Command aliases: alias → target.
    pub command_alias: BTreeMap<String, String>,
    /// API constants (`VK_UUID_SIZE` → "16").
    pub constants: BTreeMap<String, String>,
    /// Enum values by enum type name → (value name → value).
    pub enum_values: BTreeMap<String, BTreeMap<String, i64>>,
    /// Enum value aliases: name → target name.
    pub enum_alias: BTreeMap<String, String>,
    /// Requirers of each type name.
    pub type_origin: BTreeMap<String, Vec<Origin>>,
    /// Requirers of each command name.
    pub command_origin: BTreeMap<String, Vec<Origin>>,
    /// Extensions by name.
    pub extensions: BTreeMap<String, Extension>,
    /// Venus command types: command name → number.
    pub command_types: BTreeMap<String, u32>,
    /// The `<formats>` element: texel block sizes, extents, components and planes.
    pub formats: Vec<Format>,
}

fn api_ok(n: roxmltree::Node<'_, '_>) -> bool {
    match n.attribute("api") {
        None => true,
        Some(a) => a.split(',').any(|x| x == "vulkan"),
    }
}

fn parse_member(n: roxmltree::Node<'_, '_>) -> Result<Member, XmlError> {
    let mut ty = None;
    let mut name = None;
    let mut before = String::new();
    let mut after = String::new();
    let mut fixed = Vec::new();
    for c in n.children() {
        if c.is_text() {
            let t = c.text().unwrap_or("");
            if name.is_none() {
                before.push_str(t);
            } else {
                after.push_str(t);
            }
        } else if c.is_element() {
            match c.tag_name().name() {
                "type" => ty = c.text().map(str::to_owned),
                "name" => name = c.text().map(str::to_owned),
                "enum" => fixed.push(c.text().unwrap_or("").to_owned()),
                _ => {}
            }
        }
    }
    let name = name.ok_or_else(|| XmlError(format!("member without name: {n:?}")))?;
    let ty = ty.ok_or_else(|| XmlError(format!("member {name} without type")))?;
    // Pointer stars may sit in the text between <type> and <name>; "const" before <type>.
    let ptr_depth = before.matches('*').count();
    let is_const = before.trim_start().starts_with("const");
    // Literal array sizes like "[4]" live in `after`; enum sizes came through <enum>.
    let mut rest = after.as_str();
    let mut literal_dims = Vec::new();
    while let Some(start) = rest.find('[') {
        let end = rest[start..]
            .find(']')
            .map(|e| start + e)
            .unwrap_or(rest.len());
        let inner = rest[start + 1..end].trim();
        if !inner.is_empty() {
            literal_dims.push(inner.to_owned());
        }
        rest = &rest[(end + 1).min(rest.len())..];
    }
    if fixed.is_empty() {
        fixed = literal_dims;
    } else if !literal_dims.is_empty() {
        fixed.extend(literal_dims);
    }
    Ok(Member {
        name,
        ty,
        is_const,
        ptr_depth,
        fixed,
        len: n.attribute("len").map(str::to_owned),
        altlen: n.attribute("altlen").map(str::to_owned),
        values: n.attribute("values").map(str::to_owned),
        optional: n.attribute("optional").map(str::to_owned),
        bitfield: after.contains(':'),
        noautovalidity: n.attribute("noautovalidity") == Some("true"),
    })
}

fn category(s: Option<&str>) -> Category {
    match s {
        Some("struct") => Category::Struct,
        Some("union") => Category::Union,
        Some("handle") => Category::Handle,
        Some("enum") => Category::Enum,
        Some("bitmask") => Category::Bitmask,
        Some("basetype") => Category::BaseType,
        Some("funcpointer") => Category::FuncPointer,
        _ => Category::Other,
    }
}

fn ext_enum_value(e: roxmltree::Node<'_, '_>, ext_number: Option<u32>) -> Option<i64> {
    if let Some(v) = e.attribute("value") {
        return parse_int(v);
    }
    if let Some(bp) = e.attribute("bitpos") {
        return bp.parse::<u32>().ok().map(|b| 1i64 << b);
    }
    let offset: i64 = e.attribute("offset")?.parse().ok()?;
    let extnum: i64 = match e.attribute("extnumber") {
        Some(n) => n.parse().ok()?,
        None => i64::from(ext_number?),
    };
    let v = 1_000_000_000 + (extnum - 1) * 1000 + offset;
    Some(if e.attribute("dir") == Some("-") {
        -v
    } else {
        v
    })
}

fn parse_int(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Some(h) = v.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

impl Registry {
    /// Adds one XML file to the model.
    pub fn add_file(&mut self, text: &str, origin_file: &'static str) -> Result<(), XmlError> {
        let doc = roxmltree::Document::parse(text).map_err(|e| XmlError(e.to_string()))?;
        let root = doc.root_element();
        for top in root.children().filter(|c| c.is_element()) {
            match top.tag_name().name() {
                "types" => self.read_types(top, origin_file)?,
                "enums" => self.read_enums(top),
                "commands" => self.read_commands(top)?,
                "feature" => self.read_feature(top),
                "extensions" => self.read_extensions(top),
                "formats" => self.read_formats(top)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn read_types(
        &mut self,
        top: roxmltree::Node<'_, '_>,
        origin_file: &'static str,
    ) -> Result<(), XmlError> {
        for t in top.children().filter(|c| c.has_tag_name("type")) {
            if !api_ok(t) {
                continue;
            }
            let cat = category(t.attribute("category"));
            let name = match t.attribute("name") {
                Some(n) => n.to_owned(),
                None => match t.children().find(|c| c.has_tag_name("name")) {
                    Some(n) => n.text().unwrap_or("").to_owned(),
                    None => continue,
                },
            };
            let mut members = Vec::new();
            for m in t.children().filter(|c| c.has_tag_name("member")) {
                if api_ok(m) {
                    members.push(parse_member(m)?);
                }
            }
            let inner_type = t
                .children()
                .find(|c| c.has_tag_name("type"))
                .and_then(|c| c.text())
                .map(str::to_owned);
            let ty = Type {
                category: cat,
                alias: t.attribute("alias").map(str::to_owned),
                members,
                extends: t
                    .attribute("structextends")
                    .map(|s| s.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                base: inner_type.clone(),
                objtype: t.attribute("objtypeenum").map(str::to_owned),
                dispatchable: inner_type.as_deref() == Some("VK_DEFINE_HANDLE"),
                origin_file,
            };
            self.types.insert(name, ty);
        }
        Ok(())
    }

    fn read_enums(&mut self, top: roxmltree::Node<'_, '_>) {
        let ename = top.attribute("name").unwrap_or("").to_owned();
        for e in top.children().filter(|c| c.has_tag_name("enum")) {
            if !api_ok(e) {
                continue;
            }
            let Some(name) = e.attribute("name") else {
                continue;
            };
            if let Some(a) = e.attribute("alias") {
                if ename == "VkCommandTypeEXT" {
                    let strip = |s: &str| {
                        s.strip_prefix("VK_COMMAND_TYPE_")
                            .and_then(|s| s.strip_suffix("_EXT"))
                            .map(str::to_owned)
                    };
                    if let (Some(n), Some(t)) = (strip(name), strip(a)) {
                        if let Some(v) = self.command_types.get(&t).copied() {
                            self.command_types.insert(n, v);
                        }
                    }
                }
                self.enum_alias.insert(name.to_owned(), a.to_owned());
                continue;
            }
            if ename == "API Constants" {
                if let Some(v) = e.attribute("value") {
                    self.constants.insert(name.to_owned(), v.to_owned());
                }
                continue;
            }
            if ename == "VkCommandTypeEXT" {
                if let (Some(v), Some(cmd)) = (
                    e.attribute("value").and_then(parse_int),
                    name.strip_prefix("VK_COMMAND_TYPE_")
                        .and_then(|s| s.strip_suffix("_EXT")),
                ) {
                    if let Ok(v) = u32::try_from(v) {
                        self.command_types.insert(cmd.to_owned(), v);
                    }
                }
                continue;
            }
            if let Some(v) = ext_enum_value(e, None) {
                self.enum_values
                    .entry(ename.clone())
                    .or_default()
                    .insert(name.to_owned(), v);
            }
        }
    }

    fn read_commands(&mut self, top: roxmltree::Node<'_, '_>) -> Result<(), XmlError> {
        for c in top.children().filter(|c| c.has_tag_name("command")) {
            if !api_ok(c) {
                continue;
            }
            if let (Some(name), Some(alias)) = (c.attribute("name"), c.attribute("alias")) {
                self.command_alias.insert(name.to_owned(), alias.to_owned());
                continue;
            }
            let Some(proto) = c.children().find(|x| x.has_tag_name("proto")) else {
                continue;
            };
            let p = parse_member(proto)?;
            let mut params = Vec::new();
            for pn in c.children().filter(|x| x.has_tag_name("param")) {
                if api_ok(pn) {
                    params.push(parse_member(pn)?);
                }
            }
            let ret = if p.ptr_depth > 0 {
                format!("{}*", p.ty)
            } else {
                p.ty
            };
            self.commands.insert(
                p.name.clone(),
                Command {
                    name: p.name,
                    ret,
                    params,
                },
            );
        }
        Ok(())
    }

    fn read_requires(&mut self, node: roxmltree::Node<'_, '_>, origin: &Origin, ext: Option<u32>) {
        for req in node.children().filter(|c| c.has_tag_name("require")) {
            if !api_ok(req) {
                continue;
            }
            let depends = req
                .attribute("depends")
                .or_else(|| req.attribute("extension"))
                .or_else(|| req.attribute("feature"))
                .map(str::to_owned);
            let origin = &match origin {
                Origin::Ext(n, _) => Origin::Ext(*n, depends),
                o => o.clone(),
            };
            for item in req.children().filter(|c| c.is_element()) {
                let Some(name) = item.attribute("name") else {
                    continue;
                };
                match item.tag_name().name() {
                    "type" => self
                        .type_origin
                        .entry(name.to_owned())
                        .or_default()
                        .push(origin.clone()),
                    "command" => self
                        .command_origin
                        .entry(name.to_owned())
                        .or_default()
                        .push(origin.clone()),
                    "enum" => {
                        if let Some(target) = item.attribute("extends") {
                            if let Some(a) = item.attribute("alias") {
                                self.enum_alias.insert(name.to_owned(), a.to_owned());
                            } else if let Some(v) = ext_enum_value(item, ext) {
                                self.enum_values
                                    .entry(target.to_owned())
                                    .or_default()
                                    .insert(name.to_owned(), v);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn read_feature(&mut self, top: roxmltree::Node<'_, '_>) {
        if !api_ok(top) {
            return;
        }
        let number = top.attribute("number").unwrap_or("0.0");
        let mut it = number.split('.');
        let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        self.read_requires(top, &Origin::Core(major, minor), None);
    }

    fn read_extensions(&mut self, top: roxmltree::Node<'_, '_>) {
        for e in top.children().filter(|c| c.has_tag_name("extension")) {
            let Some(name) = e.attribute("name") else {
                continue;
            };
            let number: u32 = e
                .attribute("number")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut spec_version = 0;
            for req in e.children().filter(|c| c.has_tag_name("require")) {
                for en in req.children().filter(|c| c.has_tag_name("enum")) {
                    let n = en.attribute("name").unwrap_or("");
                    if n.ends_with("_SPEC_VERSION") {
                        spec_version = en.attribute("value").and_then(parse_int).unwrap_or(0);
                    }
                }
            }
            self.extensions.insert(
                name.to_owned(),
                Extension {
                    number,
                    spec_version: u32::try_from(spec_version).unwrap_or(0),
                },
            );
            if e.attribute("supported")
                .is_some_and(|s| s.split(',').any(|x| x == "vulkan"))
            {
                self.read_requires(e, &Origin::Ext(number, None), Some(number));
            }
        }
    }

    fn read_formats(&mut self, top: roxmltree::Node<'_, '_>) -> Result<(), XmlError> {
        let num = |f: roxmltree::Node<'_, '_>, a: &str| -> Result<u32, XmlError> {
            f.attribute(a).and_then(|v| v.parse().ok()).ok_or_else(|| {
                XmlError(format!(
                    "format {:?}: bad or missing {a}",
                    f.attribute("name")
                ))
            })
        };
        for f in top.children().filter(|c| c.has_tag_name("format")) {
            let name = f
                .attribute("name")
                .ok_or_else(|| XmlError("format without name".into()))?
                .to_owned();
            let mut block_extent = [1u32; 3];
            if let Some(e) = f.attribute("blockExtent") {
                let v: Vec<u32> = e.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                block_extent = v
                    .try_into()
                    .map_err(|_| XmlError(format!("format {name}: bad blockExtent {e}")))?;
            }
            let mut components = Vec::new();
            let mut planes = Vec::new();
            for c in f.children().filter(|c| c.is_element()) {
                match c.tag_name().name() {
                    "component" => components.push(FormatComponent {
                        name: c.attribute("name").unwrap_or("").to_owned(),
                        bits: c
                            .attribute("bits")
                            .and_then(|b| b.parse().ok())
                            .unwrap_or(0),
                    }),
                    "plane" => planes.push(FormatPlane {
                        index: num(c, "index")?,
                        width_divisor: num(c, "widthDivisor")?,
                        height_divisor: num(c, "heightDivisor")?,
                        compatible: c
                            .attribute("compatible")
                            .ok_or_else(|| {
                                XmlError(format!("format {name}: plane without compatible"))
                            })?
                            .to_owned(),
                    }),
                    _ => {}
                }
            }
            planes.sort_by_key(|p| p.index);
            self.formats.push(Format {
                class: f.attribute("class").unwrap_or("").to_owned(),
                block_size: num(f, "blockSize")?,
                texels_per_block: num(f, "texelsPerBlock")?,
                block_extent,
                packed: f
                    .attribute("packed")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                compressed: f.attribute("compressed").map(str::to_owned),
                components,
                planes,
                name,
            });
        }
        Ok(())
    }

    /// Follows type aliases to the defining type.
    pub fn resolve<'s>(&'s self, name: &'s str) -> &'s str {
        let mut n = name;
        for _ in 0..8 {
            match self.types.get(n).and_then(|t| t.alias.as_deref()) {
                Some(a) => n = a,
                None => break,
            }
        }
        n
    }

    /// Value of an enum constant (following aliases).
    pub fn enum_value(&self, ename: &str, value_name: &str) -> Option<i64> {
        let mut n = value_name;
        for _ in 0..8 {
            if let Some(v) = self.enum_values.get(ename).and_then(|m| m.get(n)) {
                return Some(*v);
            }
            n = self.enum_alias.get(n)?;
        }
        None
    }
}
