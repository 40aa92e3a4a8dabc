//! Convolutions with their norm, loaded once and applied anywhere (the RPN
//! head is shared by every FPN level), plus small node helpers.

use d2serve_registry::catalog::Norm;

use crate::ConvertError;
use crate::builder::{GraphBuilder, NORM_EPS, Weights, f32_bytes};
use crate::onnx::{Attr, Data};

/// Geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeom {
    pub stride: usize,
    pub pad: usize,
    pub dilation: usize,
}

impl ConvGeom {
    pub const fn same(kernel: usize) -> Self {
        Self { stride: 1, pad: kernel / 2, dilation: 1 }
    }
}

/// A loaded convolution: weight, bias (a folded BN/FrozenBN becomes the bias),
/// and a GroupNorm applied after it, if any.
#[derive(Debug, Clone)]
pub struct Conv {
    pub name: String,
    pub weight: String,
    pub bias: Option<String>,
    pub group_norm: Option<(String, String)>,
    pub geom: ConvGeom,
    pub groups: usize,
    pub kernel: [usize; 2],
    pub in_channels: usize,
    pub out_channels: usize,
}

/// Load `{prefix}.weight` (OIHW) and its norm (`{prefix}.norm.*`) or bias.
/// Channel counts come from the weights; `in_channels` fixes the group count.
pub fn load_conv<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    in_channels: usize,
    geom: ConvGeom,
    norm: Norm,
) -> Result<Conv, ConvertError> {
    load_conv_norm(g, w, prefix, &format!("{prefix}.norm"), in_channels, geom, norm)
}

/// [`load_conv`] with the norm's parameters under `norm_prefix` (RegNet names
/// them `f.a_bn` beside `f.a`, not `f.a.norm`).
pub fn load_conv_norm<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    norm_prefix: &str,
    in_channels: usize,
    geom: ConvGeom,
    norm: Norm,
) -> Result<Conv, ConvertError> {
    let weight = w.take(&format!("{prefix}.weight"), &[None, None, None, None])?;
    let (out, per_group, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3]);
    if per_group == 0 || !in_channels.is_multiple_of(per_group) {
        return Err(ConvertError::WeightShape {
            name: format!("{prefix}.weight"),
            found: weight.shape.clone(),
            expected: vec![out.to_string(), format!("a divisor of {in_channels}"), kh.to_string(), kw.to_string()],
        });
    }
    let groups = in_channels / per_group;
    let dims: Vec<i64> = weight.shape.iter().map(|&d| d as i64).collect();
    let c = Some(out);
    let (weight_name, bias, group_norm) = match norm {
        Norm::FrozenBN | Norm::BN => {
            let gamma = w.take(&format!("{norm_prefix}.weight"), &[c])?.to_f32();
            let beta = w.take(&format!("{norm_prefix}.bias"), &[c])?.to_f32();
            let mean = w.take(&format!("{norm_prefix}.running_mean"), &[c])?.to_f32();
            let var = w.take(&format!("{norm_prefix}.running_var"), &[c])?.to_f32();
            // Detectron2: scale = w * rsqrt(var + eps); shift = b - mean * scale (f32).
            // In f64, rounded once: folding must not add error of its own.
            let scale64: Vec<f64> = gamma
                .iter()
                .zip(&var)
                .map(|(&g, &v)| g as f64 / (v as f64 + NORM_EPS as f64).sqrt())
                .collect();
            let shift: Vec<f32> = beta
                .iter()
                .zip(&mean)
                .zip(&scale64)
                .map(|((&b, &m), s)| (b as f64 - m as f64 * s) as f32)
                .collect();
            let scale: Vec<f64> = scale64;
            let wn = g.init(&format!("{prefix}.weight"), dims, Data::Scaled { raw: f32_bytes(&weight), scale });
            let bn = g.init(&format!("{prefix}.bias"), vec![out as i64], Data::F32(shift));
            (wn, Some(bn), None)
        }
        Norm::GN => {
            let gamma = w.take(&format!("{norm_prefix}.weight"), &[c])?;
            let beta = w.take(&format!("{norm_prefix}.bias"), &[c])?;
            let wn = g.weight(&format!("{prefix}.weight"), &weight);
            // [C, 1, 1]: broadcast over [N, C, H, W] by the decomposition below.
            let cdims = vec![out as i64, 1, 1];
            let s = g.init(&format!("{norm_prefix}.weight"), cdims.clone(), Data::RawF32(f32_bytes(&gamma)));
            let b = g.init(&format!("{norm_prefix}.bias"), cdims, Data::RawF32(f32_bytes(&beta)));
            (wn, None, Some((s, b)))
        }
        Norm::None => {
            let wn = g.weight(&format!("{prefix}.weight"), &weight);
            let bias_name = format!("{prefix}.bias");
            let bn = if w.has(&bias_name) {
                let b = w.take(&bias_name, &[c])?;
                Some(g.weight(&bias_name, &b))
            } else {
                None
            };
            (wn, bn, None)
        }
    };
    Ok(Conv {
        name: prefix.to_string(),
        weight: weight_name,
        bias,
        group_norm,
        geom,
        groups,
        kernel: [kh, kw],
        in_channels,
        out_channels: out,
    })
}

impl Conv {
    /// Conv (+ GroupNorm) (+ ReLU) on `x`.
    pub fn apply(&self, g: &mut GraphBuilder<'_>, x: &str, relu: bool) -> String {
        self.apply_sampled(g, x, None, relu)
    }

    /// Deformable conv v1 (ONNX DeformConv-19, one offset group) with sampling
    /// offsets `[N, 2·kH·kW, H', W']` in Detectron2's (Δy, Δx) per tap layout.
    pub fn apply_deformable(&self, g: &mut GraphBuilder<'_>, x: &str, offset: &str, relu: bool) -> String {
        self.apply_sampled(g, x, Some(offset), relu)
    }

    fn apply_sampled(&self, g: &mut GraphBuilder<'_>, x: &str, offset: Option<&str>, relu: bool) -> String {
        let mut inputs = vec![x, self.weight.as_str()];
        if let Some(o) = offset {
            inputs.push(o);
        }
        if let Some(b) = &self.bias {
            inputs.push(b);
        }
        let p = self.geom.pad as i64;
        let mut attrs = vec![
            ("kernel_shape", Attr::Ints(self.kernel.iter().map(|&k| k as i64).collect())),
            ("strides", Attr::Ints(vec![self.geom.stride as i64; 2])),
            ("pads", Attr::Ints(vec![p; 4])),
            ("dilations", Attr::Ints(vec![self.geom.dilation as i64; 2])),
            ("group", Attr::Int(self.groups as i64)),
        ];
        let op = if offset.is_some() {
            attrs.push(("offset_group", Attr::Int(1)));
            "DeformConv"
        } else {
            "Conv"
        };
        let mut y = g.op(op, &self.name, &inputs, attrs);
        if let Some((s, b)) = &self.group_norm {
            y = group_norm(g, &format!("{}.norm", self.name), &y, s, b);
        }
        if relu {
            y = g.op("Relu", &format!("{}.relu", self.name), &[&y], vec![]);
        }
        y
    }
}

/// GroupNorm(32) (`nn.GroupNorm`, eps 1e-5) written out: mean, then the
/// biased variance of the centred values, per sample and group. ONNX Runtime's
/// fused GroupNormalization kernel is less exact (measured on the GN fixture:
/// 2.4x larger mask-probability error against Detectron2 than this two-pass form).
fn group_norm(g: &mut GraphBuilder<'_>, name: &str, x: &str, scale: &str, bias: &str) -> String {
    // [N, 32, C/32·H·W], with the last extent computed: a `-1` cannot be
    // inferred when N = 0 (no ROIs).
    let shape = g.op("Shape", &format!("{name}.shape"), &[x], vec![]);
    let per_sample = g.op("Shape", &format!("{name}.chw"), &[x], vec![("start", Attr::Int(1))]);
    let per_sample = g.op("ReduceProd", &format!("{name}.chw_size"), &[&per_sample], vec![("keepdims", Attr::Int(1))]);
    let groups = g.const_i64(&[32]);
    let per_group = g.op("Div", &format!("{name}.group_size"), &[&per_sample, &groups], vec![]);
    let minus_one = g.const_i64(&[-1]);
    let grouped = g.op("Concat", &format!("{name}.grouped_shape"), &[&minus_one, &groups, &per_group], vec![("axis", Attr::Int(0))]);
    let xg = g.op("Reshape", &format!("{name}.grouped"), &[x, &grouped], vec![]);
    let axis = g.const_i64(&[2]);
    let mean = g.op("ReduceMean", &format!("{name}.mean"), &[&xg, &axis], vec![("keepdims", Attr::Int(1))]);
    let centred = g.op("Sub", &format!("{name}.centred"), &[&xg, &mean], vec![]);
    let sq = g.op("Mul", &format!("{name}.sq"), &[&centred, &centred], vec![]);
    let var = g.op("ReduceMean", &format!("{name}.var"), &[&sq, &axis], vec![("keepdims", Attr::Int(1))]);
    let eps = g.scalar_f32(NORM_EPS);
    let var = g.op("Add", &format!("{name}.var_eps"), &[&var, &eps], vec![]);
    let std = g.op("Sqrt", &format!("{name}.std"), &[&var], vec![]);
    let normed = g.op("Div", &format!("{name}.normed"), &[&centred, &std], vec![]);
    let normed = g.op("Reshape", &format!("{name}.ungrouped"), &[&normed, &shape], vec![]);
    let y = g.op("Mul", &format!("{name}.scaled"), &[&normed, scale], vec![]);
    g.op("Add", name, &[&y, bias], vec![])
}

/// A fully connected layer `{prefix}.{weight,bias}` applied as Gemm (x · Wᵀ + b).
pub fn linear<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    x: &str,
    in_features: usize,
    relu: bool,
) -> Result<(String, usize), ConvertError> {
    let weight = w.take(&format!("{prefix}.weight"), &[None, Some(in_features)])?;
    let out = weight.shape[0];
    let bias = w.take(&format!("{prefix}.bias"), &[Some(out)])?;
    let wn = g.weight(&format!("{prefix}.weight"), &weight);
    let bn = g.weight(&format!("{prefix}.bias"), &bias);
    let mut y = g.op("Gemm", prefix, &[x, &wn, &bn], vec![("transB", Attr::Int(1))]);
    if relu {
        y = g.op("Relu", &format!("{prefix}.relu"), &[&y], vec![]);
    }
    Ok((y, out))
}

/// Element `i` of a 1-D int64 tensor, as a 1-element 1-D tensor.
pub fn take_i64(g: &mut GraphBuilder<'_>, name: &str, v: &str, i: i64) -> String {
    let idx = g.const_i64(&[i]);
    g.op("Gather", name, &[v, &idx], vec![("axis", Attr::Int(0))])
}

/// Column `i` (0-d index) of the last axis, keeping rank (`[..., 1]`).
pub fn column(g: &mut GraphBuilder<'_>, name: &str, x: &str, i: i64) -> String {
    let start = g.const_i64(&[i]);
    let end = g.const_i64(&[i + 1]);
    let axis = g.const_i64(&[-1]);
    g.op("Slice", name, &[x, &start, &end, &axis], vec![])
}

/// Split the last axis (size 4) of a box tensor into x0, y0, x1, y1 (each keeps a trailing 1).
pub fn split4(g: &mut GraphBuilder<'_>, name: &str, x: &str) -> [String; 4] {
    let outs = g.op_n("Split", name, &[x], 4, vec![("axis", Attr::Int(-1)), ("num_outputs", Attr::Int(4))]);
    [outs[0].clone(), outs[1].clone(), outs[2].clone(), outs[3].clone()]
}
