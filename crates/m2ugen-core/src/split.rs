//! Splitting a tensor across storage bindings.
//!
//! WebGPU caps one storage binding (`maxStorageBufferBindingSize`, 128 MiB by default). A tensor
//! is viewed as `rows x row_elems` (all leading dimensions are rows); when it is larger than the
//! cap it is cut into chunks of whole rows, each its own buffer. Kernels that work row by row
//! (element-wise, norms, softmax, RoPE, the weight side of matmul and matvec, embedding tables)
//! run once per chunk.

use crate::{Error, Result};
use std::ops::Range;

/// Cuts `rows` rows of `row_bytes` bytes each into ranges of at most `limit` bytes.
///
/// Every chunk but the last holds a multiple of 4 bytes (buffer copies move whole words), so a
/// chunk may need a few rows together (two f16 rows of odd length); a run of rows that cannot
/// fit `limit` is an error naming `what`. An empty tensor gives one empty range so that it still
/// has a buffer.
pub fn row_chunks(what: &str, rows: usize, row_bytes: u64, limit: u64) -> Result<Vec<Range<usize>>> {
    if rows == 0 || row_bytes == 0 {
        return Ok(vec![0..rows]);
    }
    // Rows per step so that a step is whole 4-byte words.
    let step = (4 / gcd(row_bytes, 4)).min(rows as u64);
    if row_bytes * step > limit {
        return Err(Error::RowTooLarge { what: what.to_string(), row_bytes, limit });
    }
    let per = ((limit / row_bytes) / step * step) as usize;
    Ok((0..rows).step_by(per).map(|start| start..(start + per).min(rows)).collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_within_the_limit() {
        let c = row_chunks("t", 10, 12, 40).unwrap();
        assert_eq!(c, vec![0..3, 3..6, 6..9, 9..10]);
        assert_eq!(row_chunks("t", 5, 8, 1 << 20).unwrap(), vec![0..5]);
        // The real case: an f16 7B embedding table over a 128 MiB binding.
        let c = row_chunks("tok_embeddings", 32008, 4096 * 2, 128 << 20).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], 0..16384);
        assert_eq!(c[1], 16384..32008);
    }

    #[test]
    fn chunks_of_odd_f16_rows_start_on_whole_words() {
        // 3 f16 values = 6 bytes a row: chunks take rows in pairs (12 bytes).
        let c = row_chunks("t", 7, 6, 20).unwrap();
        assert_eq!(c, vec![0..2, 2..4, 4..6, 6..7]);
        assert!(c.iter().all(|r| (r.start * 6) % 4 == 0));
    }

    #[test]
    fn a_row_over_the_limit_is_named() {
        let e = row_chunks("output.weight", 3, 100, 64).unwrap_err();
        assert_eq!(e.to_string(), "output.weight: one row is 100 bytes, larger than the 64-byte storage binding limit");
    }
}
