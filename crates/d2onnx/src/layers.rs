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
    let weight = w.take(&format!("{prefix}.weight"), &[None, None, None, None])?;
    let (out, per_group, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3]);
    if per_group == 0 || in_channels % per_group != 0 {
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
            let gamma = w.take(&format!("{prefix}.norm.weight"), &[c])?.to_f32();
            let beta = w.take(&format!("{prefix}.norm.bias"), &[c])?.to_f32();
            let mean = w.take(&format!("{prefix}.norm.running_mean"), &[c])?.to_f32();
            let var = w.take(&format!("{prefix}.norm.running_var"), &[c])?.to_f32();
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
            let gamma = w.take(&format!("{prefix}.norm.weight"), &[c])?;
            let beta = w.take(&format!("{prefix}.norm.bias"), &[c])?;
            let wn = g.weight(&format!("{prefix}.weight"), &weight);
            let s = g.weight(&format!("{prefix}.norm.weight"), &gamma);
            let b = g.weight(&format!("{prefix}.norm.bias"), &beta);
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
        let mut inputs = vec![x, self.weight.as_str()];
        if let Some(b) = &self.bias {
            inputs.push(b);
        }
        let p = self.geom.pad as i64;
        let mut y = g.op(
            "Conv",
            &self.name,
            &inputs,
            vec![
                ("kernel_shape", Attr::Ints(self.kernel.iter().map(|&k| k as i64).collect())),
                ("strides", Attr::Ints(vec![self.geom.stride as i64; 2])),
                ("pads", Attr::Ints(vec![p; 4])),
                ("dilations", Attr::Ints(vec![self.geom.dilation as i64; 2])),
                ("group", Attr::Int(self.groups as i64)),
            ],
        );
        if let Some((s, b)) = &self.group_norm {
            y = g.op(
                "GroupNormalization",
                &format!("{}.norm", self.name),
                &[&y, s, b],
                vec![("num_groups", Attr::Int(32)), ("epsilon", Attr::Float(NORM_EPS))],
            );
        }
        if relu {
            y = g.op("Relu", &format!("{}.relu", self.name), &[&y], vec![]);
        }
        y
    }
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
