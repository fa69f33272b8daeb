//! The command line as a user meets it: exit codes, one-line messages, a benchmark that runs.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn m2ugen(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_m2ugen"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// stderr without the loader's own chatter (Mesa prints XDG_RUNTIME_DIR warnings on some hosts).
fn our_stderr(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("m2ugen:")).map(str::to_string).collect()
}

#[test]
fn bad_arguments_give_one_line_and_exit_code_2() {
    for args in [&["bench", "--bogus"][..], &["bench", "matvec", "--k", "0"], &["bench", "--weights", "q3"], &["frobnicate"]] {
        let out = m2ugen(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let lines = our_stderr(&out);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].ends_with("(see m2ugen --help)"), "{}", lines[0]);
    }
    let out = m2ugen(&["bench", "--weights", "q3"], &[]);
    assert!(our_stderr(&out)[0].contains("'q3'"), "the bad value is named");
}

#[test]
fn no_gpu_driver_is_reported_in_one_line_not_a_hang() {
    let out = m2ugen(&["info"], &[("VK_ICD_FILENAMES", "/nonexistent.json"), ("VK_DRIVER_FILES", "/nonexistent.json")]);
    assert_eq!(out.status.code(), Some(1));
    let lines = our_stderr(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("m2ugen: no GPU adapter was found"), "{}", lines[0]);
    assert!(lines[0].contains("mesa-vulkan-drivers"), "the fix is named: {}", lines[0]);
}

#[test]
fn bench_reports_throughput_and_the_copy_ratio() {
    let out = m2ugen(&["bench", "matvec", "--weights", "q4", "--k", "100", "--n", "33", "--iters", "2"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("matvec_q4")).expect("a matvec_q4 line");
    for part in ["m=1 k=100 n=33", "GB/s", "GFLOP/s", "x copy"] {
        assert!(line.contains(part), "missing {part}: {line}");
    }
}

#[test]
fn serve_names_a_directory_without_a_model_and_a_busy_address() {
    let out = m2ugen(&["serve", "/nonexistent-model-dir"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(our_stderr(&out), vec!["m2ugen: serve: /nonexistent-model-dir: no manifest.json here (convert a model into it first)".to_string()]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("m2ugen-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), "{}").unwrap();
    let out = m2ugen(&["serve", dir.to_str().unwrap(), "--addr", &addr], &[]);
    assert_eq!(out.status.code(), Some(2));
    let lines = our_stderr(&out);
    assert!(lines.len() == 1 && lines[0].starts_with(&format!("m2ugen: serve: {addr}: ")), "{lines:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_llm_compares_with_full_recompute_and_the_bandwidth_bound() {
    let out = m2ugen(&["bench-llm", "--geometry", "tiny", "--layers", "2", "--prompt", "5", "--tokens", "3", "--batch", "1,2"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for part in [
        "-- batch 1",
        "-- batch 2",
        "prefill: 5 tokens x 2 sequences",
        "decode (KV cache): 3 steps",
        "decode by full recompute",
        "KV cache vs recompute (batch 1): ",
        "% of the ",
        " GB/s a buffer copy reaches here (bound: ",
        "batch 2 step / batch 1 step: ",
        "peak activation memory in use",
    ] {
        assert!(stdout.contains(part), "missing '{part}':\n{stdout}");
    }
    // Warm decoding steps create nothing, read back one token id per sequence, and make nine
    // launches per layer (two layers) and four outside them (embedding, norm, head, choice).
    let step = stdout.lines().find(|l| l.starts_with("per decode step")).expect("a per-step line");
    for part in ["(2 layers, after two): 22 dispatches", "0.0 buffers created (0.00 MiB)", "0.0 bind groups created", " 4 bytes read back"] {
        assert!(step.contains(part), "missing '{part}': {step}");
    }
}

/// The number just before `unit` in `line`.
fn number_before(line: &str, unit: &str) -> f64 {
    let at = line.find(unit).unwrap_or_else(|| panic!("no '{unit}' in: {line}"));
    let word = line[..at].split_whitespace().last().unwrap_or_else(|| panic!("nothing before '{unit}' in: {line}"));
    word.parse().unwrap_or_else(|_| panic!("'{word}' before '{unit}' is not a number: {line}"))
}

#[test]
fn bench_audioldm2_gives_steps_per_second_and_the_real_time_factor_against_a_matmul() {
    let out = m2ugen(&["bench-audioldm2", "--tiny", "--steps", "1", "--seconds", "0.1"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = |start: &str| stdout.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line starting '{start}':\n{stdout}")).to_string();
    assert!(line("geometry: ").contains("tiny"), "{stdout}");
    assert!(line("track: ").contains("2 rows (negative and positive prompt"), "{stdout}");
    let positive = |what: &str, v: f64| assert!(v.is_finite() && v > 0.0, "{what} = {v}:\n{stdout}");
    let baseline = line("baseline: dense matmul ");
    positive("matmul GFLOP/s", number_before(&baseline, "GFLOP/s"));
    let unet = line("UNet: 1 steps timed");
    for unit in ["ms per step", "steps/s", "GFLOP per call", "GFLOP/s", "of the matmul's"] {
        positive(unit, number_before(&unet, unit));
    }
    let decode = line("VAE + vocoder: ");
    for unit in ["ms for the", "GFLOP,", "GFLOP/s", "of the matmul's"] {
        positive(unit, number_before(&decode, unit));
    }
    let rtf = line("200 steps + decoding (extrapolated");
    positive("compute seconds", number_before(&rtf, "s of compute"));
    positive("audio per second", number_before(&rtf, "s of audio per second"));
    let factor: f64 = rtf.rsplit("real-time factor ").next().and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).expect("a real-time factor");
    positive("real-time factor", factor);
    assert!(!stdout.contains("non-finite"), "{stdout}");
}
