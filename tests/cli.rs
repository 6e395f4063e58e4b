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
