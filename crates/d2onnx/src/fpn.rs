//! Feature Pyramid Network (`fpn.py`): lateral 1×1 and output 3×3 convs, a
//! nearest ×2 top-down path with sum fusion, and P6 by stride-2 subsampling.

use d2serve_registry::catalog::Norm;

use crate::ConvertError;
use crate::builder::{GraphBuilder, Weights};
use crate::layers::{ConvGeom, load_conv};
use crate::onnx::Attr;
use crate::resnet::Feature;

/// `bottom_up`: res2..res5 (strides 4..32). Returns p2..p6.
pub fn fpn<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    bottom_up: &[Feature],
    norm: Norm,
    fuse_type: &str,
    top_block: &str,
) -> Result<Vec<Feature>, ConvertError> {
    if fuse_type != "sum" || top_block != "maxpool" {
        return Err(ConvertError::Unsupported(format!(
            "FPN fuse_type `{fuse_type}` / top_block `{top_block}` (only sum / maxpool exist in the zoo)"
        )));
    }
    let mut outs: Vec<Feature> = Vec::new();
    let mut prev: Option<String> = None;
    for f in bottom_up.iter().rev() {
        let level = f.stride.trailing_zeros();
        let lateral = load_conv(g, w, &format!("backbone.fpn_lateral{level}"), f.channels, ConvGeom::same(1), norm)?;
        let output = load_conv(g, w, &format!("backbone.fpn_output{level}"), lateral.out_channels, ConvGeom::same(3), norm)?;
        let lat = lateral.apply(g, &f.value, false);
        let merged = match prev {
            None => lat,
            Some(p) => {
                let empty = g.const_f32(&[0], &[]);
                let scales = g.const_f32(&[4], &[1.0, 1.0, 2.0, 2.0]);
                let up = g.op(
                    "Resize",
                    &format!("fpn.top_down{level}"),
                    &[&p, &empty, &scales],
                    vec![
                        ("mode", Attr::Str("nearest".into())),
                        ("coordinate_transformation_mode", Attr::Str("asymmetric".into())),
                        ("nearest_mode", Attr::Str("floor".into())),
                    ],
                );
                g.op("Add", &format!("fpn.merge{level}"), &[&lat, &up], vec![])
            }
        };
        let p = output.apply(g, &merged, false);
        outs.push(Feature {
            name: format!("p{level}"),
            value: p,
            channels: output.out_channels,
            stride: f.stride,
        });
        prev = Some(merged);
    }
    outs.reverse();
    let p5 = outs.last().expect("four levels").clone();
    let p6 = g.op(
        "MaxPool",
        "fpn.p6",
        &[&p5.value],
        vec![("kernel_shape", Attr::Ints(vec![1, 1])), ("strides", Attr::Ints(vec![2, 2]))],
    );
    outs.push(Feature {
        name: "p6".into(),
        value: p6,
        channels: p5.channels,
        stride: p5.stride * 2,
    });
    Ok(outs)
}
