//! The `.safetensors` layout (8-byte little-endian header length, JSON header, data), parsed as
//! untrusted input. Used by the converter (reading files by byte range) and by the parity tests
//! (reading the fixtures' expected outputs in memory, in the browser too).

use crate::{Error, Result};
use half::{bf16, f16};
use std::collections::BTreeMap;
use std::ops::Range;

/// Largest header accepted (real ones are well under 1 MiB).
pub const MAX_HEADER: u64 = 100 << 20;

/// One tensor of a safetensors file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Element type as the file names it (`F32`, `F16`, `BF16`, `F64`, `I64`, …).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte range in the file.
    pub range: Range<u64>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// The header's length from the first 8 bytes, checked against the file's length.
pub fn header_len(first8: [u8; 8], file_len: u64, file: &str) -> Result<u64> {
    let len = u64::from_le_bytes(first8);
    if len > MAX_HEADER || 8 + len > file_len {
        return Err(Error::Format { file: format!("{file}"), problem: format!("header length {len} does not fit the file ({file_len} bytes)") });
    }
    Ok(len)
}

/// Parses the JSON header (the bytes after the length) of a file of `file_len` bytes: every
/// tensor with its range in the file, each checked to lie inside it.
pub fn parse_header(header: &[u8], file_len: u64, file: &str) -> Result<BTreeMap<String, Entry>> {
    let mut raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| Error::Format { file: format!("{file}: header"), problem: format!("not valid JSON ({e})") })?;
    raw.remove("__metadata__");
    let data_start = 8 + header.len() as u64;
    let mut entries = BTreeMap::new();
    for (key, value) in raw {
        let e: RawEntry = serde_json::from_value(value).map_err(|e| Error::Format { file: format!("{file}: header entry '{key}'"), problem: e.to_string() })?;
        let [a, b] = e.data_offsets;
        let (start, end) = (data_start.saturating_add(a), data_start.saturating_add(b));
        if a > b || end > file_len {
            return Err(Error::Format { file: format!("{file}: '{key}'"), problem: format!("spans bytes {a}..{b}, outside the file") });
        }
        entries.insert(key, Entry { dtype: e.dtype, shape: e.shape, range: start..end });
    }
    Ok(entries)
}

/// A whole safetensors file held in memory.
pub struct InMemory {
    file: String,
    bytes: Vec<u8>,
    entries: BTreeMap<String, Entry>,
}

impl InMemory {
    /// Parses `bytes`, named `file` in messages.
    pub fn parse(file: &str, bytes: Vec<u8>) -> Result<Self> {
        let first8: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| Error::Format { file: file.into(), problem: "too short for a safetensors header".into() })?;
        let len = header_len(first8, bytes.len() as u64, file)?;
        let entries = parse_header(&bytes[8..8 + len as usize], bytes.len() as u64, file)?;
        Ok(InMemory { file: file.into(), bytes, entries })
    }

    /// The entry of `name`.
    pub fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::MissingTensor(format!("{}: {name}", self.file)))
    }

    /// A float tensor as f32 values, with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let e = self.entry(name)?;
        let bytes = &self.bytes[e.range.start as usize..e.range.end as usize];
        let values = floats(bytes, &e.dtype).ok_or_else(|| Error::Format { file: format!("{}: '{name}'", self.file), problem: format!("is {}, expected a float tensor", e.dtype) })?;
        Ok((values, e.shape.clone()))
    }

    /// An integer tensor (`I64`, `I32`, `U8`) as i64 values, with its shape.
    pub fn i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let e = self.entry(name)?;
        let bytes = &self.bytes[e.range.start as usize..e.range.end as usize];
        let values = match e.dtype.as_str() {
            "I64" => bytes.chunks_exact(8).map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).collect(),
            "I32" => bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect(),
            "U8" => bytes.iter().map(|&b| b as i64).collect(),
            other => return Err(Error::Format { file: format!("{}: '{name}'", self.file), problem: format!("is {other}, expected I64, I32 or U8") }),
        };
        Ok((values, e.shape.clone()))
    }
}

/// Float bytes of a safetensors element type (little-endian) as f32; `None` for other types.
pub fn floats(bytes: &[u8], dtype: &str) -> Option<Vec<f32>> {
    Some(match dtype {
        "F32" => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        "F16" => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        "BF16" => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        "F64" => bytes.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32).collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_floats_and_integers_and_refuses_ranges_outside_the_file() {
        let data: Vec<u8> = [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat().into_iter().chain(7i64.to_le_bytes()).collect();
        let bytes = file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"n":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"__metadata__":{}}"#, &data);
        let st = InMemory::parse("t.safetensors", bytes).unwrap();
        assert_eq!(st.f32("a").unwrap(), (vec![1.5, -2.0], vec![2]));
        assert_eq!(st.i64("n").unwrap(), (vec![7], vec![1]));
        assert!(st.f32("n").is_err());
        assert_eq!(st.f32("zz").unwrap_err(), Error::MissingTensor("t.safetensors: zz".into()));
        let bad = file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}}"#, &data);
        let e = InMemory::parse("t.safetensors", bad).err().unwrap();
        assert!(e.to_string().contains("outside the file"), "{e}");
        assert!(InMemory::parse("t.safetensors", vec![1, 2]).is_err());
        assert!(InMemory::parse("t.safetensors", u64::MAX.to_le_bytes().to_vec()).is_err());
    }
}
