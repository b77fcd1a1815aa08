//! Little-endian writes on 4-byte granules, and the peer's capabilities for pNext gating.

use core::ffi::{c_char, CStr};

/// When a chained struct may be encoded for a peer (venus `get_type_condition`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Core 1.0–1.2 structs: always.
    Always,
    /// Structs of an extension: if the peer's capset mask has that extension number.
    Ext(u32),
    /// Native Vulkan 1.3 structs: if the peer's vk.xml version is at least 1.3.
    Api13,
}

/// Writes a Venus stream into a growable buffer.
#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
    ext_mask: Option<[u32; 32]>,
    api13: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder that assumes the peer knows every protocol struct.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            ext_mask: None,
            api13: true,
        }
    }

    /// An encoder for a peer with this capset extension mask and vk.xml version.
    pub fn for_peer(ext_mask: [u32; 32], vk_xml_version: u32) -> Self {
        Self {
            buf: Vec::new(),
            ext_mask: Some(ext_mask),
            api13: vk_xml_version >= (1 << 22 | 3 << 12),
        }
    }

    /// Whether a struct under `gate` may be encoded for this peer.
    pub fn allows(&self, gate: Gate) -> bool {
        match gate {
            Gate::Always => true,
            Gate::Api13 => self.api13,
            Gate::Ext(n) => match &self.ext_mask {
                None => true,
                Some(m) => {
                    let n = n as usize;
                    m.get(n / 32).is_some_and(|w| w & (1 << (n % 32)) != 0)
                }
            },
        }
    }

    /// The bytes written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Forgets what was written, keeping the capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A `uint32_t`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An `int32_t`.
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `uint64_t`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An `int64_t`.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `float`.
    pub fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }

    /// A `double`.
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    /// A `uint8_t`, padded to 4 bytes.
    pub fn u8(&mut self, v: u8) {
        self.u32(u32::from(v));
    }

    /// A `uint16_t`, padded to 4 bytes.
    pub fn u16(&mut self, v: u16) {
        self.u32(u32::from(v));
    }

    /// A `size_t`.
    pub fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }

    /// An array size.
    pub fn array_size(&mut self, n: u64) {
        self.u64(n);
    }

    /// Raw bytes padded with zeros to a multiple of 4.
    pub fn bytes_padded(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
        let pad = (4 - b.len() % 4) % 4;
        self.buf.extend(core::iter::repeat_n(0u8, pad));
    }

    /// A `char x[N]` array, padded.
    pub fn chars(&mut self, c: &[c_char]) {
        self.buf.extend(c.iter().map(|x| x.cast_unsigned()));
        let pad = (4 - c.len() % 4) % 4;
        self.buf.extend(core::iter::repeat_n(0u8, pad));
    }

    /// A `const char*`: size (strlen + 1), then the bytes with NUL, padded; NULL is size 0.
    pub fn string(&mut self, s: Option<&CStr>) {
        match s {
            Some(s) => {
                let b = s.to_bytes_with_nul();
                self.u64(b.len() as u64);
                self.bytes_padded(b);
            }
            None => self.u64(0),
        }
    }
}
