//! virtio-gpu wire format (VIRTIO 1.3 §5.7, Linux `include/uapi/linux/virtio_gpu.h`).
//!
//! Plain structs with explicit little-endian parsing and encoding; validators sit next
//! to the structs. No I/O: the handler reads exactly [`fixed_size`] bytes after the
//! header, hands them to [`Request::decode`], and reads variable tails (memory
//! entries, SUBMIT_3D streams) itself, bounded by what the descriptor chain holds.

/// Size of `virtio_gpu_ctrl_hdr`.
pub const CTRL_HDR_SIZE: usize = 24;
/// `VIRTIO_GPU_MAX_SCANOUTS`.
pub const MAX_SCANOUTS: usize = 16;
/// Size of the EDID blob in `virtio_gpu_resp_edid`.
pub const EDID_BLOB_SIZE: usize = 1024;
/// Size of one `virtio_gpu_mem_entry`.
pub const MEM_ENTRY_SIZE: usize = 16;

/// `VIRTIO_GPU_FLAG_FENCE`.
pub const FLAG_FENCE: u32 = 1 << 0;
/// `VIRTIO_GPU_FLAG_INFO_RING_IDX`.
pub const FLAG_INFO_RING_IDX: u32 = 1 << 1;

/// Highest `ring_idx` a guest may name (`ring_idx` is 0..63).
pub const MAX_RING_IDX: u8 = 63;

/// Feature bits (device-specific, §5.7.3).
pub mod features {
    /// `VIRTIO_GPU_F_VIRGL` (not offered: no virgl path).
    pub const VIRGL: u32 = 0;
    /// `VIRTIO_GPU_F_EDID`.
    pub const EDID: u32 = 1;
    /// `VIRTIO_GPU_F_RESOURCE_UUID`.
    pub const RESOURCE_UUID: u32 = 2;
    /// `VIRTIO_GPU_F_RESOURCE_BLOB`.
    pub const RESOURCE_BLOB: u32 = 3;
    /// `VIRTIO_GPU_F_CONTEXT_INIT`.
    pub const CONTEXT_INIT: u32 = 4;
}

/// `VIRTIO_GPU_EVENT_DISPLAY`.
pub const EVENT_DISPLAY: u32 = 1;

/// `VIRTIO_GPU_SHM_ID_HOST_VISIBLE`.
pub const SHM_ID_HOST_VISIBLE: u8 = 1;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// Decodes a wire value.
            pub fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

wire_enum!(
    /// `enum virtio_gpu_ctrl_type`, command half.
    CommandType {
        /// `VIRTIO_GPU_CMD_GET_DISPLAY_INFO`
        GetDisplayInfo = 0x100,
        /// `VIRTIO_GPU_CMD_RESOURCE_CREATE_2D`
        ResourceCreate2d = 0x101,
        /// `VIRTIO_GPU_CMD_RESOURCE_UNREF`
        ResourceUnref = 0x102,
        /// `VIRTIO_GPU_CMD_SET_SCANOUT`
        SetScanout = 0x103,
        /// `VIRTIO_GPU_CMD_RESOURCE_FLUSH`
        ResourceFlush = 0x104,
        /// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D`
        TransferToHost2d = 0x105,
        /// `VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING`
        ResourceAttachBacking = 0x106,
        /// `VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING`
        ResourceDetachBacking = 0x107,
        /// `VIRTIO_GPU_CMD_GET_CAPSET_INFO`
        GetCapsetInfo = 0x108,
        /// `VIRTIO_GPU_CMD_GET_CAPSET`
        GetCapset = 0x109,
        /// `VIRTIO_GPU_CMD_GET_EDID`
        GetEdid = 0x10a,
        /// `VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID`
        ResourceAssignUuid = 0x10b,
        /// `VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB`
        ResourceCreateBlob = 0x10c,
        /// `VIRTIO_GPU_CMD_SET_SCANOUT_BLOB`
        SetScanoutBlob = 0x10d,
        /// `VIRTIO_GPU_CMD_CTX_CREATE`
        CtxCreate = 0x200,
        /// `VIRTIO_GPU_CMD_CTX_DESTROY`
        CtxDestroy = 0x201,
        /// `VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE`
        CtxAttachResource = 0x202,
        /// `VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE`
        CtxDetachResource = 0x203,
        /// `VIRTIO_GPU_CMD_RESOURCE_CREATE_3D`
        ResourceCreate3d = 0x204,
        /// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D`
        TransferToHost3d = 0x205,
        /// `VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D`
        TransferFromHost3d = 0x206,
        /// `VIRTIO_GPU_CMD_SUBMIT_3D`
        Submit3d = 0x207,
        /// `VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB`
        ResourceMapBlob = 0x208,
        /// `VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB`
        ResourceUnmapBlob = 0x209,
        /// `VIRTIO_GPU_CMD_UPDATE_CURSOR`
        UpdateCursor = 0x300,
        /// `VIRTIO_GPU_CMD_MOVE_CURSOR`
        MoveCursor = 0x301,
    }
);

wire_enum!(
    /// `enum virtio_gpu_ctrl_type`, response half.
    RespType {
        /// `VIRTIO_GPU_RESP_OK_NODATA`
        OkNodata = 0x1100,
        /// `VIRTIO_GPU_RESP_OK_DISPLAY_INFO`
        OkDisplayInfo = 0x1101,
        /// `VIRTIO_GPU_RESP_OK_CAPSET_INFO`
        OkCapsetInfo = 0x1102,
        /// `VIRTIO_GPU_RESP_OK_CAPSET`
        OkCapset = 0x1103,
        /// `VIRTIO_GPU_RESP_OK_EDID`
        OkEdid = 0x1104,
        /// `VIRTIO_GPU_RESP_OK_RESOURCE_UUID`
        OkResourceUuid = 0x1105,
        /// `VIRTIO_GPU_RESP_OK_MAP_INFO`
        OkMapInfo = 0x1106,
        /// `VIRTIO_GPU_RESP_ERR_UNSPEC`
        ErrUnspec = 0x1200,
        /// `VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY`
        ErrOutOfMemory = 0x1201,
        /// `VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID`
        ErrInvalidScanoutId = 0x1202,
        /// `VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID`
        ErrInvalidResourceId = 0x1203,
        /// `VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID`
        ErrInvalidContextId = 0x1204,
        /// `VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER`
        ErrInvalidParameter = 0x1205,
    }
);

wire_enum!(
    /// `enum virtio_gpu_formats`. Every format is 4 bytes per pixel; the name gives
    /// the byte order in memory (B8G8R8X8 is DRM XRGB8888).
    Format {
        /// `VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM`
        B8G8R8A8Unorm = 1,
        /// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`
        B8G8R8X8Unorm = 2,
        /// `VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM`
        A8R8G8B8Unorm = 3,
        /// `VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM`
        X8R8G8B8Unorm = 4,
        /// `VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM`
        R8G8B8A8Unorm = 67,
        /// `VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM`
        X8B8G8R8Unorm = 68,
        /// `VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM`
        A8B8G8R8Unorm = 121,
        /// `VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM`
        R8G8B8X8Unorm = 134,
    }
);

impl Format {
    /// Bytes per pixel (4 for every 2D format).
    pub const BYTES_PER_PIXEL: u32 = 4;

    /// Converts one pixel in this format to RGBA (alpha 255 where the format has X).
    pub fn to_rgba(self, p: [u8; 4]) -> [u8; 4] {
        match self {
            Format::B8G8R8A8Unorm => [p[2], p[1], p[0], p[3]],
            Format::B8G8R8X8Unorm => [p[2], p[1], p[0], 255],
            Format::A8R8G8B8Unorm => [p[1], p[2], p[3], p[0]],
            Format::X8R8G8B8Unorm => [p[1], p[2], p[3], 255],
            Format::R8G8B8A8Unorm => p,
            Format::X8B8G8R8Unorm => [p[3], p[2], p[1], 255],
            Format::A8B8G8R8Unorm => [p[3], p[2], p[1], p[0]],
            Format::R8G8B8X8Unorm => [p[0], p[1], p[2], 255],
        }
    }
}

wire_enum!(
    /// `VIRTIO_GPU_BLOB_MEM_*`.
    BlobMem {
        /// Guest memory only.
        Guest = 1,
        /// Host memory created by a context (`blob_id`).
        Host3d = 2,
        /// Host object with guest backing.
        Host3dGuest = 3,
    }
);

/// `VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE`.
pub const BLOB_FLAG_USE_MAPPABLE: u32 = 1;
/// `VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE`.
pub const BLOB_FLAG_USE_SHAREABLE: u32 = 2;
/// `VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE`.
pub const BLOB_FLAG_USE_CROSS_DEVICE: u32 = 4;
const BLOB_FLAGS_ALL: u32 =
    BLOB_FLAG_USE_MAPPABLE | BLOB_FLAG_USE_SHAREABLE | BLOB_FLAG_USE_CROSS_DEVICE;

/// `VIRTIO_GPU_MAP_CACHE_CACHED` (what shared memfds are).
pub const MAP_CACHE_CACHED: u32 = 1;

/// Why a request could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The command type is not one of §5.7.6.
    #[error("unknown command type {0:#x}")]
    UnknownCommand(u32),
    /// The chain holds fewer bytes than the command needs.
    #[error("command {cmd:?} needs {need} bytes, the chain has {have}")]
    Short {
        /// Command.
        cmd: CommandType,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A field holds a value the spec does not allow.
    #[error("{field} = {value:#x} is invalid")]
    BadField {
        /// Field name.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// `x + width` or `y + height` overflows.
    #[error("rectangle overflows")]
    RectOverflow,
}

/// Result alias for wire decoding.
type Result<T> = std::result::Result<T, ProtocolError>;

/// Little-endian reads from a slice the caller sized; past the end reads zero, so a
/// wrong size is a logic bug that shows up as zeros, never a panic.
#[derive(Debug)]
pub struct LeCursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> LeCursor<'a> {
    /// Starts reading at offset 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self
            .pos
            .checked_add(N)
            .and_then(|end| self.bytes.get(self.pos..end))
        {
            out.copy_from_slice(src);
        }
        self.pos = self.pos.saturating_add(N);
        out
    }

    /// Reads a byte.
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    /// Reads a `le32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    /// Reads a `le64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n);
    }

    /// Reads `N` raw bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        self.take()
    }
}

/// Appends little-endian values.
#[derive(Debug, Default)]
pub struct LeWriter {
    out: Vec<u8>,
}

impl LeWriter {
    /// An empty buffer with room for `cap` bytes (callers pass small constants).
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            out: Vec::with_capacity(cap),
        }
    }

    /// Appends a `le32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a `le64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// `struct virtio_gpu_ctrl_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtrlHdr {
    /// Command or response type.
    pub type_: u32,
    /// `FLAG_FENCE`, `FLAG_INFO_RING_IDX`.
    pub flags: u32,
    /// Fence id (valid with `FLAG_FENCE`).
    pub fence_id: u64,
    /// Context id (3D commands).
    pub ctx_id: u32,
    /// Timeline (valid with `FLAG_INFO_RING_IDX`).
    pub ring_idx: u8,
}

impl CtrlHdr {
    /// Decodes the 24 header bytes.
    pub fn parse(b: &[u8; CTRL_HDR_SIZE]) -> Self {
        let mut c = LeCursor::new(b);
        Self {
            type_: c.u32(),
            flags: c.u32(),
            fence_id: c.u64(),
            ctx_id: c.u32(),
            ring_idx: c.u8(),
        }
    }

    /// Encodes it (padding zero).
    pub fn encode(&self) -> [u8; CTRL_HDR_SIZE] {
        let mut out = [0u8; CTRL_HDR_SIZE];
        out[0..4].copy_from_slice(&self.type_.to_le_bytes());
        out[4..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.fence_id.to_le_bytes());
        out[16..20].copy_from_slice(&self.ctx_id.to_le_bytes());
        out[20] = self.ring_idx;
        out
    }

    /// Whether the guest asked for a fence.
    pub fn is_fenced(&self) -> bool {
        self.flags & FLAG_FENCE != 0
    }

    /// Whether `ring_idx` selects a per-context timeline.
    pub fn has_ring_idx(&self) -> bool {
        self.flags & FLAG_INFO_RING_IDX != 0
    }

    /// The response header for this request: fence fields copied when fenced.
    pub fn response(&self, resp: RespType) -> CtrlHdr {
        if self.is_fenced() {
            CtrlHdr {
                type_: resp as u32,
                flags: self.flags & (FLAG_FENCE | FLAG_INFO_RING_IDX),
                fence_id: self.fence_id,
                ctx_id: self.ctx_id,
                ring_idx: self.ring_idx,
            }
        } else {
            CtrlHdr {
                type_: resp as u32,
                ..CtrlHdr::default()
            }
        }
    }
}

/// `struct virtio_gpu_rect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Rect {
    fn parse(c: &mut LeCursor<'_>) -> Self {
        Self {
            x: c.u32(),
            y: c.u32(),
            width: c.u32(),
            height: c.u32(),
        }
    }

    fn encode(&self, w: &mut LeWriter) {
        w.u32(self.x).u32(self.y).u32(self.width).u32(self.height);
    }

    /// Whether the rectangle lies inside a `width` × `height` surface (overflow-safe).
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        matches!(
            (self.x.checked_add(self.width), self.y.checked_add(self.height)),
            (Some(r), Some(b)) if r <= width && b <= height
        )
    }

    /// Whether the rectangle is empty.
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
}

/// `struct virtio_gpu_mem_entry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemEntry {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
}

impl MemEntry {
    /// Decodes one 16-byte entry.
    pub fn parse(b: &[u8; MEM_ENTRY_SIZE]) -> Self {
        let mut c = LeCursor::new(b);
        Self {
            addr: c.u64(),
            length: c.u32(),
        }
    }

    /// Encodes one entry (tests and harnesses).
    pub fn encode(&self) -> [u8; MEM_ENTRY_SIZE] {
        let mut w = LeWriter::with_capacity(MEM_ENTRY_SIZE);
        w.u64(self.addr).u32(self.length).u32(0);
        let mut out = [0u8; MEM_ENTRY_SIZE];
        out.copy_from_slice(&w.finish());
        out
    }
}

/// `RESOURCE_CREATE_2D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceCreate2d {
    /// Resource id (non-zero).
    pub resource_id: u32,
    /// Pixel format.
    pub format: Format,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// `SET_SCANOUT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetScanout {
    /// Visible rectangle of the resource.
    pub r: Rect,
    /// Scanout index.
    pub scanout_id: u32,
    /// Resource (0 disables the scanout).
    pub resource_id: u32,
}

/// `RESOURCE_FLUSH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceFlush {
    /// Damaged rectangle.
    pub r: Rect,
    /// Resource.
    pub resource_id: u32,
}

/// `TRANSFER_TO_HOST_2D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferToHost2d {
    /// Rectangle to copy.
    pub r: Rect,
    /// Byte offset of the rectangle's first pixel in the backing.
    pub offset: u64,
    /// Resource.
    pub resource_id: u32,
}

/// `RESOURCE_ATTACH_BACKING` (entries follow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachBacking {
    /// Resource.
    pub resource_id: u32,
    /// Number of `MemEntry` that follow.
    pub nr_entries: u32,
}

/// `GET_CAPSET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetCapset {
    /// Capset id (not index).
    pub capset_id: u32,
    /// Version.
    pub capset_version: u32,
}

/// `RESOURCE_CREATE_BLOB` (entries follow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceCreateBlob {
    /// Resource id.
    pub resource_id: u32,
    /// Where the memory lives.
    pub blob_mem: BlobMem,
    /// `BLOB_FLAG_USE_*`.
    pub blob_flags: u32,
    /// Number of `MemEntry` that follow.
    pub nr_entries: u32,
    /// Context-local object id (HOST3D*).
    pub blob_id: u64,
    /// Size in bytes.
    pub size: u64,
}

/// `SET_SCANOUT_BLOB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetScanoutBlob {
    /// Visible rectangle.
    pub r: Rect,
    /// Scanout index.
    pub scanout_id: u32,
    /// Blob resource (0 disables).
    pub resource_id: u32,
    /// Surface width.
    pub width: u32,
    /// Surface height.
    pub height: u32,
    /// Pixel format (raw: validated only when the scanout is enabled).
    pub format: u32,
    /// Plane strides (plane 0 used).
    pub strides: [u32; 4],
    /// Plane offsets (plane 0 used).
    pub offsets: [u32; 4],
}

/// `CTX_CREATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxCreate {
    /// Length of `debug_name` used.
    pub nlen: u32,
    /// `context_init`: low 8 bits are the capset id (0 = device chooses).
    pub context_init: u32,
    /// Debug name bytes.
    pub debug_name: [u8; 64],
}

impl CtxCreate {
    /// The capset id the guest asked for (0 = default).
    pub fn capset_id(&self) -> u32 {
        self.context_init & 0xff
    }

    /// The debug name, lossily decoded and bounded by `nlen` and 64.
    pub fn name(&self) -> String {
        let n = usize::try_from(self.nlen).unwrap_or(64).min(64);
        String::from_utf8_lossy(self.debug_name.get(..n).unwrap_or_default()).into_owned()
    }
}

/// `RESOURCE_CREATE_3D` (only validated: no virgl capset is offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceCreate3d {
    /// Resource id.
    pub resource_id: u32,
}

/// `TRANSFER_TO_HOST_3D` / `TRANSFER_FROM_HOST_3D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer3d {
    /// Resource id.
    pub resource_id: u32,
}

/// `SUBMIT_3D` (stream follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submit3d {
    /// Stream size in bytes.
    pub size: u32,
    /// crosvm's `num_in_fences` (UAPI padding); in-fence ids follow the stream header.
    pub num_in_fences: u32,
}

/// `RESOURCE_MAP_BLOB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapBlob {
    /// Resource id.
    pub resource_id: u32,
    /// Offset inside the host-visible region.
    pub offset: u64,
}

/// `UPDATE_CURSOR` / `MOVE_CURSOR` (`virtio_gpu_update_cursor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateCursor {
    /// Scanout.
    pub scanout_id: u32,
    /// Position x.
    pub x: u32,
    /// Position y.
    pub y: u32,
    /// Cursor image resource (0 hides).
    pub resource_id: u32,
    /// Hot spot x.
    pub hot_x: u32,
    /// Hot spot y.
    pub hot_y: u32,
}

/// A decoded request body (the fixed part after the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Request {
    GetDisplayInfo,
    ResourceCreate2d(ResourceCreate2d),
    ResourceUnref { resource_id: u32 },
    SetScanout(SetScanout),
    ResourceFlush(ResourceFlush),
    TransferToHost2d(TransferToHost2d),
    AttachBacking(AttachBacking),
    DetachBacking { resource_id: u32 },
    GetCapsetInfo { capset_index: u32 },
    GetCapset(GetCapset),
    GetEdid { scanout: u32 },
    AssignUuid { resource_id: u32 },
    CreateBlob(ResourceCreateBlob),
    SetScanoutBlob(SetScanoutBlob),
    CtxCreate(CtxCreate),
    CtxDestroy,
    CtxAttachResource { resource_id: u32 },
    CtxDetachResource { resource_id: u32 },
    ResourceCreate3d(ResourceCreate3d),
    TransferToHost3d(Transfer3d),
    TransferFromHost3d(Transfer3d),
    Submit3d(Submit3d),
    MapBlob(MapBlob),
    UnmapBlob { resource_id: u32 },
    UpdateCursor(UpdateCursor),
    MoveCursor(UpdateCursor),
}

/// Size of the fixed body (after the header) of each command.
pub fn fixed_size(cmd: CommandType) -> usize {
    use CommandType as C;
    match cmd {
        C::GetDisplayInfo | C::CtxDestroy => 0,
        C::ResourceUnref
        | C::ResourceDetachBacking
        | C::GetCapsetInfo
        | C::GetCapset
        | C::GetEdid
        | C::ResourceAssignUuid
        | C::CtxAttachResource
        | C::CtxDetachResource
        | C::ResourceAttachBacking
        | C::Submit3d
        | C::ResourceUnmapBlob => 8,
        C::ResourceCreate2d | C::ResourceMapBlob => 16,
        C::SetScanout | C::ResourceFlush => 24,
        C::TransferToHost2d | C::ResourceCreateBlob | C::UpdateCursor | C::MoveCursor => 32,
        C::ResourceCreate3d | C::TransferToHost3d | C::TransferFromHost3d => 48,
        C::SetScanoutBlob | C::CtxCreate => 72,
    }
}

fn bad(field: &'static str, value: impl Into<u64>) -> ProtocolError {
    ProtocolError::BadField {
        field,
        value: value.into(),
    }
}

impl Request {
    /// Decodes the fixed body of `cmd`. `body` must hold at least `fixed_size(cmd)`
    /// bytes; the handler reads exactly that many from the chain first.
    pub fn decode(cmd: CommandType, body: &[u8]) -> Result<Request> {
        let need = fixed_size(cmd);
        if body.len() < need {
            return Err(ProtocolError::Short {
                cmd,
                need,
                have: body.len(),
            });
        }
        let mut c = LeCursor::new(body);
        use CommandType as C;
        Ok(match cmd {
            C::GetDisplayInfo => Request::GetDisplayInfo,
            C::ResourceCreate2d => {
                let resource_id = c.u32();
                let raw = c.u32();
                let format = Format::from_u32(raw).ok_or_else(|| bad("format", raw))?;
                Request::ResourceCreate2d(ResourceCreate2d {
                    resource_id,
                    format,
                    width: c.u32(),
                    height: c.u32(),
                })
            }
            C::ResourceUnref => Request::ResourceUnref {
                resource_id: c.u32(),
            },
            C::SetScanout => Request::SetScanout(SetScanout {
                r: Rect::parse(&mut c),
                scanout_id: c.u32(),
                resource_id: c.u32(),
            }),
            C::ResourceFlush => Request::ResourceFlush(ResourceFlush {
                r: Rect::parse(&mut c),
                resource_id: c.u32(),
            }),
            C::TransferToHost2d => Request::TransferToHost2d(TransferToHost2d {
                r: Rect::parse(&mut c),
                offset: c.u64(),
                resource_id: c.u32(),
            }),
            C::ResourceAttachBacking => Request::AttachBacking(AttachBacking {
                resource_id: c.u32(),
                nr_entries: c.u32(),
            }),
            C::ResourceDetachBacking => Request::DetachBacking {
                resource_id: c.u32(),
            },
            C::GetCapsetInfo => Request::GetCapsetInfo {
                capset_index: c.u32(),
            },
            C::GetCapset => Request::GetCapset(GetCapset {
                capset_id: c.u32(),
                capset_version: c.u32(),
            }),
            C::GetEdid => Request::GetEdid { scanout: c.u32() },
            C::ResourceAssignUuid => Request::AssignUuid {
                resource_id: c.u32(),
            },
            C::ResourceCreateBlob => {
                let resource_id = c.u32();
                let raw_mem = c.u32();
                let blob_mem =
                    BlobMem::from_u32(raw_mem).ok_or_else(|| bad("blob_mem", raw_mem))?;
                let blob_flags = c.u32();
                if blob_flags & !BLOB_FLAGS_ALL != 0 {
                    return Err(bad("blob_flags", blob_flags));
                }
                Request::CreateBlob(ResourceCreateBlob {
                    resource_id,
                    blob_mem,
                    blob_flags,
                    nr_entries: c.u32(),
                    blob_id: c.u64(),
                    size: c.u64(),
                })
            }
            C::SetScanoutBlob => {
                let r = Rect::parse(&mut c);
                let scanout_id = c.u32();
                let resource_id = c.u32();
                let width = c.u32();
                let height = c.u32();
                let format = c.u32();
                c.skip(4);
                let strides = [c.u32(), c.u32(), c.u32(), c.u32()];
                let offsets = [c.u32(), c.u32(), c.u32(), c.u32()];
                Request::SetScanoutBlob(SetScanoutBlob {
                    r,
                    scanout_id,
                    resource_id,
                    width,
                    height,
                    format,
                    strides,
                    offsets,
                })
            }
            C::CtxCreate => Request::CtxCreate(CtxCreate {
                nlen: c.u32(),
                context_init: c.u32(),
                debug_name: c.bytes::<64>(),
            }),
            C::CtxDestroy => Request::CtxDestroy,
            C::CtxAttachResource => Request::CtxAttachResource {
                resource_id: c.u32(),
            },
            C::CtxDetachResource => Request::CtxDetachResource {
                resource_id: c.u32(),
            },
            C::ResourceCreate3d => Request::ResourceCreate3d(ResourceCreate3d {
                resource_id: c.u32(),
            }),
            C::TransferToHost3d | C::TransferFromHost3d => {
                c.skip(24 + 8);
                let t = Transfer3d {
                    resource_id: c.u32(),
                };
                if cmd == C::TransferToHost3d {
                    Request::TransferToHost3d(t)
                } else {
                    Request::TransferFromHost3d(t)
                }
            }
            C::Submit3d => Request::Submit3d(Submit3d {
                size: c.u32(),
                num_in_fences: c.u32(),
            }),
            C::ResourceMapBlob => {
                let resource_id = c.u32();
                c.skip(4);
                Request::MapBlob(MapBlob {
                    resource_id,
                    offset: c.u64(),
                })
            }
            C::ResourceUnmapBlob => Request::UnmapBlob {
                resource_id: c.u32(),
            },
            C::UpdateCursor | C::MoveCursor => {
                let scanout_id = c.u32();
                let x = c.u32();
                let y = c.u32();
                c.skip(4);
                let u = UpdateCursor {
                    scanout_id,
                    x,
                    y,
                    resource_id: c.u32(),
                    hot_x: c.u32(),
                    hot_y: c.u32(),
                };
                if cmd == C::UpdateCursor {
                    Request::UpdateCursor(u)
                } else {
                    Request::MoveCursor(u)
                }
            }
        })
    }
}

/// One entry of `virtio_gpu_resp_display_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisplayOne {
    /// Preferred mode.
    pub r: Rect,
    /// Whether the output is connected.
    pub enabled: bool,
}

/// A response body (the header is built from the request header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `OK_NODATA`.
    OkNodata,
    /// `OK_DISPLAY_INFO` (up to 16 scanouts; the rest are zero).
    DisplayInfo(Vec<DisplayOne>),
    /// `OK_CAPSET_INFO`.
    CapsetInfo {
        /// Capset id.
        capset_id: u32,
        /// Highest version.
        max_version: u32,
        /// Largest size.
        max_size: u32,
    },
    /// `OK_CAPSET` (the capset bytes).
    Capset(Vec<u8>),
    /// `OK_EDID` (at most [`EDID_BLOB_SIZE`] bytes).
    Edid(Vec<u8>),
    /// `OK_RESOURCE_UUID`.
    ResourceUuid([u8; 16]),
    /// `OK_MAP_INFO`.
    MapInfo(u32),
    /// Any `ERR_*`.
    Err(RespType),
}

impl Response {
    /// The response type.
    pub fn resp_type(&self) -> RespType {
        match self {
            Response::OkNodata => RespType::OkNodata,
            Response::DisplayInfo(_) => RespType::OkDisplayInfo,
            Response::CapsetInfo { .. } => RespType::OkCapsetInfo,
            Response::Capset(_) => RespType::OkCapset,
            Response::Edid(_) => RespType::OkEdid,
            Response::ResourceUuid(_) => RespType::OkResourceUuid,
            Response::MapInfo(_) => RespType::OkMapInfo,
            Response::Err(e) => *e,
        }
    }

    /// Encodes header + body.
    pub fn encode(&self, req: &CtrlHdr) -> Vec<u8> {
        let mut w = LeWriter::with_capacity(CTRL_HDR_SIZE + 40);
        w.bytes(&req.response(self.resp_type()).encode());
        match self {
            Response::OkNodata | Response::Err(_) => {}
            Response::DisplayInfo(modes) => {
                for i in 0..MAX_SCANOUTS {
                    let m = modes.get(i).copied().unwrap_or_default();
                    m.r.encode(&mut w);
                    w.u32(u32::from(m.enabled)).u32(0);
                }
            }
            Response::CapsetInfo {
                capset_id,
                max_version,
                max_size,
            } => {
                w.u32(*capset_id).u32(*max_version).u32(*max_size).u32(0);
            }
            Response::Capset(bytes) => {
                w.bytes(bytes);
            }
            Response::Edid(edid) => {
                let len = edid.len().min(EDID_BLOB_SIZE);
                w.u32(u32::try_from(len).unwrap_or(0)).u32(0);
                let mut blob = [0u8; EDID_BLOB_SIZE];
                blob[..len].copy_from_slice(&edid[..len]);
                w.bytes(&blob);
            }
            Response::ResourceUuid(uuid) => {
                w.bytes(uuid);
            }
            Response::MapInfo(info) => {
                w.u32(*info).u32(0);
            }
        }
        w.finish()
    }
}

/// Encoders for requests, for tests and harnesses playing the guest driver.
pub mod encode {
    use super::*;

    /// A header.
    pub fn hdr(cmd: CommandType, flags: u32, fence_id: u64, ctx_id: u32, ring_idx: u8) -> Vec<u8> {
        CtrlHdr {
            type_: cmd as u32,
            flags,
            fence_id,
            ctx_id,
            ring_idx,
        }
        .encode()
        .to_vec()
    }

    /// A header with no fence and context 0, followed by `le32` words.
    pub fn simple(cmd: CommandType, words: &[u32]) -> Vec<u8> {
        let mut w = LeWriter::default();
        w.bytes(&hdr(cmd, 0, 0, 0, 0));
        for v in words {
            w.u32(*v);
        }
        w.finish()
    }

    /// Appends `le32` words.
    pub fn words(out: &mut Vec<u8>, words: &[u32]) {
        for v in words {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_fenced_response_copies_fence_fields() {
        let h = CtrlHdr {
            type_: CommandType::Submit3d as u32,
            flags: FLAG_FENCE | FLAG_INFO_RING_IDX,
            fence_id: 0x1122_3344_5566,
            ctx_id: 7,
            ring_idx: 3,
        };
        assert_eq!(CtrlHdr::parse(&h.encode()), h);
        let r = h.response(RespType::OkNodata);
        assert_eq!(r.type_, 0x1100);
        assert_eq!(
            (r.flags, r.fence_id, r.ctx_id, r.ring_idx),
            (3, 0x1122_3344_5566, 7, 3)
        );
    }

    #[test]
    fn unfenced_response_has_clean_header() {
        let h = CtrlHdr {
            type_: 0x100,
            flags: 0,
            fence_id: 99,
            ctx_id: 5,
            ring_idx: 1,
        };
        assert_eq!(
            h.response(RespType::OkNodata),
            CtrlHdr {
                type_: 0x1100,
                ..CtrlHdr::default()
            }
        );
    }

    #[test]
    fn every_command_decodes_from_its_fixed_size_and_rejects_one_less() {
        let all = (0x100..=0x10d).chain(0x200..=0x209).chain(0x300..=0x301);
        for raw in all {
            let cmd = CommandType::from_u32(raw).expect("known");
            let mut body = vec![0u8; fixed_size(cmd)];
            // Valid enum fields where the command has them.
            if cmd == CommandType::ResourceCreate2d {
                body[4] = 2;
            }
            if cmd == CommandType::ResourceCreateBlob {
                body[4] = 1;
            }
            assert!(Request::decode(cmd, &body).is_ok(), "{cmd:?}");
            if let Some(short) = body.len().checked_sub(1) {
                assert!(
                    matches!(
                        Request::decode(cmd, &body[..short]),
                        Err(ProtocolError::Short { .. })
                    ),
                    "{cmd:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_format_blob_mem_and_flags_are_rejected() {
        let mut b = vec![0u8; 16];
        b[4] = 5;
        assert_eq!(
            Request::decode(CommandType::ResourceCreate2d, &b),
            Err(bad("format", 5u32))
        );
        let mut blob = vec![0u8; 32];
        blob[4] = 4;
        assert_eq!(
            Request::decode(CommandType::ResourceCreateBlob, &blob),
            Err(bad("blob_mem", 4u32))
        );
        blob[4] = 2;
        blob[8] = 8;
        assert_eq!(
            Request::decode(CommandType::ResourceCreateBlob, &blob),
            Err(bad("blob_flags", 8u32))
        );
    }

    #[test]
    fn transfer_2d_fields_land_at_uapi_offsets() {
        let mut b = Vec::new();
        encode::words(&mut b, &[1, 2, 3, 4]);
        b.extend_from_slice(&0x10_0000_0000u64.to_le_bytes());
        encode::words(&mut b, &[9, 0]);
        assert_eq!(
            Request::decode(CommandType::TransferToHost2d, &b),
            Ok(Request::TransferToHost2d(TransferToHost2d {
                r: Rect {
                    x: 1,
                    y: 2,
                    width: 3,
                    height: 4
                },
                offset: 0x10_0000_0000,
                resource_id: 9
            }))
        );
    }

    #[test]
    fn rect_fit_check_is_overflow_safe() {
        let r = Rect {
            x: u32::MAX,
            y: 0,
            width: 2,
            height: 1,
        };
        assert!(!r.fits_in(u32::MAX, 10));
        let ok = Rect {
            x: 10,
            y: 10,
            width: 10,
            height: 10,
        };
        assert!(ok.fits_in(20, 20));
        assert!(!ok.fits_in(19, 20));
    }

    #[test]
    fn response_sizes_match_uapi() {
        let h = CtrlHdr::default();
        assert_eq!(Response::DisplayInfo(vec![]).encode(&h).len(), 408);
        assert_eq!(Response::Edid(vec![1; 128]).encode(&h).len(), 24 + 8 + 1024);
        assert_eq!(
            Response::CapsetInfo {
                capset_id: 4,
                max_version: 1,
                max_size: 160
            }
            .encode(&h)
            .len(),
            40
        );
        assert_eq!(Response::ResourceUuid([0; 16]).encode(&h).len(), 40);
        assert_eq!(Response::MapInfo(1).encode(&h).len(), 32);
        assert_eq!(Response::Err(RespType::ErrUnspec).encode(&h).len(), 24);
    }

    #[test]
    fn cursor_fields_land_at_uapi_offsets() {
        let mut b = Vec::new();
        encode::words(&mut b, &[0, 10, 20, 0, 5, 1, 2, 0]);
        assert_eq!(
            Request::decode(CommandType::MoveCursor, &b),
            Ok(Request::MoveCursor(UpdateCursor {
                scanout_id: 0,
                x: 10,
                y: 20,
                resource_id: 5,
                hot_x: 1,
                hot_y: 2
            }))
        );
    }

    #[test]
    fn ctx_create_name_is_bounded() {
        let c = CtxCreate {
            nlen: 1000,
            context_init: 0x104,
            debug_name: [b'a'; 64],
        };
        assert_eq!(c.name().len(), 64);
        assert_eq!(c.capset_id(), 4);
    }
}
