//! Emits `formats.rs`: the texel-block table of every format the protocol's `VkFormat`
//! enum knows, from vk.xml's `<formats>` element (block size, block extent, depth and
//! stencil bits, planes). The types it fills live in the hand-written `crate::format`.

use std::fmt::Write as _;

use crate::emit::banner;
use crate::model::Proto;
use crate::xml::{Format, Registry};

fn bits(f: &Format, component: &str) -> u32 {
    f.components
        .iter()
        .find(|c| c.name == component)
        .map_or(0, |c| c.bits)
}

/// The `formats.rs` file. Fails if a `VkFormat` value on the wire (other than
/// `VK_FORMAT_UNDEFINED`) has no `<format>` entry, or a plane names an unknown format.
pub fn formats_file(
    reg: &Registry,
    p: &Proto,
    hashes: &[(String, String)],
) -> Result<String, String> {
    let wire = p
        .enums
        .get("VkFormat")
        .map(|(_, v)| v.clone())
        .ok_or("VkFormat is not on the wire")?;
    let value = |name: &str| {
        reg.enum_value("VkFormat", name)
            .ok_or_else(|| format!("format {name} has no VkFormat value"))
    };
    let mut rows = Vec::new();
    for f in &reg.formats {
        let v = value(&f.name)?;
        if wire.contains(&v) {
            rows.push((v, f));
        }
    }
    rows.sort_by_key(|(v, _)| *v);
    let covered: std::collections::BTreeSet<i64> = rows.iter().map(|(v, _)| *v).collect();
    if let Some(missing) = wire.iter().find(|v| **v != 0 && !covered.contains(v)) {
        return Err(format!(
            "VkFormat value {missing} is on the wire but has no <format> entry"
        ));
    }
    let mut out = banner(hashes);
    out.push_str(
        "//! Texel blocks of every `VkFormat` on the wire, from vk.xml's `<formats>`.\n\
         //! See `crate::format` for the meaning of each field.\n\n\
         use ash::vk;\n\n\
         use crate::format::{FormatInfo, PlaneInfo};\n\n\
         /// What vk.xml says about `format`'s texel blocks; `None` for\n\
         /// `VK_FORMAT_UNDEFINED` and values the protocol does not know.\n\
         pub fn format_info(format: vk::Format) -> Option<FormatInfo> {\n\
         Some(match format.as_raw() {\n",
    );
    for (v, f) in &rows {
        let mut planes = String::new();
        for pl in &f.planes {
            let pv = value(&pl.compatible)?;
            let _ = write!(
                planes,
                "PlaneInfo {{ width_divisor: {}, height_divisor: {}, format: vk::Format::from_raw({pv}) /* {} */ }},",
                pl.width_divisor, pl.height_divisor, pl.compatible
            );
        }
        // A const item: `from_raw` calls are not promoted to 'static in a plain literal.
        let planes = if planes.is_empty() {
            "&[]".to_owned()
        } else {
            format!("{{ const P: &[PlaneInfo] = &[{planes}]; P }}")
        };
        let [w, h, d] = f.block_extent;
        let _ = writeln!(
            out,
            "{v} => FormatInfo {{ name: {:?}, class: {:?}, block_size: {}, texels_per_block: {}, block_extent: [{w}, {h}, {d}], packed: {}, compressed: {}, depth_bits: {}, stencil_bits: {}, planes: {planes} }},",
            f.name,
            f.class,
            f.block_size,
            f.texels_per_block,
            f.packed,
            f.compressed.is_some(),
            bits(f, "D"),
            bits(f, "S"),
        );
    }
    out.push_str("_ => return None,\n})\n}\n");
    Ok(out)
}
