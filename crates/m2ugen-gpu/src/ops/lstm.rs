use super::{elem_of, expect_dtype, u32_of};
use crate::params::LstmParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::{sizes::GROUP, Kernel};
use crate::{Error, GpuTensor, Recorder, Result};

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write), (4, Write), (5, Write)];

impl Recorder<'_> {
    /// One LSTM step `t` for a batch of sequences (PyTorch's gate order i, f, g, o): `gx`
    /// `(batch * steps, 4 hidden)` holds every step's input product (`W_ih x + b_ih`, row
    /// `b * steps + t`), `gh` `(batch, 4 hidden)` the recurrent product of the previous `h`
    /// (`W_hh h + b_hh`). Updates the cell state `c` `(batch, hidden)` in place and writes the new
    /// hidden state to `h` `(batch, hidden)` and to row `b * steps + t` of `seq`.
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_cell(&mut self, gx: &GpuTensor, gh: &GpuTensor, c: &GpuTensor, h: &GpuTensor, seq: &GpuTensor, steps: usize, t: usize) -> Result<()> {
        let op = "lstm_cell";
        let elem = elem_of(self.gpu, op, "gx", gx)?;
        let (batch, hidden) = (c.rows(), c.cols());
        for (what, x, rows, cols) in [("gx", gx, batch * steps, 4 * hidden), ("gh", gh, batch, 4 * hidden), ("h", h, batch, hidden), ("seq", seq, batch * steps, hidden)] {
            expect_dtype(op, what, x, c.dtype())?;
            if x.rows() != rows || x.cols() != cols {
                return Err(Error::Shape { op, what, expected: format!("({rows}, {cols})"), got: x.shape().to_vec() });
            }
        }
        if t >= steps {
            return Err(Error::Shape { op, what: "t", expected: format!("a step below {steps}"), got: vec![t] });
        }
        let params = LstmParams { batch: u32_of(op, "c", batch)?, hidden: u32_of(op, "c", hidden)?, steps: u32_of(op, "steps", steps)?, t: u32_of(op, "t", t)? };
        let buffers = vec![
            (1, gx.single(self.gpu, op, "gx")?),
            (2, gh.single(self.gpu, op, "gh")?),
            (3, c.single(self.gpu, op, "c")?),
            (4, h.single(self.gpu, op, "h")?),
            (5, seq.single(self.gpu, op, "seq")?),
        ];
        self.push(Dispatch { kernel: Kernel::Lstm, entry: op, elem, layout: LAYOUT, variant: [0; 2], params: &params, buffers, workgroups: grid((batch * hidden).div_ceil(GROUP as usize)) });
        Ok(())
    }
}
