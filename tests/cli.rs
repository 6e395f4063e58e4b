//! The `wgloss` tool: `eval` reproduces the golden cases from .npy files on both backends;
//! bad input exits non-zero with one line naming the problem; `check` and `bench` run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{gpu, load_golden, Tensor};
use wgloss::compare::Tolerance;

fn wgloss() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgloss"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn write_npy(path: &Path, t: &Tensor) {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let file = std::fs::File::create(path).unwrap();
    if t.dtype == "i32" {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(file)
            .begin_nd()
            .unwrap();
        w.extend(t.data.iter().map(|&v| v as i32)).unwrap();
        w.finish().unwrap();
    } else {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(file)
            .begin_nd()
            .unwrap();
        w.extend(t.data.iter().map(|&v| v as f32)).unwrap();
        w.finish().unwrap();
    }
}

fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "wgloss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs every golden case of `file` through `wgloss eval --backend <backend>`; returns the
/// failures.
fn eval_golden(file: &str, backend: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let golden = load_golden(file);
    let mut failures = Vec::new();
    for case in &golden.cases {
        let mut cmd = wgloss();
        cmd.args(["eval", &case.loss, "--backend", backend, "--json"]);
        for (name, tensor) in &case.inputs {
            let path: PathBuf = dir.path().join(format!("{name}.npy"));
            write_npy(&path, tensor);
            cmd.arg(format!("--{}", name.replace('_', "-"))).arg(&path);
        }
        for (key, value) in &case.options {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if key == "reduction" {
                cmd.args(["--reduction", &text]);
            } else {
                cmd.args(["--set", &format!("{key}={text}")]);
            }
        }
        let grad_path = dir.path().join("grad.npy");
        cmd.arg("--grad-out").arg(&grad_path);
        let out = cmd.output().unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{}: {}",
                case.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let json = stdout_json(&out);
        assert_eq!(json["backend"], backend);
        let loss: Vec<f32> = match &json["loss"] {
            serde_json::Value::Array(v) => v.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            v => vec![v.as_f64().unwrap() as f32],
        };
        let expected = &case.expected["loss"];
        let shape: Vec<usize> = json["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        if shape != expected.shape {
            failures.push(format!(
                "{}: loss shape {shape:?}, expected {:?}",
                case.name, expected.shape
            ));
        }
        let (grad_shape, grad) = read_npy(&grad_path);
        let want_shape: Vec<u64> = case.expected["grad_input"]
            .shape
            .iter()
            .map(|&d| d as u64)
            .collect();
        if grad_shape != want_shape {
            failures.push(format!("{}: grad shape {grad_shape:?}", case.name));
        }
        for (what, actual, expected) in [
            ("loss", &loss, expected),
            ("grad", &grad, &case.expected["grad_input"]),
        ] {
            if let Err(m) =
                Tolerance::against_reference(&expected.data).check(actual, &expected.data)
            {
                failures.push(format!("{} {what}: {m}", case.name));
            }
        }
    }
    failures
}

/// Writes `t` for the tool: `.npy` (f32, i32, f16) or, for bf16 (which .npy lacks),
/// `.safetensors`; returns the path.
fn write_operand(dir: &Path, name: &str, t: &Tensor) -> PathBuf {
    use npyz::WriterBuilder;
    match t.dtype.as_str() {
        "bf16" => {
            let path = dir.join(format!("{name}.safetensors"));
            let values: Vec<half::bf16> = t.data.iter().map(|&v| half::bf16::from_f64(v)).collect();
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::BF16,
                t.shape.clone(),
                &bytes,
            )
            .unwrap();
            std::fs::write(&path, safetensors::serialize([(name, view)], None).unwrap()).unwrap();
            path
        }
        "f16" => {
            let path = dir.join(format!("{name}.npy"));
            let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(std::fs::File::create(&path).unwrap())
                .begin_nd()
                .unwrap();
            w.extend(t.data.iter().map(|&v| half::f16::from_f64(v)))
                .unwrap();
            w.finish().unwrap();
            path
        }
        _ => {
            let path = dir.join(format!("{name}.npy"));
            write_npy(&path, t);
            path
        }
    }
}

/// Runs every case of `file` through `wgloss eval --loss-out L.npy --grads DIR`, as the golden
/// README says the tool drives them, reading `DIR/grad_<operand>.npy` for every gradient a case
/// expects; each value against `tolerance(case, key)`.
fn eval_golden_with_grads_dir(
    file: &str,
    backend: &str,
    tolerance: impl Fn(&common::Case, &str) -> Tolerance,
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let golden = load_golden(file);
    let mut failures = Vec::new();
    for case in &golden.cases {
        let mut cmd = wgloss();
        cmd.args(["eval", &case.loss, "--backend", backend]);
        for (name, tensor) in &case.inputs {
            let path = write_operand(dir.path(), name, tensor);
            cmd.arg(format!("--{}", name.replace('_', "-"))).arg(&path);
        }
        for (key, value) in &case.options {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if key == "reduction" {
                cmd.args(["--reduction", &text]);
            } else {
                cmd.args(["--set", &format!("{key}={text}")]);
            }
        }
        let grads = dir.path().join(format!("grads_{}", case.name));
        let loss_path = dir.path().join("loss.npy");
        cmd.arg("--loss-out")
            .arg(&loss_path)
            .arg("--grads")
            .arg(&grads);
        let out = cmd.output().unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{}: {}",
                case.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        for (key, expected) in &case.expected {
            let path = if key == "loss" {
                loss_path.clone()
            } else {
                grads.join(format!("{key}.npy"))
            };
            let (shape, actual) = read_npy(&path);
            let want: Vec<u64> = expected.shape.iter().map(|&d| d as u64).collect();
            if shape != want {
                failures.push(format!(
                    "{} {key}: shape {shape:?}, expected {want:?}",
                    case.name
                ));
            }
            if let Err(m) = tolerance(case, key).check(&actual, &expected.data) {
                failures.push(format!("{} {key}: {m}", case.name));
            }
        }
    }
    failures
}

#[test]
fn eval_writes_every_gradient_of_the_masked_and_16_bit_cases_on_both_backends() {
    let mut failures = Vec::new();
    let backends: &[&str] = if gpu().is_some() {
        &["cpu", "gpu"]
    } else {
        &["cpu"]
    };
    for backend in backends {
        failures.extend(eval_golden_with_grads_dir(
            "masked.json",
            backend,
            common::Case::reference_tolerance,
        ));
        failures.extend(eval_golden_with_grads_dir(
            "dtype.json",
            backend,
            common::Case::dtype_tolerance,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn safetensors_in_and_out_in_the_input_type() {
    let dir = tempfile::tempdir().unwrap();
    // One file holding two tensors: the logits (bf16) and the targets (i64).
    let logits: Vec<half::bf16> = [2.0f32, 0.5, -1.0, 0.0, 1.0, 3.0]
        .iter()
        .map(|&v| half::bf16::from_f32(v))
        .collect();
    let logit_bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let target_bytes: Vec<u8> = [0i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let file = dir.path().join("batch.safetensors");
    let views = [
        (
            "logits",
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::BF16,
                vec![2, 3],
                &logit_bytes,
            )
            .unwrap(),
        ),
        (
            "labels",
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![2], &target_bytes)
                .unwrap(),
        ),
    ];
    std::fs::write(&file, safetensors::serialize(views, None).unwrap()).unwrap();
    let f = file.to_str().unwrap();
    let grad_st = dir.path().join("grad.safetensors");
    let out = wgloss()
        .args([
            "eval",
            "cross_entropy",
            "--backend",
            "cpu",
            "--json",
            "--input",
        ])
        .arg(format!("{f}:logits"))
        .arg("--target")
        .arg(format!("{f}:labels"))
        .arg("--grad-out")
        .arg(&grad_st)
        .args(["--grads"])
        .arg(dir.path())
        .output()
        .unwrap();
    let json = stdout_json(&out);
    assert_eq!(json["dtype"], "bf16", "{json}");
    // The gradient in the input's type, in a .safetensors file...
    let bytes = std::fs::read(&grad_st).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (name, view) = &st.tensors()[0];
    assert_eq!(name, "grad_input");
    assert_eq!(view.dtype(), safetensors::Dtype::BF16);
    assert_eq!(view.shape(), &[2, 3]);
    // ... and as f32 .npy holding exactly the same values.
    let (shape, values) = read_npy(&dir.path().join("grad_input.npy"));
    assert_eq!(shape, vec![2, 3]);
    let from_st: Vec<f32> = view
        .data()
        .chunks(2)
        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    assert_eq!(values, from_st);
    // A file of several tensors needs a name; an unknown name is a one-line error.
    for (arg, needle) in [
        (f.to_string(), "name one as"),
        (format!("{f}:nope"), "no tensor `nope`"),
    ] {
        let out = wgloss()
            .args(["eval", "cross_entropy", "--backend", "cpu", "--input"])
            .arg(&arg)
            .arg("--target")
            .arg(format!("{f}:labels"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{arg}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn eval_reproduces_every_golden_case_on_the_cpu() {
    let mut failures = eval_golden("elementwise.json", "cpu");
    failures.extend(eval_golden("classwise.json", "cpu"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn eval_reproduces_every_golden_case_on_the_gpu() {
    let Some(_) = gpu() else { return };
    let mut failures = eval_golden("elementwise.json", "gpu");
    failures.extend(eval_golden("classwise.json", "gpu"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y34.npy");
    write_npy(
        &x,
        &Tensor {
            shape: vec![12],
            dtype: "f32".into(),
            data: (0..12).map(|i| i as f64 * 0.1).collect(),
        },
    );
    write_npy(
        &y,
        &Tensor {
            shape: vec![3, 4],
            dtype: "f32".into(),
            data: vec![0.5; 12],
        },
    );
    let (xs, ys) = (x.to_str().unwrap(), y.to_str().unwrap());
    let cases: &[(&[&str], &str)] = &[
        (&["eval", "msee", "--input", xs], "unknown loss `msee`"),
        (
            &[
                "eval",
                "mse",
                "--input",
                "/nonexistent/x.npy",
                "--target",
                xs,
            ],
            "/nonexistent/x.npy",
        ),
        (
            &["eval", "mse", "--input", xs, "--target", ys],
            "shape [3, 4]",
        ),
        (
            &[
                "eval", "huber", "--input", xs, "--target", xs, "--set", "delta=-1",
            ],
            "delta",
        ),
        (
            &[
                "eval", "huber", "--input", xs, "--target", xs, "--set", "gamma=2",
            ],
            "unknown option `gamma`",
        ),
        (
            &[
                "eval", "huber", "--input", xs, "--target", xs, "--set", "delta",
            ],
            "KEY=VALUE",
        ),
        (
            &[
                "eval",
                "mse",
                "--input",
                xs,
                "--target",
                xs,
                "--reduction",
                "avg",
            ],
            "unknown reduction `avg`",
        ),
        (&["eval", "mse", "--input", xs], "missing operand `target`"),
        (
            &[
                "eval", "bce", "--input", xs, "--target", xs, "--set", "delta=1",
            ],
            "unknown option",
        ),
        (
            &[
                "eval",
                "mse",
                "--input",
                ys,
                "--target",
                ys,
                "--backend",
                "cpu",
                "--grad-var-out",
                xs,
            ],
            "no var gradient",
        ),
    ];
    for (args, needle) in cases {
        let out = wgloss().args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: not one line:\n{err}"
        );
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{args:?}: {err}"
        );
    }
    // A file that is not .npy.
    std::fs::write(dir.path().join("junk.npy"), b"not numpy").unwrap();
    let out = wgloss()
        .args([
            "eval",
            "mse",
            "--input",
            dir.path().join("junk.npy").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a .npy file"));
}

#[test]
fn eval_reads_f64_and_writes_shaped_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2, 3])
            .writer(std::fs::File::create(&x).unwrap())
            .begin_nd()
            .unwrap();
        w.extend([0.5f64, -1.0, 2.0, 0.0, 3.0, -0.25]).unwrap();
        w.finish().unwrap();
    }
    let loss = dir.path().join("loss.npy");
    let out = wgloss()
        .args([
            "eval",
            "l2_penalty",
            "--backend",
            "cpu",
            "--json",
            "--set",
            "lambda=2",
            "--input",
        ])
        .arg(&x)
        .arg("--loss-out")
        .arg(&loss)
        .output()
        .unwrap();
    let json = stdout_json(&out);
    // ½ · 2 · Σ x² = 0.25 + 1 + 4 + 0 + 9 + 0.0625
    assert!(
        (json["loss"].as_f64().unwrap() - 14.3125).abs() < 1e-5,
        "{json}"
    );
    assert_eq!(json["shape"], serde_json::json!([]));
    let (shape, v) = read_npy(&loss);
    assert!(shape.is_empty());
    assert!((v[0] - 14.3125).abs() < 1e-5);
}

#[test]
fn check_and_bench_run() {
    let Some(_) = gpu() else { return };
    let out = wgloss()
        .args(["check", "--loss", "huber", "--n", "1000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 mismatches"), "{text}");
    let out = wgloss()
        .args([
            "bench",
            "--loss",
            "mse",
            "--loss",
            "gaussian_nll",
            "--n",
            "4096",
            "--reps",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "gpu and cpu for each loss");
    for l in &lines {
        for key in [
            "loss",
            "backend",
            "adapter",
            "n",
            "bytes",
            "median_ms",
            "gbps",
            "copy_gbps",
            "ratio_to_copy",
        ] {
            assert!(!l[key].is_null(), "{key} missing in {l}");
        }
    }
    // mse moves two reads and one write per element, on either backend.
    let bytes = |i: usize| lines[i]["bytes"].as_u64().unwrap();
    assert_eq!(
        (lines[0]["backend"].as_str(), lines[1]["backend"].as_str()),
        (Some("gpu"), Some("cpu"))
    );
    assert_eq!((bytes(0), bytes(1)), (12 * 4096, 12 * 4096));
    // gaussian_nll reads input, target, var and writes two gradients.
    assert_eq!(bytes(3), 20 * 4096);
}

#[test]
fn class_targets_may_be_i64_and_cross_entropy_reports_accuracy() {
    use npyz::WriterBuilder;
    let dir = tempfile::tempdir().unwrap();
    let (x, t) = (dir.path().join("x.npy"), dir.path().join("t.npy"));
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[3, 4])
        .writer(std::fs::File::create(&x).unwrap())
        .begin_nd()
        .unwrap();
    w.extend([
        2.0f32, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
    ])
    .unwrap();
    w.finish().unwrap();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[3])
        .writer(std::fs::File::create(&t).unwrap())
        .begin_nd()
        .unwrap();
    w.extend([0i64, 1, 2]).unwrap();
    w.finish().unwrap();
    let out = wgloss()
        .args([
            "eval",
            "cross_entropy",
            "--backend",
            "cpu",
            "--json",
            "--set",
            "ignore_index=-1",
            "--input",
        ])
        .arg(&x)
        .arg("--target")
        .arg(&t)
        .output()
        .unwrap();
    let json = stdout_json(&out);
    assert_eq!(json["accuracy"], serde_json::json!(2.0 / 3.0), "{json}");
    assert_eq!(json["row_lse"].as_array().unwrap().len(), 3);
    // A class index past the classes is a one-line error naming the row and the value.
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[3])
        .writer(std::fs::File::create(&t).unwrap())
        .begin_nd()
        .unwrap();
    w.extend([0i64, 9, 2]).unwrap();
    w.finish().unwrap();
    let out = wgloss()
        .args(["eval", "cross_entropy", "--input"])
        .arg(&x)
        .arg("--target")
        .arg(&t)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        err.trim(),
        "wgloss: error: cross_entropy: target of row 1 is class 9, outside [0, 4)"
    );
}

#[test]
fn stderr_stays_quiet_without_a_display() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_npy(
        &x,
        &Tensor {
            shape: vec![4],
            dtype: "f32".into(),
            data: vec![0.5, 1.0, -2.0, 3.0],
        },
    );
    // No XDG_RUNTIME_DIR, as on a server: Mesa's device-select layer would print two error
    // lines while wgpu lists devices; the tool keeps stderr for real errors.
    for args in [
        vec!["info"],
        vec!["eval", "l2_penalty", "--input", x.to_str().unwrap()],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_wgloss"))
            .env_remove("XDG_RUNTIME_DIR")
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.trim().is_empty(), "{args:?} wrote to stderr:\n{err}");
    }
}

#[test]
fn eval_writes_every_gradient_of_the_pair_and_gan_cases() {
    // `wgloss eval triplet_margin --anchor a.npy --positive p.npy --negative n.npy --set
    // margin=0.5 --grads DIR`, and every other pair and GAN case, on the CPU (the GPU runs
    // the same registry calls: golden.rs checks them there).
    let mut failures =
        eval_golden_with_grads_dir("pair.json", "cpu", common::Case::reference_tolerance);
    failures.extend(eval_golden_with_grads_dir(
        "gan.json",
        "cpu",
        common::Case::reference_tolerance,
    ));
    // `wgloss eval info_nce --input1 A --input2 B --set scale=14.285714 --grads DIR` writes
    // grad_scale (and siglip's grad_bias) beside the inputs' gradients.
    failures.extend(eval_golden_with_grads_dir(
        "contrastive.json",
        "cpu",
        common::Case::contrastive_tolerance,
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_pair_or_gan_call_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, shape: &[u64], v: &[f32]| {
        use npyz::WriterBuilder;
        let path = dir.path().join(name);
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(std::fs::File::create(&path).unwrap())
            .begin_nd()
            .unwrap();
        w.extend(v.iter().copied()).unwrap();
        w.finish().unwrap();
        path
    };
    let a = write("a.npy", &[2, 3], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    let short = write("p.npy", &[2, 2], &[0.1, 0.2, 0.3, 0.4]);
    let real = write("r.npy", &[3], &[0.1, 0.2, 0.3]);
    let runs: Vec<Vec<std::ffi::OsString>> = vec![
        vec![
            "eval".into(),
            "triplet_margin".into(),
            "--anchor".into(),
            a.clone().into(),
            "--positive".into(),
            short.into(),
            "--negative".into(),
            a.clone().into(),
        ],
        vec![
            "eval".into(),
            "triplet_margin".into(),
            "--anchor".into(),
            a.clone().into(),
            "--positive".into(),
            a.clone().into(),
            "--negative".into(),
            a.into(),
            "--set".into(),
            "p=0".into(),
        ],
        vec![
            "eval".into(),
            "gan_discriminator".into(),
            "--real".into(),
            real.clone().into(),
            "--fake".into(),
            real.into(),
            "--set".into(),
            "kind=minimax".into(),
        ],
    ];
    for args in runs {
        let out = wgloss().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
