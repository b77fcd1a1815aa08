//! Emits the device crate's generated Venus handler files (`device/src/renderer/venus/`):
//!
//! * `forward.rs`: the handlers of [`policy::FORWARDED`] (pure forwards to the host driver),
//!   [`policy::CREATED`] and [`policy::DESTROYED`] (same-shape create/destroy pairs), as
//!   inherent methods of the device crate's `Handler`, which its `Dispatch` impl calls;
//! * `fns.rs`: the optional entry-point table of [`policy::DEVICE_FNS`] (`DeviceFns`), each
//!   entry looked up under its registry name and aliases.
//!
//! The emitter only accepts shapes it knows to forward unchanged; a command listed in the
//! policy with any other parameter shape is an error, not a guess.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::emit::{args_name, banner, const_name};
use crate::model::{snake, CommandDef, Dir, Kind, Len, Proto, Sc};
use crate::policy;
use crate::xml::{Origin, Registry};

/// Where a handler takes the command's entry point from.
enum Entry {
    /// `ash::Device`'s table of core version 1.`minor` (`fp_v1_0()`, …).
    Core(u32),
    /// The optional table (`DeviceFns`): missing entry points fail with `HostLacks`.
    Optional,
}

fn method(name: &str) -> String {
    snake(name.strip_prefix("vk").unwrap_or(name))
}

fn entry(reg: &Registry, name: &str) -> Result<Entry, String> {
    if policy::DEVICE_FNS.contains(&name) {
        return Ok(Entry::Optional);
    }
    reg.command_origin
        .get(name)
        .into_iter()
        .flatten()
        .find_map(|o| match o {
            Origin::Core(1, minor) => Some(Entry::Core(*minor)),
            _ => None,
        })
        .ok_or_else(|| format!("{name}: not core Vulkan and not in policy::DEVICE_FNS"))
}

/// What a command is dispatched on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum On {
    Device,
    CommandBuffer,
    PhysicalDevice,
}

/// The dispatchable first parameter: (Rust field, its kind).
fn dispatcher(c: &CommandDef) -> Result<(String, On), String> {
    let on = match c.params.first().map(|f| &f.kind) {
        Some(Kind::Handle(h)) if h.path == "vk::Device" => On::Device,
        Some(Kind::Handle(h)) if h.path == "vk::CommandBuffer" => On::CommandBuffer,
        Some(Kind::Handle(h)) if h.path == "vk::PhysicalDevice" => On::PhysicalDevice,
        _ => {
            return Err(format!(
                "{}: generated handlers need a VkDevice, VkCommandBuffer or VkPhysicalDevice first",
                c.name
            ))
        }
    };
    Ok((c.params[0].rust.clone(), on))
}

fn ret_ty(c: &CommandDef) -> Result<&'static str, String> {
    match &c.ret {
        None => Ok("()"),
        Some(Sc::Enum(n, _)) if n == "VkResult" => Ok("vk::Result"),
        Some(Sc::U64) => Ok("u64"),
        Some(sc) => Err(format!("{}: return type {sc:?}", c.name)),
    }
}

/// What a generated file needs imported.
#[derive(Default)]
struct Uses {
    args: BTreeSet<String>,
    required: bool,
    venus_error: bool,
    no_null: bool,
}

/// The statement that takes the device and entry point `f` of command `c` (`dev` for core
/// tables, `_dev` for the optional one, which keeps the device alive as long as `f`).
fn take_entry(reg: &Registry, c: &CommandDef) -> Result<String, String> {
    let (first, on) = dispatcher(c)?;
    let m = method(&c.name);
    Ok(match (entry(reg, &c.name)?, on) {
        (Entry::Core(minor), On::PhysicalDevice) => format!(
            "let inst = self.physical(args.{first})?;\nlet f = inst.instance.fp_v1_{minor}().{m};\n"
        ),
        (Entry::Core(minor), _) => {
            let lookup = if on == On::CommandBuffer {
                "device_of"
            } else {
                "device"
            };
            format!(
                "let dev = self.{lookup}(args.{first})?;\nlet f = dev.device.fp_v1_{minor}().{m};\n"
            )
        }
        (Entry::Optional, On::PhysicalDevice) => {
            return Err(format!("{}: DEVICE_FNS holds device commands only", c.name))
        }
        (Entry::Optional, _) => {
            let lookup = if on == On::CommandBuffer {
                "cmd_fn"
            } else {
                "dev_fn"
            };
            format!(
                "let (_dev, f) = self.{lookup}(args.{first}, |t| t.{m}, \"{}\")?;\n",
                c.name
            )
        }
    })
}

/// A pure forward: every parameter passed through as decoded.
fn forward(
    reg: &Registry,
    c: &CommandDef,
    uses: &mut Uses,
    out: &mut String,
) -> Result<(), String> {
    let ret = ret_ty(c)?;
    // Count parameters that count exactly one input array: (count field → array field).
    let mut counted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &c.params {
        if let Kind::Array(_, len) = &f.kind {
            match len {
                Len::Member(m, Sc::U32) if f.dir == Dir::In => {
                    counted.entry(snake(m)).or_default().push(f.rust.clone());
                }
                _ => return Err(format!("{}.{}: array shape {len:?}", c.name, f.name)),
            }
        }
    }
    if let Some((n, _)) = counted.iter().find(|(_, a)| a.len() != 1) {
        return Err(format!("{}: {n} counts more than one array", c.name));
    }
    let mut pre = String::new();
    // NULL elements of handle arrays: the decoder refuses NULL handle parameters that
    // vk.xml does not mark optional, but passes object id 0 in an array through as
    // VK_NULL_HANDLE, and drivers dereference it (lavapipe SIGSEGVs on a NULL fence).
    let mut null_checks = String::new();
    let mut call = Vec::new();
    for (i, f) in c.params.iter().enumerate() {
        let t = &f.rust;
        match &f.kind {
            Kind::Array(inner, _) if matches!(**inner, Kind::Handle(_)) => {
                uses.no_null = true;
                let _ = writeln!(
                    null_checks,
                    "no_null({t}, \"{}: an element of {} is NULL\")?;",
                    c.name, f.name
                );
            }
            _ => {}
        }
        let arg = match &f.kind {
            _ if i == 0 => format!("args.{t}"),
            Kind::Allocator => "std::ptr::null()".to_owned(),
            Kind::Scalar(_) if counted.contains_key(t) => {
                let a = &counted[t][0];
                uses.venus_error = true;
                let _ = writeln!(
                    pre,
                    "let {t} = u32::try_from({a}.len()).map_err(|_| VenusError::Invalid(\"{} too long\"))?;",
                    f.name
                );
                t.clone()
            }
            Kind::Scalar(_) | Kind::Handle(_) => format!("args.{t}"),
            Kind::Fixed(..) => format!("&args.{t}"),
            Kind::PtrStruct(_) | Kind::PtrScalar(_) | Kind::PtrHandle(_) => {
                match (f.dir == Dir::In, f.nullable) {
                    (true, false) => {
                        uses.required = true;
                        let _ = writeln!(pre, "let {t} = required(args.{t}, \"{}\")?;", f.name);
                        t.clone()
                    }
                    (false, false) => {
                        uses.required = true;
                        let _ = writeln!(
                            pre,
                            "let {t} = required(args.{t}.as_deref_mut(), \"{}\")?;",
                            f.name
                        );
                        t.clone()
                    }
                    (true, true) => {
                        format!("args.{t}.map_or(std::ptr::null(), std::ptr::from_ref)")
                    }
                    (false, true) => format!(
                        "args.{t}.as_deref_mut().map_or(std::ptr::null_mut(), std::ptr::from_mut)"
                    ),
                }
            }
            Kind::Array(..) => {
                // Before the statements that count it.
                pre.insert_str(0, &format!("let {t} = args.{t}.unwrap_or(&[]);\n"));
                format!("{t}.as_ptr()")
            }
            k => return Err(format!("{}.{}: parameter kind {k:?}", c.name, f.name)),
        };
        call.push(arg);
    }
    pre.push_str(&null_checks);
    if let Some((_, point)) = policy::NEEDS_PIPELINE.iter().find(|(n, _)| *n == c.name) {
        let _ = writeln!(
            pre,
            "self.require_pipeline(args.{}, vk::PipelineBindPoint::{point})?;",
            c.params[0].rust
        );
    }
    let an = args_name(c);
    uses.args.insert(an.clone());
    let _ = write!(
        out,
        "/// `{}`, forwarded as decoded.\npub(super) fn {}(&mut self, args: &mut {an}<'_>) -> Result<{ret}> {{\n{pre}{}",
        c.name,
        method(&c.name),
        take_entry(reg, c)?
    );
    out.push_str(
        "// SAFETY: `f` is this command's entry point, from the live device or instance it is\n\
         // dispatched on; every handle in `args` is a live host handle of this context (held\n\
         // against the command's device by `Dispatch::decoded`, pinned until the command ends);\n\
         // each pointer points into `args` or the command arena, holds as many elements as the\n\
         // count passed with it, and outlives the call.\n",
    );
    let call = format!("f({})", call.join(", "));
    if ret == "()" {
        let _ = writeln!(out, "unsafe {{ {call} }};\nOk(())\n}}\n");
    } else {
        let _ = writeln!(out, "Ok(unsafe {{ {call} }})\n}}\n");
    }
    Ok(())
}

/// A create of the shape `(device, pCreateInfo, pAllocator, pObject)`.
fn create(reg: &Registry, c: &CommandDef, uses: &mut Uses, out: &mut String) -> Result<(), String> {
    let shape = match c.params.as_slice() {
        [d, info, a, obj] => match (&d.kind, &info.kind, &a.kind, &obj.kind) {
            (Kind::Handle(dh), Kind::PtrStruct(_), Kind::Allocator, Kind::PtrHandle(h))
                if dh.path == "vk::Device"
                    && info.dir == Dir::In
                    && !info.nullable
                    && obj.dir == Dir::Out
                    && c.ret.is_some() =>
            {
                Some((d.rust.clone(), info, obj.rust.clone(), h.path.clone()))
            }
            _ => None,
        },
        _ => None,
    };
    let Some((dev, info, slot, handle)) = shape else {
        return Err(format!(
            "{}: not a (device, pCreateInfo, pAllocator, pObject) create",
            c.name
        ));
    };
    let an = args_name(c);
    uses.args.insert(an.clone());
    uses.required = true;
    let m = method(&c.name);
    let _ = write!(
        out,
        "/// `{}`: the new object bound to the guest id in `{}`.\npub(super) fn {m}(&mut self, args: &mut {an}<'_>) -> Result<vk::Result> {{\n\
         let info = required(args.{}, \"{}\")?;\n",
        c.name, slot, info.rust, info.name
    );
    let get = match entry(reg, &c.name)? {
        Entry::Core(minor) => format!("let f = d.device.fp_v1_{minor}().{m};\n"),
        Entry::Optional => {
            let _ = writeln!(
                out,
                "let (_dev, f) = self.dev_fn(args.{dev}, |t| t.{m}, \"{}\")?;",
                c.name
            );
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "self.create_child(args.{dev}, args.{slot}.as_deref(), |d| {{\n{get}let mut out = {handle}::null();\n\
         // SAFETY: `f` is this command's entry point on `d`, the live device the create info's\n\
         // handles belong to (`Dispatch::decoded`); `info` lives in the command arena across the\n\
         // call; `out` is a local; the allocator is NULL.\n\
         unsafe {{ f(d.device.handle(), info, std::ptr::null(), &mut out) }}.result_with_success(out)\n}})\n}}\n"
    );
    Ok(())
}

/// A destroy of the shape `(device, object, pAllocator)`.
fn destroy(
    reg: &Registry,
    c: &CommandDef,
    uses: &mut Uses,
    out: &mut String,
) -> Result<(), String> {
    let shape = match c.params.as_slice() {
        [d, obj, a] => match (&d.kind, &obj.kind, &a.kind) {
            (Kind::Handle(dh), Kind::Handle(_), Kind::Allocator)
                if dh.path == "vk::Device" && c.ret.is_none() =>
            {
                Some((d.rust.clone(), obj.rust.clone()))
            }
            _ => None,
        },
        _ => None,
    };
    let Some((dev, obj)) = shape else {
        return Err(format!(
            "{}: not a (device, object, pAllocator) destroy",
            c.name
        ));
    };
    let an = args_name(c);
    uses.args.insert(an.clone());
    let m = method(&c.name);
    let _ = writeln!(
        out,
        "/// `{}`: the guest id goes now, the host object when its last user lets go.\npub(super) fn {m}(&mut self, args: &mut {an}<'_>) -> Result<()> {{",
        c.name
    );
    let (get, mv) = match entry(reg, &c.name)? {
        Entry::Core(minor) => (format!("let f = d.device.fp_v1_{minor}().{m};\n"), ""),
        Entry::Optional => {
            let _ = writeln!(
                out,
                "let (_dev, f) = self.dev_fn(args.{dev}, |t| t.{m}, \"{}\")?;",
                c.name
            );
            (String::new(), "move ")
        }
    };
    let _ = writeln!(
        out,
        "self.destroy_child(args.{dev}, args.{obj}, {mv}|d, h| {{\n{get}\
         // SAFETY: `f` is this command's entry point on `d`; `h` is a live object of `d`,\n\
         // out of the tables, and this runs once, when its last user let go (`destroy_child`);\n\
         // the allocator is NULL as at creation.\n\
         unsafe {{ f(d.device.handle(), h, std::ptr::null()) }};\n}})\n}}\n"
    );
    Ok(())
}

/// The `forward.rs` file.
fn forward_file(reg: &Registry, p: &Proto, hashes: &[(String, String)]) -> Result<String, String> {
    let by_name: BTreeMap<&str, &CommandDef> =
        p.commands.iter().map(|c| (c.name.as_str(), c)).collect();
    let get = |n: &str| {
        by_name
            .get(n)
            .copied()
            .ok_or_else(|| format!("{n} (in a handler policy list) is not a command on the wire"))
    };
    let mut uses = Uses::default();
    let mut body = String::new();
    body.push_str("// Pure forwards (policy::FORWARDED).\n\n");
    for n in policy::FORWARDED {
        forward(reg, get(n)?, &mut uses, &mut body)?;
    }
    body.push_str("// Same-shape creates (policy::CREATED).\n\n");
    for n in policy::CREATED {
        create(reg, get(n)?, &mut uses, &mut body)?;
    }
    body.push_str("// Same-shape destroys (policy::DESTROYED).\n\n");
    for n in policy::DESTROYED {
        destroy(reg, get(n)?, &mut uses, &mut body)?;
    }
    let mut out = banner(hashes);
    let _ = write!(
        out,
        "//! Generated Venus handlers: {} pure forwards, {} creates and {} destroys of the same\n\
         //! shape, from the lists in `vulkan-proto/gen/src/policy.rs` (`FORWARDED`, `CREATED`,\n\
         //! `DESTROYED`). Each is an inherent method of [`Handler`] that the `Dispatch` impl in\n\
         //! `mod.rs` calls like the hand-written ones.\n\
         //!\n\
         //! A forward does no more than every command gets anyway: the decoder's checks, the\n\
         //! ownership hook (`Dispatch::decoded`, see `ownership.rs`), the device lookup and, for\n\
         //! entry points of the optional table, `HostLacks`. Handlers that check values against\n\
         //! limits or recorded sizes, record state, charge quotas, rewrite chains or manage\n\
         //! lifetimes beyond `create_child`/`destroy_child` are hand-written in the family files.\n\n",
        policy::FORWARDED.len(),
        policy::CREATED.len(),
        policy::DESTROYED.len()
    );
    out.push_str("use ash::vk;\n");
    let names: Vec<&str> = uses.args.iter().map(String::as_str).collect();
    let _ = writeln!(out, "use vulkan_proto::args::{{{}}};\n", names.join(", "));
    if uses.no_null {
        out.push_str("use super::ownership::no_null;\n");
    }
    if uses.required {
        out.push_str("use super::physical_device::required;\n");
    }
    if uses.venus_error {
        out.push_str("use super::{Handler, Result, VenusError};\n\n");
    } else {
        out.push_str("use super::{Handler, Result};\n\n");
    }
    out.push_str("impl Handler<'_, '_> {\n");
    out.push_str(&body);
    out.push_str("}\n");
    Ok(out)
}

/// Lookup names of an optional entry point: the newer name ash uses (if any), its own
/// name, then its registry aliases, KHR first, then EXT, then vendor ones.
fn lookup_names(reg: &Registry, name: &str) -> Vec<String> {
    let mut names: Vec<String> = policy::NEWER_NAMES
        .iter()
        .filter(|n| n.0 == name)
        .map(|n| n.1.to_owned())
        .collect();
    names.push(name.to_owned());
    let mut aliases: Vec<&String> = reg
        .command_alias
        .iter()
        .filter(|(_, target)| target.as_str() == name)
        .map(|(a, _)| a)
        .collect();
    let rank = |a: &str| {
        if a.ends_with("KHR") {
            0
        } else if a.ends_with("EXT") {
            1
        } else {
            2
        }
    };
    aliases.sort_by_key(|a| (rank(a), (*a).clone()));
    for a in aliases {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    names
}

/// The `fns.rs` file.
fn fns_file(reg: &Registry, p: &Proto, hashes: &[(String, String)]) -> Result<String, String> {
    let mut out = banner(hashes);
    out.push_str(
        "//! Device entry points beyond what `ash::Device` loads safely: core 1.1–1.3 commands\n\
         //! and extension commands, each looked up once at device creation under its core name\n\
         //! and then its extension aliases (the list is `DEVICE_FNS` in\n\
         //! `vulkan-proto/gen/src/policy.rs`; the names come from the registry).\n\
         //!\n\
         //! `ash`'s own loaders replace a missing entry point with a stub that panics, which a\n\
         //! guest could reach by calling a command of an extension the host lacks. Here a\n\
         //! missing entry point is `None`, and the handler fails the context with\n\
         //! [`VenusError::HostLacks`](super::VenusError::HostLacks) instead.\n\n\
         use std::ffi::CStr;\nuse std::mem::transmute;\n\nuse ash::vk;\n\n\
         /// What `vkGetDeviceProcAddr` returns.\ntype Pfn = unsafe extern \"system\" fn();\n\n\
         /// Optional device entry points (see the module docs).\n\
         #[derive(Clone, Copy, Default)]\npub(crate) struct DeviceFns {\n",
    );
    let mut rows = Vec::new();
    for &name in policy::DEVICE_FNS {
        if !reg.commands.contains_key(name) {
            return Err(format!(
                "{name} (in policy::DEVICE_FNS) is not a registry command"
            ));
        }
        let pfn = policy::NEWER_NAMES
            .iter()
            .find(|n| n.0 == name)
            .map_or(name, |n| n.1);
        rows.push((method(name), pfn, lookup_names(reg, name)));
    }
    for (field, pfn, names) in &rows {
        let _ = writeln!(
            out,
            "/// `{}`.\npub(crate) {field}: Option<vk::PFN_{pfn}>,",
            names.join("`, `")
        );
    }
    out.push_str(
        "}\n\nimpl DeviceFns {\n\
         /// Looks every entry point up on `device` (created from `instance`).\n\
         pub(crate) fn load(instance: &ash::Instance, device: vk::Device) -> Self {\n\
         let get = instance.fp_v1_0().get_device_proc_addr;\n\
         let find = |names: &[&CStr]| {\nnames.iter().find_map(|n| {\n\
         // SAFETY: a live device of this instance and a NUL-terminated name; the call has no\n\
         // other precondition.\nunsafe { get(device, n.as_ptr()) }\n})\n};\nSelf {\n",
    );
    for (field, pfn, names) in &rows {
        let list: Vec<String> = names.iter().map(|n| format!("c\"{n}\"")).collect();
        let _ = writeln!(
            out,
            "{field}: find(&[{}]).map(|f| {{\n\
             // SAFETY: the driver's entry point for one of these names (aliases of one\n\
             // command, so of one signature), and the target type is that signature.\n\
             unsafe {{ transmute::<Pfn, vk::PFN_{pfn}>(f) }}\n}}),",
            list.join(", ")
        );
    }
    out.push_str(
        "}\n}\n}\n\nimpl std::fmt::Debug for DeviceFns {\n\
         fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {\nlet loaded = [\n",
    );
    for (field, _, _) in &rows {
        let _ = writeln!(out, "self.{field}.is_some(),");
    }
    out.push_str(
        "]\n.iter()\n.filter(|&&b| b)\n.count();\n\
         f.debug_struct(\"DeviceFns\").field(\"loaded\", &loaded).finish()\n}\n}\n",
    );
    // Commands that are core since Vulkan 1.2 or 1.3 and that the handlers reach through
    // `ash`'s core tables (everything not in DEVICE_FNS): `ash` fills an entry point the
    // loader does not give (below that version) with a stub that panics.
    let mut since: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for c in &p.commands {
        if policy::DEVICE_FNS.contains(&c.name.as_str()) {
            continue;
        }
        if let Some(minor) = reg
            .command_origin
            .get(&c.name)
            .into_iter()
            .flatten()
            .find_map(|o| match o {
                Origin::Core(1, minor) if *minor >= 2 => Some(*minor),
                _ => None,
            })
        {
            since.entry(minor).or_default().push(const_name(&c.name));
        }
    }
    out.push_str(
        "\n/// The Vulkan 1.x minor version since which `command` is core, for the commands the\n\
         /// handlers call through `ash`'s core tables (`fp_v1_2`, `fp_v1_3`): below that\n\
         /// version the loader gives no entry point and `ash` puts a stub that panics in its\n\
         /// place, so the dispatcher refuses the command on an object of a lower version.\n\
         /// `None` for every other command (core 1.0/1.1, or looked up in [`DeviceFns`]).\n\
         pub(crate) fn core_only_since(command: vulkan_proto::CommandType) -> Option<u32> {\n\
         use vulkan_proto::CommandType as C;\nmatch command {\n",
    );
    for (minor, names) in &since {
        let arms: Vec<String> = names.iter().map(|n| format!("C::{n}")).collect();
        let _ = writeln!(out, "{} => Some({minor}),", arms.join(" | "));
    }
    out.push_str("_ => None,\n}\n}\n");
    Ok(out)
}

/// The device crate's generated files: (file name in `device/src/renderer/venus/`, text).
pub fn device_files(
    reg: &Registry,
    p: &Proto,
    hashes: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    Ok(vec![
        ("fns.rs".to_owned(), fns_file(reg, p, hashes)?),
        ("forward.rs".to_owned(), forward_file(reg, p, hashes)?),
    ])
}
