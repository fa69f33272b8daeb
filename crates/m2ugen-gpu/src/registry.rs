//! The kernel registry: every WGSL file of `shaders/`, and how a kernel's module is put together.
//!
//! A kernel's module is `prelude(elem) + sizes + common.wgsl + its libraries + its file`. The
//! prelude sets `alias elem = f32;` or `enable f16; alias elem = f16;`, so each file is written
//! once and compiled for both element types. The sizes are WGSL constants written from
//! [`sizes`], the one definition of every workgroup size, tile shape and capacity: launchers
//! compute their grids from the same Rust constants, and no WGSL file repeats a number. Matmul and
//! matvec take their weight access from a library (`weight_float`, `weight_q8`, `weight_q4`), so
//! the same product serves every weight type. What varies per launch inside one pipeline (the
//! matvec's batch) is a WGSL `override`, set from [`PipelineKey`]'s variant.
//!
//! [`PipelineKey`]: crate::PipelineKey

/// Workgroup sizes, tiles and capacities: written into every kernel's module as WGSL constants
/// of the same names, and read by the launchers.
pub mod sizes {
    /// Invocations of the one-dimensional kernels: one element each (element-wise, rows, copies,
    /// RoPE, convolutions' direct forms, LSTM) or one row per workgroup (norms, softmax,
    /// sampling).
    pub const GROUP: u32 = 256;
    /// Weight rows per matvec workgroup.
    pub const MATVEC_ROWS: u32 = 8;
    /// Invocations per weight row in matvec.
    pub const MATVEC_LANES: u32 = 32;
    /// Input rows one matvec workgroup takes: up to this many rows a product is a matvec (the
    /// weights read once for all of them), above it the tiled matmul.
    pub const MAX_BATCH: u32 = 8;
    /// Side of the output tile of matmul and the tiled convolution.
    pub const TILE: u32 = 64;
    /// Reduction step of a tile.
    pub const TILE_K: u32 = 16;
    /// Invocations along each side of a tile (each computes a square block of the tile).
    pub const TILE_THREADS: u32 = 16;
    /// Largest attention head.
    pub const MAX_HEAD: u32 = 128;
    /// Keys staged per step of the prefill attention.
    pub const KEY_TILE: u32 = 16;
    /// Query rows per prefill attention workgroup.
    pub const PREFILL_ROWS: u32 = 16;
    /// Invocations sharing one query row's keys in prefill attention.
    pub const PREFILL_LANES: u32 = 4;
    /// Keys one decode attention workgroup covers.
    pub const DECODE_SPLIT: u32 = 256;
    /// Invocations of a decode attention workgroup.
    pub const DECODE_GROUP: u32 = 64;
    /// Rows one pooling launch sums (each invocation walks them all).
    pub const MAX_POOL_ROWS: u32 = 16384;

    /// Every size by its WGSL name.
    pub const ALL: [(&str, u32); 14] = [
        ("GROUP", GROUP),
        ("MATVEC_ROWS", MATVEC_ROWS),
        ("MATVEC_LANES", MATVEC_LANES),
        ("MAX_BATCH", MAX_BATCH),
        ("TILE", TILE),
        ("TILE_K", TILE_K),
        ("TILE_THREADS", TILE_THREADS),
        ("MAX_HEAD", MAX_HEAD),
        ("KEY_TILE", KEY_TILE),
        ("PREFILL_ROWS", PREFILL_ROWS),
        ("PREFILL_LANES", PREFILL_LANES),
        ("DECODE_SPLIT", DECODE_SPLIT),
        ("DECODE_GROUP", DECODE_GROUP),
        ("MAX_POOL_ROWS", MAX_POOL_ROWS),
    ];
}

/// Element type a kernel computes with and stores activations in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    /// f32 everywhere (the fallback without `shader-f16`).
    F32,
    /// f16 storage, f32 accumulation; needs `shader-f16`.
    F16,
}

impl Elem {
    /// Both element types.
    pub const ALL: [Elem; 2] = [Elem::F32, Elem::F16];

    /// The prelude that defines `elem`.
    pub const fn prelude(self) -> &'static str {
        match self {
            Elem::F32 => "alias elem = f32;\n",
            Elem::F16 => "enable f16;\nalias elem = f16;\n",
        }
    }

    /// The tensor dtype this element type stores.
    pub const fn dtype(self) -> m2ugen_core::DType {
        match self {
            Elem::F32 => m2ugen_core::DType::F32,
            Elem::F16 => m2ugen_core::DType::F16,
        }
    }
}

/// How a matmul or matvec reads its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightKind {
    /// Plain `elem` values.
    Dense,
    /// 8-bit group-wise, f16 scales.
    Q8,
    /// 4-bit group-wise, f16 scales.
    Q4,
}

impl WeightKind {
    /// Every weight kind.
    pub const ALL: [WeightKind; 3] = [WeightKind::Dense, WeightKind::Q8, WeightKind::Q4];

    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            WeightKind::Dense => "dense",
            WeightKind::Q8 => "q8",
            WeightKind::Q4 => "q4",
        }
    }
}

/// One kernel family: a WGSL file and the libraries it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `elementwise.wgsl`: add, sub, mul, silu, sigmoid, gelu, gelu_tanh, elu, tanh_op, relu,
    /// leaky_relu, swiglu.
    Elementwise,
    /// `norm.wgsl`: rms_norm, layer_norm, group_norm, l2_norm, batch_norm.
    Norm,
    /// `pool.wgsl`: sum_rows (and, with a center, sum_squared_deviations).
    Pool,
    /// `softmax.wgsl`: softmax.
    Softmax,
    /// `rope.wgsl`: rope, rope_kv.
    Rope,
    /// `rows.wgsl`: gather_rows, scatter_rows.
    Rows,
    /// `copy.wgsl`: copy_strided, fill.
    Copy,
    /// `attention.wgsl`: prefill, decode_split, decode_combine.
    Attention,
    /// `matmul.wgsl` with a weight library: matmul.
    Matmul(WeightKind),
    /// `matvec.wgsl` with a weight library: matvec.
    Matvec(WeightKind),
    /// `conv.wgsl`: conv1d_tiled, conv1d_direct, conv_transpose1d, conv2d_tiled, conv2d_direct.
    Conv,
    /// `lstm.wgsl`: lstm_cell.
    Lstm,
    /// `sample.wgsl`: argmax, sample.
    Sample,
}

macro_rules! shader {
    ($file:literal) => {
        ($file, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/", $file)))
    };
}

const COMMON: (&str, &str) = shader!("common.wgsl");
const REDUCE: (&str, &str) = shader!("reduce.wgsl");
const PRODUCT: (&str, &str) = shader!("product.wgsl");
const SCALES: (&str, &str) = shader!("weight_scales.wgsl");

impl Kernel {
    /// Every kernel, each weight kind included: the list the naga test walks.
    pub const ALL: [Kernel; 17] = [
        Kernel::Elementwise,
        Kernel::Norm,
        Kernel::Pool,
        Kernel::Softmax,
        Kernel::Rope,
        Kernel::Rows,
        Kernel::Copy,
        Kernel::Attention,
        Kernel::Matmul(WeightKind::Dense),
        Kernel::Matmul(WeightKind::Q8),
        Kernel::Matmul(WeightKind::Q4),
        Kernel::Matvec(WeightKind::Dense),
        Kernel::Matvec(WeightKind::Q8),
        Kernel::Matvec(WeightKind::Q4),
        Kernel::Conv,
        Kernel::Lstm,
        Kernel::Sample,
    ];

    /// The kernel's own file: `(name, source)`.
    pub fn file(self) -> (&'static str, &'static str) {
        match self {
            Kernel::Elementwise => shader!("elementwise.wgsl"),
            Kernel::Norm => shader!("norm.wgsl"),
            Kernel::Pool => shader!("pool.wgsl"),
            Kernel::Softmax => shader!("softmax.wgsl"),
            Kernel::Rope => shader!("rope.wgsl"),
            Kernel::Rows => shader!("rows.wgsl"),
            Kernel::Copy => shader!("copy.wgsl"),
            Kernel::Attention => shader!("attention.wgsl"),
            Kernel::Matmul(_) => shader!("matmul.wgsl"),
            Kernel::Matvec(_) => shader!("matvec.wgsl"),
            Kernel::Conv => shader!("conv.wgsl"),
            Kernel::Lstm => shader!("lstm.wgsl"),
            Kernel::Sample => shader!("sample.wgsl"),
        }
    }

    /// Shared files placed before the kernel's own, in order.
    pub fn libraries(self) -> Vec<(&'static str, &'static str)> {
        let weight = |w: WeightKind| match w {
            WeightKind::Dense => vec![shader!("weight_float.wgsl")],
            WeightKind::Q8 => vec![SCALES, shader!("weight_q8.wgsl")],
            WeightKind::Q4 => vec![SCALES, shader!("weight_q4.wgsl")],
        };
        match self {
            Kernel::Norm | Kernel::Softmax | Kernel::Sample => vec![COMMON, REDUCE],
            Kernel::Matmul(w) | Kernel::Matvec(w) => [vec![COMMON, PRODUCT], weight(w)].concat(),
            _ => vec![COMMON],
        }
    }

    /// Names of the kernel's pipeline constants (WGSL `override`s), in the order of
    /// [`crate::PipelineKey::variant`].
    pub fn variant_names(self) -> &'static [&'static str] {
        match self {
            Kernel::Matvec(_) => &["BATCH"],
            _ => &[],
        }
    }

    /// A readable name such as `matvec_q4`.
    pub fn name(self) -> String {
        match self {
            Kernel::Matmul(w) => format!("matmul_{}", w.name()),
            Kernel::Matvec(w) => format!("matvec_{}", w.name()),
            other => other.file().0.trim_end_matches(".wgsl").to_string(),
        }
    }

    /// The WGSL constants every module starts with, from [`sizes`].
    pub fn size_constants() -> String {
        sizes::ALL.iter().map(|(name, value)| format!("const {name}: u32 = {value}u;\n")).collect()
    }

    /// The full WGSL module for element type `elem`.
    pub fn source(self, elem: Elem) -> String {
        let mut s = String::from(elem.prelude());
        s.push_str(&Self::size_constants());
        for (name, src) in self.libraries().into_iter().chain([self.file()]) {
            s.push_str("\n// ---- ");
            s.push_str(name);
            s.push_str(" ----\n");
            s.push_str(src);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{params_file, Field, FieldType};

    fn parse(kernel: Kernel, elem: Elem) -> (String, naga::Module) {
        let src = kernel.source(elem);
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{} ({elem:?}) does not parse:\n{}", kernel.name(), e.emit_to_string(&src)));
        (src, module)
    }

    #[test]
    fn every_kernel_validates_with_naga() {
        let mut checked = 0;
        for kernel in Kernel::ALL {
            for elem in Elem::ALL {
                let (src, module) = parse(kernel, elem);
                // f16 storage in u32 words (unpack2x16float) is core WebGPU; f16 arithmetic is
                // granted to the f16 variants only, proving the f32 fallback needs no shader-f16.
                let mut caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
                if elem == Elem::F16 {
                    caps |= naga::valid::Capabilities::SHADER_FLOAT16;
                }
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{} ({elem:?}) does not validate:\n{}", kernel.name(), e.emit_to_string(&src)));
                checked += 1;
            }
        }
        // Fails if the registry ever shrinks to nothing (naga's own example test can pass empty).
        assert_eq!(checked, Kernel::ALL.len() * 2);
    }

    #[test]
    fn sources_start_with_the_prelude_and_hold_their_libraries() {
        let src = Kernel::Matvec(WeightKind::Q4).source(Elem::F16);
        assert!(src.starts_with("enable f16;\nalias elem = f16;\nconst GROUP: u32 = 256u;"));
        for part in ["common.wgsl", "product.wgsl", "weight_scales.wgsl", "weight_q4.wgsl", "matvec.wgsl"] {
            assert!(src.contains(&format!("// ---- {part} ----")), "missing {part}");
        }
        assert_eq!(Kernel::Matmul(WeightKind::Q8).name(), "matmul_q8");
        assert_eq!(Kernel::Norm.name(), "norm");
    }

    /// Each kernel's `struct Params` (the uniform at binding 0) has exactly the fields, types and
    /// offsets of its Rust struct in `params.rs`.
    #[test]
    fn parameter_structs_match_their_wgsl() {
        for kernel in Kernel::ALL {
            let (_, module) = parse(kernel, Elem::F32);
            let file = params_file(kernel);
            let fields: &[Field] = crate::params::ALL.iter().find(|(f, _)| *f == file).unwrap_or_else(|| panic!("no Rust parameter struct for {file}")).1;
            let uniform = module
                .global_variables
                .iter()
                .map(|(_, v)| v)
                .find(|v| v.space == naga::AddressSpace::Uniform && v.binding.as_ref().is_some_and(|b| b.group == 0 && b.binding == 0))
                .unwrap_or_else(|| panic!("{}: no uniform at binding 0", kernel.name()));
            let naga::TypeInner::Struct { members, .. } = &module.types[uniform.ty].inner else {
                panic!("{}: the parameters are not a struct", kernel.name());
            };
            let wgsl: Vec<(String, FieldType, usize)> = members
                .iter()
                .map(|m| {
                    let ty = match &module.types[m.ty].inner {
                        naga::TypeInner::Scalar(s) if s.kind == naga::ScalarKind::Uint && s.width == 4 => FieldType::U32,
                        naga::TypeInner::Scalar(s) if s.kind == naga::ScalarKind::Float && s.width == 4 => FieldType::F32,
                        naga::TypeInner::Vector { size: naga::VectorSize::Quad, scalar } if scalar.kind == naga::ScalarKind::Uint => FieldType::U32x4,
                        other => panic!("{}: field {:?} has a type the parameter structs do not use: {other:?}", kernel.name(), m.name),
                    };
                    (m.name.clone().unwrap_or_default(), ty, m.offset as usize)
                })
                .collect();
            let rust: Vec<(String, FieldType, usize)> = fields.iter().map(|f| (f.name.to_string(), f.ty, f.offset)).collect();
            assert_eq!(rust, wgsl, "{}: the Rust parameters differ from {file}'s struct Params", kernel.name());
        }
    }

    /// No file writes a number into a workgroup size or redefines a size: they come from `sizes`.
    #[test]
    fn workgroup_sizes_come_from_the_size_table() {
        for kernel in Kernel::ALL {
            for (name, src) in kernel.libraries().into_iter().chain([kernel.file()]) {
                for line in src.lines().filter(|l| l.contains("@workgroup_size(")) {
                    let args = line.split("@workgroup_size(").nth(1).and_then(|a| a.split(')').next()).unwrap_or("");
                    assert!(!args.chars().any(|c| c.is_ascii_digit()), "{name}: a number in `{line}`");
                }
                for (size, _) in sizes::ALL {
                    assert!(!src.contains(&format!("const {size}")), "{name} defines {size} itself");
                }
            }
        }
    }

    /// The variant names the launchers set are the overrides the WGSL declares, none defaulted.
    #[test]
    fn pipeline_constants_match_the_overrides() {
        for kernel in Kernel::ALL {
            let (_, module) = parse(kernel, Elem::F32);
            let mut declared: Vec<String> = module.overrides.iter().map(|(_, o)| {
                assert!(o.init.is_none(), "{}: override {:?} has a default; its value comes from the launcher", kernel.name(), o.name);
                o.name.clone().unwrap_or_default()
            }).collect();
            declared.sort();
            let mut expected: Vec<String> = kernel.variant_names().iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(declared, expected, "{}", kernel.name());
        }
    }
}
