//! Reading and writing .npy files: f32, f64 and f16 (and integer targets) in, f32 out.

use std::path::Path;

use crate::{CliError, CliResult};

/// An array read from a .npy file, as f32, with its shape; integer files also keep their
/// integers (class-index targets).
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub ints: Option<Vec<i64>>,
}

fn file_error(path: &Path, problem: impl std::fmt::Display) -> CliError {
    CliError::File {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Reads `path`; floats are converted to f32, integers (class or sign targets) too.
pub fn read(path: &Path) -> CliResult<Array> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| file_error(path, format!("not a .npy file ({e})")))?;
    if npy.order() == npyz::Order::Fortran && npy.shape().len() > 1 {
        return Err(file_error(
            path,
            "Fortran-ordered arrays are not supported; save it C-ordered",
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ty) = npy.dtype() else {
        return Err(file_error(path, "structured arrays are not supported"));
    };
    let bad = |e: std::io::Error| file_error(path, e);
    let (data, ints): (Vec<f32>, Option<Vec<i64>>) = match (ty.type_char(), ty.size_field()) {
        (npyz::TypeChar::Float, 4) => (npy.into_vec::<f32>().map_err(bad)?, None),
        (npyz::TypeChar::Float, 8) => (
            npy.into_vec::<f64>()
                .map_err(bad)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            None,
        ),
        (npyz::TypeChar::Float, 2) => (
            npy.into_vec::<half::f16>()
                .map_err(bad)?
                .into_iter()
                .map(f32::from)
                .collect(),
            None,
        ),
        (npyz::TypeChar::Int, 4) => {
            let v: Vec<i64> = npy
                .into_vec::<i32>()
                .map_err(bad)?
                .into_iter()
                .map(i64::from)
                .collect();
            (v.iter().map(|&x| x as f32).collect(), Some(v))
        }
        (npyz::TypeChar::Int, 8) => {
            let v = npy.into_vec::<i64>().map_err(bad)?;
            (v.iter().map(|&x| x as f32).collect(), Some(v))
        }
        _ => {
            return Err(file_error(
                path,
                format!("dtype {ty} is not supported (use f32, f64, f16, i32 or i64)"),
            ))
        }
    };
    Ok(Array { shape, data, ints })
}

/// Writes `data` as an f32 array of `shape`.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> CliResult<()> {
    use npyz::WriterBuilder;
    let file = std::fs::File::create(path).map_err(|e| file_error(path, e))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| file_error(path, e))?;
    writer
        .extend(data.iter().copied())
        .map_err(|e| file_error(path, e))?;
    writer.finish().map_err(|e| file_error(path, e))
}
