//! Kernel parameters: one `#[repr(C)]` plain-data struct per WGSL file, laid out as that file's
//! `struct Params` (checked member by member against the WGSL through naga in this module's
//! tests, so a mismatch fails the tests, not the GPU).
//!
//! Each op's parameters go into one slot of [`PARAM_SLOT`] bytes of the recording's uniform
//! buffer, bound with a dynamic offset.

/// Bytes of one op's parameter slot (and of the uniform binding); a struct must fit it.
pub const PARAM_SLOT: usize = 256;

/// The WGSL type of a parameter field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `u32`.
    U32,
    /// `f32`.
    F32,
    /// `vec4<u32>`.
    U32x4,
}

/// A parameter field: name, type and byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The member's name, as in the WGSL struct.
    pub name: &'static str,
    /// Its type.
    pub ty: FieldType,
    /// Its byte offset.
    pub offset: usize,
}

/// A Rust type that is one of [`FieldType`].
pub trait ParamField {
    /// Its WGSL type.
    const TYPE: FieldType;
}

impl ParamField for u32 {
    const TYPE: FieldType = FieldType::U32;
}

impl ParamField for f32 {
    const TYPE: FieldType = FieldType::F32;
}

impl ParamField for [u32; 4] {
    const TYPE: FieldType = FieldType::U32x4;
}

/// The parameters of one WGSL file's kernels.
pub trait KernelParams: bytemuck::Pod {
    /// The file whose `struct Params` this is.
    const FILE: &'static str;
    /// Its fields in order.
    const FIELDS: &'static [Field];
}

macro_rules! params {
    ($(#[$m:meta])* $name:ident for $file:literal { $($(#[$fm:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl KernelParams for $name {
            const FILE: &'static str = $file;
            const FIELDS: &'static [Field] = &[$(Field { name: stringify!($field), ty: <$ty as ParamField>::TYPE, offset: std::mem::offset_of!($name, $field) }),*];
        }

        const _: () = assert!(std::mem::size_of::<$name>() <= PARAM_SLOT);
    };
}

params! {
    /// `elementwise.wgsl`.
    ElementwiseParams for "elementwise.wgsl" {
        /// Elements of this chunk.
        n: u32,
        /// Length of the repeated second input (1 for one-input ops).
        b_len: u32,
        /// leaky_relu: the factor on negative values.
        slope: f32,
    }
}

params! {
    /// `norm.wgsl`.
    NormParams for "norm.wgsl" {
        /// Rows of this chunk (group_norm: of every batch item).
        rows: u32,
        /// Columns (channels).
        cols: u32,
        /// Added to the variance.
        eps: f32,
        /// group_norm: channel groups.
        groups: u32,
        /// group_norm: batch items.
        batch: u32,
    }
}

params! {
    /// `pool.wgsl`.
    PoolParams for "pool.wgsl" {
        /// Batch items.
        batch: u32,
        /// Rows of each item pooled.
        rows: u32,
        /// Columns.
        cols: u32,
        /// Whether each row has a weight.
        has_weight: u32,
        /// Whether a bias is added.
        has_bias: u32,
        /// Whether squared deviations from a center row are summed.
        has_center: u32,
        /// Factor on the sum.
        scale: f32,
    }
}

params! {
    /// `softmax.wgsl`.
    SoftmaxParams for "softmax.wgsl" {
        /// Rows of this chunk.
        rows: u32,
        /// Columns.
        cols: u32,
    }
}

params! {
    /// `rope.wgsl`.
    RopeParams for "rope.wgsl" {
        /// rope: rows of this chunk (tokens x heads); rope_kv: tokens.
        rows: u32,
        /// Query heads (rope: the heads of x).
        heads: u32,
        /// rope_kv: key/value heads.
        kv_heads: u32,
        /// Head width.
        head_dim: u32,
        /// rope: the global row of this chunk's first row.
        row0: u32,
        /// Positions in the table.
        positions: u32,
    }
}

params! {
    /// `rows.wgsl`.
    RowsParams for "rows.wgsl" {
        /// Rows moved.
        n: u32,
        /// Values per row.
        cols: u32,
        /// gather: first table row of this chunk.
        row0: u32,
        /// gather: table rows in this chunk.
        rows: u32,
        /// gather: 1 on the first chunk's launch (zero rows whose index is in no chunk).
        write_all: u32,
    }
}

params! {
    /// `copy.wgsl`.
    CopyParams for "copy.wgsl" {
        /// Elements.
        n: u32,
        /// First source element.
        src_offset: u32,
        /// First destination element.
        dst_offset: u32,
        /// fill: the value.
        value: f32,
        /// Extents, outermost first (unused leading dimensions 1).
        shape: [u32; 4],
        /// Source strides in elements.
        src_strides: [u32; 4],
        /// Destination strides in elements.
        dst_strides: [u32; 4],
    }
}

params! {
    /// `attention.wgsl` (the meaning of each field is documented there).
    AttentionParams for "attention.wgsl" {
        /// Query rows (per batch item in prefill).
        q_rows: u32,
        /// Query heads.
        heads: u32,
        /// Key/value heads.
        kv_heads: u32,
        /// Head width.
        head_dim: u32,
        /// Keys per batch item (prefill).
        kv_len: u32,
        /// First key row (prefill); rows per cache slot (decode).
        kv_row0: u32,
        /// 1 for causal attention.
        causal: u32,
        /// Position of the first query (causal).
        pos0: u32,
        /// Score scale.
        scale: f32,
        /// Query row stride.
        q_stride: u32,
        /// Query column offset.
        q_off: u32,
        /// Key/value row stride.
        kv_stride: u32,
        /// Key column offset.
        k_off: u32,
        /// Value column offset.
        v_off: u32,
        /// Decode splits per (row, head).
        splits: u32,
        /// Key rows between batch items (prefill).
        kv_batch: u32,
        /// 1 when a bias is bound.
        has_bias: u32,
        /// Bias stride per batch item (decode: per query row).
        bias_b: u32,
        /// Bias stride per head.
        bias_h: u32,
        /// Bias stride per query row.
        bias_q: u32,
        /// 1 when an addend is bound.
        has_addend: u32,
        /// First addend row.
        add_row0: u32,
        /// Addend rows per output row (0 broadcasts one row).
        add_step: u32,
    }
}

params! {
    /// `product.wgsl` (matmul and matvec).
    ProductParams for "product.wgsl" {
        /// Input rows.
        m: u32,
        /// Output features (the whole weight's rows).
        n: u32,
        /// Input features.
        k: u32,
        /// First weight row of this chunk.
        n0: u32,
        /// Weight rows of this chunk.
        rows: u32,
        /// 1 when a bias is bound.
        has_bias: u32,
        /// 1 when a residual is bound.
        has_residual: u32,
    }
}

params! {
    /// `conv.wgsl`. The 1-D fields are conv2d's width axis; the height axis has fields of its own.
    ConvParams for "conv.wgsl" {
        /// Batch items.
        batch: u32,
        /// Input steps per item (conv2d: input width).
        len: u32,
        /// Input channels.
        c_in: u32,
        /// Output steps per item (conv2d: output width).
        out_len: u32,
        /// Output channels.
        c_out: u32,
        /// Taps (conv2d: kernel width).
        kernel: u32,
        /// Stride (conv2d: along width).
        stride: u32,
        /// Dilation (conv2d: along width).
        dilation: u32,
        /// Groups.
        groups: u32,
        /// Padding before the input (conv1d; conv2d: left of each row).
        pad_left: u32,
        /// 0 zeros, 1 reflect, 2 replicate.
        pad_mode: u32,
        /// 1 when a bias is bound.
        has_bias: u32,
        /// Output steps dropped at the start (conv_transpose1d).
        trim_left: u32,
        /// First output row of this chunk.
        out_row0: u32,
        /// Output rows of this chunk.
        out_rows: u32,
        /// conv2d: input height.
        height: u32,
        /// conv2d: output height.
        out_height: u32,
        /// conv2d: kernel height.
        kernel_h: u32,
        /// conv2d: stride along height.
        stride_h: u32,
        /// conv2d: dilation along height.
        dilation_h: u32,
        /// conv2d: padding above (and below) the image.
        pad_top: u32,
    }
}

params! {
    /// `lstm.wgsl`.
    LstmParams for "lstm.wgsl" {
        /// Sequences.
        batch: u32,
        /// Hidden units.
        hidden: u32,
        /// Steps per sequence.
        steps: u32,
        /// This step.
        t: u32,
    }
}

params! {
    /// `sample.wgsl`.
    SampleParams for "sample.wgsl" {
        /// Rows of logits.
        rows: u32,
        /// Vocabulary.
        vocab: u32,
        /// Keep this many most likely tokens (0: all).
        top_k: u32,
        /// Keep the most likely up to this probability (1: all).
        top_p: f32,
        /// 1 / temperature.
        inv_temperature: f32,
    }
}

/// Every parameter struct: `(file, fields)`, for the layout test.
pub const ALL: [(&str, &[Field]); 12] = [
    (ElementwiseParams::FILE, ElementwiseParams::FIELDS),
    (NormParams::FILE, NormParams::FIELDS),
    (PoolParams::FILE, PoolParams::FIELDS),
    (SoftmaxParams::FILE, SoftmaxParams::FIELDS),
    (RopeParams::FILE, RopeParams::FIELDS),
    (RowsParams::FILE, RowsParams::FIELDS),
    (CopyParams::FILE, CopyParams::FIELDS),
    (AttentionParams::FILE, AttentionParams::FIELDS),
    (ProductParams::FILE, ProductParams::FIELDS),
    (ConvParams::FILE, ConvParams::FIELDS),
    (LstmParams::FILE, LstmParams::FIELDS),
    (SampleParams::FILE, SampleParams::FIELDS),
];

/// The file whose `struct Params` a kernel's module uses (`product.wgsl` for the products).
pub fn params_file(kernel: crate::registry::Kernel) -> &'static str {
    use crate::registry::Kernel;
    match kernel {
        Kernel::Matmul(_) | Kernel::Matvec(_) => "product.wgsl",
        other => other.file().0,
    }
}
