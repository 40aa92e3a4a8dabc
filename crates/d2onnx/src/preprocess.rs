//! The graph input: a resized uint8 RGB image `[H, W, 3]` becomes Detectron2's
//! normalised, padded `[1, 3, H', W']` tensor (`GeneralizedRCNN.preprocess_image`).

use d2serve_registry::catalog::InputSpec;

use crate::boxes::ImageSize;
use crate::builder::GraphBuilder;
use crate::layers::take_i64;
use crate::onnx::Attr;

pub const INPUT: &str = "image";

pub struct Preprocessed {
    /// `[1, 3, H', W']` float, normalised and padded to the size divisibility.
    pub tensor: String,
    /// Unpadded size, for clipping boxes.
    pub size: ImageSize,
}

pub fn preprocess(g: &mut GraphBuilder<'_>, input: &InputSpec) -> Preprocessed {
    let x = g.op("Cast", "input.float", &[INPUT], vec![("to", Attr::Int(1))]);
    // The graph takes RGB; Detectron2's zoo models were trained on BGR.
    let x = if input.format == "BGR" {
        let order = g.const_i64(&[2, 1, 0]);
        g.op("Gather", "input.bgr", &[&x, &order], vec![("axis", Attr::Int(2))])
    } else {
        x
    };
    let x = g.op("Transpose", "input.chw", &[&x], vec![("perm", Attr::Ints(vec![2, 0, 1]))]);
    let axes = g.const_i64(&[0]);
    let x = g.op("Unsqueeze", "input.nchw", &[&x, &axes], vec![]);
    let mean = g.const_f32(&[1, 3, 1, 1], &input.pixel_mean);
    let std = g.const_f32(&[1, 3, 1, 1], &input.pixel_std);
    let x = g.op("Sub", "input.centered", &[&x, &mean], vec![]);
    let mut x = g.op("Div", "input.normalized", &[&x, &std], vec![]);

    let shape = g.op("Shape", "input.shape", &[INPUT], vec![]);
    let h = take_i64(g, "input.h", &shape, 0);
    let w = take_i64(g, "input.w", &shape, 1);
    if input.size_divisibility > 0 {
        // Pad bottom/right with zeros (after normalisation) to a multiple of the divisibility.
        let d = g.const_i64(&[input.size_divisibility as i64]);
        let pad = |g: &mut GraphBuilder<'_>, v: &str, n: &str| {
            let r = g.op("Mod", &format!("input.{n}_rem"), &[v, &d], vec![]);
            let r = g.op("Sub", &format!("input.{n}_short"), &[&d, &r], vec![]);
            g.op("Mod", &format!("input.{n}_pad"), &[&r, &d], vec![])
        };
        let ph = pad(g, &h, "h");
        let pw = pad(g, &w, "w");
        let zeros = g.const_i64(&[0, 0, 0, 0, 0, 0]);
        let pads = g.op("Concat", "input.pads", &[&zeros, &ph, &pw], vec![("axis", Attr::Int(0))]);
        x = g.op("Pad", "input.padded", &[&x, &pads], vec![("mode", Attr::Str("constant".into()))]);
    }
    let to_scalar = |g: &mut GraphBuilder<'_>, v: &str, n: &str| {
        let f = g.op("Cast", &format!("input.{n}_f"), &[v], vec![("to", Attr::Int(1))]);
        let axes = g.const_i64(&[0]);
        g.op("Squeeze", &format!("input.{n}_scalar"), &[&f, &axes], vec![])
    };
    let height = to_scalar(g, &h, "height");
    let width = to_scalar(g, &w, "width");
    Preprocessed {
        tensor: x,
        size: ImageSize { height, width },
    }
}
