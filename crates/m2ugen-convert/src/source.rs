//! Where tensors come from: a PyTorch checkpoint or a safetensors file, read one tensor at a
//! time so that a model is never held in memory whole.

use anyhow::{bail, Context, Result};
use pytorch_reader::{DType as TorchType, PytorchReader};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A file of named tensors.
pub trait TensorSource {
    /// Every tensor name.
    fn keys(&self) -> Vec<String>;
    /// Whether `name` is there.
    fn has(&self, name: &str) -> bool;
    /// Shape of `name`.
    fn shape(&self, name: &str) -> Result<Vec<usize>>;
    /// The values of float tensor `name` as f32.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>>;
}

use m2ugen_weights::safetensors::{self as st, floats};

/// A PyTorch checkpoint's state dict under `model`, read safely (pickle data only, nothing run).
pub struct Checkpoint {
    path: String,
    reader: PytorchReader,
}

impl Checkpoint {
    /// Opens `path`, failing with its name when it is not a usable checkpoint.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        let reader = PytorchReader::with_top_level_key(path, "model")
            .map_err(|e| anyhow::anyhow!("{}: not a readable PyTorch checkpoint with a 'model' state dict ({e})", path.display()))?;
        Ok(Checkpoint { path: path.display().to_string(), reader })
    }

    fn get(&self, name: &str) -> Result<&pytorch_reader::Tensor> {
        self.reader.get(name).with_context(|| format!("{}: no tensor '{name}'", self.path))
    }
}

impl TensorSource for Checkpoint {
    fn keys(&self) -> Vec<String> {
        self.reader.keys()
    }

    fn has(&self, name: &str) -> bool {
        self.reader.get(name).is_some()
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.get(name)?.shape().to_vec())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        torch_floats(self.get(name)?, &self.path, name)
    }
}

/// The values of a float tensor of a PyTorch file as f32 (`file` names it in errors).
pub fn torch_floats(t: &pytorch_reader::Tensor, file: &str, name: &str) -> Result<Vec<f32>> {
    let bytes = t.read().with_context(|| format!("{file}: reading '{name}'"))?;
    let dtype = match t.dtype() {
        TorchType::F32 => "F32",
        TorchType::F16 => "F16",
        TorchType::BF16 => "BF16",
        TorchType::F64 => "F64",
        other => bail!("{file}: '{name}' is {other:?}, expected a float tensor"),
    };
    // pytorch-reader gives native-endian bytes; every supported host is little-endian.
    floats(&bytes, dtype).with_context(|| format!("{file}: '{name}' is not a float tensor"))
}

/// A `.safetensors` file: its header is parsed up front, each tensor read by its byte range.
pub struct Safetensors {
    path: PathBuf,
    entries: BTreeMap<String, st::Entry>,
}

impl Safetensors {
    /// Opens and checks the header of `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let mut f = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
        let file_len = f.metadata().with_context(|| format!("{name}: cannot stat"))?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len).with_context(|| format!("{name}: too short for a safetensors header"))?;
        let header_len = st::header_len(len, file_len, &name)?;
        let mut header = vec![0u8; header_len as usize];
        f.read_exact(&mut header).with_context(|| format!("{name}: reading the header"))?;
        let entries = st::parse_header(&header, file_len, &name)?;
        Ok(Safetensors { path: path.to_path_buf(), entries })
    }

    fn entry(&self, name: &str) -> Result<&st::Entry> {
        self.entries.get(name).with_context(|| format!("{}: no tensor '{name}'", self.path.display()))
    }
}

impl TensorSource for Safetensors {
    fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.shape.clone())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        let at = self.path.display();
        let mut f = std::fs::File::open(&self.path).with_context(|| format!("{at}: cannot open"))?;
        f.seek(SeekFrom::Start(e.range.start)).with_context(|| format!("{at}: seeking to '{name}'"))?;
        let mut bytes = vec![0u8; (e.range.end - e.range.start) as usize];
        f.read_exact(&mut bytes).with_context(|| format!("{at}: reading '{name}'"))?;
        let values = floats(&bytes, &e.dtype).with_context(|| format!("{at}: '{name}' is {}, expected a float tensor", e.dtype))?;
        let numel: usize = e.shape.iter().product();
        if values.len() != numel {
            bail!("{at}: '{name}' holds {} values but its shape {:?} needs {numel}", values.len(), e.shape);
        }
        Ok(values)
    }
}
