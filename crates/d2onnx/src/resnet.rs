//! ResNet / ResNeXt backbones (Detectron2 `build_resnet_backbone`): BasicStem,
//! then bottleneck stages res2..res5.

use d2serve_registry::catalog::{Backbone, Norm};

use crate::ConvertError;
use crate::builder::{GraphBuilder, Weights};
use crate::layers::{Conv, ConvGeom, load_conv};
use crate::onnx::Attr;

/// A feature map with its channel count and stride.
#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    pub value: String,
    pub channels: usize,
    pub stride: usize,
}

pub fn blocks_per_stage(depth: u32) -> Option<[usize; 4]> {
    match depth {
        50 => Some([3, 4, 6, 3]),
        101 => Some([3, 4, 23, 3]),
        152 => Some([3, 8, 36, 3]),
        _ => None,
    }
}

/// Settings shared by every bottleneck block of one backbone.
#[derive(Debug, Clone, Copy)]
pub struct BlockStyle {
    pub norm: Norm,
    pub stride_in_1x1: bool,
    pub num_groups: usize,
}

/// One bottleneck block (`resnet.py` BottleneckBlock / DeformBottleneckBlock),
/// loaded once so it can run more than once (C4's res5 head runs on box and
/// mask ROIs).
#[derive(Debug, Clone)]
pub struct Bottleneck {
    name: String,
    conv1: Conv,
    /// Deformable blocks: the 3×3 conv (with bias, no norm) predicting conv2's offsets.
    conv2_offset: Option<Conv>,
    conv2: Conv,
    conv3: Conv,
    shortcut: Option<Conv>,
    pub out_channels: usize,
}

#[allow(clippy::too_many_arguments)]
pub fn load_bottleneck<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    in_channels: usize,
    stride: usize,
    dilation: usize,
    deform: bool,
    style: BlockStyle,
) -> Result<Bottleneck, ConvertError> {
    let (s1, s3) = if style.stride_in_1x1 { (stride, 1) } else { (1, stride) };
    let conv1 = load_conv(g, w, &format!("{prefix}.conv1"), in_channels, ConvGeom { stride: s1, pad: 0, dilation: 1 }, style.norm)?;
    let geom2 = ConvGeom { stride: s3, pad: dilation, dilation };
    let conv2_offset = if deform {
        let offset = load_conv(g, w, &format!("{prefix}.conv2_offset"), conv1.out_channels, geom2, Norm::None)?;
        if offset.out_channels != 18 || offset.bias.is_none() {
            return Err(ConvertError::Mismatch(format!(
                "{prefix}.conv2_offset predicts {} offsets; one offset group of a 3×3 kernel needs 18 (with bias)",
                offset.out_channels
            )));
        }
        Some(offset)
    } else {
        None
    };
    let conv2 = load_conv(g, w, &format!("{prefix}.conv2"), conv1.out_channels, geom2, style.norm)?;
    if conv2.groups != style.num_groups {
        return Err(ConvertError::Mismatch(format!(
            "{prefix}.conv2 has {} groups in the checkpoint, the catalog says {}",
            conv2.groups, style.num_groups
        )));
    }
    let conv3 = load_conv(g, w, &format!("{prefix}.conv3"), conv2.out_channels, ConvGeom::same(1), style.norm)?;
    let out_channels = conv3.out_channels;
    let shortcut_name = format!("{prefix}.shortcut");
    let shortcut = if w.has(&format!("{shortcut_name}.weight")) {
        Some(load_conv(g, w, &shortcut_name, in_channels, ConvGeom { stride, pad: 0, dilation: 1 }, style.norm)?)
    } else if in_channels == out_channels && stride == 1 {
        None
    } else {
        return Err(ConvertError::MissingWeight(format!("{shortcut_name}.weight")));
    };
    Ok(Bottleneck {
        name: prefix.to_string(),
        conv1,
        conv2_offset,
        conv2,
        conv3,
        shortcut,
        out_channels,
    })
}

impl Bottleneck {
    pub fn apply(&self, g: &mut GraphBuilder<'_>, x: &str) -> String {
        let prefix = &self.name;
        let shortcut = match &self.shortcut {
            Some(sc) => sc.apply(g, x, false),
            None => x.to_string(),
        };
        let y = self.conv1.apply(g, x, true);
        let y = match &self.conv2_offset {
            Some(offset_conv) => {
                let offset = offset_conv.apply(g, &y, false);
                self.conv2.apply_deformable(g, &y, &offset, true)
            }
            None => self.conv2.apply(g, &y, true),
        };
        let y = self.conv3.apply(g, &y, false);
        let y = g.op("Add", &format!("{prefix}.add"), &[&y, &shortcut], vec![]);
        g.op("Relu", &format!("{prefix}.out"), &[&y], vec![])
    }
}

/// Load the blocks of one stage (`res{stage}` under `prefix`); the first block
/// carries the stride. Returns the blocks and their output channels.
#[allow(clippy::too_many_arguments)]
pub fn load_stage<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    in_channels: usize,
    blocks: usize,
    first_stride: usize,
    dilation: usize,
    deform: bool,
    style: BlockStyle,
) -> Result<(Vec<Bottleneck>, usize), ConvertError> {
    let mut out = Vec::with_capacity(blocks);
    let mut channels = in_channels;
    for b in 0..blocks {
        let s = if b == 0 { first_stride } else { 1 };
        let block = load_bottleneck(g, w, &format!("{prefix}.{b}"), channels, s, dilation, deform, style)?;
        channels = block.out_channels;
        out.push(block);
    }
    Ok((out, channels))
}

pub fn apply_stage(g: &mut GraphBuilder<'_>, blocks: &[Bottleneck], x: &str) -> String {
    blocks.iter().fold(x.to_string(), |y, b| b.apply(g, &y))
}

/// The stem and stages res2..`last_stage` of a ResNet under `prefix`
/// (`backbone.bottom_up` for FPN, `backbone` for C4/DC5). Returns every stage output.
pub fn resnet<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    spec: &Backbone,
    x: &str,
    last_stage: usize,
) -> Result<Vec<Feature>, ConvertError> {
    let Backbone::Resnet {
        depth,
        num_groups,
        stride_in_1x1,
        norm,
        res5_dilation,
        deform_on_per_stage,
        deform_modulated,
        deform_num_groups,
        ..
    } = spec
    else {
        return Err(ConvertError::Unsupported("a ResNet builder was given a RegNet spec".into()));
    };
    if deform_on_per_stage.iter().any(|&d| d) && (*deform_modulated || *deform_num_groups != 1) {
        return Err(ConvertError::Unsupported(
            "modulated deformable convolution (DCNv2) or several offset groups (no zoo model uses them)".into(),
        ));
    }
    let blocks = blocks_per_stage(*depth)
        .ok_or_else(|| ConvertError::Unsupported(format!("ResNet depth {depth}")))?;
    let stem = load_conv(g, w, &format!("{prefix}.stem.conv1"), 3, ConvGeom { stride: 2, pad: 3, dilation: 1 }, *norm)?;
    let y = stem.apply(g, x, true);
    let mut y = g.op(
        "MaxPool",
        &format!("{prefix}.stem.pool"),
        &[&y],
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ],
    );
    let mut channels = stem.out_channels;
    let mut stride = 4;
    let style = BlockStyle {
        norm: *norm,
        stride_in_1x1: *stride_in_1x1,
        num_groups: *num_groups as usize,
    };
    let mut out = Vec::new();
    for (idx, &n) in blocks.iter().enumerate().take(last_stage - 1) {
        let stage = idx + 2;
        let dilation = if stage == 5 { *res5_dilation as usize } else { 1 };
        let first_stride = if idx == 0 || (stage == 5 && dilation == 2) { 1 } else { 2 };
        let (stage_blocks, c) = load_stage(
            g,
            w,
            &format!("{prefix}.res{stage}"),
            channels,
            n,
            first_stride,
            dilation,
            deform_on_per_stage[idx],
            style,
        )?;
        y = apply_stage(g, &stage_blocks, &y);
        channels = c;
        stride *= first_stride;
        out.push(Feature {
            name: format!("res{stage}"),
            value: y.clone(),
            channels,
            stride,
        });
    }
    Ok(out)
}
