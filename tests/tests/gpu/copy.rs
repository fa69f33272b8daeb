//! Moving data: the one strided copy as permute, slice, concatenate and pad; fill; rows gathered
//! and scattered by index.

use m2ugen_core::cpu;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::{Recorder, StridedView};
use m2ugen_tests::{assert_close, ensure, gpu_test, round_to, Tol};

/// Row-major strides of `shape`, padded at the front to four.
fn strides(shape: &[usize]) -> [usize; 4] {
    let mut s = [0; 4];
    let mut step = 1;
    for d in (0..shape.len()).rev() {
        s[4 - shape.len() + d] = step;
        step *= shape[d];
    }
    s
}

gpu_test!(async fn permute_slice_concat_and_pad(gpu, elem) {
    let mut rng = Rng::new(51);
    let dt = elem.dtype();
    let exact = Tol { atol: 0.0, rtol: 0.0 };
    // A 4-D permute (batch, heads, time, width) -> (batch, time, heads, width), odd sizes.
    let shape = [2, 3, 5, 7];
    let x = round_to(elem, &rng.vec(shape.iter().product(), -1.0, 1.0));
    let tx = gpu.upload("x", &shape, dt, &x)?;
    // A 3-D tensor to slice, concatenate and pad along its middle dimension.
    let s3 = [2, 9, 5];
    let y = round_to(elem, &rng.vec(s3.iter().product(), -1.0, 1.0));
    let ty = gpu.upload("y", &s3, dt, &y)?;
    let z = round_to(elem, &rng.vec(2 * 4 * 5, -1.0, 1.0));
    let tz = gpu.upload("z", &[2, 4, 5], dt, &z)?;
    let mut rec = Recorder::new(gpu);
    let permuted = rec.permute(&tx, &[0, 2, 1, 3])?;
    let sliced = rec.slice(&ty, 1, 3..8)?;
    let joined = rec.concat(&[&ty, &tz], 1)?;
    let padded = rec.pad(&ty, 1, 2, 1, -0.5)?;
    let last = rec.concat(&[&ty, &ty], 2)?;
    rec.submit()?;

    let p_shape = [2, 5, 3, 7];
    let mut expected = vec![0f32; x.len()];
    let src = strides(&shape);
    cpu::copy_strided(&x, 0, &[src[0], src[2], src[1], src[3]], &mut expected, 0, &strides(&p_shape), &p_shape);
    ensure!(permuted.shape() == p_shape, "permute shape {:?}", permuted.shape());
    assert_close("permute", &gpu.read(&permuted).await?, &expected, exact, &p_shape)?;
    let at = |v: &[f32], b: usize, t: usize, c: usize, len: usize| v[(b * len + t) * 5 + c];
    let want: Vec<f32> = (0..2).flat_map(|b| (3..8).flat_map(move |t| (0..5).map(move |c| (b, t, c)))).map(|(b, t, c)| at(&y, b, t, c, 9)).collect();
    assert_close("slice", &gpu.read(&sliced).await?, &want, exact, &[2, 5, 5])?;
    let want: Vec<f32> = (0..2).flat_map(|b| (0..13).flat_map(move |t| (0..5).map(move |c| (b, t, c)))).map(|(b, t, c)| if t < 9 { at(&y, b, t, c, 9) } else { at(&z, b, t - 9, c, 4) }).collect();
    assert_close("concat", &gpu.read(&joined).await?, &want, exact, &[2, 13, 5])?;
    let want: Vec<f32> = (0..2).flat_map(|b| (0..12).flat_map(move |t| (0..5).map(move |c| (b, t, c)))).map(|(b, t, c)| if (2..11).contains(&t) { at(&y, b, t - 2, c, 9) } else { -0.5 }).collect();
    assert_close("pad", &gpu.read(&padded).await?, &want, exact, &[2, 12, 5])?;
    let want: Vec<f32> = y.chunks(5).flat_map(|r| r.iter().chain(r).copied().collect::<Vec<_>>()).collect();
    assert_close("concat along the last dimension", &gpu.read(&last).await?, &want, exact, &[2, 9, 10])?;
    Ok(())
});

gpu_test!(async fn strided_copies_stay_inside_their_tensors(gpu, elem) {
    let dt = elem.dtype();
    let a = gpu.upload("a", &[4, 3], dt, &[1.0; 12])?;
    let b = gpu.zeros("b", &[2, 3], dt)?;
    let mut rec = Recorder::new(gpu);
    let e = rec.copy_strided(&a, StridedView { offset: 0, strides: [0, 0, 3, 1] }, &b, StridedView { offset: 0, strides: [0, 0, 3, 1] }, &[4, 3]).unwrap_err().to_string();
    ensure!(e.starts_with("copy_strided: dst has shape [2, 3], expected at least 12 elements"), "{e}");
    let e = rec.slice(&a, 0, 2..5).unwrap_err().to_string();
    ensure!(e.starts_with("slice: x has shape [4, 3], expected dimension 0 holding 2..5"), "{e}");
    let e = rec.permute(&a, &[0, 0]).unwrap_err().to_string();
    ensure!(e.contains("a permutation of 0..2"), "{e}");
    rec.fill(&b, 2.5)?;
    rec.submit()?;
    assert_close("fill", &gpu.read(&b).await?, &[2.5; 6], Tol { atol: 0.0, rtol: 0.0 }, &[2, 3])?;
    Ok(())
});
