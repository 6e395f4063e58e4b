//! Reading and writing tensors: `.npy` (f32, f64, f16, i32, i64 in; f32 out) and
//! `.safetensors` (F32, F16, BF16, I32, I64, and F64 converted, in; the tensor's own type
//! out).

use std::path::Path;

use wgloss::{f16, DType, HostData, HostTensor};

use crate::{CliError, CliResult};

fn file_error(path: &Path, problem: impl std::fmt::Display) -> CliError {
    CliError::File {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Reads a tensor: `FILE.npy`, `FILE.safetensors` (holding one tensor) or
/// `FILE.safetensors:NAME`.
pub fn read(spec: &str) -> CliResult<HostTensor> {
    if let Some((file, name)) = spec.rsplit_once(':') {
        if is_safetensors(Path::new(file)) {
            return read_safetensors(Path::new(file), Some(name));
        }
    }
    let path = Path::new(spec);
    if is_safetensors(path) {
        read_safetensors(path, None)
    } else {
        read_npy(path)
    }
}

fn read_npy(path: &Path) -> CliResult<HostTensor> {
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
    let data = match (ty.type_char(), ty.size_field()) {
        (npyz::TypeChar::Float, 4) => HostData::F32(npy.into_vec::<f32>().map_err(bad)?),
        (npyz::TypeChar::Float, 8) => HostData::F32(
            npy.into_vec::<f64>()
                .map_err(bad)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        ),
        (npyz::TypeChar::Float, 2) => HostData::F16(npy.into_vec::<f16>().map_err(bad)?),
        (npyz::TypeChar::Int, 4) => HostData::I32(npy.into_vec::<i32>().map_err(bad)?),
        (npyz::TypeChar::Int, 8) => HostData::I64(npy.into_vec::<i64>().map_err(bad)?),
        _ => {
            return Err(file_error(
                path,
                format!("dtype {ty} is not supported (use f32, f64, f16, i32 or i64)"),
            ))
        }
    };
    Ok(HostTensor::new(shape, data))
}

fn read_safetensors(path: &Path, name: Option<&str>) -> CliResult<HostTensor> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| file_error(path, format!("not a .safetensors file ({e})")))?;
    let names = {
        let mut n = file.names();
        n.sort();
        n.join(", ")
    };
    let view = match name {
        Some(name) => file
            .tensor(name)
            .map_err(|_| file_error(path, format!("has no tensor `{name}` (it holds: {names})")))?,
        None => match file.tensors().as_slice() {
            [(_, view)] => view.clone(),
            _ => {
                return Err(file_error(
                    path,
                    format!("holds several tensors ({names}): name one as FILE.safetensors:NAME"),
                ))
            }
        },
    };
    let raw = view.data();
    let data = match view.dtype() {
        Dtype::F32 => HostData::F32(bytemuck::pod_collect_to_vec(raw)),
        Dtype::F16 => HostData::F16(bytemuck::pod_collect_to_vec(raw)),
        Dtype::BF16 => HostData::Bf16(bytemuck::pod_collect_to_vec(raw)),
        Dtype::I32 => HostData::I32(bytemuck::pod_collect_to_vec(raw)),
        Dtype::I64 => HostData::I64(bytemuck::pod_collect_to_vec(raw)),
        Dtype::F64 => HostData::F32(
            bytemuck::pod_collect_to_vec::<u8, f64>(raw)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        ),
        other => {
            return Err(file_error(
                path,
                format!("dtype {other:?} is not supported (use F32, F16, BF16, I32 or I64)"),
            ))
        }
    };
    Ok(HostTensor::new(view.shape().to_vec(), data))
}

/// Writes `tensor` to `path`: `.safetensors` in the tensor's own type (one tensor named
/// `name`), otherwise `.npy` as f32 (the values exactly, for f16/bf16).
pub fn write(path: &Path, name: &str, tensor: &HostTensor) -> CliResult<()> {
    if is_safetensors(path) {
        return write_safetensors(path, name, tensor);
    }
    use npyz::WriterBuilder;
    let file = std::fs::File::create(path).map_err(|e| file_error(path, e))?;
    let shape: Vec<u64> = tensor.shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| file_error(path, e))?;
    writer
        .extend(tensor.data.to_f32())
        .map_err(|e| file_error(path, e))?;
    writer.finish().map_err(|e| file_error(path, e))
}

fn write_safetensors(path: &Path, name: &str, tensor: &HostTensor) -> CliResult<()> {
    use safetensors::{tensor::TensorView, Dtype};
    let dtype = match &tensor.data {
        HostData::F32(_) => Dtype::F32,
        HostData::F16(_) => Dtype::F16,
        HostData::Bf16(_) => Dtype::BF16,
        HostData::I32(_) => Dtype::I32,
        HostData::I64(_) => Dtype::I64,
    };
    let view = TensorView::new(dtype, tensor.shape.clone(), tensor.data.bytes())
        .map_err(|e| file_error(path, e))?;
    let bytes = safetensors::serialize([(name, view)], None).map_err(|e| file_error(path, e))?;
    std::fs::write(path, bytes).map_err(|e| file_error(path, e))
}

/// The tensor with its float values converted to `dtype` (integers as they are).
pub fn converted(t: HostTensor, dtype: DType) -> HostTensor {
    match t.data.to_dtype(dtype) {
        Some(data) => HostTensor::new(t.shape, data),
        None => t,
    }
}
