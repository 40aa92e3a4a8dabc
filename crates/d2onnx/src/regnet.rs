//! RegNetX / RegNetY backbones (`regnet.py`): SimpleStem, then stages s1..s4 of
//! ResBottleneckBlocks (grouped 3×3, squeeze-excitation for Y). Widths and
//! groups come from the weights; block counts from the catalog.

use d2serve_registry::catalog::{Backbone, Norm};

use crate::ConvertError;
use crate::builder::{GraphBuilder, Weights};
use crate::layers::{ConvGeom, load_conv, load_conv_norm};
use crate::resnet::Feature;

/// ResBottleneckBlock: `relu(proj(x) + c(se(b(a(x)))))`.
#[allow(clippy::too_many_arguments)]
fn block<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    x: &str,
    in_channels: usize,
    stride: usize,
    norm: Norm,
    squeeze_excite: bool,
) -> Result<(String, usize), ConvertError> {
    let f = format!("{prefix}.f");
    let a = load_conv_norm(g, w, &format!("{f}.a"), &format!("{f}.a_bn"), in_channels, ConvGeom::same(1), norm)?;
    let b = load_conv_norm(
        g,
        w,
        &format!("{f}.b"),
        &format!("{f}.b_bn"),
        a.out_channels,
        ConvGeom { stride, pad: 1, dilation: 1 },
        norm,
    )?;
    let se = if squeeze_excite {
        let reduce = load_conv(g, w, &format!("{f}.se.f_ex.0"), b.out_channels, ConvGeom::same(1), Norm::None)?;
        let expand = load_conv(g, w, &format!("{f}.se.f_ex.2"), reduce.out_channels, ConvGeom::same(1), Norm::None)?;
        if reduce.bias.is_none() || expand.bias.is_none() || expand.out_channels != b.out_channels {
            return Err(ConvertError::Mismatch(format!(
                "{f}.se: squeeze-excitation convs need biases and must restore {} channels",
                b.out_channels
            )));
        }
        Some((reduce, expand))
    } else {
        None
    };
    let c = load_conv_norm(g, w, &format!("{f}.c"), &format!("{f}.c_bn"), b.out_channels, ConvGeom::same(1), norm)?;
    let out_channels = c.out_channels;
    let proj_name = format!("{prefix}.proj");
    let shortcut = if w.has(&format!("{proj_name}.weight")) {
        let proj = load_conv_norm(
            g,
            w,
            &proj_name,
            &format!("{prefix}.bn"),
            in_channels,
            ConvGeom { stride, pad: 0, dilation: 1 },
            norm,
        )?;
        proj.apply(g, x, false)
    } else if in_channels == out_channels && stride == 1 {
        x.to_string()
    } else {
        return Err(ConvertError::MissingWeight(format!("{proj_name}.weight")));
    };
    let y = a.apply(g, x, true);
    let mut y = b.apply(g, &y, true);
    if let Some((reduce, expand)) = se {
        let pooled = g.op("GlobalAveragePool", &format!("{f}.se.pool"), &[&y], vec![]);
        let s = reduce.apply(g, &pooled, true);
        let s = expand.apply(g, &s, false);
        let s = g.op("Sigmoid", &format!("{f}.se.gate"), &[&s], vec![]);
        y = g.op("Mul", &format!("{f}.se.out"), &[&y, &s], vec![]);
    }
    let y = c.apply(g, &y, false);
    let y = g.op("Add", &format!("{prefix}.add"), &[&shortcut, &y], vec![]);
    Ok((g.op("Relu", &format!("{prefix}.out"), &[&y], vec![]), out_channels))
}

/// Stem and stages s1..s4 under `prefix`; returns the four stage outputs (strides 4..32).
pub fn regnet<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    spec: &Backbone,
    x: &str,
) -> Result<Vec<Feature>, ConvertError> {
    let Backbone::Regnet {
        norm,
        se_ratio,
        stage_depths,
        ..
    } = spec
    else {
        return Err(ConvertError::Unsupported("a RegNet builder was given a ResNet spec".into()));
    };
    let stem = load_conv_norm(
        g,
        w,
        &format!("{prefix}.stem.conv"),
        &format!("{prefix}.stem.bn"),
        3,
        ConvGeom { stride: 2, pad: 1, dilation: 1 },
        *norm,
    )?;
    let mut y = stem.apply(g, x, true);
    let mut channels = stem.out_channels;
    let mut stride = 2;
    let mut out = Vec::new();
    for (i, &depth) in stage_depths.iter().enumerate() {
        let stage = format!("s{}", i + 1);
        for b in 1..=depth as usize {
            let s = if b == 1 { 2 } else { 1 };
            let (next, c) = block(g, w, &format!("{prefix}.{stage}.b{b}"), &y, channels, s, *norm, *se_ratio > 0.0)?;
            y = next;
            channels = c;
        }
        stride *= 2;
        out.push(Feature {
            name: stage,
            value: y.clone(),
            channels,
            stride,
        });
    }
    Ok(out)
}
