//! Pipelines: typed keys, the shader composition behind each key, and the cache that builds a
//! pipeline once per key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::spec::elementwise::{AuxInput, CustomLoss, ElementwiseKind};

/// The WGSL files, one per concern; see [`compose`] for how a kernel is assembled.
pub mod sources {
    pub const REDUCE_TREE: &str = include_str!("../../shaders/reduce_tree.wgsl");
    pub const REDUCE_SUBGROUP: &str = include_str!("../../shaders/reduce_subgroup.wgsl");
    pub const LAUNCH: &str = include_str!("../../shaders/launch.wgsl");
    pub const MATH: &str = include_str!("../../shaders/math.wgsl");
    pub const FINAL_SUM: &str = include_str!("../../shaders/final_sum.wgsl");
    pub const STREAM_ADD: &str = include_str!("../../shaders/stream_add.wgsl");
    pub const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
    pub const ELEMENTWISE_LOSSES: &str = include_str!("../../shaders/elementwise_losses.wgsl");
    pub const ROWS: &str = include_str!("../../shaders/rows.wgsl");
    pub const ROW_LOSSES: &str = include_str!("../../shaders/row_losses.wgsl");
    pub const ROW_IO_SEPARATE: &str = include_str!("../../shaders/row_io_separate.wgsl");
    pub const ROW_IO_IN_PLACE: &str = include_str!("../../shaders/row_io_in_place.wgsl");
    pub const CLASS_PREPASS: &str = include_str!("../../shaders/class_prepass.wgsl");

    /// Every file, by name: what the naga test validates.
    pub const ALL: &[(&str, &str)] = &[
        ("reduce_tree.wgsl", REDUCE_TREE),
        ("reduce_subgroup.wgsl", REDUCE_SUBGROUP),
        ("launch.wgsl", LAUNCH),
        ("math.wgsl", MATH),
        ("final_sum.wgsl", FINAL_SUM),
        ("stream_add.wgsl", STREAM_ADD),
        ("elementwise.wgsl", ELEMENTWISE),
        ("elementwise_losses.wgsl", ELEMENTWISE_LOSSES),
        ("rows.wgsl", ROWS),
        ("row_losses.wgsl", ROW_LOSSES),
        ("row_io_separate.wgsl", ROW_IO_SEPARATE),
        ("row_io_in_place.wgsl", ROW_IO_IN_PLACE),
        ("class_prepass.wgsl", CLASS_PREPASS),
    ];
}

/// How a workgroup adds up its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceStrategy {
    /// `subgroupAdd`, then one shared slot per subgroup (needs `Features::SUBGROUP`).
    Subgroup,
    /// A shared-memory tree: works everywhere.
    SharedTree,
}

/// What selects the code of an elementwise kernel: the loss kind and which operands exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElementwiseVariant {
    pub loss: ElementwiseKind,
    /// Mean/sum (partials) rather than none (per-element losses).
    pub reduced: bool,
    pub target: bool,
    pub weight: bool,
    pub aux: AuxInput,
    pub grad_output: bool,
    pub write_grad: bool,
    pub write_grad_aux: bool,
}

/// The option-free identity of a class-dimension loss on the GPU (`multi_margin` and
/// `multiclass_svm` share a kernel: their differences are options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowLoss {
    CrossEntropy,
    Nll,
    KlDiv,
    Margin,
    MulticlassHinge,
    MultilabelSoftMargin,
    MultilabelMargin,
}

impl RowLoss {
    /// The hooks of the loss in `row_losses.wgsl`: statistics type, then the functions
    /// stats_empty, stats_add, stats_combine, row_finish, elem_grad, elem_loss.
    fn hooks(self) -> [&'static str; 7] {
        match self {
            RowLoss::CrossEntropy => [
                "CeStats",
                "ce_stats_empty",
                "ce_stats_add",
                "ce_stats_combine",
                "ce_row_finish",
                "ce_elem_grad",
                "no_elem_loss",
            ],
            RowLoss::Nll => [
                "NllStats",
                "nll_stats_empty",
                "nll_stats_add",
                "nll_stats_combine",
                "nll_row_finish",
                "nll_elem_grad",
                "no_elem_loss",
            ],
            RowLoss::KlDiv => [
                "SumStats",
                "sum_stats_empty",
                "kl_stats_add",
                "sum_stats_combine",
                "kl_row_finish",
                "kl_elem_grad",
                "kl_elem_loss",
            ],
            RowLoss::Margin => [
                "MarginStats",
                "margin_stats_empty",
                "margin_stats_add",
                "margin_stats_combine",
                "margin_row_finish",
                "margin_elem_grad",
                "no_elem_loss",
            ],
            RowLoss::MulticlassHinge => [
                "RunnerUpStats",
                "hinge_stats_empty",
                "hinge_stats_add",
                "hinge_stats_combine",
                "hinge_row_finish",
                "hinge_elem_grad",
                "no_elem_loss",
            ],
            RowLoss::MultilabelSoftMargin => [
                "SumStats",
                "sum_stats_empty",
                "soft_stats_add",
                "sum_stats_combine",
                "soft_row_finish",
                "soft_elem_grad",
                "no_elem_loss",
            ],
            RowLoss::MultilabelMargin => [
                "SumStats",
                "sum_stats_empty",
                "mlm_stats_add",
                "sum_stats_combine",
                "mlm_row_finish",
                "mlm_elem_grad",
                "no_elem_loss",
            ],
        }
    }
}

/// What selects the code of a row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowVariant {
    pub loss: RowLoss,
    pub reduced: bool,
    /// The mean divides by the pre-pass's summed weight (read on the GPU).
    pub mean_by_status: bool,
    /// Class-index targets (else one value per class).
    pub target_index: bool,
    /// `-1`-terminated class-index lists per row (`multilabel_margin`).
    pub target_list: bool,
    /// `none` keeps one loss per element (`kl_div`).
    pub per_element: bool,
    pub weight: bool,
    pub grad_output: bool,
    pub write_grad: bool,
    /// Per-row log-sum-exp and argmax == target.
    pub extras: bool,
    /// The gradient overwrites the logits.
    pub in_place: bool,
}

/// Which kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The elementwise template with one loss plugged in.
    Elementwise(ElementwiseVariant),
    /// The row template (class-dimension family) with one loss plugged in.
    Rows(RowVariant),
    /// One workgroup over the class-index targets: mean's divisor and the first bad index.
    ClassPrepass { weight: bool },
    /// The final tree over per-workgroup partials.
    FinalSum {
        /// Divide by the pre-pass's summed weight instead of launch.divisor.
        divisor_from_status: bool,
        /// 0 instead of NaN when that divisor is 0.
        zero_if_empty: bool,
    },
    /// `c = a + b`: the bandwidth baseline of the benchmarks.
    StreamAdd,
}

impl Kernel {
    /// The final sum of losses whose mean divisor is known up front.
    pub const FINAL_SUM: Kernel = Kernel::FinalSum {
        divisor_from_status: false,
        zero_if_empty: false,
    };
}

/// The identity of a compute pipeline: a pipeline is built once per key and context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub workgroup_size: u32,
    pub reduce: ReduceStrategy,
}

/// The kind of one binding of a kernel's bind group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {
    Uniform,
    Read,
    ReadWrite,
}

impl Kernel {
    /// The bindings of group 0, in binding order (the kernel's WGSL declares the same).
    pub fn bindings(&self) -> &'static [BindingKind] {
        use BindingKind::*;
        match self {
            // launch, input, target, weight, aux, grad_output, grad_input, grad_aux, outputs
            Kernel::Elementwise(_) => &[
                Uniform, Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite,
            ],
            // launch, logits (read, or written over in place), targets, weights, grad_output,
            // grads, row outputs, row extras, status
            Kernel::Rows(v) if v.in_place => &[
                Uniform, ReadWrite, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Read,
            ],
            Kernel::Rows(_) => &[
                Uniform, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Read,
            ],
            // launch, targets, weights, status
            Kernel::ClassPrepass { .. } => &[Uniform, Read, Read, ReadWrite],
            // launch, partials, result, status
            Kernel::FinalSum { .. } => &[Uniform, Read, ReadWrite, Read],
            // launch, a, b, c
            Kernel::StreamAdd => &[Uniform, Read, Read, ReadWrite],
        }
    }
}

impl PipelineKey {
    /// The entry point of the kernel.
    pub fn entry_point(&self) -> &'static str {
        match self.kernel {
            Kernel::Elementwise(_) => "elementwise",
            Kernel::Rows(_) => "rows_main",
            Kernel::ClassPrepass { .. } => "class_prepass",
            Kernel::FinalSum { .. } => "final_sum",
            Kernel::StreamAdd => "stream_add",
        }
    }

    /// The override constants of the kernel.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        let mut c = vec![("WORKGROUP_SIZE", self.workgroup_size as f64)];
        match self.kernel {
            Kernel::Rows(v) => c.extend([
                ("REDUCED", b(v.reduced)),
                ("MEAN_BY_STATUS", b(v.mean_by_status)),
                ("TARGET_INDEX", b(v.target_index)),
                ("TARGET_LIST", b(v.target_list)),
                ("PER_ELEMENT", b(v.per_element)),
                ("HAS_WEIGHT", b(v.weight)),
                ("HAS_GRAD_OUTPUT", b(v.grad_output)),
                ("WRITE_GRAD", b(v.write_grad)),
                ("WRITE_EXTRAS", b(v.extras)),
            ]),
            Kernel::ClassPrepass { weight } => c.push(("HAS_WEIGHT", b(weight))),
            Kernel::FinalSum {
                divisor_from_status,
                zero_if_empty,
            } => c.extend([
                ("DIVISOR_FROM_STATUS", b(divisor_from_status)),
                ("ZERO_IF_EMPTY", b(zero_if_empty)),
            ]),
            _ => {}
        }
        if let Kernel::Elementwise(v) = self.kernel {
            c.extend([
                ("REDUCED", b(v.reduced)),
                ("HAS_TARGET", b(v.target)),
                ("HAS_WEIGHT", b(v.weight)),
                (
                    "AUX_MODE",
                    match v.aux {
                        AuxInput::None => 0.0,
                        AuxInput::Var => 1.0,
                        AuxInput::PosWeight => 2.0,
                    },
                ),
                ("HAS_GRAD_OUTPUT", b(v.grad_output)),
                ("WRITE_GRAD", b(v.write_grad)),
                ("WRITE_GRAD_AUX", b(v.write_grad_aux)),
            ]);
        }
        c
    }
}

/// The WGSL function of a built-in loss in `elementwise_losses.wgsl`.
fn builtin_wgsl_fn(kind: ElementwiseKind) -> &'static str {
    match kind {
        ElementwiseKind::Mse => "mse_terms",
        ElementwiseKind::L1 => "l1_terms",
        ElementwiseKind::Huber => "huber_terms",
        ElementwiseKind::SmoothL1 => "smooth_l1_terms",
        ElementwiseKind::Msle => "msle_terms",
        ElementwiseKind::LogCosh => "log_cosh_terms",
        ElementwiseKind::Cauchy => "cauchy_terms",
        ElementwiseKind::PoissonNll => "poisson_nll_terms",
        ElementwiseKind::GaussianNll => "gaussian_nll_terms",
        ElementwiseKind::Bce => "bce_terms",
        ElementwiseKind::BceWithLogits => "bce_with_logits_terms",
        ElementwiseKind::SigmoidFocal => "sigmoid_focal_terms",
        ElementwiseKind::Hinge => "hinge_terms",
        ElementwiseKind::SquaredHinge => "squared_hinge_terms",
        ElementwiseKind::SoftMargin => "soft_margin_terms",
        ElementwiseKind::L1Penalty => "l1_penalty_terms",
        ElementwiseKind::L2Penalty => "l2_penalty_terms",
        ElementwiseKind::Custom(_) => "custom_terms",
    }
}

/// The full WGSL source of a kernel: the reduction, the launch parameters, the math library,
/// the kernel template, and for an elementwise kernel the loss math and the one-line
/// `loss_terms` that selects it. `custom` must be given for a custom loss.
pub fn compose(key: &PipelineKey, custom: Option<&CustomLoss>) -> Result<String> {
    // The row kernels and the pre-pass reduce structs and minima in shared memory themselves;
    // they take the tree file for WORKGROUP_SIZE.
    let reduce = match (key.reduce, key.kernel) {
        (_, Kernel::Rows(_) | Kernel::ClassPrepass { .. }) => sources::REDUCE_TREE,
        (ReduceStrategy::Subgroup, _) => sources::REDUCE_SUBGROUP,
        (ReduceStrategy::SharedTree, _) => sources::REDUCE_TREE,
    };
    let mut src = String::with_capacity(16 * 1024);
    for part in [reduce, sources::LAUNCH, sources::MATH] {
        src.push_str(part);
        src.push('\n');
    }
    match key.kernel {
        Kernel::FinalSum { .. } => src.push_str(sources::FINAL_SUM),
        Kernel::StreamAdd => src.push_str(sources::STREAM_ADD),
        Kernel::ClassPrepass { .. } => src.push_str(sources::CLASS_PREPASS),
        Kernel::Rows(v) => {
            let io = if v.in_place {
                sources::ROW_IO_IN_PLACE
            } else {
                sources::ROW_IO_SEPARATE
            };
            for part in [io, sources::ROWS, sources::ROW_LOSSES] {
                src.push_str(part);
                src.push('\n');
            }
            let [stats, empty, add, combine, finish, grad, elem_loss] = v.loss.hooks();
            src.push_str(&format!(
                "\n// The loss of this pipeline.\n\
                 alias RowStats = {stats};\n\
                 fn stats_empty() -> RowStats {{ return {empty}(); }}\n\
                 fn stats_add(s: RowStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> RowStats {{ return {add}(s, c, x, t, w, info); }}\n\
                 fn stats_combine(a: RowStats, b: RowStats) -> RowStats {{ return {combine}(a, b); }}\n\
                 fn row_finish(s: RowStats, info: RowInfo, base: u32) -> RowResult {{ return {finish}(s, info, base); }}\n\
                 fn elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {{ return {grad}(r, c, x, t, w); }}\n\
                 fn elem_loss(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {{ return {elem_loss}(r, c, x, t, w); }}\n",
            ));
        }
        Kernel::Elementwise(v) => {
            src.push_str(sources::ELEMENTWISE);
            src.push('\n');
            match v.loss {
                ElementwiseKind::Custom(id) => {
                    let custom = custom.filter(|c| c.id == id).ok_or_else(|| Error::Shader {
                        label: "custom loss".into(),
                        message: "the custom loss of this pipeline key was not given".into(),
                    })?;
                    src.push_str("// The user's loss.\n");
                    src.push_str(custom.wgsl());
                    src.push_str(
                        "\nfn custom_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {\n    \
                         return Terms(custom_value(x, y), custom_grad(x, y), 0.0);\n}\n",
                    );
                }
                _ => src.push_str(sources::ELEMENTWISE_LOSSES),
            }
            src.push_str(&format!(
                "\nfn loss_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {{\n    return {}(x, y, a, o);\n}}\n",
                builtin_wgsl_fn(v.loss)
            ));
        }
    }
    Ok(src)
}

/// Builds each pipeline once per key; counts the builds (a test checks that the count does
/// not grow when the same loss is prepared again).
#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    builds: AtomicUsize,
}

impl PipelineCache {
    pub(crate) fn builds(&self) -> usize {
        self.builds.load(Ordering::Relaxed)
    }

    /// The pipeline of `key`, built (under an error scope, so that a bad shader is an
    /// [`Error`], not a panic) on first use.
    /// `label` names the work in errors and debuggers (the loss's name, not the whole key).
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        key: &PipelineKey,
        custom: Option<&CustomLoss>,
        label: &str,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(key) {
            return Ok(p.clone());
        }
        let label = label.to_string();
        let source = compose(key, custom)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        // An explicit layout: the same bindings whatever the overrides switch off.
        let entries: Vec<wgpu::BindGroupLayoutEntry> = key
            .kernel
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, kind)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        BindingKind::ReadWrite => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&group_layout)],
            immediate_size: 0,
        });
        let constants = key.constants();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(key.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every workgroup variable is written before it is read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                label,
                message: e.to_string(),
            });
        }
        self.builds.fetch_add(1, Ordering::Relaxed);
        let pipeline = Arc::new(pipeline);
        map.insert(*key, pipeline.clone());
        Ok(pipeline)
    }
}
