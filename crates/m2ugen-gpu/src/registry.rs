//! The kernel registry: every WGSL file of `shaders/`, and how a kernel's source is put together.
//!
//! A kernel's module is `prelude(elem) + common.wgsl + its libraries + its file`. The prelude
//! sets `alias elem = f32;` or `enable f16; alias elem = f16;`, so each file is written once and
//! compiled for both element types. Matmul and matvec take their weight access from a library
//! (`weight_float`, `weight_q8`, `weight_q4`), so the same product serves every weight type.

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
    /// `elementwise.wgsl`: add, sub, mul, silu, gelu, elu, tanh_op, relu.
    Elementwise,
    /// `norm.wgsl`: rms_norm, layer_norm.
    Norm,
    /// `softmax.wgsl`: softmax.
    Softmax,
    /// `rope.wgsl`: rope.
    Rope,
    /// `embed.wgsl`: embedding.
    Embed,
    /// `attention.wgsl`: prefill, decode_split, decode_combine, kv_write.
    Attention,
    /// `matmul.wgsl` with a weight library: matmul.
    Matmul(WeightKind),
    /// `matvec.wgsl` with a weight library: matvec.
    Matvec(WeightKind),
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
    pub const ALL: [Kernel; 12] = [
        Kernel::Elementwise,
        Kernel::Norm,
        Kernel::Softmax,
        Kernel::Rope,
        Kernel::Embed,
        Kernel::Attention,
        Kernel::Matmul(WeightKind::Dense),
        Kernel::Matmul(WeightKind::Q8),
        Kernel::Matmul(WeightKind::Q4),
        Kernel::Matvec(WeightKind::Dense),
        Kernel::Matvec(WeightKind::Q8),
        Kernel::Matvec(WeightKind::Q4),
    ];

    /// The kernel's own file: `(name, source)`.
    pub fn file(self) -> (&'static str, &'static str) {
        match self {
            Kernel::Elementwise => shader!("elementwise.wgsl"),
            Kernel::Norm => shader!("norm.wgsl"),
            Kernel::Softmax => shader!("softmax.wgsl"),
            Kernel::Rope => shader!("rope.wgsl"),
            Kernel::Embed => shader!("embed.wgsl"),
            Kernel::Attention => shader!("attention.wgsl"),
            Kernel::Matmul(_) => shader!("matmul.wgsl"),
            Kernel::Matvec(_) => shader!("matvec.wgsl"),
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
            Kernel::Elementwise | Kernel::Rope | Kernel::Embed | Kernel::Attention => vec![COMMON],
            Kernel::Norm | Kernel::Softmax => vec![COMMON, REDUCE],
            Kernel::Matmul(w) | Kernel::Matvec(w) => [vec![COMMON, PRODUCT], weight(w)].concat(),
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

    /// The full WGSL module for element type `elem`.
    pub fn source(self, elem: Elem) -> String {
        let mut s = String::from(elem.prelude());
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

    #[test]
    fn every_kernel_validates_with_naga() {
        let mut checked = 0;
        for kernel in Kernel::ALL {
            for elem in Elem::ALL {
                let src = kernel.source(elem);
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{} ({elem:?}) does not parse:\n{}", kernel.name(), e.emit_to_string(&src)));
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
        assert!(src.starts_with("enable f16;\nalias elem = f16;"));
        for part in ["common.wgsl", "product.wgsl", "weight_scales.wgsl", "weight_q4.wgsl", "matvec.wgsl"] {
            assert!(src.contains(&format!("// ---- {part} ----")), "missing {part}");
        }
        assert_eq!(Kernel::Matmul(WeightKind::Q8).name(), "matmul_q8");
        assert_eq!(Kernel::Norm.name(), "norm");
    }
}
