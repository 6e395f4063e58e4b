//! The one error type of the crate.

/// An operand of a loss: an input, an output, or a gradient, named as LOSSES.md names it.
///
/// Every operand of the catalogue (LOSSES.md) has a variant, those of the families still to
/// come included, so that a new family needs no new variant; the enum may grow
/// (`#[non_exhaustive]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operand {
    Input,
    Target,
    Weight,
    PosWeight,
    Var,
    Anchor,
    Positive,
    Negative,
    Input1,
    Input2,
    Real,
    Fake,
    InputLengths,
    TargetLengths,
    Scale,
    Bias,
    /// The upstream gradient of the per-element (or per-row) losses, reduction `none`.
    GradOutput,
    GradInput,
    GradVar,
    GradAnchor,
    GradPositive,
    GradNegative,
    GradInput1,
    GradInput2,
    GradReal,
    GradFake,
    GradScale,
    GradBias,
    /// The loss: one value, or one per element (row) for reduction `none`.
    Loss,
    /// Per-row log-sum-exp and accuracy of cross-entropy (`ClassBuffers::row_extras`).
    RowExtras,
}

impl Operand {
    /// Every operand, in declaration order.
    pub const ALL: &'static [Operand] = &[
        Operand::Input,
        Operand::Target,
        Operand::Weight,
        Operand::PosWeight,
        Operand::Var,
        Operand::Anchor,
        Operand::Positive,
        Operand::Negative,
        Operand::Input1,
        Operand::Input2,
        Operand::Real,
        Operand::Fake,
        Operand::InputLengths,
        Operand::TargetLengths,
        Operand::Scale,
        Operand::Bias,
        Operand::GradOutput,
        Operand::GradInput,
        Operand::GradVar,
        Operand::GradAnchor,
        Operand::GradPositive,
        Operand::GradNegative,
        Operand::GradInput1,
        Operand::GradInput2,
        Operand::GradReal,
        Operand::GradFake,
        Operand::GradScale,
        Operand::GradBias,
        Operand::Loss,
        Operand::RowExtras,
    ];

    /// The operand's name as LOSSES.md and the command-line tool spell it.
    pub fn name(self) -> &'static str {
        match self {
            Operand::Input => "input",
            Operand::Target => "target",
            Operand::Weight => "weight",
            Operand::PosWeight => "pos_weight",
            Operand::Var => "var",
            Operand::Anchor => "anchor",
            Operand::Positive => "positive",
            Operand::Negative => "negative",
            Operand::Input1 => "input1",
            Operand::Input2 => "input2",
            Operand::Real => "real",
            Operand::Fake => "fake",
            Operand::InputLengths => "input_lengths",
            Operand::TargetLengths => "target_lengths",
            Operand::Scale => "scale",
            Operand::Bias => "bias",
            Operand::GradOutput => "grad_output",
            Operand::GradInput => "grad_input",
            Operand::GradVar => "grad_var",
            Operand::GradAnchor => "grad_anchor",
            Operand::GradPositive => "grad_positive",
            Operand::GradNegative => "grad_negative",
            Operand::GradInput1 => "grad_input1",
            Operand::GradInput2 => "grad_input2",
            Operand::GradReal => "grad_real",
            Operand::GradFake => "grad_fake",
            Operand::GradScale => "grad_scale",
            Operand::GradBias => "grad_bias",
            Operand::Loss => "loss",
            Operand::RowExtras => "row_extras",
        }
    }

    /// The operand of a name (as [`Operand::name`] spells it).
    pub fn from_name(name: &str) -> Option<Operand> {
        Operand::ALL.iter().copied().find(|o| o.name() == name)
    }

    /// The gradient of an input operand (`input` → `grad_input`), where it can have one.
    pub fn grad(self) -> Option<Operand> {
        Some(match self {
            Operand::Input => Operand::GradInput,
            Operand::Var => Operand::GradVar,
            Operand::Anchor => Operand::GradAnchor,
            Operand::Positive => Operand::GradPositive,
            Operand::Negative => Operand::GradNegative,
            Operand::Input1 => Operand::GradInput1,
            Operand::Input2 => Operand::GradInput2,
            Operand::Real => Operand::GradReal,
            Operand::Fake => Operand::GradFake,
            Operand::Scale => Operand::GradScale,
            Operand::Bias => Operand::GradBias,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Operand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in `wgloss`. Nothing in the crate panics on user input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter could be found (the message lists the backends that were searched).
    #[error("no GPU adapter found on backends {backends}; install a Vulkan driver (for example Mesa's lavapipe, package mesa-vulkan-drivers) or use the CPU path")]
    NoAdapter { backends: String },

    /// The adapter refused to create a device.
    #[error("the adapter refused to create a device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),

    /// The input has no elements.
    #[error("{loss}: the input is empty")]
    EmptyInput { loss: &'static str },

    /// Two operands that must have the same number of elements do not.
    #[error("{loss}: {operand} has {actual} elements, expected {expected}")]
    LengthMismatch {
        loss: &'static str,
        operand: Operand,
        expected: usize,
        actual: usize,
    },

    /// `pos_weight` (one value per column of the last dimension) does not divide the input.
    #[error("{loss}: pos_weight has {columns} values (one per column), which does not divide the {len} input elements")]
    ColumnMismatch {
        loss: &'static str,
        columns: usize,
        len: u64,
    },

    /// The loss needs an operand that was not given.
    #[error("{loss}: missing operand `{operand}`")]
    MissingOperand {
        loss: &'static str,
        operand: Operand,
    },

    /// An operand was given that this loss (or this reduction) does not take.
    #[error("{loss}: does not take operand `{operand}`{hint}")]
    UnexpectedOperand {
        loss: &'static str,
        operand: Operand,
        hint: &'static str,
    },

    /// An operand's shape does not fit the loss.
    #[error("{loss}: {operand}: {problem}")]
    Shape {
        loss: &'static str,
        operand: Operand,
        problem: String,
    },

    /// A class index is outside `[0, classes)` and is not the ignored index.
    #[error("{loss}: target of row {row} is class {value}, outside [0, {classes})")]
    ClassIndex {
        loss: &'static str,
        row: usize,
        value: i64,
        classes: usize,
    },

    /// An option is outside its valid range.
    #[error("{loss}: option `{option}` = {value} is invalid: {reason}")]
    InvalidOption {
        loss: &'static str,
        option: &'static str,
        value: f64,
        reason: &'static str,
    },

    /// The reduction is not offered by this loss.
    #[error("{loss}: reduction `{reduction}` is not offered ({reason})")]
    InvalidReduction {
        loss: &'static str,
        reduction: &'static str,
        reason: &'static str,
    },

    /// An element of an operand is outside the loss's domain (checked before launch where the
    /// values are on the host).
    #[error("{loss}: {operand}[{index}] = {value} is outside the valid range {range}")]
    OutOfDomain {
        loss: &'static str,
        operand: Operand,
        index: usize,
        value: f32,
        range: &'static str,
    },

    /// A buffer given to the engine-level API cannot be used as it is.
    #[error("{operand} buffer: {problem}")]
    Buffer { operand: Operand, problem: String },

    /// The reduction name is not one of `none`, `mean`, `sum`.
    #[error("unknown reduction `{name}` (one of none, mean, sum, batchmean)")]
    UnknownReduction { name: String },

    /// The loss name is not in the catalogue.
    #[error("unknown loss `{name}`")]
    UnknownLoss { name: String },

    /// The option name is not one this loss takes.
    #[error("{loss}: unknown option `{option}` (it takes: {known})")]
    UnknownOption {
        loss: &'static str,
        option: String,
        known: &'static str,
    },

    /// An option's value could not be parsed.
    #[error("{loss}: option `{option}`: cannot parse `{value}` as {expected}")]
    OptionParse {
        loss: &'static str,
        option: String,
        value: String,
        expected: &'static str,
    },

    /// A WGSL source (a user-defined loss) did not parse or validate.
    #[error("shader `{label}` is invalid:\n{message}")]
    Shader { label: String, message: String },

    /// The device reported a validation error while building or running the named work.
    #[error("GPU validation error in `{label}`: {message}")]
    Gpu { label: String, message: String },

    /// The device ran out of memory while allocating for the named work.
    #[error("GPU out of memory in `{label}`")]
    OutOfMemory { label: String },

    /// The device was lost.
    #[error("the GPU device was lost: {reason}")]
    DeviceLost { reason: String },

    /// Mapping a buffer for readback failed.
    #[error("reading results back from the GPU failed: {0}")]
    Map(#[from] wgpu::BufferAsyncError),

    /// Waiting for the GPU failed.
    #[error("waiting for the GPU failed: {0}")]
    Poll(#[from] wgpu::PollError),

    /// A size does not fit what this adapter can do.
    #[error("{what} needs {needed} but this adapter allows at most {limit}")]
    Limit {
        what: &'static str,
        needed: u64,
        limit: u64,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
